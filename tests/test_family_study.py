"""The momentum family in the MNIST study: registry entries, flags, --study family, and
schedule-free SGD tested at its evaluation parameters."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmom
from jaxmom.studies.mnist import cli, studies, train
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.model import MLP, preprocess
from jaxmom.studies.mnist.registry import OPTIMIZERS
from jaxmom.studies.mnist.studies import FAMILY_STUDY
from jaxmom.studies.mnist.train import train_and_evaluate

FAMILY = (
    "adamw",
    "nadam",
    "radam",
    "adamax",
    "lion",
    "qhm",
    "qhadam",
    "aggmo",
    "schedule_free_sgd",
)


def test_every_family_member_is_registered_with_its_flags():
    assert set(FAMILY) <= set(OPTIMIZERS)
    for name in FAMILY:
        spec = OPTIMIZERS[name]
        assert spec.factory is getattr(jaxmom, name)
        spec.make({}, {})  # the defaults are valid
    text = " ".join(cli.build_parser().format_help().split())
    for flag in ("--nu X", "--nu1 X", "--nu2 X", "--momentum-decay X", "--warmup-steps N"):
        assert flag in text
    assert "--betas X damping of each of AggMo's K velocities (aggmo); an array" in text
    assert (
        "--decoupled-weight-decay AdamW-style weight decay (nadam, radam, qhm, qhadam, aggmo)"
        in text
    )
    assert "--study {tutorials,family}" in text
    # the defaults are named by the flags that set them (schedule-free's r is --average-power)
    assert (
        "schedule_free_sgd lr=1 b1=0.9 warmup-steps=0 weight-decay=0 weight-lr-power=2 "
        "average-power=0" in text
    )


def test_schedule_free_sgd_is_tested_at_its_evaluation_parameters(tiny_mnist):
    """The record's accuracy is the accuracy at x (schedule_free_eval_params of the final state),
    measured here from a plain loop, and differs from the accuracy at the trained y."""
    run_config = Config("schedule_free_sgd", {"learning_rate": 0.5}, epochs=1, batch_size=32)
    run = train_and_evaluate(run_config, tiny_mnist)
    model = MLP(init_scheme="torch")
    params = train.functions("sgd", (), "torch").init(jax.random.split(jax.random.key(0))[0])
    tx = jaxmom.schedule_free_sgd(0.5)
    state = tx.init(params)
    data_key = jax.random.split(jax.random.key(0))[1]
    order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, 0), 192))
    x_all, y_all = preprocess(jnp.asarray(tiny_mnist.train_images)), tiny_mnist.train_labels

    def mean_loss(p, x, y):
        logits = jnp.asarray(model.apply({"params": p}, x))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    for i in range(0, 192, 32):
        idx = order[i : i + 32]
        grads = jax.grad(mean_loss)(params, x_all[idx], y_all[idx])
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    x = jaxmom.schedule_free_eval_params(state, params)
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # the trained y
    assert any(
        np.max(np.abs(a - b)) > 1e-4 for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(params))
    )
    test = preprocess(jnp.asarray(tiny_mnist.test_images))

    def accuracy(p):
        logits = jnp.asarray(model.apply({"params": p}, test))
        return float(jnp.mean(jnp.argmax(logits, -1) == tiny_mnist.test_labels))

    assert run.record["test_accuracy"] == pytest.approx(accuracy(x), abs=1 / 64 + 1e-6)


def test_study_family_trains_every_member_from_the_same_start(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    out = tmp_path / "family"
    argv = [
        "--study",
        "family",
        "--epochs",
        "1",
        "--batch-size",
        "48",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    records = json.loads((out / "results.json").read_text())["runs"]
    assert [r["label"] for r in records] == [run.label for run in FAMILY_STUDY]
    assert {r["optimizer"] for r in records} >= set(FAMILY)
    assert all(np.isfinite(r["final_train_loss"]) for r in records)
    first = {r["logged_loss"][0] for r in records}  # the same weights and first batch
    assert max(first) - min(first) < 1e-6
    assert (out / "loss_curves.png").stat().st_size > 10_000


def test_sweep_over_a_family_hyperparameter(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.setattr(cli, "load_data", lambda args: tiny_mnist)
    argv = ["--sweep", "--optimizer", "qhm", "--lr", "0.1", "--nu", "0,0.7,1", "--epochs", "1"]
    assert cli.main([*argv, "--out", str(tmp_path / "grid")]) == 0
    sweep = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert sweep["sweep"]["grid"] == {"nu": [0.0, 0.7, 1.0]}
    assert [r["hyperparameters"]["nu"] for r in sweep["runs"]] == [0.0, 0.7, 1.0]


def test_study_with_optimizer_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--study", "family", "--optimizer", "adam"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--study" in err


def test_family_study_settings_are_registered(monkeypatch):
    for run in FAMILY_STUDY:
        Config(run.optimizer, dict(run.hparams))  # valid, and only known hyperparameters
    assert studies.STUDIES["family"] is FAMILY_STUDY
