"""jaxmom.sweep.fit on real models: a Flax linen CNN with BatchNorm and Dropout and a Flax NNX MLP
with BatchNorm and Dropout equal, cell by cell, the plain loop of fit's contract (two seeds, a
partial last batch, chunked and unchunked, one and four devices); the model state goes through
halving, checkpoints and saved results; several named evaluation sets.

Internals pinned here, and why: ``_checkpoint.Checkpoint.save`` (a crash between two saves,
through tests/crash.py)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from crash import crash_after_save
from fit_problem import X as MLP_X
from fit_problem import Y as MLP_Y
from fit_problem import mlp_init, mlp_loss, mlp_metrics
from model_problem import (
    EVAL,
    IMAGE_EVAL,
    IMAGES,
    LABELS,
    X,
    Y,
    assert_cells_equal_the_loop,
    linen_eval,
    linen_init,
    linen_loss,
    nnx_eval,
    nnx_init,
    nnx_loss,
    sgd,
)  # fmt: skip

from jaxmom import sweep

LRS = [0.05, 0.3]
GRID = sweep.product(lr=LRS, momentum=[0.9]).with_seeds(2)  # 4 cells
CELLS = [((i, 0, s), {"lr": lr, "momentum": 0.9}, s) for i, lr in enumerate(LRS) for s in (0, 1)]
LINEN = dict(init=linen_init, loss=linen_loss, evaluate=linen_eval, train=(IMAGES, LABELS))
NNX = dict(init=nnx_init, loss=nnx_loss, evaluate=nnx_eval, train=(X, Y))
COMMON = dict(optimizer=sgd, batch_size=4, eval_batch_size=4, epochs=2, has_state=True,
              return_params=True, progress=False)  # fmt: skip


def loop_kw(problem, evals):
    return dict(train=problem["train"], evals=evals, batch_size=4, eval_batch_size=4, epochs=2)


def problem_of(kw):
    return kw["init"], kw["loss"], kw["evaluate"]


# ---- every cell equals the plain loop ------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_a_linen_cnn_with_batchnorm_and_dropout_equals_the_plain_loop_in_every_cell(chunk_size):
    res = sweep.fit(GRID, **LINEN, **COMMON, eval=IMAGE_EVAL, chunk_size=chunk_size)
    assert res.metrics["loss"].shape == (2, 1, 2, 6)  # 10 = 4 + 4 + 2: the partial batch kept
    assert set(res.metrics) == {"loss", "epoch_loss", "val/accuracy", "val/nll", "test/accuracy",
                                "test/nll"}  # fmt: skip
    assert res.model_state["batch_stats"]["BatchNorm_0"]["mean"].shape == (2, 1, 2, 4)
    assert_cells_equal_the_loop(res, CELLS, problem_of(LINEN), **loop_kw(LINEN, IMAGE_EVAL))


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_an_nnx_mlp_with_batchnorm_dropout_and_a_keyed_evaluation_equals_the_plain_loop(
    chunk_size,
):
    res = sweep.fit(GRID, **NNX, **COMMON, eval=EVAL, chunk_size=chunk_size)
    assert res.metrics["loss"].shape == (2, 1, 2, 6)  # 11 = 4 + 4 + 3
    assert_cells_equal_the_loop(res, CELLS, problem_of(NNX), **loop_kw(NNX, EVAL))
    draws = res.metrics["test/draw"]  # the evaluation's keys: per seed and epoch, not per cell
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0, 0, 0], draws[0, 0, 1])


def test_without_a_seed_axis_every_cell_draws_the_keys_of_seed():
    grid = sweep.product(lr=LRS, momentum=[0.0, 0.9])
    res = sweep.fit(grid, **NNX, **COMMON, eval={"val": EVAL["val"]}, seed=7, chunk_size=None)
    cells = [((i, j), {"lr": lr, "momentum": m}, 7) for i, lr in enumerate(LRS)
             for j, m in enumerate([0.0, 0.9])]  # fmt: skip
    assert_cells_equal_the_loop(res, cells, problem_of(NNX), **loop_kw(NNX, {"val": EVAL["val"]}))


def test_a_loss_with_a_key_and_no_state_gets_the_contracts_keys():
    def loss(params, x, y, *, key):  # dropout on the inputs
        keep = jax.random.bernoulli(key, 0.7, x.shape)
        return mlp_loss(params, jnp.where(keep, x / 0.7, 0.0), y)

    res = sweep.fit(GRID, init=mlp_init, loss=loss, optimizer=sgd, train=(MLP_X, MLP_Y),
                    batch_size=16, epochs=2, eval=(MLP_X, MLP_Y), evaluate=mlp_metrics,
                    return_params=True, progress=False, chunk_size=3)  # fmt: skip
    assert res.model_state is None
    problem = (
        lambda key: (mlp_init(key), ()),
        lambda p, state, x, y, *, key: (loss(p, x, y, key=key), state),
        lambda p, state, x, y: mlp_metrics(p, x, y),
    )
    kw = dict(train=(MLP_X, MLP_Y), evals={None: (MLP_X, MLP_Y)}, batch_size=16,
              eval_batch_size=16, epochs=2)  # fmt: skip
    assert_cells_equal_the_loop(res, CELLS, problem, **kw)


@pytest.mark.slow
def test_four_devices_equal_the_plain_loop():
    code = """
        import jax
        from model_problem import *
        from jaxmom import sweep
        assert jax.device_count() == 4, jax.devices()
        grid = sweep.product(lr=[0.05, 0.3, 0.1], momentum=[0.9]).with_seeds(2)  # 6 cells
        common = dict(optimizer=sgd, batch_size=4, eval_batch_size=4, epochs=2, has_state=True,
                      return_params=True, progress=False, chunk_size=1)  # 2 chunks of 4 cells
        cells = [((i, 0, s), {"lr": lr, "momentum": 0.9}, s)
                 for i, lr in enumerate([0.05, 0.3, 0.1]) for s in (0, 1)]
        for problem, train, evals in [
            ((linen_init, linen_loss, linen_eval), (IMAGES, LABELS), IMAGE_EVAL),
            ((nnx_init, nnx_loss, nnx_eval), (X, Y), EVAL),
        ]:
            init, loss, evaluate = problem
            res = sweep.fit(grid, init=init, loss=loss, evaluate=evaluate, train=train,
                            eval=evals, **common)
            assert len(res.devices) == 4
            assert_cells_equal_the_loop(res, cells, problem, train=train, evals=evals,
                                        batch_size=4, eval_batch_size=4, epochs=2)
        print("ok")
    """
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok"]


# ---- the model state through halving, checkpoints and saved results ----------------------------


def test_halving_carries_each_survivors_model_state_and_names_the_metric_it_selected_on():
    grid = sweep.product(lr=[0.02, 0.1, 0.3, 0.6], momentum=[0.9]).with_seeds(2)
    h = sweep.Halving(eta=2, metric="val/accuracy")
    res = sweep.fit(grid, **NNX, **COMMON, eval=EVAL, halving=h, chunk_size=3)
    assert h.mode == "max" and res.info["selected_on"] == "val/accuracy"
    trained = res.metrics["epochs_trained"]
    survivors = [((i, 0, s), {"lr": lr, "momentum": 0.9}, s)
                 for i, lr in enumerate([0.02, 0.1, 0.3, 0.6]) for s in (0, 1)
                 if trained[i, 0, s] == 2]  # fmt: skip
    assert len(survivors) == 4  # two trials of two seeds
    assert_cells_equal_the_loop(res, survivors, problem_of(NNX), **loop_kw(NNX, EVAL))


def test_a_run_with_state_crashed_at_a_checkpoint_resumes_bit_identically(tmp_path, monkeypatch):
    kw = dict(**NNX, **COMMON, eval=EVAL, chunk_size=3)
    whole = sweep.fit(GRID, **kw)
    # after the second save (chunk 1's last epoch): chunk 2, epoch 1 never saved
    crash_after_save(monkeypatch, 2, lambda: sweep.fit(GRID, **kw, checkpoint_dir=tmp_path))
    resumed = sweep.fit(GRID, **kw, checkpoint_dir=tmp_path)
    assert resumed.info["resumed_epochs"] == [[[2, 2]], [[2, 0]]]  # chunk 1 (cells 0-2) done
    for k in whole.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], whole.metrics[k], err_msg=k)
    for a, b in zip(jax.tree.leaves((whole.params, whole.model_state)),
                    jax.tree.leaves((resumed.params, resumed.model_state)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


# after the first save, before the first rung's second chunk saves; in the second rung
@pytest.mark.parametrize("saves", [1, 3])
def test_halving_with_state_crashed_at_a_checkpoint_resumes_bit_identically(
    tmp_path, monkeypatch, saves
):
    grid = sweep.product(lr=[0.02, 0.1, 0.3, 0.6], momentum=[0.9]).with_seeds(2)
    h = sweep.Halving(eta=2, metric="val/accuracy")
    kw = dict(**NNX, **COMMON, eval=EVAL, chunk_size=3, halving=h)
    whole = sweep.fit(grid, **kw)
    crash_after_save(monkeypatch, saves, lambda: sweep.fit(grid, **kw, checkpoint_dir=tmp_path))
    resumed = sweep.fit(grid, **kw, checkpoint_dir=tmp_path)
    assert np.sum(resumed.info["resumed_epochs"]) > 0  # it did resume
    for k in whole.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], whole.metrics[k], err_msg=k)
    for a, b in zip(jax.tree.leaves((whole.params, whole.model_state)),
                    jax.tree.leaves((resumed.params, resumed.model_state)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_a_result_keeps_its_model_state_through_save_load_take_and_concat(tmp_path):
    res = sweep.fit(GRID, **LINEN, **COMMON, eval=IMAGE_EVAL, chunk_size=None)
    res.save(tmp_path / "r.zip")
    back = sweep.SweepResult.load(tmp_path / "r.zip")
    leaves = lambda r: jax.tree.leaves(r.model_state)
    assert jax.tree.structure(back.model_state) == jax.tree.structure(res.model_state)
    for a, b in zip(leaves(res), leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    parts = [res.take("lr", [i]) for i in range(2)]
    assert leaves(parts[1])[0].shape[0] == 1
    joined = sweep.SweepResult.concat(parts, "lr")
    for a, b in zip(leaves(res), leaves(joined), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- several evaluation sets --------------------------------------------------------------------


def test_named_evaluation_sets_name_their_metrics_and_each_equals_its_set_alone():
    grid = sweep.product(lr=[0.05, 0.3], momentum=[0.0, 0.9])
    kw = dict(init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(MLP_X, MLP_Y), batch_size=16,
              epochs=2, evaluate=mlp_metrics, progress=False, chunk_size=None)  # fmt: skip
    sets = {"val": (MLP_X[:25], MLP_Y[:25]), "test": (MLP_X[25:], MLP_Y[25:])}
    res = sweep.fit(grid, **kw, eval=sets)
    assert list(res.metrics) == ["loss", "epoch_loss", "val/accuracy", "val/test_loss",
                                 "test/accuracy", "test/test_loss"]  # fmt: skip
    for name, data in sets.items():
        alone = sweep.fit(grid, **kw, eval=data)  # the tuple form: evaluate's own names
        assert list(alone.metrics) == ["loss", "epoch_loss", "accuracy", "test_loss"]
        for k in ("accuracy", "test_loss"):
            np.testing.assert_allclose(res.metrics[f"{name}/{k}"], alone.metrics[k], rtol=1e-6)
        np.testing.assert_array_equal(res.metrics["loss"], alone.metrics["loss"])
    best = res.best("val/accuracy_last")  # maximised: its name says accuracy
    acc = res.metric_grid("val/accuracy_last")
    assert best["val/accuracy_last"] == acc.max()
    assert "val/accuracy_last" in res.table() and "val/accuracy_last" in res.rows()[0]


def test_a_named_set_is_what_halving_and_optuna_select_on():
    optuna = pytest.importorskip("optuna")
    kw = dict(init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(MLP_X, MLP_Y), batch_size=16,
              epochs=2, evaluate=mlp_metrics, progress=False,
              eval={"val": (MLP_X[:25], MLP_Y[:25]), "test": (MLP_X[25:], MLP_Y[25:])})  # fmt: skip
    h = sweep.Halving(eta=2, metric="test/accuracy")
    res = sweep.fit(sweep.product(lr=[0.05, 0.3], momentum=[0.0, 0.9]), **kw, halving=h)
    assert res.info["selected_on"] == "test/accuracy" and h.mode == "max"
    study = optuna.create_study(direction="maximize")
    space = {"lr": sweep.log_uniform(0.01, 0.3), "momentum": sweep.choice([0.0, 0.9])}
    (one,) = sweep.optuna_search(study, space, kw, trials=2, batch=2, metric="val/accuracy")
    assert one.info["selected_on"] == "val/accuracy"
    assert study.trials[0].value == pytest.approx(one.metrics["val/accuracy"][0, -1])
    with pytest.raises(ValueError, match="the study would minimize 'val/accuracy'"):
        sweep.optuna_search(optuna.create_study(), space, kw, trials=1, batch=1,
                            metric="val/accuracy")  # fmt: skip


@pytest.mark.parametrize(
    "eval, message",
    [
        ({}, r"^eval must name at least one evaluation set, got an empty dict$"),
        ({"a/b": (MLP_X, MLP_Y)}, r"^eval's set names must be non-empty strings without '/'"),
        ({"val": (MLP_X, MLP_Y[:3])}, r"^eval\['val'\] arrays need equal leading"),
    ],
)
def test_bad_evaluation_sets_are_refused_in_one_line(eval, message):
    with pytest.raises(ValueError, match=message):
        sweep.fit(GRID, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(MLP_X, MLP_Y),
                  batch_size=16, epochs=1, eval=eval, evaluate=mlp_metrics)  # fmt: skip
