"""jaxmom.sweep.fit(..., halving=Halving(...)): successive halving keeps exactly the right survivors
(a problem whose ranking is known by hand), a survivor's curve equals the trial trained alone, each
rung width compiles once and a rerun compiles nothing, stopped trials are NaN but not diverged."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fit_problem import normal
from toy_problem import BOOM, LRS, ONES, TRACES, toy_eval, toy_init, toy_loss, toy_tx

import jaxmom
from jaxmom import sweep

# Internals pinned here: _setup.setup (a bad cell refused before any compile), _halving's
# _trials and _survivors (the ranking rule, by hand).
from jaxmom.sweep import _halving, _setup


def toy_fit(grid, **kw):
    args = dict(
        init=toy_init, loss=toy_loss, optimizer=toy_tx, train=(ONES,), batch_size=1, epochs=9,
        eval=(ONES,), evaluate=toy_eval, progress=False, chunk_size=None,
    )  # fmt: skip
    return sweep.fit(grid, **{**args, **kw})


def test_the_schedule_of_81_trials_with_eta_3_over_9_epochs():
    h = sweep.Halving(eta=3)
    assert h.rungs(81, 9) == [(1, 81), (3, 27), (9, 9)]
    assert h.rungs(9, 4) == [(1, 9), (3, 3), (4, 1)]
    assert sweep.Halving(eta=2, min_epochs=2).rungs(10, 5) == [(2, 10), (4, 5), (5, 2)]


def test_halving_keeps_exactly_the_right_survivors_and_drops_a_diverged_trial_first():
    grid = sweep.zipped(lr=LRS, boom=BOOM)
    h = sweep.Halving(eta=3, metric="dist", mode="min")
    res = toy_fit(grid, halving=h)
    # By hand: after epoch 1 (9 trials), keep 3: lr 3.0 (dist 0) diverged, so 2.9, 2.5, 3.6
    # (dist 0.4, 2.0, 2.4); after epoch 3, keep 1: 12|lr - 1| = 18 (2.5), 22.8, 31.2.
    epochs = dict(zip(LRS, res.metrics["epochs_trained"].tolist()))
    assert epochs == {0.5: 1, 1.0: 1, 1.5: 1, 2.0: 1, 2.5: 9, 2.9: 3, 3.0: 1, 3.6: 3, 4.0: 1}
    assert res.metrics["rung"].tolist() == [0, 0, 0, 0, 2, 1, 0, 1, 0]
    assert res.diverged.tolist() == [False] * 6 + [True] + [False] * 2
    assert res.diverged_step[6] == 3  # the loss 1 - 3 lr + 49 passed 10x its first value
    info = res.info["halving"]
    assert info["rungs"] == [{"epochs": 1, "trials": 9}, {"epochs": 3, "trials": 3},
                             {"epochs": 9, "trials": 1}]  # fmt: skip
    assert info["config_epochs"] == 6 * 1 + 2 * 3 + 1 * 9 and info["full_config_epochs"] == 81
    # Each trial's p equals the hand formula 4 lr e for every epoch it trained, NaN after.
    for i, lr in enumerate(LRS):
        e = epochs[lr]
        np.testing.assert_allclose(res.metrics["p"][i, :e], 4 * lr * np.arange(1, e + 1), rtol=1e-6)
        assert (
            np.isnan(res.metrics["p"][i, e:]).all()
            and np.isnan(res.metrics["loss"][i, 4 * e :]).all()
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = res.best("dist_last")
    assert best["lr"] == 2.5 and best["dist_last"] == pytest.approx(abs(36 * 2.5 - 12))


def test_a_halving_result_saves_and_loads_with_its_record_and_params(tmp_path):
    res = toy_fit(sweep.zipped(lr=LRS, boom=BOOM), halving=sweep.Halving(metric="dist"),
                  return_params=True)  # fmt: skip
    np.testing.assert_allclose(res.params["p"], 4 * np.array(LRS) * res.metrics["epochs_trained"])
    res.save(tmp_path / "halving.npz")
    back = sweep.SweepResult.load(tmp_path / "halving.npz")
    assert back.info == res.info
    np.testing.assert_array_equal(back.params["p"], res.params["p"])
    np.testing.assert_array_equal(back.diverged, res.diverged)
    for k in res.metrics:
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])


def test_each_rung_width_compiles_once_and_a_rerun_compiles_nothing():
    grid = sweep.zipped(lr=[v * 1.01 for v in LRS], boom=BOOM)  # fresh values, same shapes
    h = sweep.Halving(eta=3, metric="dist")

    def fresh_loss(params, x):  # its own function: its own programs
        return toy_loss(params, x)

    # fit's setup may trace a new loss once, abstractly, to look at it (on CPU: does it
    # convolve?); that look is made here first, so that what is counted below is compiling.
    _setup.setup(
        grid,
        init=toy_init,
        loss=fresh_loss,
        optimizer=toy_tx,
        train=(ONES,),
        batch_size=1,
        epochs=4,
    )
    TRACES.clear()
    first = toy_fit(grid, halving=h, loss=fresh_loss, epochs=4)
    assert len(TRACES) == 3 and first.compile_seconds > 0  # widths 9, 3 and 1: one trace each
    TRACES.clear()
    again = toy_fit(grid, halving=h, loss=fresh_loss, epochs=4)
    assert TRACES == [] and again.compile_seconds == 0.0
    np.testing.assert_array_equal(again.metrics["p"], first.metrics["p"])


# ---- a survivor's curve is its curve trained alone ---------------------------------------------

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 40).astype(np.int32)


def mlp_init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": normal(k1, (6, 16)) * 0.5, "w2": normal(k2, (16, 3)) * 0.5}  # fast to compile


def mlp_loss(params, x, y):
    logits = jnp.tanh(x @ params["w1"]) @ params["w2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def mlp_eval(params, x, y):
    logits = jnp.tanh(x @ params["w1"]) @ params["w2"]
    return {"accuracy": jnp.argmax(logits, -1) == y}


def sgd(h):
    return jaxmom.sgd(h["lr"], h["momentum"])


def test_a_survivor_with_seeds_trains_exactly_as_the_trial_alone():
    grid = sweep.product(lr=[0.01, 0.05, 0.2, 0.5], momentum=[0.0, 0.9]).with_seeds(2)
    common = dict(
        init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=4,
        eval=(X, Y), evaluate=mlp_eval, progress=False, return_params=True,
    )  # fmt: skip
    res = sweep.fit(grid, halving=sweep.Halving(eta=2, metric="epoch_loss"), chunk_size=3, **common)
    trained = res.metrics["epochs_trained"]
    assert sorted(np.unique(trained).tolist()) == [1, 2, 4] and (trained == 4).sum() == 2 * 2
    assert (trained[..., 0] == trained[..., 1]).all()  # a trial keeps all its seeds
    # Survivors were ranked by the seed mean of the epoch loss at each rung: recompute from the
    # curves themselves (which the next asserts tie to single-trial runs).
    mean1 = res.metrics["epoch_loss"][..., 0].mean(-1).reshape(-1)
    assert set(np.argsort(mean1)[:4]) == set(np.flatnonzero(trained[..., 0].reshape(-1) >= 2))
    for i, lr in enumerate([0.01, 0.05, 0.2, 0.5]):
        for j, mu in enumerate([0.0, 0.9]):
            e = int(trained[i, j, 0])
            alone = sweep.fit(sweep.product(lr=[lr], momentum=[mu]).with_seeds(2), **common)
            steps = 3 * e  # 40 examples in batches of 16: 3 steps per epoch
            np.testing.assert_allclose(
                res.metrics["loss"][i, j, :, :steps], alone.metrics["loss"][0, 0, :, :steps],
                rtol=1e-6, atol=1e-7,
            )  # fmt: skip
            np.testing.assert_allclose(
                res.metrics["accuracy"][i, j, :, :e], alone.metrics["accuracy"][0, 0, :, :e]
            )
            if e == 4:
                jax.tree.map(
                    lambda a, b: np.testing.assert_allclose(a[i, j], b[0, 0], rtol=1e-5, atol=1e-6),
                    res.params, alone.params,
                )  # fmt: skip
    assert not res.diverged.any()  # the NaN after a stop is not divergence


def test_survivors_are_ranked_by_their_mean_over_seeds():
    grid = sweep.product(lr=[1.0, 2.0]).with_seeds(2)
    trials = _halving._trials(grid)
    assert trials.tolist() == [[0, 1], [2, 3]]
    # Trial 0 has the single best seed (0.1) but the worse mean (0.5); trial 1 the better mean.
    results = {"loss": np.ones((4, 2), np.float32),
               "epoch_loss": np.array([[0.1], [0.9], [0.3], [0.35]], np.float32)}  # fmt: skip
    h = sweep.Halving(eta=2)
    assert _halving._survivors(h, trials, np.arange(2), results, 1, 2, 1, 10.0).tolist() == [1]
    h = sweep.Halving(eta=2, mode="max")
    assert _halving._survivors(h, trials, np.arange(2), results, 1, 2, 1, 10.0).tolist() == [0]


def test_without_a_mode_halving_ranks_in_the_direction_the_metric_name_tells():
    assert sweep.Halving().mode == "min"  # epoch_loss
    assert sweep.Halving(metric="val/accuracy").mode == "max"  # was "min": the worst survived
    assert sweep.Halving(metric="accuracy", mode="min").mode == "min"  # a mode given is obeyed
    assert repr(sweep.Halving(eta=3)) == (  # the checkpoint fingerprint of today's runs
        "Halving(eta=3, metric='epoch_loss', mode='min', min_epochs=1)"
    )
    with pytest.raises(ValueError, match=r"Halving: is 'p' better lower or higher\?") as e:
        sweep.Halving(metric="p")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sweep.Halving(eta=1), "eta must be an integer of at least 2, got 1"),
        (lambda: sweep.Halving(eta=2.5), "eta must be an integer of at least 2, got 2.5"),
        (lambda: sweep.Halving(mode="best"), "mode must be 'min' or 'max', got 'best'"),
        (lambda: sweep.Halving(min_epochs=0), "min_epochs must be an integer of at least 1"),
        (
            lambda: toy_fit(sweep.zipped(lr=LRS, boom=BOOM), halving=sweep.Halving(metric="acc")),
            r"metric 'acc' is neither 'epoch_loss' nor a name evaluate returns \['dist', 'p'\]",
        ),
    ],
)
def test_bad_halving_settings_are_refused_in_one_line_before_training(make, message):
    # fit's setup traces the loss once, abstractly, to check it: done first (or this test would
    # pass only after another had traced it), so that what is counted below is training
    _setup.setup(sweep.zipped(lr=LRS, boom=BOOM), init=toy_init, loss=toy_loss,
                 optimizer=toy_tx, train=(ONES,), batch_size=1, epochs=9)  # fmt: skip
    TRACES.clear()
    with pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value) and TRACES == []


def test_plots_of_a_halving_result_mark_stopped_trials_apart_from_diverged_ones():
    grid = sweep.product(lr=[2.5, 2.9, 3.6], boom=[0, 1])
    res = toy_fit(grid, halving=sweep.Halving(eta=3, metric="dist"), epochs=3)
    # After epoch 1: the three boom=1 trials diverged; of the others 2.9 and 2.5 go on, 3.6 stops.
    assert res.metrics["epochs_trained"].tolist() == [[3, 1], [3, 1], [1, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = res.heatmap("dist_last", "lr", "boom")
        texts = [t.get_text() for t in fig.axes[0].texts]  # rows: boom 0, then boom 1
        assert texts[2:] == ["-", "div", "div", "div"] and texts[0] not in ("-", "div")
        scatter = res.scatter("dist_last", "lr", "boom")
    crosses = [c for c in scatter.axes[0].collections if c.get_label() == "diverged"]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 3


def test_the_table_and_csv_give_each_trial_its_value_at_stop_by_hand(tmp_path):
    res = toy_fit(sweep.zipped(lr=LRS, boom=BOOM), halving=sweep.Halving(eta=3, metric="dist"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = res.rows()
        res.to_csv(tmp_path / "halving.csv")
    # By hand (as above): lr 2.5 trained 9 epochs, 2.9 and 3.6 three, every other one epoch;
    # p = 4 lr e after epoch e, so its value at stop is 4 lr epochs_trained.
    stopped = {0.5: 1, 1.0: 1, 1.5: 1, 2.0: 1, 2.5: 9, 2.9: 3, 3.0: 1, 3.6: 3, 4.0: 1}
    for r in rows:
        e = stopped[r["lr"]]
        assert r["stopped_epoch"] == e and r["p_at_stop"] == pytest.approx(4 * r["lr"] * e)
        assert np.isnan(r["p_last"]) == (e < 9)  # p_last is kept as it was
    assert [r["rung"] for r in rows] == [0, 0, 0, 0, 2, 1, 0, 1, 0]
    header = (tmp_path / "halving.csv").read_text().splitlines()[0].split(",")
    assert {"p_at_stop", "dist_at_stop", "epoch_loss_at_stop", "stopped_epoch", "rung"} <= set(
        header
    )
    assert "loss_at_stop" not in header  # per-step, not per-epoch
    # Values at stop from different rungs do not compare: best refuses them in one line.
    with pytest.raises(ValueError, match="different numbers of epochs") as e:
        res.best("dist_at_stop", mode="min")
    assert "\n" not in str(e.value)


def test_a_result_without_halving_has_no_columns_at_stop():
    res = toy_fit(sweep.zipped(lr=LRS[:2], boom=BOOM[:2]), epochs=2)
    assert not any(c.endswith("_at_stop") or c == "stopped_epoch" for c in res.rows()[0])


def test_the_scatter_of_a_halving_result_draws_every_trial_with_stopped_ones_faded():
    res = toy_fit(sweep.zipped(lr=LRS, boom=BOOM), halving=sweep.Halving(eta=3, metric="dist"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fig in (res.scatter("p_last", "lr"), res.scatter("p_last", "lr", "boom")):
            ax = fig.axes[0]
            points = {c.get_label(): c for c in ax.collections}
            faded = points["stopped early (value at stop)"]
            assert faded.get_alpha() is not None and faded.get_alpha() < 0.5
            assert len(faded.get_offsets()) == 7 and len(points["diverged"].get_offsets()) == 1
            drawn = sum(len(c.get_offsets()) for c in ax.collections if c.get_alpha() != 0)
            assert drawn >= 9  # every trial: 1 finished, 7 stopped, 1 diverged (+ the red circle)
            assert "successive halving: 9 trials, 1 trained to the end" in ax.get_title()
    xy = faded.get_offsets()
    np.testing.assert_allclose(sorted(np.asarray(xy)[:, 0]), [0.5, 1.0, 1.5, 2.0, 2.9, 3.6, 4.0])
    one = res.scatter("p_last", "lr")
    stop_y = dict(np.asarray(one.axes[0].collections[1].get_offsets()).tolist())
    assert stop_y[2.9] == pytest.approx(4 * 2.9 * 3, rel=1e-5) and stop_y[0.5] == pytest.approx(2.0)


def test_the_scatter_legend_names_only_what_it_draws():
    res = toy_fit(sweep.zipped(lr=LRS, boom=[0] * len(LRS)), halving=sweep.Halving(metric="dist"))
    assert not res.diverged.any()
    legend = res.scatter("dist_last", "lr").axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["stopped early (value at stop)"]
