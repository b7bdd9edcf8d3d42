"""SweepResult is built by keyword only; take keeps some cells of one grid axis and concat joins
results along one, both carrying the divergence marks over exactly (never recomputed)."""

import jax
import numpy as np
import pytest

from jaxmom import sweep
from jaxmom.sweep import SweepResult


def grid():
    return sweep.product(lr=[0.01, 0.1, 1.0, 10.0], momentum=[0.0, 0.9]).with_seeds([3, 7, 11])


def metrics_of(g):
    """A per-step loss (some cells blow up or turn NaN), a nested per-cell metric, an integer."""
    rng = np.random.default_rng(0)
    loss = rng.uniform(1.0, 2.0, size=g.shape + (6,)).astype(np.float32)
    loss[3, 1, 0, 2:] = 100.0  # grows past 10x its first step: diverged at step 2
    loss[2, 0, 2, 4] = np.nan  # diverged at step 4
    acc = rng.uniform(size=g.shape).astype(np.float32)
    acc[1, 1, 1] = np.inf  # non-finite, not in the history: diverged, step -1
    return {"loss": loss, "eval": {"acc": acc}, "steps": np.full(g.shape, 6, np.int32)}


def full(**kwargs):
    g = grid()
    return SweepResult(grid=g, metrics=metrics_of(g), **kwargs)


def assert_same_grid(a, b):
    assert [(x.name, list(x.columns)) for x in a.axes] == [
        (x.name, list(x.columns)) for x in b.axes
    ]
    for x, y in zip(a.axes, b.axes):
        for p in x.columns:
            assert x.columns[p].dtype == y.columns[p].dtype, p
            np.testing.assert_array_equal(x.columns[p], y.columns[p])


def assert_same(a, b):
    assert_same_grid(a.grid, b.grid)
    assert jax.tree.structure(a.metrics) == jax.tree.structure(b.metrics)
    for x, y in zip(jax.tree.leaves(a.metrics), jax.tree.leaves(b.metrics)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    assert a.rows() == b.rows()


# ---- construction ---------------------------------------------------------------------------


def test_a_result_is_built_by_keyword_only_with_info_and_params():
    g = grid()
    m = metrics_of(g)
    with pytest.raises(TypeError):
        SweepResult(g, m)  # type: ignore[misc]
    with pytest.raises(TypeError):
        SweepResult(g, m, 0.0, 0.0)  # type: ignore[misc]
    info, params = {"search": {"trials": 4}}, {"w": np.ones(g.shape + (2,))}
    res = SweepResult(grid=g, metrics=m, info=info, params=params, train_seconds=2.0)
    assert res.info == info and res.info is not info and res.params is params
    assert res.compile_seconds == 0.0 and res.train_seconds == 2.0 and res.history == "loss"
    assert res.diverged.sum() == 3 and res.diverged_step[3, 1, 0] == 2
    assert res.diverged_step[2, 0, 2] == 4 and res.diverged_step[1, 1, 1] == -1
    assert (
        SweepResult(grid=g, metrics=m).info == {} and SweepResult(grid=g, metrics=m).params is None
    )
    with pytest.raises(ValueError, match=r"divergence marks of shapes .* do not fit"):
        SweepResult(grid=g, metrics=m, divergence=(np.zeros(3, bool), np.zeros(3, int)))


# ---- take -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis, indices, values",
    [
        ("lr", [3, 0], {"lr": [10.0, 0.01]}),
        ("lr", [-1], {"lr": [10.0]}),
        ("lr", slice(1, 3), {"lr": [0.1, 1.0]}),
        ("momentum", [1, 1], {"momentum": [0.9, 0.9]}),
        ("seed", range(2), {"seed": [3, 7]}),
    ],
)
def test_take_equals_the_result_built_from_the_sliced_metrics(axis, indices, values):
    res = full(params={"w": np.arange(24.0).reshape(4, 2, 3)}, compile_seconds=1.5)
    part = res.take(axis, indices)
    lists = {"lr": [0.01, 0.1, 1.0, 10.0], "momentum": [0.0, 0.9], "seed": [3, 7, 11]}
    lists.update(values)
    g = sweep.product(lr=lists["lr"], momentum=lists["momentum"]).with_seeds(lists["seed"])
    a = grid().axis_of(axis)
    idx = np.arange(grid().shape[a])[indices] if isinstance(indices, slice) else list(indices)
    sliced = jax.tree.map(lambda x: np.take(x, idx, axis=a), metrics_of(grid()))
    assert_same(part, SweepResult(grid=g, metrics=sliced))
    np.testing.assert_array_equal(part.params["w"], np.take(res.params["w"], idx, axis=a))
    assert part.compile_seconds == 1.5 and part.devices == res.devices and part.info == {}


def test_take_keeps_the_given_divergence_marks_and_never_recomputes_them():
    g = grid()
    given = np.zeros(g.shape, bool), np.full(g.shape, -1, np.int64)
    given[0][0, 0, 0], given[1][0, 0, 0] = True, 5  # marks the caller computed its own way
    res = full(divergence=given, info={"halving": {"eta": 3}})
    assert not np.array_equal(res.diverged, full().diverged)  # computed ones would differ
    part = res.take("lr", [0, 2, 3])
    np.testing.assert_array_equal(part.diverged, given[0][[0, 2, 3]])
    np.testing.assert_array_equal(part.diverged_step, given[1][[0, 2, 3]])
    assert part.info == {} and res.take("lr", [0], info={"kept": 1}).info == {"kept": 1}


def test_integer_values_keep_the_dtype_a_fresh_grid_gives_them():
    g = sweep.product(width=[8, 2**40]).with_seeds([1, 2**63 + 5])
    res = SweepResult(grid=g, metrics={"x": np.zeros(g.shape)})
    small = res.take("width", [0]).take("seed", [0])
    assert_same_grid(small.grid, sweep.product(width=[8]).with_seeds([1]))
    assert_same_grid(sweep.SweepResult.concat([small, res.take("width", [1]).take("seed", [0])],
                                              "width").grid,
                     sweep.product(width=[8, 2**40]).with_seeds([1]))  # fmt: skip
    back = SweepResult.concat([res.take("seed", [0]), res.take("seed", [1])], "seed")
    assert_same_grid(back.grid, g)  # int32 and uint64 seeds join as uint64, exactly


# ---- concat ---------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", ["lr", "momentum", "seed"])
def test_concat_of_two_takes_is_the_original(axis):
    res = full(params={"w": np.arange(24.0).reshape(4, 2, 3)}, compile_seconds=1.0)
    n = res.grid.shape[res.grid.axis_of(axis)]
    head, tail = res.take(axis, range(1)), res.take(axis, slice(1, None))
    back = SweepResult.concat([head, tail], axis)
    assert_same(back, res)
    np.testing.assert_array_equal(back.params["w"], res.params["w"])
    assert back.compile_seconds == 2.0 and back.info == {} and n > 1
    three = SweepResult.concat([res.take(axis, [i]) for i in range(n)], axis, info={"a": 1})
    assert_same(three, res)
    assert three.info == {"a": 1}


def test_concat_keeps_the_given_divergence_marks_exactly():
    g = grid()
    given = np.zeros(g.shape, bool), np.full(g.shape, -1, np.int64)
    given[0][3, 1, 2], given[1][3, 1, 2] = True, 1
    res = full(divergence=given)
    back = SweepResult.concat([res.take("lr", [0, 1]), res.take("lr", [2, 3])], "lr")
    np.testing.assert_array_equal(back.diverged, given[0])
    np.testing.assert_array_equal(back.diverged_step, given[1])


def test_a_hyperparameter_names_its_axis_for_take_and_concat():
    g = sweep.zipped(axis="trial", lr=[0.1, 0.2, 0.3], wd=[0.0, 1e-4, 1e-3]).with_seeds(2)
    res = SweepResult(grid=g, metrics={"loss": np.ones(g.shape + (3,))})
    part = res.take("wd", [2, 0])
    np.testing.assert_array_equal(part.grid.axes[0].columns["lr"], [0.3, 0.1])
    assert_same(SweepResult.concat([res.take("trial", [0]), res.take("lr", [1, 2])], "wd"), res)


# ---- bad input ------------------------------------------------------------------------------


def one_line(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value), str(e.value)


def test_take_refuses_bad_input_in_one_line():
    res = full()
    one_line(lambda: res.take("beta", [0]), r"'beta' is not an axis or hyperparameter")
    one_line(lambda: res.take("lr", [4]), r"index 4 is out of range for axis 'lr' of length 4")
    one_line(lambda: res.take("lr", [0, -5]), r"index -5 is out of range")
    one_line(lambda: res.take("lr", []), r"select no cell of axis 'lr'")
    one_line(lambda: res.take("lr", slice(4, None)), r"select no cell of axis 'lr'")
    for bad in (1, [0.5], [True, False], [[0, 1]], "lr"):
        one_line(lambda bad=bad: res.take("lr", bad), r"must be a 1-D list of integers or a slice")


def test_concat_refuses_results_that_do_not_fit_in_one_line():
    res = full()
    a, b = res.take("lr", [0]), res.take("lr", [1])
    one_line(lambda: SweepResult.concat([], "lr"), "at least one result")
    one_line(lambda: SweepResult.concat([a, b], "beta"), "'beta' is not an axis")
    one_line(lambda: SweepResult.concat([a, res.take("momentum", [0])], "lr"),
             "need the same values on axis 'momentum'")  # fmt: skip
    g = sweep.product(lr=[0.5], momentum=[0.0, 0.9])
    other = SweepResult(grid=g, metrics={"loss": np.ones(g.shape + (6,))})
    one_line(lambda: SweepResult.concat([a, other], "lr"), "need the same axes and hyperparameters")
    ga = a.grid
    fewer = SweepResult(grid=ga, metrics={"loss": a.metrics["loss"]})
    one_line(lambda: SweepResult.concat([a, fewer], "lr"), r"need the same metrics, got \[")
    longer = SweepResult(grid=ga, metrics={**b.metrics, "loss": np.ones(ga.shape + (7,))})
    one_line(lambda: SweepResult.concat([a, longer], "lr"),
             r"same shape beyond the grid for metrics 'loss', got \(6,\) and \(7,\)")  # fmt: skip
    hist = SweepResult(grid=b.grid, metrics=b.metrics, history="acc")
    one_line(lambda: SweepResult.concat([a, hist], "lr"), "need the same history")
    factor = SweepResult(grid=b.grid, metrics=b.metrics, divergence_factor=None)
    one_line(lambda: SweepResult.concat([a, factor], "lr"), "need the same divergence_factor")
    with_params = SweepResult(grid=b.grid, metrics=b.metrics, params={"w": np.ones(b.grid.shape)})
    one_line(lambda: SweepResult.concat([a, with_params], "lr"), "params in all of them or in none")
