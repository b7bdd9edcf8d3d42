"""The MNIST study as a sweep: one run per cell of a grid, or per trial of a search (random or
Sobol draws, successive halving, population-based training, Optuna: :class:`Search`,
:func:`run_search`), through :func:`jaxmom.sweep.fit`.

``fit`` trains the grid chunk by chunk, one compiled epoch at a time (the state on device,
donated), and measures the test accuracy (and, with a validation split held out of the training
data, :func:`~jaxmom.studies.mnist.split.hold_out`, the validation accuracy that searches select
on) of every cell after every epoch in a program of its own,
timed apart (``eval_seconds``). ``chunk_size="auto"`` is ``fit``'s: the most configurations whose
memory, read from the compiled program, fits in a budget (at most 16 per device on CPU).
"""

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

from jaxmom import sweep
from jaxmom.studies.mnist import pbt
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.train import (
    fit_arguments,
    fit_config,
    selected_on_data,
    selection_metric,
    study_result,
)

SEARCHES = ("random", "sobol", "halving", "pbt", "optuna")  # --search's methods
OPTUNA_BATCH = 8  # trials Optuna asks for, and fit trains, at once


@dataclasses.dataclass(frozen=True)
class Search:
    """A search's plan: how (``method``, one of :data:`SEARCHES`), what (``space``:
    hyperparameter -> sweep space), how many ``trials``, halving's ``eta``, the seed axis
    (``seeds``), the draws' ``seed`` (PBT's too), PBT's ``interval`` and ``fraction``, and the
    column the pick is ``selected_on`` (:func:`run_search` sets it from the data)."""

    method: str
    space: dict
    trials: int
    eta: int
    seeds: list | None
    seed: int
    interval: int = pbt.INTERVAL
    fraction: float = pbt.FRACTION
    selected_on: str = "val_accuracy"  # or "test_accuracy" (--validation 0): set from the data

    def grid(self) -> sweep.Grid:
        """The sampled trials (random draws for halving and PBT), with the seed axis if any."""
        method = "sobol" if self.method == "sobol" else "random"
        with warnings.catch_warnings():  # SciPy's balance warning: --help says it
            warnings.simplefilter("ignore", UserWarning)
            grid = sweep.sample(self.trials, method, seed=self.seed, **self.space)
        return grid if self.seeds is None else grid.with_seeds(self.seeds)

    def describe(self) -> dict:
        """The plan for results.json and the header: each space as text."""
        return {
            "method": self.method,
            "trials": self.trials,
            "space": {k: space_text(v) for k, v in self.space.items()},
            "seeds": self.seeds,
            "draw_seed": self.seed,
            "selected_on": self.selected_on,
            **({"eta": self.eta} if self.method == "halving" else {}),
            **(
                pbt.describe(self.interval, self.fraction, self.selected_on)
                if self.method == "pbt"
                else {}
            ),
        }


def space_text(space: sweep.Space) -> str:
    """``log-uniform 0.0001..1``, ``uniform 0..0.99`` or ``choice 0,0.9``."""
    if isinstance(space, sweep.Choice):
        return "choice " + ",".join(f"{v:g}" for v in space.values)
    kind = "log-uniform" if isinstance(space, sweep.LogUniform) else "uniform"
    return f"{kind} {space.lo:g}..{space.hi:g}"


def check_available(method: str) -> None:
    """One ``ValueError`` when the package a search ``method`` needs is missing (Optuna, the
    ``tune`` extra, for ``"optuna"``), so that a command line can say so before any work."""
    if method == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ValueError(
                "--search optuna needs Optuna, which is not installed: pip install 'jaxmom[tune]' "
                "(the tune extra)"
            ) from None


def run_sweep(
    config: Config,
    data,
    grid: sweep.Grid,
    *,
    chunk_size: int | str | None = "auto",
    memory_budget: int | None = None,
    divergence_factor: float | None = 10.0,
    checkpoint_dir=None,
    progress: bool = False,
    halving: sweep.Halving | None = None,
) -> sweep.SweepResult:
    """Train the study's ``config``, one run per cell of ``grid``.

    ``config`` gives the optimizer, epochs, batch size, seed and the hyperparameters that stay
    fixed; ``grid``'s hyperparameter names are the optimizer's (e.g. ``learning_rate``,
    ``momentum``); ``data`` is a :class:`~jaxmom.studies.mnist.data.Dataset`. ``fit`` checks
    every cell first, before it compiles (:func:`jaxmom.sweep.check_cells`: the optimizer's own
    checks and the study's, :func:`~jaxmom.studies.mnist.config.check_hparams`). Without a seed
    axis every cell starts from the same weights and sees the same batches, as in the study.
    Metrics per cell (see :func:`~jaxmom.studies.mnist.train.fit_config`): ``loss`` (every step's
    batch loss: a cell diverged at the first step where it is NaN/inf or above
    ``divergence_factor`` times its first step's), ``epoch_train_loss``, ``epoch_test_accuracy``,
    ``final_train_loss`` and ``test_accuracy``. ``chunk_size``: configurations live at once per
    device; ``"auto"`` (default) is ``fit``'s, within ``memory_budget``; ``None`` the whole grid.
    With ``checkpoint_dir`` the grid resumes, bit-identically, where a killed run stopped.
    ``halving`` (a :class:`jaxmom.sweep.Halving`) trains the grid's trials by successive halving.
    """
    return fit_config(
        config,
        data,
        grid,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        divergence_factor=divergence_factor,
        halving=halving,
    )


def run_search(
    config: Config,
    data,
    search: Search,
    *,
    divergence_factor: float | None = 10.0,
    checkpoint_dir=None,
    progress: bool = False,
) -> sweep.SweepResult:
    """``search``'s trials of ``config`` on ``data``: Optuna's (:func:`run_optuna`), or the drawn
    grid (:meth:`Search.grid`) trained by :func:`~jaxmom.studies.mnist.train.fit_config`, by
    successive halving for ``"halving"`` (keeping the best ``1/eta`` by validation accuracy, or by
    test accuracy when ``data`` holds no validation split), by
    population-based training for ``"pbt"`` (:func:`jaxmom.studies.mnist.pbt.strategy`). The
    result's ``info["search"]`` holds the plan (:meth:`Search.describe`; Optuna adds its best
    trial). ``checkpoint_dir`` applies to random and sobol draws, whose trials do not depend on
    how earlier ones ended, and to PBT, whose decisions a resumed run replays."""
    metric = selection_metric(data)  # fit's name: val/accuracy, or test_accuracy
    search = dataclasses.replace(search, selected_on=selected_on_data(data))
    plan = search.describe()
    if search.method == "optuna":
        return run_optuna(
            config,
            data,
            search.space,
            trials=search.trials,
            seeds=search.seeds,
            sampler_seed=search.seed,
            divergence_factor=divergence_factor,
            progress=progress,
            plan=plan,
        )
    halving, strategy = None, None
    if search.method == "halving":
        halving = sweep.Halving(search.eta, metric=metric, mode="max")
    if search.method == "pbt":
        strategy = pbt.strategy(search.space, search.interval, search.fraction, search.seed, metric)
    return fit_config(
        config,
        data,
        search.grid(),
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        divergence_factor=divergence_factor,
        halving=halving,
        search=strategy,
        info={"search": plan},
    )


def run_optuna(
    config: Config,
    data,
    space: Mapping[str, sweep.Space],
    *,
    trials: int,
    seeds: Sequence[int] | None = None,
    sampler_seed: int = 0,
    batch: int = OPTUNA_BATCH,
    divergence_factor: float | None = 10.0,
    progress: bool = False,
    plan: Mapping | None = None,
) -> sweep.SweepResult:
    """``trials`` trials of ``config`` whose ``space`` Optuna's TPE sampler (seeded by
    ``sampler_seed``) explores, maximising the validation accuracy (without a validation split in
    ``data``, the test accuracy) after the last epoch (the mean over
    ``seeds``), ``batch`` trials per :func:`jaxmom.sweep.fit` (:func:`jaxmom.sweep.optuna_search`).
    Returns one result over all the trials, in the order they were asked (the batches joined by
    :meth:`~jaxmom.sweep.SweepResult.concat`);
    ``info["search"]`` holds ``plan`` (a search's description) and Optuna's best trial. Needs
    Optuna (the ``tune`` extra)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed)
    )
    kwargs = fit_arguments(config, data, tuple(space))
    kwargs.update(progress=progress, divergence_factor=divergence_factor)
    results = sweep.optuna_search(
        study,
        space,
        kwargs,
        trials=trials,
        batch=min(batch, trials),
        metric=selection_metric(data),
        seeds=list(seeds) if seeds is not None else None,
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    search = {
        **(plan or {}),
        "optuna_sampler": type(study.sampler).__name__,
        "batch": min(batch, trials),
        "best_trial": None if not done else {**study.best_params, "value": study.best_value},
    }
    parts = [study_result(config, r) for r in results]
    return sweep.SweepResult.concat(parts, sweep.TRIAL, info={"search": search})
