"""Speed of the paths users run: the MNIST study's one-run epoch and its ``--sweep``, against peers.

Workload: the study's 784-200-10 ReLU MLP, batch 64, softmax cross-entropy, SGD with momentum, one
epoch of 60,000 MNIST-shaped uint8 images (938 steps, the last one partial) and the test accuracy
on 10,000 more; the pixel values are random (speed does not depend on them). Every row does that
same work: shuffle, gather and scale the batches, train, evaluate; each row says so in its name.

Timing: every row is compiled ahead of time (compile seconds reported apart), run once untimed
(the first execution after compiling runs 5-15% slower: allocations, PyTorch's lazy init), then
timed as the best of ``--repeats`` rounds; rounds visit the rows in turn, so background load hits
all rows alike. Effective GFLOP/s counts 41.2 MFLOP per step per configuration (forward and
backward); the peak is a 4096^2 float32 matmul measured in the same run.

    python experiments/benchmark.py                 # a few minutes on 2 cores
    python experiments/benchmark.py --large         # also a 16x16 grid, chunk size chosen
    python experiments/benchmark.py --quick         # smoke run, seconds
    python experiments/benchmark.py --cold          # also fresh processes, compile cache cold/warm

``--cold`` adds rows timed from outside: ``experiments/mnist.py`` (the default study, and the 4x4
``--sweep``) run in fresh processes, wall time from the interpreter's start (imports included) to
its results written, with JAX's persistent compilation cache off, empty, and then filled by the
empty run (see the README's "Compile cache"). The other rows use the compile cache as every script
does (``--no-compile-cache`` times their compiles cold).
"""

import argparse
import functools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import jaxmom
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmom
from jaxmom import sweep
from jaxmom.studies.mnist import train
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.data import Dataset
from jaxmom.studies.mnist.model import MLP, preprocess
from jaxmom.studies.mnist.sweep import run_sweep
from jaxmom.sweep import add_compile_cache_flags, configure_compile_cache

LRS = (0.003, 0.01, 0.03, 0.1)
MOMENTA = (0.0, 0.5, 0.9, 0.99)
LR, MU = 0.01, 0.9
FLOPS_PER_STEP = 41.2e6
EPOCH = "jaxmom epoch: the study's one-run epoch + test accuracy"
SWEEP = "jaxmom --sweep 4x4: run_sweep (train program + evaluation program)"
VMAP = "optax inject_hyperparams(sgd) + vmap over a scan epoch, 4x4"
DENSE = "jaxmom.sweep.fit on a plain flax nn.Dense MLP, 4x4"
TARGETS = {  # (row, baseline): issue 8's minimum speed-up (stretch in the comment)
    (SWEEP, VMAP): 1.4,  # stretch 1.6
    (EPOCH, "pytorch eager: torch.optim.SGD, randperm batches"): 1.7,
    (EPOCH, "optax+flax jitted step in a Python loop, host-gathered batches"): 1.25,
    (DENSE, VMAP): 1.4,  # issue 26
}
CNN_FIT = "cnn 4x4: jaxmom.sweep.fit (--cnn)"
CNN_VMAP = "cnn 4x4: optax inject_hyperparams(sgd) + vmap over a scan epoch (--cnn)"
CNN_LOOP = "cnn 4x4: 16 configurations one after another, jitted step (--cnn)"
CNN_TARGETS = {(CNN_FIT, CNN_VMAP): 1.0, (CNN_FIT, CNN_LOOP): 1.3}  # issue 16


def machine() -> str:
    """CPU model name from lscpu (or platform), and the core count."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration, subprocess.SubprocessError):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux's VmHWM), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return 0


def compiled(fn, *args):
    """AOT-compile ``jax.jit(fn)`` for ``args``; return (executable, compile seconds)."""
    t0 = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    return exe, time.perf_counter() - t0


def synthetic(n_train: int, n_test: int) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        rng.integers(0, 256, (n_train, 28, 28), np.uint8),
        rng.integers(0, 10, n_train).astype(np.int32),
        rng.integers(0, 256, (n_test, 28, 28), np.uint8),
        rng.integers(0, 10, n_test).astype(np.int32),
        "synthetic",
    )


def accuracy(model, params, images, labels):
    """The straightforward evaluation: the whole test set in one forward pass."""
    logits = jnp.asarray(model.apply({"params": params}, preprocess(images)))
    return jnp.mean(jnp.argmax(logits, -1) == labels)


# ---- jaxmom: the paths users run ---------------------------------------------------------------


def study_epoch(data):
    """The study's single run of one epoch, as ``experiments/mnist.py`` runs it: a one-cell
    ``fit`` (shuffle, gather, scale, 938 steps in a ``lax.scan``, then the test accuracy)."""
    config = Config(optimizer="sgd", hparams={"learning_rate": LR, "momentum": MU}, epochs=1)
    first = train.train_and_evaluate(config, data)  # compiles; later calls reuse the programs
    return (lambda: train.train_and_evaluate(config, data)), first.record["compile_seconds"]


def dense_fit(data, grid):
    """``jaxmom.sweep.fit`` of ``grid`` on the study's plain Flax ``nn.Dense`` MLP ((in, out)
    kernels, (batch, 10) logits) with a loss and evaluation as a user writes them: issue 26's "the
    user's own model", without the study's extras (its checks, divergence, per-epoch records).
    Returns (run, seconds of the first call: compiles included, compile seconds)."""
    model = MLP()

    def init(key):
        return model.init(key, jnp.zeros((1, 784)))["params"]

    def logits(params, images):
        return jnp.asarray(model.apply({"params": params}, preprocess(images)))

    def loss(params, images, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, images), labels)

    def evaluate(params, images, labels):
        return {"test_accuracy": (jnp.argmax(logits(params, images), -1) == labels) * 1.0}

    def optimizer(h):  # one function object: fit's compiled programs are keyed on it
        return jaxmom.sgd(h["learning_rate"], h["momentum"])

    def run():
        return sweep.fit(
            grid,
            init=init,
            loss=loss,
            optimizer=optimizer,
            train=(data[0], data[1]),
            eval=(data[2], data[3]),
            evaluate=evaluate,
            batch_size=64,
            epochs=1,
            eval_batch_size=train.EVAL_BATCH,
            progress=False,
        )

    t0 = time.perf_counter()
    first = run()
    return run, time.perf_counter() - t0, first.compile_seconds


def study_sweep(data, lrs=LRS, momenta=MOMENTA):
    """``run_sweep``, as ``experiments/mnist.py --sweep`` calls it (chunk size "auto")."""
    config = Config(optimizer="sgd", epochs=1)
    grid = sweep.product(learning_rate=list(lrs), momentum=list(momenta))
    first = run_sweep(config, data, grid)  # compiles both programs; later calls reuse them
    return (lambda: run_sweep(config, data, grid)), first


# ---- peers doing the same work -----------------------------------------------------------------


def optax_vmap(data):
    """The straightforward Optax sweep: ``inject_hyperparams(optax.sgd)`` + ``vmap`` over a
    ``lax.scan`` epoch of shuffled, gathered, scaled batches, then the test accuracy."""
    model = MLP()
    arrays = tuple(jax.device_put(x) for x in data[:4])

    def run(lr, momentum, key, arrays):
        images, labels, test_images, test_labels = arrays
        init_key, shuffle_key = jax.random.split(key)
        params = model.init(init_key, jnp.zeros((1, 784)))["params"]
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
        steps = -(-images.shape[0] // 64)
        order = jax.random.permutation(shuffle_key, steps * 64) % images.shape[0]

        def step(carry, idx):
            p, s = carry
            x, y = preprocess(images[idx]), labels[idx]
            loss, grads = jax.value_and_grad(
                lambda p: optax.softmax_cross_entropy_with_integer_labels(
                    jnp.asarray(model.apply({"params": p}, x)), y
                ).mean()
            )(p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, _), losses = jax.lax.scan(
            step, (params, tx.init(params)), order.reshape(steps, 64)
        )
        return losses, accuracy(model, params, test_images, test_labels)

    lrs, mus = (jnp.asarray(v, jnp.float32) for v in zip(*[(a, b) for a in LRS for b in MOMENTA]))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    exe, compile_s = compiled(jax.vmap(run, in_axes=(0, 0, None, None)), lrs, mus, key, arrays)
    jax.block_until_ready(exe(lrs, mus, key, arrays))
    first = time.perf_counter() - t0
    return lambda: jax.block_until_ready(exe(lrs, mus, key, arrays)), compile_s, first


def flax_loop(data):
    """The common Optax + Flax way, as Flax's MNIST example: a host permutation per epoch, the
    batch gathered on the host, a jitted train step per batch, a jitted evaluation."""
    model, tx = MLP(), optax.sgd(LR, MU)
    images, labels = np.asarray(data[0]), np.asarray(data[1])
    test = tuple(jax.device_put(x) for x in data[2:4])

    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            logits = jnp.asarray(model.apply({"params": p}, preprocess(x)))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    step, compile_s = compiled(train_step, params, tx.init(params), images[:64], labels[:64])
    steps = len(images) // 64
    last = len(images) - steps * 64
    tail, tail_c = (
        compiled(train_step, params, tx.init(params), images[:last], labels[:last])
        if last
        else (None, 0.0)
    )
    evaluate, eval_c = compiled(functools.partial(accuracy, model), params, *test)

    def run():
        p, s = params, tx.init(params)
        perm = np.random.default_rng(0).permutation(len(images))
        for i in range(steps):
            idx = perm[i * 64 : (i + 1) * 64]
            p, s, loss = step(p, s, images[idx], labels[idx])
        if tail is not None:
            p, s, loss = tail(p, s, images[perm[steps * 64 :]], labels[perm[steps * 64 :]])
        return float(evaluate(p, *test))

    return run, compile_s + tail_c + eval_c


def torch_eager(data, threads):
    """PyTorch eager: nn.Sequential, torch.optim.SGD, randperm batches indexed from tensors in
    memory (no DataLoader), then the test accuracy under no_grad."""
    import torch

    torch.set_num_threads(threads)
    images, labels = torch.from_numpy(data[0]), torch.from_numpy(data[1]).long()
    test_images, test_labels = torch.from_numpy(data[2]), torch.from_numpy(data[3]).long()
    scale = lambda x: ((x.float() / 255 - 0.5) / 0.5).reshape(len(x), -1)

    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MU)
        for idx in torch.randperm(len(images)).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(scale(images[idx])), labels[idx])
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (model(scale(test_images)).argmax(1) == test_labels).float().mean().item()

    return run, 0.0


# ---- parts of the sweep's cost -----------------------------------------------------------------


def update_only(steps, k):
    """``jaxmom.sgd``'s update alone (momentum 0.9), for k configurations in the study's layout,
    with a fixed gradient: a memory-bound pass over parameters, buffer and gradient."""
    params = train.functions("sgd", (), "torch").init(jax.random.key(0))

    def run(lr, mu, grads):
        tx = jaxmom.sgd(lr, mu)

        def step(carry, _):
            p, s = carry
            u, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]

    grads = jax.tree.map(lambda a: jnp.full((k, *a.shape), 1e-3, a.dtype), params)
    lrs, mus = jnp.full((k,), 0.01), jnp.full((k,), 0.9)
    exe, compile_s = compiled(jax.vmap(run), lrs, mus, grads)
    size = sum(a.size for a in jax.tree.leaves(params))
    return lambda: jax.block_until_ready(exe(lrs, mus, grads)), compile_s, size


def peak(n=4096):
    """A large float32 matmul."""
    a = jnp.ones((n, n), jnp.float32)
    exe, compile_s = compiled(lambda a: a @ a, a)
    return lambda: jax.block_until_ready(exe(a)), compile_s, 2 * n**3


# ---- a user's model that is not the study's: a small CNN (--cnn) ------------------------------


class CNN(nn.Module):
    """Two 3x3 convolutions (16 and 32 channels, ReLU, 2x2 max-pooling each), a dense layer."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


# multiply-adds per example, forward: conv 1, conv 2, dense; a step is about 3x the forward
CNN_FLOPS_PER_EXAMPLE = 3 * 2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 32 * 10)


def cnn_data(n: int):
    """Fashion-MNIST-shaped float32 images (n, 28, 28, 1) and labels; the values are random."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 28, 28, 1)).astype(np.float32)
    return jax.device_put(images), jax.device_put(rng.integers(0, 10, n).astype(np.int32))


def cnn_init(key):
    return CNN().init(key, jnp.zeros((1, 28, 28, 1)))["params"]


def cnn_loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(CNN().apply({"params": params}, x), y)


def cnn_sgd(h):
    return jaxmom.sgd(h["lr"], h["momentum"])


def cnn_fit(images, labels):
    """The 4x4 lr x momentum grid, one epoch, through ``sweep.fit`` (chunk size "auto")."""
    grid = sweep.product(lr=list(LRS), momentum=list(MOMENTA))
    kw = dict(init=cnn_init, loss=cnn_loss, optimizer=cnn_sgd, train=(images, labels))
    run = lambda: sweep.fit(grid, **kw, batch_size=64, epochs=1, progress=False)
    first = run()
    return run, first.compile_seconds


def cnn_optax_vmap(images, labels):
    """The same work hand-written: ``inject_hyperparams(optax.sgd)`` + ``vmap`` over a
    ``lax.scan`` epoch, the shared batch order padded with zero weights as ``fit`` does."""
    n, size = images.shape[0], 64
    steps = -(-n // size)

    def run(lr, momentum, key, images, labels):
        init_key, data_key = jax.random.split(key)
        params = cnn_init(init_key)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
        pad = steps * size - n
        order = jnp.concatenate(
            [jax.random.permutation(jax.random.fold_in(data_key, 0), n), jnp.zeros(pad, int)]
        )
        weights = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)])

        def step(carry, batch):
            p, s = carry
            idx, w = batch
            loss, grads = jax.value_and_grad(
                lambda p: jnp.sum(w * cnn_loss(p, images[idx], labels[idx])) / jnp.sum(w)
            )(p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        batches = (order.reshape(steps, size), weights.reshape(steps, size))
        return jax.lax.scan(step, (params, tx.init(params)), batches)[1]

    lrs, mus = (jnp.asarray(v, jnp.float32) for v in zip(*[(a, b) for a in LRS for b in MOMENTA]))
    key = jax.random.key(0)
    vmapped = jax.vmap(run, in_axes=(0, 0, None, None, None))
    exe, compile_s = compiled(vmapped, lrs, mus, key, images, labels)
    return lambda: jax.block_until_ready(exe(lrs, mus, key, images, labels)), compile_s


def cnn_one_by_one(images, labels):
    """The 16 configurations one after another: a jitted step (``inject_hyperparams``, so one
    compile serves every value) per batch, the batch gathered on device, the last one partial."""
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0)

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(cnn_loss(p, x, y)))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = cnn_init(jax.random.split(jax.random.key(0))[0])
    n, size = images.shape[0], 64
    order = jax.random.permutation(jax.random.fold_in(jax.random.split(jax.random.key(0))[1], 0), n)
    step, compile_s = compiled(train_step, params, tx.init(params), images[:size], labels[:size])
    last = n % size
    tail, tail_c = (
        compiled(train_step, params, tx.init(params), images[:last], labels[:last])
        if last
        else (None, 0.0)
    )

    def run():
        for lr in LRS:
            for mu in MOMENTA:
                p, s = params, tx.init(params)
                s.hyperparams["learning_rate"] = jnp.float32(lr)
                s.hyperparams["momentum"] = jnp.float32(mu)
                for i in range(0, n - last, size):
                    idx = order[i : i + size]
                    p, s, loss = step(p, s, images[idx], labels[idx])
                if tail is not None:
                    idx = order[n - last :]
                    p, s, loss = tail(p, s, images[idx], labels[idx])
                jax.block_until_ready(p)

    return run, compile_s + tail_c


def cnn_hlo(images, labels) -> dict:
    """What XLA makes of the sweep's convolutions: the optimized HLO of fit's 4x4 epoch (shared
    batch, 16 stacked kernels), its convolutions' shapes and feature group counts."""
    grid = sweep.product(lr=list(LRS), momentum=list(MOMENTA))
    text = sweep.plan(grid, init=cnn_init, loss=cnn_loss, optimizer=cnn_sgd, chunk_size=16,
                      train=(images, labels), batch_size=64, epochs=1).epoch_hlo()  # fmt: skip
    convs = [line for line in text.splitlines() if " convolution(" in line]
    return {
        "convolutions": len(convs),
        "shapes": sorted(
            {re.sub(r"%\S+ = ", "", c.split(" convolution(")[0]).strip() for c in convs}
        ),
        "feature_group_counts": sorted(
            {int(m) for c in convs for m in re.findall(r"feature_group_count=(\d+)", c)} | {1}
        ),
    }


# ---- fresh processes (--cold) ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
COLD = {  # row: the flags of experiments/mnist.py
    "fresh process: the default study, python3 experiments/mnist.py": [],
    "fresh process: the 4x4 sweep, mnist.py --sweep --lr 0.003,0.01,0.03,0.1 --momentum "
    "0,0.5,0.9,0.99": ["--sweep", "--lr", "0.003,0.01,0.03,0.1", "--momentum", "0,0.5,0.9,0.99"],
}
CACHE_STATES = ("off", "empty", "filled")  # in this order: the empty run fills the cache


def cold_rows(extra=(), commands=None) -> list[dict]:
    """Each of ``commands`` (default :data:`COLD`; ``extra`` flags appended) run as
    ``experiments/mnist.py`` in a fresh process, timed from outside (interpreter start, imports,
    data, compiles, training, results written): with the compile cache off, empty, and filled by
    the empty run. Returns one row each, with the compile seconds its results.json reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxmom-cold-") as tmp:
        for i, (name, flags) in enumerate((commands or COLD).items()):
            cache = Path(tmp) / f"cache-{i}"
            for state in CACHE_STATES:
                out = Path(tmp) / f"out-{i}-{state}"
                setting = "off" if state == "off" else str(cache)
                cmd = [sys.executable, str(ROOT / "experiments" / "mnist.py"), *flags, *extra]
                cmd += ["--quiet", "--out", str(out), "--compile-cache", setting]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise SystemExit(f"benchmark.py: {' '.join(cmd)} failed:\n{proc.stderr}")
                results = json.loads((out / "results.json").read_text())
                runs = results["runs"]  # a sweep's cells each carry the sweep's compile seconds
                compile_s = [r.get("compile_seconds") or 0.0 for r in runs]
                rows.append(
                    {
                        "row": f"{name} (compile cache {state})",
                        "configs": len(runs),
                        "seconds": seconds,
                        "compile_seconds": compile_s[0] if results["sweep"] else sum(compile_s),
                        "gflops": None,
                        "fresh_process": True,
                        "compile_cache": state,
                    }
                )
    return rows


# ---- main --------------------------------------------------------------------------------------


def large_grid(data, steps) -> dict:
    """A 16x16 lr x momentum grid, one epoch, through run_sweep with the automatic chunk size;
    run once after compiling."""
    lrs = np.geomspace(1e-3, 0.3, 16).tolist()
    momenta = np.linspace(0.0, 0.99, 16).tolist()
    fns = train.functions("sgd", (), "torch")
    plan = sweep.plan(  # what run_sweep gives fit, for fit's own memory estimate
        sweep.product(learning_rate=lrs, momentum=momenta),
        init=fns.init,
        loss=train.loss,
        optimizer=fns.optimizer,
        train=(data[0], data[1]),
        eval=(data[2], data[3]),
        evaluate=train.evaluate,
        batch_size=64,
        epochs=1,
        fixed={"dampening": 0.0, "weight_decay": 0.0},
        eval_batch_size=train.EVAL_BATCH,
    )
    per_config, chunk = plan.bytes_per_config, plan.chunk_size
    t0 = time.perf_counter()
    run, first = study_sweep(data, lrs, momenta)
    compile_s = first.compile_seconds
    res = run()
    return {
        "row": "jaxmom --sweep 16x16 (--large): run_sweep, automatic chunk size",
        "configs": 256,
        "seconds": res.train_seconds + res.eval_seconds,
        "train_seconds": res.train_seconds,
        "eval_seconds": res.eval_seconds,
        "compile_seconds": compile_s,
        "first_run_seconds": time.perf_counter() - t0 - compile_s,
        "chunk_size": chunk,
        "estimated_bytes_per_config": per_config,
        "estimated_bytes_16x16": 256 * per_config,
        "estimated_bytes_per_chunk": chunk * per_config,
        "peak_rss_bytes": peak_rss(),
        "configs_epochs_per_second": 256 / (res.train_seconds + res.eval_seconds),
        "gflops": 256 * steps * FLOPS_PER_STEP / res.train_seconds / 1e9,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", type=int, help="training images (default 60000; --quick: 640)")
    ap.add_argument("--test-samples", type=int, help="test images (default 10000; --quick: 200)")
    ap.add_argument(
        "--repeats", type=int, help="timed rounds; the best is kept (default 3; --quick: 1)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 640 samples, 1 round")
    ap.add_argument("--large", action="store_true", help="also a 16x16 grid (256 configurations)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    ap.add_argument(
        "--cnn", action="store_true", help="also a small CNN's 4x4 sweep: fit vs two peers"
    )
    ap.add_argument(
        "--cold",
        action="store_true",
        help="also mnist.py's default study and 4x4 sweep in fresh processes, compile cache off, "
        "empty and filled (with --quick: on 640 images, 1 epoch)",
    )
    ap.add_argument("--out", default="runs/benchmark.json", help="JSON output path")
    add_compile_cache_flags(ap)
    args = ap.parse_args(argv)
    cache = configure_compile_cache(args.compile_cache, prog="benchmark.py")
    args.samples = args.samples or (640 if args.quick else 60000)
    args.test_samples = args.test_samples or (200 if args.quick else 10000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.samples < 64 or args.test_samples < 1 or args.repeats < 1:
        ap.error("--samples must be >= 64, --test-samples >= 1 and --repeats >= 1")

    data = synthetic(args.samples, args.test_samples)
    steps = -(-args.samples // 64)
    k = len(LRS) * len(MOMENTA)
    epoch, epoch_c = study_epoch(data)
    dense, dense_first, dense_c = dense_fit(
        data, sweep.product(learning_rate=LRS, momentum=MOMENTA)
    )
    swept, first = study_sweep(data)
    loop, loop_c = flax_loop(data)
    vmapped, vmap_c, vmap_first = optax_vmap(data)
    update, up_c, n_params = update_only(steps, k)
    pk, pk_c, pk_flop = peak()

    rows = {  # name: (callable, configurations, compile seconds, flop)
        "peak: 4096^2 float32 matmul": (pk, None, pk_c, pk_flop),
        EPOCH: (epoch, 1, epoch_c, None),
        "optax+flax jitted step in a Python loop, host-gathered batches": (loop, 1, loop_c, None),
        SWEEP: (swept, k, first.compile_seconds, None),
        VMAP: (vmapped, k, vmap_c, None),
        DENSE: (dense, k, dense_c, None),
        "part: jaxmom.sgd update alone, 16 configs": (update, None, up_c, None),
    }
    if args.cnn:
        images, labels = cnn_data(args.samples)
        cnn_flop = k * args.samples * CNN_FLOPS_PER_EXAMPLE
        for name, make in (
            (CNN_FIT, cnn_fit),
            (CNN_VMAP, cnn_optax_vmap),
            (CNN_LOOP, cnn_one_by_one),
        ):
            fn, compile_s = make(images, labels)
            rows[name] = (fn, k, compile_s, cnn_flop)
    if not args.no_torch:
        try:
            rows["pytorch eager: torch.optim.SGD, randperm batches"] = (
                torch_eager(data, os.cpu_count())[0],
                1,
                0.0,
                None,
            )
        except ImportError:
            print("torch not installed: skipping the PyTorch row", file=sys.stderr)

    for fn, *_rest in rows.values():  # the untimed first execution
        fn()
    best = {name: np.inf for name in rows}
    eval_seconds = np.inf
    for _ in range(args.repeats):
        for name, (fn, *_rest) in rows.items():
            t0 = time.perf_counter()
            out = fn()  # every row waits for its results on the host
            best[name] = min(best[name], time.perf_counter() - t0)
            if name == SWEEP:
                eval_seconds = min(eval_seconds, out.eval_seconds)

    first_calls = {DENSE: dense_first, VMAP: vmap_first}
    records = []
    for name, (_, configs, compile_s, flop) in rows.items():
        flop = flop if flop is not None else (configs or 0) * steps * FLOPS_PER_STEP
        rec = {
            "row": name,
            "configs": configs,
            "seconds": best[name],
            "compile_seconds": compile_s,
            "gflops": flop / best[name] / 1e9 if flop else None,
        }
        if name == SWEEP:
            rec["eval_seconds"] = eval_seconds
        if name in first_calls:  # in this process: compiles (or the compile cache) included
            rec["first_call_seconds"] = first_calls[name]
        if name.startswith("part: jaxmom.sgd"):
            # one pass would read p, b, g and write p, b (5 arrays); XLA:CPU makes two passes
            # (b = mu*b + g; then p -= lr*b, reading b again): 6 arrays of traffic.
            rec["gbytes_per_s"] = 5 * 4 * n_params * k * steps / best[name] / 1e9
            rec["gbytes_per_s_two_passes"] = 6 * 4 * n_params * k * steps / best[name] / 1e9
        records.append(rec)
    if args.large:
        records.append(large_grid(data, steps))
    if args.cold:
        quick = ["--max-train-samples", "640", "--max-test-samples", "200", "--epochs", "1"]
        records += cold_rows(quick if args.quick else ())
    hlo = cnn_hlo(images, labels) if args.cnn else None
    ratios = {
        f"{a} vs {b}": {"speedup": best[b] / best[a], "target": t}
        for (a, b), t in {**TARGETS, **CNN_TARGETS}.items()
        if a in best and b in best
    }

    print(
        f"machine: {machine()}; jax {jax.__version__}, {jax.devices()[0].platform}; "
        f"{args.samples} training images ({steps} steps of batch 64), {args.test_samples} test; "
        f"best of {args.repeats} interleaved rounds after one untimed run; compile cache "
        f"{cache or 'off'}"
    )
    print(f"{'row':74s} {'configs':>7s} {'seconds':>8s} {'compile':>7s} {'GFLOP/s':>8s}")
    for r in records:
        extra = f"{r['gflops']:8.1f}" if r["gflops"] else ""
        if "gbytes_per_s" in r:
            extra = f"{r['gbytes_per_s']:5.1f} GB/s"
        if "eval_seconds" in r:
            extra += f"  (evaluation {r['eval_seconds']:.3f} s)"
        if "first_call_seconds" in r:
            extra += f"  (first call {r['first_call_seconds']:.2f} s)"
        if "configs_epochs_per_second" in r:
            extra += (
                f"  {r['configs_epochs_per_second']:.1f} configs-epochs/s, chunk {r['chunk_size']}"
                f", est. {r['estimated_bytes_16x16'] / 2**30:.2f} GiB for 16x16"
                f", peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
            )
        print(
            f"{r['row']:74s} {r['configs'] or '':>7} {r['seconds']:8.3f} "
            f"{r['compile_seconds']:7.2f} {extra}"
        )
    fresh = [r for r in records if r.get("fresh_process")]
    for off, empty, filled in zip(fresh[::3], fresh[1::3], fresh[2::3]):
        print(
            f"{filled['row'][: -len(' (compile cache filled)')]}: filled cache "
            f"{filled['seconds'] / empty['seconds']:.0%} of empty, "
            f"{filled['seconds'] / off['seconds']:.0%} of off"
        )
    print()
    for name, r in ratios.items():
        ok = "meets" if r["speedup"] >= r["target"] else "MISSES"
        print(f"{name:140s} {r['speedup']:5.2f}x ({ok} target {r['target']}x)")
    if hlo is not None:
        print(f"\ncnn sweep's optimized HLO: {hlo['convolutions']} convolutions, feature group "
              f"counts {hlo['feature_group_counts']}:")  # fmt: skip
        for shape in hlo["shapes"]:
            print(f"  {shape}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "jax": jax.__version__,
                "device": str(jax.devices()[0]),
                "samples": args.samples,
                "test_samples": args.test_samples,
                "steps": steps,
                "repeats": args.repeats,
                "compile_cache": str(cache) if cache else None,
                "timed": "best of the repeats, after one untimed execution post-compile",
                "flop_per_step_per_config": FLOPS_PER_STEP,
                "rows": records,
                "speedups": ratios,
                "cnn_hlo": hlo,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
