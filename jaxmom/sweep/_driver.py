"""The one chunk x epoch loop that every search of ``fit`` runs, and the strategies that steer it.

:func:`drive` trains *legs*. A :class:`Leg` is a stretch of epochs for a set of cells: chunk after
chunk of them, it initialises each chunk's state (or takes it from the states kept at the end of
the previous leg), runs the epochs, evaluates after each, checkpoints, reports progress and
records the results. Between legs a :class:`Strategy` decides which cells go on, how far, from
whose state and with which traced hyperparameters:

- :class:`Strategy` itself (plain ``fit``): one leg, every cell, every epoch;
- :class:`~jaxmom.sweep.Halving`: one leg per rung, the survivors of each going on with their
  exact state;
- :class:`~jaxmom.sweep.PBT` (population-based training): one leg per interval, some cells going
  on from others' states with other hyperparameters: a leg's ``sources`` says whose kept state
  each cell starts from, and its ``hparams`` replaces the grid's values.

A strategy's ``next`` must depend only on the results so far and the leg that ended (no hidden
state): a checkpoint holds the current leg and the results, so a killed run resumes
bit-identically whatever the strategy.

Checkpoints (``checkpoint_dir``, format in :mod:`jaxmom.sweep._checkpoint`): after every epoch of
a chunk, the chunk's state (``state/<i>``), the results so far (``result/<name>``, ``trained``,
``params/<i>``: the leaves of the params, then of the model state where there is one), the leg
(``leg/...``) and the states kept between legs (``kept/<i>``, ``keeping/<i>``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmom.sweep._checkpoint import Checkpoint, refuse_nonfinite
from jaxmom.sweep._engine import _fetch, _put
from jaxmom.sweep._interrupt import check_interrupt
from jaxmom.sweep._memory import available_memory
from jaxmom.sweep._programs import (
    chunk_inputs,
    eval_names,
    evaluate_state,
    init_state,
    run_epochs,
    template,
)
from jaxmom.sweep._result import SweepResult, _divergence
from jaxmom.sweep._setup import Setup

# The metrics that every search's result holds; an ``evaluate`` name may not be one of them.
OWN = ("loss", "epoch_loss")


@dataclasses.dataclass(frozen=True, eq=False)
class Leg:
    """A stretch of training: ``cells`` (flat grid indices) from the end of epoch ``start`` (0: from
    ``init``) to the end of epoch ``end``, ``chunk`` cells per device (default the setup's).

    ``sources`` (one per cell, default the cell itself): whose state, kept at the end of the
    previous leg, each cell starts from when ``start > 0``. ``hparams``: the traced values of every
    cell of the grid (flat, as :attr:`Setup.hparams`) for this leg; default the grid's. ``keep``:
    keep every cell's state at the leg's end for the next leg."""

    cells: np.ndarray
    start: int
    end: int
    chunk: int | None = None
    sources: np.ndarray | None = None
    hparams: dict[str, np.ndarray] | None = None
    keep: bool = False


class Strategy:
    """Plain ``fit``: every cell, every epoch, in one leg. Subclasses override the methods."""

    name = "fit"
    reserved: tuple[str, ...] = ()  # the metric names the strategy adds to the result

    def check(self, s: Setup, names: list[str]) -> None:
        """Refuse (one line) settings that do not fit ``s`` or ``evaluate``'s ``names``."""

    def first(self, s: Setup) -> Leg:
        return Leg(np.arange(s.grid.size), 0, s.epochs)

    def next(self, s: Setup, log: Log, leg: Leg) -> Leg | None:
        """The leg after ``leg``, from the results so far; None: done."""
        return None

    def total(self, s: Setup) -> int:
        """Chunk-epochs the whole run trains (the progress bar's length)."""
        return len(s.chunks()) * s.epochs

    def finish(self, s: Setup, log: Log) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(metrics, info) the strategy adds to the result: metrics shaped like the grid."""
        return {}, {}

    def divergence(self, s: Setup, log: Log) -> tuple[np.ndarray, np.ndarray] | None:
        """The result's (diverged, diverged_step) marks, shaped like the grid; None: the result
        computes them from its metrics."""
        return log.divergence(s)


class Log:
    """Every cell's results so far, on the host: per-step losses (``loss``), per-epoch means
    (``epoch_loss``) and evaluations, NaN where a cell has not trained; the epochs each cell has
    trained; its latest params (when asked for) and the states kept between legs."""

    def __init__(self, s: Setup, names: list[str], factor: float | None):
        rows = s.grid.size * s.epochs * (s.steps + 1 + len(names))
        if 4 * rows > available_memory():
            raise ValueError(
                f"the results of {s.grid.size} cells x {s.epochs} epochs x {s.steps} steps need "
                f"{4 * rows / 2**30:.3g} GiB of host memory, more than is available"
            )
        nan = lambda *shape: np.full(shape, np.nan, np.float32)
        self.arrays = {"loss": nan(s.grid.size, s.epochs * s.steps)}
        self.arrays.update({k: nan(s.grid.size, s.epochs) for k in ("epoch_loss", *names)})
        self.trained = np.zeros(s.grid.size, np.int32)
        self.factor = factor  # the divergence factor, as SweepResult takes it
        self.params: list[np.ndarray] | None = None
        self.kept: list[np.ndarray] | None = None  # states at the end of the previous leg
        self.keeping: list[np.ndarray] | None = None  # states at the end of this leg

    def record(self, s: Setup, cells: np.ndarray, e: int, losses, values: dict) -> None:
        k = len(cells)
        self.arrays["loss"][cells, e * s.steps : (e + 1) * s.steps] = losses[:k]
        self.arrays["epoch_loss"][cells, e] = losses[:k].mean(-1)
        for name, v in values.items():
            self.arrays[name][cells, e] = v[:k]
        self.trained[cells] = e + 1

    @staticmethod
    def _write(store, cells: np.ndarray, tree, size: int):
        leaves = [_fetch(x) for x in jax.tree.leaves(tree)]
        if store is None:
            store = [np.zeros((size,) + x.shape[1:], x.dtype) for x in leaves]
        for out, x in zip(store, leaves, strict=True):
            out[cells] = x[: len(cells)]
        return store

    def record_params(self, s: Setup, cells: np.ndarray, params) -> None:
        self.params = self._write(self.params, cells, params, s.grid.size)

    def keep(self, s: Setup, cells: np.ndarray, state) -> None:
        self.keeping = self._write(self.keeping, cells, state, s.grid.size)

    def end_leg(self) -> None:
        """The states kept in this leg become the ones the next leg starts from."""
        if self.keeping is not None:
            self.kept, self.keeping = self.keeping, None

    def kept_state(self, s: Setup, sources: np.ndarray, shapes):
        """The kept states of ``sources`` on the devices, laid out as ``shapes``."""
        if self.kept is None:
            raise ValueError("a leg that starts after epoch 0 needs states kept by the leg before")
        per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
        leaves = [_put(a[sources], per_cell) for a in self.kept]
        return jax.tree.unflatten(jax.tree.structure(shapes), leaves)

    def divergence(self, s: Setup) -> tuple[np.ndarray, np.ndarray] | None:
        """(diverged, diverged_step) of each cell over the epochs it trained (a cell that stopped
        early is not diverged for the NaN after its stop); None when every cell trained them all,
        for :class:`SweepResult` to compute as for any result."""
        if (self.trained == s.epochs).all():
            return None
        diverged = np.zeros(s.grid.size, bool)
        step = np.full(s.grid.size, -1, np.int64)
        for e in np.unique(self.trained):
            idx = np.flatnonzero(self.trained == e)
            flat = {
                k: v[idx, : e * (s.steps if k == "loss" else 1)] for k, v in self.arrays.items()
            }
            diverged[idx], step[idx] = _divergence(flat, (len(idx),), "loss", self.factor)
        return diverged.reshape(s.grid.shape), step.reshape(s.grid.shape)

    def to_npz(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {f"result/{k}": v for k, v in self.arrays.items()}
        out["trained"] = self.trained
        for prefix, store in (("params", self.params), ("kept", self.kept)):
            out.update({f"{prefix}/{i}": x for i, x in enumerate(store or [])})
        out.update({f"keeping/{i}": x for i, x in enumerate(self.keeping or [])})
        return out

    def load(self, arrays: dict[str, np.ndarray], dtypes: list[np.dtype], returned: list) -> None:
        """Take the results of a checkpoint's ``arrays`` (``dtypes``: the state's leaves';
        ``returned``: those of the params returned, see :func:`_returned`)."""
        for k, v in arrays.items():
            if k.startswith("result/") and k.removeprefix("result/") in self.arrays:
                self.arrays[k.removeprefix("result/")] = v
        self.trained = np.asarray(arrays.get("trained", self.trained), np.int32)

        def leaves(prefix, like):
            found = sorted(
                (int(k.split("/")[1]), v) for k, v in arrays.items() if k.startswith(prefix + "/")
            )
            if not found:
                return None
            # np.savez keeps bfloat16 as raw bytes (V2): its dtype again
            return [
                x.view(d) if x.dtype.kind == "V" and x.dtype.itemsize == d.itemsize else x
                for (_, x), d in zip(found, like[: len(found)], strict=True)
            ]

        self.params = leaves("params", returned)
        self.kept, self.keeping = leaves("kept", dtypes), leaves("keeping", dtypes)


def _returned(s: Setup, state):
    """What ``return_params`` returns of a cell's state: its params, or ``(params, model_state)``
    for a model with state."""
    return (state[0], state[2]) if s.has_state else state[0]


def _leg_arrays(leg: Leg) -> tuple[dict, dict[str, np.ndarray]]:
    header = {"start": leg.start, "end": leg.end, "chunk": leg.chunk, "keep": leg.keep}
    arrays = {"leg/cells": leg.cells}
    if leg.sources is not None:
        arrays["leg/sources"] = leg.sources
    arrays.update({f"leg/hp/{k}": v for k, v in (leg.hparams or {}).items()})
    return header, arrays


def _leg_of(header: dict, arrays: dict[str, np.ndarray]) -> Leg:
    hp = {k.removeprefix("leg/hp/"): v for k, v in arrays.items() if k.startswith("leg/hp/")}
    return Leg(
        cells=arrays["leg/cells"],
        start=int(header["start"]),
        end=int(header["end"]),
        chunk=header["chunk"],
        sources=arrays.get("leg/sources"),
        hparams=hp or None,
        keep=bool(header["keep"]),
    )


def _resume(s: Setup, checkpoint: Checkpoint, log: Log):
    """(leg, chunk, epoch, state on device, seconds, bar count) from ``checkpoint``, filling
    ``log``; or None when there is none."""
    h = checkpoint.read_header()
    if h is None:
        return None
    if h.get("chunk_size") != s.chunk or h.get("devices") != s.mesh.devices.size:
        raise ValueError(
            f"checkpoint {checkpoint.header} was made with {h.get('chunk_size')} cells on "
            f"{h.get('devices')} devices, not {s.chunk} on {s.mesh.devices.size}: pass "
            "chunk_size='auto' and the same devices, or another checkpoint_dir"
        )
    leg_h = h.get("leg")
    ints = lambda *v: all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    if not (
        isinstance(leg_h, dict)
        and ints(leg_h.get("start"), leg_h.get("end"))
        and leg_h["start"] < leg_h["end"] <= s.epochs
        and (leg_h.get("chunk") is None or ints(leg_h["chunk"]) and 0 < leg_h["chunk"] <= s.chunk)
        and isinstance(leg_h.get("keep"), bool)
    ):
        raise ValueError(f"checkpoint {checkpoint.header}: field 'leg' is not a leg of this run")
    ls = s if leg_h["chunk"] is None else s.with_chunk(leg_h["chunk"])
    shapes = template(ls).state
    loaded = checkpoint.load(shapes, epochs=leg_h["end"])
    assert loaded is not None
    h, state, arrays = loaded
    cells = arrays.get("leg/cells")
    if cells is None or cells.ndim != 1 or not np.isin(cells, np.arange(s.grid.size)).all():
        raise ValueError(f"checkpoint {checkpoint.state_file()}: 'leg/cells' are not this grid's")
    leg = _leg_of(leg_h, arrays)
    chunks = ls.chunks(leg.cells)
    if h["chunk"] >= len(chunks) or not leg.start <= h["epoch"] <= leg.end:
        raise ValueError(
            f"checkpoint {checkpoint.header}: chunk {h['chunk']}, epoch {h['epoch']} is not a "
            f"point of its leg ({len(chunks)} chunks, epochs {leg.start}..{leg.end})"
        )
    dtypes = lambda tree: [np.dtype(t.dtype) for t in jax.tree.leaves(tree)]
    log.load(arrays, dtypes(shapes), dtypes(_returned(s, shapes)))
    cells = chunks[h["chunk"]]
    done = log.arrays["loss"][cells, : h["epoch"] * s.steps]
    refuse_nonfinite(checkpoint.state_file(), state, np.asarray(np.isfinite(done).all(-1)))
    per_cell = NamedSharding(s.mesh, P(s.mesh.axis_names[0]))
    state = jax.tree.map(lambda x: _put(x, per_cell), state)
    return leg, h["chunk"], h["epoch"], state, h["seconds"], h.get("done", 0)


def drive(
    s: Setup,
    strategy: Strategy,
    *,
    checkpoint: Checkpoint | None = None,
    progress: bool = True,
    return_params: bool = False,
    divergence_factor: float | None = 10.0,
) -> SweepResult:
    """Train ``s``'s grid leg after leg as ``strategy`` decides; see the module's docstring."""
    from tqdm.auto import tqdm

    names = eval_names(s)
    clash = sorted(set(names) & {*OWN, *strategy.reserved})
    if clash:
        raise ValueError(
            f"evaluate returns {clash}, which the result of {strategy.name} uses for its own "
            "metrics: rename them"
        )
    strategy.check(s, names)
    log = Log(s, names, divergence_factor)
    seconds = {"compile": 0.0, "train": 0.0, "eval": 0.0}
    leg, c0, e_at, state, done = strategy.first(s), 0, 0, None, 0
    resumed = _resume(s, checkpoint, log) if checkpoint is not None else None
    if resumed is not None:
        leg, c0, e_at, state, seconds, done = resumed
    resumed_epochs = log.trained.copy()
    bar = tqdm(
        total=strategy.total(s),
        initial=done,
        disable=not progress,
        file=sys.stderr,
        desc=strategy.name,
        unit="epoch",
    )
    try:
        while leg is not None:
            ls = s if leg.chunk is None else s.with_chunk(leg.chunk)
            chunks = ls.chunks(leg.cells)
            sources = ls.chunks(leg.cells if leg.sources is None else leg.sources)
            spare = None  # a finished chunk's state, whose buffers the next chunk's init takes
            for c in range(c0, len(chunks)):
                real = chunks[c][: min(ls.width, len(leg.cells) - c * ls.width)]
                chunk = chunk_inputs(ls, chunks[c], leg.hparams)
                e0 = e_at if state is not None else leg.start
                if state is None and leg.start == 0:
                    state, compile_s = init_state(ls, chunk, spare)
                    seconds["compile"] += compile_s
                elif state is None:
                    state = log.kept_state(ls, sources[c], chunk.state)

                def after_epoch(e, state, losses, c=c, real=real, ls=ls, leg=leg, chunk=chunk):
                    values = {}
                    if s.evaluate is not None:
                        values, run_s, compile_s = evaluate_state(ls, state, chunk.seeds, e)
                        seconds["eval"] += run_s
                        seconds["compile"] += compile_s
                    log.record(s, real, e, losses, values)
                    bar.update(1)
                    if checkpoint is not None:
                        leg_header, leg_arrays = _leg_arrays(leg)
                        header = {
                            "leg": leg_header,
                            "chunk": c,
                            "epoch": e + 1,
                            "chunk_size": s.chunk,
                            "devices": s.mesh.devices.size,
                            "seconds": seconds,
                            "done": bar.n,
                        }
                        arrays = {**log.to_npz(), **leg_arrays}
                        checkpoint.save(header, jax.tree.map(_fetch, state), arrays)
                    check_interrupt()  # a Ctrl-C that landed where Python ignores it

                trained = run_epochs(ls, state, chunk, e0, leg.end, after_epoch)
                seconds["train"] += trained.seconds
                seconds["compile"] += trained.compile_seconds
                if return_params:
                    log.record_params(s, real, _returned(s, trained.state))
                if leg.keep:
                    log.keep(s, real, trained.state)
                spare, state = (trained.state if leg.start == 0 else None), None
            log.end_leg()
            leg, c0 = strategy.next(s, log, leg), 0
    finally:
        bar.close()

    shape = s.grid.shape
    metrics = {k: v.reshape(shape + v.shape[1:]) for k, v in log.arrays.items()}
    extra, info = strategy.finish(s, log)
    metrics.update(extra)
    params = model_state = None
    if return_params and log.params is not None:
        treedef = jax.tree.structure(_returned(s, template(s).state))
        params = jax.tree.unflatten(treedef, [x.reshape(shape + x.shape[1:]) for x in log.params])
        params, model_state = params if s.has_state else (params, None)
    # epochs each cell had trained when this call resumed its checkpoint (JSON-able, as info is)
    info = {**info, "resumed_epochs": resumed_epochs.reshape(shape).tolist()}
    return SweepResult(
        grid=s.grid,
        metrics=metrics,
        compile_seconds=seconds["compile"],
        train_seconds=seconds["train"],
        eval_seconds=seconds["eval"],
        history="loss",
        devices=tuple(s.mesh.devices.flat),
        divergence_factor=divergence_factor,
        divergence=strategy.divergence(s, log),
        info=info,
        params=params,
        model_state=model_state,
    )
