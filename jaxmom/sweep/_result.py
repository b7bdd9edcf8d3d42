"""The result of a sweep: metrics shaped like the grid, divergence marks, tables and exports.

Table columns: each hyperparameter (and the seed), each metric with no axis beyond the grid's
(under its name, a nested dict's keys joined by ``/``), the last value of each per-step metric (one
axis beyond the grid) as ``<name>_last``, and ``diverged`` / ``diverged_step``. A metric name that
gives the same column as a hyperparameter, ``diverged``, ``diverged_step`` or another metric is a
one-line error (raised by :func:`~jaxmom.sweep.sweep` after compiling, before training). A metric
with two or more axes beyond the grid (e.g. final weights) stays in ``metrics`` and is left out of
the table with a warning that names it.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmom.sweep._files import atomic_open, json_text, nan_if_null
from jaxmom.sweep._grid import SEED, Grid, positions

RESERVED = ("diverged", "diverged_step")
# Elements per block when divergence is computed: temporaries stay this size (or one cell's size
# when a cell alone is larger), never the size of a whole metric.
BLOCK = 1 << 20
# Where the raw metrics go when a result cannot be post-processed; None: the system's temporary
# folder (``tempfile.gettempdir()``).
RESCUE_DIR: str | os.PathLike | None = None


def _leaf_name(path) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(parts) or "metric"


def table_columns(grid: Grid, metrics, leading: int | None = None) -> tuple[dict, list]:
    """({table column: metric name}, [names of metrics too wide for the table]) for ``metrics``
    (arrays or ``jax.ShapeDtypeStruct`` leaves with ``leading`` grid dimensions in front, default the
    grid's), or a one-line ``ValueError`` naming both sides of a column name collision."""
    leading = len(grid.shape) if leading is None else leading
    taken = {c: "a grid column" for c in grid.coords()}
    taken.update({c: "a column the result adds" for c in RESERVED})
    columns, wide = {}, []
    for path, x in jax.tree_util.tree_leaves_with_path(metrics):
        name = _leaf_name(path)
        where = f"metric {jax.tree_util.keystr(path) or name}"
        extra = len(np.shape(x)) - leading
        if extra >= 2:
            col = None
            wide.append(name)
        else:
            col = name if extra <= 0 else f"{name}_last"
        for c in {name, col} - {None}:
            if c in taken and (c == col or taken[c].startswith("metric")):
                raise ValueError(f"{where} gives the column {c!r}, which is also {taken[c]}")
        taken[name] = where
        if col is not None:
            taken[col] = where
            columns[col] = name
    return columns, wide


def _divergence(flat: Mapping[str, np.ndarray], shape, history: str, factor: float | None):
    """(diverged, diverged_step) computed block by block: no temporary as large as a metric."""
    k = math.prod(shape)
    bad = np.zeros(k, bool)
    for x in flat.values():
        if np.issubdtype(x.dtype, np.inexact) and x.size:
            rows = x.reshape(k, -1)
            n = max(1, BLOCK // max(1, rows.shape[1]))
            for i in range(0, k, n):
                bad[i : i + n] |= ~np.isfinite(rows[i : i + n]).all(1)
    step = np.full(k, -1, np.int64)
    hist = flat.get(history)
    if hist is not None and hist.ndim > len(shape) and np.issubdtype(hist.dtype, np.inexact):
        steps = hist.shape[len(shape)]
        per_step = hist.reshape(k, steps, -1)  # (cells, steps, rest)
        n = max(1, BLOCK // max(1, per_step[0].size))
        for i in range(0, k, n):
            block = per_step[i : i + n]
            with np.errstate(invalid="ignore", over="ignore"):
                hit = ~np.isfinite(block).all(-1)
                if factor is not None:
                    first = block[:, :1, :]
                    hit |= ((first > 0) & (block > factor * first)).any(-1)
            step[i : i + n] = np.where(hit.any(-1), hit.argmax(-1), -1)
    return (bad | (step >= 0)).reshape(shape), step.reshape(shape)


def _rescue(grid: Grid, metrics) -> Path:
    """Save the raw metrics (keys: their pytree paths) and the grid's columns as an ``.npz``."""
    folder = Path(tempfile.gettempdir() if RESCUE_DIR is None else RESCUE_DIR)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"jaxmom-raw-metrics-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
    arrays = {
        f"metric:{jax.tree_util.keystr(p) or 'metric'}": np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(metrics)
    }
    arrays.update({f"grid:{k}": np.ascontiguousarray(v) for k, v in grid.coords().items()})
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)  # pyright: ignore[reportArgumentType]  (keys never "allow_pickle")
    return path


class SweepResult:
    """Metrics shaped like the grid, with divergence marks, timings and exports.

    Attributes:
      grid: the :class:`Grid`.
      metrics: ``train_fn``'s pytree, each leaf with ``grid.shape`` in front.
      diverged: bool array of ``grid.shape``: some metric of the cell holds NaN or inf, or its
        ``history`` metric diverged (see ``diverged_step``).
      diverged_step: int array of ``grid.shape``: the first step whose ``history`` metric is NaN
        or inf or exceeds ``divergence_factor`` times its first-step value; -1 where there is
        none (or where the cell has no such metric).
      compile_seconds: compile time of this call (0.0 when the cached program was reused).
      train_seconds: run time of the compiled program, compilation excluded.
      eval_seconds: run time of an evaluation that the caller ran apart from the grid's program
        (e.g. the MNIST study's test accuracy); 0.0 if none.
      devices: the devices the grid was sharded over.
      params: the final parameters, stacked with ``grid.shape`` in front, where the sweep returned
        them (:func:`jaxmom.sweep.fit` with ``return_params=True``); else None.
      info: what a search records beside the metrics, JSON-able (e.g. ``info["halving"]``).

    Every argument is a keyword (a positional one is a ``TypeError``): ``grid`` and ``metrics``
    are required; the others set the attributes of their names, by default the seconds 0.0,
    ``history="loss"``, no devices, ``divergence_factor=10.0``, ``info`` empty (a given one is
    copied) and ``params=None``. ``divergence``: the ``(diverged, diverged_step)`` marks when the caller
    computed them (e.g. successive halving, over the epochs each run trained), kept exactly; by
    default they are computed here from ``history`` and ``divergence_factor``.

    :meth:`take` keeps some cells of one grid axis and :meth:`concat` joins results end to end
    along one axis; both carry the divergence marks over exactly, never recomputing them.

    Divergence is computed block by block (no temporary as large as a metric). If the metrics
    cannot be post-processed (a name collision, ``MemoryError``), they are first saved raw to an
    ``.npz`` in :data:`RESCUE_DIR` (default: the system's temporary folder), and the error names
    that file.
    """

    params: Any = None

    def __init__(
        self,
        *,
        grid: Grid,
        metrics,
        compile_seconds: float = 0.0,
        train_seconds: float = 0.0,
        eval_seconds: float = 0.0,
        history: str = "loss",
        devices: Sequence = (),
        divergence_factor: float | None = 10.0,
        divergence: tuple[np.ndarray, np.ndarray] | None = None,
        info: Mapping | None = None,
        params: Any = None,
    ):
        if divergence is not None:
            divergence = (np.asarray(divergence[0]), np.asarray(divergence[1]))
            shapes = [m.shape for m in divergence]
            if any(shape != grid.shape for shape in shapes):
                raise ValueError(
                    f"divergence marks of shapes {shapes} do not fit the grid's shape {grid.shape}"
                )
        self.grid = grid
        self.devices = tuple(devices)
        self.metrics = metrics
        self.compile_seconds = compile_seconds
        self.train_seconds = train_seconds
        self.eval_seconds = eval_seconds
        self.divergence_factor = divergence_factor
        self.history = history
        self.info: dict = {} if info is None else dict(info)
        self.params = params
        self._setup(divergence)

    def _setup(self, marks) -> None:
        """Table columns and divergence marks (``marks``: stored ones, else computed); on any
        failure the raw metrics are saved first and the error names the file."""
        grid, metrics = self.grid, self.metrics
        try:
            self._columns, self._wide = table_columns(grid, metrics)
            self._flat = {
                _leaf_name(p): np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(metrics)
            }
            if marks is None:
                marks = _divergence(self._flat, grid.shape, self.history, self.divergence_factor)
            self.diverged, self.diverged_step = marks
        except Exception as e:  # MemoryError included: keep the trained metrics
            try:
                saved = f"the raw metrics are saved in {_rescue(grid, metrics)}"
            except Exception as again:
                saved = f"the raw metrics could not be saved either: {again}"
            message = f"{str(e) or type(e).__name__} ({saved})"
            try:
                error = type(e)(message)
            except Exception:
                error = RuntimeError(message)
            raise error from e
        self._warned = False

    def _table(self) -> dict[str, np.ndarray]:
        """The table's columns (see :meth:`rows`), each shaped like the grid."""
        if self._wide and not self._warned:
            self._warned = True
            warnings.warn(
                f"metrics {self._wide} have two or more axes beyond the grid's; they stay in "
                "result.metrics but not in the table",
                stacklevel=3,
            )
        cols = dict(self.grid.coords())
        for col, name in self._columns.items():
            x = self._flat[name]
            cols[col] = x if col == name else x[(Ellipsis, -1)]
        cols["diverged"] = self.diverged
        cols["diverged_step"] = self.diverged_step
        return cols

    def rows(self) -> list[dict]:
        """One dict per configuration: hyperparameters, seed, scalar metrics (per-step metrics
        contribute their last value as ``<name>_last``), ``diverged`` and ``diverged_step``.
        Metrics with two or more axes beyond the grid are left out, with a warning naming them."""
        cols = {k: np.reshape(v, -1) for k, v in self._table().items()}
        return [{k: v[i].item() for k, v in cols.items()} for i in range(self.grid.size)]

    def to_csv(self, path) -> None:
        """Write :meth:`rows` as a tidy CSV table, one configuration per line (atomically: a
        temporary file replaces ``path`` once complete; an ``OSError`` is a one-line
        :class:`~jaxmom.sweep._files.OutputError` and leaves an earlier ``path`` intact)."""
        rows = self.rows()
        with atomic_open(path, "w", newline="") as f:
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

    def metric_grid(self, metric: str) -> np.ndarray:
        """A table column (see :meth:`rows`) shaped like the grid, as floats."""
        cols = self._table()
        if metric not in cols:
            raise ValueError(f"unknown metric {metric!r}; table columns are {list(cols)}")
        return np.asarray(cols[metric], float)

    def seed_stats(self, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(mean, std, n) of ``metric`` over the seed axis, each cell of the grid without that
        axis: NaN where any seed of the cell diverged; ``std`` with ``ddof=0``; ``n`` the number
        of seeds. Without a seed axis: the values, zeros and 1."""
        vals = np.where(self.diverged, np.nan, self.metric_grid(metric))
        if SEED not in self.grid.names:
            return vals, np.zeros_like(vals), 1
        vals = np.moveaxis(vals, self.grid.names.index(SEED), -1)
        with np.errstate(invalid="ignore"):
            return vals.mean(-1), vals.std(-1), vals.shape[-1]

    def best(self, metric: str, mode: str = "min") -> dict:
        """The best configuration by ``metric``, diverged configurations excluded.

        Without a seed axis: the row (see :meth:`rows`) with the lowest (``mode="min"``) or
        highest (``"max"``) finite ``metric``. With a seed axis, cells are ranked by their mean
        over the seeds (never by single seeds), a cell where any seed diverged is excluded, and
        the answer is the cell's hyperparameters, each metric column averaged over the seeds,
        ``<metric>_std`` (over the seeds, ``ddof=0``) and ``n_seeds``.
        """
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        mean, std, n = self.seed_stats(metric)
        if not np.isfinite(mean).any():
            raise ValueError(f"no finite values of {metric!r}: every configuration diverged")
        pick = np.nanargmin(mean) if mode == "min" else np.nanargmax(mean)
        if SEED not in self.grid.names:
            return self.rows()[int(pick)]
        cell = np.unravel_index(pick, mean.shape)
        seed_axis = self.grid.names.index(SEED)
        out = {}
        for k, v in self._table().items():
            if k in RESERVED or k == SEED:
                continue
            x = np.moveaxis(np.asarray(v), seed_axis, -1)[cell]
            out[k] = x[0].item() if k in self.grid.params else x.mean().item()
        out[f"{metric}_std"] = float(std[cell])
        out["n_seeds"] = n
        return out

    def schedule(self, member) -> dict:
        """A population-based training member's lineage (a result of ``fit(...,
        search=PBT(...))``; ``member`` as its ``member`` metric numbers them, e.g.
        ``res.best(...)["member"]``): ``{"member", "members": the member whose run trained
        each epoch of its final state (epochs,), "hp": {name: the value each epoch trained
        with (epochs,)}, "cells": its grid indices, "seeds": theirs (None without a seed
        axis)}``. Replaying ``hp`` from ``init`` reproduces the member's params: see
        :mod:`jaxmom.sweep._pbt`."""
        from jaxmom.sweep._pbt import schedule

        return schedule(self, member)

    def heatmap(
        self,
        metric: str,
        x: str,
        y: str,
        path=None,
        *,
        title: str | None = None,
        label: str | None = None,
        best: str | None = None,
        log_color: bool | None = None,
        std: bool = False,
    ):
        """A heatmap of ``metric`` over the axes carrying ``x`` and ``y``, returned as a
        :class:`matplotlib.figure.Figure` (shown inline in a notebook) and saved as a PNG to
        ``path`` if given: see :func:`jaxmom.sweep.plot.heatmap`. Diverged cells are grey; other
        axes (seeds) are averaged, or with ``std=True`` their spread is shown."""
        from jaxmom.sweep import plot  # lazily: plot never imports this module at run time

        return plot.heatmap(
            self,
            metric,
            x,
            y,
            path,
            title=title,
            label=label,
            best=best,
            log_color=log_color,
            std=std,
        )

    def scatter(self, metric: str, x: str, y: str | None = None, path=None, **kwargs):
        """A scatter plot of ``metric`` against one or two hyperparameters, for sampled trials
        where a heatmap does not fit: see :func:`jaxmom.sweep.plot.scatter`."""
        from jaxmom.sweep import plot

        return plot.scatter(self, metric, x, y, path, **kwargs)

    # ---- subsets and joins ------------------------------------------------------------------

    def take(self, axis: str, indices, *, info: Mapping | None = None) -> SweepResult:
        """The result with only the cells ``indices`` of one grid axis, as ``numpy.take`` (or
        xarray's ``isel``) would give them: ``axis`` is an axis name or a hyperparameter it
        carries; ``indices`` are integers (negative ones count from the end; any order; repeats
        allowed) or a slice. The axis stays, even with a single index (``[3]``).

        The metrics, ``params`` and the divergence marks are indexed alike (the marks are carried
        over exactly, not recomputed); the timings, devices, ``history`` and
        ``divergence_factor`` are kept. ``info`` is the new result's (default: empty, since a
        run's info, such as halving's rungs or the epochs each cell resumed, describes the whole
        run and is not sliced). An unknown axis, an index out of range or an empty selection is a
        one-line ``ValueError``.
        """
        a = self.grid.axis_of(axis)
        idx = positions(indices, self.grid.axes[a])
        pick = lambda x: np.take(np.asarray(x), idx, axis=a)
        return type(self)(
            grid=self.grid.take(axis, idx),
            metrics=jax.tree.map(pick, self.metrics),
            compile_seconds=self.compile_seconds,
            train_seconds=self.train_seconds,
            eval_seconds=self.eval_seconds,
            history=self.history,
            devices=self.devices,
            divergence_factor=self.divergence_factor,
            divergence=(pick(self.diverged), pick(self.diverged_step)),
            info=info,
            params=None if self.params is None else jax.tree.map(pick, self.params),
        )

    @classmethod
    def concat(
        cls, results: Sequence[SweepResult], axis: str, *, info: Mapping | None = None
    ) -> SweepResult:
        """``results`` end to end along one grid axis (an axis name or a hyperparameter it
        carries), as ``pandas.concat`` or ``xarray.concat`` would join them: e.g. the batches of
        a search's trials as one result.

        The results need grids with the same axes and hyperparameters and the same values on
        every other axis (``Grid.concat``), the same metrics (pytree structure and shapes
        beyond the grid), the same ``history`` and ``divergence_factor``, and params in all or
        none of them; anything else is a one-line ``ValueError``. The metrics, ``params`` and
        divergence marks are joined in order (the marks exactly, not recomputed); the seconds are
        summed; the devices are those of any result, in order of first appearance. ``info`` is
        the new result's (default: empty; the parts' info describes each run and is not merged).
        """
        results = list(results)
        if not results:
            raise ValueError("concat needs at least one result")
        first = results[0]
        grid = Grid.concat([r.grid for r in results], axis)
        a, lead = first.grid.axis_of(axis), len(first.grid.shape)
        for r in results[1:]:
            for what in ("history", "divergence_factor"):
                if getattr(r, what) != getattr(first, what):
                    raise ValueError(
                        f"results to concatenate need the same {what}, got "
                        f"{getattr(first, what)!r} and {getattr(r, what)!r}"
                    )
        if len({r.params is None for r in results}) > 1:
            raise ValueError("results to concatenate need params in all of them or in none")

        def join(what: str, trees: list):
            named = [jax.tree_util.tree_leaves_with_path(t) for t in trees]
            for t, leaves in zip(trees[1:], named[1:]):
                if jax.tree.structure(t) != jax.tree.structure(trees[0]):
                    names = lambda ls: [_leaf_name(p) for p, _ in ls]
                    raise ValueError(
                        f"results to concatenate need the same {what}, got {names(named[0])} "
                        f"and {names(leaves)}"
                    )
            for k, (path, _) in enumerate(named[0]):
                beyond = list(dict.fromkeys(np.shape(ls[k][1])[lead:] for ls in named))
                if len(beyond) > 1:
                    raise ValueError(
                        f"results to concatenate need the same shape beyond the grid for "
                        f"{what} {_leaf_name(path)!r}, got {beyond[0]} and {beyond[1]}"
                    )
            cat = lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=a)
            return jax.tree.map(cat, *trees)

        metrics = join("metrics", [r.metrics for r in results])
        params = None if first.params is None else join("params", [r.params for r in results])
        marks = [np.concatenate([getattr(r, m) for r in results], axis=a) for m in RESERVED]
        return cls(
            grid=grid,
            metrics=metrics,
            compile_seconds=sum(r.compile_seconds for r in results),
            train_seconds=sum(r.train_seconds for r in results),
            eval_seconds=sum(r.eval_seconds for r in results),
            history=first.history,
            devices=tuple(dict.fromkeys(d for r in results for d in r.devices)),
            divergence_factor=first.divergence_factor,
            divergence=(marks[0], marks[1]),
            info=info,
            params=params,
        )

    # ---- files ------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the whole result to ``path``, atomically, in the format of :func:`load`."""
        _save(self, path)

    @classmethod
    def load(cls, path) -> SweepResult:
        """Read a result written by :meth:`save`; a file that is not one is a one-line
        ``ValueError`` naming it. See :func:`jaxmom.sweep._result.load` for the format."""
        return load(path, cls)


# ---- the file format ----------------------------------------------------------------------------

FORMAT, VERSION = "jaxmom.SweepResult", 1


def _encode(node, leaves: list) -> object:
    """The pytree's structure as JSON, its arrays appended to ``leaves``. Dicts (string keys),
    lists, tuples and None keep their type; another container (a NamedTuple, a dataclass) becomes
    a dict of its leaves by their path names."""
    if isinstance(node, dict) and all(isinstance(k, str) for k in node):
        return {"dict": [[k, _encode(v, leaves)] for k, v in node.items()]}
    if type(node) in (list, tuple):
        return {type(node).__name__: [_encode(v, leaves) for v in node]}
    if node is None:
        return None
    if isinstance(node, (np.ndarray, np.generic, jax.Array, float, int, bool)):
        leaves.append(np.asarray(node))
        return {"leaf": len(leaves) - 1}
    named = jax.tree_util.tree_leaves_with_path(node)
    return {"dict": [[_leaf_name(p), _encode(np.asarray(x), leaves)] for p, x in named]}


# A saved pytree nests at most this deep (deeper is refused in one line, never a RecursionError).
MAX_DEPTH = 100


def _decode(node, leaves: list, field: str = "metrics", depth: int = 0):
    """The pytree that :func:`_encode` wrote as ``node``, its leaves taken from ``leaves``; a node
    that :func:`_encode` never writes is a one-line ``ValueError`` naming ``result.json``'s
    ``field``."""

    def bad(why: str) -> ValueError:
        return ValueError(f"result.json field {field!r} {why}")

    if node is None:
        return None
    if depth > MAX_DEPTH:
        raise bad(f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or len(node) != 1:
        raise bad(f"holds {type(node).__name__} {str(node)[:60]}, not a pytree node")
    ((kind, value),) = node.items()
    if kind == "leaf":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(leaves):
            raise bad(f"names leaf {value!r}, not one of the file's {len(leaves)} arrays")
        return leaves[value]
    if kind == "dict":
        pairs = value if isinstance(value, list) else None
        if pairs is None or not all(
            isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in pairs
        ):
            raise bad("holds a dict that is not a list of [name, node] pairs")
        return {k: _decode(v, leaves, field, depth + 1) for k, v in pairs}
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, leaves, field, depth + 1) for v in value]
        return tuple(items) if kind == "tuple" else items
    raise bad(f"holds a node of kind {kind!r}, not leaf, dict, list or tuple")


def _save(res: SweepResult, path) -> None:
    import zipfile

    leaves: list = []
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "grid": [{"name": a.name, "columns": list(a.columns)} for a in res.grid.axes],
        "metrics": _encode(res.metrics, leaves),
        "history": res.history,
        "divergence_factor": res.divergence_factor,
        "compile_seconds": res.compile_seconds,
        "train_seconds": res.train_seconds,
        "eval_seconds": res.eval_seconds,
        "devices": [str(d) for d in res.devices],
        "info": res.info,
    }
    arrays = {f"metrics/{i}": x for i, x in enumerate(leaves)}
    if res.params is not None:
        params: list = []
        meta["params"] = _encode(res.params, params)
        arrays.update({f"params/{i}": x for i, x in enumerate(params)})
    for i, axis in enumerate(res.grid.axes):
        arrays.update({f"grid/{i}/{j}": c for j, c in enumerate(axis.columns.values())})
    arrays.update(diverged=res.diverged, diverged_step=res.diverged_step)
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as z:
        z.writestr("result.json", json_text(meta))  # strict: NaN and inf as null
        for name, x in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(x), allow_pickle=False)


# The archive's members may decompress to at most MAX_RATIO times their compressed size, plus
# SLACK bytes (save stores them uncompressed, ratio 1): a zip bomb is refused before it is read.
MAX_RATIO = 100
SLACK = 1 << 20


def _check_archive(z, size: int | None) -> None:
    """Refuse an archive whose members claim more bytes than it can hold (before reading any)."""
    members = z.infolist()
    packed = sum(m.compress_size for m in members)
    unpacked = sum(m.file_size for m in members)
    if size is not None and packed > size:
        raise ValueError(f"its members claim {packed} compressed bytes in a {size}-byte file")
    if unpacked > MAX_RATIO * packed + SLACK:
        raise ValueError(
            f"its members would decompress to {unpacked} bytes from {packed} (more than "
            f"{MAX_RATIO} times, a zip bomb)"
        )


def _read_array(z, name: str) -> np.ndarray:
    """The ``.npy`` member ``name``, its declared shape and dtype checked against the bytes it
    holds before anything is allocated."""
    import math

    info = z.getinfo(f"{name}.npy")  # KeyError: missing
    with z.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name}.npy has npy format version {version}, not 1.0 or 2.0")
        if dtype.hasobject:
            raise ValueError(f"{name}.npy holds Python objects")
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
    if any(d < 0 for d in shape) or declared != held:
        raise ValueError(
            f"{name}.npy declares shape {shape} of {dtype} ({declared} bytes) but holds {held}"
        )
    with z.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _check_meta(meta) -> None:
    """Refuse, naming the field, a ``result.json`` whose fields are not what :func:`_save` writes
    (the pytrees ``metrics`` and ``params`` are checked as they are decoded)."""
    if not isinstance(meta, dict):
        raise ValueError(f"result.json holds a {type(meta).__name__}, not a JSON object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = f"{str(meta.get('format'))[:60]} version {str(meta.get('version'))[:20]}"
        raise ValueError(f"holds {found}, not {FORMAT} version {VERSION}")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    strings = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
    axis = lambda a: (
        isinstance(a, dict) and isinstance(a.get("name"), str) and strings(a.get("columns"))
    )
    checks = {
        "grid": (lambda v: isinstance(v, list) and v and all(map(axis, v)), "a list of axes"),
        "history": (lambda v: isinstance(v, str), "a string"),
        "divergence_factor": (lambda v: v is None or number(v), "a number or null"),
        "compile_seconds": (lambda v: v is None or number(v), "a number or null"),
        "train_seconds": (lambda v: v is None or number(v), "a number or null"),
        "eval_seconds": (lambda v: v is None or number(v), "a number or null"),
        "devices": (strings, "a list of strings"),
    }
    for field, (ok, what) in checks.items():
        if field not in meta:
            raise ValueError(f"result.json field {field!r} is missing")
        if not ok(meta[field]):
            raise ValueError(f"result.json field {field!r} is not {what}")
    if "metrics" not in meta:
        raise ValueError("result.json field 'metrics' is missing")
    if not isinstance(meta.get("info", {}), dict):
        raise ValueError("result.json field 'info' is not an object")


def _check_grid(grid: Grid) -> None:
    for i, a in enumerate(grid.axes):
        cols = list(a.columns.values())
        if any(c.ndim != 1 or c.dtype.kind not in "biuf" for c in cols):
            raise ValueError(f"grid axis {i} ({a.name!r}) holds a column that is not 1-D numbers")
        if len({len(c) for c in cols}) != 1 or not len(cols[0]):
            raise ValueError(f"grid axis {i} ({a.name!r}) has columns of unequal or no length")


def load(path, cls=SweepResult) -> SweepResult:
    """Read a :class:`SweepResult` written by :meth:`SweepResult.save`.

    The file is a zip archive that ``numpy.load`` also reads as an ``.npz`` (no pickle
    anywhere): ``result.json`` holds the format name and version, the grid's axes (names and
    hyperparameter names), the metrics' pytree structure (dicts, lists, tuples; leaves by number),
    ``history``, ``divergence_factor``, the timings, the devices (as strings), ``info`` and, where
    there are params, their structure; the arrays are ``metrics/<n>.npy``, ``params/<n>.npy``,
    ``grid/<axis>/<column>.npy`` (exact values and dtypes), ``diverged.npy`` and
    ``diverged_step.npy``. ``result.json`` is strict JSON: a number written as ``null`` (NaN or
    inf) reads as NaN where a number is meant (the timings), as None in ``info``.

    Anything else is refused with a one-line ``ValueError`` naming the file (and the field or
    member) before anything is allocated: a ``result.json`` that is not the object ``save`` writes
    (a field missing or of another type, a pytree nested deeper than :data:`MAX_DEPTH`), an
    ``.npy`` member whose declared shape and dtype do not match the bytes it holds, and an archive
    whose members would decompress to more than :data:`MAX_RATIO` times their compressed size
    (plus :data:`SLACK` bytes).
    """
    import json
    import zipfile

    from jaxmom.sweep._grid import Axis

    try:
        size = os.path.getsize(path) if isinstance(path, (str, os.PathLike)) else None
        with zipfile.ZipFile(path) as z:
            _check_archive(z, size)
            try:
                meta = json.loads(z.read("result.json"))
            except RecursionError:
                raise ValueError("result.json nests too deeply") from None
            _check_meta(meta)
            read = lambda name: _read_array(z, name)
            axes = [
                Axis(a["name"], {c: read(f"grid/{i}/{j}") for j, c in enumerate(a["columns"])})
                for i, a in enumerate(meta["grid"])
            ]
            grid = Grid(axes)
            _check_grid(grid)
            names = set(z.namelist())

            def count(prefix: str) -> int:  # members <prefix>0.npy, <prefix>1.npy, ...
                n = 0
                while f"{prefix}{n}.npy" in names:
                    n += 1
                return n

            metrics = _decode(
                meta["metrics"], [read(f"metrics/{i}") for i in range(count("metrics/"))]
            )
            params = None
            if meta.get("params") is not None:
                leaves = [read(f"params/{i}") for i in range(count("params/"))]
                params = _decode(meta["params"], leaves, "params")
            marks = read("diverged"), read("diverged_step")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, IndexError, EOFError) as e:
        why = (str(e).strip("'\"") or type(e).__name__).replace("\n", " ")[:300]
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: {why}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: nested too deeply") from None
    shapes = [np.shape(x) for x in jax.tree.leaves(metrics)] + [m.shape for m in marks]
    if any(s[: len(grid.shape)] != grid.shape for s in shapes) or marks[0].dtype != bool:
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: arrays do not fit its grid")
    if (
        marks[1].dtype.kind not in "iu"
        or marks[0].shape != grid.shape
        or marks[1].shape != grid.shape
    ):
        raise ValueError(f"{path} is not a saved jaxmom SweepResult: its divergence marks are bad")
    res = cls.__new__(cls)
    res.grid, res.metrics, res.devices = grid, metrics, tuple(meta["devices"])
    seconds = [nan_if_null(meta[f"{k}_seconds"]) for k in ("compile", "train", "eval")]
    res.compile_seconds, res.train_seconds, res.eval_seconds = seconds  # null: NaN, as written
    res.history = meta["history"]
    res.divergence_factor = meta["divergence_factor"]
    res.info, res.params = meta.get("info", {}), params
    res._setup(marks)
    return res
