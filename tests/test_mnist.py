"""jaxmom.mnist and experiments/mnist.py: the model against PyTorch, training against the seed
tutorials' own loop, resume, the vmappable train_fn, the CLI end to end, and the headline result."""

import csv
import dataclasses
import importlib.util
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxmom import datasets, mnist

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedded():
    return datasets.load_embedded()


@pytest.fixture(scope="module")
def programs():
    """One cache of compiled programs for the module: each optimizer compiles once per data shape."""
    return {}


def initial_params(seed, programs, init="torch"):
    """The run's initial parameters, through the same compiled program training uses."""
    return mnist.compiled_init(init, programs)(mnist.keys(jax.random.key(seed))[0])


def subset(data, n_train, n_test=200):
    return data._replace(
        train_images=data.train_images[:n_train],
        train_labels=data.train_labels[:n_train],
        test_images=data.test_images[:n_test],
        test_labels=data.test_labels[:n_test],
    )


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_torch_init_matches_nn_linear_and_flax_init_differs(programs):
    params = initial_params(3, programs)
    torch.manual_seed(0)
    for layer, (fan_in, fan_out) in (("Dense_0", (784, 200)), ("Dense_1", (200, 10))):
        reference = torch.nn.Linear(fan_in, fan_out)  # PyTorch's own default init
        kernel, bias = np.asarray(params[layer]["kernel"]), np.asarray(params[layer]["bias"])
        assert kernel.shape == (fan_in, fan_out) and bias.shape == (fan_out,)
        torch_bound = reference.weight.detach().abs().max().item()
        assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in)
        np.testing.assert_allclose(np.abs(kernel).max(), torch_bound, rtol=0.02)
        np.testing.assert_allclose(kernel.std(), reference.weight.detach().std().item(), rtol=0.05)
        assert np.abs(bias).max() <= 1 / np.sqrt(fan_in) and np.abs(bias).max() > 0.8 / np.sqrt(
            fan_in
        )
    flax_params = initial_params(3, programs, init="flax")
    assert not np.any(np.asarray(flax_params["Dense_0"]["bias"]))


def tutorial_transform(images):
    """The seed tutorials' data_tf, per image."""
    out = []
    for im in images:
        x = np.array(im, dtype="float32") / 255
        x = (x - 0.5) / 0.5
        out.append(x.reshape((-1,)))
    return torch.from_numpy(np.stack(out))


def torch_net(params):
    net = torch.nn.Sequential(torch.nn.Linear(784, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10))
    with torch.no_grad():
        for i, layer in ((0, "Dense_0"), (2, "Dense_1")):
            net[i].weight.copy_(torch.from_numpy(np.asarray(params[layer]["kernel"]).T.copy()))
            net[i].bias.copy_(torch.from_numpy(np.asarray(params[layer]["bias"]).copy()))
    return net


def sgd_momentum(parameters, vs, lr, gamma):
    """The seed tutorials' hand-written momentum."""
    for param, v in zip(parameters, vs):
        v[:] = gamma * v + lr * param.grad.data
        param.data = param.data - v


@pytest.mark.parametrize("optimizer", ["sutskever_sgd", "adam"])
def test_one_epoch_matches_the_tutorials_torch_loop(embedded, programs, optimizer):
    """Same initial weights and batch order (200 examples: 3 batches of 64 and one of 8)."""
    data = subset(embedded, 200)
    config = mnist.Config(optimizer=optimizer, epochs=1, seed=5)
    run = mnist.train_and_evaluate(config, data, programs=programs)

    shuffle_key = mnist.keys(jax.random.key(5))[1]
    net = torch_net(initial_params(5, programs))
    order, weights = mnist.epoch_batches(jax.random.fold_in(shuffle_key, 0), 200, 64)
    criterion = torch.nn.CrossEntropyLoss()
    vs = [torch.zeros_like(p) for p in net.parameters()]
    optim = torch.optim.Adam(net.parameters(), lr=1e-3) if optimizer == "adam" else None
    losses = []
    for idx, w in zip(np.asarray(order), np.asarray(weights)):
        idx = idx[w > 0]
        out = net(tutorial_transform(data.train_images[idx]))
        loss = criterion(out, torch.from_numpy(data.train_labels[idx]).long())
        net.zero_grad()
        loss.backward()
        if optim:
            optim.step()
        else:
            sgd_momentum(net.parameters(), vs, 1e-2, 0.9)
        losses.append(loss.item())
    assert [len(i[w > 0]) for i, w in zip(np.asarray(order), np.asarray(weights))] == [
        64,
        64,
        64,
        8,
    ]

    np.testing.assert_allclose(run.record["epoch_train_loss"][0], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(run.record["logged_loss"][0], losses[0], rtol=1e-5)
    got = torch_net(run.params)
    for ours, theirs in zip(got.parameters(), net.parameters()):
        # Adam's step is about lr wherever g is tiny, so float32 rounding in g shows more.
        np.testing.assert_allclose(
            ours.detach().numpy(),
            theirs.detach().numpy(),
            rtol=1e-4,
            atol=1e-5 if optimizer == "adam" else 1e-6,
        )
    with torch.no_grad():
        want = (
            net(tutorial_transform(data.test_images)).argmax(1).numpy() == data.test_labels
        ).mean()
    np.testing.assert_allclose(run.record["test_accuracy"], want, atol=1.5 / len(data.test_labels))


class Killed(Exception):
    pass


def test_resume_is_bit_identical_and_runs_are_deterministic(embedded, programs, tmp_path):
    data = subset(embedded, 200)  # 4 steps per epoch
    config = mnist.Config(optimizer="adam", hparams={"b1": 0.8}, epochs=3, seed=1, log_every=2)
    whole = mnist.train_and_evaluate(config, data, programs=programs)
    again = mnist.train_and_evaluate(config, data, programs=programs)

    def kill_after_first_epoch(epoch, record):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        mnist.train_and_evaluate(
            config, data, tmp_path, programs=programs, on_epoch=kill_after_first_epoch
        )
    assert [p.suffix for p in tmp_path.iterdir()] == [".msgpack"]  # no temporary file left
    resumed = mnist.train_and_evaluate(
        config, data, tmp_path
    )  # fresh compilation, as a new process
    assert resumed.record["resumed_from_epoch"] == 1
    finished = mnist.train_and_evaluate(config, data, tmp_path, programs=programs)
    assert finished.record["resumed_from_epoch"] == 3
    for run in (again, resumed, finished):
        for a, b in zip(
            leaves((whole.params, whole.opt_state)), leaves((run.params, run.opt_state))
        ):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        for name in ("epoch_train_loss", "logged_steps", "logged_loss", "epoch_test_accuracy"):
            assert run.record[name] == whole.record[name]
    assert whole.record["logged_steps"] == list(range(0, 12, 2))
    other_seed = mnist.train_and_evaluate(
        dataclasses.replace(config, seed=2), data, programs=programs
    )
    assert other_seed.record["epoch_train_loss"] != whole.record["epoch_train_loss"]


def test_train_fn_vmaps_over_hyperparameters_and_matches_train_and_evaluate(embedded, programs):
    data = subset(embedded, 200)
    config = mnist.Config(optimizer="sgd", epochs=2)
    arrays = tuple(jnp.asarray(x) for x in data[:4])
    grid = {"learning_rate": jnp.array([0.01, 0.05]), "momentum": jnp.array([0.0, 0.9])}
    sweep = jax.jit(jax.vmap(mnist.make_train_fn(config), in_axes=(0, None, None)))(
        grid, jax.random.key(config.seed), arrays
    )
    assert sweep["loss"].shape == (2, 8) and sweep["final_loss"].shape == (2,)
    for i, (lr, mu) in enumerate([(0.01, 0.0), (0.05, 0.9)]):
        one = mnist.train_and_evaluate(
            mnist.Config(
                optimizer="sgd",
                hparams={"learning_rate": lr, "momentum": mu},
                epochs=2,
                log_every=1,
            ),
            data,
            programs=programs,
        ).record
        np.testing.assert_allclose(sweep["epoch_train_loss"][i], one["epoch_train_loss"], rtol=2e-5)
        np.testing.assert_allclose(sweep["loss"][i], one["logged_loss"], rtol=2e-5)
        np.testing.assert_allclose(sweep["test_accuracy"][i], one["test_accuracy"], atol=0.011)
        assert one["compiled_program_reused"] == (i == 1)  # one program for both momentum values


def load_cli():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location(
            "mnist_cli", ROOT / "experiments" / "mnist.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return module


def test_default_study_headline_momentum_beats_plain_sgd(embedded, programs):
    """The default run's sgd and momentum runs (5 epochs, batch 64, seed 0) on the embedded data."""
    cli = load_cli()
    parser, args = cli.parse_args([])
    configs = {c.label: c for c in cli.run_configs(parser, args)}
    assert [(c.optimizer, c.epochs, c.batch_size) for c in configs.values()][:3] == [
        ("sgd", 5, 64),
        ("sutskever_sgd", 5, 64),
        ("sgd", 5, 64),
    ]
    final = {}
    for label in list(configs)[:3]:
        final[label] = mnist.train_and_evaluate(configs[label], embedded, programs=programs).record
    sgd, lr_inside, torch_form = (final[k]["epoch_train_loss"] for k in list(configs)[:3])
    assert lr_inside[-1] < 0.6 * sgd[-1] and torch_form[-1] < 0.6 * sgd[-1]
    np.testing.assert_allclose(lr_inside, torch_form, rtol=1e-4)  # one path, two conventions
    assert all(a > b for a, b in itertools.pairwise(sgd))  # plain SGD still descending


def test_cli_killed_and_restarted_ends_bit_identical(embedded, programs, tmp_path):
    """The CLI end to end: SIGKILL after the first checkpoint, the same command again, then its
    outputs and the final parameters against an uninterrupted in-process run."""
    command = [
        sys.executable,
        str(ROOT / "experiments" / "mnist.py"),
        "--optimizer",
        "sgd",
        "--optimizer",
        "ema_sgd",
        "--lr",
        "0.05",
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "--max-test-samples",
        "100",
        "--source",
        "embedded",
        "--out",
        "out",
        "--checkpoint-dir",
        "ck",
    ]
    first = subprocess.Popen(
        [*command, "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while first.poll() is None and not list((tmp_path / "ck").glob("*.msgpack")):
        time.sleep(0.002)
    first.kill()
    assert first.wait() == -signal.SIGKILL
    assert not (tmp_path / "out" / "results.json").exists()

    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "NOTICE" in result.stdout and "subset" in result.stdout
    assert result.stdout.count("epoch: 4, Train Loss: ") == 2  # both runs ended training here
    out = tmp_path / "out"
    records = json.loads((out / "results.json").read_text())
    assert [r["optimizer"] for r in records] == ["sgd", "ema_sgd"]
    assert 1 <= records[0]["resumed_from_epoch"] < 5  # killed in the middle of the sgd run
    for r in records:
        assert r["hyperparameters"]["learning_rate"] == 0.05
        assert len(r["epoch_train_loss"]) == 5 and 0 <= r["test_accuracy"] <= 1
        assert r["train_seconds"] > 0 and r["compile_seconds"] > 0
        assert (
            r["data_source"].startswith("embedded")
            and "first all train / 100 test" in (r["data_source"])
        )
        assert f"| {r['label']} | {r['optimizer']} |" in result.stdout
    with open(out / "loss_every_30_steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["optimizer"], int(row["step"])) for row in rows[:2]] == [("sgd", 0), ("sgd", 30)]
    assert len(rows) == 2 * len(range(0, 1250, 30))  # 250 steps per epoch, 5 epochs
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    config = mnist.Config(
        optimizer="sgd", hparams={"learning_rate": 0.05}, epochs=5, batch_size=16, label="sgd"
    )
    whole = mnist.train_and_evaluate(config, subset(embedded, 4000, 100), programs=programs)
    assert records[0]["epoch_train_loss"] == whole.record["epoch_train_loss"]
    assert records[0]["logged_loss"] == whole.record["logged_loss"]
    (path,) = (tmp_path / "ck").glob("sgd_*.msgpack")
    saved = flax.serialization.msgpack_restore(path.read_bytes())
    for a, b in zip(leaves(whole.params), leaves(saved["params"])):
        assert np.array_equal(a, b)


def test_plot_smoothing_is_the_bias_corrected_ema():
    smoothed = load_cli().smoothed
    np.testing.assert_allclose(smoothed([3.0, 3.0, 3.0]), [3.0, 3.0, 3.0])  # weights sum to 1
    np.testing.assert_allclose(smoothed([2.0, 0.0]), [2.0, 0.9 * 0.2 / (1 - 0.81)])
