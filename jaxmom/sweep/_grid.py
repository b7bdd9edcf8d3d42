"""The grid of a sweep: axes of hyperparameter values, their outer product, and the seed axis."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SEED = "seed"


def _column(name: str, values: Any) -> np.ndarray:
    """Values of one hyperparameter as a 1-D float64, int32 or bool array (floats are fed to
    ``train_fn`` as float32 but kept exact here for tables and labels)."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"hyperparameter {name!r} needs a non-empty 1-D list of values")
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int32)
    if arr.dtype.kind == "b":
        return arr
    raise ValueError(f"hyperparameter {name!r} has non-numeric values {list(arr)[:3]}")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis of a grid: one or more hyperparameters (zipped) with equal-length value lists."""

    name: str
    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


class Grid:
    """The outer product of its axes; each axis carries one hyperparameter or several zipped ones.

    Build grids with :func:`product` and :func:`zipped`, combine them with ``*`` (outer product),
    and add a seed axis with :meth:`with_seeds`.
    """

    def __init__(self, axes: Sequence[Axis]):
        axes = tuple(axes)
        if not axes:
            raise ValueError("a grid needs at least one axis")
        names = [a.name for a in axes]
        params = [p for a in axes for p in a.columns]
        for kind, seen in (("axis", names), ("hyperparameter", params)):
            dup = sorted({n for n in seen if seen.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} name(s) {dup} in grid")
        self.axes = axes

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def names(self) -> tuple[str, ...]:
        """Axis names, in the order of the result's leading dimensions."""
        return tuple(a.name for a in self.axes)

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the hyperparameters handed to ``train_fn`` (the seed excluded)."""
        return tuple(p for a in self.axes for p in a.columns if p != SEED)

    def __mul__(self, other: Grid) -> Grid:
        if not isinstance(other, Grid):
            return NotImplemented
        return Grid(self.axes + other.axes)

    def with_seeds(self, seeds: int | Sequence[int]) -> Grid:
        """Add an axis named ``"seed"``: ``n`` means seeds ``0..n-1``; a list gives them."""
        seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        col = np.asarray(seeds)
        if col.size == 0 or col.dtype.kind not in "iu":
            raise ValueError(f"seeds must be a positive count or a list of integers, got {seeds!r}")
        return Grid(self.axes + (Axis(SEED, {SEED: col.astype(np.int32)}),))

    def coords(self) -> dict[str, np.ndarray]:
        """Every hyperparameter (and the seed) broadcast to the grid's shape."""
        out = {}
        for i, axis in enumerate(self.axes):
            shape = [1] * len(self.axes)
            shape[i] = len(axis)
            for p, col in axis.columns.items():
                out[p] = np.broadcast_to(col.reshape(shape), self.shape)
        return out

    def axis_of(self, name: str) -> int:
        """Index of the axis that is ``name`` or carries the hyperparameter ``name``."""
        for i, axis in enumerate(self.axes):
            if name == axis.name or name in axis.columns:
                return i
        raise ValueError(f"{name!r} is not an axis or hyperparameter of this grid {self.names}")

    def __repr__(self) -> str:
        parts = [f"{a.name}={len(a)}" for a in self.axes]
        return f"Grid({', '.join(parts)}; {self.size} configurations)"


def product(**values: Sequence[float]) -> Grid:
    """Full product grid, one axis per hyperparameter: ``product(lr=[...], momentum=[...])``."""
    if not values:
        raise ValueError("product() needs at least one hyperparameter")
    return Grid([Axis(k, {k: _column(k, v)}) for k, v in values.items()])


def zipped(axis: str | None = None, **values: Sequence[float]) -> Grid:
    """One axis whose i-th cell takes the i-th value of every list: ``zipped(lr=[..], wd=[..])``.

    The axis is named ``axis`` or, by default, the hyperparameter names joined by ``+``.
    """
    if not values:
        raise ValueError("zipped() needs at least one hyperparameter")
    cols = {k: _column(k, v) for k, v in values.items()}
    lengths = {k: len(c) for k, c in cols.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped hyperparameters need equal lengths, got {lengths}")
    return Grid([Axis(axis or "+".join(cols), cols)])
