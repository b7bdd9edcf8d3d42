"""Population-based training inside the compiled sweep: ``fit(..., search=PBT(space=...))``.

The population is the grid (a product or :func:`~jaxmom.sweep.sample`'s trials): a *member* is one
cell of the grid without its seed axis, with all its seeds, numbered in C order over the other axes
(the result's ``member`` metric). Training runs in legs of ``interval`` epochs (the last one ends at
``epochs``). After each leg but the last, the members are ranked by ``metric`` at the leg's last
epoch (its mean over the seeds): each member of the bottom ``fraction`` (and every diverged member)
*exploits* a member of the top ``fraction`` drawn at random, that is, takes its whole state (params
and optimizer state, seed by seed: seed ``j`` of the member from seed ``j`` of its donor) and its
hyperparameters, then *explores*: each hyperparameter of ``space`` is, with probability
``resample``, drawn afresh from its space, else multiplied by one of the ``perturb`` factors (a
:func:`~jaxmom.sweep.choice` moves to a neighbouring value instead; an integer moves by at least
one), and clipped to the space's bounds. The grid's other hyperparameters are copied unchanged.

A member is *diverged* when the training that made its state (its lineage: the donor's before a
copy, its own after) has a NaN or inf in any metric, or a loss above ``divergence_factor`` times
the lineage's first-step loss, as :class:`~jaxmom.sweep.SweepResult` defines divergence for one
run. A diverged member is always replaced at the next exploit and is never a donor; its score
does not count. The result's ``diverged`` and ``diverged_step`` marks are those of each member's
final lineage, so ``best()`` can pick a member that took a donor's state after its own diverged.

Exploit and explore happen on the host between compiled epochs: a leg's hyperparameters are
traced values and the copied states are fed to the same programs, so nothing compiles after the
first leg. The draws come from ``numpy.random.default_rng([seed, i])`` at exploit ``i``
(1-based), and every decision is a pure function of the results so far: a checkpoint folder
resumes a killed run bit-identically, and the history is replayed from the results at the end.

The result holds every member's history: ``hp/<name>`` (``grid.shape + (epochs,)``) the value of
each hyperparameter of the grid the member trained with in each epoch; ``parent``
(``grid.shape + (legs,)``) the member whose state each leg started from (the member itself in leg
0 and whenever it kept its own); ``member`` (``grid.shape``) each cell's member number; and
``info["pbt"]`` the settings, the legs' last epochs (``ends``) and the copies made at each exploit.
:meth:`SweepResult.schedule(member) <jaxmom.sweep.SweepResult.schedule>` follows a member's
lineage back to epoch 0.

**Replay.** For a member ``m`` with ``sched = result.schedule(m)``, each of its cells (seed ``s``,
or fit's ``seed`` without a seed axis) ends with the params of fit's plain loop run alone with a
schedule of hyperparameters: ``init_key, data_key = split(key(s))``, ``params = init(init_key)``,
``opt_state = optimizer(h_0).init(params)``, and epoch ``e`` takes its steps with
``optimizer(h_e)`` in the order ``permutation(fold_in(data_key, e), n)``, where ``h_e`` holds
``sched["hp"][name][e]`` for every hyperparameter of the grid. A copied member goes on with *its
own* seed's data order: without a seed axis every member shares ``seed`` (one init, one data
order), and with one a member's seed ``j`` copies its donor's seed ``j``. The optimizer's update
must read the hyperparameters it is built from (``optax.inject_hyperparams`` keeps them in its
state instead, which a copy would carry over: such an optimizer is refused before training).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, NoReturn

import jax
import numpy as np

from jaxmom.sweep._driver import Leg, Log, Strategy
from jaxmom.sweep._grid import SEED
from jaxmom.sweep._halving import _trials
from jaxmom.sweep._programs import cell_template
from jaxmom.sweep._sample import Choice, LogUniform, Uniform
from jaxmom.sweep._setup import Setup

HP = "hp/"  # the prefix of the metrics that record each hyperparameter


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PBT(Strategy):
    """Population-based training for :func:`~jaxmom.sweep.fit` (``fit(..., search=PBT(...))``).

    Attributes:
      space: ``{name: uniform(...) | log_uniform(...) | choice([...])}``: the hyperparameters of
        the grid to explore and their bounds (every grid value must lie within them).
      interval: epochs between two exploits (an integer of at least 1, below ``epochs``).
      fraction: the share of the population that exploits (the bottom) and that donates (the
        top), in (0, 0.5]; at least one member each.
      metric: what ranks the members: ``"epoch_loss"`` or a name that ``evaluate`` returns (its
        value after the leg's last epoch, averaged over the seeds).
      mode: ``"min"`` or ``"max"``: whether lower or higher ``metric`` is better.
      perturb: the factors an explored value is multiplied by, one drawn at random.
      resample: the probability that an explored value is drawn afresh from its space instead.
      seed: the seed of the draws (donors, factors, resampled values).
      exploit: False: no member ever copies another (the legs still stop every ``interval``
        epochs): the result equals a plain ``fit`` bit for bit.
    """

    space: Mapping[str, Any]
    interval: int = 1
    fraction: float = 0.25
    metric: str = "epoch_loss"
    mode: str = "min"
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample: float = 0.25
    seed: int = 0
    exploit: bool = True

    def __post_init__(self):
        def refuse(what) -> NoReturn:
            raise ValueError(f"PBT: {what}")

        for name, low in (("interval", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                refuse(f"{name} must be an integer of at least {low}, got {v!r}")
        if not _number(self.fraction) or not 0 < self.fraction <= 0.5:
            refuse(f"fraction must be a number in (0, 0.5], got {self.fraction!r}")
        if not _number(self.resample) or not 0 <= self.resample <= 1:
            refuse(f"resample must be a probability in [0, 1], got {self.resample!r}")
        if self.mode not in ("min", "max"):
            refuse(f"mode must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.metric, str):
            refuse(f"metric must be a name, got {self.metric!r}")
        if not isinstance(self.exploit, bool):
            refuse(f"exploit must be True or False, got {self.exploit!r}")
        factors = self.perturb if isinstance(self.perturb, tuple | list) else None
        if not factors or not all(_number(f) and f > 0 for f in factors) or set(factors) == {1}:
            refuse(f"perturb must be positive factors, not all 1, got {self.perturb!r}")
        object.__setattr__(self, "perturb", tuple(float(f) for f in factors))
        for name in ("interval", "seed", "fraction", "resample"):  # plain numbers, for info's JSON
            kind = float if name in ("fraction", "resample") else int
            object.__setattr__(self, name, kind(getattr(self, name)))
        if not isinstance(self.space, Mapping) or not self.space:
            refuse("space must map the grid's hyperparameters to uniform, log_uniform or choice")
        for name, sp in self.space.items():
            if not isinstance(sp, Uniform | LogUniform | Choice):
                refuse(f"space {name}={sp!r} is not a uniform, log_uniform or choice space")
            if isinstance(sp, Choice) and len(set(sp.values)) < 2:
                refuse(f"space {name}={sp!r} has one value: it cannot be perturbed")
        object.__setattr__(self, "space", dict(self.space))

    # ---- the strategy: one leg per interval ------------------------------------------------------

    name = "pbt"
    reserved = ("member", "parent")

    def ends(self, epochs: int) -> list[int]:
        """The last epoch of each leg."""
        return [*range(self.interval, epochs, self.interval), epochs]

    def check(self, s: Setup, names: list[str]) -> None:
        def refuse(what) -> NoReturn:
            raise ValueError(f"PBT: {what}")

        if self.metric not in ("epoch_loss", *names):
            refuse(
                f"metric {self.metric!r} is neither 'epoch_loss' nor a name evaluate returns {names}"
            )
        if len(_trials(s.grid)) < 2:
            refuse("the population needs at least 2 members (cells without the seed axis)")
        if self.interval >= s.epochs:
            refuse(f"interval {self.interval} leaves no exploit in {s.epochs} epochs")
        taken = sorted({*names, *s.grid.params} & {"member", "parent"})
        taken += [n for n in names if n.startswith(HP)]
        if taken:
            refuse(f"the names {taken} are the result's own (member, parent, hp/...): rename them")
        fixed = {*s.fixed, *dict(s.static)}
        first = {k: v[0].item() for k, v in s.hparams.items()}
        for name, sp in self.space.items():
            if name not in s.hparams:
                why = "is fixed, not an axis of the grid" if name in fixed else "is not in the grid"
                refuse(f"space {name!r} {why} {sorted(s.hparams)}: only the grid's are perturbed")
            values, dtype = s.hparams[name], s.hparams[name].dtype
            allowed = _allowed(name, sp, dtype)
            if isinstance(sp, Choice):
                outside = values[~np.isin(values, allowed)]
            else:
                outside = values[(values < allowed[0]) | (values > allowed[1])]
            if outside.size:
                refuse(f"the grid's {name}={outside[0]!s} is outside its space {sp!r}")
            for v in allowed:
                try:
                    s.optimizer({**s.fixed, **dict(s.static), **first, name: v.item()})
                except (ValueError, TypeError) as e:
                    msg = " ".join(str(e).split())
                    refuse(
                        f"space {name}={sp!r} reaches {name}={v!s}, which the optimizer refuses: {msg}"
                    )
        ignored = [n for n in self.space if n not in _read_by_update(s)]
        if ignored:
            refuse(
                f"the optimizer's update does not read {ignored} (it keeps them in its state, as "
                "optax.inject_hyperparams does): a perturbed value would never reach training; "
                "build the optimizer from the values it is given"
            )

    def first(self, s: Setup) -> Leg:
        ends = self.ends(s.epochs)
        return Leg(np.arange(s.grid.size), 0, ends[0], keep=len(ends) > 1)

    def next(self, s: Setup, log: Log, leg: Leg) -> Leg | None:
        ends = self.ends(s.epochs)
        k = ends.index(leg.end)
        if k + 1 == len(ends):
            return None
        h = self._history(s, log, k + 1)
        cells = np.arange(s.grid.size)
        return Leg(
            cells,
            leg.end,
            ends[k + 1],
            sources=h.sources[k + 1],
            hparams=h.tables[k + 1],
            keep=k + 2 < len(ends),
        )

    def divergence(self, s: Setup, log: Log) -> tuple[np.ndarray, np.ndarray]:
        h = self._history(s, log, len(self.ends(s.epochs)))
        return h.diverged.reshape(s.grid.shape), h.step.reshape(s.grid.shape)

    def finish(self, s: Setup, log: Log) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        ends = self.ends(s.epochs)
        h = self._history(s, log, len(ends))
        trials, size = _trials(s.grid), s.grid.size
        starts = [0, *ends[:-1]]
        metrics: dict[str, np.ndarray] = {}
        for name, v in s.hparams.items():
            out = np.empty((size, s.epochs), v.dtype)
            for table, a, b in zip(h.tables, starts, ends, strict=True):
                out[:, a:b] = table[name][:, None]
            metrics[HP + name] = out
        parent = np.empty((size, len(ends)), np.int32)
        parent[trials] = np.stack(h.parents, -1)[:, None, :]
        member = np.empty(size, np.int32)
        member[trials] = np.arange(len(trials))[:, None]
        metrics.update(parent=parent, member=member)
        metrics = {k: v.reshape(s.grid.shape + v.shape[1:]) for k, v in metrics.items()}
        copies = [
            [[int(b), int(p[b])] for b in np.flatnonzero(p != np.arange(len(p)))]
            for p in h.parents[1:]
        ]
        info = {
            "pbt": {
                "interval": self.interval,
                "fraction": self.fraction,
                "metric": self.metric,
                "mode": self.mode,
                "space": {k: repr(v) for k, v in self.space.items()},
                "perturb": list(self.perturb),
                "resample": self.resample,
                "seed": self.seed,
                "exploit": self.exploit,
                "members": len(trials),
                "ends": ends,
                "copies": copies,  # per exploit: [member, donor] pairs
            }
        }
        return metrics, info

    # ---- the decisions, replayed from the results -------------------------------------------------

    def _history(self, s: Setup, log: Log, legs: int) -> _History:
        """Every decision up to leg ``legs`` (at most the last), from the results of legs
        ``0 .. legs-1``, and each cell's lineage marks at the end of leg ``legs-1``."""
        trials, size = _trials(s.grid), s.grid.size
        ends = self.ends(s.epochs)
        h = _History([dict(s.hparams)], [np.arange(len(trials))], [np.arange(size)])
        loss = log.arrays["loss"]
        ref = loss[:, 0].astype(np.float64)  # the lineage's first-step loss
        bad, step = np.zeros(size, bool), np.full(size, -1, np.int64)
        for k in range(legs):
            src = h.sources[k]
            ref, bad, step = ref[src], bad[src], step[src]
            start, end = (0 if k == 0 else ends[k - 1]), ends[k]
            seg_bad, seg_step = _segment(s, log, start, end, ref)
            bad |= seg_bad
            step = np.where(step >= 0, step, seg_step)
            if k + 1 < len(ends):
                table, parent = self._exploit(
                    s, log, trials, h.tables[-1], bad | (step >= 0), end, k + 1
                )
                src = np.arange(size)
                src[trials] = trials[parent]
                h.tables.append(table)
                h.parents.append(parent)
                h.sources.append(src)
        h.diverged, h.step = bad | (step >= 0), step
        return h

    def _exploit(self, s, log, trials, table, diverged, end, i):
        """(hyperparameters, donor of each member) for the leg after exploit ``i``."""
        members = len(trials)
        parent = np.arange(members)
        if not self.exploit:
            return table, parent
        score = log.arrays[self.metric][trials, end - 1].astype(np.float64).mean(-1)
        ok = ~diverged[trials].any(-1) & np.isfinite(score)
        n = min(max(1, math.ceil(self.fraction * members - 1e-9)), members // 2)
        order = np.argsort(score if self.mode == "min" else -score, kind="stable")
        ranked = order[ok[order]]
        top = ranked[:n]
        bottom = np.union1d(np.flatnonzero(~ok), ranked[max(n, len(ranked) - n) :])
        if not top.size:
            return table, parent
        rng = np.random.default_rng([self.seed, i])
        new = {k: v.copy() for k, v in table.items()}
        for b in bottom:
            d = top[rng.integers(len(top))]
            parent[b] = d
            for name in table:
                new[name][trials[b]] = table[name][trials[d]]
            for name, sp in self.space.items():
                new[name][trials[b]] = self._explore(table[name][trials[d, 0]], name, sp, rng)
        return new, parent

    def _explore(self, v: Any, name: str, sp, rng: np.random.Generator) -> Any:
        dtype = v.dtype
        allowed = _allowed(name, sp, dtype)
        if rng.random() < self.resample:
            x = sp(np.array([rng.random()]))[0]
        elif isinstance(sp, Choice):
            i = int(np.flatnonzero(allowed == v)[0]) + (1 if rng.random() < 0.5 else -1)
            return allowed[min(max(i, 0), len(allowed) - 1)]
        else:
            f = self.perturb[rng.integers(len(self.perturb))]
            x = float(v) * f
            if dtype.kind in "iu" and round(x) == v and f != 1:
                x = float(v) + (1 if f > 1 else -1)  # an integer moves by at least one
        if isinstance(sp, Choice):
            return np.asarray(x).astype(dtype)[()]
        lo, hi = float(allowed[0]), float(allowed[1])
        x = min(max(round(x) if dtype.kind in "iu" else x, lo), hi)
        return np.asarray(x).astype(dtype)[()]


@dataclasses.dataclass
class _History:
    tables: list[dict[str, np.ndarray]]  # each leg's hyperparameters, flat per cell
    parents: list[np.ndarray]  # each leg's donor of each member (itself: none)
    sources: list[np.ndarray]  # each leg's source of each cell's state
    # each cell's lineage diverged (at the end of the last leg read), its first diverged step (-1)
    diverged: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    step: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


def _allowed(name: str, sp, dtype: np.dtype) -> np.ndarray:
    """A choice's values, or ``[lo, hi]``, in ``dtype`` (floats rounded to it, integers inward);
    a space the hyperparameter's type cannot take is one line."""
    if isinstance(sp, Choice):
        raw = np.asarray(sp.values)
        cast = raw.astype(dtype)
        exact = dtype.kind == "f" or (cast == raw).all()  # floats: to float32 as fit takes them
        if not exact or (dtype.kind == "b") != (raw.dtype.kind == "b"):
            raise ValueError(f"PBT: space {name}={sp!r} holds values that are not {dtype} values")
        return np.unique(cast)
    if dtype.kind == "b":
        raise ValueError(f"PBT: space {name}={sp!r} is not a choice, for the bool {name!r}")
    if dtype.kind in "iu":
        lo, hi = math.ceil(sp.lo), math.floor(sp.hi)
        if hi <= lo:
            raise ValueError(f"PBT: space {name}={sp!r} holds one integer: it cannot be perturbed")
        return np.array([lo, hi], dtype)
    return np.array([sp.lo, sp.hi]).astype(dtype)


def _segment(s: Setup, log: Log, start: int, end: int, ref: np.ndarray):
    """(bad, step) of each cell over epochs ``start .. end-1``: a NaN or inf in any metric, and
    the first step whose loss is not finite or above ``log.factor`` times ``ref`` (-1: none)."""
    steps = s.steps
    loss = log.arrays["loss"][:, start * steps : end * steps]
    with np.errstate(invalid="ignore", over="ignore"):
        hit = ~np.isfinite(loss)
        if log.factor is not None:
            hit |= ((ref > 0)[:, None]) & (loss > log.factor * ref[:, None])
    step = np.where(hit.any(1), hit.argmax(1) + start * steps, -1)
    bad = ~np.isfinite(loss).all(1)
    for k, v in log.arrays.items():
        if k != "loss":
            bad |= ~np.isfinite(v[:, start:end]).all(1)
    return bad, step


def _read_by_update(s: Setup) -> set[str]:
    """The hyperparameters that one cell's optimizer update reads (traced abstractly)."""
    hp, _, state = cell_template(s)
    static = dict(s.static)

    def update(hp, state, fixed):
        params, opt_state = state[0], state[1]  # (params, opt_state, ...)
        return s.optimizer({**fixed, **static, **hp}).update(params, opt_state, params)

    closed = jax.make_jaxpr(update)(hp, state, s.fixed)
    used = {id(v) for e in closed.jaxpr.eqns for v in e.invars}
    used |= {id(v) for v in closed.jaxpr.outvars}
    names = sorted(hp)  # the order jax flattens a dict in
    return {n for n, v in zip(names, closed.jaxpr.invars, strict=False) if id(v) in used}


def schedule(res, member) -> dict[str, Any]:
    """See :meth:`jaxmom.sweep.SweepResult.schedule`."""
    pbt = res.info.get("pbt")
    if not isinstance(pbt, dict) or "parent" not in res.metrics:
        raise ValueError("schedule() needs the result of fit(..., search=PBT(...))")
    members, ends = pbt["members"], pbt["ends"]
    ok = _number(member) and float(member).is_integer() and 0 <= member < members
    if not ok:
        raise ValueError(f"member must be an integer in [0, {members}), got {member!r}")
    m = int(member)
    trials, epochs = _trials(res.grid), ends[-1]
    first = trials[:, 0]  # a member's hyperparameters and parents are those of each of its seeds
    parent = np.asarray(res.metrics["parent"]).reshape(res.grid.size, -1)[first]
    lineage = np.empty(epochs, np.int64)
    for k in reversed(range(len(ends))):
        lineage[(0 if k == 0 else ends[k - 1]) : ends[k]] = m
        m = int(parent[m, k])
    hp = {
        k.removeprefix(HP): np.asarray(v).reshape(res.grid.size, epochs)[
            first[lineage], np.arange(epochs)
        ]
        for k, v in res.metrics.items()
        if k.startswith(HP)
    }
    cells = np.flatnonzero(np.asarray(res.metrics["member"]).reshape(-1) == int(member))
    seeds = res.grid.coords()[SEED].reshape(-1)[cells] if SEED in res.grid.names else None
    return {
        "member": int(member),
        "members": lineage,
        "hp": hp,
        "cells": [tuple(int(i) for i in np.unravel_index(c, res.grid.shape)) for c in cells],
        "seeds": None if seeds is None else seeds.tolist(),
    }
