"""Successive halving inside the compiled sweep: ``fit(..., halving=Halving(eta=3, ...))``.

All ``K`` trials (a trial is one cell of the grid without its seed axis, with all its seeds) train
for ``min_epochs`` epochs; the best ``K // eta`` by ``metric`` (their mean over the seeds) go on, with
their exact state, to ``min_epochs * eta`` epochs, the best ``K // eta**2`` of those to
``min_epochs * eta**2``, and so on; the last rung ends at ``epochs``. A trial in which any seed
diverged (as :class:`~jaxmom.sweep.SweepResult` defines it, on the epochs trained so far) is dropped
before any other. Each rung trains its survivors with :mod:`jaxmom.sweep._fit`'s programs, one
program per rung width (survivors times seeds per device, at most ``fit``'s chunk), compiled once and
cached: a rerun compiles nothing. A survivor's curve is the curve it would have trained alone.

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
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep import _fit
from jaxmom.sweep._engine import _fetch, _put
from jaxmom.sweep._grid import SEED
from jaxmom.sweep._result import SweepResult, _divergence

RESERVED = ("loss", "epoch_loss", "epochs_trained", "rung")


@dataclasses.dataclass(frozen=True)
class Halving:
    """Successive halving for :func:`~jaxmom.sweep.fit`.

    Attributes:
      eta: each rung keeps the best ``1 / eta`` of the trials and trains them ``eta`` times as
        many epochs (an integer, at least 2).
      metric: what ranks the trials at the end of a rung: ``"epoch_loss"`` (the mean training loss
        of the rung's last epoch) or a name that ``evaluate`` returns.
      mode: ``"min"`` or ``"max"``: whether lower or higher ``metric`` is better.
      min_epochs: the epochs of the first rung.
    """

    eta: int = 3
    metric: str = "epoch_loss"
    mode: str = "min"
    min_epochs: int = 1

    def __post_init__(self):
        for name in ("eta", "min_epochs"):
            v = getattr(self, name)
            low = 2 if name == "eta" else 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"Halving: {name} must be an integer of at least {low}, got {v!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"Halving: mode must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.metric, str):
            raise ValueError(f"Halving: metric must be a name, got {self.metric!r}")

    def rungs(self, trials: int, epochs: int) -> list[tuple[int, int]]:
        """``[(last epoch, trials trained), ...]``: the schedule for ``trials`` trials."""
        out, end, n = [], min(self.min_epochs, epochs), trials
        while True:
            out.append((end, n))
            if end >= epochs:
                return out
            end, n = min(end * self.eta, epochs), max(1, n // self.eta)


def _trials(grid) -> np.ndarray:
    """Flat cell indices of each trial, shape (trials, seeds)."""
    cells = np.arange(grid.size).reshape(grid.shape)
    if SEED not in grid.names:
        return cells.reshape(-1, 1)
    cells = np.moveaxis(cells, grid.names.index(SEED), -1)
    return cells.reshape(-1, cells.shape[-1])


def _eval_names(s: _fit.Setup) -> list[str]:
    if s.evaluate is None:
        return []
    one = s.with_chunk(1)
    hp, seeds = _fit._cells(one, one.chunks()[0])
    params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), _fit._state_shapes(one, hp, seeds)[0]
    )
    batch = tuple(jax.ShapeDtypeStruct((s.eval_batch_size,) + a.shape[1:], a.dtype) for a in s.eval)
    return list(jax.eval_shape(s.evaluate, params, *batch))


def run(
    s: _fit.Setup,
    halving: Halving,
    progress: bool,
    return_params: bool,
    divergence_factor,
    checkpoint_dir=None,
) -> SweepResult:
    """Successive halving over ``s``'s grid (``s.chunk``: the most cells per device at once)."""
    from tqdm.auto import tqdm

    if not isinstance(halving, Halving):
        raise TypeError(f"halving must be a jaxmom.sweep.Halving, got {type(halving).__name__}")
    if checkpoint_dir:
        raise ValueError("checkpoint_dir is not supported with halving (rungs are short: rerun)")

    names = _eval_names(s)
    clash = sorted(set(names) & set(RESERVED))
    if clash:
        raise ValueError(f"evaluate's names {clash} are also names halving's result uses")
    if halving.metric not in ("epoch_loss", *names):
        raise ValueError(
            f"Halving: metric {halving.metric!r} is neither 'epoch_loss' nor a name evaluate "
            f"returns {names}"
        )
    grid, ndev, steps = s.grid, s.mesh.devices.size, s.steps
    trials = _trials(grid)
    schedule = halving.rungs(len(trials), s.epochs)
    nan = lambda *shape: np.full(shape, np.nan, np.float32)
    results = {"loss": nan(grid.size, s.epochs * steps), "epoch_loss": nan(grid.size, s.epochs)}
    results.update({k: nan(grid.size, s.epochs) for k in names})
    epochs_trained = np.zeros(grid.size, np.int32)
    rung_of = np.zeros(grid.size, np.int32)
    seconds = {"compile": 0.0, "train": 0.0, "eval": 0.0}
    store, treedef = None, None  # every cell's state (leaves) on the host, where it stopped
    per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
    live = np.arange(len(trials))
    widths = [min(s.chunk, -(-n * trials.shape[1] // ndev)) * ndev for _, n in schedule]
    starts = [0] + [end for end, _ in schedule[:-1]]
    total = sum(
        -(-n * trials.shape[1] // w) * (end - e0)
        for (end, n), w, e0 in zip(schedule, widths, starts)
    )
    bar = tqdm(total=total, disable=not progress, file=sys.stderr, desc="halving", unit="epoch")
    try:
        start = 0
        for r, (end, _) in enumerate(schedule):
            cells = trials[live].reshape(-1)
            rs = s.with_chunk(widths[r] // ndev)
            spare = None  # a finished chunk's state, whose buffers the next chunk's init takes
            for i in range(0, len(cells), rs.width):
                real = cells[i : i + rs.width]
                chunk = np.concatenate([real, np.repeat(real[-1:], rs.width - len(real))])
                if r == 0:
                    state, compile_s = _fit.init_state(rs, chunk, spare)
                    seconds["compile"] += compile_s
                else:
                    assert store is not None and treedef is not None
                    state = jax.tree.unflatten(treedef, [_put(a[chunk], per_cell) for a in store])

                def after_epoch(e, state, losses, real=real, rs=rs):
                    k = len(real)
                    results["loss"][real, e * steps : (e + 1) * steps] = losses[:k]
                    results["epoch_loss"][real, e] = losses[:k].mean(-1)
                    if names:
                        values, run_s, compile_s = _fit.evaluate_state(rs, state)
                        seconds["eval"] += run_s
                        seconds["compile"] += compile_s
                        for name, v in values.items():
                            results[name][real, e] = v[:k]
                    bar.update(1)

                state, _, train_s, compile_s = _fit.run_epochs(
                    rs, state, chunk, start, end, after_epoch
                )
                seconds["train"] += train_s
                seconds["compile"] += compile_s
                host, treedef = jax.tree.flatten(jax.tree.map(_fetch, state))
                spare = state if r == 0 else None
                del state
                if store is None:
                    store = [np.zeros((grid.size,) + x.shape[1:], x.dtype) for x in host]
                for out, x in zip(store, host):
                    out[real] = x[: len(real)]
            epochs_trained[cells] = end
            rung_of[cells] = r
            if r + 1 < len(schedule):
                live = _survivors(
                    halving,
                    trials,
                    live,
                    results,
                    end,
                    steps,
                    schedule[r + 1][1],
                    divergence_factor,
                )
                if not live.size:
                    break
            start = end
    finally:
        bar.close()
    res = _result(
        s, halving, schedule, results, epochs_trained, rung_of, seconds, divergence_factor
    )
    if return_params and store is not None and treedef is not None:
        params = jax.tree.unflatten(treedef, store)[0]
        res.params = jax.tree.map(lambda x: x.reshape(grid.shape + x.shape[1:]), params)
    return res


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


def _result(s, halving, schedule, results, epochs_trained, rung_of, seconds, factor):
    grid, steps = s.grid, s.steps
    # Divergence of each run over the epochs it trained: the NaN after a stop is not divergence.
    diverged = np.zeros(grid.size, bool)
    step = np.full(grid.size, -1, np.int64)
    for e in np.unique(epochs_trained):
        idx = np.flatnonzero(epochs_trained == e)
        flat = {k: v[idx, : e * (steps if k == "loss" else 1)] for k, v in results.items()}
        d, st = _divergence(flat, (len(idx),), "loss", factor)
        diverged[idx], step[idx] = d, st
    metrics = {k: v.reshape(grid.shape + v.shape[1:]) for k, v in results.items()}
    metrics["epochs_trained"] = epochs_trained.reshape(grid.shape)
    metrics["rung"] = rung_of.reshape(grid.shape)
    res = SweepResult(
        grid=grid,
        metrics=metrics,
        compile_seconds=seconds["compile"],
        train_seconds=seconds["train"],
        history="loss",
        devices=tuple(s.mesh.devices.flat),
        divergence_factor=factor,
        eval_seconds=seconds["eval"],
        divergence=(diverged.reshape(grid.shape), step.reshape(grid.shape)),
    )
    res.info["halving"] = {
        "eta": halving.eta,
        "metric": halving.metric,
        "mode": halving.mode,
        "min_epochs": halving.min_epochs,
        "rungs": [{"epochs": e, "trials": n} for e, n in schedule],
        "config_epochs": int(epochs_trained.sum()),
        "full_config_epochs": grid.size * s.epochs,
    }
    return res
