"""Sampled search spaces: random or Sobol trials on one grid axis.

A space maps a point ``u`` of the unit interval to a value: :func:`uniform` linearly,
:func:`log_uniform` linearly in ``log``, :func:`choice` to one of its values in equal parts.
:func:`sample` draws ``n`` points of the unit cube, pseudo-randomly (NumPy's PCG64) or from a
scrambled Sobol sequence (``scipy.stats.qmc``), maps each coordinate through its space, and returns
a :class:`~jaxmom.sweep.Grid` with one axis, ``"trial"``, carrying every hyperparameter zipped. It is
a grid like any other: ``with_seeds``, :func:`~jaxmom.sweep.sweep`, tables and plots work on it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable

import numpy as np

from jaxmom.sweep._grid import Grid, _column, check_float32, zipped

TRIAL = "trial"
METHODS = ("random", "sobol")
# The most trials one sample() draws: a million trials, each a training run, is beyond any sweep,
# and a mistyped n (2**40) is refused in one line before anything is allocated.
MAX_TRIALS = 2**20


def _bound(space: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{space}(): {name} must be a finite number, got {value!r}")
    check_float32(f"{space}(): {name}", np.array([float(value)]))  # train_fn gets float32
    return float(value)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Values spread evenly over ``[lo, hi)``."""

    lo: float
    hi: float

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.lo + u * (self.hi - self.lo)


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """Values whose logarithm is spread evenly over ``[log lo, log hi)``."""

    lo: float
    hi: float

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return np.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values``, each with the same probability."""

    values: tuple

    def __call__(self, u: np.ndarray) -> np.ndarray:
        index = np.minimum((u * len(self.values)).astype(np.int64), len(self.values) - 1)
        return np.asarray(self.values)[index]


Space = Uniform | LogUniform | Choice


def uniform(lo: float, hi: float) -> Uniform:
    """A hyperparameter drawn evenly from ``[lo, hi)``, e.g. ``momentum=uniform(0, 0.99)``."""
    lo, hi = _bound("uniform", "lo", lo), _bound("uniform", "hi", hi)
    if not lo < hi:
        raise ValueError(f"uniform(): lo must be below hi, got lo={lo!r}, hi={hi!r}")
    return Uniform(lo, hi)


def log_uniform(lo: float, hi: float) -> LogUniform:
    """A hyperparameter whose logarithm is drawn evenly, e.g. ``lr=log_uniform(1e-4, 1)``: each
    decade gets the same share of trials."""
    lo, hi = _bound("log_uniform", "lo", lo), _bound("log_uniform", "hi", hi)
    if not 0 < lo < hi:
        raise ValueError(f"log_uniform(): needs 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    return LogUniform(lo, hi)


def choice(values) -> Choice:
    """A hyperparameter drawn from a flat list of numbers (or of bools), each value equally likely.

    Every value is kept exact or refused in one line: bools mixed with numbers, a pair (or any
    nested value), an integer outside int64 or one that float64 cannot hold exactly beside floats,
    and a float that float32 (which ``train_fn`` receives) cannot hold."""
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim else [values.item()]
    elif isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError("choice() needs at least one value")
    values = [v.item() if isinstance(v, np.ndarray) and not v.ndim else v for v in values]
    nested = [v for v in values if isinstance(v, Iterable) and not isinstance(v, (str, bytes))]
    if nested:
        raise ValueError(
            f"choice() takes single numbers or bools, got {nested[0]!r}; to draw several "
            "hyperparameters together, draw an index and look the values up in train_fn"
        )
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    bad = [v for v in values if not isinstance(v, numbers.Number) or isinstance(v, complex)]
    if bad:
        raise ValueError(f"choice() takes numbers or bools, got {bad[0]!r}")
    return Choice(tuple(_column("", values, what="choice()").tolist()))


def sample(n: int, /, method: str = "random", seed: int = 0, **space: Space) -> Grid:
    """``n`` trials drawn from ``space``, as a grid with one axis named ``"trial"``.

    Args:
      n: the number of trials, at most :data:`MAX_TRIALS` (``2**20``). With ``method="sobol"``, a power of two keeps the sequence
        balanced (every coordinate then puts exactly one trial in each of ``n`` equal bins);
        SciPy warns otherwise.
      method: ``"random"`` (independent uniform draws from NumPy's ``default_rng(seed)``) or
        ``"sobol"`` (a scrambled Sobol sequence from ``scipy.stats.qmc.Sobol``, which covers the
        space more evenly than random draws).
      seed: the seed of the draws (or the scrambling); the same seed gives the same trials.
      **space: each hyperparameter's space: :func:`uniform`, :func:`log_uniform` or
        :func:`choice`.

    Returns:
      A :class:`~jaxmom.sweep.Grid` of shape ``(n,)`` whose axis ``"trial"`` carries every
      hyperparameter.

    Example:
      >>> from jaxmom import sweep
      >>> grid = sweep.sample(16, "sobol", lr=sweep.log_uniform(1e-4, 1), momentum=sweep.uniform(0, 0.99))
      >>> grid
      Grid(trial=16; 16 configurations)
      >>> grid.with_seeds(2).shape
      (16, 2)
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"sample(): n must be a positive integer, got {n!r}")
    if n > MAX_TRIALS:
        raise ValueError(f"sample(): n={n} is above the most trials one call draws, {MAX_TRIALS}")
    if method not in METHODS:
        raise ValueError(f"sample(): method must be 'random' or 'sobol', got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"sample(): seed must be a non-negative integer, got {seed!r}")
    if not space:
        raise ValueError("sample() needs at least one hyperparameter space")
    for name, s in space.items():
        if not isinstance(s, Uniform | LogUniform | Choice):
            raise ValueError(
                f"sample(): {name}={s!r} is not a space; use sweep.uniform(lo, hi), "
                "sweep.log_uniform(lo, hi) or sweep.choice([...])"
            )
    rng = np.random.default_rng(int(seed))
    if method == "random":
        u = rng.random((int(n), len(space)))
    else:
        from scipy.stats import qmc

        u = qmc.Sobol(len(space), scramble=True, rng=rng).random(int(n))
    return zipped(axis=TRIAL, **{k: s(u[:, i]).tolist() for i, (k, s) in enumerate(space.items())})
