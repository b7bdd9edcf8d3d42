"""Successive halving inside the compiled sweep: ``fit(..., halving=Halving(eta=3, ...))``.

All ``K`` trials (a trial is one cell of the grid without its seed axis, with all its seeds) train
for ``min_epochs`` epochs; the best ``K // eta`` by ``metric`` (their mean over the seeds) go on, with
their exact state, to ``min_epochs * eta`` epochs, the best ``K // eta**2`` of those to
``min_epochs * eta**2``, and so on; the last rung ends at ``epochs``. A trial in which any seed
diverged (as :class:`~jaxmom.sweep.SweepResult` defines it, on the epochs trained so far) is dropped
before any other. :class:`Halving` is a strategy of :mod:`jaxmom.sweep._driver`: each rung is one
leg, training its survivors with the programs of :mod:`jaxmom.sweep._programs`, one program per rung
width (survivors times seeds per device, at most ``fit``'s chunk), compiled once and cached: a rerun
compiles nothing. A survivor's curve is the curve it would have trained alone; a checkpoint folder
resumes a killed run as it does a plain ``fit``.

The result's metrics are ``fit``'s, NaN after a trial stopped (not counted as divergence), plus
``epochs_trained`` and ``rung`` (the last rung each trial reached, 0-based), and
``result.info["halving"]`` records the rungs (their last epoch and number of trials), the
configuration-epochs spent (``config_epochs``: the epochs trained, summed over every run, that is
over trials and seeds) and what training every run for every epoch would cost
(``full_config_epochs``).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np

from jaxmom.sweep._driver import Leg, Log, Strategy
from jaxmom.sweep._grid import SEED
from jaxmom.sweep._metrics import mode_of
from jaxmom.sweep._result import _divergence
from jaxmom.sweep._setup import Setup


@dataclasses.dataclass(frozen=True)
class Halving(Strategy):
    """Successive halving for :func:`~jaxmom.sweep.fit`.

    Attributes:
      eta: each rung keeps the best ``1 / eta`` of the trials and trains them ``eta`` times as
        many epochs (an integer, at least 2).
      metric: what ranks the trials at the end of a rung: ``"epoch_loss"`` (the mean training loss
        of the rung's last epoch) or a per-epoch metric of ``evaluate`` (with several evaluation
        sets, named after its set: ``"val/accuracy"``); the result's ``info["selected_on"]``
        names it.
      mode: ``"min"`` or ``"max"``: whether lower or higher ``metric`` is better. By default the
        direction that the metric's name tells (:mod:`jaxmom.sweep._metrics`: ``loss``,
        ``error``, ... lower, ``accuracy``, ``acc``, ... higher); a name that tells neither is
        refused in one line asking for ``mode``.
      min_epochs: the epochs of the first rung.
    """

    eta: int = 3
    metric: str = "epoch_loss"
    mode: str | None = None  # resolved from the metric's name: "min" or "max" after __init__
    min_epochs: int = 1

    def __post_init__(self):
        for name in ("eta", "min_epochs"):
            v = getattr(self, name)
            low = 2 if name == "eta" else 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"Halving: {name} must be an integer of at least {low}, got {v!r}")
        if not isinstance(self.metric, str):
            raise ValueError(f"Halving: metric must be a name, got {self.metric!r}")
        object.__setattr__(self, "mode", mode_of(self.metric, self.mode, "Halving"))

    def rungs(self, trials: int, epochs: int) -> list[tuple[int, int]]:
        """``[(last epoch, trials trained), ...]``: the schedule for ``trials`` trials."""
        out, end, n = [], min(self.min_epochs, epochs), trials
        while True:
            out.append((end, n))
            if end >= epochs:
                return out
            end, n = min(end * self.eta, epochs), max(1, n // self.eta)

    # ---- the strategy: one leg per rung ----------------------------------------------------------

    name = "halving"
    reserved = ("epochs_trained", "rung")

    def check(self, s: Setup, names: list[str]) -> None:
        if self.metric not in ("epoch_loss", *names):
            raise ValueError(
                f"Halving: metric {self.metric!r} is neither 'epoch_loss' nor a name evaluate "
                f"returns {names}"
            )

    def _plan(self, s: Setup):
        """(trials, rungs, cells per device of each rung)."""
        trials = _trials(s.grid)
        schedule = self.rungs(len(trials), s.epochs)
        ndev = s.mesh.devices.size
        chunks = [min(s.chunk, -(-n * trials.shape[1] // ndev)) for _, n in schedule]
        return trials, schedule, chunks

    def _leg(self, s: Setup, r: int, live: np.ndarray) -> Leg:
        trials, schedule, chunks = self._plan(s)
        start = 0 if r == 0 else schedule[r - 1][0]
        last = r + 1 == len(schedule)
        return Leg(trials[live].reshape(-1), start, schedule[r][0], chunks[r], keep=not last)

    def first(self, s: Setup) -> Leg:
        return self._leg(s, 0, np.arange(len(_trials(s.grid))))

    def next(self, s: Setup, log: Log, leg: Leg) -> Leg | None:
        trials, schedule, _ = self._plan(s)
        r = [end for end, _ in schedule].index(leg.end)
        if r + 1 == len(schedule):
            return None
        trial_of = np.empty(s.grid.size, np.int64)
        trial_of[trials] = np.arange(len(trials))[:, None]
        live = trial_of[leg.cells[:: trials.shape[1]]]
        keep = schedule[r + 1][1]
        live = _survivors(self, trials, live, log.arrays, leg.end, s.steps, keep, log.factor)
        return self._leg(s, r + 1, live) if live.size else None

    def total(self, s: Setup) -> int:
        trials, schedule, chunks = self._plan(s)
        ndev, starts = s.mesh.devices.size, [0] + [end for end, _ in schedule[:-1]]
        return sum(
            -(-n * trials.shape[1] // (chunk * ndev)) * (end - e0)
            for (end, n), chunk, e0 in zip(schedule, chunks, starts)
        )

    def finish(self, s: Setup, log: Log) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        _, schedule, _ = self._plan(s)
        ends = np.array([end for end, _ in schedule])
        metrics = {
            "epochs_trained": log.trained.reshape(s.grid.shape),
            "rung": np.searchsorted(ends, log.trained).astype(np.int32).reshape(s.grid.shape),
        }
        info = {
            "selected_on": self.metric,
            "halving": {
                "eta": self.eta,
                "metric": self.metric,
                "mode": self.mode,
                "min_epochs": self.min_epochs,
                "rungs": [{"epochs": e, "trials": n} for e, n in schedule],
                "config_epochs": int(log.trained.sum()),
                "full_config_epochs": s.grid.size * s.epochs,
            },
        }
        return metrics, info


def _trials(grid) -> np.ndarray:
    """Flat cell indices of each trial, shape (trials, seeds)."""
    cells = np.arange(grid.size).reshape(grid.shape)
    if SEED not in grid.names:
        return cells.reshape(-1, 1)
    cells = np.moveaxis(cells, grid.names.index(SEED), -1)
    return cells.reshape(-1, cells.shape[-1])


def _survivors(halving, trials, live, results, end, steps, keep, factor) -> np.ndarray:
    """The ``keep`` best live trials by the seed mean of ``metric`` at epoch ``end``, the trials
    with a diverged seed dropped first; ties go to the earlier trial."""
    cells = trials[live]  # (live, seeds)
    flat = cells.reshape(-1)
    so_far = {
        "loss": results["loss"][flat, : end * steps],
        halving.metric: results[halving.metric][flat, :end],
    }
    diverged = _divergence(so_far, (len(flat),), "loss", factor)[0].reshape(cells.shape).any(-1)
    score = results[halving.metric][cells, end - 1].astype(np.float64).mean(-1)
    ok = ~diverged & np.isfinite(score)
    order = np.argsort(score if halving.mode == "min" else -score, kind="stable")
    ranked = [i for i in order if ok[i]]
    return np.sort(live[ranked[:keep]])
