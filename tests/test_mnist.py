"""The MNIST study (jaxmom.studies.mnist): the model against PyTorch, training against the seed
tutorials' own loop, resume, the vmappable train_fn, the study as a sweep, and the headline result."""

import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxmom.studies.mnist import checkpoint, report, train
from jaxmom.studies.mnist import sweep as study_sweep
from jaxmom.studies.mnist.config import OPTIMIZERS, STUDY, Config, OptimizerSpec, registry
from jaxmom.studies.mnist.sweep import auto_chunk_size, bytes_per_config, run_sweep
from jaxmom.sweep import product

ROOT = Path(__file__).resolve().parents[1]


def initial_params(seed, programs, init="torch"):
    """The run's initial parameters, through the same compiled program training uses."""
    return train.compiled_init(init, programs)(train.keys(jax.random.key(seed))[0])


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_torch_init_matches_nn_linear_and_flax_init_differs(programs):
    params = initial_params(3, programs)
    torch.manual_seed(0)
    for layer, (fan_in, fan_out) in (("Dense_0", (784, 200)), ("Dense_1", (200, 10))):
        reference = torch.nn.Linear(fan_in, fan_out)  # PyTorch's own default init
        kernel, bias = np.asarray(params[layer]["kernel"]), np.asarray(params[layer]["bias"])
        assert kernel.shape == reference.weight.shape == (fan_out, fan_in)  # (out, in) as PyTorch
        assert bias.shape == (fan_out,)
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
            net[i].weight.copy_(torch.from_numpy(np.asarray(params[layer]["kernel"]).copy()))
            net[i].bias.copy_(torch.from_numpy(np.asarray(params[layer]["bias"]).copy()))
    return net


def sgd_momentum(parameters, vs, lr, gamma):
    """The seed tutorials' hand-written momentum."""
    for param, v in zip(parameters, vs):
        v[:] = gamma * v + lr * param.grad.data
        param.data = param.data - v


@pytest.mark.parametrize("optimizer", ["sutskever_sgd", "adam"])
def test_one_epoch_matches_the_tutorials_torch_loop(embedded, programs, optimizer, take):
    """Same initial weights and batch order (200 examples: 3 batches of 64 and one of 8)."""
    data = take(embedded, 200)
    config = Config(optimizer=optimizer, epochs=1, seed=5)
    run = train.train_and_evaluate(config, data, programs=programs)

    shuffle_key = train.keys(jax.random.key(5))[1]
    net = torch_net(initial_params(5, programs))
    order, weights = train.epoch_batches(jax.random.fold_in(shuffle_key, 0), 200, 64)
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


def test_resume_is_bit_identical_and_runs_are_deterministic(embedded, programs, tmp_path, take):
    data = take(embedded, 200)  # 4 steps per epoch
    config = Config(optimizer="adam", hparams={"b1": 0.8}, epochs=3, seed=1, log_every=2)
    whole = train.train_and_evaluate(config, data, programs=programs)
    again = train.train_and_evaluate(config, data, programs=programs)

    def kill_after_first_epoch(epoch, record):
        if epoch == 1:  # epochs are numbered from 1
            raise Killed

    with pytest.raises(Killed):
        train.train_and_evaluate(
            config, data, tmp_path, programs=programs, on_epoch=kill_after_first_epoch
        )
    assert [p.suffix for p in tmp_path.iterdir()] == [".msgpack"]  # no temporary file left
    resumed = train.train_and_evaluate(
        config, data, tmp_path
    )  # fresh compilation, as a new process
    assert resumed.record["resumed_from_epoch"] == 1
    finished = train.train_and_evaluate(config, data, tmp_path, programs=programs)
    assert finished.record["resumed_from_epoch"] == 3
    for run in (again, resumed, finished):
        for a, b in zip(
            leaves((whole.params, whole.opt_state)), leaves((run.params, run.opt_state))
        ):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        for name in ("epoch_train_loss", "logged_steps", "logged_loss", "epoch_test_accuracy"):
            assert run.record[name] == whole.record[name]
    assert whole.record["logged_steps"] == list(range(0, 12, 2))
    other_seed = train.train_and_evaluate(
        dataclasses.replace(config, seed=2), data, programs=programs
    )
    assert other_seed.record["epoch_train_loss"] != whole.record["epoch_train_loss"]


def test_train_fn_vmaps_over_hyperparameters_and_matches_train_and_evaluate(
    embedded, programs, take
):
    data = take(embedded, 200)
    config = Config(optimizer="sgd", epochs=2)
    arrays = tuple(jnp.asarray(x) for x in data[:4])
    grid = {"learning_rate": jnp.array([0.01, 0.05]), "momentum": jnp.array([0.0, 0.9])}
    sweep = jax.jit(jax.vmap(train.make_train_fn(config), in_axes=(0, None, None)))(
        grid, jax.random.key(config.seed), arrays
    )
    assert sweep["loss"].shape == (2, 8) and sweep["final_train_loss"].shape == (2,)
    for i, (lr, mu) in enumerate([(0.01, 0.0), (0.05, 0.9)]):
        one = train.train_and_evaluate(
            Config(
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


def test_default_study_headline_momentum_beats_plain_sgd(embedded, programs):
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
        final[label] = train.train_and_evaluate(configs[label], embedded, programs=programs).record
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
    programs = {}
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
                programs=programs,
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


def test_sweep_chunked_by_a_memory_budget_equals_the_whole_grid_and_times_evaluation(tiny_mnist):
    config = Config(optimizer="sgd", epochs=1, batch_size=64, seed=2)
    grid = product(learning_rate=[0.01, 0.1], momentum=[0.0, 0.5, 0.9])
    budget = 2 * bytes_per_config(config, len(tiny_mnist.train_images))
    assert auto_chunk_size(config, len(tiny_mnist.train_images), grid.size, budget) == 2
    chunked = run_sweep(config, tiny_mnist, grid, memory_budget=budget)
    whole = run_sweep(config, tiny_mnist, grid, chunk_size=None)
    for name in ("loss", "test_accuracy"):
        np.testing.assert_allclose(chunked.metrics[name], whole.metrics[name], rtol=1e-6)
    assert "params" not in whole.metrics and whole.eval_seconds > 0
    with pytest.raises(ValueError, match="chunk_size must be"):
        run_sweep(config, tiny_mnist, grid, chunk_size="big")


RSS_SCRIPT = """
import sys
import numpy as np
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.data import Dataset
from jaxmom.studies.mnist.sweep import bytes_per_config, run_sweep
from jaxmom.sweep import product

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

rng = np.random.default_rng(0)
data = Dataset(rng.integers(0, 256, (640, 28, 28), np.uint8), rng.integers(0, 10, 640),
               rng.integers(0, 256, (100, 28, 28), np.uint8), rng.integers(0, 10, 100), "synthetic")
config = Config(optimizer="sgd", epochs=1)
grid = product(learning_rate=np.linspace(0.01, 0.1, 8).tolist(), momentum=[0.0, 0.5, 0.9, 0.99])
budget = 4 * bytes_per_config(config, 640)
for chunk in ("auto", None):
    run = lambda: run_sweep(config, data, grid, chunk_size=chunk, memory_budget=budget)
    run()  # compiles; later runs allocate the same buffers
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    run()
    print(status("VmHWM") - base, budget)
"""


def test_auto_chunk_size_keeps_the_peak_memory_of_a_grid_within_its_budget():
    """Peak RSS of a 32-configuration grid run with a budget of 4 configurations' estimate, and of
    the same grid run whole (which must exceed the budget, or the measurement could not fail).
    Big buffers are mmapped and unmapped (MALLOC_MMAP_THRESHOLD_), so RSS follows XLA's buffers."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (auto_peak, budget), (whole_peak, _) = [
        map(int, line.split()) for line in out.stdout.split("\n")[:2]
    ]
    assert auto_peak <= budget < whole_peak, (auto_peak, budget, whole_peak)


def test_a_checkpoint_of_another_format_or_shape_is_refused_in_one_line(programs, tmp_path):
    params = initial_params(0, programs)
    opt_state = train.init_opt_state(
        params, train.as_hparams({"learning_rate": 0.1}), optimizer="sgd"
    )
    path = tmp_path / "run.msgpack"
    checkpoint.save_checkpoint(path, {"epoch": 1, "params": params, "opt_state": opt_state})
    loaded = checkpoint.load_checkpoint(path, params, opt_state)
    assert loaded is not None and loaded["format"] == checkpoint.FORMAT
    old = jax.tree.map(lambda a: a.T, params)  # the (in, out) kernels of format 1
    for state, message in (
        ({"epoch": 1, "params": old, "opt_state": opt_state}, "checkpoint format 1, but"),
        (
            {"epoch": 1, "params": old, "opt_state": opt_state, "format": checkpoint.FORMAT},
            r"unreadable checkpoint .*shape \(784, 200\) where \(200, 784\)",
        ),
    ):
        path.write_bytes(flax.serialization.to_bytes(state))
        with pytest.raises(ValueError, match=message) as error:
            checkpoint.load_checkpoint(path, params, opt_state)
        assert "\n" not in str(error.value)
    config = Config(optimizer="sgd")
    assert checkpoint.checkpoint_path(tmp_path, config, "x") != checkpoint.checkpoint_path(
        tmp_path, dataclasses.replace(config, seed=1), "x"
    )


def test_a_second_sweep_of_the_same_shape_compiles_nothing(tiny_mnist):
    """The program is keyed on what shapes it (static config, grid shape, devices, chunk size):
    other grid values, other fixed hyperparameters, another seed all reuse it."""
    config = Config(optimizer="sgd", hparams={"momentum": 0.5}, epochs=1, batch_size=64, seed=3)
    first = run_sweep(config, tiny_mnist, product(learning_rate=[0.01, 0.1]))
    other = Config(optimizer="sgd", hparams={"momentum": 0.9}, epochs=1, batch_size=64, seed=4)
    second = run_sweep(other, tiny_mnist, product(learning_rate=[0.2, 0.3]))
    assert first.compile_seconds > 0 and second.compile_seconds == 0
    assert not np.allclose(first.metrics["loss"], second.metrics["loss"])
    longer = dataclasses.replace(config, epochs=2)  # a static change: a new program
    assert run_sweep(longer, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds > 0
    # a fixed zero is a constant of the program (no weight-decay term): nonzero is another program
    decayed = Config(optimizer="sgd", hparams={"momentum": 0.9, "weight_decay": 1e-3}, epochs=1)
    assert run_sweep(decayed, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds > 0
    decayed = dataclasses.replace(decayed, hparams={"momentum": 0.5, "weight_decay": 0.1})
    assert run_sweep(decayed, tiny_mnist, product(learning_rate=[0.2, 0.3])).compile_seconds == 0


def test_the_registry_refuses_specs_that_disagree():
    specs = list(OPTIMIZERS.values())
    sgd = OPTIMIZERS["sgd"]
    with pytest.raises(ValueError, match="registered twice"):
        registry(*specs, sgd)
    with pytest.raises(ValueError, match="momentum is int here but float elsewhere"):
        registry(*specs, OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1, "momentum": 1}))
    with pytest.raises(ValueError, match=r"no help text for hyperparameter\(s\) \['gamma'\]"):
        registry(*specs, OptimizerSpec("x", sgd.factory, {"learning_rate": 0.1, "gamma": 0.5}))
    with pytest.raises(ValueError, match="flag 'mom' here"):
        registry(
            *specs, OptimizerSpec("x", sgd.factory, {"momentum": 0.5}, flags={"momentum": "mom"})
        )
    with pytest.raises(TypeError, match="default of nesterov must be a float"):
        OptimizerSpec("x", sgd.factory, {"nesterov": True})
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
    "grid, message",
    [
        (
            product(learning_rate=[0.1], momentum=[0.5, 1.0]),
            "learning_rate=0.1, momentum=1: momentum",
        ),
        (product(learning_rate=[0.1, -0.1]), "learning_rate=-0.1: learning_rate must"),
    ],
    ids=["momentum 1", "negative lr"],
)
def test_run_sweep_refuses_a_cell_its_optimizer_refuses_before_training(
    tiny_mnist, monkeypatch, grid, message
):
    """As ``jaxmom.sgd(0.1, momentum=1.0)`` raises, so does a grid holding that cell: one line
    naming the cell, before anything compiles."""
    monkeypatch.setattr(study_sweep.engine, "sweep", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=f"^grid cell {message}") as error:
        run_sweep(Config(optimizer="sgd", epochs=1), tiny_mnist, grid)
    assert "\n" not in str(error.value)


def test_the_report_leaves_the_matplotlib_backend_alone_and_returns_figures():
    """A notebook's inline backend survives importing the study (only the script picks Agg), and
    the figure comes back as a matplotlib Figure to show or save."""
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import jaxmom.studies.mnist.cli, jaxmom.studies.mnist.report as report\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "r = dict(label='a', optimizer='sgd', final_train_loss=0.5, steps_per_epoch=2,\n"
        "         logged_steps=[0, 1, 2, 3], logged_loss=[2.0, 1.0, 0.7, 0.5],\n"
        "         epoch_test_accuracy=[0.5, 0.6], log_every=1)\n"
        "fig = report.loss_curves([r], 'title')\n"
        "from matplotlib.figure import Figure; assert isinstance(fig, Figure)\n"
        "assert matplotlib.get_backend() == 'svg'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
