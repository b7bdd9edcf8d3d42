"""The per-cell functions of a ``fit`` and the compiled programs that run them on one chunk of
cells, sharded over the devices: ``init``, one ``epoch`` (or, for a :attr:`Setup.stepwise` setup,
an epoch's batch ``order`` and one ``step``) and ``evaluate``.

Every program is compiled once per :meth:`Setup.key` and kept in the sweeps' one compile cache
(:func:`jaxmom.sweep._engine.compiled`). :func:`init_state`, :func:`run_epochs` and
:func:`evaluate_state` run them on any group of cells over any range of epochs; the driver
(:mod:`jaxmom.sweep._driver`) is their one user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _engine
from jaxmom.sweep._engine import _fetch, _put, compiled
from jaxmom.sweep._setup import Setup

# ---- the per-cell functions --------------------------------------------------------------------


class CellFns(NamedTuple):
    """One cell's functions (``vmap`` and ``shard_map`` make them a chunk's)."""

    init: Callable  # (hp, seed, fixed) -> state
    epoch: Callable  # (state, hp, seed, e, fixed, train) -> (state, per-step losses)
    evaluate: Callable  # (state, eval) -> {name: mean over eval}
    order: Callable  # (seed, e) -> (indices, weights), each (steps, batch_size)
    step: Callable  # (state, hp, indices, weights, i, fixed, train) -> (state, loss)


def _batches(key, n: int, size: int, steps: int):
    """(indices, weights), both (steps, size): ``permutation(key, n)`` in consecutive slices, the
    last padded with index 0 and weight 0 (or dropped, when ``steps * size <= n``)."""
    pad = max(steps * size - n, 0)
    order = jnp.concatenate([jax.random.permutation(key, n), jnp.zeros(pad, jnp.int32)])
    weights = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return order[: steps * size].reshape(steps, size), weights[: steps * size].reshape(steps, size)


def _keys(seed):
    """(init_key, data_key) of a cell: ``jax.random.split(jax.random.key(seed))``."""
    init_key, data_key = jax.random.split(_engine._key(seed))
    return init_key, data_key


def cell_fns(s: Setup) -> CellFns:
    """The functions of one cell of ``s`` (see :class:`CellFns`)."""
    static = dict(s.static)

    def tx_of(hp, fixed):
        return s.optimizer({**fixed, **static, **hp})

    def init(hp, seed, fixed):
        params = s.init(_keys(seed)[0])
        return params, tx_of(hp, fixed).init(params)

    def order(seed, e):
        return _batches(jax.random.fold_in(_keys(seed)[1], e), s.n, s.batch_size, s.steps)

    def mean_loss(params, batch, w):
        return jnp.sum(w * s.loss(params, *batch)) / jnp.sum(w)

    def one_step(state, tx, idx, w, train):
        params, opt_state = state
        value, grads = jax.value_and_grad(mean_loss)(params, tuple(a[idx] for a in train), w)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def epoch(state, hp, seed, e, fixed, train):
        tx = tx_of(hp, fixed)
        xs = order(seed, e)
        return jax.lax.scan(lambda c, b: one_step(c, tx, b[0], b[1], train), state, xs)

    def step(state, hp, idx, w, i, fixed, train):
        return one_step(state, tx_of(hp, fixed), idx[i], w[i], train)

    def evaluate(state, data):
        params = state[0] if s.eval_params is None else s.eval_params(*state)
        n, size = int(data[0].shape[0]), s.eval_batch_size
        steps = -(-n // size)
        idx = jnp.minimum(jnp.arange(steps * size), n - 1).reshape(steps, size)
        w = (jnp.arange(steps * size) < n).astype(jnp.float32).reshape(steps, size)

        def add(total, xs):
            i, wi = xs
            values = s.evaluate(params, *(a[i] for a in data))  # type: ignore[misc]
            add = lambda t, v: t + jnp.sum(wi * v.astype(jnp.float32))
            return jax.tree.map(add, total, values), None

        shapes = jax.eval_shape(s.evaluate, params, *(a[:size] for a in data))  # type: ignore[arg-type]
        zeros = {k: jnp.zeros((), jnp.float32) for k in shapes}
        total, _ = jax.lax.scan(add, zeros, (idx, w))
        return {k: v / n for k, v in total.items()}

    return CellFns(init, epoch, evaluate, order, step)


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


def template(s: Setup) -> Chunk:
    """The :class:`Chunk` of ``s``'s first chunk: what every program of ``s`` is traced with."""
    return chunk_inputs(s, s.chunks()[0])


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
    """The names ``s.evaluate`` returns (traced abstractly), or [] without one."""
    if s.evaluate is None:
        return []
    params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), template(s.with_chunk(1)).state[0]
    )
    batch = tuple(jax.ShapeDtypeStruct((s.eval_batch_size,) + a.shape[1:], a.dtype) for a in s.eval)
    return list(jax.eval_shape(s.evaluate, params, *batch))


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
    """(compiled ``order(seeds, e) -> (indices, weights)``, compiled ``step(state, hp, indices,
    weights, i, fixed, train) -> (state, losses)``, compile seconds) for one chunk; ``state`` is
    donated. For :attr:`Setup.stepwise` setups, whose epoch runs step by step from Python."""
    t = template(s)
    fns = cell_fns(s)
    seeded = s.seeds is not None
    e = _shared(s, np.int32(0))
    if seeded:
        order_fn = _spmd(s, fns.order, (True, False))
    else:
        order_fn = lambda seed, e: fns.order(seed, e)  # one order for every cell, unbatched
    step_fn = _spmd(s, fns.step, (True, True, seeded, seeded, False, False, False))

    def build():
        orders = jax.jit(order_fn).lower(t.seeds, e).compile()
        idx, w = jax.eval_shape(order_fn, t.seeds, e)
        jitted = jax.jit(step_fn, donate_argnums=0)
        return orders, jitted.lower(t.state, t.hp, idx, w, e, s.fixed, s.train).compile()

    (orders, steps), seconds = compiled(s.key("step"), build)
    return orders, steps, seconds


def eval_program(s: Setup):
    """(compiled ``evaluate(state, eval) -> {name: per-cell mean}``, compile seconds)."""
    t = template(s)
    fn = _spmd(s, cell_fns(s).evaluate, (True, False))
    return compiled(s.key("eval"), lambda: jax.jit(fn).lower(t.state, s.eval).compile())


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
    """The initial ``(params, opt_state)`` of ``chunk``, on device; returns (state, compile
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
        orders, step, compile_seconds = step_programs(s)
    else:
        program, compile_seconds = epoch_program(s)
    hp, seeds = chunk.hp, chunk.seeds
    out, seconds = [], 0.0
    indices = [_shared(s, np.int32(i)) for i in range(s.steps)] if s.stepwise else []
    for e in range(e0, e1):
        t0 = time.perf_counter()
        epoch = _shared(s, np.int32(e))
        if s.stepwise:
            idx, w = orders(seeds, epoch)
            values = []
            for i in indices:
                state, value = step(state, hp, idx, w, i, s.fixed, s.train)
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


def evaluate_state(s: Setup, state) -> Evaluation:
    """The mean of each ``evaluate`` name over ``s.eval`` for every cell of a chunk's state."""
    program, compile_seconds = eval_program(s)
    t0 = time.perf_counter()
    values = {k: _fetch(v) for k, v in program(state, s.eval).items()}
    return Evaluation(values, time.perf_counter() - t0, compile_seconds)
