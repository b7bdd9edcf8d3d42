"""The sweep engine: one compiled, sharded, chunked program for a whole grid.

Layout of the compiled program, for ``K`` cells on ``D`` devices with ``chunk_size=C``:
the grid is flattened in C order, padded (by repeating its last cell) to ``D * ceil(K / D / C) * C``
cells, and sharded along its only axis over a one-axis ``Mesh`` of all devices (``NamedSharding``,
``shard_map``); each device runs ``lax.map`` over its chunks of ``C`` cells and ``vmap`` inside a
chunk, so at most ``C`` configurations per device are live at once. After
``jax.distributed.initialize(...)`` in every process, ``jax.devices()`` and so the mesh span all
processes' devices, and every process receives the whole gathered grid.

A cell's PRNG key is ``jax.random.key(seed)``, its seed taken from the grid's ``seed`` axis (or
the ``seed`` argument), so a cell reproduces ``train_fn(hparams, jax.random.key(seed), *args)``.
Seeds are exact up to ``2**64 - 1``: a seed below ``2**32`` is fed as a ``uint32`` scalar, and a
larger one gives the key that ``jax.random.key`` makes from the full 64-bit value with
``jax_enable_x64`` on (with it off, JAX's own ``jax.random.key`` keeps only the low 32 bits; here the
default threefry key is built from its data ``[seed >> 32, seed & 0xFFFFFFFF]``, which is the same
key). Integer hyperparameters reach ``train_fn`` exactly: beyond int32 they need ``jax_enable_x64``,
and without it they are refused, never wrapped.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _checks
from jaxmom.sweep._grid import INT32, SEED, SEEDS, Grid, _integers, check_float32
from jaxmom.sweep._result import SweepResult, table_columns

# Compiled programs, least recently used first. A program is keyed on what shapes it: the
# train_fn object, the devices, the chunk size, whether seeds are batched, and the shapes and
# dtypes of the inputs (so the grid's size); never on hyperparameter values.
CACHE_SIZE = 16
_COMPILED: collections.OrderedDict = collections.OrderedDict()


def _program(train_fn: Callable, mesh: Mesh, chunk: int, seeded: bool) -> Any:
    """``f(hparams, seeds, args)`` over flat cells sharded on the mesh's axis: each device runs
    ``lax.map`` over chunks of ``chunk`` cells, ``vmap`` inside. Without a seed axis ``seeds`` is one
    replicated scalar, so the key (and anything derived from it, such as a shuffled batch order) is
    shared by all cells rather than batched, and ``args`` is always shared."""

    def one(hparams, seed, args):
        return train_fn(hparams, _key(seed), *args)

    batched = jax.vmap(one, in_axes=(0, 0 if seeded else None, None))

    def local(hparams, seeds, args):
        m = next(iter(jax.tree.leaves(hparams)), seeds).shape[0]
        if m == chunk:
            return batched(hparams, seeds, args)
        split = lambda a: a.reshape(m // chunk, chunk, *a.shape[1:])
        cells = jax.tree.map(split, (hparams, seeds) if seeded else hparams)
        run = (
            (lambda c: batched(c[0], c[1], args)) if seeded else (lambda c: batched(c, seeds, args))
        )
        out = jax.lax.map(run, cells)
        return jax.tree.map(lambda a: a.reshape(m, *a.shape[2:]), out)

    cell = P(mesh.axis_names[0])
    specs = (cell, cell if seeded else P(), P())
    # check_vma=False: train_fn needs no pcast where a shared key meets per-cell values.
    program = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=cell, check_vma=False)
    return jax.jit(program)


def _key(seed: jax.Array) -> jax.Array:
    """The key of one cell: ``jax.random.key(seed)``, or, for a seed given as its two 32-bit
    halves ``[high, low]`` (see :func:`_seed_input`), the threefry key with that data, which is
    the key ``jax.random.key`` makes from the full 64-bit seed with ``jax_enable_x64`` on."""
    if seed.shape == (2,):
        return jax.random.wrap_key_data(seed, impl="threefry2x32")
    return jax.random.key(seed)


def _x64() -> bool:
    """Whether JAX keeps 64-bit integers (``jax_enable_x64``, global or in a context)."""
    return jax.dtypes.canonicalize_dtype(np.int64) == np.int64


def _seed_input(seeds: np.ndarray) -> np.ndarray:
    """Seeds (``0..2**64-1``, checked by the grid) as ``train_fn``'s program takes them, exactly:
    ``uint32`` below ``2**32``; above, ``uint64`` with x64 on, else their ``[high, low]`` halves."""
    seeds = seeds.astype(np.uint64)
    if (seeds < 2**32).all():
        return seeds.astype(np.uint32)
    if _x64():
        return seeds
    impl = str(jax.random.key_impl(jax.random.key(0)))
    if impl != "threefry2x32":
        raise ValueError(
            f"seed {int(seeds.max())} is above 2**32-1, which needs jax_enable_x64 with the "
            f"{impl} PRNG"
        )
    return np.stack([seeds >> np.uint64(32), seeds & np.uint64(0xFFFFFFFF)], -1).astype(np.uint32)


def _hparam_input(name: str, values: np.ndarray) -> np.ndarray:
    """One hyperparameter's values as ``train_fn`` receives them: floats as float32 (a finite
    value whose float32 is inf, or a nonzero one whose float32 is 0 or subnormal, is refused: see
    :func:`~jaxmom.sweep._grid.check_float32`), integers exact (int64 only with x64 on)."""
    if values.dtype == np.float64:
        check_float32(f"hyperparameter {name!r}", values)
        with np.errstate(under="ignore"):
            return values.astype(np.float32)
    if values.dtype.kind in "iu" and values.dtype.itemsize > 4 and not _x64():
        outside = (values < INT32[0]) | (values > INT32[1])
        if outside.any():
            raise ValueError(
                f"hyperparameter {name!r} value {int(values[outside][0])} is outside the allowed "
                f"range {INT32[0]}..{INT32[1]} (int32, as JAX has no int64 without jax_enable_x64)"
            )
        return values.astype(np.int32)
    return values


def _signature(tree) -> tuple:
    return tuple(
        (str(k), v.shape, str(v.dtype)) for k, v in jax.tree_util.tree_leaves_with_path(tree)
    )


def clear_cache() -> None:
    """Forget every compiled program of the sweeps (``sweep``, ``fit``, halving): the next call
    compiles again. The one public way to reach the cache, with :func:`cache_size`."""
    _COMPILED.clear()
    _OWED.clear()


def cache_size() -> int:
    """How many compiled programs the sweeps' cache holds now (at most :data:`CACHE_SIZE`, the
    most recently used ones)."""
    return len(_COMPILED)


# Compile seconds of programs compiled ahead of their first run (``fit``'s memory estimate reads
# the very programs it then runs): the first run that asks for the program reports them.
_OWED: dict = {}
_DEFER = [False]


@contextlib.contextmanager
def compile_ahead():
    """Programs compiled inside this block owe their compile seconds to their first user: the
    next :func:`compiled` call for the same key returns them once (then 0, as any cache hit)."""
    _DEFER.append(True)
    try:
        yield
    finally:
        _DEFER.pop()


def compiled(key, build: Callable[[], Any]) -> tuple[Any, float]:
    """(program, compile seconds) for ``key``: ``build()`` compiles it on a miss, else 0 seconds
    (or, once, the seconds a compile inside :func:`compile_ahead` owes).

    One bounded LRU cache of the :data:`CACHE_SIZE` most recently used programs serves every
    compiled program of the sweeps (training here, a study's evaluation), so none grows unbounded.
    """
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key], 0.0 if _DEFER[-1] else _OWED.pop(key, 0.0)
    t0 = time.perf_counter()
    exe = build()
    seconds = time.perf_counter() - t0
    _COMPILED[key] = exe
    while len(_COMPILED) > CACHE_SIZE:
        _OWED.pop(_COMPILED.popitem(last=False)[0], None)
    if _DEFER[-1]:
        _OWED[key] = seconds
        return exe, 0.0
    return exe, seconds


def _compile(train_fn, mesh, chunk, seeded, inputs):
    """Compile once per (train_fn, devices, chunk, input shapes and dtypes); return (exe, seconds).

    Hyperparameter *values* are not part of the key: a new grid of the same shape reuses the program.
    """
    key = (train_fn, tuple(mesh.devices.flat), chunk, seeded, _signature(inputs))
    return compiled(key, lambda: _program(train_fn, mesh, chunk, seeded).lower(*inputs).compile())


def _put(arr, sharding: NamedSharding) -> jax.Array:
    """A global array laid out by ``sharding`` (no copy if it already is); with several processes
    each one fills only its own devices' parts."""
    if jax.process_count() == 1:
        return jax.device_put(arr, sharding)
    arr = np.asarray(arr)
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def _fetch(x: jax.Array) -> np.ndarray:
    """The whole array on this host, gathered from every process when there are several."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def sweep(
    train_fn: Callable[..., Any],
    grid: Grid,
    *,
    args: tuple = (),
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    seed: int = 0,
    history: str = "loss",
    divergence_factor: float | None = 10.0,
) -> SweepResult:
    """Train every configuration of ``grid`` in one compiled program.

    Args:
      train_fn: ``train_fn(hparams, key, *args) -> metrics``; ``hparams`` maps each hyperparameter
        name of the grid to a traced scalar, ``key`` is ``jax.random.key(seed)``, ``metrics`` is a
        pytree of arrays. It must be jittable and vmappable. Keep the same function object between
        calls: the compiled program is cached on it (and on the devices, the chunk size and the
        shapes of the inputs), so a grid of the same shape with other values compiles nothing.
      grid: from :func:`product`, :func:`zipped`, their ``*`` product and ``with_seeds``.
      args: arrays shared by every configuration (e.g. the training data), passed to ``train_fn``
        after the key, unbatched: a first-layer matmul of shared inputs against ``K`` stacked
        weight matrices then lowers to one wide matmul.
      chunk_size: at most this many configurations are live per device at once (``lax.map``
        over chunks, ``vmap`` inside). ``None`` runs each device's whole share in one ``vmap``.
      devices: devices to shard the grid over; default ``jax.devices()``, which after
        ``jax.distributed.initialize`` spans every process.
      seed: the PRNG seed of every cell when the grid has no ``seed`` axis; the key is then shared
        (not batched), so all cells see the same initialisation and batch order. Seeds are
        integers in ``0..2**64-1``, each cell's key that of ``jax.random.key`` on the full value
        (see the module's docstring).
      history: name of a per-step metric, usually the loss (first per-cell axis = step). A
        configuration diverged at the first step where it is NaN or inf or, with
        ``divergence_factor``, exceeds ``divergence_factor`` times its value at the first step.
      divergence_factor: see ``history``; ``None`` counts only NaN and inf as divergence.

    Returns:
      A :class:`SweepResult`; its arrays have the grid's shape in front.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a jaxmom.sweep.Grid, got {type(grid).__name__}")
    size = _checks.chunk_size(chunk_size, auto=False)
    seed_axis = _integers("seed", [_checks.seed(seed)], *SEEDS)
    divergence_factor = _checks.divergence_factor(divergence_factor)
    devices = _checks.devices(devices)

    n, ndev = grid.size, len(devices)
    per_device = -(-n // ndev)
    chunk = per_device if size is None else min(int(size), per_device)
    per_device = -(-per_device // chunk) * chunk
    pad = np.minimum(np.arange(per_device * ndev), n - 1)  # repeat the last cell: no new values

    coords = {k: v.reshape(-1)[pad] for k, v in grid.coords().items()}
    seeded = SEED in coords
    seeds = _seed_input(coords.pop(SEED) if seeded else seed_axis)
    seeds = seeds if seeded else seeds[0]
    coords = {k: _hparam_input(k, v) for k, v in coords.items()}
    mesh = Mesh(np.array(devices), ("grid",))
    cells, shared = NamedSharding(mesh, P("grid")), NamedSharding(mesh, P())
    seeds = _put(seeds, cells if seeded else shared)
    hparams = {k: _put(v, cells) for k, v in coords.items()}
    inputs = (hparams, seeds, jax.tree.map(lambda a: _put(a, shared), tuple(args)))

    exe, compile_seconds = _compile(train_fn, mesh, chunk, seeded, inputs)
    table_columns(grid, exe.out_info, leading=1)  # a metric name collision: before training
    t0 = time.perf_counter()
    out = jax.block_until_ready(exe(*inputs))
    train_seconds = time.perf_counter() - t0

    metrics = jax.tree.map(lambda x: _fetch(x)[:n].reshape(grid.shape + x.shape[1:]), out)
    return SweepResult(
        grid=grid,
        metrics=metrics,
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
        history=history,
        devices=devices,
        divergence_factor=divergence_factor,
    )


def finite(tree) -> jax.Array:
    """True when every leaf of ``tree`` is free of NaN and inf (use per step in a train_fn)."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
