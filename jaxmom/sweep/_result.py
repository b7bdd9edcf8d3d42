"""The result of a sweep: metrics shaped like the grid, divergence marks, tables and exports."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence

import jax
import numpy as np

from jaxmom.sweep._grid import Grid


def _leaf_name(path) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(parts) or "metric"


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
        nd = len(grid.shape)
        self._flat = {
            _leaf_name(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(metrics)
        }
        bad = np.zeros(grid.shape, bool)
        for x in self._flat.values():
            if np.issubdtype(x.dtype, np.inexact):
                bad |= ~np.isfinite(x).reshape(grid.shape + (-1,)).all(-1)
        step = np.full(grid.shape, -1)
        hist = self._flat.get(history)
        if hist is not None and hist.ndim > nd and np.issubdtype(hist.dtype, np.inexact):
            per_step = hist.reshape(hist.shape[: nd + 1] + (-1,))  # (*grid, steps, rest)
            with np.errstate(invalid="ignore", over="ignore"):
                steps = ~np.isfinite(per_step).all(-1)
                if divergence_factor is not None:
                    first = per_step[..., :1, :]
                    grew = (first > 0) & (per_step > divergence_factor * first)
                    steps |= grew.any(-1)
            step = np.where(steps.any(-1), steps.argmax(-1), -1)
        self.diverged = bad | (step >= 0)
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
