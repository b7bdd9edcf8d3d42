"""Population-based training against fixed hyperparameters and successive halving (issue 27).

Fashion-MNIST, the study's 784-200-10 ReLU MLP, batch 64, SGD with lr in [1e-3, 1] (log-uniform)
and momentum in [0, 0.99], as ``experiments/tuning.py``; the training images are cut to a subset
(``--train``) with ``--val`` more held out for validation, so that the whole benchmark runs in
minutes on two CPU cores. Every search picks by validation accuracy; the test accuracy of that
pick is reported (the test images are never used to choose). For each seed ``s`` (the draws',
PBT's and the training's: initial weights and batch order):

- pbt: a population of ``--population`` random trials, exploiting every epoch by validation
  accuracy (the bottom quarter copies the top quarter, perturbing by 0.8 or 1.2 or resampling);
  the pick is the member of the best validation accuracy at the end;
- fixed: the same starting trials trained with their hyperparameters fixed (a plain ``fit``);
  the pick is the trial of the best validation accuracy at the end;
- halving: successive halving (``eta`` 2) of as many random trials as spend the same
  configuration-epochs as the other two (``population x epochs``, or just above).

Writes ``pbt_benchmark.json`` (every number, the machine: ``lscpu``, the load), the Markdown the
Tuning page includes (``pbt_benchmark.txt``: the settings, the table, the verdict, the figure) and
``pbt_benchmark.png`` (the schedules PBT found) into ``--out`` (default ``docs/``); ``--replot``
rewrites the text and the figure from the JSON.

    python experiments/pbt_benchmark.py                      # ~10 min on 2 shared cores
    python experiments/pbt_benchmark.py --quick --out runs/pbt   # seconds
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

try:
    import jaxmom  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tuning  # the neighbour script: the problem (train, validation, test) and the machine
from matplotlib.figure import Figure

from jaxmom import sweep
from jaxmom.studies.mnist import data as mnist_data
from jaxmom.sweep import plot

SPACE = {"lr": sweep.log_uniform(1e-3, 1.0), "momentum": sweep.uniform(0.0, 0.99)}
METHODS = ("pbt", "fixed", "halving")


def halving_trials(eta: int, epochs: int, budget: int) -> int:
    """The fewest trials whose successive halving spends at least ``budget`` configuration-epochs."""
    h = sweep.Halving(eta)

    def spend(n):
        rungs, out, start = h.rungs(n, epochs), 0, 0
        for end, kept in rungs:
            out, start = out + kept * (end - start), end
        return out

    return next(n for n in range(2, 10 * budget) if spend(n) >= budget)


def pick(res, mask=None) -> dict:
    """The trial of the best final validation accuracy (diverged ones out): its index, validation
    and test accuracy, and the best test accuracy at the end over every trial (an oracle)."""
    val = res.metrics[tuning.VAL][..., -1].reshape(-1).astype(float)
    test = res.metrics[tuning.TEST][..., -1].reshape(-1).astype(float)
    ok = np.isfinite(val) & ~res.diverged.reshape(-1)
    i = int(np.flatnonzero(ok)[np.argmax(val[ok])])
    return {
        "pick": i,
        "pick_val_accuracy": val[i],
        "pick_test_accuracy": test[i],
        "oracle_test_accuracy": float(np.max(test[ok])),
    }


def one_seed(kw: dict, seed: int, population: int, eta: int, n_halving: int) -> dict:
    """The three searches with draws, PBT and training all seeded by ``seed``."""
    epochs = kw["epochs"]
    trials = sweep.sample(population, method="random", seed=seed, **SPACE)
    pbt = sweep.PBT(space=SPACE, interval=1, fraction=0.25, metric=tuning.VAL, mode="max",
                    seed=seed)  # fmt: skip
    runs = {
        "pbt": lambda: sweep.fit(trials, search=pbt, seed=seed, **kw),
        "fixed": lambda: sweep.fit(trials, seed=seed, **kw),
        "halving": lambda: sweep.fit(
            sweep.sample(n_halving, method="random", seed=seed, **SPACE),
            search=sweep.Halving(eta, tuning.VAL, "max"),
            seed=seed,
            **kw,
        ),
    }
    out = {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        res = run()
        r = {
            "configurations": res.grid.size,
            "config_epochs": res.info["halving"]["config_epochs"]
            if name == "halving"
            else res.grid.size * epochs,
            **pick(res),
            "wall_seconds": time.perf_counter() - t0,
            "compile_seconds": res.compile_seconds,
            "train_seconds": res.train_seconds,
            "eval_seconds": res.eval_seconds,
            # the pick's validation accuracy after each epoch (its lineage's, for PBT)
            "pick_val_curve": res.metrics[tuning.VAL]
            .reshape(res.grid.size, -1)[int(pick(res)["pick"])]
            .tolist(),
        }
        if name == "pbt":
            sched = res.schedule(r["pick"])
            val = res.metrics[tuning.VAL].reshape(res.grid.size, -1)
            r["pick_val_curve"] = val[sched["members"], np.arange(epochs)].tolist()
            r["schedule"] = {k: np.asarray(v).tolist() for k, v in sched["hp"].items()}
            r["lineage"] = sched["members"].tolist()
            r["copies"] = sum(len(c) for c in res.info["pbt"]["copies"])
        else:
            coords = res.grid.coords()
            r["schedule"] = {k: [float(coords[k].reshape(-1)[r["pick"]])] * epochs for k in SPACE}
        out[name] = r
        print(f"seed {seed} {name}: {r['config_epochs']} configuration-epochs, pick's validation "
              f"{100 * r['pick_val_accuracy']:.2f}%, test {100 * r['pick_test_accuracy']:.2f}%, "
              f"{r['wall_seconds']:.0f} s", flush=True)  # fmt: skip
    return out


def machine() -> dict:
    """The CPU (``lscpu``'s first lines) and the load while the benchmark ran (``uptime``)."""

    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "summary": tuning.machine(),
        "lscpu": run("lscpu").splitlines()[:10],
        "uptime": run("uptime"),
    }


def summarise(record: dict) -> dict:
    """Per method: the mean and spread (std over the seeds, ``ddof=0``) of the pick's accuracies."""
    out = {}
    for name in METHODS:
        runs = [s[name] for s in record["seeds"].values()]
        row = {"configurations": runs[0]["configurations"]}
        for key in ("config_epochs", "pick_val_accuracy", "pick_test_accuracy",
                    "oracle_test_accuracy", "train_seconds", "eval_seconds", "compile_seconds"):  # fmt: skip
            v = np.array([r[key] for r in runs], float)
            row[key] = {"mean": float(v.mean()), "std": float(v.std()), "values": v.tolist()}
        out[name] = row
    return out


def verdict(record: dict) -> str:
    """Whether PBT won, in words computed from the numbers: the gap of the mean test accuracy of
    the picks against each rival, set against the spread between seeds (the larger std of the
    two) and the seeds it won, lost or tied; and the gap in validation accuracy, the metric PBT
    ranked its members on after every epoch, beside it."""
    s = record["summary"]
    p = s["pbt"]["pick_test_accuracy"]
    parts, words = [], []
    for rival in ("fixed", "halving"):
        r = s[rival]["pick_test_accuracy"]
        gap = 100 * (p["mean"] - r["mean"])
        val = 100 * (s["pbt"]["pick_val_accuracy"]["mean"] - s[rival]["pick_val_accuracy"]["mean"])
        spread = 100 * max(p["std"], r["std"])
        won = sum(a > b for a, b in zip(p["values"], r["values"]))
        tied = sum(a == b for a, b in zip(p["values"], r["values"]))
        word = "within" if abs(gap) <= spread else "ahead" if gap > 0 else "behind"
        words.append(word)
        seeds = f"better in {won} of {len(p['values'])} seeds" + (
            f", tied in {tied}" if tied else ""
        )
        parts.append(
            f"against {rival}, {gap:+.2f} points of test accuracy (the larger std over the seeds "
            f"is {spread:.2f}; {seeds}) and {val:+.2f} of validation accuracy"
        )
    if all(w == "ahead" for w in words):
        head = "PBT wins on this problem: its pick's mean test accuracy is ahead of both by more "
        head += "than the spread between seeds"
    elif all(w == "within" for w in words):
        head = "PBT does not clearly win on this problem: its pick's mean test accuracy is within "
        head += "the spread between seeds of both others"
    else:
        head = "PBT's pick is " + " and ".join(
            f"{'within the spread of' if w == 'within' else w + ' of'} {k}"
            for w, k in zip(words, ("fixed", "halving"))
        )
    return (
        f"{head}: {'; '.join(parts)}. A higher validation accuracy is partly selection: PBT "
        "ranked its members on it after every epoch."
    )


def table(record: dict) -> list[str]:
    def pm(v, scale=100.0, digits=2):
        return f"{scale * v['mean']:.{digits}f} ± {scale * v['std']:.{digits}f}"

    rows = [
        "| search | configurations | configuration-epochs | pick's validation accuracy (%) | "
        "pick's test accuracy (%) | test accuracy per seed (%) | best test accuracy at the end "
        "(%), not a pick | train + eval (s) |",
        "|" + " --- |" * 8,
    ]
    for name, s in record["summary"].items():
        seconds = np.add(s["train_seconds"]["values"], s["eval_seconds"]["values"])
        rows.append(
            f"| {name} | {s['configurations']} | {s['config_epochs']['mean']:.0f} | "
            f"{pm(s['pick_val_accuracy'])} | {pm(s['pick_test_accuracy'])} | "
            + ", ".join(f"{100 * v:.2f}" for v in s["pick_test_accuracy"]["values"])
            + f" | {pm(s['oracle_test_accuracy'])} | {seconds.mean():.0f} |"
        )
    return rows


def text(record: dict) -> str:
    """The Markdown the Tuning page includes."""
    st = record["settings"]
    m = record["machine"]
    return "\n".join(
        [
            f"{record['dataset']}: {st['train']:,} training images, {st['val']:,} more held out for "
            f"validation, the {st['test']:,} test images; SGD, batch {st['batch_size']}, "
            f"{st['epochs']} epochs; a population of {st['population']} (PBT: exploit after every "
            f"epoch by validation accuracy, fraction {st['fraction']}), halving with eta "
            f"{st['eta']} over {st['halving_trials']} trials; seeds {st['seeds']} (each the "
            f"draws', PBT's and the training's); mean ± std over the seeds. On "
            f"{m['summary']}, load `{m['uptime'].split('load average:')[-1].strip()}` "
            f"(`experiments/pbt_benchmark.py`, {record['wall_seconds'] / 60:.1f} min):",
            "",
            *table(record),
            "",
            verdict(record),
            "",
            "![The learning rate and momentum schedules of PBT's pick for each seed, against the "
            "fixed pick's values, and the picks' validation accuracy](pbt_benchmark.png)",
            "",
        ]
    )


def draw(fig: Figure, record: dict) -> None:
    """pbt_benchmark.png: for each seed (a colour), the learning rate and momentum schedule of
    PBT's pick along its lineage (solid) against the fixed search's pick (dashed), and both picks'
    validation accuracy after each epoch."""
    axes = fig.subplots(1, 3)
    epochs = np.arange(1, record["settings"]["epochs"] + 1)
    edges = np.arange(len(epochs) + 1) + 0.5
    for i, (seed, runs) in enumerate(record["seeds"].items()):
        c = f"C{i}"
        for ax, k in zip(axes, SPACE):
            ax.stairs(runs["pbt"]["schedule"][k], edges, baseline=None, color=c, lw=2)
            ax.stairs(runs["fixed"]["schedule"][k], edges, baseline=None, color=c, lw=1.2, ls="--")
        for name, style in (("pbt", "o-"), ("fixed", "s--")):
            axes[2].plot(epochs, 100 * np.asarray(runs[name]["pick_val_curve"]), style, color=c,
                         ms=3, lw=2 if name == "pbt" else 1.2,
                         label=f"seed {seed}: {name}")  # fmt: skip
    axes[0].set_yscale("log")
    plot.plain_log_ticks(axes[0].yaxis, *axes[0].get_ylim())
    for ax, label in zip(axes, ("learning rate (log)", "momentum", "validation accuracy (%)")):
        ax.set(xlabel="epoch", ylabel=label, xlim=(0.5, len(epochs) + 0.5), xticks=epochs)
        ax.grid(True, alpha=0.3)
    axes[0].set_title("learning rate of the pick", fontsize=10)
    axes[1].set_title("momentum of the pick", fontsize=10)
    axes[2].set_title("the pick's validation accuracy", fontsize=10)
    axes[2].legend(fontsize=7, ncol=1, loc="lower right")
    fig.suptitle(
        f"{record['dataset']}: PBT's pick (solid, its lineage's schedule) against the best fixed "
        f"trial of the same {record['settings']['population']} starting points (dashed)",
        fontsize=10,
    )
    fig.tight_layout()


def write(out_dir: Path, record: dict) -> None:
    out_dir = sweep.check_writable(out_dir)
    sweep.write_text(out_dir / "pbt_benchmark.json", json.dumps(record, indent=1) + "\n")
    sweep.write_text(out_dir / "pbt_benchmark.txt", text(record))
    fig = Figure(figsize=(13.0, 4.2))
    draw(fig, record)
    plot.save(fig, out_dir / "pbt_benchmark.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--train", type=int, default=15_000, help="training images used")
    parser.add_argument("--val", type=int, default=5_000, help="more held out for validation")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true", help="embedded subset, 4 members, 3 epochs")
    parser.add_argument(
        "--replot", action="store_true", help="rewrite text and figure from the JSON"
    )
    args = parser.parse_args(argv)
    sweep.check_writable(args.out)
    if args.replot:
        write(args.out, json.loads((args.out / "pbt_benchmark.json").read_text()))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        ds, dataset = mnist_data.load_embedded(), "embedded MNIST subset"
        args.epochs, args.population, args.train, args.val = 3, 4, 3000, 1000
    else:
        ds, dataset = mnist_data.load_idx_dir(args.data_dir, "fashion_mnist"), "Fashion-MNIST"
    ds = ds.first(args.train + args.val, None)  # tuning.problem: split.hold_out's last --val
    eta = 2
    budget = args.population * args.epochs
    n_halving = halving_trials(eta, args.epochs, budget)
    kw = tuning.problem(ds, args.val, 64, args.epochs)
    start = time.perf_counter()
    record = {
        "dataset": dataset,
        "settings": {
            "train": args.train,
            "val": args.val,
            "test": len(ds.test_images),
            "batch_size": 64,
            "epochs": args.epochs,
            "population": args.population,
            "fraction": 0.25,
            "interval": 1,
            "perturb": [0.8, 1.2],
            "resample": 0.25,
            "eta": eta,
            "halving_trials": n_halving,
            "seeds": seeds,
            "space": {k: repr(v) for k, v in SPACE.items()},
        },  # fmt: skip
        "seeds": {str(s): one_seed(kw, s, args.population, eta, n_halving) for s in seeds},
    }
    record["wall_seconds"] = time.perf_counter() - start
    record["machine"] = machine()
    record["summary"] = summarise(record)
    write(args.out, record)
    print(verdict(record))
    print(f"wrote {args.out / 'pbt_benchmark.json'}, .txt and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
