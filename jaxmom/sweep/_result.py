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
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxmom.sweep._files import atomic_open
from jaxmom.sweep._grid import Grid

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
    path = folder / f"jaxmom-raw-metrics-{stamp}-{os.getpid()}.npz"
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

    Divergence is computed block by block (no temporary as large as a metric). If the metrics
    cannot be post-processed (a name collision, ``MemoryError``), they are first saved raw to an
    ``.npz`` in :data:`RESCUE_DIR` (default: the system's temporary folder), and the error names
    that file.
    """

    def __init__(
        self,
        grid: Grid,
        metrics,
        compile_seconds: float,
        train_seconds: float,
        history: str = "loss",
        devices: Sequence = (),
        divergence_factor: float | None = 10.0,
        eval_seconds: float = 0.0,
    ):
        self.grid = grid
        self.devices = tuple(devices)
        self.metrics = metrics
        self.compile_seconds = compile_seconds
        self.train_seconds = train_seconds
        self.eval_seconds = eval_seconds
        self.divergence_factor = divergence_factor
        self.history = history
        try:
            self._columns, self._wide = table_columns(grid, metrics)
            self._flat = {
                _leaf_name(p): np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(metrics)
            }
            self.diverged, self.diverged_step = _divergence(
                self._flat, grid.shape, history, divergence_factor
            )
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

    def rows(self) -> list[dict]:
        """One dict per configuration: hyperparameters, seed, scalar metrics (per-step metrics
        contribute their last value as ``<name>_last``), ``diverged`` and ``diverged_step``.
        Metrics with two or more axes beyond the grid are left out, with a warning naming them."""
        if self._wide and not self._warned:
            self._warned = True
            warnings.warn(
                f"metrics {self._wide} have two or more axes beyond the grid's; they stay in "
                "result.metrics but not in the table",
                stacklevel=2,
            )
        shape = self.grid.shape
        cols = {k: v.reshape(-1) for k, v in self.grid.coords().items()}
        for col, name in self._columns.items():
            x = self._flat[name]
            cols[col] = (x if col == name else x[(Ellipsis, -1)]).reshape(-1)
        cols["diverged"] = self.diverged.reshape(-1)
        cols["diverged_step"] = self.diverged_step.reshape(-1)
        return [{k: v[i].item() for k, v in cols.items()} for i in range(math.prod(shape))]

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
        path=None,
        *,
        title: str | None = None,
        label: str | None = None,
        best: str | None = None,
        log_color: bool | None = None,
    ):
        """A heatmap of ``metric`` over the axes carrying ``x`` and ``y``, returned as a
        :class:`matplotlib.figure.Figure` (shown inline in a notebook) and saved as a PNG to
        ``path`` if given: see :func:`jaxmom.sweep.plot.heatmap`. Diverged cells are grey."""
        from jaxmom.sweep import plot  # lazily: plot never imports this module at run time

        return plot.heatmap(
            self, metric, x, y, path, title=title, label=label, best=best, log_color=log_color
        )
