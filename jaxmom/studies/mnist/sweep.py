"""The MNIST study as a sweep: one run per cell of a grid, trained in one compiled program.

Training is one program (:func:`jaxmom.sweep.sweep`); the test accuracy of the whole grid is a
second one, timed apart (``eval_seconds``): chunks of configurations, each chunk's first layer one
wide matmul per test batch (:func:`~jaxmom.studies.mnist.train.evaluate`). ``chunk_size="auto"``
picks the largest chunk whose estimated memory (:func:`bytes_per_config`) fits in a budget.
"""

import dataclasses
import functools
import math
import os
import time
from collections.abc import Iterable, Mapping

import jax
import numpy as np

from jaxmom import sweep as engine
from jaxmom.studies.mnist.config import Config, hyperparameter_kind
from jaxmom.studies.mnist.model import MLP
from jaxmom.studies.mnist.train import (
    EVAL_BATCH,
    as_hparams,
    evaluate,
    init_opt_state,
    init_params,
    make_train_fn,
)
from jaxmom.sweep._engine import CACHE_SIZE, compiled

EVAL_CONFIGS = 16  # configurations evaluated together: their weights stay in cache per batch
# On CPU, chunks of at most this many configurations: measured on a 2-core Xeon, a 16x16 grid ran
# 13% faster in chunks of 8 or 16 than in one vmap of 256 (whose 160 MB of first-layer weights
# stream through memory at every step). Accelerators keep the whole memory-bound chunk.
CPU_CHUNK = 16


def static_parts(config: Config) -> tuple:
    """What shapes the program of ``config``: optimizer, boolean options, init, epochs, batch size;
    not the hyperparameter values, seed or label."""
    options = tuple(sorted(config.options.items()))
    return (config.optimizer, options, config.init, config.epochs, config.batch_size)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _train_fn(static: tuple, zeros: tuple):
    """One ``train_fn(hparams, key, data, fixed)`` per :func:`static_parts` and ``zeros``: the same
    function object for the same static parts, so the sweep engine reuses its compiled program for
    another grid of the same shape. Every numeric hyperparameter arrives as an argument (the grid's
    batched, the ``fixed`` rest shared), never as a constant of the program, except the fixed ones
    that are zero: ``zeros`` holds their (name, value) pairs, given to the optimizer as Python
    numbers, so that it skips their terms as PyTorch's ``if weight_decay != 0`` does (a zero
    weight decay then costs no read of the parameters at every step). It returns the final
    parameters, not the test accuracy: :func:`run_sweep` evaluates them in a program of its own."""
    optimizer, options, init, epochs, batch_size = static
    base = make_train_fn(
        Config(optimizer, options=dict(options), init=init, epochs=epochs, batch_size=batch_size),
        test=False,
    )

    def train_fn(hparams, key, data, fixed):
        return base({**fixed, **dict(zeros), **hparams}, key, data)

    return train_fn


def _evaluate_grid(params, images, labels):
    """Test accuracy of every configuration: ``lax.map`` over chunks of EVAL_CONFIGS, vmapped."""
    one = functools.partial(evaluate, images=images, labels=labels, model=MLP())
    return jax.lax.map(one, params, batch_size=EVAL_CONFIGS)


def evaluate_grid(params, images, labels) -> tuple[np.ndarray, float, float]:
    """(accuracies, compile seconds, run seconds) of the stacked ``params`` (K configurations in
    front) on the test set; the program is compiled once per shape, in the sweeps' bounded cache."""
    args = (jax.device_put(params), jax.device_put(images), jax.device_put(labels))
    key = (_evaluate_grid, tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(args)))
    program, compile_seconds = compiled(key, lambda: jax.jit(_evaluate_grid).lower(*args).compile())
    start = time.perf_counter()
    accuracy = np.asarray(program(*args))
    return accuracy, compile_seconds, time.perf_counter() - start


def bytes_per_config(config: Config, train_examples: int) -> int:
    """An upper estimate of the memory one configuration of a sweep keeps live: the parameters
    five times (params, gradients, updates, new params, final params out), the optimizer state
    twice (old and new), every step's loss, and the activations of a training and a test batch."""
    return _bytes_per_config(static_parts(config), train_examples)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _bytes_per_config(static: tuple, train_examples: int) -> int:
    optimizer, options, _, epochs, batch_size = static
    config = Config(optimizer, options=dict(options), epochs=epochs, batch_size=batch_size)
    hparams = as_hparams(config.full_hparams())
    params = jax.eval_shape(functools.partial(init_params, model=MLP()), jax.random.key(0))
    opt_init = functools.partial(init_opt_state, optimizer=optimizer, options=options)
    opt_state = jax.eval_shape(opt_init, params, hparams)
    size = lambda tree: sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))
    steps = epochs * -(-train_examples // batch_size)
    activations = 4 * (200 + 10) * (3 * batch_size + 2 * EVAL_BATCH)
    return 5 * size(params) + 2 * size(opt_state) + 4 * steps + activations


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def auto_chunk_size(
    config: Config, train_examples: int, configs: int, memory_budget: int | None = None
) -> int:
    """The most configurations per device whose :func:`bytes_per_config` fit in ``memory_budget``
    bytes (default: half the memory available now), at least 1 and at most ``configs`` (and at
    most :data:`CPU_CHUNK` on CPU, which is faster)."""
    budget = available_memory() // 2 if memory_budget is None else memory_budget
    per_device = -(-configs // len(jax.devices()))
    if jax.default_backend() == "cpu":
        per_device = min(per_device, CPU_CHUNK)
    return max(1, min(per_device, budget // bytes_per_config(config, train_examples)))


def check_cells(config: Config, cells: Iterable[Mapping]) -> None:
    """Raises a one-line ``ValueError`` naming the first cell (a dict of hyperparameter values)
    that ``config`` refuses, e.g. ``grid cell learning_rate=0.1, momentum=1: momentum must be
    ...``: each cell is checked as a single run's :class:`Config` is, before anything compiles."""
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
) -> engine.SweepResult:
    """Train the study's ``config``, one run per cell of ``grid``, in one compiled program.

    ``config`` gives the optimizer, epochs, batch size, seed and the hyperparameters that stay
    fixed; ``grid``'s hyperparameter names are the optimizer's (e.g. ``learning_rate``,
    ``momentum``); ``data`` is a :class:`~jaxmom.studies.mnist.data.Dataset`. Without a seed axis
    every cell starts from the same weights and sees the same batches, as in the study. Metrics
    per cell: ``loss`` (every step's batch loss: a cell diverged at the first step where it is
    NaN/inf or above ``divergence_factor`` times its first step's), ``epoch_train_loss``,
    ``final_train_loss`` and ``test_accuracy``. ``chunk_size``: configurations live at once per device;
    ``"auto"`` (default) takes :func:`auto_chunk_size` with ``memory_budget``; ``None`` the whole
    grid. The result's ``eval_seconds`` is the test evaluation's run time, apart from training's.
    """
    check_grid(config, grid)
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(config, len(data[0]), grid.size, memory_budget)
    elif isinstance(chunk_size, str):
        raise ValueError(
            f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}"
        )
    fixed = {k: v for k, v in config.full_hparams().items() if k not in grid.params}
    zeros = tuple(sorted((k, v) for k, v in fixed.items() if isinstance(v, float | int) and v == 0))
    fixed = as_hparams({k: v for k, v in fixed.items() if k not in dict(zeros)})
    arrays = tuple(np.asarray(x) for x in data[:4])
    res = engine.sweep(
        _train_fn(static_parts(config), zeros),
        grid,
        args=(arrays, fixed),
        chunk_size=chunk_size,
        seed=config.seed,
        history="loss",
        divergence_factor=divergence_factor,
    )
    metrics = dict(res.metrics)
    params = jax.tree.map(
        lambda x: x.reshape(grid.size, *x.shape[len(grid.shape) :]), metrics.pop("params")
    )
    accuracy, eval_compile, eval_seconds = evaluate_grid(params, arrays[2], arrays[3])
    metrics["test_accuracy"] = accuracy.reshape(grid.shape)
    return engine.SweepResult(
        grid,
        metrics,
        res.compile_seconds + eval_compile,
        res.train_seconds,
        "loss",
        res.devices,
        res.divergence_factor,
        eval_seconds=eval_seconds,
    )
