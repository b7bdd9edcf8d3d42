"""The compiled programs that run the per-cell functions of a ``fit`` (:mod:`jaxmom.sweep._cell`)
on one chunk of cells, sharded over the devices: ``init``, one ``epoch`` (or, for a
:attr:`Setup.stepwise` setup, an epoch's batch ``order`` and one ``step``) and ``evaluate`` (one
program per evaluation set).

Every program is compiled once per :meth:`Setup.key` and kept in the sweeps' one compile cache
(:func:`jaxmom.sweep._engine.compiled`). :func:`init_state`, :func:`run_epochs` and
:func:`evaluate_state` run them on any group of cells over any range of epochs; the driver
(:mod:`jaxmom.sweep._driver`) is their one user.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _engine
from jaxmom.sweep._cell import cell_fns, partial_size
from jaxmom.sweep._engine import _fetch, _put, compiled
from jaxmom.sweep._metrics import eval_metric
from jaxmom.sweep._setup import Setup

# ---- a chunk's inputs ---------------------------------------------------------------------------


class Chunk(NamedTuple):
    """A chunk's inputs on the devices: its cells' hyperparameters (one row per cell), seeds (one
    per cell, or one shared) and the shapes of its state (``jax.ShapeDtypeStruct``s)."""

    hp: dict[str, jax.Array]
    seeds: Any
    state: Any


def chunk_inputs(s: Setup, cells: np.ndarray, hparams: Mapping[str, np.ndarray] | None = None):
    """The :class:`Chunk` of ``cells`` (flat indices, ``s.width`` of them); ``hparams`` (flat, one
    value per cell of the grid) replaces the grid's values, e.g. a schedule's."""
    table = s.hparams if hparams is None else hparams
    per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
    hp = {k: _put(v[cells], per_cell) for k, v in table.items()}
    if s.seeds is None:
        seed = _engine._seed_input(np.array([s.seed], np.uint64))[0]
        seeds = _put(seed, NamedSharding(s.mesh, P()))
    else:
        seeds = _put(s.seeds[cells], per_cell)
    return Chunk(hp, seeds, _state_shapes(s, hp, seeds))


_TEMPLATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def template(s: Setup) -> Chunk:
    """The :class:`Chunk` of ``s``'s first chunk: what every program of ``s`` is traced with (its
    state as shapes only). Made once per setup: a call of ``fit`` asks several times."""
    if s not in _TEMPLATES:
        _TEMPLATES[s] = chunk_inputs(s, s.chunks()[0])
    return _TEMPLATES[s]


def cell_template(s: Setup) -> Chunk:
    """One cell's inputs as ``jax.ShapeDtypeStruct``s, what a cell's functions are traced with
    outside a chunk: its hyperparameters, seed (the shared one as it is) and state."""
    t = template(s.with_chunk(1))
    row = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), tree)
    return Chunk(row(t.hp), t.seeds if s.seeds is None else row(t.seeds), row(t.state))


def _state_shapes(s: Setup, hp, seeds):
    """The chunk's state as ``jax.ShapeDtypeStruct``s, laid out one cell per row over the mesh;
    traced once per shape and kept in the programs' cache (a call of ``fit`` asks several times:
    tracing ``init`` each time cost a single run's epoch 20%)."""

    def build():
        seeded = s.seeds is not None
        init = jax.vmap(cell_fns(s).init, in_axes=(0, 0 if seeded else None, None))
        shapes = jax.eval_shape(init, hp, seeds, s.fixed)
        per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
        return jax.tree.map(
            lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=per_cell), shapes
        )

    key = (s.key("state shapes"), _engine._signature((hp, seeds, s.fixed)))
    return compiled(key, build)[0]


def eval_names(s: Setup) -> list[str]:
    """The per-epoch metrics of ``s.evaluate`` as the result names them, or [] without one."""
    return s.metric_names


# ---- the compiled programs: one chunk of cells, sharded over the devices ----------------------


def _spmd(s: Setup, fn, cell_args: tuple[bool, ...]):
    """``fn`` vmapped over the cell axis of the arguments marked True in ``cell_args`` (the others
    shared), as ``shard_map`` over the mesh; its outputs are per cell. A stepwise setup with one
    cell per device applies ``fn`` to that cell alone: the program is a single run's, whose
    convolutions are not batched. (Elsewhere a vmap of one keeps the state's buffers aliased in
    place, which the memory estimate measures.)"""
    cell, shared = P(s.mesh.axis_names[0]), P()
    batched = jax.vmap(fn, in_axes=tuple(0 if c else None for c in cell_args))
    if s.chunk == 1 and s.stepwise:

        def batched(*args):
            args = [jax.tree.map(lambda a: a[0], x) if c else x for x, c in zip(args, cell_args)]
            return jax.tree.map(lambda a: a[None], fn(*args))

    specs = tuple(cell if c else shared for c in cell_args)
    # check_vma=False: a shared key meets per-cell values without a pcast.
    return jax.shard_map(batched, mesh=s.mesh, in_specs=specs, out_specs=cell, check_vma=False)


def _shared(s: Setup, value) -> jax.Array:
    return _put(value, NamedSharding(s.mesh, P()))


def init_program(s: Setup):
    """(compiled ``init(spare, hp, seeds, fixed) -> state``, compile seconds) for one chunk.
    ``spare`` is a state of the same shapes, unread and donated: the new state takes its buffers,
    so chunk after chunk reuses one allocation (fresh ones each time grow the heap of glibc's
    malloc, whose freed blocks of tens of MB are not returned to the system)."""
    t = template(s)
    init = cell_fns(s).init
    fn = _spmd(s, lambda _, *args: init(*args), (True, True, s.seeds is not None, False))

    def build():
        jitted = jax.jit(fn, donate_argnums=0, keep_unused=True)
        return jitted.lower(t.state, t.hp, t.seeds, s.fixed).compile()

    return compiled(s.key("init"), build)


def epoch_program(s: Setup):
    """(compiled ``epoch(state, hp, seeds, e, fixed, train) -> (state, losses)``, compile
    seconds) for one chunk; ``state`` is donated."""
    t = template(s)
    fn = _spmd(s, cell_fns(s).epoch, (True, True, s.seeds is not None, False, False, False))
    e = _shared(s, np.int32(0))

    def build():
        jitted = jax.jit(fn, donate_argnums=0)
        return jitted.lower(t.state, t.hp, t.seeds, e, s.fixed, s.train).compile()

    return compiled(s.key("epoch"), build)


def step_programs(s: Setup):
    """(compiled ``order(seeds, e) -> xs``, compiled ``step(state, hp, xs, i, fixed, train) ->
    (state, losses)``, the same compiled for the last, partial batch or None, compile seconds) for
    one chunk; ``state`` is donated. ``xs``: every step's (indices, weights[, keys]). For
    :attr:`Setup.stepwise` setups, whose epoch runs step by step from Python."""
    t = template(s)
    fns = cell_fns(s)
    seeded = s.seeds is not None
    e = _shared(s, np.int32(0))
    if seeded:
        order_fn = _spmd(s, fns.order, (True, False))
    else:
        order_fn = lambda seed, e: fns.order(seed, e)  # one order for every cell, unbatched
    rest = partial_size(s.n, s.batch_size, s.drop_last) if s.exact else 0
    cells = (True, True, seeded, False, False, False)
    step_fn = _spmd(s, fns.step, cells)
    last_fn = _spmd(s, lambda *args: fns.step(*args, size=rest), cells) if rest else None

    def build():
        orders = jax.jit(order_fn).lower(t.seeds, e).compile()
        xs = jax.eval_shape(order_fn, t.seeds, e)
        args = (t.state, t.hp, xs, e, s.fixed, s.train)
        step = jax.jit(step_fn, donate_argnums=0).lower(*args).compile()
        last = None if last_fn is None else jax.jit(last_fn, donate_argnums=0).lower(*args)
        return orders, step, None if last is None else last.compile()

    (orders, step, last), seconds = compiled(s.key("step"), build)
    return orders, step, last, seconds


def eval_program(s: Setup, i: int = 0):
    """(compiled ``evaluate(state, seeds, e, data) -> {name: per-cell mean}`` of evaluation set
    ``i``, compile seconds)."""
    t = template(s)
    fn = _spmd(s, cell_fns(s).evaluate, (True, s.seeds is not None, False, False))
    data, e = s.evals[i][1], _shared(s, np.int32(0))
    build = lambda: jax.jit(fn).lower(t.state, t.seeds, e, data).compile()
    return compiled((s.key("eval"), i), build)


# ---- running them -------------------------------------------------------------------------------


class Trained(NamedTuple):
    """What :func:`run_epochs` returns."""

    state: Any  # the chunk's state after the last epoch, on device
    losses: list[np.ndarray]  # per epoch, the per-step losses (width, steps)
    seconds: float  # run time, compiles excluded
    compile_seconds: float


class Evaluation(NamedTuple):
    """What :func:`evaluate_state` returns."""

    values: dict[str, np.ndarray]  # {name: (width,) mean over eval}
    seconds: float
    compile_seconds: float


def init_state(s: Setup, chunk: Chunk, spare=None):
    """The initial state (``(params, opt_state)``, or ``(params, opt_state, model_state)``) of
    ``chunk``, on device; returns (state, compile
    seconds). ``spare``, a state of another chunk that is no longer needed, is donated: its
    buffers hold the new state."""
    program, seconds = init_program(s)
    if spare is None:
        per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
        spare = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype, device=per_cell), chunk.state)
    return program(spare, chunk.hp, chunk.seeds, s.fixed), seconds


def run_epochs(s: Setup, state, chunk: Chunk, e0: int, e1: int, after_epoch=None) -> Trained:
    """Train ``chunk`` from the end of epoch ``e0`` to the end of epoch ``e1`` (0-based epochs
    ``e0 .. e1-1``); ``state`` is donated. ``after_epoch(e, state, losses)`` runs after each."""
    if s.stepwise:
        orders, step, last, compile_seconds = step_programs(s)
    else:
        program, compile_seconds = epoch_program(s)
    hp, seeds = chunk.hp, chunk.seeds
    out, seconds = [], 0.0
    indices = [_shared(s, np.int32(i)) for i in range(s.steps)] if s.stepwise else []
    for e in range(e0, e1):
        t0 = time.perf_counter()
        epoch = _shared(s, np.int32(e))
        if s.stepwise:
            xs = orders(seeds, epoch)
            values = []
            for k, i in enumerate(indices):
                run = last if last is not None and k == len(indices) - 1 else step
                state, value = run(state, hp, xs, i, s.fixed, s.train)
                values.append(value)
            losses = _fetch(jnp.stack(values, axis=1))  # waits for the epoch
        else:
            state, losses = program(state, hp, seeds, epoch, s.fixed, s.train)
            losses = _fetch(losses)  # waits for the epoch
        seconds += time.perf_counter() - t0
        out.append(losses)
        if after_epoch is not None:
            after_epoch(e, state, losses)
    return Trained(state, out, seconds, compile_seconds)


def evaluate_state(s: Setup, state, seeds, e: int) -> Evaluation:
    """The mean of each ``evaluate`` name over each evaluation set for every cell of a chunk's
    state after epoch ``e`` (0-based; ``seeds``: the chunk's), named as the result names them."""
    values, run_seconds, compile_seconds = {}, 0.0, 0.0
    epoch = _shared(s, np.int32(e))
    for i, (name, data) in enumerate(s.evals):
        program, seconds = eval_program(s, i)
        compile_seconds += seconds
        t0 = time.perf_counter()
        out = {k: _fetch(v) for k, v in program(state, seeds, epoch, data).items()}
        values.update({eval_metric(name, k): v for k, v in out.items()})
        run_seconds += time.perf_counter() - t0
    return Evaluation(values, run_seconds, compile_seconds)
