"""How many configurations a chunk holds: from the memory one more configuration keeps live,
measured on the compiled programs of the largest chunk allowed (which ``fit`` then runs, compiled
once) where the backend reports it."""

from __future__ import annotations

import math
import os
import weakref

import jax
import numpy as np

from jaxmom.sweep import _checks, _engine
from jaxmom.sweep._programs import epoch_program, eval_program, template
from jaxmom.sweep._setup import Setup

# On CPU, chunks of at most this many configurations per device: measured by the MNIST study on a
# 2-core Xeon, a 16x16 grid ran 13% faster in chunks of 8 or 16 than in one vmap of 256 (whose
# first-layer weights then stream through memory at every step).
CPU_CHUNK = 16


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def nbytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def bytes_per_config(s: Setup) -> int:
    """An upper estimate of the memory one more configuration keeps live, measured on the very
    programs ``fit`` runs for ``s``'s chunk (so measuring costs no compile of its own): the
    compiled epoch (and evaluation) program's ``memory_analysis()`` where the backend reports it,
    its temporaries plus its arguments and outputs less the shared data, per configuration of the
    chunk (at least its optimizer state and parameters), and 1/16 more; else the parameters five
    times, the optimizer state three times and the batch's inputs four times; plus every step's
    loss and the evaluations kept on the host."""
    t = template(s)
    state = -(-nbytes(t.state) // s.width)
    shared = nbytes((s.train, s.fixed))
    results = 4 * (s.steps * s.epochs + 8 * s.epochs)
    try:
        analysis = [_analysis(epoch_program(s)[0])]
        if s.evaluate is not None:
            analysis += [_analysis(eval_program(s, i)[0]) for i in range(len(s.evals))]
        live = max(
            a.temp_size_in_bytes
            + a.argument_size_in_bytes
            + a.output_size_in_bytes
            - a.alias_size_in_bytes
            for a in analysis
        )
        per_config = -(-(live - shared - nbytes(s.eval)) // s.chunk)
        # what the process holds beyond XLA's buffers (allocator, runtime): measured at 1-2% of
        # them (tests/test_fit.py, peak RSS), allowed 1/16
        return max(per_config + per_config // 16, state) + results
    except (AttributeError, TypeError, NotImplementedError, jax.errors.JaxRuntimeError):
        batch = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in s.train) * s.batch_size
        return 5 * state + 4 * batch + results


_ANALYSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _analysis(exe):
    """``exe.memory_analysis()``, kept with the compiled program (each call of ``fit`` asks)."""
    if exe not in _ANALYSES:
        _ANALYSES[exe] = exe.memory_analysis()
    return _ANALYSES[exe]


def most_per_device(s: Setup) -> int:
    """The largest chunk :func:`auto_chunk_size` may choose: the grid's share per device, and at
    most :data:`CPU_CHUNK` on CPU."""
    per_device = -(-s.grid.size // s.mesh.devices.size)
    if s.mesh.devices.flat[0].platform == "cpu":
        per_device = balanced(per_device, CPU_CHUNK)
    return per_device


def balanced(total: int, most: int) -> int:
    """The smallest chunk that trains ``total`` configurations in as few chunks as chunks of
    ``most`` would: 18 in chunks of 16 would pad the second to 16, so two chunks of 9."""
    return -(-total // -(-total // most))


def auto_chunk_size(s: Setup, memory_budget: int | None = None) -> int:
    """The most configurations per device whose :func:`bytes_per_config` fit in ``memory_budget``
    bytes (default: half the memory available now, shared by the devices on CPU), at least 1 and at
    most :func:`most_per_device`. The estimate is measured on the programs of that largest chunk,
    which ``fit`` then runs, compiled once; where the budget asks for a smaller chunk, that
    chunk's programs (which ``fit`` then runs instead) are measured in turn, until one fits."""
    ndev = s.mesh.devices.size
    if s.stepwise:
        return 1
    per_device = most_per_device(s)
    if s.mesh.devices.flat[0].platform == "cpu":
        budget = (available_memory() // 2 if memory_budget is None else memory_budget) // ndev
    else:
        stats = s.mesh.devices.flat[0].memory_stats() or {}
        free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        budget = memory_budget if memory_budget is not None else free // 2
        if not budget:
            budget = available_memory() // 2
    chunk = per_device
    with _engine.compile_ahead():  # the programs fit runs: their first run reports the seconds
        while True:  # a smaller chunk is measured again: its fixed costs weigh more per config
            fits = max(1, min(chunk, budget // bytes_per_config(s.with_chunk(chunk))))
            fits = balanced(-(-s.grid.size // ndev), fits)
            if fits == chunk:
                return chunk
            chunk = fits


def with_chunk_size(s: Setup, chunk_size, memory_budget=None) -> Setup:
    """``s`` with its chunk from ``chunk_size`` (checked by :func:`jaxmom.sweep._checks.chunk_size`):
    ``"auto"`` from :func:`auto_chunk_size`, ``None`` the whole grid, else at most that many."""
    chunk_size = _checks.chunk_size(chunk_size)
    memory_budget = _checks.memory_budget(memory_budget)
    if chunk_size == "auto":
        return s.with_chunk(auto_chunk_size(s, memory_budget))
    if chunk_size is None:
        return s
    return s.with_chunk(min(int(chunk_size), s.chunk))
