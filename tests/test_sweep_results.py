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

# Internals pinned here: _result (its csv writer, to fill the disk mid-write; RESCUE_DIR) and
# _files.OutputError (the one-line error of a failed write).
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
            _result.SweepResult(grid=grid, metrics=bad({"lr": np.array([0.1, 0.2])}, None))


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
        res = _result.SweepResult(grid=grid, metrics={"w": w, "loss": loss})
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
        _result.SweepResult(grid=grid, metrics=metrics)
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
    with pytest.raises(ValueError, match="best must be 'auto', 'min', 'max' or None, got 'bogus'"):
        res.heatmap("final_loss", "lr", "momentum", best="bogus")


# ---- seeds ---------------------------------------------------------------------------------


def seeded_result():
    """lr 0.01 has the single best seed (0.1) but the worse mean (0.5); lr 0.03 the best mean."""
    grid = sweep.product(lr=[0.01, 0.03, 0.1]).with_seeds([4, 9])
    final = np.array([[0.1, 0.9], [0.3, 0.35], [0.2, np.nan]])
    acc = np.array([[0.9, 0.1], [0.7, 0.6], [0.8, 0.0]])
    return _result.SweepResult(grid=grid, metrics={"final_loss": final, "acc": acc})


def test_best_ranks_cells_by_their_mean_over_seeds_never_by_a_single_seed():
    res = seeded_result()
    assert min(res.rows(), key=lambda r: r["final_loss"])["lr"] == 0.01  # the lucky seed
    best = res.best("final_loss")
    assert best == {
        "lr": 0.03,
        "final_loss": pytest.approx(0.325),
        "final_loss_std": pytest.approx(0.025),
        "acc": pytest.approx(0.65),
        "n_seeds": 2,
    }
    assert res.best("acc", "max")["lr"] == 0.03  # lr 0.1 has a diverged seed: excluded
    mean, std, n = res.seed_stats("final_loss")
    np.testing.assert_allclose(mean, [0.5, 0.325, np.nan])
    np.testing.assert_allclose(std, [0.4, 0.025, np.nan])
    assert n == 2


def test_best_without_a_mode_takes_the_direction_from_the_name_or_refuses_in_one_line():
    res = seeded_result()  # seed means: final_loss [0.5, 0.325, -], acc [0.5, 0.65, -]
    assert res.best("final_loss")["lr"] == 0.03
    assert res.best("acc")["lr"] == 0.03  # was "min": lr 0.01, the worst accuracy
    assert res.best("acc", "min")["lr"] == 0.01  # a mode given is obeyed
    odd = _result.SweepResult(grid=res.grid, metrics={"p": np.ones(res.grid.shape)})
    with pytest.raises(ValueError, match=r"best\('p'\): is 'p' better lower or higher\?") as e:
        odd.best("p")
    assert "\n" not in str(e.value) and "mode='min'" in str(e.value)
    both = _result.SweepResult(grid=res.grid, metrics={"loss_acc": np.ones(res.grid.shape)})
    with pytest.raises(ValueError, match="better lower or higher"):
        both.best("loss_acc")  # words of both kinds: no direction either
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
        res.best("acc", "best")


@pytest.mark.parametrize("metric, value", [("acc", "0.9"), ("final_loss", "0.1")])
def test_a_heatmap_outlines_the_best_cell_by_the_names_direction_without_being_asked(metric, value):
    grid = sweep.product(lr=[0.01, 0.03], momentum=[0.0, 0.9])
    acc = np.array([[0.9, 0.1], [0.2, 0.3]])
    loss = np.array([[0.5, 0.6], [0.7, 0.1]])
    res = _result.SweepResult(grid=grid, metrics={"acc": acc, "final_loss": loss})

    def outlined(fig):  # the labels of the cells outlined in red
        ax = fig.axes[0]
        boxes = [p for p in ax.patches if p.get_edgecolor()[:3] == (1, 0, 0)]
        inside = lambda t, b: b.contains_point(ax.transData.transform(t.get_position()))
        return [t.get_text() for b in boxes for t in ax.texts if inside(t, b)]

    assert outlined(res.heatmap(metric, "lr", "momentum")) == [value]  # was: none without best=
    assert outlined(res.heatmap(metric, "lr", "momentum", best=None)) == []
    other = _result.SweepResult(grid=grid, metrics={"p": acc})
    assert outlined(other.heatmap("p", "lr", "momentum")) == []  # the name tells no direction


def test_heatmap_shows_the_seed_mean_and_with_std_the_spread():
    grid = sweep.product(lr=[0.01, 0.03], momentum=[0.0, 0.9]).with_seeds(3)
    vals = np.random.default_rng(0).uniform(size=grid.shape)
    res = _result.SweepResult(grid=grid, metrics={"final_loss": vals})
    mean = plot.cell_values(res, "final_loss", "lr", "momentum")
    spread = plot.cell_values(res, "final_loss", "lr", "momentum", std=True)
    for i in range(2):
        for j in range(2):
            seeds = [vals[i, j, s] for s in range(3)]
            assert mean[j, i] == pytest.approx(sum(seeds) / 3)
            assert spread[j, i] == pytest.approx(
                np.sqrt(sum((v - sum(seeds) / 3) ** 2 for v in seeds) / 3)
            )
    fig = res.heatmap("final_loss", "lr", "momentum", std=True, best="min")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert all(t.startswith("±") for t in texts)
    assert fig.axes[0].get_title() == "final_loss, std over 3 seeds"
    assert res.heatmap("final_loss", "lr", "momentum").axes[0].get_title() == (
        "final_loss, mean over 3 seeds"
    )


def test_the_heatmap_title_names_every_averaged_axis_with_its_size_in_words():
    grid = sweep.product(lr=[0.01, 0.03], momentum=[0.0, 0.9], wd=[0.0, 1e-4, 1e-3]).with_seeds(2)
    res = _result.SweepResult(grid=grid, metrics={"m": np.ones(grid.shape)})
    assert plot.averaged_over(res, "lr", "momentum") == "mean over 3 values of wd and 2 seeds"
    assert (
        plot.averaged_over(res, "lr", "wd", std=True) == "std over 2 values of momentum and 2 seeds"
    )
    one_seed = _result.SweepResult(
        grid=sweep.product(lr=[0.01], momentum=[0.0]).with_seeds(1),
        metrics={"m": np.ones((1, 1, 1))},
    )
    assert plot.averaged_over(one_seed, "lr", "momentum") == ""  # nothing was averaged
    assert one_seed.heatmap("m", "lr", "momentum").axes[0].get_title() == "m"


def test_a_fraction_is_shown_in_percent_as_the_tables_print_it():
    grid = sweep.product(lr=[0.01, 0.03], momentum=[0.0, 0.9]).with_seeds(2)
    acc = np.array([[[0.8721, 0.8721], [0.5, 0.6]], [[0.9, 0.92], [0.1, 0.1]]])
    res = _result.SweepResult(grid=grid, metrics={"acc": acc})
    # SweepResult.heatmap names its keywords (percent not yet among them): the function itself
    fig = plot.heatmap(res, "acc", "lr", "momentum", label="test accuracy", percent=True)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["10.00%", "55.00%", "87.21%", "91.00%"]
    bar = fig.axes[1]
    assert bar.get_ylabel() == "test accuracy (%)" and bar.get_ylim() == pytest.approx((10, 91))
    points = res.scatter("acc", "lr", label="test accuracy", percent=True)
    assert points.axes[0].get_ylabel() == "test accuracy (%)"
    assert points.axes[0].get_ylim()[1] > 50


# ---- scatter plots -------------------------------------------------------------------------


@pytest.mark.parametrize("y", ["momentum", None])
@pytest.mark.parametrize("seeds", [None, 2])
def test_a_scatter_where_every_configuration_diverged_is_grey_and_does_not_crash(
    tmp_path, y, seeds
):
    """An all-diverged --search wrote results.json, then died in the scatter: a log axis with
    nothing on it ('Data cannot be log-scaled')."""
    from matplotlib.figure import Figure

    grid = sweep.sample(6, method="random", seed=0, lr=sweep.log_uniform(1e-3, 0.3),
                        momentum=sweep.uniform(0, 0.9))  # fmt: skip
    grid = grid.with_seeds(seeds) if seeds else grid
    res = _result.SweepResult(grid=grid, metrics={"final_loss": np.full(grid.shape, np.nan)})
    assert res.diverged.all()
    for log_color in (None, False):
        fig = res.scatter("final_loss", "lr", y, tmp_path / "s.png", log=["lr"], best="min",
                          log_color=log_color)  # fmt: skip
        assert isinstance(fig, Figure) and (tmp_path / "s.png").stat().st_size > 5_000
        ax = fig.axes[0]
        assert ax.get_title().endswith("(all 6 configurations diverged)")
        assert ax.get_facecolor()[:3] == pytest.approx((0.88,) * 3)
        low, high = ax.get_xlim()
        lr = grid.coords()["lr"]
        assert ax.get_xscale() == "log" and low < lr.min() and lr.max() < high
    titled = res.scatter("final_loss", "lr", y, title="sgd: loss")
    assert titled.axes[0].get_title() == "sgd: loss (every configuration diverged)"


def test_a_scatter_with_no_value_and_none_diverged_says_so():
    grid = sweep.sample(4, method="random", seed=0, lr=sweep.log_uniform(1e-3, 0.3),
                        momentum=sweep.uniform(0, 0.9))  # fmt: skip
    nan = np.full(grid.shape, np.nan)  # trials that halving stopped: no value, not diverged
    marks = (np.zeros(grid.shape, bool), np.full(grid.shape, -1))
    res = _result.SweepResult(grid=grid, metrics={"final_loss": nan}, divergence=marks)
    for y in ("momentum", None):
        fig = res.scatter("final_loss", "lr", y, log=True)
        assert fig.axes[0].get_title() == "final_loss (4 configurations, none with a value)"


def test_the_diverged_crosses_of_a_one_hyperparameter_scatter_lie_on_its_axes():
    """The crosses sit on the bottom edge (an axes transform): they set no data limit, and the
    diverged trials at the largest learning rates fell off the right of the axes."""
    grid = sweep.sample(8, method="random", seed=0, lr=sweep.log_uniform(1e-3, 1.0))
    lr = grid.coords()["lr"]
    res = _result.SweepResult(grid=grid, metrics={"final_loss": np.where(lr > 0.1, np.nan, lr)})
    assert res.diverged.sum() == 3
    fig = res.scatter("final_loss", "lr", log=["lr"])
    low, high = fig.axes[0].get_xlim()
    assert low < lr.min() and lr.max() < high


# ---- save and load -------------------------------------------------------------------------


def test_save_and_load_round_trip_everything_exactly(tmp_path):
    grid = (
        sweep.product(lr=[0.05, 1e20]) * sweep.zipped(momentum=[0.0, 0.9], nesterov=[False, True])
    ).with_seeds([3, 5])

    def fn(h, key, x, y):
        out = regression(h, key, x, y)
        return {"loss": out["loss"], "final": (out["final_loss"], [out["w"]]), "none": None}

    res = sweep.sweep(fn, grid, args=(X, Y))
    res.eval_seconds = 0.125
    assert res.diverged.any() and not res.diverged.all()
    res.save(tmp_path / "r.npz")
    back = sweep.SweepResult.load(tmp_path / "r.npz")
    assert back.grid.names == grid.names and back.grid.params == grid.params
    for a, b in zip(grid.axes, back.grid.axes):
        for k in a.columns:
            assert b.columns[k].dtype == a.columns[k].dtype
            np.testing.assert_array_equal(b.columns[k], a.columns[k])
    assert jax.tree.structure(back.metrics) == jax.tree.structure(res.metrics)
    for x, y in zip(jax.tree.leaves(res.metrics), jax.tree.leaves(back.metrics)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)  # bit-exact, NaN and inf included
    np.testing.assert_array_equal(back.diverged, res.diverged)
    np.testing.assert_array_equal(back.diverged_step, res.diverged_step)
    for k in ("compile_seconds", "train_seconds", "eval_seconds", "divergence_factor", "history"):
        assert getattr(back, k) == getattr(res, k), k
    assert back.devices == tuple(str(d) for d in res.devices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert repr(back.rows()) == repr(res.rows())  # NaN included
    with np.load(tmp_path / "r.npz", allow_pickle=False) as f:  # numpy reads it as an .npz
        np.testing.assert_array_equal(f["diverged"], res.diverged)


def test_load_refuses_a_file_that_is_not_a_saved_result_in_one_line(tmp_path):
    import zipfile

    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with zipfile.ZipFile(tmp_path / "foreign.npz", "w") as z:
        z.writestr("result.json", '{"format": "something else", "version": 1}')
    for name, why in (
        ("missing.npz", "cannot read"),
        ("text.npz", "is not a saved jaxmom SweepResult"),
        ("other.npz", "is not a saved jaxmom SweepResult"),
        ("foreign.npz", "holds something else version 1"),
    ):
        with pytest.raises(ValueError, match=why) as e:
            sweep.SweepResult.load(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value), e.value


def test_a_halving_result_with_nan_saves_strict_json_and_loads_equal(tmp_path):
    import json
    import math
    import zipfile

    from toy_problem import BOOM, LRS, ONES, toy_eval, toy_init, toy_loss, toy_tx

    res = sweep.fit(
        sweep.zipped(lr=LRS, boom=BOOM), init=toy_init, loss=toy_loss, optimizer=toy_tx,
        train=(ONES,), batch_size=1, epochs=3, eval=(ONES,), evaluate=toy_eval, progress=False,
        chunk_size=None, halving=sweep.Halving(eta=3, metric="dist"),
    )  # fmt: skip
    assert np.isnan(res.metrics["p"]).any()  # the stopped trials
    res.info["search"] = {"best": float("nan"), "spread": [1.0, float("inf")]}
    res.eval_seconds = float("nan")
    res.save(tmp_path / "r.npz")

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    with zipfile.ZipFile(tmp_path / "r.npz") as z:
        meta = json.loads(z.read("result.json"), parse_constant=refuse)
    assert meta["eval_seconds"] is None and meta["info"]["search"]["spread"] == [1.0, None]
    back = sweep.SweepResult.load(tmp_path / "r.npz")
    assert back.metrics.keys() == res.metrics.keys()
    for k in res.metrics:
        assert back.metrics[k].dtype == res.metrics[k].dtype
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])  # NaN included
    np.testing.assert_array_equal(back.diverged, res.diverged)
    np.testing.assert_array_equal(back.diverged_step, res.diverged_step)
    assert back.info["halving"] == res.info["halving"]
    assert back.info["search"] == {"best": None, "spread": [1.0, None]}  # null: NaN was meant
    assert math.isnan(back.eval_seconds) and back.train_seconds == res.train_seconds


def saved_result(tmp_path):
    res = sweep.sweep(regression, sweep.product(lr=[0.05, 0.1], momentum=[0.9]), args=(X, Y))
    res.save(tmp_path / "r.npz")
    return tmp_path / "r.npz"


def rebuilt(path, out, replace: dict, compression=None):
    """A copy of the archive ``path`` at ``out`` with the members of ``replace`` (name: bytes)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members.update(replace)
    with zipfile.ZipFile(out, "w", compression or zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out


def meta_of(path):
    import json
    import zipfile

    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("result.json"))


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda m: [], r"result.json holds a list, not a JSON object"),
        (lambda m: "x", r"result.json holds a str, not a JSON object"),
        (lambda m: 5, r"result.json holds a int, not a JSON object"),
        (lambda m: {**m, "metrics": 5}, r"result.json field 'metrics' holds int 5, not a pytree"),
        (lambda m: {k: v for k, v in m.items() if k != "metrics"}, r"field 'metrics' is missing"),
        (lambda m: {**m, "metrics": {"leaf": 99}}, r"field 'metrics' names leaf 99, not one of"),
        (lambda m: {**m, "metrics": {"leaf": True}}, r"field 'metrics' names leaf True"),
        (
            lambda m: {**m, "metrics": {"dict": 5}},
            r"field 'metrics' holds a dict that is not a list",
        ),
        (lambda m: {**m, "metrics": {"set": []}}, r"field 'metrics' holds a node of kind 'set'"),
        (lambda m: {**m, "params": [1]}, r"result.json field 'params' holds list"),
        (lambda m: {**m, "grid": {}}, r"field 'grid' is not a list of axes"),
        (lambda m: {**m, "grid": [{"name": "lr"}]}, r"field 'grid' is not a list of axes"),
        (lambda m: {k: v for k, v in m.items() if k != "devices"}, r"field 'devices' is missing"),
        (lambda m: {**m, "devices": 5}, r"field 'devices' is not a list of strings"),
        (lambda m: {**m, "train_seconds": "1"}, r"field 'train_seconds' is not a number or null"),
        (lambda m: {**m, "history": None}, r"field 'history' is not a string"),
        (lambda m: {**m, "info": []}, r"field 'info' is not an object"),
        (
            lambda m: {**m, "metrics": json_nest({"leaf": 0}, 200)},
            r"field 'metrics' nests deeper than 100 levels",
        ),
    ],
)
def test_load_refuses_a_malformed_result_json_in_one_line_naming_the_field(tmp_path, change, why):
    import json

    path = saved_result(tmp_path)
    bad = rebuilt(path, tmp_path / "bad.npz", {"result.json": json.dumps(change(meta_of(path)))})
    with pytest.raises(ValueError, match=why) as e:
        sweep.SweepResult.load(bad)
    message = str(e.value)
    assert message.startswith(f"{bad} is not a saved jaxmom SweepResult: ") and "\n" not in message


def json_nest(leaf, depth):
    for _ in range(depth):
        leaf = {"list": [leaf]}
    return leaf


def test_load_refuses_deeply_nested_json_in_one_line(tmp_path):
    path = saved_result(tmp_path)
    bad = rebuilt(path, tmp_path / "deep.npz", {"result.json": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(ValueError, match="is not a saved jaxmom SweepResult: .*too deeply") as e:
        sweep.SweepResult.load(bad)
    assert "\n" not in str(e.value)


def npy_header(shape, dtype=np.float64) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        },  # fmt: skip
    )
    return buffer.getvalue()


def test_load_refuses_a_member_claiming_more_than_it_holds_before_allocating(tmp_path):
    path = saved_result(tmp_path)
    huge = npy_header((2**42,)) + b"\0" * 64  # claims 32 TiB, holds 64 bytes
    bad = rebuilt(path, tmp_path / "claim.npz", {"diverged_step.npy": huge})
    assert bad.stat().st_size < 8_000
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError, match=r"diverged_step.npy declares shape \(4398046511104,\)"
        ):
            sweep.SweepResult.load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_load_refuses_a_zip_bomb_before_decompressing_it(tmp_path):
    import zipfile

    path = saved_result(tmp_path)
    zeros = npy_header((30_000_000,), np.float32) + bytes(120_000_000)  # 120 MB of zeros
    bad = rebuilt(path, tmp_path / "bomb.npz", {"metrics/0.npy": zeros}, zipfile.ZIP_DEFLATED)
    del zeros
    assert bad.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"would decompress to \d+ bytes .*zip bomb") as e:
            sweep.SweepResult.load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert peak < 5_000_000


def test_load_still_reads_a_recompressed_file(tmp_path):
    import zipfile

    path = saved_result(tmp_path)
    again = rebuilt(path, tmp_path / "deflated.npz", {}, zipfile.ZIP_DEFLATED)
    back = sweep.SweepResult.load(again)
    np.testing.assert_array_equal(
        back.metrics["loss"], sweep.SweepResult.load(path).metrics["loss"]
    )


def test_a_log_axis_of_a_scatter_is_labelled_in_plain_numbers_that_do_not_crowd():
    """Over a decade and a half matplotlib labelled the minor ticks too (2×10⁴ 3×10⁴4×10⁴...),
    into each other."""
    import re

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    grid = sweep.sample(6, method="random", seed=0, lr=sweep.log_uniform(1.2e4, 4.5e5),
                        momentum=sweep.uniform(0, 0.9))  # fmt: skip
    res = _result.SweepResult(grid=grid, metrics={"final_loss": np.ones(grid.shape)})
    fig = res.scatter("final_loss", "lr", "momentum", log=["lr"])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    labels = [
        t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high
    ]
    labels += [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    texts = [t.get_text() for t in labels]
    assert len(texts) >= 3 and all(re.fullmatch(r"[0-9.]+", t) for t in texts), texts
    boxes = sorted((t.get_window_extent(canvas.get_renderer()) for t in labels), key=lambda b: b.x0)
    assert all(b.x0 - a.x1 > 5 for a, b in zip(boxes, boxes[1:])), texts
