"""Successive halving against random search and a grid, in configuration-epochs (issue 19).

Fashion-MNIST, the study's 784-200-10 ReLU MLP, batch 64, SGD with lr in [1e-3, 1] (log-uniform)
and momentum in [0, 0.99], 9 epochs. 5,000 training images are held out for validation: every
search picks its trial by validation accuracy, and the test accuracy of that pick is reported.

- halving: 81 random trials, eta 3 (rungs of 1, 3 and 9 epochs), ranked by validation accuracy;
- random: the same 81 trials, each trained all 9 epochs (729 configuration-epochs);
- grid: 9 learning rates (log-spaced) x 9 momenta, each trained all 9 epochs.

A configuration-epoch is one configuration trained for one epoch. Writes ``tuning_benchmark.json``
(every number, the machine), ``tuning_benchmark.csv`` (the table), ``tuning_benchmark.txt`` (the
Markdown the Tuning page includes: the table, the headline, the figure) and ``tuning_benchmark.png``
(the pick's test accuracy against the configuration-epochs spent) into ``--out`` (default
``docs/``); ``--replot`` rewrites all but the JSON from it.

    python experiments/tuning.py --data-dir /usr/share/datasets/fashion-mnist   # ~15 min, 2 cores
    python experiments/tuning.py --quick --out runs/tuning                      # seconds
"""

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

try:
    import jaxmom
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

import jaxmom
from jaxmom import sweep
from jaxmom.studies.mnist import data as mnist_data
from jaxmom.studies.mnist import split as mnist_split
from jaxmom.studies.mnist.model import MLP, preprocess
from jaxmom.sweep import add_compile_cache_flags, configure_compile_cache

VAL, TEST = "val/accuracy", "test/accuracy"  # fit's names for the two evaluation sets


def problem(ds, n_val: int, batch_size: int, epochs: int) -> dict:
    """fit's arguments: train on all but the last ``n_val`` training images, held out by the MNIST
    study's own split (:func:`jaxmom.studies.mnist.split.hold_out`, as its --validation); two named
    evaluation sets, whose accuracies are ``VAL`` and ``TEST``."""
    ds = mnist_split.hold_out(ds, n_val)
    assert ds.val_images is not None and ds.val_labels is not None, "n_val must be positive"
    model = MLP()

    def init(key):
        return model.init(key, jnp.zeros((1, 784)))["params"]

    def loss(params, x, y):
        logits = model.apply({"params": params}, preprocess(x))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def evaluate(params, x, y):
        right = (jnp.argmax(model.apply({"params": params}, preprocess(x)), -1) == y) * 1.0
        return {"accuracy": right}

    labelled = lambda images, labels: (images, labels.astype(np.int32))
    return dict(
        init=init,
        loss=loss,
        optimizer=lambda h: jaxmom.sgd(h["lr"], h["momentum"]),
        train=labelled(ds.train_images, ds.train_labels),
        eval={
            "val": labelled(ds.val_images, ds.val_labels),
            "test": labelled(ds.test_images, ds.test_labels),
        },
        evaluate=evaluate,
        batch_size=batch_size,
        epochs=epochs,
        eval_batch_size=1000,
        progress=False,
    )


def pick(res, epoch: int) -> tuple[float, float] | None:
    """(validation, test accuracy) at ``epoch`` (1-based) of the trial with the best validation
    accuracy among those trained that far without diverging; None if there is none."""
    val = res.metrics[VAL][..., epoch - 1].reshape(-1)
    test = res.metrics[TEST][..., epoch - 1].reshape(-1)
    ok = np.isfinite(val) & ~res.diverged.reshape(-1)
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[np.argmax(val[ok])])
    return float(val[i]), float(test[i])


def curve(res, epochs: int, trials: int) -> list[dict]:
    """The pick's accuracy after each epoch of a full-budget search, against the spend so far."""
    out = []
    for e in range(1, epochs + 1):
        p = pick(res, e)
        if p is not None:
            out.append({"config_epochs": trials * e, "val_accuracy": p[0], "test_accuracy": p[1]})
    return out


def halving_curve(res) -> list[dict]:
    """The pick's accuracy at the end of each rung, against the configuration-epochs spent."""
    info, out, spent, start = res.info["halving"], [], 0, 0
    trained = res.metrics["epochs_trained"].reshape(-1)
    for rung in info["rungs"]:
        spent += int(np.sum(np.clip(trained, start, rung["epochs"]) - start))
        p = pick(res, rung["epochs"])
        if p is not None:
            out.append({"config_epochs": spent, "val_accuracy": p[0], "test_accuracy": p[1]})
        start = rung["epochs"]
    return out


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}"


def run(ds, trials: int, eta: int, epochs: int, grid_side: int, n_val: int, seed: int) -> dict:
    kw = problem(ds, n_val, 64, epochs)
    space = {"lr": sweep.log_uniform(1e-3, 1.0), "momentum": sweep.uniform(0.0, 0.99)}
    sampled = sweep.sample(trials, method="random", seed=seed, **space)
    lattice = sweep.product(
        lr=np.geomspace(1e-3, 1.0, grid_side).tolist(),
        momentum=[0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99][-grid_side:],
    )
    searches = {
        "halving": lambda: sweep.fit(
            sampled, halving=sweep.Halving(eta, VAL, "max"), seed=seed, **kw
        ),
        "random": lambda: sweep.fit(sampled, seed=seed, **kw),
        "grid": lambda: sweep.fit(lattice, seed=seed, **kw),
    }
    out = {}
    for name, search in searches.items():
        t0 = time.perf_counter()
        res = search()
        wall = time.perf_counter() - t0
        points = halving_curve(res) if name == "halving" else curve(res, epochs, res.grid.size)
        final = points[-1] if points else {"val_accuracy": None, "test_accuracy": None}
        spent = points[-1]["config_epochs"] if points else 0
        out[name] = {
            "configurations": res.grid.size,
            "config_epochs": spent,
            "pick_val_accuracy": final["val_accuracy"],
            "pick_test_accuracy": final["test_accuracy"],
            "best_test_accuracy_at_end": float(
                np.nanmax(np.where(res.diverged, np.nan, res.metrics[TEST][..., -1]))
            ),
            "wall_seconds": wall,
            "compile_seconds": res.compile_seconds,
            "train_seconds": res.train_seconds,
            "eval_seconds": res.eval_seconds,
            "curve": points,
        }
        seconds = res.train_seconds + res.eval_seconds
        print(f"{name}: {spent} configuration-epochs, pick's test accuracy "
              f"{100 * (final['test_accuracy'] or 0):.2f}%, train + eval {seconds:.1f} s, "
              f"compile {res.compile_seconds:.1f} s", flush=True)  # fmt: skip
    full = out["random"]["config_epochs"]
    for v in out.values():
        v["fraction_of_full_budget"] = v["config_epochs"] / full if full else None
    return out


def write(out_dir: Path, record: dict) -> None:
    out_dir = sweep.check_writable(out_dir)
    sweep.write_text(out_dir / "tuning_benchmark.json", json.dumps(record, indent=1) + "\n")
    with sweep.atomic_open(out_dir / "tuning_benchmark.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["search", "configurations", "configuration-epochs", "share of full budget",
                    "pick's test accuracy", "train + eval (s)", "compile (s)"])  # fmt: skip
        for name, r in record["searches"].items():
            acc = r["pick_test_accuracy"]
            w.writerow([name, r["configurations"], r["config_epochs"],
                        f"{100 * r['fraction_of_full_budget']:.0f}%",
                        "-" if acc is None else f"{100 * acc:.2f}%",
                        f"{r['train_seconds'] + r['eval_seconds']:.1f}",
                        f"{r['compile_seconds']:.1f}"])  # fmt: skip
    sweep.write_text(out_dir / "tuning_benchmark.txt", summary(record, out_dir))
    fig = Figure(figsize=(6.4, 4.0))
    draw(fig, record)
    from jaxmom.sweep import plot

    plot.save(fig, out_dir / "tuning_benchmark.png")


SPAN = 10.0  # percentage points: the least the accuracy axis shows, so noise does not look large


def spaced(candidates, gap: float) -> list:
    """``candidates`` (positive, most wanted first) kept where each lies at least ``gap`` decades
    from every one kept before it; sorted."""
    kept: list = []
    for c in candidates:
        if all(abs(np.log10(c / k)) >= gap for k in kept):
            kept.append(c)
    return sorted(kept)


def draw(fig: Figure, record: dict) -> None:
    """tuning_benchmark.png on ``fig``, from ``record`` (tuning_benchmark.json's content): each
    search's pick against the configuration-epochs spent. The record holds one training seed, so
    the spread between seeds is not measured: the title says so, and the accuracy axis spans at
    least :data:`SPAN` points (whole multiples of 5) rather than zooming into the differences."""
    ax = fig.subplots()
    for (name, r), style in zip(record["searches"].items(), ("o-", "s--", "^:")):
        xs = [p["config_epochs"] for p in r["curve"]]
        ys = [100 * p["test_accuracy"] for p in r["curve"]]
        ax.plot(xs, ys, style, label=f"{name} ({r['configurations']} configurations)")
    ax.set_xscale("log")
    spent = {p["config_epochs"] for r in record["searches"].values() for p in r["curve"]}
    low, high = min(spent), max(spent)
    # the ends and halving's spend first; the others only where they leave room (189 and 243
    # were 0.11 decades apart and read as one crowded label)
    wanted = [low, high, record["searches"]["halving"]["config_epochs"]]
    wanted += [record["trials"] * e for e in (3, 5) if low < record["trials"] * e < high]
    ticks = spaced(wanted, gap=0.15 * np.log10(high / low))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    accuracies = [100 * p["test_accuracy"] for r in record["searches"].values() for p in r["curve"]]
    top = min(100.0, 5 * np.ceil((max(accuracies) + 1) / 5))
    bottom = min(5 * np.floor((min(accuracies) - 1) / 5), top - SPAN)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("configuration-epochs spent (log)")
    ax.set_ylabel("test accuracy of the pick (%)")
    ax.set_title(
        f"{record['dataset']}: the trial picked by validation accuracy\n"
        f"one training seed ({record['seed']}): the spread between seeds is not measured",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()


def summary(record: dict, out_dir: Path) -> str:
    """The Markdown the Tuning page includes: the table, the headline and the figure."""
    rows = list(csv.reader((out_dir / "tuning_benchmark.csv").read_text().splitlines()))
    table = ["| " + " | ".join(r) + " |" for r in rows]
    table.insert(1, "|" + " --- |" * len(rows[0]))
    h, r = record["searches"]["halving"], record["searches"]["random"]
    gap = 100 * (h["pick_test_accuracy"] - r["best_test_accuracy_at_end"])
    return "\n".join(
        [
            f"{record['dataset']}, {record['trials']} trials, {record['epochs']} epochs, seed "
            f"{record['seed']}, on {record['machine']} (`experiments/tuning.py`):",
            "",
            *table,
            "",
            f"Halving's pick scores {gap:+.2f} points of test accuracy against the best trial of the "
            f"full-budget random search ({100 * r['best_test_accuracy_at_end']:.2f}%), for "
            f"{100 * h['fraction_of_full_budget']:.0f}% of its configuration-epochs; it trained and "
            f"evaluated in {h['train_seconds'] + h['eval_seconds']:.0f} s against "
            f"{r['train_seconds'] + r['eval_seconds']:.0f} s.",
            "",
            "![The pick's test accuracy against the configuration-epochs spent, for halving, random "
            "search and the grid](tuning_benchmark.png)",
            "",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="embedded subset, 9 trials, 3 epochs")
    parser.add_argument(
        "--replot", action="store_true", help="rewrite the table, text and figure from the JSON"
    )
    add_compile_cache_flags(parser)
    args = parser.parse_args(argv)
    configure_compile_cache(args.compile_cache, prog="tuning.py")
    sweep.check_writable(args.out)
    if args.replot:
        record = json.loads((args.out / "tuning_benchmark.json").read_text())
        record.pop("out", None)
        write(args.out, record)
        return 0
    if args.quick:
        ds, dataset = mnist_data.load_embedded(), "embedded MNIST subset"
        sizes = dict(trials=9, eta=3, epochs=3, grid_side=3, n_val=500)
    else:
        ds = mnist_data.load_idx_dir(args.data_dir, "fashion_mnist")
        dataset, sizes = "Fashion-MNIST", dict(trials=81, eta=3, epochs=9, grid_side=9, n_val=5000)
    searches = run(ds, seed=args.seed, **sizes)
    record = {"dataset": dataset, "machine": machine(), "seed": args.seed, **sizes,
              "searches": searches}  # fmt: skip
    write(args.out, record)
    print(f"wrote {args.out / 'tuning_benchmark.json'}, .csv and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
