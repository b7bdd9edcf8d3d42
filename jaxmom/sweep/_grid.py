"""The grid of a sweep: axes of hyperparameter values, their outer product, and the seed axis."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SEED = "seed"


INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
SEEDS = (0, 2**64 - 1)


def _integers(what: str, values: Any, low: int, high: int) -> np.ndarray:
    """Exact integers as the narrowest of int32, int64 (and, for seeds, uint64) that holds them all;
    a value outside ``low..high`` is refused, never wrapped."""
    ints = [int(v) for v in values]
    bad = [v for v in ints if not low <= v <= high]
    if bad:
        raise ValueError(f"{what} {bad[0]} is outside the allowed range {low}..{high}")
    for dtype, (lo, hi) in ((np.int32, INT32), (np.int64, INT64)):
        if all(lo <= v <= hi for v in ints):
            return np.array(ints, dtype)
    return np.array(ints, np.uint64)


def _is_integer(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


F32 = np.finfo(np.float32)


def check_float32(what: str, values: np.ndarray) -> None:
    """Refuse, in one line naming ``what``, a float that ``train_fn`` (which receives floats as
    float32) would not get: a finite value whose float32 is inf (beyond ±3.403e38), or a nonzero
    value whose float32 is 0 or subnormal (below 1.175e-38 in magnitude, which XLA may flush to
    0: an ``lr=1e-50`` would train with lr 0). Other values are rounded to float32 as usual."""
    values = np.asarray(values, np.float64).reshape(-1)
    with np.errstate(over="ignore", under="ignore"):
        f32 = values.astype(np.float32)
    over = np.isfinite(values) & ~np.isfinite(f32)
    if over.any():
        raise ValueError(
            f"{what} value {float(values[over][0])!r} does not fit in float32, which train_fn "
            f"receives (largest {float(F32.max):.4g})"
        )
    under = (values != 0) & (np.abs(f32) < F32.tiny)  # NaN compares False
    if under.any():
        raise ValueError(
            f"{what} value {float(values[under][0])!r} is below float32's smallest normal number "
            f"{float(F32.tiny):.4g}, which train_fn receives: it would train as 0 (or a subnormal "
            "that XLA may flush to 0)"
        )


def _exact_floats(what: str, values: list) -> None:
    """Refuse, in one line, a list that mixes bools with numbers (a bool would become 1 or 1.0),
    and an integer mixed with floats that float64 cannot hold exactly (e.g. 2**53 + 1)."""
    bools = [_is_bool(v) for v in values]
    if any(bools) and not all(bools):
        raise ValueError(
            f"{what} mixes bools and numbers {values[:4]!r}: give bools alone or numbers alone"
        )
    if all(_is_integer(v) for v in values) or not any(_is_integer(v) for v in values):
        return
    for v in values:
        if _is_integer(v):
            try:
                exact = float(v) == int(v)
            except OverflowError:
                exact = False
            if not exact:
                raise ValueError(
                    f"{what} value {int(v)} is mixed with floats, and float64 cannot hold it "
                    "exactly: give integers alone or exact floats"
                )


def _column(name: str, values: Any, what: str | None = None) -> np.ndarray:
    """Values of one hyperparameter as a 1-D float64, int32, int64 or bool array. Floats are fed to
    ``train_fn`` as float32 but kept exact here for tables and labels (a value float32 cannot
    hold is refused, see :func:`check_float32`); integers are kept exact (int64 only where a value
    needs it) and never wrap; bools stay bools (mixed with numbers: refused). ``what`` names the
    values in errors (default ``hyperparameter '<name>'``)."""
    what = f"hyperparameter {name!r}" if what is None else what
    if isinstance(values, (list, tuple)):
        _exact_floats(what, list(values))
    if isinstance(values, (list, tuple)) and values and all(_is_integer(v) for v in values):
        arr = _integers(f"{what} value", values, *INT64)  # no uint64 wrap
    else:
        try:
            arr = np.asarray(values)
        except OverflowError:
            raise ValueError(
                f"{what} has an integer outside the allowed range {INT64[0]}..{INT64[1]}"
            ) from None
        except ValueError:  # ragged nested lists
            raise ValueError(f"{what} needs a non-empty 1-D list of values") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} needs a non-empty 1-D list of values")
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        check_float32(what, arr)
        return arr
    if arr.dtype.kind in "iu":
        return _integers(f"{what} value", arr.tolist(), *INT64)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind == "O" and all(_is_integer(v) for v in arr.tolist()):
        return _integers(f"{what} value", arr.tolist(), *INT64)
    raise ValueError(f"{what} has non-numeric values {list(arr)[:3]}")


def _joined(name: str, pieces: Sequence[np.ndarray]) -> np.ndarray:
    """Parts of one grid column (a subset, or several columns end to end) as one column of the
    dtype a new grid gives those values: integers the narrowest exact type (int32, int64, and for
    seeds uint64), floats float64, bools bool."""
    if all(p.dtype.kind in "iu" for p in pieces):
        ints = [v for p in pieces for v in p.tolist()]
        return _integers(
            f"hyperparameter {name!r} value", ints, *(SEEDS if name == SEED else INT64)
        )
    col = np.concatenate(pieces)
    return col.astype(np.float64) if col.dtype.kind == "f" else col


def positions(indices: Any, axis: Axis) -> np.ndarray:
    """``indices`` of ``axis``'s cells (integers, negative ones counting from the end, any order,
    repeats allowed; or a slice) as non-negative int64 positions, or a one-line ``ValueError``."""
    n = len(axis)
    if isinstance(indices, slice):
        idx = np.arange(n)[indices]
    else:
        try:
            idx = np.asarray(indices)
        except (TypeError, ValueError):
            idx = np.asarray(None)
        if idx.ndim == 1 and idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"indices of axis {axis.name!r} must be a 1-D list of integers or a slice, "
                f"got {indices!r}"
            )
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        raise ValueError(f"index {bad[0]} is out of range for axis {axis.name!r} of length {n}")
    if idx.size == 0:
        raise ValueError(f"indices {indices!r} select no cell of axis {axis.name!r}")
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    nan = a.dtype.kind == "f" and b.dtype.kind == "f"
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=nan))


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
        """Add an axis named ``"seed"``: ``n`` means seeds ``0..n-1``; a list gives them.

        Seeds are integers in ``0..2**64-1``, kept exact; :func:`~jaxmom.sweep.sweep` turns each
        into its cell's key as ``jax.random.key`` does with the full value (see its ``seed``).
        """
        given = seeds
        if _is_integer(seeds):
            seeds = list(range(int(seeds)))  # type: ignore[arg-type]
        elif isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence | np.ndarray):
            raise ValueError(f"seeds must be a positive count or a list of integers, got {seeds!r}")
        seeds = list(seeds)
        if not seeds or not all(_is_integer(s) for s in seeds):
            raise ValueError(f"seeds must be a positive count or a list of integers, got {given!r}")
        col = _integers("seed", seeds, *SEEDS)
        return Grid(self.axes + (Axis(SEED, {SEED: col}),))

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

    def take(self, name: str, indices: Any) -> Grid:
        """This grid with only the cells ``indices`` of the axis that is or carries ``name``:
        integers (negative ones count from the end; any order; repeats allowed) or a slice, as
        ``numpy.take``. The other axes are unchanged. An unknown axis, an index out of range or an
        empty selection is a one-line ``ValueError``."""
        i = self.axis_of(name)
        axis = self.axes[i]
        idx = positions(indices, axis)
        cols = {p: _joined(p, [c[idx]]) for p, c in axis.columns.items()}
        return Grid(self.axes[:i] + (Axis(axis.name, cols),) + self.axes[i + 1 :])

    @classmethod
    def concat(cls, grids: Sequence[Grid], name: str) -> Grid:
        """``grids`` end to end along the axis that is or carries ``name``: they need the same
        axes, in the same order, carrying the same hyperparameters, and the same values on every
        other axis (else a one-line ``ValueError``). That axis's values are joined in order
        (repeats allowed)."""
        grids = list(grids)
        if not grids:
            raise ValueError("concat needs at least one grid")
        first = grids[0]
        i = first.axis_of(name)
        layout = lambda g: [(a.name, list(a.columns)) for a in g.axes]
        for g in grids[1:]:
            if layout(g) != layout(first):
                raise ValueError(
                    f"grids to concatenate need the same axes and hyperparameters, got "
                    f"{layout(first)} and {layout(g)}"
                )
            for j, (a, b) in enumerate(zip(first.axes, g.axes)):
                if j != i and not all(_same(a.columns[p], b.columns[p]) for p in a.columns):
                    raise ValueError(
                        f"grids to concatenate along {first.axes[i].name!r} need the same values "
                        f"on axis {a.name!r}"
                    )
        axis = first.axes[i]
        cols = {p: _joined(p, [g.axes[i].columns[p] for g in grids]) for p in axis.columns}
        return cls(first.axes[:i] + (Axis(axis.name, cols),) + first.axes[i + 1 :])

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
