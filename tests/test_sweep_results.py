"""jaxmom.sweep results: table columns that cannot collide, divergence without full-size
temporaries, raw metrics kept when post-processing fails, atomic CSV, all-diverged heatmaps."""

import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_problem import X, Y, regression

from jaxmom import sweep
from jaxmom.sweep import _result, plot
from jaxmom.sweep._files import OutputError

# ---- table columns -------------------------------------------------------------------------


def test_a_metric_named_like_a_grid_column_or_diverged_is_refused_before_training():
    ran = []

    def clash(h, k):
        jax.debug.callback(lambda: ran.append(1))
        return {"lr": h["lr"] * 100, "loss": jnp.stack([h["lr"]] * 3)}

    with pytest.raises(
        ValueError, match=r"metric \['lr'\] gives the column 'lr', which is also a grid column"
    ):
        sweep.sweep(clash, sweep.product(lr=[0.1, 0.2]))
    assert ran == []  # refused after compiling, before running
    grid = sweep.product(lr=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"\['diverged'\].*a column the result adds"):
        sweep.sweep(lambda h, k: {"diverged": h["lr"]}, grid)
    with pytest.raises(ValueError, match=r"\['seed'\].*grid column"):
        sweep.sweep(lambda h, k: {"seed": h["lr"]}, grid.with_seeds(2))


def test_metrics_that_flatten_to_one_name_are_refused_naming_both():
    grid = sweep.product(lr=[0.1, 0.2])
    nested = lambda h, k: {"a/b": h["lr"], "a": {"b": 2 * h["lr"]}}
    with pytest.raises(
        ValueError,
        match=r"metric \['a/b'\] gives the column 'a/b', which is also metric \['a'\]\['b'\]",
    ):
        sweep.sweep(nested, grid)
    last = lambda h, k: {"loss": jnp.stack([h["lr"]] * 3), "loss_last": h["lr"]}
    with pytest.raises(
        ValueError, match=r"\['loss_last'\] gives the column 'loss_last'.*\['loss'\]"
    ):
        sweep.sweep(last, grid)
    for bad in (nested, last):  # a result built directly checks the same (the metrics are saved)
        with pytest.raises(ValueError, match="raw metrics are saved"):
            _result.SweepResult(grid, bad({"lr": np.array([0.1, 0.2])}, None), 0.0, 0.0)


def test_a_metric_too_wide_for_the_table_is_named_in_a_warning_not_dropped_silently():
    res = sweep.sweep(regression, sweep.product(lr=[0.1], momentum=[0.0, 0.9]), args=(X, Y))
    with pytest.warns(UserWarning, match=r"metrics \['w'\] have two or more axes"):
        rows = res.rows()
    assert "w" not in rows[0] and "loss_last" in rows[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res.rows()  # said once per result


# ---- divergence, memory, rescue ------------------------------------------------------------


def test_divergence_needs_no_temporary_as_large_as_a_metric(monkeypatch):
    monkeypatch.setattr(_result, "BLOCK", 1 << 16)
    grid = sweep.product(lr=np.linspace(0.1, 1, 64))
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64, 1024)).astype(np.float32)  # 4M elements: a bool copy is 4 MB
    loss = np.abs(rng.normal(size=(64, 4096))).astype(np.float32) + 1
    w[5, 3, 7], loss[9, 100], loss[11, 50] = np.nan, np.inf, 1e3
    tracemalloc.start()
    try:
        res = _result.SweepResult(grid, {"w": w, "loss": loss}, 0.0, 0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < w.size / 4, peak  # a quarter of one full-size bool temporary
    # Reference: the plain full-size computation.
    finite = np.isfinite(w).reshape(64, -1).all(1) & np.isfinite(loss).all(1)
    grew = ~np.isfinite(loss) | (loss > 10 * loss[:, :1])
    step = np.where(grew.any(1), grew.argmax(1), -1)
    np.testing.assert_array_equal(res.diverged, ~finite | (step >= 0))
    np.testing.assert_array_equal(res.diverged_step, step)
    assert res.diverged.sum() == 3 and res.diverged_step[9] == 100 and res.diverged_step[11] == 50


def test_when_post_processing_fails_the_raw_metrics_are_saved_first(tmp_path, monkeypatch):
    monkeypatch.setattr(_result, "RESCUE_DIR", tmp_path)

    def out_of_memory(*args):
        raise MemoryError("cannot allocate 12 GiB")

    monkeypatch.setattr(_result, "_divergence", out_of_memory)
    grid = sweep.product(lr=[0.1, 0.2]).with_seeds(3)
    metrics = {"loss": np.arange(18.0).reshape(2, 3, 3), "acc": {"top1": np.ones((2, 3))}}
    with pytest.raises(
        MemoryError, match=r"cannot allocate 12 GiB \(the raw metrics are saved in "
    ) as e:
        _result.SweepResult(grid, metrics, 0.0, 0.0)
    (saved,) = tmp_path.glob("jaxmom-raw-metrics-*.npz")
    assert str(saved) in str(e.value) and "\n" not in str(e.value)
    with np.load(saved, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["metric:['loss']"], metrics["loss"])
        np.testing.assert_array_equal(f["metric:['acc']['top1']"], metrics["acc"]["top1"])
        np.testing.assert_array_equal(f["grid:lr"], grid.coords()["lr"])


def test_csv_is_written_atomically_and_a_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    res = sweep.sweep(regression, sweep.product(lr=[0.1, 0.2], momentum=[0.0]), args=(X, Y))
    path = tmp_path / "grid.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res.to_csv(path)
    before = path.read_text()

    def disk_full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_result.csv.DictWriter, "writerows", disk_full)
    with pytest.raises(OutputError, match=f"cannot write {path}: No space left on device"):
        res.to_csv(path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["grid.csv"]


# ---- heatmaps ------------------------------------------------------------------------------


def test_a_heatmap_where_every_cell_diverged_is_all_grey_and_does_not_crash(tmp_path):
    grid = sweep.product(lr=[1e20, 1e30], momentum=[0.0, 0.9])
    res = sweep.sweep(regression, grid, args=(X, Y))
    assert res.diverged.all()
    fig = res.heatmap("final_loss", "lr", "momentum", tmp_path / "h.png", best="min")
    assert np.isnan(plot.cell_values(res, "final_loss", "lr", "momentum")).all()
    assert "every cell diverged" in fig.axes[0].get_title()
    assert (tmp_path / "h.png").stat().st_size > 5_000


def test_heatmap_refuses_an_unknown_best():
    res = sweep.sweep(regression, sweep.product(lr=[0.1], momentum=[0.0]), args=(X, Y))
    with pytest.raises(ValueError, match="best must be 'min', 'max' or None, got 'bogus'"):
        res.heatmap("final_loss", "lr", "momentum", best="bogus")
