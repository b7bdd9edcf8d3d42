"""The MNIST study as a sweep: one run per cell of a grid, trained in one compiled program."""

import functools

import numpy as np

from jaxmom import sweep as engine
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.train import as_hparams, make_train_fn
from jaxmom.sweep._engine import CACHE_SIZE


def static_parts(config: Config) -> tuple:
    """What shapes the program of ``config``: optimizer, boolean options, init, epochs, batch size;
    not the hyperparameter values, seed or label."""
    options = tuple(sorted(config.options.items()))
    return (config.optimizer, options, config.init, config.epochs, config.batch_size)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _train_fn(static: tuple):
    """One ``train_fn(hparams, key, data, fixed)`` per :func:`static_parts`: the same function
    object for the same static parts, so the sweep engine reuses its compiled program for another
    grid of the same shape. Every numeric hyperparameter arrives as an argument (the grid's
    batched, the ``fixed`` rest shared), never as a constant of the program."""
    optimizer, options, init, epochs, batch_size = static
    base = make_train_fn(
        Config(optimizer, options=dict(options), init=init, epochs=epochs, batch_size=batch_size)
    )

    def train_fn(hparams, key, data, fixed):
        return base({**fixed, **hparams}, key, data)

    return train_fn


def run_sweep(
    config: Config,
    data,
    grid: engine.Grid,
    *,
    chunk_size: int | None = None,
    divergence_factor: float | None = 10.0,
) -> engine.SweepResult:
    """Train the study's ``config``, one run per cell of ``grid``, in one compiled program.

    ``config`` gives the optimizer, epochs, batch size, seed and the hyperparameters that stay
    fixed; ``grid``'s hyperparameter names are the optimizer's (e.g. ``learning_rate``,
    ``momentum``); ``data`` is a :class:`~jaxmom.studies.mnist.data.Dataset`. Without a seed axis
    every cell starts from the same weights and sees the same batches, as in the study. Metrics
    per cell: ``loss`` (every step's batch loss: a cell diverged at the first step where it is
    NaN/inf or above ``divergence_factor`` times its first step's), ``epoch_train_loss``,
    ``final_loss`` and ``test_accuracy``.
    """
    unknown = [p for p in grid.params if p not in config.spec.defaults]
    if unknown:
        raise ValueError(f"{config.optimizer} has no hyperparameter {', '.join(unknown)}")
    fixed = as_hparams({k: v for k, v in config.full_hparams().items() if k not in grid.params})
    arrays = tuple(np.asarray(x) for x in data[:4])
    return engine.sweep(
        _train_fn(static_parts(config)),
        grid,
        args=(arrays, fixed),
        chunk_size=chunk_size,
        seed=config.seed,
        history="loss",
        divergence_factor=divergence_factor,
    )
