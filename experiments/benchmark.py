"""Speed benchmark: one MNIST-study epoch and a 4x4 lr x momentum sweep, jaxmom against its peers.

Workload: the 784-200-10 ReLU MLP, batch 64, softmax cross-entropy, SGD with momentum, one epoch
of 60,000 MNIST-shaped synthetic samples (937 steps; speed does not depend on the pixel values).
Every row is timed after compilation (compile time reported apart), as the best of ``--repeats``
rounds; rounds visit the rows in turn, so background load hits all rows alike. Effective GFLOP/s
counts 41.2 MFLOP per step per configuration (forward plus backward); the peak is the best of a
large float32 matmul measured in the same run.

    python experiments/benchmark.py                 # full run, ~2 minutes on 2 cores
    python experiments/benchmark.py --quick         # smoke run, seconds
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

try:
    import jaxmom  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmom import _fastmlp, sweep
from jaxmom.studies.mnist.model import MLP

LRS = (0.003, 0.01, 0.03, 0.1)
MOMENTA = (0.0, 0.5, 0.9, 0.99)
TARGETS = {  # (row, baseline): the minimum speed-up on a 2-core CPU
    ("jaxmom epoch", "optax+flax jitted-step loop"): 1.7,
    ("jaxmom epoch", "pytorch eager"): 1.6,
    ("jaxmom sweep 4x4", "optax inject_hyperparams + vmap 4x4"): 1.25,
    ("jaxmom sweep 4x4", "16 sequential jitted-step loops"): 3.0,
}


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


def compiled(fn, *args):
    """AOT-compile ``jax.jit(fn)`` for ``args``; return (executable, compile seconds)."""
    t0 = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    return exe, time.perf_counter() - t0


# ---- peers -------------------------------------------------------------------------------------


def flax_loop(data_x, data_y, lr, momentum):
    """The common Optax + Flax way: a jitted train step called from a Python loop over batches."""
    model = MLP()
    tx = optax.sgd(lr, momentum)

    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = model.init(jax.random.key(0), data_x[0])["params"]
    step, compile_s = compiled(train_step, params, tx.init(params), data_x[0], data_y[0])

    def run():
        p, s = params, tx.init(params)
        for x, y in zip(data_x, data_y):
            p, s, loss = step(p, s, x, y)
        return jax.block_until_ready(loss)

    return run, compile_s


def optax_vmap(xb, yb):
    """The straightforward Optax sweep: inject_hyperparams(optax.sgd) + vmap over a scan epoch."""
    model = MLP()
    params = model.init(jax.random.key(0), xb[0])["params"]

    def epoch(lr, momentum, xb, yb):
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)

        def step(carry, batch):
            p, s = carry
            x, y = batch
            loss, grads = jax.value_and_grad(
                lambda p: optax.softmax_cross_entropy_with_integer_labels(
                    model.apply({"params": p}, x), y
                ).mean()
            )(p)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(step, (params, tx.init(params)), (xb, yb))[1]

    lrs, mus = (jnp.asarray(v, jnp.float32) for v in zip(*[(a, b) for a in LRS for b in MOMENTA]))
    exe, compile_s = compiled(jax.vmap(epoch, in_axes=(0, 0, None, None)), lrs, mus, xb, yb)
    return lambda: jax.block_until_ready(exe(lrs, mus, xb, yb)), compile_s


def torch_eager(x, y, lr, momentum, threads):
    """PyTorch eager: nn.Sequential, torch.optim.SGD, tensors in memory."""
    import torch

    torch.set_num_threads(threads)
    xs = torch.from_numpy(np.asarray(x)).split(64)
    ys = torch.from_numpy(np.asarray(y)).long().split(64)
    steps = len(x) // 64

    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        for xb, yb in zip(xs[:steps], ys[:steps]):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        return loss.item()

    return run, 0.0


# ---- the two parts of the sweep's cost ---------------------------------------------------------


def wide_matmuls(data, k):
    """The sweep's first-layer matmuls alone: (k*200, 784) @ (784, 64) then (k*200, 64) @ (64, 784)
    per step, chained through a cheap normalisation so nothing is optimised away."""

    def run(w):
        def step(w, x):
            h = w @ x.T
            h = h * jax.lax.rsqrt(jnp.mean(h * h) + 1e-6)
            return h @ x, None

        return jax.lax.scan(step, w, data[0])[0]

    w = jnp.ones((k * 200, 784), jnp.float32) / 784
    exe, compile_s = compiled(run, w)
    return lambda: jax.block_until_ready(exe(w)), compile_s


def update_only(steps, k, momentum=0.9):
    """jaxmom.sgd's update alone, for k configurations, with a fixed gradient: memory-bound."""
    from jaxmom import sgd

    def run(lr, mu, grads):
        params = _fastmlp.init_params(jax.random.key(0))
        tx = sgd(lr, mu)

        def step(carry, _):
            p, s = carry
            u, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]

    # one gradient per configuration, as in the sweep
    grads = jax.tree.map(
        lambda a: jnp.full((k, *a.shape), 1e-3, a.dtype), _fastmlp.init_params(jax.random.key(1))
    )
    lrs, mus = jnp.full((k,), 0.01), jnp.full((k,), momentum)
    exe, compile_s = compiled(jax.vmap(run), lrs, mus, grads)
    return lambda: jax.block_until_ready(exe(lrs, mus, grads)), compile_s


def peak(n=4096):
    """A large float32 matmul."""
    a = jnp.ones((n, n), jnp.float32)
    exe, compile_s = compiled(lambda a: a @ a, a)
    return lambda: jax.block_until_ready(exe(a)), compile_s, 2 * n**3


# ---- main --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--samples", type=int, help="samples per epoch (default 60000; --quick: 640)")
    ap.add_argument(
        "--repeats", type=int, help="timed rounds; the best is kept (default 3; --quick: 1)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 640 samples, 1 round")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    ap.add_argument("--out", default="runs/benchmark.json", help="JSON output path")
    args = ap.parse_args(argv)
    if args.samples is None:
        args.samples = 640 if args.quick else 60000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.samples < 64 or args.repeats < 1:
        print("error: --samples must be >= 64 and --repeats >= 1", file=sys.stderr)
        return 2

    x, y = _fastmlp.synthetic(args.samples)
    steps = args.samples // 64
    data = _fastmlp.batches(x, y)
    xb, yb = data[0], jnp.asarray(y[: steps * 64].reshape(steps, 64), jnp.int32)
    x_list, y_list = list(xb), list(yb)
    lr, mu = 0.01, 0.9
    k = len(LRS) * len(MOMENTA)

    train_fn = _fastmlp.make_train_fn("sgd")
    one, one_c = compiled(
        train_fn,
        {"learning_rate": jnp.float32(lr), "momentum": jnp.float32(mu)},
        jax.random.key(0),
        data,
    )
    hp1 = {"learning_rate": jnp.float32(lr), "momentum": jnp.float32(mu)}
    grid = sweep.product(learning_rate=list(LRS), momentum=list(MOMENTA))
    first = sweep.sweep(train_fn, grid, args=(data,))  # compiles; later calls reuse it
    loop, loop_c = flax_loop(x_list, y_list, lr, mu)
    vmapped, vmap_c = optax_vmap(xb, yb)
    matmuls, mm_c = wide_matmuls(data, k)
    update, up_c = update_only(steps, k)
    pk, pk_c, pk_flop = peak()

    rows = {  # name: (callable returning seconds, configurations, compile seconds, flop)
        "peak: 4096^2 float32 matmul": (pk, None, pk_c, pk_flop),
        "jaxmom epoch": (
            lambda: jax.block_until_ready(one(hp1, jax.random.key(0), data)),
            1,
            one_c,
            None,
        ),
        "optax+flax jitted-step loop": (loop, 1, loop_c, None),
        "jaxmom sweep 4x4": (
            lambda: sweep.sweep(train_fn, grid, args=(data,)),
            k,
            first.compile_seconds,
            None,
        ),
        "optax inject_hyperparams + vmap 4x4": (vmapped, k, vmap_c, None),
        "16 sequential jitted-step loops": (lambda: [loop() for _ in range(k)], k, loop_c, None),
        "part: wide first-layer matmuls, 16 configs": (
            matmuls,
            None,
            mm_c,
            2 * 2 * 64 * 784 * 200 * k * steps,
        ),
        "part: jaxmom.sgd update, 16 configs": (update, None, up_c, None),
    }
    if not args.no_torch:
        try:
            rows["pytorch eager"] = (torch_eager(x, y, lr, mu, os.cpu_count())[0], 1, 0.0, None)
        except ImportError:
            print("torch not installed: skipping the PyTorch row", file=sys.stderr)

    for fn, *_rest in rows.values():  # warm up: first-call allocations, PyTorch's lazy init
        fn()
    best = {name: np.inf for name in rows}
    for _ in range(args.repeats):
        for name, (fn, *_rest) in rows.items():
            t0 = time.perf_counter()
            fn()  # the sweep row: the whole sweep() call, results fetched to the host included
            best[name] = min(best[name], time.perf_counter() - t0)

    params = sum(a.size for a in jax.tree.leaves(_fastmlp.init_params(jax.random.key(0))))
    records = []
    for name, (_, configs, compile_s, flop) in rows.items():
        flop = flop if flop is not None else (configs or 0) * steps * _fastmlp.FLOPS_PER_STEP
        rec = {
            "row": name,
            "configs": configs,
            "seconds": best[name],
            "compile_seconds": compile_s,
            "gflops": flop / best[name] / 1e9 if flop else None,
        }
        if name.startswith("part: jaxmom.sgd"):  # read p, b, g and write p, b: 5 float32 arrays
            rec["gbytes_per_s"] = 5 * 4 * params * k * steps / best[name] / 1e9
        records.append(rec)
    ratios = {
        f"{a} vs {b}": {"speedup": best[b] / best[a], "target": t}
        for (a, b), t in TARGETS.items()
        if a in best and b in best
    }

    print(
        f"machine: {machine()}; jax {jax.__version__}, {jax.devices()[0].platform}; "
        f"{steps} steps of batch 64 per epoch"
    )
    print(f"{'row':45s} {'configs':>7s} {'seconds':>9s} {'compile s':>9s} {'GFLOP/s':>8s}")
    for r in records:
        gf = (
            f"{r['gflops']:8.1f}"
            if r["gflops"]
            else (f"{r['gbytes_per_s']:6.1f}GB/s" if "gbytes_per_s" in r else "")
        )
        print(
            f"{r['row']:45s} {r['configs'] or '':>7} {r['seconds']:9.3f} {r['compile_seconds']:9.2f} {gf}"
        )
    print()
    for name, r in ratios.items():
        ok = "meets" if r["speedup"] >= r["target"] else "MISSES"
        print(f"{name:75s} {r['speedup']:5.2f}x  ({ok} target {r['target']}x)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "jax": jax.__version__,
                "device": str(jax.devices()[0]),
                "samples": args.samples,
                "steps": steps,
                "repeats": args.repeats,
                "flop_per_step_per_config": _fastmlp.FLOPS_PER_STEP,
                "rows": records,
                "speedups": ratios,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
