"""jaxmom.sweep: grids, one compile per grid shape, chunking, seeds, divergence, exports, devices.

References are independent NumPy transcriptions of torch.optim.SGD (FORMULAS.md), not sweep output.
"""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from sweep_problem import STEPS, TRACES, X, Y, numpy_sgd, regression

from jaxmom import sweep
from jaxmom.sweep import plot

ROOT = Path(__file__).resolve().parents[1]


def initial_w(seed):
    return np.asarray(jax.random.normal(jax.random.key(seed), (8, 4)))


# ---- grid specification ------------------------------------------------------------------------


def test_product_zipped_and_seeds_build_the_expected_cells():
    grid = sweep.product(lr=[0.1, 0.2, 0.3], momentum=[0.0, 0.9]) * sweep.zipped(
        wd=[0.0, 1e-4], eps=[1e-8, 1e-6]
    ).with_seeds([3, 5])
    assert grid.shape == (3, 2, 2, 2)
    assert grid.names == ("lr", "momentum", "wd+eps", "seed")
    assert grid.params == ("lr", "momentum", "wd", "eps")
    c = grid.coords()
    assert c["lr"][2, 1, 0, 1] == 0.3 and c["momentum"][2, 1, 0, 1] == 0.9
    assert np.all(c["eps"][:, :, 1] == 1e-6) and np.all(c["eps"][:, :, 0] == 1e-8)
    assert np.all(c["wd"][:, :, 1] == 1e-4) and np.all(c["seed"][..., 1] == 5)
    assert sweep.product(a=[1.0]).with_seeds(3).coords()["seed"].tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sweep.zipped(lr=[0.1, 0.2], momentum=[0.9]), "equal lengths"),
        (lambda: sweep.product(lr=[]), "non-empty"),
        (lambda: sweep.product(lr=["a", "b"]), "non-numeric"),
        (lambda: sweep.product(lr=[0.1]) * sweep.product(lr=[0.2]), "duplicate"),
        (lambda: sweep.product(lr=[0.1]).with_seeds([0.5]), "seeds"),
        (lambda: sweep.product(), "at least one"),
    ],
)
def test_bad_grids_raise_one_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- results against independent references ----------------------------------------------------


def test_every_cell_equals_a_numpy_transcription_of_torch_sgd():
    grid = sweep.product(lr=[0.05, 0.2], momentum=[0.0, 0.5, 0.9]).with_seeds(2)
    res = sweep.sweep(regression, grid, args=(X, Y))
    assert res.metrics["loss"].shape == (2, 3, 2, STEPS)
    assert res.metrics["w"].shape == (2, 3, 2, 8, 4)
    for i, lr in enumerate([0.05, 0.2]):
        for j, mu in enumerate([0.0, 0.5, 0.9]):
            for s in range(2):
                losses, w = numpy_sgd(lr, mu, initial_w(s))
                np.testing.assert_allclose(res.metrics["loss"][i, j, s], losses, rtol=2e-5)
                np.testing.assert_allclose(res.metrics["w"][i, j, s], w, rtol=2e-5, atol=1e-6)
    assert not res.diverged.any() and (res.diverged_step == -1).all()


def test_a_cell_reproduces_train_fn_called_alone_with_its_seed():
    grid = sweep.zipped(lr=[0.05, 0.1], momentum=[0.9, 0.0]).with_seeds([7, 11])
    res = sweep.sweep(regression, grid, args=(X, Y))
    alone = regression(
        {"lr": jnp.float32(0.1), "momentum": jnp.float32(0.0)}, jax.random.key(11), X, Y
    )
    np.testing.assert_allclose(res.metrics["loss"][1, 1], alone["loss"], rtol=1e-6)
    no_seed_axis = sweep.sweep(
        regression, sweep.zipped(lr=[0.1], momentum=[0.0]), args=(X, Y), seed=11
    )
    np.testing.assert_allclose(no_seed_axis.metrics["loss"][0], alone["loss"], rtol=1e-6)


def test_one_compile_per_grid_shape_and_none_for_new_values():
    def fresh(hparams, key, x, y):  # its own function object: its own cache entry
        return regression(hparams, key, x, y)

    TRACES["n"] = 0
    first = sweep.sweep(
        fresh, sweep.product(lr=[0.01, 0.02, 0.03], momentum=[0.0, 0.9]), args=(X, Y)
    )
    assert TRACES["n"] == 1 and first.compile_seconds > 0
    second = sweep.sweep(fresh, sweep.product(lr=[0.3, 0.2, 0.1], momentum=[0.5, 0.7]), args=(X, Y))
    assert TRACES["n"] == 1 and second.compile_seconds == 0.0
    np.testing.assert_allclose(
        second.metrics["loss"][2, 1], numpy_sgd(0.1, 0.7, initial_w(0))[0], rtol=2e-5
    )
    sweep.sweep(fresh, sweep.product(lr=[0.3, 0.2], momentum=[0.5, 0.7]), args=(X, Y))
    assert TRACES["n"] == 2  # a new shape does compile again: the counter can count


def test_chunks_equal_the_unchunked_grid_and_trace_once():
    def fresh(hparams, key, x, y):
        return regression(hparams, key, x, y)

    grid = sweep.product(lr=[0.01, 0.05, 0.1, 0.2, 0.3], momentum=[0.0, 0.9]).with_seeds(1)
    whole = sweep.sweep(regression, grid, args=(X, Y))
    TRACES["n"] = 0
    chunked = sweep.sweep(fresh, grid, args=(X, Y), chunk_size=3)  # 10 cells: 4 chunks, 2 padded
    assert TRACES["n"] == 1
    np.testing.assert_allclose(chunked.metrics["loss"], whole.metrics["loss"], rtol=1e-6)
    np.testing.assert_allclose(chunked.metrics["w"], whole.metrics["w"], rtol=1e-6, atol=1e-7)


def test_a_diverging_cell_is_marked_and_leaves_the_others_bit_identical():
    lrs, explosive = [0.05, 0.2, 0.1], 1e20
    stable = sweep.sweep(regression, sweep.product(lr=lrs, momentum=[0.0, 0.9]), args=(X, Y))
    lrs[2] = explosive
    res = sweep.sweep(regression, sweep.product(lr=lrs, momentum=[0.0, 0.9]), args=(X, Y))
    # Hand-derived: after one step |W| ~ 1e20, so the loss at step index 1 overflows float32.
    assert res.diverged.tolist() == [[False, False], [False, False], [True, True]]
    assert res.diverged_step.tolist() == [[-1, -1], [-1, -1], [1, 1]]
    for name, x in res.metrics.items():
        assert np.array_equal(x[:2], stable.metrics[name][:2]), name  # bit-identical
        assert np.isfinite(x[:2]).all(), name
    rows = res.rows()
    assert [r["diverged"] for r in rows] == [False] * 4 + [True] * 2
    assert bool(sweep.finite({"a": jnp.ones(2), "b": (jnp.zeros(3),)}))
    assert not bool(sweep.finite({"a": jnp.ones(2), "b": (jnp.array([0.0, jnp.inf]),)}))
    assert res.best("final_loss")["lr"] != explosive


def test_a_finite_loss_that_grows_past_the_factor_is_diverged_at_that_step():
    """lr 5 stays finite for 12 steps but its loss passes 10x the first step's: diverged there."""
    grid = sweep.product(lr=[0.05, 5.0], momentum=[0.0])
    res = sweep.sweep(regression, grid, args=(X, Y))
    losses = numpy_sgd(5.0, 0.0, initial_w(0))[0]
    assert np.isfinite(res.metrics["loss"]).all()
    expected = int(np.argmax(losses > 10 * losses[0]))  # from the NumPy reference: step 6
    assert 0 < expected < len(losses) - 1
    assert res.diverged.tolist() == [[False], [True]]
    assert res.diverged_step.tolist() == [[-1], [expected]]
    assert res.best("final_loss", "max")["lr"] == 0.05  # best() skips the diverged cell
    z = plot.cell_values(res, "final_loss", "momentum", "lr")
    assert np.isfinite(z[0, 0]) and np.isnan(z[1, 0])  # the heatmap greys it out
    wide = sweep.sweep(regression, grid, args=(X, Y), divergence_factor=1e6)
    assert wide.diverged.tolist() == [[False], [False]]
    only_nan = sweep.sweep(regression, grid, args=(X, Y), divergence_factor=None)
    assert only_nan.diverged_step.tolist() == [[-1], [-1]]
    with pytest.raises(ValueError, match="divergence_factor"):
        sweep.sweep(regression, grid, args=(X, Y), divergence_factor=0.5)


def test_the_compile_cache_is_a_bounded_lru(monkeypatch):
    from jaxmom.sweep import _engine  # pinned: its CACHE_SIZE, to fill the cache with 3 programs

    monkeypatch.setattr(_engine, "CACHE_SIZE", 2)
    sweep.clear_cache()
    assert sweep.cache_size() == 0

    def fresh(hparams, key, x, y):
        return regression(hparams, key, x, y)

    grids = [sweep.product(lr=[0.1] * n, momentum=[0.0]) for n in (1, 2, 3)]
    seconds = [sweep.sweep(fresh, g, args=(X, Y)).compile_seconds for g in grids]
    assert all(t > 0 for t in seconds) and sweep.cache_size() == 2
    assert sweep.sweep(fresh, grids[2], args=(X, Y)).compile_seconds == 0  # most recent: kept
    assert sweep.sweep(fresh, grids[0], args=(X, Y)).compile_seconds > 0  # oldest: evicted
    assert sweep.cache_size() == 2


# ---- exports ------------------------------------------------------------------------------------


def test_csv_dataframe_table_and_best_agree_with_the_metrics(tmp_path):
    grid = sweep.product(lr=[0.05, 0.1, 0.2], momentum=[0.0, 0.9]).with_seeds(2)
    res = sweep.sweep(regression, grid, args=(X, Y))
    res.to_csv(tmp_path / "grid.csv")
    with open(tmp_path / "grid.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12
    assert set(table[0]) >= {"lr", "momentum", "seed", "final_loss", "loss_last", "diverged"}
    cell = next(r for r in table if (r["lr"], r["momentum"], r["seed"]) == ("0.2", "0.9", "1"))
    assert float(cell["final_loss"]) == pytest.approx(float(res.metrics["final_loss"][2, 1, 1]))

    df = res.to_dataframe()
    assert df.shape[0] == 12 and df["final_loss"].min() == pytest.approx(
        res.metrics["final_loss"].min()
    )
    means = res.metrics["final_loss"].mean(-1)  # best() ranks cells by their seed mean
    i, j = np.unravel_index(np.argmin(means), means.shape)
    best = res.best("final_loss")
    assert (best["lr"], best["momentum"]) == ([0.05, 0.1, 0.2][i], [0.0, 0.9][j])
    assert best["final_loss"] == pytest.approx(means[i, j]) and best["n_seeds"] == 2
    assert res.best("final_loss", "max")["final_loss"] == pytest.approx(means.max())
    assert "final_loss" in res.table().splitlines()[0]
    with pytest.raises(ValueError, match="nope"):
        res.best("nope")


def test_heatmap_png_with_log_axis_where_values_span_decades(tmp_path):
    grid = sweep.product(lr=[0.01, 0.1, 1.0], momentum=[0.0, 0.5, 0.9]).with_seeds(2)
    res = sweep.sweep(regression, grid, args=(X, Y))
    res.heatmap("final_loss", "lr", "momentum", tmp_path / "h.png")
    image = matplotlib.image.imread(tmp_path / "h.png")
    assert image.ndim == 3 and image.shape[0] > 100
    assert plot._edges(np.array([0.01, 0.1, 1.0]))[1] is True  # spans decades: log
    assert plot._edges(np.array([0.0, 0.5, 0.9]))[1] is False  # holds 0: categorical
    with pytest.raises(ValueError, match="same grid axis"):
        res.heatmap("final_loss", "lr", "lr", tmp_path / "x.png")


def test_a_log_colour_bar_labels_its_minor_ticks_only_within_one_decade():
    from matplotlib.ticker import NullFormatter

    def bar_of(losses):
        grid = sweep.product(lr=[0.1, 0.2], momentum=[0.0, 0.9])
        res = sweep.SweepResult(grid=grid, metrics={"final_loss": np.array(losses)})
        fig = res.heatmap("final_loss", "lr", "momentum", log_color=True)
        return fig.axes[1].yaxis.get_minor_formatter()

    assert isinstance(bar_of([[1e-4, 1e-2], [0.1, 3.0]]), NullFormatter)  # 4.5 decades: crowded
    assert not isinstance(bar_of([[0.2, 0.3], [0.5, 0.9]]), NullFormatter)  # one decade: labelled


def test_importing_plot_leaves_the_matplotlib_backend_alone():
    """A notebook's inline backend survives `import jaxmom.sweep.plot` (and the result module)."""
    code = textwrap.dedent("""
        import matplotlib
        matplotlib.use("svg")
        import jaxmom.sweep.plot, jaxmom.sweep._result
        print(matplotlib.get_backend())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["svg"], out.stderr[-2000:]


def test_heatmap_returns_a_figure_and_writes_only_when_given_a_path(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    res = sweep.sweep(regression, sweep.product(lr=[0.01, 0.1], momentum=[0.0, 0.9]), args=(X, Y))
    monkeypatch.chdir(tmp_path)
    fig = res.heatmap("final_loss", "lr", "momentum")
    assert isinstance(fig, Figure) and fig.axes and list(tmp_path.iterdir()) == []
    fig = res.heatmap("final_loss", "lr", "momentum", tmp_path / "h.png")  # positional path: kept
    assert isinstance(fig, Figure) and (tmp_path / "h.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]  # no temporary file left


def test_bad_arguments_raise_clear_errors():
    grid = sweep.product(lr=[0.1], momentum=[0.0])
    with pytest.raises(ValueError, match="chunk_size"):
        sweep.sweep(regression, grid, args=(X, Y), chunk_size=0)
    with pytest.raises(TypeError, match="Grid"):
        sweep.sweep(regression, {"lr": [0.1]})


def test_the_library_and_the_engine_import_without_the_study():
    """`import jaxmom` and `jaxmom.sweep` need only the core dependencies, and know no study."""
    code = textwrap.dedent("""
        import sys, importlib.metadata, jaxmom, jaxmom.sweep
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("flax", "matplotlib", "tqdm", "mlxtend", "vega_datasets", "pandas")
                        or m.startswith("jaxmom.studies"))
        try:
            version = importlib.metadata.version("jaxmom")
        except importlib.metadata.PackageNotFoundError:
            version = "0+unknown"
        print(loaded, jaxmom.__version__ == version)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["[]", "True"], out.stderr[-2000:]


# ---- several devices ----------------------------------------------------------------------------

FOUR_DEVICES = textwrap.dedent("""
    import jax, numpy as np
    from jaxmom import sweep
    from sweep_problem import regression, X, Y
    assert jax.device_count() == 4, jax.devices()
    grid = sweep.product(lr=[0.01, 0.05, 0.1], momentum=[0.0, 0.9]).with_seeds(1)   # 6 cells
    one = sweep.sweep(regression, grid, args=(X, Y), devices=jax.devices()[:1])
    four = sweep.sweep(regression, grid, args=(X, Y))                  # padded to 8, 2 per device
    chunked = sweep.sweep(regression, grid, args=(X, Y), chunk_size=1)
    for other in (four, chunked):
        for k in one.metrics:
            np.testing.assert_allclose(other.metrics[k], one.metrics[k], rtol=1e-6, atol=1e-7)
    print("ok", len(four.devices))
""")


@pytest.mark.slow  # a subprocess with 4 devices
def test_grid_sharded_over_four_devices_equals_one_device():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "4"]
