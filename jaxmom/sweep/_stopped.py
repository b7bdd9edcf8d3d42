"""Columns for trials stopped early (successive halving): the value each trial stopped on.

A result with an ``epochs_trained`` metric (``fit(..., halving=...)``; the MNIST study's results)
gains, for each per-epoch metric ``m`` (one axis beyond the grid, of the epochs' length: the
shortest such axis that holds every trial's epochs), the table column ``m_at_stop``: its value at
the last epoch the trial trained (``epochs_trained - 1``), where ``m_last`` is NaN for a trial
stopped early; and ``stopped_epoch`` (= ``epochs_trained``). Trials stopped at different rungs
are not comparable on ``m_at_stop`` (an early epoch's loss against a late one's), so
:meth:`~jaxmom.sweep.SweepResult.best` refuses to rank on it when the trials it would rank trained
different numbers of epochs (see :func:`check_best`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TRAINED = "epochs_trained"
SUFFIX = "_at_stop"
STOPPED = "stopped_epoch"


def stop_columns(columns: Mapping[str, str], flat: Mapping[str, np.ndarray], shape) -> dict:
    """{column: metric name} of the at-stop columns (``STOPPED`` maps to ``TRAINED``); empty
    without an ``epochs_trained`` metric. A column that would repeat a table column is a one-line
    ``ValueError``."""
    trained = flat.get(TRAINED)
    if trained is None or np.shape(trained) != tuple(shape):
        return {}
    lead, most = len(shape), int(np.max(trained, initial=0))
    lengths = {
        n: x.shape[lead] for n, x in flat.items() if x.ndim == lead + 1 and n in columns.values()
    }
    fits = [k for k in lengths.values() if k >= most]
    if not fits:
        return {}
    epochs = min(fits)
    out = {f"{n}{SUFFIX}": n for n, k in lengths.items() if k == epochs and n != TRAINED}
    out[STOPPED] = TRAINED
    for col in out:
        if col in columns:
            raise ValueError(f"the column {col!r} a stopped trial's value adds is also a metric's")
    return out


def at_stop(x: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """``x[..., trained - 1]`` cell by cell (NaN where a cell trained no epoch)."""
    idx = np.clip(np.asarray(trained, np.int64) - 1, 0, x.shape[-1] - 1)
    out = np.take_along_axis(x, idx[..., None], -1)[..., 0]
    if np.issubdtype(x.dtype, np.inexact):
        out = np.where(np.asarray(trained) >= 1, out, np.nan)
    return out


def check_best(result, metric: str) -> None:
    """Refuse ranking on an at-stop column when the trials ranked (not diverged) trained
    different numbers of epochs: their values come from different epochs."""
    if not metric.endswith(SUFFIX) or metric not in getattr(result, "_stops", {}):
        return
    trained = np.asarray(result._flat[TRAINED])[~np.asarray(result.diverged)]
    if np.unique(trained).size > 1:
        raise ValueError(
            f"best({metric!r}): the trials stopped after different numbers of epochs "
            f"({sorted(set(trained.tolist()))}), so their values at stop do not compare; rank on "
            f"{metric[: -len(SUFFIX)]}_last (the trials trained to the end) or take one rung"
        )
