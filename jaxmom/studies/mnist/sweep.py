"""The MNIST study as a sweep: one run per cell of a grid, through :func:`jaxmom.sweep.fit`.

``fit`` trains the grid chunk by chunk, one compiled epoch at a time (the state on device,
donated), and measures the test accuracy of every cell after every epoch in a program of its own,
timed apart (``eval_seconds``). ``chunk_size="auto"`` is ``fit``'s: the most configurations whose
memory, read from the compiled program, fits in a budget (at most 16 per device on CPU).
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from jaxmom import sweep as engine
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.registry import hyperparameter_kind
from jaxmom.studies.mnist.train import fit_arguments, fit_config, study_result
from jaxmom.sweep._sample import TRIAL, Space

OPTUNA_BATCH = 8  # trials Optuna asks for, and fit trains, at once


def check_cells(config: Config, cells: Iterable[Mapping]) -> None:
    """Raises a one-line ``ValueError`` naming the first cell (a dict of hyperparameter values)
    that ``config`` refuses, e.g. ``grid cell learning_rate=0.1, momentum=1: momentum must be
    ...``: each cell is checked as a single run's :class:`Config` is (the optimizer's own checks,
    and integers within int32), before anything compiles."""
    for cell in cells:
        try:
            dataclasses.replace(config, hparams={**config.hparams, **cell})
        except (ValueError, TypeError) as e:
            where = ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cell.items()
            )
            raise ValueError(f"grid cell {where}: {e}") from None


def check_grid(config: Config, grid: engine.Grid) -> None:
    """:func:`check_cells` for every cell of ``grid``; the grid's names must be ``config``'s
    optimizer's hyperparameters."""
    unknown = [p for p in grid.params if p not in config.spec.defaults]
    if unknown:
        raise ValueError(f"{config.optimizer} has no hyperparameter {', '.join(unknown)}")
    coords = {k: v.reshape(-1) for k, v in grid.coords().items() if k in grid.params}
    ints = {k for k in coords if hyperparameter_kind(config.spec.defaults[k]) is int}

    def value(name, x):  # an integer hyperparameter's whole values as int, others as they are
        return int(x) if name in ints and float(x).is_integer() else x

    check_cells(
        config, ({k: value(k, v[i].item()) for k, v in coords.items()} for i in range(grid.size))
    )


def run_sweep(
    config: Config,
    data,
    grid: engine.Grid,
    *,
    chunk_size: int | str | None = "auto",
    memory_budget: int | None = None,
    divergence_factor: float | None = 10.0,
    checkpoint_dir=None,
    progress: bool = False,
    halving: engine.Halving | None = None,
) -> engine.SweepResult:
    """Train the study's ``config``, one run per cell of ``grid``.

    ``config`` gives the optimizer, epochs, batch size, seed and the hyperparameters that stay
    fixed; ``grid``'s hyperparameter names are the optimizer's (e.g. ``learning_rate``,
    ``momentum``); ``data`` is a :class:`~jaxmom.studies.mnist.data.Dataset`. Every cell is checked
    first (:func:`check_grid`). Without a seed axis every cell starts from the same weights and
    sees the same batches, as in the study. Metrics per cell (see
    :func:`~jaxmom.studies.mnist.train.fit_config`): ``loss`` (every step's batch loss: a cell
    diverged at the first step where it is NaN/inf or above ``divergence_factor`` times its first
    step's), ``epoch_train_loss``, ``epoch_test_accuracy``, ``final_train_loss`` and
    ``test_accuracy``. ``chunk_size``: configurations live at once per device; ``"auto"``
    (default) is ``fit``'s, within ``memory_budget``; ``None`` the whole grid. With
    ``checkpoint_dir`` the grid resumes, bit-identically, where a killed run stopped.
    ``halving`` (a :class:`jaxmom.sweep.Halving`) trains the grid's trials by successive halving.
    """
    check_grid(config, grid)
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


def run_optuna(
    config: Config,
    data,
    space: Mapping[str, Space],
    *,
    trials: int,
    seeds: Sequence[int] | None = None,
    sampler_seed: int = 0,
    batch: int = OPTUNA_BATCH,
    divergence_factor: float | None = 10.0,
    progress: bool = False,
) -> engine.SweepResult:
    """``trials`` trials of ``config`` whose ``space`` Optuna's TPE sampler (seeded by
    ``sampler_seed``) explores, maximising the test accuracy after the last epoch (the mean over
    ``seeds``), ``batch`` trials per :func:`jaxmom.sweep.fit` (:func:`jaxmom.sweep.optuna_search`).
    Returns one result over all the trials, in the order they were asked (the batches joined by
    :meth:`~jaxmom.sweep.SweepResult.concat`); ``info["search"]`` holds Optuna's best trial. Needs Optuna (the ``tune`` extra)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed)
    )
    kwargs = fit_arguments(config, data, tuple(space))
    kwargs.update(progress=progress, divergence_factor=divergence_factor)
    results = engine.optuna_search(
        study,
        space,
        kwargs,
        trials=trials,
        batch=min(batch, trials),
        metric="test_accuracy",
        seeds=list(seeds) if seeds is not None else None,
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    search = {
        "optuna_sampler": type(study.sampler).__name__,
        "batch": min(batch, trials),
        "best_trial": None if not done else {**study.best_params, "value": study.best_value},
    }
    parts = [study_result(config, r) for r in results]
    return engine.SweepResult.concat(parts, TRIAL, info={"search": search})
