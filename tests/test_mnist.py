"""The MNIST study (jaxmom.studies.mnist): the model against PyTorch, training against the seed
tutorials' own loop, resume, the vmappable train_fn, the study as a sweep, and the headline result."""

import dataclasses
import inspect
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxmom
from jaxmom.studies.mnist import report, train
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.model import MLP, preprocess
from jaxmom.studies.mnist.registry import OPTIMIZERS, OptimizerSpec, registry
from jaxmom.studies.mnist.studies import STUDY
from jaxmom.studies.mnist.sweep import run_sweep
from jaxmom.sweep import product
from jaxmom.sweep._checkpoint import Checkpoint  # pinned: its save, a window for kill -9

ROOT = Path(__file__).resolve().parents[1]


def initial_params(seed, init="torch"):
    """The run's initial parameters, through the init function training uses."""
    init_key = jax.random.split(jax.random.key(seed))[0]
    return train.functions("sgd", (), init).init(init_key)


def batches(seed, epoch, n, batch_size):
    """fit's contract: ``data_key = split(key(seed))[1]``; epoch ``e`` visits
    ``permutation(fold_in(data_key, e), n)`` in consecutive slices, the last one partial."""
    data_key = jax.random.split(jax.random.key(seed))[1]
    order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_torch_init_matches_nn_linear_and_flax_init_differs():
    params = initial_params(3)
    torch.manual_seed(0)
    for layer, (fan_in, fan_out) in (("Dense_0", (784, 200)), ("Dense_1", (200, 10))):
        reference = torch.nn.Linear(fan_in, fan_out)  # PyTorch's own default init
        kernel, bias = np.asarray(params[layer]["kernel"]), np.asarray(params[layer]["bias"])
        assert (
            kernel.shape == reference.weight.shape[::-1] == (fan_in, fan_out)
        )  # nn.Dense: (in, out)
        assert bias.shape == (fan_out,)
        torch_bound = reference.weight.detach().abs().max().item()
        assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in)
        np.testing.assert_allclose(np.abs(kernel).max(), torch_bound, rtol=0.02)
        np.testing.assert_allclose(kernel.std(), reference.weight.detach().std().item(), rtol=0.05)
        assert np.abs(bias).max() <= 1 / np.sqrt(fan_in) and np.abs(bias).max() > 0.8 / np.sqrt(
            fan_in
        )
    flax_params = initial_params(3, init="flax")
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
def test_one_epoch_matches_the_tutorials_torch_loop(embedded, optimizer, take):
    """Same initial weights and batch order (200 examples: 3 batches of 64 and one of 8)."""
    data = take(embedded, 200)
    config = Config(optimizer=optimizer, epochs=1, seed=5)
    run = train.train_and_evaluate(config, data)

    net = torch_net(initial_params(5))
    criterion = torch.nn.CrossEntropyLoss()
    vs = [torch.zeros_like(p) for p in net.parameters()]
    optim = torch.optim.Adam(net.parameters(), lr=1e-3) if optimizer == "adam" else None
    losses = []
    for idx in batches(5, 0, 200, 64):
        out = net(tutorial_transform(data.train_images[idx]))
        loss = criterion(out, torch.from_numpy(data.train_labels[idx]).long())
        net.zero_grad()
        loss.backward()
        if optim:
            optim.step()
        else:
            sgd_momentum(net.parameters(), vs, 1e-2, 0.9)
        losses.append(loss.item())
    assert [len(idx) for idx in batches(5, 0, 200, 64)] == [64, 64, 64, 8]

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


def test_resume_is_bit_identical_and_runs_are_deterministic(embedded, tmp_path, take, monkeypatch):
    """Killed right after its first checkpoint (fit's own, written whole), then run again: the
    same losses, accuracies and parameters as an uninterrupted run, bit for bit."""
    data = take(embedded, 200)  # 4 steps per epoch
    config = Config(optimizer="adam", hparams={"b1": 0.8}, epochs=3, seed=1, log_every=2)
    whole = train.train_and_evaluate(config, data)
    again = train.train_and_evaluate(config, data)
    save = Checkpoint.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise Killed

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        train.train_and_evaluate(config, data, tmp_path)
    monkeypatch.undo()
    (folder,) = tmp_path.iterdir()  # one folder per run
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    resumed = train.train_and_evaluate(config, data, tmp_path)
    assert resumed.record["resumed_from_epoch"] == 1
    finished = train.train_and_evaluate(config, data, tmp_path)
    assert finished.record["resumed_from_epoch"] == 3
    for run in (again, resumed, finished):
        for a, b in zip(leaves(whole.params), leaves(run.params)):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        for name in ("epoch_train_loss", "logged_steps", "logged_loss", "epoch_test_accuracy"):
            assert run.record[name] == whole.record[name]
    assert whole.record["logged_steps"] == list(range(0, 12, 2))
    other_seed = train.train_and_evaluate(dataclasses.replace(config, seed=2), data)
    assert other_seed.record["epoch_train_loss"] != whole.record["epoch_train_loss"]


def plain_loop(config, data):
    """The study's single run written out as a plain loop from the model, Optax and the jaxmom
    factory alone (fit's contract; the softmax over the usual (batch, 10) logits): the final
    params, every step's loss, each epoch's mean loss and test accuracy (at the optimizer's
    evaluation parameters)."""
    model = MLP(init_scheme=config.init)
    params = initial_params(config.seed, init=config.init)
    tx = config.spec.factory(**config.full_hparams(), **config.options)
    state = tx.init(params)
    images, labels = preprocess(jnp.asarray(data.train_images)), jnp.asarray(data.train_labels)
    test_images = preprocess(jnp.asarray(data.test_images))

    def mean_loss(p, x, y):
        logits = jnp.asarray(model.apply({"params": p}, x))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, s, x, y):
        value, grads = jax.value_and_grad(mean_loss)(p, x, y)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    losses, epoch_loss, accuracy = [], [], []
    for e in range(config.epochs):
        epoch = []
        for idx in batches(config.seed, e, len(labels), config.batch_size):
            params, state, value = step(params, state, images[idx], labels[idx])
            epoch.append(float(value))
        losses += epoch
        epoch_loss.append(float(np.mean(epoch)))
        tested = (
            params if config.spec.eval_params is None else config.spec.eval_params(state, params)
        )
        logits = jnp.asarray(model.apply({"params": tested}, test_images))
        accuracy.append(float(jnp.mean(jnp.argmax(logits, -1) == data.test_labels)))
    return params, losses, epoch_loss, accuracy


@pytest.mark.parametrize(
    "config",
    [
        Config("sgd", {"learning_rate": 0.05, "momentum": 0.9}, epochs=2, seed=3, log_every=1),
        Config("adam", {"weight_decay": 0.01}, {"amsgrad": True}, epochs=2, log_every=1),
        Config("aggmo", epochs=2, batch_size=48, init="flax", log_every=1),
        Config("schedule_free_sgd", {"warmup_steps": 3}, epochs=2, seed=1, log_every=1),
    ],
    ids=lambda c: c.optimizer,
)
def test_a_single_run_through_fit_equals_the_plain_loop(embedded, take, config):
    """The old single run was this loop (one jitted scan per epoch); through fit it is a one-cell
    grid. 200 examples: a partial last batch; AggMo's betas are an array hyperparameter (fit's
    fixed=), schedule-free SGD is tested at x."""
    data = take(embedded, 200, 300)
    run = train.train_and_evaluate(config, data)
    params, losses, epoch_loss, accuracy = plain_loop(config, data)
    r = run.record
    np.testing.assert_allclose(r["logged_loss"], losses, rtol=2e-5)
    np.testing.assert_allclose(r["epoch_train_loss"], epoch_loss, rtol=2e-5)
    assert r["final_train_loss"] == r["epoch_train_loss"][-1]
    np.testing.assert_allclose(r["epoch_test_accuracy"], accuracy, atol=1 / 300 + 1e-7)
    assert r["test_accuracy"] == r["epoch_test_accuracy"][-1]
    for ours, theirs in zip(leaves(run.params), leaves(params)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-6)
    assert r["steps_per_epoch"] == (4 if config.batch_size == 64 else 5)
    assert not r["diverged"] and r["diverged_step"] == -1 and r["resumed_from_epoch"] == 0


def test_default_study_headline_momentum_beats_plain_sgd(embedded):
    """The default run's sgd and momentum runs (5 epochs, batch 64, seed 0) on the embedded data."""
    configs = {
        run.label: Config(run.optimizer, dict(run.hparams), label=run.label) for run in STUDY
    }
    assert [(c.optimizer, c.epochs, c.batch_size) for c in configs.values()][:3] == [
        ("sgd", 5, 64),
        ("sutskever_sgd", 5, 64),
        ("sgd", 5, 64),
    ]
    final = {}
    for label in list(configs)[:3]:
        final[label] = train.train_and_evaluate(configs[label], embedded).record
    sgd, lr_inside, torch_form = (final[k]["epoch_train_loss"] for k in list(configs)[:3])
    assert lr_inside[-1] < 0.6 * sgd[-1] and torch_form[-1] < 0.6 * sgd[-1]
    np.testing.assert_allclose(lr_inside, torch_form, rtol=1e-4)  # one path, two conventions
    assert all(a > b for a, b in itertools.pairwise(sgd))  # plain SGD still descending


def test_plot_smoothing_is_the_bias_corrected_ema():
    smoothed = report.smoothed
    # jaxmom.ema in float32: equal to the recurrence to float32 rounding.
    np.testing.assert_allclose(smoothed([3.0, 3.0, 3.0]), [3.0, 3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(smoothed([2.0, 0.0]), [2.0, 0.9 * 0.2 / (1 - 0.81)], rtol=1e-6)


@pytest.mark.parametrize(
    "fixed",
    [{}, {"weight_decay": 0.01, "dampening": 0.5}],
    ids=["fixed-zeros-are-constants", "fixed-nonzero-are-arguments"],
)
def test_sweep_cells_equal_separate_train_and_evaluate_runs(tiny_mnist, fixed):
    """Single runs take every hyperparameter as a traced argument; the sweep gives the optimizer
    its fixed zeros (weight decay, dampening by default) as Python numbers: the same numbers."""
    data = tiny_mnist
    config = Config(optimizer="sgd", hparams=fixed, epochs=2, batch_size=64, seed=3)
    grid = product(learning_rate=[0.01, 0.1], momentum=[0.0, 0.9])
    res = run_sweep(config, data, grid)
    for i, lr in enumerate([0.01, 0.1]):
        for j, mu in enumerate([0.0, 0.9]):
            one = train.train_and_evaluate(
                Config(
                    optimizer="sgd",
                    hparams={"learning_rate": lr, "momentum": mu, **fixed},
                    epochs=2,
                    batch_size=64,
                    seed=3,
                ),
                data,
            ).record
            np.testing.assert_allclose(
                res.metrics["epoch_train_loss"][i, j], one["epoch_train_loss"], rtol=1e-5
            )
            assert res.metrics["test_accuracy"][i, j] == pytest.approx(
                one["test_accuracy"], abs=1e-6
            )
    with pytest.raises(ValueError, match="no hyperparameter alpha"):
        run_sweep(config, data, product(alpha=[0.9]))


@pytest.mark.parametrize("optimizer", ["adagrad", "rmsprop", "schedule_free_sgd"])
def test_a_sweep_with_fixed_zeros_equals_single_runs_for_optimizers_with_zero_defaults(
    tiny_mnist, optimizer
):
    """Zero defaults that change more than one term: Adagrad's lr_decay and initial accumulator,
    RMSprop's momentum (no buffer at a Python zero), schedule-free SGD's integer warmup and r
    (its evaluation point is read from the state)."""
    config = Config(optimizer=optimizer, epochs=2, batch_size=64)
    lr = config.full_hparams()["learning_rate"]
    res = run_sweep(config, tiny_mnist, product(learning_rate=[lr]))
    one = train.train_and_evaluate(config, tiny_mnist).record
    np.testing.assert_allclose(
        res.metrics["epoch_train_loss"][0], one["epoch_train_loss"], rtol=1e-5
    )
    assert res.metrics["test_accuracy"][0] == pytest.approx(one["test_accuracy"], abs=1e-6)


def test_sweep_chunked_equals_the_whole_grid_and_times_evaluation(tiny_mnist):
    config = Config(optimizer="sgd", epochs=1, batch_size=64, seed=2)
    grid = product(learning_rate=[0.01, 0.1], momentum=[0.0, 0.5, 0.9])
    chunked = run_sweep(config, tiny_mnist, grid, chunk_size=4)  # 4 then 2 (padded) cells
    whole = run_sweep(config, tiny_mnist, grid, chunk_size=None)
    for name in ("loss", "test_accuracy", "epoch_test_accuracy"):
        np.testing.assert_allclose(chunked.metrics[name], whole.metrics[name], rtol=1e-6)
    assert "params" not in whole.metrics and whole.params is None and whole.eval_seconds > 0
    with pytest.raises(ValueError, match="chunk_size must be"):
        run_sweep(config, tiny_mnist, grid, chunk_size="big")


def test_a_changed_checkpoint_is_refused_in_one_line_and_runs_never_share_one(tiny_mnist, tmp_path):
    """fit's checkpoints carry the sha256 of their state; the study keeps one folder per run,
    named by everything that shapes it (fit's fingerprint does not see the optimizer's options
    or the init scheme)."""
    config = Config(optimizer="sgd", hparams={"momentum": 0.9}, epochs=1)
    train.train_and_evaluate(config, tiny_mnist, tmp_path)
    (folder,) = tmp_path.iterdir()
    (state,) = folder.glob("*.npz")
    raw = bytearray(state.read_bytes())
    raw[-40] ^= 1  # one bit of the saved state
    state.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match its sha256") as error:
        train.train_and_evaluate(config, tiny_mnist, tmp_path)
    assert "\n" not in str(error.value)
    grid = train.single_grid(config)
    folders = {
        train.run_folder(tmp_path, c, tiny_mnist, grid)
        for c in (
            config,
            dataclasses.replace(config, options={"nesterov": True}),
            dataclasses.replace(config, init="flax"),
            dataclasses.replace(config, seed=1),
            dataclasses.replace(config, label="other"),
        )
    }
    assert len(folders) == 5


def test_a_second_sweep_of_the_same_shape_compiles_nothing(tiny_mnist):
    """fit's programs are keyed on what shapes them (the study's functions, grid shape, devices,
    chunk size): other grid values, other fixed hyperparameters, another seed, more epochs (the
    program is one epoch) all reuse them."""
    config = Config(optimizer="sgd", hparams={"momentum": 0.5}, epochs=1, batch_size=64, seed=3)
    first = run_sweep(config, tiny_mnist, product(learning_rate=[0.01, 0.1]))
    other = Config(optimizer="sgd", hparams={"momentum": 0.9}, epochs=1, batch_size=64, seed=4)
    second = run_sweep(other, tiny_mnist, product(learning_rate=[0.2, 0.3]))
    assert first.compile_seconds > 0 and second.compile_seconds == 0
    assert not np.allclose(first.metrics["loss"], second.metrics["loss"])
    longer = dataclasses.replace(config, epochs=2)  # the compiled unit is one epoch
    assert run_sweep(longer, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds == 0
    # a fixed zero is a constant of the program (no weight-decay term): nonzero is another program
    decayed = Config(optimizer="sgd", hparams={"momentum": 0.9, "weight_decay": 1e-3}, epochs=1)
    assert run_sweep(decayed, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds > 0
    decayed = dataclasses.replace(decayed, hparams={"momentum": 0.5, "weight_decay": 0.1})
    assert run_sweep(decayed, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds == 0


def gamma_sgd(learning_rate, gamma=0.5):
    return jaxmom.sgd(learning_rate, gamma)


def test_the_registry_reads_defaults_from_the_factories_and_states_only_its_own():
    """Defaults are stated once: each spec's are its factory's signature defaults, but for the
    study's overrides, and no override restates the factory's own default."""
    assert OPTIMIZERS["rmsprop"].defaults == {
        "learning_rate": 1e-3,  # the seed tutorials'
        "alpha": 0.9,  # the seed tutorials'
        "eps": 1e-8,
        "momentum": 0.0,
        "weight_decay": 0.0,
    }  # and not rmsprop's booleans centered (an option) or eps_in_sqrt (not offered)
    for spec in OPTIMIZERS.values():
        signature = inspect.signature(spec.factory).parameters
        for name, value in spec.defaults.items():
            if name in spec.overrides:
                assert value != signature[name].default, (spec.name, name)
            else:
                assert value == signature[name].default, (spec.name, name)


def test_the_registry_refuses_specs_that_disagree():
    specs = list(OPTIMIZERS.values())
    sgd = OPTIMIZERS["sgd"]
    with pytest.raises(ValueError, match="registered twice"):
        registry(*specs, sgd)
    with pytest.raises(ValueError, match="momentum is int here but float elsewhere"):
        registry(*specs, OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1, "momentum": 1}))
    with pytest.raises(ValueError, match=r"no help text for hyperparameter\(s\) \['gamma'\]"):
        registry(*specs, OptimizerSpec("x", gamma_sgd, {"learning_rate": 0.1}))
    with pytest.raises(ValueError, match=r"x: \['gamma'\] are not parameters of sgd"):
        OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1, "gamma": 0.5})
    with pytest.raises(ValueError, match="x: learning_rate has no default in sgd"):
        OptimizerSpec("x", sgd.factory)
    with pytest.raises(ValueError, match="flag 'mom' here"):
        registry(
            *specs,
            OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1}, flags={"momentum": "mom"}),
        )
    with pytest.raises(TypeError, match="default of nesterov must be a float"):
        OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1, "nesterov": True})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1}, help={"lr": "typo"})


def test_config_is_checked_once_where_it_is_built():
    with pytest.raises(ValueError, match="momentum"):
        Config(optimizer="sgd", hparams={"momentum": 1.5})
    with pytest.raises(ValueError, match="adam has no hyperparameter momentum"):
        Config(optimizer="adam", hparams={"momentum": 0.9})
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[1, 2147483647\], got 0"):
        Config(epochs=0)


@pytest.mark.parametrize(
    "optimizer, grid, message",
    [
        (
            "sgd",
            product(learning_rate=[0.1], momentum=[0.5, 1.0]),
            "learning_rate=0.1, momentum=1.0: momentum",
        ),
        ("sgd", product(learning_rate=[0.1, -0.1]), "learning_rate=-0.1: learning_rate must"),
        (
            "schedule_free_sgd",
            product(warmup_steps=[1, 3_000_000_000]),
            "warmup_steps=3000000000: warmup_steps is fed to the optimizer as int32",
        ),
        ("sgd", product(betas=[0.5]), "betas=0.5: sgd has no hyperparameter betas"),
    ],
    ids=["momentum 1", "negative lr", "int32", "not sgd's"],
)
def test_run_sweep_refuses_a_cell_its_optimizer_refuses_before_training(
    tiny_mnist, optimizer, grid, message
):
    """As ``jaxmom.sgd(0.1, momentum=1.0)`` raises, so does a grid holding that cell: one line
    naming the cell, before anything compiles. fit's check of every cell (the study's optimizer
    function, given concrete values) applies the study's rules too: integers within int32, and
    only the optimizer's own hyperparameters."""
    jaxmom.sweep.clear_cache()
    with pytest.raises(ValueError, match=f"^grid cell {message}") as error:
        run_sweep(Config(optimizer=optimizer, epochs=1), tiny_mnist, grid)
    assert "\n" not in str(error.value)
    assert jaxmom.sweep.cache_size() == 0  # nothing compiled


def test_the_report_leaves_the_matplotlib_backend_alone_and_returns_figures():
    """A notebook's inline backend survives importing the study (only the script picks Agg), and
    the figure comes back as a matplotlib Figure to show or save."""
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import jaxmom.studies.mnist.cli, jaxmom.studies.mnist.report as report\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "r = dict(label='a', optimizer='sgd', final_train_loss=0.5, steps_per_epoch=2,\n"
        "         logged_steps=[0, 1, 2, 3], logged_loss=[2.0, 1.0, 0.7, 0.5],\n"
        "         epoch_train_loss=[1.5, 0.6], epoch_test_accuracy=[0.5, 0.6], log_every=1)\n"
        "fig = report.loss_curves([r], 'title')\n"
        "from matplotlib.figure import Figure; assert isinstance(fig, Figure)\n"
        "assert matplotlib.get_backend() == 'svg'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_sweep_killed_after_a_checkpoint_resumes_bit_identical(tiny_mnist, tmp_path, monkeypatch):
    """--sweep --checkpoint-dir: killed after the second chunk's first epoch, then run again, the
    grid's losses and accuracies equal an uninterrupted sweep's, bit for bit, and each cell says
    how many of its epochs came from the checkpoint."""
    config = Config(optimizer="sgd", epochs=2, batch_size=64)
    grid = product(learning_rate=[0.01, 0.1], momentum=[0.0, 0.9])
    whole = run_sweep(config, tiny_mnist, grid, chunk_size=2)
    save, saves = Checkpoint.save, []

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        saves.append(1)
        if len(saves) == 3:  # chunk 0 after epochs 1 and 2, chunk 1 after epoch 1
            raise Killed

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run_sweep(config, tiny_mnist, grid, chunk_size=2, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    resumed = run_sweep(config, tiny_mnist, grid, chunk_size=2, checkpoint_dir=tmp_path)
    for name in ("loss", "epoch_train_loss", "epoch_test_accuracy"):
        assert np.array_equal(resumed.metrics[name], whole.metrics[name]), name
    assert resumed.metrics["resumed_from_epoch"].tolist() == [[2, 2], [1, 1]]
    assert whole.metrics["resumed_from_epoch"].tolist() == [[0, 0], [0, 0]]


# --- parameter and state dtypes (issue 18) ---------------------------------------------------


def test_param_and_state_dtypes_are_checked_in_one_line():
    for field in ("param_dtype", "state_dtype"):
        with pytest.raises(ValueError, match=f"unknown {field} 'float16'; choose from float32"):
            Config(**{field: "float16"})


def test_every_optimizer_gets_the_state_dtype_on_every_dtype_argument():
    """Each factory's own ``*_dtype`` arguments, read from its signature: nothing else."""
    for name, spec in OPTIMIZERS.items():
        options = Config(optimizer=name, state_dtype="bfloat16").optimizer_options()
        wanted = [p for p in inspect.signature(spec.factory).parameters if p.endswith("_dtype")]
        assert wanted and options == dict.fromkeys(wanted, "bfloat16"), name
        assert Config(optimizer=name).optimizer_options() == {}


def checkpoint_state(folder):
    """The leaves of ``(params, opt_state)`` in the checkpoint fit wrote into ``folder``."""
    [path] = folder.glob("fit-*.json")
    header = json.loads(path.read_text())
    with np.load(folder / header["file"], allow_pickle=False) as z:
        return [z[f"state/{i}"] for i in range(sum(k.startswith("state/") for k in z.files))]


@pytest.mark.parametrize(
    "param_dtype, state_dtype",
    [("bfloat16", "float32"), ("bfloat16", None), ("float32", "bfloat16")],
)
def test_dtypes_reach_params_state_records_and_sweeps(
    tiny_mnist, tmp_path, param_dtype, state_dtype
):
    """The parameters and every optimizer buffer take the asked dtypes (read from the state fit
    checkpoints), the record says so, a resumed run is bit-identical, and a sweep's cells are near
    their single runs, not the float32 ones."""
    data = tiny_mnist
    config = Config(
        optimizer="adam", epochs=2, seed=3, param_dtype=param_dtype, state_dtype=state_dtype
    )
    run = train.train_and_evaluate(config, data, tmp_path)
    assert {x.dtype for x in jax.tree.leaves(run.params)} == {jnp.dtype(param_dtype)}
    [folder] = tmp_path.iterdir()
    state = checkpoint_state(folder)
    n = len(jax.tree.leaves(run.params))  # (params, opt_state): adam's count, mu, nu follow
    sizes = {x.dtype.itemsize for x in state[n:] if x.ndim > 1}
    assert (
        len(state) == 3 * n + 1
        and [x.dtype.itemsize for x in state[:n]] == [jnp.dtype(param_dtype).itemsize] * n
    )
    assert sizes == {jnp.dtype(state_dtype or param_dtype).itemsize}
    expected = (param_dtype, state_dtype or param_dtype)
    assert (run.record["param_dtype"], run.record["state_dtype"]) == expected
    assert run.record["test_accuracy"] > 0.05
    assert np.all(np.isfinite(run.record["epoch_train_loss"]))
    resumed = train.train_and_evaluate(config, data, tmp_path)
    assert resumed.record["resumed_from_epoch"] == 2
    for a, b in zip(leaves(run.params), leaves(resumed.params)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # the default float32 run differs: the dtypes are not ignored
    f32 = dataclasses.replace(config, param_dtype="float32", state_dtype=None)
    assert (
        train.train_and_evaluate(f32, data).record["epoch_train_loss"]
        != run.record["epoch_train_loss"]
    )
    # a sweep with the same dtypes: each cell is near its single run, not the float32 one
    res = run_sweep(config, data, product(learning_rate=[1e-2, 3e-2]))
    records = train.records(config, data, res)
    for i, lr in enumerate([1e-2, 3e-2]):
        one, plain = (
            train.train_and_evaluate(
                dataclasses.replace(c, hparams={"learning_rate": lr}), data
            ).record["epoch_train_loss"]
            for c in (config, f32)
        )
        cell = res.metrics["epoch_train_loss"][i]
        assert np.max(np.abs(cell - one)) < 0.3 * np.max(np.abs(cell - np.asarray(plain)))
        assert (records[i]["param_dtype"], records[i]["state_dtype"]) == expected
