"""Hyperparameter sweeps: a whole grid trained in one compiled program.

jaxmom's hyperparameters are traced values, so a training run is a pure function
``train_fn(hparams, key, *args) -> metrics`` of a dict of scalars. A grid of ``K`` configurations
is then one program: ``vmap(train_fn)`` over ``K`` stacked hyperparameter values, compiled once and
reused for any other values of the same grid shape. Because ``vmap`` gives each configuration its
own independent lane, a configuration that blows up (NaN or inf) cannot touch any other one.

    grid = sweep.product(lr=[3e-3, 1e-2, 3e-2, 1e-1], momentum=[0, 0.5, 0.9, 0.99]).with_seeds(2)
    res = sweep.sweep(train_fn, grid, args=(data,))  # one compile, K = 4*4*2 runs
    res.metrics["loss"].shape                        # (4, 4, 2, steps): shaped like the grid
    res.best("final_loss"); res.to_csv("grid.csv"); res.heatmap("final_loss", "lr", "momentum", "h.png")

``args`` (e.g. the training data) are shared by all cells, not batched: a first layer applied to a
shared input batch then lowers to one wide matmul against all ``K`` weight matrices.

Layout of the compiled program, for ``K`` cells on ``D`` devices with ``chunk_size=C``:
the grid is flattened in C order, padded (by repeating its last cell) to ``D * ceil(K / D / C) * C``
cells, and sharded along its only axis over a one-axis ``Mesh`` of all devices (``NamedSharding``,
``shard_map``); each device runs ``lax.map`` over its chunks of ``C`` cells and ``vmap`` inside a
chunk, so at most ``C`` configurations per device are live at once. After
``jax.distributed.initialize(...)`` in every process, ``jax.devices()`` and so the mesh span all
processes' devices, and every process receives the whole gathered grid.

A cell's PRNG key is ``jax.random.key(seed)``, its seed taken from the grid's ``seed`` axis (or
the ``seed`` argument), so a cell reproduces ``train_fn(hparams, jax.random.key(seed), *args)``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEED = "seed"


# --------------------------------------------------------------------------------------------
# Grid specification
# --------------------------------------------------------------------------------------------


def _column(name: str, values: Any) -> np.ndarray:
    """Values of one hyperparameter as a 1-D float64, int32 or bool array (floats are fed to
    ``train_fn`` as float32 but kept exact here for tables and labels)."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"hyperparameter {name!r} needs a non-empty 1-D list of values")
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int32)
    if arr.dtype.kind == "b":
        return arr
    raise ValueError(f"hyperparameter {name!r} has non-numeric values {list(arr)[:3]}")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis of a grid: one or more hyperparameters (zipped) with equal-length value lists."""

    name: str
    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


class Grid:
    """The outer product of its axes; each axis carries one hyperparameter or several zipped ones.

    Build grids with :func:`product` and :func:`zipped`, combine them with ``*`` (outer product),
    and add a seed axis with :meth:`with_seeds`.
    """

    def __init__(self, axes: Sequence[Axis]):
        axes = tuple(axes)
        if not axes:
            raise ValueError("a grid needs at least one axis")
        names = [a.name for a in axes]
        params = [p for a in axes for p in a.columns]
        for kind, seen in (("axis", names), ("hyperparameter", params)):
            dup = sorted({n for n in seen if seen.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} name(s) {dup} in grid")
        self.axes = axes

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def names(self) -> tuple[str, ...]:
        """Axis names, in the order of the result's leading dimensions."""
        return tuple(a.name for a in self.axes)

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the hyperparameters handed to ``train_fn`` (the seed excluded)."""
        return tuple(p for a in self.axes for p in a.columns if p != SEED)

    def __mul__(self, other: Grid) -> Grid:
        if not isinstance(other, Grid):
            return NotImplemented
        return Grid(self.axes + other.axes)

    def with_seeds(self, seeds: int | Sequence[int]) -> Grid:
        """Add an axis named ``"seed"``: ``n`` means seeds ``0..n-1``; a list gives them."""
        seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        col = np.asarray(seeds)
        if col.size == 0 or col.dtype.kind not in "iu":
            raise ValueError(f"seeds must be a positive count or a list of integers, got {seeds!r}")
        return Grid(self.axes + (Axis(SEED, {SEED: col.astype(np.int32)}),))

    def coords(self) -> dict[str, np.ndarray]:
        """Every hyperparameter (and the seed) broadcast to the grid's shape."""
        out = {}
        for i, axis in enumerate(self.axes):
            shape = [1] * len(self.axes)
            shape[i] = len(axis)
            for p, col in axis.columns.items():
                out[p] = np.broadcast_to(col.reshape(shape), self.shape)
        return out

    def axis_of(self, name: str) -> int:
        """Index of the axis that is ``name`` or carries the hyperparameter ``name``."""
        for i, axis in enumerate(self.axes):
            if name == axis.name or name in axis.columns:
                return i
        raise ValueError(f"{name!r} is not an axis or hyperparameter of this grid {self.names}")

    def __repr__(self) -> str:
        parts = [f"{a.name}={len(a)}" for a in self.axes]
        return f"Grid({', '.join(parts)}; {self.size} configurations)"


def product(**values: Sequence[float]) -> Grid:
    """Full product grid, one axis per hyperparameter: ``product(lr=[...], momentum=[...])``."""
    if not values:
        raise ValueError("product() needs at least one hyperparameter")
    return Grid([Axis(k, {k: _column(k, v)}) for k, v in values.items()])


def zipped(axis: str | None = None, **values: Sequence[float]) -> Grid:
    """One axis whose i-th cell takes the i-th value of every list: ``zipped(lr=[..], wd=[..])``.

    The axis is named ``axis`` or, by default, the hyperparameter names joined by ``+``.
    """
    if not values:
        raise ValueError("zipped() needs at least one hyperparameter")
    cols = {k: _column(k, v) for k, v in values.items()}
    lengths = {k: len(c) for k, c in cols.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped hyperparameters need equal lengths, got {lengths}")
    return Grid([Axis(axis or "+".join(cols), cols)])


# --------------------------------------------------------------------------------------------
# The compiled program
# --------------------------------------------------------------------------------------------

_COMPILED: dict = {}


def _program(train_fn: Callable, mesh: Mesh, chunk: int, seeded: bool) -> Callable:
    """``f(hparams, seeds, args)`` over flat cells sharded on the mesh's axis: each device runs
    ``lax.map`` over chunks of ``chunk`` cells, ``vmap`` inside. Without a seed axis ``seeds`` is one
    replicated scalar, so the key (and anything derived from it, such as a shuffled batch order) is
    shared by all cells rather than batched, and ``args`` is always shared."""

    def one(hparams, seed, args):
        return train_fn(hparams, jax.random.key(seed), *args)

    batched = jax.vmap(one, in_axes=(0, 0 if seeded else None, None))

    def local(hparams, seeds, args):
        m = next(iter(jax.tree.leaves(hparams)), seeds).shape[0]
        if m == chunk:
            return batched(hparams, seeds, args)
        split = lambda a: a.reshape(m // chunk, chunk, *a.shape[1:])
        cells = jax.tree.map(split, (hparams, seeds) if seeded else hparams)
        run = (lambda c: batched(*c, args)) if seeded else (lambda c: batched(c, seeds, args))
        out = jax.lax.map(run, cells)
        return jax.tree.map(lambda a: a.reshape(m, *a.shape[2:]), out)

    cell = P(mesh.axis_names[0])
    specs = (cell, cell if seeded else P(), P())
    # check_vma=False: train_fn needs no pcast where a shared key meets per-cell values.
    program = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=cell, check_vma=False)
    return jax.jit(program)


def _signature(tree) -> tuple:
    return tuple(
        (str(k), v.shape, str(v.dtype)) for k, v in jax.tree_util.tree_leaves_with_path(tree)
    )


def _compile(train_fn, mesh, chunk, seeded, inputs):
    """Compile once per (train_fn, devices, chunk, input shapes and dtypes); return (exe, seconds).

    Hyperparameter *values* are not part of the key: a new grid of the same shape reuses the program.
    """
    key = (train_fn, tuple(mesh.devices.flat), chunk, seeded, _signature(inputs))
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    t0 = time.perf_counter()
    _COMPILED[key] = _program(train_fn, mesh, chunk, seeded).lower(*inputs).compile()
    return _COMPILED[key], time.perf_counter() - t0


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
    devices: Sequence[jax.Device] | None = None,
    seed: int = 0,
    history: str = "loss",
) -> SweepResult:
    """Train every configuration of ``grid`` in one compiled program.

    Args:
      train_fn: ``train_fn(hparams, key, *args) -> metrics``; ``hparams`` maps each hyperparameter
        name of the grid to a traced scalar, ``key`` is ``jax.random.key(seed)``, ``metrics`` is a
        pytree of arrays. It must be jittable and vmappable. Keep the same function object between
        calls: the compiled program is cached on it.
      grid: from :func:`product`, :func:`zipped`, their ``*`` product and ``with_seeds``.
      args: arrays shared by every configuration (e.g. the training data), passed to ``train_fn``
        after the key, unbatched: a first-layer matmul of shared inputs against ``K`` stacked
        weight matrices then lowers to one wide matmul.
      chunk_size: at most this many configurations are live per device at once (``lax.map``
        over chunks, ``vmap`` inside). ``None`` runs each device's whole share in one ``vmap``.
      devices: devices to shard the grid over; default ``jax.devices()``, which after
        ``jax.distributed.initialize`` spans every process.
      seed: the PRNG seed of every cell when the grid has no ``seed`` axis; the key is then shared
        (not batched), so all cells see the same initialisation and batch order.
      history: name of a per-step metric (first per-cell axis = step) used to locate the step
        at which a diverged configuration first produced NaN or inf.

    Returns:
      A :class:`SweepResult`; its arrays have the grid's shape in front.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a jaxmom.sweep.Grid, got {type(grid).__name__}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")

    n, ndev = grid.size, len(devices)
    per_device = -(-n // ndev)
    chunk = per_device if chunk_size is None else min(chunk_size, per_device)
    per_device = -(-per_device // chunk) * chunk
    pad = np.minimum(np.arange(per_device * ndev), n - 1)  # repeat the last cell: no new values

    coords = {k: v.reshape(-1)[pad] for k, v in grid.coords().items()}
    coords = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in coords.items()}
    seeded = SEED in coords
    mesh = Mesh(np.array(devices), ("grid",))
    cells, shared = NamedSharding(mesh, P("grid")), NamedSharding(mesh, P())
    seeds = _put(coords.pop(SEED), cells) if seeded else _put(np.int32(seed), shared)
    hparams = {k: _put(v, cells) for k, v in coords.items()}
    inputs = (hparams, seeds, jax.tree.map(lambda a: _put(a, shared), tuple(args)))

    exe, compile_seconds = _compile(train_fn, mesh, chunk, seeded, inputs)
    t0 = time.perf_counter()
    out = jax.block_until_ready(exe(*inputs))
    train_seconds = time.perf_counter() - t0

    metrics = jax.tree.map(lambda x: _fetch(x)[:n].reshape(grid.shape + x.shape[1:]), out)
    return SweepResult(grid, metrics, compile_seconds, train_seconds, history, devices)


def finite(tree) -> jax.Array:
    """True when every leaf of ``tree`` is free of NaN and inf (use per step in a train_fn)."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _leaf_name(path) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(parts) or "metric"


class SweepResult:
    """Metrics shaped like the grid, with divergence marks, timings and exports.

    Attributes:
      grid: the :class:`Grid`.
      metrics: ``train_fn``'s pytree, each leaf with ``grid.shape`` in front.
      diverged: bool array of ``grid.shape``: some metric of the cell holds NaN or inf.
      diverged_step: int array of ``grid.shape``: first step whose ``history`` metric is NaN or
        inf, -1 where none is (or where the cell has no such metric).
      compile_seconds: compile time of this call (0.0 when the cached program was reused).
      train_seconds: run time of the compiled program, compilation excluded.
      devices: the devices the grid was sharded over.
    """

    def __init__(self, grid, metrics, compile_seconds, train_seconds, history="loss", devices=()):
        self.grid = grid
        self.devices = tuple(devices)
        self.metrics = metrics
        self.compile_seconds = compile_seconds
        self.train_seconds = train_seconds
        nd = len(grid.shape)
        self._flat = {
            _leaf_name(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(metrics)
        }
        bad = np.zeros(grid.shape, bool)
        for x in self._flat.values():
            if np.issubdtype(x.dtype, np.inexact):
                bad |= ~np.isfinite(x).reshape(grid.shape + (-1,)).all(-1)
        self.diverged = bad
        step = np.full(grid.shape, -1)
        hist = self._flat.get(history)
        if hist is not None and hist.ndim > nd and np.issubdtype(hist.dtype, np.inexact):
            steps = ~np.isfinite(hist).reshape(hist.shape[: nd + 1] + (-1,)).all(-1)
            step = np.where(steps.any(-1), steps.argmax(-1), -1)
        self.diverged_step = step

    def rows(self) -> list[dict]:
        """One dict per configuration: hyperparameters, seed, scalar metrics (per-step metrics
        contribute their last value as ``<name>_last``), ``diverged`` and ``diverged_step``."""
        shape, nd = self.grid.shape, len(self.grid.shape)
        cols = {k: v.reshape(-1) for k, v in self.grid.coords().items()}
        for name, x in self._flat.items():
            if x.ndim == nd:
                cols[name] = x.reshape(-1)
            elif x.ndim == nd + 1:
                cols[f"{name}_last"] = x[..., -1].reshape(-1)
        cols["diverged"] = self.diverged.reshape(-1)
        cols["diverged_step"] = self.diverged_step.reshape(-1)
        return [{k: v[i].item() for k, v in cols.items()} for i in range(math.prod(shape))]

    def to_csv(self, path) -> None:
        """Write :meth:`rows` as a tidy CSV table, one configuration per line."""
        rows = self.rows()
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    def to_dataframe(self):
        """:meth:`rows` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("to_dataframe needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows())

    def table(self, columns: Sequence[str] | None = None) -> str:
        """The rows as an aligned plain-text table."""
        rows = self.rows()
        columns = list(columns or rows[0])
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
        cells = [columns] + [[fmt(r[c]) for c in columns] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        return "\n".join("  ".join(s.rjust(w) for s, w in zip(row, widths)) for row in cells)

    def best(self, metric: str, mode: str = "min") -> dict:
        """The row with the lowest (``mode="min"``) or highest (``"max"``) finite ``metric``,
        diverged configurations excluded."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        rows = [r for r in self.rows() if not r["diverged"]]
        if not rows or metric not in rows[0]:
            known = list(self.rows()[0])
            raise ValueError(f"no finite values of {metric!r}; table columns are {known}")
        sign = 1 if mode == "min" else -1
        return min(rows, key=lambda r: sign * r[metric])

    def metric_grid(self, metric: str) -> np.ndarray:
        """A table column (see :meth:`rows`) shaped like the grid."""
        rows = self.rows()
        if metric not in rows[0]:
            raise ValueError(f"unknown metric {metric!r}; table columns are {list(rows[0])}")
        return np.array([r[metric] for r in rows], float).reshape(self.grid.shape)

    def heatmap(
        self,
        metric: str,
        x: str,
        y: str,
        path,
        *,
        title: str | None = None,
        label: str | None = None,
        best: str | None = None,
        log_color: bool | None = None,
    ) -> None:
        """Save a PNG heatmap of ``metric`` over the axes carrying ``x`` and ``y``.

        Other axes (e.g. seeds) are averaged; a cell where any averaged run diverged is shown
        grey and labelled "div". An axis whose values are all positive and span at least a
        decade is drawn on a log scale. The colour scale is logarithmic when ``log_color`` is
        True or, by default, when the metric's values are positive and span a factor of 5 or
        more (losses; pass False for bounded metrics such as accuracy). ``best="min"`` or
        ``"max"`` outlines the best cell in red.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
        from matplotlib.patches import Rectangle
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ix, iy = self.grid.axis_of(x), self.grid.axis_of(y)
        if ix == iy:
            raise ValueError(f"{x!r} and {y!r} lie on the same grid axis; pick two axes")
        vals = self.metric_grid(metric)
        vals = np.where(self.diverged, np.nan, vals)
        others = tuple(i for i in range(vals.ndim) if i not in (ix, iy))
        z = _two_axes(vals, iy, ix)
        xv = self.grid.axes[ix].columns.get(x, next(iter(self.grid.axes[ix].columns.values())))
        yv = self.grid.axes[iy].columns.get(y, next(iter(self.grid.axes[iy].columns.values())))

        fig, ax = plt.subplots(figsize=(1.2 * len(xv) + 2.5, 0.9 * len(yv) + 1.8))
        fin = z[np.isfinite(z)]
        if log_color is None:
            log_color = bool(fin.size) and fin.min() > 0 and fin.max() >= 5 * fin.min()
        norm = LogNorm() if log_color else None
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.75")
        xe, xlog = _edges(xv)
        ye, ylog = _edges(yv)
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), cmap=cmap, norm=norm)
        bar = fig.colorbar(mesh, ax=ax, label=label or metric)
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        bar.ax.yaxis.set_major_formatter(plain)
        bar.ax.yaxis.set_minor_formatter(plain if log_color else NullFormatter())
        xc, yc = _centres(xe, xlog), _centres(ye, ylog)
        for (i, j), v in np.ndenumerate(z):
            dark = np.isfinite(v) and mesh.norm(v) < 0.6  # viridis is dark at its low end
            ax.text(
                xc[j],
                yc[i],
                f"{v:.3g}" if np.isfinite(v) else "div",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
        if best is not None and fin.size:
            i, j = np.unravel_index((np.nanargmin if best == "min" else np.nanargmax)(z), z.shape)
            ax.add_patch(
                Rectangle(
                    (xe[j], ye[i]),
                    xe[j + 1] - xe[j],
                    ye[i + 1] - ye[i],
                    fill=False,
                    edgecolor="red",
                    linewidth=2.5,
                )
            )
        ax.set_xscale("log" if xlog else "linear")
        ax.set_yscale("log" if ylog else "linear")
        ax.set_xticks(xc, [f"{v:g}" for v in xv])
        ax.set_yticks(yc, [f"{v:g}" for v in yv])
        ax.minorticks_off()
        ax.set_xlabel(x + (" (log)" if xlog else ""))
        ax.set_ylabel(y + (" (log)" if ylog else ""))
        reduced = [self.grid.names[i] for i in others]
        ax.set_title(title or metric + (f", mean over {', '.join(reduced)}" if reduced else ""))
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _two_axes(vals: np.ndarray, iy: int, ix: int) -> np.ndarray:
    """Average all but axes ``iy`` and ``ix``; return shape (len y, len x)."""
    z = np.moveaxis(vals, (iy, ix), (0, 1))
    return z.reshape(z.shape[0], z.shape[1], -1).mean(-1)


def _edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cell edges for ``pcolormesh``: geometric on a log axis, else evenly spaced categories."""
    v = np.asarray(values, float)
    log = len(v) > 1 and v.min() > 0 and v.max() >= 10 * v.min() and np.all(np.diff(v) > 0)
    if not log:
        return np.arange(len(v) + 1) - 0.5, False
    lv = np.log10(v)
    mid = (lv[1:] + lv[:-1]) / 2
    return 10 ** np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]), True


def _centres(edges: np.ndarray, log: bool) -> np.ndarray:
    return np.sqrt(edges[1:] * edges[:-1]) if log else (edges[1:] + edges[:-1]) / 2


# --------------------------------------------------------------------------------------------
# The MNIST study as a sweep (``experiments/mnist.py --sweep``)
# --------------------------------------------------------------------------------------------


def run_mnist_sweep(config, data, grid: Grid, *, chunk_size: int | None = None) -> SweepResult:
    """Train :mod:`jaxmom.mnist`'s study, one run per cell of ``grid``, in one compiled program.

    ``config`` is a :class:`jaxmom.mnist.Config` (optimizer, epochs, batch size, seed, and the
    hyperparameters that stay fixed); ``grid``'s hyperparameter names are the optimizer's (e.g.
    ``learning_rate``, ``momentum``); ``data`` is a :class:`jaxmom.datasets.Dataset`. Without a
    seed axis every cell starts from the same weights and sees the same batches, as in the study.
    Metrics per cell: ``epoch_train_loss``, ``step_loss``, ``test_accuracy``.
    """
    from jaxmom import mnist

    names = mnist.OPTIMIZERS[config.optimizer][1]
    unknown = [p for p in grid.params if p not in names]
    if unknown:
        raise ValueError(f"{config.optimizer} has no hyperparameter {', '.join(unknown)}")
    mnist.check_config(config)
    fixed = mnist.as_hparams(
        {k: v for k, v in config.full_hparams().items() if k not in grid.params}
    )
    base = mnist.make_train_fn(config)

    def train_fn(hparams, key, arrays):
        return base({**fixed, **hparams}, key, arrays)

    arrays = tuple(np.asarray(x) for x in data[:4])
    return sweep(
        train_fn, grid, args=(arrays,), chunk_size=chunk_size, seed=config.seed, history="step_loss"
    )


def _split_grid_flags(argv: list[str], flags: Mapping[str, str]) -> tuple[list[str], dict]:
    """Pull comma lists (``--lr 0.01,0.1`` or ``--lr=0.01,0.1``) of the hyperparameter ``flags``
    (flag -> hyperparameter name) out of ``argv``; each is replaced by its first value, so the
    script's own parser still checks it. Returns (argv, {hyperparameter: [values]})."""
    out, grid, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        flag, _, value = arg.partition("=")
        if flag in flags and (value or i + 1 < len(argv)):
            value = value or argv[i + 1]
            i += 1 if "=" in arg else 2
            if "," in value:
                try:
                    grid[flags[flag]] = [float(v) for v in value.split(",") if v.strip()]
                except ValueError:
                    raise ValueError(
                        f"{flag}: expected numbers separated by commas, got {value!r}"
                    ) from None
                value = value.split(",")[0]
            out += [flag, value]
        else:
            out.append(arg)
            i += 1
    return out, grid


def mnist_cli(argv: Sequence[str], script) -> int:
    """``experiments/mnist.py --sweep``: every comma-listed hyperparameter flag becomes a grid
    axis (``--lr 0.003,0.01,0.03,0.1 --momentum 0,0.5,0.9,0.99``); the full product trains in one
    compiled program. ``script`` is the mnist.py module, whose parser, flag table and data loader
    are reused. Prints a table; writes ``sweep.csv``, ``results.json`` and one heatmap per pair of
    axes and metric into ``--out``."""
    flags = {f"--{f.replace('_', '-')}": hp for f, (hp, _) in script.HPARAM_FLAGS.items()}
    try:
        argv, values = _split_grid_flags(list(argv), flags)
    except ValueError as e:
        sys.exit(f"mnist.py: error: {e}")
    if not any(a == "--optimizer" or a.startswith("--optimizer=") for a in argv):
        argv += ["--optimizer", "sgd"]
    p, args = script.parse_args(argv)
    configs = script.run_configs(p, args)
    if len(configs) != 1:
        p.error("--sweep trains one --optimizer at a time")
    if args.checkpoint_dir:
        p.error("--checkpoint-dir does not apply to --sweep (the grid is one compiled program)")
    if not values:
        p.error(
            "--sweep needs at least one hyperparameter flag with a comma list, e.g. --lr 0.01,0.1"
        )
    config = configs[0]
    try:
        grid = product(**values)
        from jaxmom import mnist

        mnist.check_config(config)
        for name, vals in values.items():  # every grid value must be valid on its own
            for v in vals:
                mnist.check_config(dataclasses.replace(config, hparams={**config.hparams, name: v}))
        data = script.load_data(args)
    except ValueError as e:
        p.exit(1, f"{p.prog}: error: {e}\n")
    out = args.out or Path("runs") / time.strftime("sweep-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)

    print(f"sweep: {config.optimizer}, {grid!r}, {config.epochs} epochs each, one compiled program")
    res = run_mnist_sweep(config, data, grid)
    print(
        f"compile {res.compile_seconds:.2f} s, train {res.train_seconds:.2f} s "
        f"for {grid.size} configurations"
    )
    cols = [*grid.params, "epoch_train_loss_last", "test_accuracy", "diverged"]
    print(res.table(cols))
    best = res.best("test_accuracy", "max")
    print(
        "best: "
        + ", ".join(f"{k}={best[k]:g}" for k in grid.params)
        + f": test accuracy {100 * best['test_accuracy']:.2f}%"
    )

    res.to_csv(out / "sweep.csv")
    rows = res.rows()
    loss = res.metrics["epoch_train_loss"].reshape(grid.size, -1)
    for r, curve in zip(rows, loss):
        r["epoch_train_loss"] = curve.tolist()
    record = {
        "optimizer": config.optimizer,
        "fixed_hyperparameters": config.full_hparams(),
        "grid": {k: list(v) for k, v in values.items()},
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "data_source": data.source,
        "train_seconds": res.train_seconds,
        "compile_seconds": res.compile_seconds,
        "best": best,
        "configurations": rows,
    }
    for r in record["configurations"]:
        r.pop("epoch_train_loss_last", None)
        r["final_train_loss"] = r["epoch_train_loss"][-1]
    (out / "results.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    written = [out / "sweep.csv", out / "results.json"]
    names = list(values)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            for metric, stem, label in (
                ("epoch_train_loss_last", "train_loss", "final epoch's mean training loss"),
                ("test_accuracy", "test_accuracy", "test accuracy"),
            ):
                path = out / f"heatmap_{stem}_{x}_{y}.png"
                title = f"{config.optimizer}, {config.epochs} epochs: {label}"
                res.heatmap(
                    metric,
                    x,
                    y,
                    path,
                    title=title + " (best in red)",
                    label=label,
                    best="max" if metric == "test_accuracy" else "min",
                    log_color=metric != "test_accuracy",
                )
                written.append(path)
    print("\n".join(f"wrote {w}" for w in written))
    return 0
