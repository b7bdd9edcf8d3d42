"""jaxmom.sweep.sample: random and Sobol trials from uniform, log-uniform and choice spaces."""

import warnings

import jax
import numpy as np
import pytest
from scipy import stats
from sweep_problem import X, Y, numpy_sgd, regression

from jaxmom import sweep


def spaces():
    return {
        "lr": sweep.log_uniform(1e-4, 1.0),
        "momentum": sweep.uniform(0.0, 0.99),
        "nesterov": sweep.choice([False, True]),
        "b": sweep.choice([1, 4, 16]),
    }


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_samples_stay_inside_their_spaces_on_one_trial_axis(method):
    grid = sweep.sample(256, method=method, seed=3, **spaces())
    assert grid.shape == (256,) and grid.names == ("trial",)
    assert grid.params == ("lr", "momentum", "nesterov", "b")
    c = grid.coords()
    assert c["lr"].dtype == np.float64 and 1e-4 <= c["lr"].min() and c["lr"].max() <= 1.0
    assert 0.0 <= c["momentum"].min() and c["momentum"].max() < 0.99
    assert set(c["nesterov"].tolist()) == {False, True} and c["nesterov"].dtype == bool
    assert set(c["b"].tolist()) == {1, 4, 16} and c["b"].dtype.kind == "i"


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_log_uniform_spreads_evenly_in_log_and_not_in_linear_space(method):
    lr = sweep.sample(1024, method=method, seed=0, lr=sweep.log_uniform(1e-4, 1.0)).coords()["lr"]
    logs = np.log10(lr)
    assert stats.kstest(logs, stats.uniform(loc=-4, scale=4).cdf).pvalue > 0.05
    assert stats.kstest(lr, stats.uniform(loc=1e-4, scale=1 - 1e-4).cdf).pvalue < 1e-6
    per_decade = np.histogram(logs, bins=[-4, -3, -2, -1, 0])[0]
    assert np.all(np.abs(per_decade - 256) < 48), per_decade


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_the_same_seed_gives_the_same_trials_and_another_seed_others(method):
    one = sweep.sample(32, method=method, seed=7, **spaces()).coords()
    again = sweep.sample(32, method=method, seed=7, **spaces()).coords()
    other = sweep.sample(32, method=method, seed=8, **spaces()).coords()
    for k in one:
        np.testing.assert_array_equal(one[k], again[k])
    assert not np.array_equal(one["lr"], other["lr"])


def test_sobol_puts_one_trial_in_each_of_n_equal_bins_and_random_does_not():
    n = 64
    space = {
        "a": sweep.uniform(0.0, 1.0),
        "b": sweep.uniform(-2.0, 2.0),
        "c": sweep.log_uniform(1e-3, 10),
    }
    sobol = sweep.sample(n, method="sobol", seed=1, **space).coords()
    units = {"a": sobol["a"], "b": (sobol["b"] + 2) / 4, "c": (np.log10(sobol["c"]) + 3) / 4}
    for name, u in units.items():
        assert np.bincount((u * n).astype(int), minlength=n).tolist() == [1] * n, name
    # The first two coordinates also put one trial in each of the 8 x 8 squares.
    assert (
        np.bincount(
            (units["a"] * 8).astype(int) * 8 + (units["b"] * 8).astype(int), minlength=64
        ).tolist()
        == [1] * 64
    )
    rand = sweep.sample(n, method="random", seed=1, **space).coords()["a"]
    assert np.bincount((rand * n).astype(int), minlength=n).max() > 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sweep.uniform(1.0, 1.0), r"uniform\(\): lo must be below hi, got lo=1.0, hi=1.0"),
        (lambda: sweep.uniform(0.0, float("nan")), r"hi must be a finite number, got nan"),
        (lambda: sweep.log_uniform(0.0, 1.0), r"log_uniform\(\): needs 0 < lo < hi, got lo=0.0"),
        (lambda: sweep.log_uniform(-1, 1), r"needs 0 < lo < hi"),
        (lambda: sweep.log_uniform("1e-3", 1), r"lo must be a finite number, got '1e-3'"),
        (lambda: sweep.choice([]), r"choice\(\) needs at least one value"),
        (lambda: sweep.choice(["adam", "sgd"]), r"choice\(\) takes numbers or bools, got 'adam'"),
        (lambda: sweep.sample(0, lr=sweep.uniform(0, 1)), r"n must be a positive integer, got 0"),
        (lambda: sweep.sample(True, lr=sweep.uniform(0, 1)), r"n must be a positive integer"),
        (
            lambda: sweep.sample(4, method="grid", lr=sweep.uniform(0, 1)),
            r"method must be 'random' or 'sobol', got 'grid'",
        ),
        (
            lambda: sweep.sample(4, seed=-1, lr=sweep.uniform(0, 1)),
            r"seed must be a non-negative integer",
        ),
        (lambda: sweep.sample(4), r"at least one hyperparameter"),
        (lambda: sweep.sample(4, lr=[0.1, 0.2]), r"lr=\[0.1, 0.2\] is not a space"),
    ],
)
def test_bad_spaces_and_arguments_are_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: sweep.choice([2**63 - 1, 2**63 + 1]),  # were two equal floats
            r"choice\(\) value 9223372036854775809 is outside the allowed range",
        ),
        (lambda: sweep.choice([True, 0.5]), r"choice\(\) mixes bools and numbers"),  # was 1.0
        (lambda: sweep.choice([False, 2]), r"choice\(\) mixes bools and numbers"),
        (
            lambda: sweep.choice([(1e-3, 0.9), (1e-2, 0.99)]),  # was flattened to 4 scalars
            r"choice\(\) takes single numbers or bools, got \(0.001, 0.9\)",
        ),
        (lambda: sweep.choice(np.ones((2, 2))), r"takes single numbers or bools, got \[1.0, 1.0\]"),
        (lambda: sweep.choice([2**53 + 1, 0.5]), r"9007199254740993 .*float64 cannot hold it"),
        (lambda: sweep.choice([1e-50, 0.1]), r"choice\(\) value 1e-50 is below float32's"),
        (lambda: sweep.choice([0.1, 1e39]), r"choice\(\) value 1e\+39 does not fit in float32"),
        (
            lambda: sweep.log_uniform(1e-320, 1e-300),  # trained with lr 0
            r"log_uniform\(\): lo value 1e-320 is below float32's smallest normal number",
        ),
        (
            lambda: sweep.uniform(-1e308, 1e308),  # drew inf
            r"uniform\(\): lo value -1e\+308 does not fit in float32",
        ),
        (lambda: sweep.uniform(0.0, 1e39), r"uniform\(\): hi value 1e\+39 does not fit"),
        (
            lambda: sweep.sample(2**40, lr=sweep.uniform(0, 1)),  # before allocating anything
            r"sample\(\): n=1099511627776 is above the most trials one call draws, 1048576",
        ),
    ],
)
def test_values_at_the_edges_are_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value)


def test_choice_keeps_bools_as_bools_and_integers_exact():
    flags = sweep.choice([False, True])
    assert flags.values == (False, True) and all(type(v) is bool for v in flags.values)
    assert sweep.sample(8, x=flags).coords()["x"].dtype == bool
    big = sweep.choice([2**62, 2**62 + 1])
    assert big.values == (2**62, 2**62 + 1)
    drawn = sweep.sample(64, x=big).coords()["x"]
    assert drawn.dtype == np.int64 and set(drawn.tolist()) == {2**62, 2**62 + 1}
    assert sweep.choice(np.array([1, 2])).values == (1, 2)
    assert sweep.choice([1, 0.5]).values == (1.0, 0.5)  # an exact integer among floats
    assert sweep.choice(3).values == (3,)


def test_a_sampled_grid_trains_with_seeds_and_tabulates_like_any_grid(tmp_path):
    from matplotlib.figure import Figure

    grid = sweep.sample(
        8, method="sobol", seed=2, lr=sweep.log_uniform(1e-3, 0.3), momentum=sweep.uniform(0, 0.9)
    ).with_seeds(2)
    res = sweep.sweep(regression, grid, args=(X, Y))
    assert res.metrics["loss"].shape == (8, 2, 12)
    c = grid.coords()
    w0 = np.asarray(jax.random.normal(jax.random.key(1), (8, 4)))  # seed 1's initial weights
    losses, _ = numpy_sgd(c["lr"][5, 1], c["momentum"][5, 1], w0)
    np.testing.assert_allclose(res.metrics["loss"][5, 1], losses, rtol=2e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = res.rows()
        best = res.best("final_loss")
    assert len(rows) == 16 and {"lr", "momentum", "seed", "final_loss"} <= set(rows[0])
    assert best["n_seeds"] == 2
    with pytest.raises(ValueError, match="same grid axis; pick two axes \\(or plot.scatter\\)"):
        res.heatmap("final_loss", "lr", "momentum")
    fig = res.scatter("final_loss", "lr", "momentum", tmp_path / "s.png", best="min")
    assert isinstance(fig, Figure) and (tmp_path / "s.png").stat().st_size > 10_000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"  # lr: log-uniform
    one = res.scatter("final_loss", "lr")
    assert one.axes[0].get_xscale() == "log" and one.axes[0].get_ylabel() == "final_loss"
    with pytest.raises(ValueError, match="'wd' is not a hyperparameter"):
        res.scatter("final_loss", "wd")


def test_scatter_draws_log_spaces_on_log_axes_and_uniform_ones_on_linear_axes():
    from jaxmom.sweep import plot

    space = {"lr": sweep.log_uniform(1e-3, 3.0), "momentum": sweep.uniform(0.0, 0.99)}
    for n in (16, 64, 256):
        c = sweep.sample(n, method="random", seed=n, **space).coords()
        assert plot._looks_log(c["lr"]) and not plot._looks_log(c["momentum"]), n
    assert plot._looks_log(np.array([0.01, 0.03, 0.1, 0.3]))
    assert not plot._looks_log(np.array([0.0, 0.5, 0.9]))
