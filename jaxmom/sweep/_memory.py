"""How many configurations a chunk holds: from the memory one more configuration keeps live,
measured on the compiled program where the backend reports it."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np
from jax.sharding import Mesh

from jaxmom.sweep import _checks
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
    """An upper estimate of the memory one more configuration keeps live: from the compiled
    one-configuration epoch (and evaluation) program's ``memory_analysis()`` where the backend
    reports it (its temporaries, plus its arguments and outputs less the shared data), else the
    parameters five times, the optimizer state three times and the batch's inputs four times;
    plus every step's loss and the evaluations kept on the host."""
    one = s.with_chunk(1)
    one = dataclasses.replace(one, mesh=Mesh(np.array(s.mesh.devices.flat[:1]), ("grid",)))
    state = nbytes(template(one).state)
    shared = nbytes((one.train, one.fixed))
    results = 4 * (s.steps * s.epochs + 8 * s.epochs)
    try:
        analysis = [epoch_program(one)[0].memory_analysis()]
        if s.evaluate is not None:
            analysis += [eval_program(one, i)[0].memory_analysis() for i in range(len(s.evals))]
        live = max(
            a.temp_size_in_bytes
            + a.argument_size_in_bytes
            + a.output_size_in_bytes
            - a.alias_size_in_bytes
            for a in analysis
        )
        return max(live - shared - nbytes(one.eval), state) + results
    except (AttributeError, TypeError, NotImplementedError, jax.errors.JaxRuntimeError):
        batch = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in s.train) * s.batch_size
        return 5 * state + 4 * batch + results


def auto_chunk_size(s: Setup, memory_budget: int | None = None) -> int:
    """The most configurations per device whose :func:`bytes_per_config` fit in ``memory_budget``
    bytes (default: half the memory available now, shared by the devices on CPU), at least 1 and at
    most the grid's share per device (and at most :data:`CPU_CHUNK` on CPU, which is faster)."""
    ndev = s.mesh.devices.size
    per_device = -(-s.grid.size // ndev)
    if s.stepwise:
        return 1
    if s.mesh.devices.flat[0].platform == "cpu":
        per_device = min(per_device, CPU_CHUNK)
        budget = (available_memory() // 2 if memory_budget is None else memory_budget) // ndev
    else:
        stats = s.mesh.devices.flat[0].memory_stats() or {}
        free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        budget = memory_budget if memory_budget is not None else free // 2
        if not budget:
            budget = available_memory() // 2
    return max(1, min(per_device, budget // bytes_per_config(s)))


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
