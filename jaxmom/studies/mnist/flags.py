"""The study's command line turned into its runs: a list of :class:`Config`, --sweep's grid and
--search's plan (:class:`~jaxmom.studies.mnist.sweep.Search`).

Pure: nothing here reads or writes a file or imports an optional package (Optuna is imported where
a search runs). Every mistake is one ``ValueError`` (argparse's types raise
``argparse.ArgumentTypeError``), which :func:`jaxmom.studies.mnist.cli.main` reports in one line
with exit status 2. :class:`Config` judges the values (epochs, batch size, seed, optimizer name
and hyperparameters), :func:`jaxmom.sweep.check_cells` every cell of a grid and every corner of a
search's space, and the library's constructors the ranges and ``--eta``; the checks here are about
how the flags combine.
"""

import argparse
import dataclasses
import math
import re
from typing import NamedTuple

from jaxmom import sweep
from jaxmom.studies.mnist import pbt, registry, split
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.registry import hyperparameters, options
from jaxmom.studies.mnist.studies import STUDIES, StudyRun
from jaxmom.studies.mnist.sweep import SEARCHES, Search
from jaxmom.studies.mnist.train import optimizer_arguments

TRIALS = 16  # --trials' default
ETA = 3  # --eta's default
LOG_SCALE = ("learning_rate",)  # ranges drawn log-uniform; the others uniform


class Range(NamedTuple):
    """A hyperparameter flag written ``LO:HI``: a range that ``--search`` samples."""

    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.lo:g}:{self.hi:g}"


RANGE_HELP = "ranges LO:HI are for float hyperparameter flags, e.g. --lr 1e-4:1"


def number_list(kind: type):
    """An argparse type: ``"0.1,0.3"`` -> ``[0.1, 0.3]`` of ``kind`` (float or int); an array
    hyperparameter (``kind`` tuple) gives ``[(0.0, 0.9)]``, one value; ``"1e-4:1"`` of a float
    hyperparameter gives ``Range(1e-4, 1.0)``."""

    def parse(text: str):
        if ":" in text:
            if kind is not float:
                what = "an array, one value for the whole run" if kind is tuple else "an integer"
                raise argparse.ArgumentTypeError(
                    f"{text!r} is a range, but this hyperparameter is {what}: {RANGE_HELP}"
                    + ("" if kind is tuple else "; give integers as a comma list")
                )
            try:
                lo, hi = (float(v) for v in text.split(":"))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a range LO:HI of two numbers, got {text!r}"
                ) from None
            return Range(lo, hi)
        items = [v.strip() for v in text.split(",") if v.strip()]
        try:
            if kind is tuple:
                values = [tuple(float(v) for v in items)] if items else []
            else:
                values = [kind(v) for v in items]
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise argparse.ArgumentTypeError(
                f"expected {what} separated by commas, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
        return values

    parse.__name__ = kind.__name__
    return parse


def fixed(kind: type):
    """An argparse type for a flag that holds for the whole run (epochs, seed, ...): ``kind``,
    and a one-line refusal of a range ``LO:HI``."""

    def parse(text: str):
        if ":" in text:
            raise argparse.ArgumentTypeError(
                f"{text!r} is a range, but this flag is fixed for the whole run: {RANGE_HELP}"
            )
        return kind(text)  # a ValueError: argparse's "invalid int value: 'x'"

    parse.__name__ = kind.__name__
    return parse


def defaults_help() -> str:
    """The --help epilog: every optimizer's default hyperparameters, from the registry."""
    lines = [
        "hyperparameter defaults when a flag is not given (the seed tutorials' settings), "
        "named by their flags:"
    ]
    flag = {n: h["flag"] for n, h in hyperparameters().items()}
    for spec in registry.OPTIMIZERS.values():
        values = " ".join(f"{flag[k]}={fmt(v)}" for k, v in spec.defaults.items())
        names = [o.replace("_", "-") for o in spec.options]
        options = f"  [--{', --'.join(names)}]" if spec.options else ""
        lines.append(f"  {spec.name:14s} {values}{options}")
    lines += [spec.note for spec in registry.OPTIMIZERS.values() if spec.note]
    return "\n".join(lines)


def fmt(value) -> str:
    """A hyperparameter value for labels and tables: 0.01, 100, or 0,0.9,0.99 for an array."""
    if isinstance(value, tuple | list):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}"


def given_hparams(args) -> dict:
    """Hyperparameter name -> list of values given on the command line."""
    return {n: getattr(args, n) for n in hyperparameters() if getattr(args, n) is not None}


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    """The runs the flags ask for, as :class:`Config` (the first value of each flag; with --sweep,
    the one run whose grid :func:`grid_from_args` makes). A pure function: every mistake is one
    ``ValueError``, and :class:`Config` is the only judge of the values (epochs, batch size, seed,
    optimizer name and hyperparameters); the checks here are about how the flags combine."""
    if args.study is not None and (args.optimizer or args.sweep or args.search):
        raise ValueError(
            "--study trains a fixed list of optimizers: give it without --optimizer, --sweep "
            "and --search"
        )
    if args.sweep and args.search:
        raise ValueError("--sweep trains a grid, --search samples trials: give one of them")
    try:  # fit's own rule
        sweep.check_divergence_factor(args.divergence_factor)
    except ValueError:
        raise ValueError(
            "--divergence-factor must be a number above 1, or inf (only NaN and inf diverge), "
            f"got {args.divergence_factor:g}"
        ) from None
    for name in ("max_train_samples", "max_test_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    flags = {n: h["flag"] for n, h in hyperparameters().items()}
    ranges = {n: v for n, v in given_hparams(args).items() if isinstance(v, Range)}
    lists = [
        flags[n] for n, v in given_hparams(args).items() if not isinstance(v, Range) and len(v) > 1
    ]
    if ranges and not args.search:
        name, r = next(iter(ranges.items()))
        raise ValueError(
            f"--{flags[name]} {r} is a range: add --search {'|'.join(SEARCHES)} to sample it "
            "(--sweep takes comma lists)"
        )
    if args.search and not ranges:
        raise ValueError(
            f"--search {args.search} needs at least one range LO:HI, e.g. --lr 1e-4:1 "
            "--momentum 0:0.99 (comma lists alone are a grid: use --sweep)"
        )
    if lists and not (args.sweep or args.search):
        raise ValueError(
            f"--{lists[0]} has several values; add --sweep to train the grid of comma-listed flags"
        )
    check_search_flags(args)
    if args.optimizer:
        names = [n.strip() for item in args.optimizer for n in item.split(",") if n.strip()]
        if not names:
            raise ValueError(
                f"--optimizer: expected optimizer names, got {','.join(args.optimizer)!r}"
            )
        runs = [StudyRun(n, n) for n in names]
    elif args.sweep or args.search:
        runs = [StudyRun("sgd", "sgd")]
    else:
        runs = list(STUDIES[args.study or "tutorials"])
    if (args.sweep or args.search) and len(runs) != 1:
        raise ValueError(
            f"--{'sweep' if args.sweep else 'search'} trains one --optimizer at a time"
        )
    given = {k: v[0] for k, v in given_hparams(args).items() if not isinstance(v, Range)}
    chosen = {k: True for k in options() if getattr(args, k)}
    specs = [registry.OPTIMIZERS.get(r.optimizer) for r in runs]
    takes = {n for spec in specs if spec is not None for n in (*spec.defaults, *spec.options)}
    for name in [*given, *ranges, *chosen]:
        if name not in takes and None not in specs:
            raise ValueError(
                f"--{flags.get(name, name.replace('_', '-'))} applies to none of the optimizers "
                f"({', '.join(sorted({r.optimizer for r in runs}))})"
            )
    configs, labels = [], set()
    for run, spec in zip(runs, specs):
        defaults = spec.defaults if spec is not None else {}
        mine = {k: v for k, v in given.items() if k in defaults}
        label = run.label
        if args.optimizer and mine:
            label += " " + " ".join(f"{k}={fmt(v)}" for k, v in mine.items())
        while label in labels:
            label += "'"
        labels.add(label)
        configs.append(
            Config(
                optimizer=run.optimizer,
                hparams={**run.hparams, **mine},
                options={k: v for k, v in chosen.items() if spec and k in spec.options},
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                init=args.init,
                label=label,
                param_dtype=args.param_dtype,
                state_dtype=args.state_dtype,
            )
        )
    for seed in args.seeds or ():  # each one as Config judges a seed
        try:
            dataclasses.replace(configs[0], seed=seed)
        except ValueError as e:
            raise ValueError(f"--seeds: {e}") from None
    return configs


def check_search_flags(args: argparse.Namespace) -> None:
    """How --seeds, --trials, --eta, --interval, --fraction, --validation and --checkpoint-dir
    combine with --sweep and --search: one
    ``ValueError`` for the first mistake."""
    if args.seeds is not None:
        if not (args.sweep or args.search):
            raise ValueError(
                "--seeds makes a seed axis of a --sweep or --search; a single run takes --seed"
            )
        twice = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
        if twice:
            raise ValueError(f"--seeds lists seed {twice[0]} more than once")
    if args.trials is not None and not args.search:
        raise ValueError("--trials applies to --search")
    if args.trials is not None and not 1 <= args.trials <= sweep.MAX_TRIALS:
        raise ValueError(
            f"--trials must be in 1..{sweep.MAX_TRIALS} (the most one search draws), "
            f"got {args.trials}"
        )
    if args.eta is not None and args.search != "halving":
        raise ValueError("--eta applies to --search halving")
    if args.eta is not None:
        try:
            sweep.Halving(args.eta)
        except ValueError:
            raise ValueError(
                f"--eta must be at least 2 (each rung keeps 1/eta), got {args.eta}"
            ) from None
    pbt.check_flags(args)
    if args.validation is not None and args.validation < 0:
        raise ValueError(
            f"--validation must be 0 (none) or a number of training examples, got {args.validation}"
        )
    if args.search in ("halving", "optuna") and args.checkpoint_dir is not None:
        raise ValueError(
            f"--checkpoint-dir does not apply to --search {args.search}: its trials depend on "
            "how earlier ones ended (random and sobol resume)"
        )


def grid_from_args(args: argparse.Namespace, config: Config) -> sweep.Grid:
    """--sweep's grid: every comma-listed number flag is an axis. One ``ValueError`` naming the
    first cell that ``config``'s optimizer or the study refuses (:func:`jaxmom.sweep.check_cells`,
    as ``fit`` checks it, from the exact values given), or the missing list."""
    kinds = hyperparameters()
    values = {
        k: v for k, v in given_hparams(args).items() if kinds[k]["kind"] is not tuple and len(v) > 1
    }
    if not values:
        raise ValueError(
            "--sweep needs at least one hyperparameter flag with a comma list, e.g. --lr 0.01,0.1"
        )
    grid = sweep.product(**values)
    sweep.check_cells(grid, **optimizer_arguments(config, grid.params))
    return grid if args.seeds is None else grid.with_seeds(args.seeds)


def check_values(config: Config, name: str, values: list, given: str) -> None:
    """One hyperparameter's ``values`` (a range's ends, a choice's values), each built by
    ``config``'s optimizer with the other hyperparameters fixed (:func:`jaxmom.sweep.check_cells`):
    one ``ValueError`` naming the flag as ``given`` (``--momentum 0:1.5``) and the optimizer's
    reason, without the "grid cell momentum=1.5" that check_cells puts before it."""
    try:
        sweep.check_cells(sweep.product(**{name: values}), **optimizer_arguments(config, (name,)))
    except ValueError as e:
        raise ValueError(f"{given}: {str(e).partition(': ')[2]}") from None


def search_from_args(args: argparse.Namespace, config: Config) -> Search:
    """--search's :class:`~jaxmom.studies.mnist.sweep.Search`: a range ``LO:HI`` is log-uniform
    for the flags of :data:`LOG_SCALE` and uniform for the others, a comma list a choice among its
    values, the other flags stay fixed. One ``ValueError`` for a range that the space refuses,
    naming the flag whose range or choice ``config``'s optimizer or the study refuses
    (:func:`check_values`), or else the first corner of the space (each range's ends, each
    choice's values) that they refuse together (:func:`jaxmom.sweep.check_cells`)."""
    flags = {n: h["flag"] for n, h in hyperparameters().items()}
    space, ends = {}, {}
    for name, v in given_hparams(args).items():
        if isinstance(v, Range):
            log = name in LOG_SCALE
            try:
                space[name] = (sweep.log_uniform if log else sweep.uniform)(v.lo, v.hi)
            except ValueError as e:  # the space's own rule, said in the flag's words
                why = re.sub(r"\b(lo|hi)\b", lambda m: m[0].upper(), str(e).partition("(): ")[2])
                if not math.isfinite(v.lo + v.hi):
                    why = "a range needs two finite numbers LO < HI"
                elif (log and v.lo <= 0) or not v.lo < v.hi:
                    need = "0 < LO < HI (it is drawn log-uniform)" if log else "LO < HI"
                    why = f"a range needs {need}"
                raise ValueError(f"--{flags[name]} {v}: {why}") from None
            ends[name] = [v.lo, v.hi]
        elif len(v) > 1:
            space[name] = sweep.choice(v)
            ends[name] = list(v)
        else:
            continue
        given = f"--{flags[name]} {v if isinstance(v, Range) else fmt(v)}"
        check_values(config, name, ends[name], given)
    corners = sweep.product(**ends)
    sweep.check_cells(corners, **optimizer_arguments(config, corners.params))
    return Search(
        args.search,
        space,
        TRIALS if args.trials is None else args.trials,
        ETA if args.eta is None else args.eta,
        args.seeds,
        args.seed,
        pbt.INTERVAL if args.interval is None else args.interval,
        pbt.FRACTION if args.fraction is None else args.fraction,
    )


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The parser's "search" group: --search, --trials, --eta, --interval and --fraction."""
    group = p.add_argument_group(
        "search (sampled trials instead of a grid: ranges LO:HI, log-uniform for --lr and "
        "uniform for the others; a comma list beside them is a choice among its values)"
    )
    group.add_argument(
        "--search",
        choices=SEARCHES,
        help="random: --trials independent draws; sobol: a scrambled Sobol sequence (a power of "
        "two of trials keeps it balanced); halving: successive halving of --trials random "
        "draws, keeping the best 1/--eta by validation accuracy after 1, eta, eta^2, ... epochs; "
        "pbt: population-based training of --trials random draws, the bottom --fraction by "
        "validation accuracy copying the top's state and perturbing its hyperparameters every "
        "--interval epochs (writes pbt_schedules.png); "
        "optuna: Optuna's TPE sampler, 8 trials per compiled batch (needs the tune extra). "
        "--seed seeds the draws. Writes sweep.csv, results.json and scatter plots",
    )
    group.add_argument(
        "--validation",
        type=fixed(int),
        metavar="N",
        help="with --sweep or --search: hold the last N training examples out as a validation "
        f"set, on whose accuracy the search selects and the best is picked; the pick's test "
        f"accuracy is reported beside it (default: {split.VALIDATION}, at most a tenth of the "
        "training set: 400 of the embedded 4,000). 0: train on everything and select on the "
        "test accuracy (a warning says so). Given for single runs, they hold it out too",
    )
    group.add_argument(
        "--trials",
        type=fixed(int),
        metavar="N",
        help=f"with --search: the number of trials, PBT's population (default {TRIALS})",
    )
    group.add_argument(
        "--eta",
        type=fixed(int),
        metavar="ETA",
        help=f"with --search halving: each rung keeps 1/ETA of the trials (default {ETA})",
    )
    group.add_argument(
        "--interval",
        type=fixed(int),
        metavar="N",
        help=f"with --search pbt: epochs between two exploits, below --epochs (default "
        f"{pbt.INTERVAL})",
    )
    group.add_argument(
        "--fraction",
        type=fixed(float),
        metavar="F",
        help="with --search pbt: the share of the population that copies (the bottom) and that "
        f"is copied (the top), in (0, 0.5] (default {pbt.FRACTION:g})",
    )
