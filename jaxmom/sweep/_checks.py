"""One check per rule: every argument that ``sweep``, ``fit`` and the searches share is validated
here, by one function with one message, and nowhere else.

Each function returns the value as the callers use it, or raises a one-line ``ValueError`` (a
``TypeError`` for a wrong kind of object) naming the argument and what it got.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax

from jaxmom.sweep._grid import SEEDS, _integers, _is_integer


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` of at least 1 (``bool`` refused)."""
    if not _is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def seed(value: Any) -> int:
    """A seed: an integer in ``0..2**64-1``."""
    if not _is_integer(value):
        raise ValueError(f"seed must be an integer in {SEEDS[0]}..{SEEDS[1]}, got {value!r}")
    _integers("seed", [value], *SEEDS)  # one line with the range when outside it
    return int(value)


def devices(value: Sequence[Any] | None) -> tuple:
    """The devices to shard over: ``jax.devices()`` by default, at least one."""
    out = tuple(jax.devices() if value is None else value)
    if not out:
        raise ValueError("devices must name at least one device")
    return out


def chunk_size(value: Any, *, auto: bool = True) -> int | str | None:
    """Configurations per device at once: a positive integer, ``None`` (all at once) or, where
    ``auto``, the string ``"auto"`` (sized from memory)."""
    if value is None or (auto and value == "auto"):
        return value
    if not _is_integer(value) or value < 1:
        also = ", None or 'auto'" if auto else " or None"
        raise ValueError(f"chunk_size must be a positive integer{also}, got {value!r}")
    return int(value)


def divergence_factor(value: Any) -> float | None:
    """``None`` (only NaN and inf diverge) or a real number above 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 1:
        raise ValueError(f"divergence_factor must be a number above 1 (or None), got {value!r}")
    return float(value)


check_divergence_factor = divergence_factor  # public: jaxmom.sweep.check_divergence_factor


def memory_budget(value: Any) -> int | None:
    """``None`` (half the memory available) or a positive number of bytes."""
    if value is None:
        return None
    return positive_int("memory_budget", value)
