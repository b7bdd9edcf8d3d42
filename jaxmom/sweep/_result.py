"""The result of a sweep: metrics shaped like the grid, divergence marks, tables and exports.

Table columns: each hyperparameter (and the seed), each metric with no axis beyond the grid's
(under its name, a nested dict's keys joined by ``/``), the last value of each per-step metric (one
axis beyond the grid) as ``<name>_last``, and ``diverged`` / ``diverged_step``. A metric name that
gives the same column as a hyperparameter, ``diverged``, ``diverged_step`` or another metric is a
one-line error (raised by :func:`~jaxmom.sweep.sweep` after compiling, before training). A metric
with two or more axes beyond the grid (e.g. final weights) stays in ``metrics`` and is left out of
the table with a warning that names it. A result with an ``epochs_trained`` metric (successive
halving) also has ``<name>_at_stop`` and ``stopped_epoch``: see :mod:`jaxmom.sweep._stopped`.
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

from jaxmom.sweep._files import atomic_open
from jaxmom.sweep._grid import SEED, Grid
from jaxmom.sweep._metrics import mode_of
from jaxmom.sweep._stopped import TRAINED, at_stop, check_best, stop_columns

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
      model_state: the final model state (e.g. BatchNorm's running averages), stacked alike,
        where the sweep returned params of a model with state (``fit(..., has_state=True)``);
        else None.
      info: what a search records beside the metrics, JSON-able (e.g. ``info["halving"]``).

    Every argument is a keyword (a positional one is a ``TypeError``): ``grid`` and ``metrics``
    are required; the others set the attributes of their names, by default the seconds 0.0,
    ``history="loss"``, no devices, ``divergence_factor=10.0``, ``info`` empty (a given one is
    copied), ``params=None`` and ``model_state=None``. ``divergence``: the ``(diverged, diverged_step)`` marks when the caller
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
    model_state: Any = None

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
        model_state: Any = None,
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
        self.model_state = model_state
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
            self._stops = stop_columns(self._columns, self._flat, grid.shape)
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
        for col, name in self._stops.items():  # after successive halving: see _stopped
            x, trained = self._flat[name], self._flat[TRAINED]
            cols[col] = x if name == TRAINED else at_stop(x, trained)
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

    def best(self, metric: str, mode: str | None = None) -> dict:
        """The best configuration by ``metric``, diverged configurations excluded.

        Without a seed axis: the row (see :meth:`rows`) with the lowest (``mode="min"``) or
        highest (``"max"``) finite ``metric``. Without ``mode``, the metric's name tells which
        (:mod:`jaxmom.sweep._metrics`: a name with ``loss``, ``error``, ... is minimised, one with
        ``accuracy``, ``acc``, ... maximised), and a name that tells neither is refused in one
        line asking for ``mode``. With a seed axis, cells are ranked by their mean
        over the seeds (never by single seeds), a cell where any seed diverged is excluded, and
        the answer is the cell's hyperparameters, each metric column averaged over the seeds,
        ``<metric>_std`` (over the seeds, ``ddof=0``) and ``n_seeds``. A ``<name>_at_stop``
        column is refused where the ranked trials stopped at different epochs (see
        :mod:`jaxmom.sweep._stopped`).
        """
        mode = mode_of(metric, mode, f"best({metric!r})")
        check_best(self, metric)
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
        best: str | None = "auto",
        log_color: bool | None = None,
        std: bool = False,
    ):
        """A heatmap of ``metric`` over the axes carrying ``x`` and ``y``, returned as a
        :class:`matplotlib.figure.Figure` (shown inline in a notebook) and saved as a PNG to
        ``path`` if given: see :func:`jaxmom.sweep.plot.heatmap`. Diverged cells are grey; other
        axes (seeds) are averaged, or with ``std=True`` their spread is shown. The best cell is
        outlined in red, as :meth:`best` picks it (``best="min"``, ``"max"``, None for no outline;
        by default the direction the metric's name tells, as :meth:`best` knows it)."""
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

        The metrics, ``params``, ``model_state`` and the divergence marks are indexed alike (the
        marks are carried over exactly, not recomputed); the timings, devices, ``history`` and
        ``divergence_factor`` are kept. ``info`` is the new result's (default: empty, since a
        run's info, such as halving's rungs or the epochs each cell resumed, describes the whole
        run and is not sliced). An unknown axis, an index out of range or an empty selection is a
        one-line ``ValueError``.
        """
        from jaxmom.sweep._result_parts import take

        return take(self, axis, indices, info)

    @classmethod
    def concat(
        cls, results: Sequence[SweepResult], axis: str, *, info: Mapping | None = None
    ) -> SweepResult:
        """``results`` end to end along one grid axis (an axis name or a hyperparameter it
        carries), as ``pandas.concat`` or ``xarray.concat`` would join them: e.g. the batches of
        a search's trials as one result.

        The results need grids with the same axes and hyperparameters and the same values on
        every other axis (``Grid.concat``), the same metrics (pytree structure and shapes
        beyond the grid), the same ``history`` and ``divergence_factor``, and params (and model
        states) in all or none of them; anything else is a one-line ``ValueError``. The metrics,
        ``params``, ``model_state`` and divergence marks are joined in order (the marks exactly, not recomputed); the seconds are
        summed; the devices are those of any result, in order of first appearance. ``info`` is
        the new result's (default: empty; the parts' info describes each run and is not merged).
        """
        from jaxmom.sweep._result_parts import concat

        return concat(cls, results, axis, info)

    # ---- files ------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the whole result to ``path``, atomically, in the format of :func:`load`."""
        from jaxmom.sweep._result_file import save

        save(self, path)

    @classmethod
    def load(cls, path) -> SweepResult:
        """Read a result written by :meth:`save`; a file that is not one is a one-line
        ``ValueError`` naming it. See :func:`jaxmom.sweep._result_file.load` for the format."""
        from jaxmom.sweep._result_file import load

        return load(path, cls)
