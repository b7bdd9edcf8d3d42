"""``fit``: a supervised training sweep over any model, one compiled epoch at a time.

The contract, for a cell with seed ``s``, written for a model with state (``has_state=True``) and a
``loss`` that takes a key (see below for the plain model, whose loop is this one without them)::

    root = jax.random.key(s)
    init_key, data_key = jax.random.split(root)
    step_root = jax.random.fold_in(root, 2)    # neither init_key nor data_key
    params, model_state = init(init_key)       # a plain model: params = init(init_key)
    tx = optimizer(hparams); opt_state = tx.init(params)    # the trainable params only
    for e in range(epochs):
        order = jax.random.permutation(jax.random.fold_in(data_key, e), n)
        for i, idx in enumerate(consecutive slices of batch_size of order (the last, partial
                                one kept unless drop_last)):
            key = jax.random.fold_in(jax.random.fold_in(step_root, e), i)
            batch = [a[idx] for a in train]

            def objective(p):
                losses, new_state = loss(p, model_state, *batch, key=key)  # losses: (len(idx),)
                return losses.mean(), new_state

            (value, model_state), grads = jax.value_and_grad(objective, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        # after each epoch, for each evaluation set, in batches of eval_batch_size (batch j):
        #   evaluate(params, model_state, *eval_batch, key=fold_in(fold_in(fold_in(root, 3), e), j))
        #   averaged over the set's examples

A plain model (``has_state=False``, the default) has ``params = init(init_key)``, calls
``loss(params, *batch)`` for the per-example losses and ``evaluate(params, *batch)``; a ``loss``
(or ``evaluate``) gets ``key=`` only when it has a parameter named ``key`` (keyword-only or not:
``def loss(params, x, y, *, key)``), as Equinox passes keys. The keys depend only on the seed, the
epoch and the step (the evaluation batch), never on the grid's shape, the chunking or the devices:
the same seed gives the same dropout masks in any grid. ``fold_in(root, 2)`` and ``fold_in(root,
3)`` are neither ``init_key`` nor ``data_key`` (under JAX's default threefry, ``split(root, 4)``
gives all four), so a model that takes no key gets the very numbers it always got.

A cell of the grid equals that loop run alone, in float32 to rounding. Every batch of a model with
state or a key meets ``loss`` at its true size (BatchNorm's batch statistics and a dropout mask's
shape are the loop's); the plain model's last, partial batch is padded to ``batch_size`` with
weight-0 rows, which a per-example loss cannot tell apart. Without a ``seed`` axis every cell uses
``seed``, and its key is shared (not batched): the batch is gathered once for all the cells of a
chunk and a first layer meets it as one wide matmul against the chunk's stacked weights.

What the functions give is checked before anything compiles (:mod:`jaxmom.sweep._contract`): a
loss of one floating value per example, shape ``(B,)``; an evaluation of a dict of ``(B,)`` values
whose names are neither ``fit``'s own nor the grid's columns; an optimizer that reads only the
grid's and ``fixed``'s names. Several evaluation sets (``eval={"val": ..., "test": ...}``) name
their metrics ``"val/accuracy"``, ``"test/accuracy"`` (:mod:`jaxmom.sweep._metrics`).

The compiled unit is one epoch of one chunk of cells (``vmap`` inside, ``shard_map`` over the
devices), with the state ``(params, opt_state)`` (``(params, opt_state, model_state)``) kept on
device and donated from epoch to epoch. The grid is trained chunk after chunk: a chunk trains all
its epochs, is evaluated after each, and is dropped, so only the results accumulate. The modules,
one concept each: :mod:`._setup` (the checked :class:`~jaxmom.sweep._setup.Setup`),
:mod:`._contract` (the functions' contract, traced), :mod:`._cell` (one cell's functions),
:mod:`._programs` (the compiled programs), :mod:`._memory` (the chunk size), :mod:`._driver` (the
one chunk x epoch loop and its strategies: plain ``fit``, :class:`~jaxmom.sweep.Halving`,
:class:`~jaxmom.sweep.PBT`) and this front door.

Checkpoints (``checkpoint_dir``, format in :mod:`jaxmom.sweep._checkpoint`, contents in
:mod:`jaxmom.sweep._driver`): after every epoch of a chunk, ``fit-<fingerprint>.json`` and the
state file it names. The fingerprint hashes everything that shapes the run: the grid's values,
seeds, fixed values, batch size, epochs, drop_last, return_params, the search strategy, the data's
shapes, dtypes and bytes, and what the functions compute: the jaxprs (and their constants) of one
cell's ``init``, training epoch and evaluation, traced on the state's shapes. Two functions that
compute differently (two lambdas, say) never resume each other's file, whatever their names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax

from jaxmom.sweep import _checks
from jaxmom.sweep._checkpoint import Checkpoint
from jaxmom.sweep._driver import Strategy, drive
from jaxmom.sweep._grid import Grid
from jaxmom.sweep._halving import Halving
from jaxmom.sweep._memory import bytes_per_config, with_chunk_size
from jaxmom.sweep._pbt import PBT
from jaxmom.sweep._programs import cell_fns, cell_template, epoch_program
from jaxmom.sweep._result import SweepResult
from jaxmom.sweep._setup import Setup, setup


def _computation(s: Setup) -> list[str]:
    """What one cell's ``init``, epoch and evaluation compute: their jaxprs, traced on the state's
    shapes (stable across processes), and the sha256 of the constants they close over."""
    fns = cell_fns(s)
    hp, seed, state = cell_template(s)
    traced = [
        jax.make_jaxpr(fns.init)(hp, seed, s.fixed),
        jax.make_jaxpr(fns.epoch)(state, hp, seed, np.int32(0), s.fixed, s.train),
    ]
    for _, data in s.evals if s.evaluate is not None else ():
        if s.eval_key:
            traced.append(jax.make_jaxpr(fns.evaluate)(state, seed, np.int32(0), data))
        else:  # an evaluation without a key reads neither the seed nor the epoch
            traced.append(
                jax.make_jaxpr(lambda st, d: fns.evaluate(st, None, None, d))(state, data)
            )
    out = []
    for closed in traced:
        h = hashlib.sha256(str(closed.jaxpr).encode())
        for c in closed.consts:
            h.update(np.ascontiguousarray(np.asarray(c)).tobytes())
        out.append(h.hexdigest())
    return out


def _fingerprint(s: Setup, strategy: Strategy, return_params: bool) -> str:
    """sha256 (first 16 hex digits) of everything that shapes the run's results."""
    h = hashlib.sha256()
    header = {
        "names": s.grid.names,
        "params": s.grid.params,
        "shape": s.grid.shape,
        "seed": s.seed,
        "static": [[k, repr(v)] for k, v in s.static],
        "sizes": [s.batch_size, s.eval_batch_size, s.epochs, s.drop_last],
        "return_params": return_params,
        "strategy": repr(strategy) if dataclasses.is_dataclass(strategy) else strategy.name,
        "computation": _computation(s),
    }
    if s.has_state:
        header["has_state"] = True
    if s.evals and s.evals[0][0] is not None:
        header["eval_sets"] = [name for name, _ in s.evals]
    h.update(json.dumps(header, sort_keys=True).encode())
    coords = {k: np.asarray(v) for k, v in s.grid.coords().items()}
    for name, arr in sorted({**coords, **jax.tree.map(np.asarray, s.fixed)}.items()):
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    for arr in s.train + s.eval:
        arr = np.asarray(arr)
        h.update(f"{arr.dtype}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def fit(
    grid: Grid,
    *,
    init: Callable,
    loss: Callable,
    optimizer: Callable[[Mapping[str, Any]], optax.GradientTransformation],
    train,
    batch_size: int,
    epochs: int,
    eval=None,
    evaluate: Callable | None = None,
    has_state: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    fixed: Mapping[str, Any] | None = None,
    eval_params: Callable | None = None,
    eval_batch_size: int | None = None,
    chunk_size: int | str | None = "auto",
    memory_budget: int | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
    checkpoint_dir=None,
    return_params: bool = False,
    divergence_factor: float | None = 10.0,
    halving=None,
    search=None,
) -> SweepResult:
    """Train ``init``'s model with ``loss`` and ``optimizer``, one run per cell of ``grid``.

    Each cell equals the plain loop of :mod:`jaxmom.sweep._fit`'s docstring run alone: the seed
    ``s`` gives ``init_key, data_key = jax.random.split(jax.random.key(s))``, epoch ``e`` visits
    ``jax.random.permutation(jax.random.fold_in(data_key, e), n)`` in consecutive slices of
    ``batch_size``, each step takes the mean loss over the batch's real examples, and step ``i``
    of epoch ``e`` gives a ``loss`` that takes a ``key`` the key
    ``fold_in(fold_in(fold_in(jax.random.key(s), 2), e), i)``.

    Args:
      grid: the hyperparameters to sweep (:func:`~jaxmom.sweep.product`, ``with_seeds``...).
      init: ``init(key) -> params``, any pytree (e.g. ``model.init(key, x)["params"]``); with
        ``has_state``, ``init(key) -> (params, model_state)``.
      loss: ``loss(params, *batch) -> per-example losses (B,)``; ``batch`` is ``train`` sliced.
        With ``has_state``: ``loss(params, model_state, *batch) -> (losses (B,),
        new_model_state)``. A ``loss`` with a parameter named ``key`` (``def loss(params, x, y,
        *, key)``) is called with ``key=``, a fresh key every step (dropout): see the contract.
        Checked before anything compiles: a loss of another shape (``(B, 1)``, the batch's mean)
        is refused in one line.
      optimizer: ``optimizer(hparams) -> optax.GradientTransformation``; ``hparams`` maps the
        grid's names (and ``fixed``'s) to traced scalars, e.g.
        ``lambda h: jaxmom.sgd(h["lr"], h["momentum"])``. It is first built once per cell with
        concrete values: a value it refuses raises ``grid cell lr=..., momentum=...: ...``.
      train: a tuple of arrays, the example axis first (e.g. ``(images, labels)``).
      batch_size: examples per step. The last, partial batch is kept (averaged over its real
        examples, as PyTorch's ``DataLoader``) unless ``drop_last``.
      epochs: passes over ``train``.
      eval: a tuple of arrays for ``evaluate``, with ``evaluate``; or several sets by name,
        ``{"val": (x, y), "test": (x, y)}``, each evaluated alike, whose metrics are named after
        the set: ``"val/accuracy"`` (the tuple's keep ``evaluate``'s names).
      evaluate: ``evaluate(params, *batch) -> {name: per-example values (B,)}`` (with
        ``has_state``: ``evaluate(params, model_state, *batch)``; with a parameter named ``key``,
        a key per batch), averaged over all of each set after every epoch, in batches of
        ``eval_batch_size`` (default ``batch_size``), in a program of its own, timed apart (the
        result's ``eval_seconds``). Its names may be neither ``loss``, ``epoch_loss`` nor a
        column of the grid.
      has_state: the model has state besides its trainable params (BatchNorm's statistics):
        ``init`` gives ``(params, model_state)``, ``loss`` takes and gives the state and
        ``evaluate`` takes it; the optimizer sees only the params. The state is carried through
        checkpoints and halving, and returned with ``return_params`` as the result's
        ``model_state``.
      seed: every cell's seed when the grid has no seed axis; the key is then shared by all cells.
      drop_last: drop the last, partial batch of every epoch.
      fixed: hyperparameters shared by every cell, passed to ``optimizer`` with the grid's. Scalar
        zeros, bools and strings are Python constants of the program; other values are traced
        arguments, so another value reuses the compiled program.
      eval_params: ``eval_params(params, opt_state) -> params`` to evaluate (e.g. schedule-free
        SGD's ``x``); default the params.
      eval_batch_size: see ``evaluate``.
      chunk_size: configurations trained at once per device. ``"auto"`` (default): the most whose
        estimated memory fits in ``memory_budget`` bytes (default half the memory available), at
        most 16 on CPU, and 1 on CPU for a model that convolves (which there also runs its epoch
        as a Python loop of compiled steps: XLA:CPU runs convolutions slowly inside loops and
        over stacked kernels); ``None``: the whole grid at once.
      memory_budget: see ``chunk_size``.
      devices: devices to shard each chunk over; default ``jax.devices()``.
      progress: a tqdm bar on stderr that moves per epoch of each chunk.
      checkpoint_dir: save the state and results after every epoch of every chunk and resume
        from them: a run killed at any point and run again gives bit-identical results.
      return_params: also return the final params (the result's ``params``, stacked with the
        grid's shape in front, on the host), and with ``has_state`` the final model state (the
        result's ``model_state``, stacked alike).
      divergence_factor: see :func:`jaxmom.sweep.sweep`; applied to ``loss``.
      halving: a :class:`~jaxmom.sweep.Halving`: successive halving instead of training every
        cell for every epoch (see :mod:`jaxmom.sweep._halving`); checkpoints work as for a plain
        fit. The same as ``search=``.
      search: how to spend the epochs, instead of training every cell for every epoch: a
        :class:`~jaxmom.sweep.Halving` (successive halving) or a :class:`~jaxmom.sweep.PBT`
        (population-based training, see :mod:`jaxmom.sweep._pbt`); checkpoints work as for a
        plain fit.

    Returns:
      A :class:`~jaxmom.sweep.SweepResult` whose ``metrics`` hold ``loss`` (every step,
      ``grid.shape + (epochs * steps,)``), ``epoch_loss`` (the mean of each epoch's batch losses,
      ``grid.shape + (epochs,)``) and each ``evaluate`` name of each evaluation set
      (``grid.shape + (epochs,)``);
      ``info["resumed_epochs"]`` (nested lists shaped like the grid) counts the epochs each cell
      had from ``checkpoint_dir`` when this call started (0 without a checkpoint).
    """
    divergence_factor = _checks.divergence_factor(divergence_factor)
    chunk_size = _checks.chunk_size(chunk_size)
    memory_budget = _checks.memory_budget(memory_budget)
    if halving is not None and not isinstance(halving, Halving):
        raise TypeError(f"halving must be a jaxmom.sweep.Halving, got {type(halving).__name__}")
    if search is not None and not isinstance(search, Halving | PBT):
        raise TypeError(f"search must be a sweep.Halving or sweep.PBT, got {type(search).__name__}")
    if halving is not None and search is not None:
        raise ValueError("give the search as search= or halving=, not both")
    strategy = halving or search or Strategy()
    s = setup(
        grid,
        init=init,
        loss=loss,
        optimizer=optimizer,
        train=train,
        batch_size=batch_size,
        epochs=epochs,
        eval=eval,
        evaluate=evaluate,
        seed=seed,
        drop_last=drop_last,
        fixed=fixed,
        eval_params=eval_params,
        eval_batch_size=eval_batch_size,
        devices=devices,
        has_state=has_state,
    )
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Checkpoint(checkpoint_dir, f"fit-{_fingerprint(s, strategy, return_params)}")
    saved_chunk = ((checkpoint and checkpoint.read_header()) or {}).get("chunk_size")
    if saved_chunk is not None and chunk_size == "auto":  # the checkpoint's: no estimate to make
        s = s.with_chunk(int(saved_chunk))
    else:
        s = with_chunk_size(s, chunk_size, memory_budget)
    return drive(
        s,
        strategy,
        checkpoint=checkpoint,
        progress=progress,
        return_params=return_params,
        divergence_factor=divergence_factor,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What :func:`fit` would do with the same arguments, found without training (see
    :func:`plan`).

    Attributes:
      chunk_size: configurations trained at once per device.
      chunks: how many chunks the grid trains in, one after another.
      stepwise: whether each epoch runs as a Python loop of compiled steps (a model that
        convolves, on CPU) rather than one compiled epoch.
      bytes_per_config: the estimated memory one more configuration keeps live (from the
        ``memory_analysis()`` of the compiled programs of the chunk, where the backend reports it).
    """

    chunk_size: int
    chunks: int
    stepwise: bool
    bytes_per_config: int
    setup: Setup = dataclasses.field(repr=False)

    def epoch_hlo(self) -> str:
        """The optimized HLO text of the compiled epoch program of one chunk (what XLA made of the
        stacked configurations: transposes, copies, convolutions' feature groups)."""
        return epoch_program(self.setup)[0].as_text()


def plan(grid: Grid, *, chunk_size: int | str | None = "auto", memory_budget=None, **kwargs):
    """A :class:`Plan` of ``fit(grid, chunk_size=..., memory_budget=..., **kwargs)``: its chunk
    size, the memory one configuration needs and the compiled epoch's HLO, without training.
    ``kwargs`` are :func:`fit`'s model, data and size arguments (``init``, ``loss``,
    ``optimizer``, ``train``, ``batch_size``, ``epochs``, ``eval``, ``evaluate``, ...), checked
    as :func:`fit` checks them."""
    s = with_chunk_size(setup(grid, **kwargs), chunk_size, memory_budget)
    return Plan(s.chunk, len(s.chunks()), s.stepwise, bytes_per_config(s), s)
