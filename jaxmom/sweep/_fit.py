"""``fit``: a supervised training sweep over any model, one compiled epoch at a time.

The contract, for a cell with seed ``s``::

    init_key, data_key = jax.random.split(jax.random.key(s))
    params = init(init_key); tx = optimizer(hparams); opt_state = tx.init(params)
    for e in range(epochs):
        order = jax.random.permutation(jax.random.fold_in(data_key, e), n)
        for idx in consecutive slices of batch_size of order (the last, partial one kept unless
                   drop_last):
            value, grads = jax.value_and_grad(lambda p: loss(p, *[a[idx] for a in train]).mean())(
                params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)

A cell of the grid equals that loop run alone, in float32 to rounding. Without a ``seed`` axis every
cell uses ``seed``, and its key is shared (not batched): the batch is gathered once for all the cells
of a chunk and a first layer meets it as one wide matmul against the chunk's stacked weights.

The compiled unit is one epoch of one chunk of cells (``vmap`` inside, ``shard_map`` over the
devices), with the state ``(params, opt_state)`` kept on device and donated from epoch to epoch.
The grid is trained chunk after chunk: a chunk trains all its epochs, is evaluated after each, and
is dropped, so only the results accumulate. The pieces are small functions that other searches
(e.g. successive halving) reuse on any subset of cells and any range of epochs:
:func:`init_state`, :func:`run_epochs`, :func:`evaluate_state`, built on a :class:`Setup`.

Checkpoints (``checkpoint_dir``, format in :mod:`jaxmom.sweep._checkpoint`): after every epoch of
a chunk, ``fit-<fingerprint>.json`` and the state file it names, which holds the chunk's state
``(params, opt_state)`` (leaves ``state/<i>``), the results so far of every cell (``result/<name>``,
one row per cell of the grid padded to whole chunks) and, when asked for, the final params of the
finished chunks (``params/<i>``). The fingerprint hashes everything that shapes the run (the grid's
values, seeds, fixed values, batch size, epochs, drop_last, return_params, the data's shapes, dtypes
and bytes, the state's shapes and types, the names of ``init``, ``loss``, ``optimizer``,
``evaluate`` and ``eval_params``), so another run never picks up this one's file; a function whose
body changed under the same name, with the same state, is not seen, so give it another folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _engine
from jaxmom.sweep._checkpoint import Checkpoint, refuse_nonfinite
from jaxmom.sweep._engine import _fetch, _put, compiled
from jaxmom.sweep._grid import SEED, SEEDS, Grid, _integers, _is_integer
from jaxmom.sweep._result import SweepResult

# On CPU, chunks of at most this many configurations per device: measured by the MNIST study on a
# 2-core Xeon, a 16x16 grid ran 13% faster in chunks of 8 or 16 than in one vmap of 256 (whose
# first-layer weights then stream through memory at every step).
CPU_CHUNK = 16


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


def _nbytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# ---- the setup: everything static about a fit ------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """What a fit is made of, checked: the functions, the cells' values, the data on device, the
    mesh and the chunk size (cells per device). Build it with :func:`setup`."""

    grid: Grid
    init: Callable
    loss: Callable
    optimizer: Callable
    evaluate: Callable | None
    eval_params: Callable | None
    hparams: dict[str, np.ndarray]  # flat, one value per cell (float32, int32 or bool)
    seeds: (
        np.ndarray | None
    )  # flat per cell as _engine._seed_input gives them, or None: every cell uses ``seed``, shared
    seed: int
    fixed: dict[str, Any]  # traced, shared by every cell
    static: tuple  # fixed values given to the optimizer as Python constants: (name, value)
    train: tuple
    eval: tuple
    batch_size: int
    eval_batch_size: int
    epochs: int
    drop_last: bool
    mesh: Mesh
    chunk: int
    stepwise: bool = False  # a Python loop of compiled steps instead of a compiled epoch

    @property
    def n(self) -> int:
        return int(self.train[0].shape[0])

    @property
    def steps(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    @property
    def width(self) -> int:
        """Cells trained at once: ``chunk`` per device."""
        return self.chunk * self.mesh.devices.size

    @property
    def padded(self) -> int:
        """The grid's size rounded up to whole chunks."""
        return -(-self.grid.size // self.width) * self.width

    def chunks(self) -> list[np.ndarray]:
        """Flat cell indices of each chunk; the last is padded by repeating the grid's last cell."""
        cells = np.minimum(np.arange(self.padded), self.grid.size - 1)
        return [cells[i : i + self.width] for i in range(0, self.padded, self.width)]

    def with_chunk(self, chunk: int) -> Setup:
        return dataclasses.replace(self, chunk=chunk)

    def key(self, kind: str) -> tuple:
        """What shapes a compiled program: never hyperparameter values, seeds or data values."""
        sig = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((self.train, self.eval)))
        names = tuple(sorted(self.hparams)), tuple(sorted(self.fixed))
        fns = (self.init, self.loss, self.optimizer, self.evaluate, self.eval_params)
        sizes = (self.batch_size, self.eval_batch_size, self.drop_last, self.chunk)
        devices = tuple(self.mesh.devices.flat)
        return ("fit", kind, fns, names, self.static, self.seeds is not None, sizes, sig, devices)


def _cell_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _traced_value(name: str, value) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return jnp.asarray(arr, jnp.float32)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise ValueError(f"fixed {name!r} does not fit in int32: {value!r}")
        return jnp.asarray(arr, jnp.int32)
    if arr.dtype.kind == "c":
        return jnp.asarray(arr, jnp.complex64)
    raise ValueError(f"fixed {name!r} must be numeric, got {value!r}")


def _split_fixed(fixed: Mapping[str, Any]) -> tuple[dict, tuple]:
    """(traced, static): scalar zeros, bools, strings and None stay Python constants of the program
    (so an optimizer can skip a zero term, as PyTorch's ``if weight_decay != 0`` does); every other
    value is a traced argument, so another value reuses the compiled program."""
    traced, static = {}, []
    for k, v in fixed.items():
        if v is None or isinstance(v, bool | str):
            static.append((k, v))
        elif isinstance(v, int | float) and v == 0:
            static.append((k, v))
        else:
            traced[k] = _traced_value(k, v)
    return traced, tuple(sorted(static))


def _arrays(name: str, data) -> tuple:
    if not isinstance(data, tuple | list) or not data:
        raise ValueError(f"{name} must be a non-empty tuple of arrays, got {type(data).__name__}")
    arrays = []
    for i, a in enumerate(data):
        arr = a if isinstance(a, jax.Array) else np.asarray(a)
        if arr.ndim < 1:
            raise ValueError(f"{name}[{i}] needs an example axis first, got shape {arr.shape}")
        if arr.dtype == np.int64 and not jax.config.read("jax_enable_x64"):
            big = np.iinfo(np.int32)
            if arr.size and (arr.min() < big.min or arr.max() > big.max):
                raise ValueError(f"{name}[{i}] holds int64 values outside int32's range")
            arr = arr.astype(np.int32)
        arrays.append(arr)
    lengths = [int(a.shape[0]) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"{name} arrays need equal leading (example) axes, got {lengths}")
    if lengths[0] < 1:
        raise ValueError(f"{name} needs at least one example, got 0")
    return tuple(arrays)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_cells(grid: Grid, optimizer: Callable, fixed: Mapping[str, Any]) -> None:
    """Build ``optimizer`` once per distinct cell with concrete Python values (the cell's and
    ``fixed``'s): a value it refuses raises one line naming the cell, before anything compiles."""
    coords = {k: v.reshape(-1) for k, v in grid.coords().items() if k != SEED}
    seen = set()
    for i in range(grid.size):
        cell = {k: v[i].item() for k, v in coords.items()}
        key = tuple(cell.items())
        if key in seen:
            continue
        seen.add(key)
        try:
            optimizer({**fixed, **cell})
        except (ValueError, TypeError) as e:
            msg = " ".join(str(e).split())
            raise ValueError(f"grid cell {_cell_text(cell)}: {msg}") from None


def setup(
    grid: Grid,
    *,
    init: Callable,
    loss: Callable,
    optimizer: Callable,
    train,
    batch_size: int,
    epochs: int,
    eval=None,
    evaluate: Callable | None = None,
    seed: int = 0,
    drop_last: bool = False,
    fixed: Mapping[str, Any] | None = None,
    eval_params: Callable | None = None,
    eval_batch_size: int | None = None,
    devices: Sequence[Any] | None = None,
) -> Setup:
    """Check every argument of :func:`fit` (one line per problem, before any compile) and build the
    :class:`Setup`, with a provisional chunk of the whole grid; see :func:`fit` for the arguments."""
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a jaxmom.sweep.Grid, got {type(grid).__name__}")
    for name, fn in (("init", init), ("loss", loss), ("optimizer", optimizer)):
        if not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
    batch_size = _positive_int("batch_size", batch_size)
    epochs = _positive_int("epochs", epochs)
    if not _is_integer(seed):
        raise ValueError(f"seed must be an integer in {SEEDS[0]}..{SEEDS[1]}, got {seed!r}")
    _integers("seed", [seed], *SEEDS)  # one line with the range when outside it
    train = _arrays("train", train)
    if drop_last and train[0].shape[0] < batch_size:
        raise ValueError(
            f"drop_last=True with batch_size {batch_size} above the {train[0].shape[0]} training "
            "examples leaves no step"
        )
    if (eval is None) != (evaluate is None):
        raise ValueError("eval and evaluate go together: give both or neither")
    eval = () if eval is None else _arrays("eval", eval)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
    if eval:
        eval_batch_size = min(eval_batch_size, int(eval[0].shape[0]))
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(grid.params))
    if clash:
        raise ValueError(f"fixed hyperparameters {clash} are also axes of the grid")
    check_cells(grid, optimizer, fixed)
    traced, static = _split_fixed(fixed)

    coords = {k: v.reshape(-1) for k, v in grid.coords().items()}
    seeds = coords.pop(SEED, None)
    seeds = None if seeds is None else _engine._seed_input(seeds)  # exact, as sweep() feeds them
    coords = {k: _engine._hparam_input(k, v) for k, v in coords.items()}
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    mesh = Mesh(np.array(devices), ("grid",))
    shared = NamedSharding(mesh, P())
    put = lambda tree: jax.tree.map(lambda a: _put(a, shared), tree)
    return Setup(
        grid,
        init,
        loss,
        optimizer,
        evaluate,
        eval_params,
        coords,
        seeds,
        int(seed),
        put(traced),
        static,
        put(train),
        put(eval),
        batch_size,
        eval_batch_size,
        epochs,
        bool(drop_last),
        mesh,
        -(-grid.size // len(devices)),
        devices[0].platform == "cpu" and _convolves(loss, init, train, batch_size),
    )


def _convolves(loss: Callable, init: Callable, train: tuple, batch_size: int) -> bool:
    """Whether ``loss`` convolves (traced once, abstractly). XLA:CPU runs a convolution inside a
    loop (a ``lax.scan`` epoch) several times slower than the same one outside, and the grouped
    convolution that ``vmap`` makes of stacked kernels slower than one convolution per
    configuration (``experiments/benchmark.py --cnn`` measures both ways against single runs): on
    CPU such models train one configuration at a time (``chunk_size="auto"``), one compiled step
    at a time."""
    params = jax.eval_shape(init, jax.random.key(0))
    batch = [jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype) for a in train]
    return "conv_general_dilated" in str(jax.make_jaxpr(loss)(params, *batch))


# ---- the per-cell functions --------------------------------------------------------------------


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


def _cell_fns(s: Setup):
    """``init(hp, seed, fixed)``, ``epoch(state, hp, seed, e, fixed, train)``,
    ``evaluate(state, eval)``, ``order(seed, e)`` and ``step(state, hp, order, weights, i, fixed,
    train)`` for one cell (the last two: one epoch's batches, and its step ``i``)."""
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

    return init, epoch, evaluate, order, step


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


def _cells(s: Setup, cells: np.ndarray) -> tuple[dict, Any]:
    """The hyperparameters (sharded per cell) and seeds (per cell, or one shared) of ``cells``."""
    per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
    hp = {k: _put(v[cells], per_cell) for k, v in s.hparams.items()}
    if s.seeds is None:
        seed = _engine._seed_input(np.array([s.seed], np.uint64))[0]
        return hp, _put(seed, NamedSharding(s.mesh, P()))
    return hp, _put(s.seeds[cells], per_cell)


def _state_shapes(s: Setup, hp, seeds):
    """The chunk's state as ``jax.ShapeDtypeStruct``s, laid out one cell per row over the mesh;
    traced once per shape and kept in the programs' cache (a call of ``fit`` asks several times:
    tracing ``init`` each time cost a single run's epoch 20%)."""

    def build():
        init = _cell_fns(s)[0]
        seeded = s.seeds is not None
        shapes = jax.eval_shape(
            jax.vmap(init, in_axes=(0, 0 if seeded else None, None)), hp, seeds, s.fixed
        )
        per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
        return jax.tree.map(
            lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=per_cell), shapes
        )

    key = (s.key("state shapes"), _engine._signature((hp, seeds, s.fixed)))
    return compiled(key, build)[0]


def init_program(s: Setup):
    """(compiled ``init(spare, hp, seeds, fixed) -> state``, compile seconds) for one chunk.
    ``spare`` is a state of the same shapes, unread and donated: the new state takes its buffers,
    so chunk after chunk reuses one allocation (fresh ones each time grow the heap of glibc's
    malloc, whose freed blocks of tens of MB are not returned to the system)."""
    hp, seeds = _cells(s, s.chunks()[0])
    state = _state_shapes(s, hp, seeds)
    init = _cell_fns(s)[0]
    fn = _spmd(s, lambda _, *args: init(*args), (True, True, s.seeds is not None, False))

    def build():
        jitted = jax.jit(fn, donate_argnums=0, keep_unused=True)
        return jitted.lower(state, hp, seeds, s.fixed).compile()

    return compiled(s.key("init"), build)


def epoch_program(s: Setup):
    """(compiled ``epoch(state, hp, seeds, e, fixed, train) -> (state, losses)``, compile
    seconds) for one chunk; ``state`` is donated."""
    hp, seeds = _cells(s, s.chunks()[0])
    state = _state_shapes(s, hp, seeds)
    fn = _spmd(s, _cell_fns(s)[1], (True, True, s.seeds is not None, False, False, False))
    e = _put(np.int32(0), NamedSharding(s.mesh, P()))

    def build():
        jitted = jax.jit(fn, donate_argnums=0)
        return jitted.lower(state, hp, seeds, e, s.fixed, s.train).compile()

    return compiled(s.key("epoch"), build)


def step_programs(s: Setup):
    """(compiled ``order(seeds, e) -> (indices, weights)``, compiled ``step(state, hp, indices,
    weights, i, fixed, train) -> (state, losses)``, compile seconds) for one chunk; ``state`` is
    donated. For :attr:`Setup.stepwise` setups, whose epoch runs step by step from Python."""
    hp, seeds = _cells(s, s.chunks()[0])
    state = _state_shapes(s, hp, seeds)
    _, _, _, order, step = _cell_fns(s)
    seeded = s.seeds is not None
    shared = NamedSharding(s.mesh, P())
    e = _put(np.int32(0), shared)
    if seeded:
        order_fn = _spmd(s, order, (True, False))
    else:
        order_fn = lambda seed, e: order(seed, e)  # one order for every cell, unbatched
    step_fn = _spmd(s, step, (True, True, seeded, seeded, False, False, False))

    def build():
        orders = jax.jit(order_fn).lower(seeds, e).compile()
        idx, w = jax.eval_shape(order_fn, seeds, e)
        jitted = jax.jit(step_fn, donate_argnums=0)
        return orders, jitted.lower(state, hp, idx, w, e, s.fixed, s.train).compile()

    (orders, steps), seconds = compiled(s.key("step"), build)
    return orders, steps, seconds


def eval_program(s: Setup):
    """(compiled ``evaluate(state, eval) -> {name: per-cell mean}``, compile seconds)."""
    hp, seeds = _cells(s, s.chunks()[0])
    state = _state_shapes(s, hp, seeds)
    fn = _spmd(s, _cell_fns(s)[2], (True, False))
    return compiled(s.key("eval"), lambda: jax.jit(fn).lower(state, s.eval).compile())


def init_state(s: Setup, cells: np.ndarray, spare=None):
    """The initial ``(params, opt_state)`` of ``cells`` (flat indices, ``s.width`` of them), on
    device; returns (state, compile seconds). ``spare``, a state of another chunk that is no longer
    needed, is donated: its buffers hold the new state."""
    program, seconds = init_program(s)
    hp, seeds = _cells(s, cells)
    if spare is None:
        per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
        shapes = _state_shapes(s, hp, seeds)
        spare = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype, device=per_cell), shapes)
    return program(spare, hp, seeds, s.fixed), seconds


def run_epochs(s: Setup, state, cells: np.ndarray, e0: int, e1: int, after_epoch=None):
    """Train ``cells`` from the end of epoch ``e0`` to the end of epoch ``e1`` (0-based epochs
    ``e0 .. e1-1``); ``state`` is donated. Returns (state, [per-step losses (width, steps) per
    epoch], train seconds, compile seconds). ``after_epoch(e, state, losses)`` runs after each."""
    if s.stepwise:
        orders, step, compile_seconds = step_programs(s)
    else:
        program, compile_seconds = epoch_program(s)
    hp, seeds = _cells(s, cells)
    shared = NamedSharding(s.mesh, P())
    out, seconds = [], 0.0
    indices = [_put(np.int32(i), shared) for i in range(s.steps)] if s.stepwise else []
    for e in range(e0, e1):
        t0 = time.perf_counter()
        epoch = _put(np.int32(e), shared)
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
    return state, out, seconds, compile_seconds


def evaluate_state(s: Setup, state) -> tuple[dict[str, np.ndarray], float, float]:
    """({name: (width,) mean over ``eval``}, run seconds, compile seconds) of a chunk's state."""
    program, compile_seconds = eval_program(s)
    t0 = time.perf_counter()
    values = {k: _fetch(v) for k, v in program(state, s.eval).items()}
    return values, time.perf_counter() - t0, compile_seconds


# ---- chunk size ---------------------------------------------------------------------------------


def bytes_per_config(s: Setup) -> int:
    """An upper estimate of the memory one more configuration keeps live: from the compiled
    one-configuration epoch (and evaluation) program's ``memory_analysis()`` where the backend
    reports it (its temporaries, plus its arguments and outputs less the shared data), else the
    parameters five times, the optimizer state three times and the batch's inputs four times;
    plus every step's loss and the evaluations kept on the host."""
    one = s.with_chunk(1)
    one = dataclasses.replace(one, mesh=Mesh(np.array(s.mesh.devices.flat[:1]), ("grid",)))
    hp, seeds = _cells(one, one.chunks()[0])
    state = _nbytes(_state_shapes(one, hp, seeds))
    shared = _nbytes((one.train, one.fixed))
    results = 4 * (s.steps * s.epochs + 8 * s.epochs)
    try:
        analysis = [epoch_program(one)[0].memory_analysis()]
        if s.evaluate is not None:
            analysis.append(eval_program(one)[0].memory_analysis())
        live = max(
            a.temp_size_in_bytes
            + a.argument_size_in_bytes
            + a.output_size_in_bytes
            - a.alias_size_in_bytes
            for a in analysis
        )
        return max(live - shared - _nbytes(one.eval), state) + results
    except (AttributeError, TypeError, NotImplementedError, jax.errors.JaxRuntimeError):
        batch = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in s.train) * s.batch_size
        return 5 * state + 4 * batch + results


def auto_chunk_size(s: Setup, memory_budget: int | None = None) -> int:
    """The most configurations per device whose :func:`bytes_per_config` fit in ``memory_budget``
    bytes (default: half the memory available now, shared by the devices on CPU), at least 1 and at
    most the grid's share per device (and at most :data:`CPU_CHUNK` on CPU, which is faster)."""
    ndev = s.mesh.devices.size
    per_device = -(-s.grid.size // ndev)
    if s.stepwise:
        return 1
    if s.mesh.devices.flat[0].platform == "cpu":
        per_device = min(per_device, CPU_CHUNK)
        budget = (available_memory() // 2 if memory_budget is None else memory_budget) // ndev
    else:
        stats = s.mesh.devices.flat[0].memory_stats() or {}
        free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        budget = memory_budget if memory_budget is not None else free // 2
        if not budget:
            budget = available_memory() // 2
    return max(1, min(per_device, budget // bytes_per_config(s)))


def _chunk(s: Setup, chunk_size, memory_budget) -> Setup:
    if chunk_size == "auto":
        return s.with_chunk(auto_chunk_size(s, memory_budget))
    if chunk_size is None:
        return s
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}"
        )
    return s.with_chunk(min(chunk_size, s.chunk))


# ---- checkpoints --------------------------------------------------------------------------------


def _fingerprint(s: Setup, return_params: bool) -> str:
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
        # the functions by name (stable across processes; a changed body under the same name
        # is not seen: give such a run another checkpoint_dir)
        "functions": [
            f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', type(f).__name__)}"
            for f in (s.init, s.loss, s.optimizer, s.evaluate, s.eval_params)
        ],
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    coords = {k: np.asarray(v) for k, v in s.grid.coords().items()}
    for name, arr in sorted({**coords, **jax.tree.map(np.asarray, s.fixed)}.items()):
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    for arr in s.train + s.eval:
        arr = np.asarray(arr)
        h.update(f"{arr.dtype}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    hp, seeds = _cells(s.with_chunk(1), np.zeros(s.mesh.devices.size, int))
    shapes = _state_shapes(s.with_chunk(1), hp, seeds)
    h.update(repr(jax.tree.map(lambda x: (x.shape[1:], str(x.dtype)), shapes)).encode())
    return h.hexdigest()[:16]


# ---- fit ----------------------------------------------------------------------------------------


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
) -> SweepResult:
    """Train ``init``'s model with ``loss`` and ``optimizer``, one run per cell of ``grid``.

    Each cell equals the plain loop of :mod:`jaxmom.sweep._fit`'s docstring run alone: the seed
    ``s`` gives ``init_key, data_key = jax.random.split(jax.random.key(s))``, epoch ``e`` visits
    ``jax.random.permutation(jax.random.fold_in(data_key, e), n)`` in consecutive slices of
    ``batch_size``, and each step takes the mean loss over the batch's real examples.

    Args:
      grid: the hyperparameters to sweep (:func:`~jaxmom.sweep.product`, ``with_seeds``...).
      init: ``init(key) -> params``, any pytree (e.g. ``model.init(key, x)["params"]``).
      loss: ``loss(params, *batch) -> per-example losses (B,)``; ``batch`` is ``train`` sliced.
      optimizer: ``optimizer(hparams) -> optax.GradientTransformation``; ``hparams`` maps the
        grid's names (and ``fixed``'s) to traced scalars, e.g.
        ``lambda h: jaxmom.sgd(h["lr"], h["momentum"])``. It is first built once per cell with
        concrete values: a value it refuses raises ``grid cell lr=..., momentum=...: ...``.
      train: a tuple of arrays, the example axis first (e.g. ``(images, labels)``).
      batch_size: examples per step. The last, partial batch is kept (averaged over its real
        examples, as PyTorch's ``DataLoader``) unless ``drop_last``.
      epochs: passes over ``train``.
      eval: a tuple of arrays for ``evaluate``, with ``evaluate``.
      evaluate: ``evaluate(params, *batch) -> {name: per-example values (B,)}``, averaged over all
        of ``eval`` after every epoch, in batches of ``eval_batch_size`` (default ``batch_size``),
        in a program of its own, timed apart (the result's ``eval_seconds``).
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
        grid's shape in front, on the host).
      divergence_factor: see :func:`jaxmom.sweep.sweep`; applied to ``loss``.
      halving: a :class:`~jaxmom.sweep.Halving`: successive halving instead of training every
        cell for every epoch (see :mod:`jaxmom.sweep._halving`; no ``checkpoint_dir``).

    Returns:
      A :class:`~jaxmom.sweep.SweepResult` whose ``metrics`` hold ``loss`` (every step,
      ``grid.shape + (epochs * steps,)``), ``epoch_loss`` (the mean of each epoch's batch losses,
      ``grid.shape + (epochs,)``) and each ``evaluate`` name (``grid.shape + (epochs,)``);
      ``info["resumed_epochs"]`` (nested lists shaped like the grid) counts the epochs each cell
      had from ``checkpoint_dir`` when this call started (0 without a checkpoint).
    """
    if divergence_factor is not None and not divergence_factor > 1:
        raise ValueError(f"divergence_factor must be above 1 (or None), got {divergence_factor!r}")
    if chunk_size == "auto" or chunk_size is None:
        pass
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}"
        )
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
    )
    if halving is not None:  # successive halving lives in its own module, on these functions
        from jaxmom.sweep._halving import run

        s = _chunk(s, chunk_size, memory_budget)
        return run(s, halving, progress, return_params, divergence_factor, checkpoint_dir)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Checkpoint(checkpoint_dir, f"fit-{_fingerprint(s, return_params)}")
    saved_chunk = ((checkpoint and checkpoint.read_header()) or {}).get("chunk_size")
    if saved_chunk is not None and chunk_size == "auto":
        s = s.with_chunk(int(saved_chunk))
    else:
        s = _chunk(s, chunk_size, memory_budget)
    return _train(s, checkpoint, progress, return_params, divergence_factor)


class _Results:
    """Every cell's results so far, on the host, one row per cell of the padded grid: per-step
    losses, per-epoch means and evaluations, and (when asked for) the final params' leaves."""

    def __init__(self, s: Setup, arrays: dict[str, np.ndarray] | None = None):
        self.arrays = {
            "loss": np.zeros((s.padded, s.epochs * s.steps), np.float32),
            "epoch_loss": np.zeros((s.padded, s.epochs), np.float32),
        }
        self.params: list[np.ndarray] | None = None
        for k, v in (arrays or {}).items():
            if k.startswith("result/"):
                self.arrays[k.removeprefix("result/")] = v
        leaves = sorted(
            (int(k.split("/")[1]), v) for k, v in (arrays or {}).items() if k.startswith("params/")
        )
        if leaves:
            self.params = [v for _, v in leaves]

    def record(self, s: Setup, rows: np.ndarray, e: int, losses, values: dict) -> None:
        self.arrays["loss"][rows, e * s.steps : (e + 1) * s.steps] = losses
        self.arrays["epoch_loss"][rows, e] = losses.mean(-1)
        for k, v in values.items():
            if k not in self.arrays:
                self.arrays[k] = np.zeros((s.padded, s.epochs), np.float32)
            self.arrays[k][rows, e] = v

    def record_params(self, s: Setup, rows: np.ndarray, params) -> None:
        leaves = [_fetch(x) for x in jax.tree.leaves(params)]
        if self.params is None:
            self.params = [np.zeros((s.padded,) + x.shape[1:], x.dtype) for x in leaves]
        for out, x in zip(self.params, leaves, strict=True):
            out[rows] = x

    def to_npz(self) -> dict[str, np.ndarray]:
        out = {f"result/{k}": v for k, v in self.arrays.items()}
        return {**out, **{f"params/{i}": x for i, x in enumerate(self.params or [])}}


def _resume(s: Setup, checkpoint: Checkpoint):
    """(chunk, epoch, state on device, results, seconds) from ``checkpoint``, or None."""
    template = _state_shapes(s, *_cells(s, s.chunks()[0]))
    loaded = checkpoint.load(template)
    if loaded is None:
        return None
    h, state, arrays = loaded
    if h["chunk_size"] != s.chunk or h["devices"] != s.mesh.devices.size:
        raise ValueError(
            f"checkpoint {checkpoint.header} was made with {h['chunk_size']} cells on "
            f"{h['devices']} devices, not {s.chunk} on {s.mesh.devices.size}: pass "
            "chunk_size='auto' and the same devices, or another checkpoint_dir"
        )
    results = _Results(s, arrays)
    if results.params is not None:  # np.savez keeps bfloat16 as raw bytes (V2): its dtype again
        dtypes = [np.dtype(t.dtype) for t in jax.tree.leaves(template[0])]
        results.params = [
            x.view(d) if x.dtype.kind == "V" and x.dtype.itemsize == d.itemsize else x
            for x, d in zip(results.params, dtypes, strict=True)
        ]
    rows = np.arange(h["chunk"] * s.width, (h["chunk"] + 1) * s.width)
    ok = np.asarray(np.isfinite(results.arrays["loss"][rows, : h["epoch"] * s.steps]).all(-1))
    refuse_nonfinite(checkpoint.state_file(), state, ok)
    per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
    state = jax.tree.map(lambda x: _put(x, per_cell), state)
    return h["chunk"], h["epoch"], state, results, h["seconds"]


def _train(s: Setup, checkpoint, progress, return_params, divergence_factor) -> SweepResult:
    """Chunk after chunk: init (or resume), train every epoch, evaluate and checkpoint after
    each; only the results stay when a chunk is done (its state's buffers go to the next one)."""
    from tqdm.auto import tqdm

    chunks = s.chunks()
    results, seconds = _Results(s), {"compile": 0.0, "train": 0.0, "eval": 0.0}
    start, state = (0, 0), None
    resumed = _resume(s, checkpoint) if checkpoint is not None else None
    if resumed is not None:
        *start, state, results, seconds = resumed
    bar = tqdm(
        total=len(chunks) * s.epochs,
        initial=start[0] * s.epochs + start[1],
        disable=not progress,
        file=sys.stderr,
        desc="fit",
        unit="epoch",
    )
    spare = None  # the last chunk's state, whose buffers the next chunk's takes
    try:
        for c in range(start[0], len(chunks)):
            rows = np.arange(c * s.width, (c + 1) * s.width)  # of the padded grid
            e0 = start[1] if state is not None else 0
            if state is None:
                state, compile_s = init_state(s, chunks[c], spare)
                seconds["compile"] += compile_s

            def after_epoch(e, state, losses, rows=rows, c=c):
                values = {}
                if s.evaluate is not None:
                    values, run_s, compile_s = evaluate_state(s, state)
                    seconds["eval"] += run_s
                    seconds["compile"] += compile_s
                results.record(s, rows, e, losses, values)
                if return_params and e + 1 == s.epochs:
                    results.record_params(s, rows, state[0])
                if checkpoint is not None:
                    header = {
                        "chunk": c,
                        "epoch": e + 1,
                        "chunk_size": s.chunk,
                        "devices": s.mesh.devices.size,
                        "seconds": seconds,
                    }
                    checkpoint.save(header, jax.tree.map(_fetch, state), results.to_npz())
                bar.update(1)

            spare, _, train_s, compile_s = run_epochs(
                s, state, chunks[c], e0, s.epochs, after_epoch
            )
            seconds["train"] += train_s
            seconds["compile"] += compile_s
            state = None
    finally:
        bar.close()

    n, shape = s.grid.size, s.grid.shape
    metrics = {k: v[:n].reshape(shape + v.shape[1:]) for k, v in results.arrays.items()}
    res = SweepResult(
        grid=s.grid,
        metrics=metrics,
        compile_seconds=seconds["compile"],
        train_seconds=seconds["train"],
        history="loss",
        devices=tuple(s.mesh.devices.flat),
        divergence_factor=divergence_factor,
        eval_seconds=seconds["eval"],
    )
    # epochs each cell had trained when this call resumed its checkpoint: all of them in the
    # chunks before the checkpoint's, its epoch in that chunk, none after (rows in grid order)
    chunk_of = np.arange(s.padded)[:n] // s.width
    resumed_epochs = np.where(
        chunk_of < start[0], s.epochs, np.where(chunk_of == start[0], start[1], 0)
    )
    res.info["resumed_epochs"] = resumed_epochs.reshape(shape).tolist()  # JSON-able, as info is
    if return_params and results.params is not None:
        treedef = jax.tree.structure(_state_shapes(s, *_cells(s, chunks[0]))[0])
        leaves = [x[:n].reshape(shape + x.shape[1:]) for x in results.params]
        res.params = jax.tree.unflatten(treedef, leaves)
    return res
