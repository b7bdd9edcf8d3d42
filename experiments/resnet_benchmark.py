"""A small ResNet with BatchNorm and Dropout on Fashion-MNIST: a grid, halving, and the grid's cost
(issue 24).

The CNN (:class:`ResNet`: a strided 3x3 convolution of 16 channels, two residual blocks, the
second strided with 32 channels and a 1x1 projection, global average pooling, Dropout, a dense
layer) trains through ``fit`` with model state (BatchNorm's statistics) and a key per step (the
dropout masks), as ``docs/sweep_your_model.md`` shows: SGD with momentum, batch 64, ``--train``
training images, the next ``--val`` held out by the study's split (``tuning.problem``) and
``--test`` test images only reported. Every pick is the trial of the best validation accuracy, the
mean over its seeds.

- grid: :data:`LRS` x :data:`MOMENTA` x ``--seeds`` seeds, one ``fit``;
- halving: successive halving (eta 2) of random trials from :data:`SPACE`, with the same seeds, as
  many as spend at least the grid's configuration-epochs;
- cost: the grid's cells again, one ``fit`` each in this process, against the grid as one
  ``fit``, compile included (wall) and excluded (train + eval); the same for the study's
  784-200-10 MLP on the same images.

Writes ``resnet_benchmark.json`` (every number, the machine, its load), ``resnet_benchmark.txt``
(the Markdown the Tuning page includes) and ``resnet_benchmark.png`` into ``--out`` (default
``docs/``); ``--replot`` rewrites the text and the figure from the JSON.

    python experiments/resnet_benchmark.py                             # ~12 min on 2 shared cores
    python experiments/resnet_benchmark.py --quick --out runs/resnet   # a minute and a half
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

try:
    import jaxmom  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pbt_benchmark  # the neighbour scripts: halving's trials, the machine
import tuning  # the problem (train, validation, test), the names of the two evaluation sets
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from jaxmom import sweep
from jaxmom.studies.mnist import data as mnist_data
from jaxmom.studies.mnist.model import preprocess
from jaxmom.sweep import plot

LRS = (0.01, 0.03, 0.1)
MOMENTA = (0.5, 0.9, 0.97)
SPACE = {"lr": sweep.log_uniform(3e-3, 0.3), "momentum": sweep.uniform(0.0, 0.97)}
ETA = 2
MLP_ROUNDS = 3  # the MLP's grid and cells in turn, a few seconds each: the least of 3 is kept


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (through a 1x1 conv and BN where the shape changes)."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
        h = nn.relu(norm()(nn.Conv(self.features, (3, 3), self.stride, use_bias=False)(x)))
        h = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(h))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = norm()(nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x))
        return nn.relu(h + x)


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, images, train: bool):
        x = preprocess(images).reshape(-1, 28, 28, 1)
        x = nn.Conv(16, (3, 3), 2, use_bias=False)(x)  # 14 x 14
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = Block(32, 2)(Block(16)(x, train), train)  # 7 x 7
        x = nn.Dropout(0.2, deterministic=not train)(x.mean((1, 2)))
        return nn.Dense(10)(x)


def cnn_problem(ds, n_val: int, batch_size: int, epochs: int) -> dict:
    """``tuning.problem``'s data, sets and optimizer, with the ResNet's state and dropout keys."""
    net = ResNet()

    def init(key):
        v = net.init(key, jnp.zeros((1, 28, 28), jnp.uint8), train=False)
        return v["params"], {"batch_stats": v["batch_stats"]}

    def loss(params, state, x, y, *, key):
        logits, new = net.apply({"params": params, **state}, x, train=True,
                                mutable=["batch_stats"], rngs={"dropout": key})  # fmt: skip
        return optax.softmax_cross_entropy_with_integer_labels(logits, y), new

    def evaluate(params, state, x, y):
        logits = net.apply({"params": params, **state}, x, train=False)  # running averages
        return {"accuracy": (jnp.argmax(logits, -1) == y) * 1.0}

    kw = tuning.problem(ds, n_val, batch_size, epochs)
    return {**kw, "init": init, "loss": loss, "evaluate": evaluate, "has_state": True}


def cells(res, seeds: int) -> dict:
    """Each trial's values (rows) and its final accuracies per seed (columns); NaN where it
    stopped early (halving)."""
    coords = res.grid.coords()
    row = lambda a: np.asarray(a).reshape(-1, seeds)
    return {"lr": row(coords["lr"])[:, 0].tolist(),
            "momentum": row(coords["momentum"])[:, 0].tolist(),
            "val_accuracy": row(res.metrics[tuning.VAL][..., -1]).astype(float).tolist(),
            "test_accuracy": row(res.metrics[tuning.TEST][..., -1]).astype(float).tolist(),
            "diverged": row(res.diverged).any(1).tolist()}  # fmt: skip


def pick(c: dict) -> dict:
    """The trial of the best validation accuracy at the end, mean over its seeds, among those
    trained to the end in which no seed diverged; and the best mean test accuracy (an oracle)."""
    val = np.array(c["val_accuracy"], float)  # None (a stopped trial, from JSON) is NaN
    test = np.array(c["test_accuracy"], float)
    ok = np.isfinite(val).all(1) & ~np.array(c["diverged"])
    i = int(np.flatnonzero(ok)[np.argmax(val[ok].mean(1))])
    return {"pick": i, "lr": c["lr"][i], "momentum": c["momentum"][i],
            "pick_val_accuracy": float(val[i].mean()), "pick_test_accuracy": float(test[i].mean()),
            "pick_test_per_seed": test[i].tolist(),
            "oracle_test_accuracy": float(test[ok].mean(1).max())}  # fmt: skip


def timed(run) -> tuple:
    t0 = time.perf_counter()
    res = run()
    wall = time.perf_counter() - t0
    return res, {"wall_seconds": wall, "compile_seconds": res.compile_seconds,
                 "train_eval_seconds": res.train_seconds + res.eval_seconds}  # fmt: skip


def one_by_one(kw: dict, lrs, momenta, seeds: int) -> dict:
    """The grid's cells, one ``fit`` of one cell (its seed as ``fit``'s) after another."""
    seq = {"wall_seconds": 0.0, "compile_seconds": 0.0, "train_eval_seconds": 0.0}
    val = []
    for lr, m, s in itertools.product(lrs, momenta, range(seeds)):  # the grid's order
        one = sweep.product(lr=[lr], momentum=[m])
        r, t = timed(lambda one=one, s=s: sweep.fit(one, seed=s, **kw))
        seq.setdefault("first_compile_seconds", t["compile_seconds"])
        seq.update({k: seq[k] + v for k, v in t.items()})
        val.append(float(r.metrics[tuning.VAL][..., -1].item()))
    return {**seq, "val_accuracy": val}


def cost(kw: dict, lrs, momenta, seeds: int, rounds: int) -> dict:
    """The grid as one ``fit``, then its cells one after another, ``rounds`` times in turn: wall
    times (compile included) of the first round, train + eval seconds the least over the rounds
    (the load of a shared machine varies); the plan ``fit`` made for the grid (chunk, stepwise);
    and the cell whose final validation accuracy differs most between the two."""
    grid = sweep.product(lr=list(lrs), momentum=list(momenta)).with_seeds(seeds)
    runs = []
    for _ in range(rounds):
        res, whole = timed(lambda: sweep.fit(grid, **kw))
        runs.append((whole, one_by_one(kw, lrs, momenta, seeds)))
    whole, seq = runs[0]
    whole["cells"] = cells(res, seeds)
    for i, d in enumerate((whole, seq)):
        d["train_eval_rounds"] = [r[i]["train_eval_seconds"] for r in runs]
        d["train_eval_seconds"] = min(d["train_eval_rounds"])
    p = sweep.plan(grid, **{k: v for k, v in kw.items() if k != "progress"})
    got = np.array(whole["cells"]["val_accuracy"], float).reshape(-1)
    worst = int(np.argmax(np.abs(got - seq["val_accuracy"])))
    return {
        "grid": whole,
        "sequential": seq,
        "configurations": grid.size,
        "rounds": rounds,
        "plan": {"chunk_size": p.chunk_size, "chunks": p.chunks, "stepwise": p.stepwise},
        "max_val_difference": abs(got[worst] - seq["val_accuracy"][worst]),
        "max_val_difference_at": {
            "lr": lrs[worst // (seeds * len(momenta))],
            "momentum": momenta[worst // seeds % len(momenta)],
            "seed": worst % seeds,
            "grid": got[worst],
            "alone": seq["val_accuracy"][worst],
        },  # fmt: skip
        "ratio_with_compile": seq["wall_seconds"] / whole["wall_seconds"],
        "ratio_without_compile": seq["train_eval_seconds"] / whole["train_eval_seconds"],
    }


def halving(kw: dict, trials: int, seeds: int) -> dict:
    space = sweep.sample(trials, method="random", seed=0, **SPACE).with_seeds(seeds)
    search = sweep.Halving(ETA, tuning.VAL, "max")
    res, t = timed(lambda: sweep.fit(space, search=search, **kw))
    trained = np.asarray(res.metrics["epochs_trained"]).reshape(-1, seeds)[:, 0]
    return {**t, "cells": cells(res, seeds), "epochs_trained": trained.tolist(),
            "config_epochs": res.info["halving"]["config_epochs"],
            "selected_on": res.info["selected_on"]}  # fmt: skip


def chunks(plan: dict) -> str:
    return f"{plan['chunks']} chunk" + "s" * (plan["chunks"] != 1)


def load(uptime: str) -> str:
    return uptime.split("load average:")[-1].strip()


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


def text(record: dict) -> str:
    """The Markdown the Tuning page includes: settings, tables and verdict, from the numbers."""
    st, m = record["settings"], record["machine"]
    cnn, mlp, hv = record["cnn"], record["mlp"], record["halving"]
    g, h = pick(cnn["grid"]["cells"]), pick(hv["cells"])
    grid_ce = cnn["configurations"] * st["epochs"]
    rows = ["| search | configurations | configuration-epochs | pick (lr, momentum) | pick's "
            "validation accuracy (%) | pick's test accuracy (%) | per seed (%) | best test "
            "accuracy at the end (%), not a pick | wall (s) |", "|" + " --- |" * 9]  # fmt: skip
    for name, p, n, ce, wall in (
        ("grid", g, cnn["configurations"], grid_ce, cnn["grid"]["wall_seconds"]),
        ("halving", h, len(hv["epochs_trained"]) * st["seeds"], hv["config_epochs"],
         hv["wall_seconds"]),
    ):  # fmt: skip
        rows.append(f"| {name} | {n} | {ce} | {p['lr']:.3g}, {p['momentum']:.3g} | "
                    f"{pct(p['pick_val_accuracy'])} | {pct(p['pick_test_accuracy'])} | "
                    + ", ".join(pct(v) for v in p["pick_test_per_seed"])
                    + f" | {pct(p['oracle_test_accuracy'])} | {wall:.0f} |")  # fmt: skip
    costs = ["| model | fit's plan for the grid | grid as one fit: wall (compile), train + "
             "eval (s) | cells one after another: wall (compile), train + eval (s) | one after "
             "another / grid, compile included | the same, compile excluded |",
             "|" + " --- |" * 6]  # fmt: skip
    for name, c in (("ResNet", cnn), ("MLP 784-200-10", mlp)):
        p, a, b = c["plan"], c["grid"], c["sequential"]
        name += f" (train + eval: the least of {c['rounds']} rounds)" * (c["rounds"] > 1)
        how = "one configuration at a time, stepwise" if p["stepwise"] else "one compiled epoch"
        costs.append(f"| {name} | chunk {p['chunk_size']} ({chunks(p)}), {how} | "
                     f"{a['wall_seconds']:.1f} ({a['compile_seconds']:.1f}), "
                     f"{a['train_eval_seconds']:.1f} | {b['wall_seconds']:.1f} "
                     f"({b['compile_seconds']:.1f}), {b['train_eval_seconds']:.1f} | "
                     f"{c['ratio_with_compile']:.2f}x | "
                     f"{c['ratio_without_compile']:.2f}x |")  # fmt: skip
    return "\n".join([
        f"{record['dataset']}: {st['train']:,} training images, the next {st['val']:,} held out "
        f"for validation, {st['test']:,} test images for reporting; SGD with momentum, batch "
        f"{st['batch_size']}, {st['epochs']} epochs; grid lr {st['lrs']} x momentum "
        f"{st['momenta']} x {st['seeds']} seeds; halving (eta {ETA}) of {st['halving_trials']} "
        f"random trials (lr log-uniform, momentum uniform: {', '.join(st['space'])}) x "
        f"{st['seeds']} seeds. Picks by validation accuracy, the mean over the seeds of a "
        f"trial. On {m['summary']}, load `{load(m['uptime_before'])}` before and "
        f"`{load(m['uptime'])}` after"
        f" (`experiments/resnet_benchmark.py`, {record['wall_seconds'] / 60:.1f} min):",
        "", *rows, "", verdict(record), "", *costs, "", cost_verdict(record), "",
        "![The ResNet grid's mean validation accuracy with its pick outlined, halving's trials, "
        "and the grid's cost against its cells one after another](resnet_benchmark.png)", "",
    ])  # fmt: skip


def differ(c: dict) -> str:
    d, at = c["max_val_difference"], c["max_val_difference_at"]
    if d == 0:
        return "0 (the same program, bit for bit)"
    return (f"{100 * d:.2f} points (lr {at['lr']:g}, momentum {at['momentum']:g}, seed "
            f"{at['seed']}: {pct(at['grid'])}% in the grid, {pct(at['alone'])}% alone: the "
            "vmapped program and the single run's agree to float32 rounding, which training "
            "can amplify)")  # fmt: skip


def verdict(record: dict) -> str:
    cnn, mlp, hv = record["cnn"], record["mlp"], record["halving"]
    g, h, mg = pick(cnn["grid"]["cells"]), pick(hv["cells"]), pick(mlp["grid"]["cells"])
    grid_ce = cnn["configurations"] * record["settings"]["epochs"]
    gap = 100 * (h["pick_test_accuracy"] - g["pick_test_accuracy"])
    spread = 100 * max(np.std(g["pick_test_per_seed"]), np.std(h["pick_test_per_seed"]))
    word = "within the spread of" if abs(gap) <= spread else "ahead of" if gap > 0 else "behind"
    cnn_gap = 100 * (g["pick_test_accuracy"] - mg["pick_test_accuracy"])
    return (
        f"Halving's pick is {word} the grid's pick: {gap:+.2f} points of mean test accuracy "
        f"(the larger std over the seeds is {spread:.2f}), for {hv['config_epochs']} "
        f"configuration-epochs against {grid_ce}. The grid's pick of the ResNet scores "
        f"{cnn_gap:+.2f} points of test accuracy against the grid's pick of the MLP on the same "
        f"images ({pct(mg['pick_test_accuracy'])}%). A cell's final validation accuracy in the "
        f"grid and in its own one-cell fit differ by at most {differ(cnn)} for the ResNet and "
        f"{differ(mlp)} for the MLP."
    )


def cost_verdict(record: dict) -> str:
    """What the grid as one ``fit`` saves, for each model, in words from its plan and ratios."""
    cnn, mlp = record["cnn"], record["mlp"]
    parts = []
    for name, c in (("the ResNet", cnn), ("the MLP", mlp)):
        p, r = c["plan"], c["ratio_without_compile"]
        how = (
            f"`fit` trains {name} stepwise, one configuration at a time per device, each epoch a "
            "Python loop of compiled steps (XLA:CPU runs convolutions faster so), so the grid "
            "is its cells one after another inside one call"
            if p["stepwise"] and p["chunk_size"] == 1
            else f"`fit` trains {name} {p['chunk_size']} configurations at once (vmapped), in "
            f"{chunks(p)}"
        )
        saves = "takes about as long as" if abs(r - 1) < 0.1 else (
            f"is {r:.2f}x as fast as" if r > 1 else f"is {1 / r:.2f}x as slow as")  # fmt: skip
        parts.append(
            f"On this CPU {how}: without compile, the grid {saves} the same {c['configurations']} "
            f"cells run one after another ({c['grid']['train_eval_seconds']:.0f} s against "
            f"{c['sequential']['train_eval_seconds']:.0f} s), {c['ratio_with_compile']:.2f}x "
            "with compile (in one process the one-cell runs compile once, "
            f"{c['sequential']['first_compile_seconds']:.1f} s, then reuse the programs)."
        )
    m, c = mlp["ratio_without_compile"], cnn["ratio_without_compile"]
    parts.append(
        f"Cells one after another / grid, compile excluded: {m:.2f}x for the MLP against "
        f"{c:.2f}x for the ResNet (above 1 the grid is the faster): one `fit` of the grid pays "
        f"off {'more' if m > c else 'less'} for the MLP than for the ResNet on this CPU."
    )
    return " ".join(parts)


def draw(fig: Figure, record: dict) -> None:
    """resnet_benchmark.png: the grid's mean validation accuracy (pick outlined), halving's
    trials (colour: final validation accuracy of those that trained to the end), and the cost of
    the grid as one fit against its cells one after another, for the ResNet and the MLP."""
    st, axes = record["settings"], fig.subplots(1, 3)
    c = record["cnn"]["grid"]["cells"]
    val = 100 * np.array(c["val_accuracy"], float).mean(1).reshape(len(st["lrs"]), -1)
    hv = record["halving"]
    hval = 100 * np.array(hv["cells"]["val_accuracy"], float).mean(1)
    done = np.isfinite(hval)
    both = np.concatenate([val.ravel(), hval[done]])
    norm = Normalize(np.nanmin(both), np.nanmax(both))  # one colour scale for both panels
    ax = axes[0]
    im = ax.imshow(val.T, origin="lower", cmap="viridis", norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(val):
        ax.text(i, j, f"{v:.1f}", ha="center", va="center", fontsize=8,
                color="black" if norm(v) > 0.5 else "white")  # fmt: skip
    i, j = np.unravel_index(pick(c)["pick"], val.shape)
    ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set(xticks=range(len(st["lrs"])), xticklabels=[f"{v:g}" for v in st["lrs"]],
           yticks=range(len(st["momenta"])), yticklabels=[f"{v:g}" for v in st["momenta"]],
           xlabel="learning rate", ylabel="momentum")  # fmt: skip
    ax.set_title(f"grid: validation accuracy (%), mean of {st['seeds']} seeds", fontsize=10)
    fig.colorbar(im, ax=ax)  # halving's trials are coloured on the same scale
    ax = axes[1]
    lr, mom = np.array(hv["cells"]["lr"]), np.array(hv["cells"]["momentum"])
    ax.scatter(lr[~done], mom[~done], s=25, c="lightgray", ec="gray", label="stopped early")
    sc = ax.scatter(lr[done], mom[done], s=60, c=hval[done], norm=norm, ec="black",
                    label=f"trained all {st['epochs']} epochs")  # fmt: skip
    h = pick(hv["cells"])
    ax.scatter([h["lr"]], [h["momentum"]], s=300, marker="*", fc="none", ec="red", lw=1.5,
               label="halving's pick")  # fmt: skip
    g = pick(c)
    ax.scatter([g["lr"]], [g["momentum"]], s=140, marker="s", fc="none", ec="red", lw=2,
               label="grid's pick")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log)", ylabel="momentum")
    ax.set_title(f"halving: {len(lr)} trials x {st['seeds']} seeds", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(sc, ax=ax, label="validation accuracy (%)")
    ax = axes[2]
    models = (("ResNet", record["cnn"]), ("MLP", record["mlp"]))
    x = np.arange(len(models))
    for k, (key, label) in enumerate((("grid", "grid as one fit"),
                                      ("sequential", "cells one after another"))):  # fmt: skip
        walls = [m[key]["wall_seconds"] for _, m in models]
        te = [m[key]["train_eval_seconds"] for _, m in models]
        ax.bar(x + (k - 0.5) * 0.38, walls, 0.38, color=f"C{k}", alpha=0.35)
        ax.bar(x + (k - 0.5) * 0.38, te, 0.38, color=f"C{k}", label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{n}: {m['ratio_without_compile']:.2f}x" for n, m in models])
    ax.set_xlabel("cells one after another / grid as one fit, train + eval")
    ax.set(ylabel="seconds (log): train + eval, pale: with compile")
    ax.set_title("the grid's cost against its cells one by one", fontsize=10)
    ax.legend(fontsize=7)
    fig.suptitle(f"{record['dataset']}: a small ResNet (BatchNorm, Dropout), SGD with momentum",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()


def write(out_dir: Path, record: dict) -> None:
    out_dir = sweep.check_writable(out_dir)
    sweep.write_json(out_dir / "resnet_benchmark.json", record)
    sweep.write_text(out_dir / "resnet_benchmark.txt", text(record))
    fig = Figure(figsize=(15.0, 4.4))
    draw(fig, record)
    plot.save(fig, out_dir / "resnet_benchmark.png")


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--epochs", type=positive, default=3)
    parser.add_argument("--train", type=positive, default=4000, help="training images used")
    parser.add_argument("--val", type=positive, default=1000, help="the next, held out")
    parser.add_argument("--test", type=positive, default=10_000, help="test images reported")
    parser.add_argument("--seeds", type=positive, default=2, help="seeds per cell and trial")
    parser.add_argument("--quick", action="store_true", help="embedded subset, 2 x 2 grid")
    parser.add_argument("--replot", action="store_true", help="text and figure from the JSON")
    args = parser.parse_args(argv)
    sweep.check_writable(args.out)
    if args.replot:
        write(args.out, json.loads((args.out / "resnet_benchmark.json").read_text()))
        return 0
    lrs, momenta = LRS, MOMENTA
    if args.quick:
        ds, dataset = mnist_data.load_embedded(), "embedded MNIST subset"
        args.epochs, args.train, args.val, args.test = 2, 600, 200, 500
        lrs, momenta = LRS[1:], MOMENTA[:2]
    else:
        ds, dataset = mnist_data.load_idx_dir(args.data_dir, "fashion_mnist"), "Fashion-MNIST"
    if args.train + args.val > len(ds.train_labels) or args.test > len(ds.test_labels):
        parser.error(f"--train + --val must be at most {len(ds.train_labels)} and --test at most "
                     f"{len(ds.test_labels)} for {dataset}")  # fmt: skip
    ds = ds.first(args.train + args.val, args.test)  # tuning.problem: hold_out's last --val
    n_halving = pbt_benchmark.halving_trials(
        ETA, args.epochs, len(lrs) * len(momenta) * args.epochs
    )
    start = time.perf_counter()
    uptime = pbt_benchmark.machine()["uptime"]
    cnn_kw = cnn_problem(ds, args.val, 64, args.epochs)
    settings = {k: getattr(args, k) for k in ("train", "val", "test", "epochs", "seeds")}
    settings.update(batch_size=64, lrs=list(lrs), momenta=list(momenta), eta=ETA,
                    halving_trials=n_halving, selected_on=tuning.VAL,
                    space=[repr(v) for v in SPACE.values()])  # fmt: skip
    record = {"dataset": dataset, "settings": settings}
    record["cnn"] = cost(cnn_kw, lrs, momenta, args.seeds, rounds=1)
    print(f"ResNet grid and its cells: {record['cnn']['grid']['wall_seconds']:.0f} s and "
          f"{record['cnn']['sequential']['wall_seconds']:.0f} s", flush=True)  # fmt: skip
    record["halving"] = halving(cnn_kw, n_halving, args.seeds)
    print(f"halving: {record['halving']['wall_seconds']:.0f} s", flush=True)
    mlp_kw = tuning.problem(ds, args.val, 64, args.epochs)
    record["mlp"] = cost(mlp_kw, lrs, momenta, args.seeds, rounds=MLP_ROUNDS)
    record["wall_seconds"] = time.perf_counter() - start
    record["machine"] = {**pbt_benchmark.machine(), "uptime_before": uptime}
    write(args.out, record)
    print(verdict(record))
    print(cost_verdict(record))
    print(f"wrote {args.out / 'resnet_benchmark.json'}, .txt and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
