"""Pieces every optimizer shares: hyperparameter checks, the learning rate, weight decay.

Hyperparameters are values, never Python branches: a float, a JAX array or a traced value all go
through the same arithmetic, so one compiled program serves every value. Only concrete values are
checked, and only at construction.
"""

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

ScalarOrSchedule = jax.typing.ArrayLike | optax.Schedule


def concrete(value):
    """Returns ``value`` as a float64 NumPy array, or None when it is traced or a schedule."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value, dtype=np.float64)


def check(name, value, low=0.0, high=np.inf, *, high_open=True):
    """Raises ValueError unless every concrete element of ``value`` lies in [low, high) or [low, high]."""
    interval = f"[{low:g}, {'inf' if high == np.inf else f'{high:g}'}{')' if high_open else ']'}"
    if not (
        callable(value) or isinstance(value, (numbers.Real, np.ndarray, np.generic, jax.Array))
    ):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    v = concrete(value)
    if v is None:
        return
    inside = np.isfinite(v) & (v >= low) & ((v < high) if high_open else (v <= high))
    if not np.all(inside):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")


def is_zero(value) -> bool:
    """True when ``value`` is concretely zero (a traced value never is)."""
    v = concrete(value)
    return v is not None and not np.any(v)


def learning_rate_at(learning_rate: ScalarOrSchedule, count):
    """The learning rate for the step that has ``count`` steps before it."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def update_moment(values, moments, decay):
    """``decay * m + (1 - decay) * x`` leaf by leaf, kept in the moment's dtype."""
    return jax.tree.map(lambda x, m: (decay * m + (1 - decay) * x).astype(m.dtype), values, moments)


def bias_correction(decay, count):
    """``1 - decay**count``, computed so that float32 keeps its digits when decay is near 1.

    ``1 - 0.999**t`` loses five digits to cancellation in float32; ``-expm1(t * log1p(-(1 - decay)))``
    does not, and for a Python-float decay ``1 - decay`` is even exact in double precision.
    """
    return -jnp.expm1(count * jnp.log1p(-(1 - decay)))


class ScaleByLearningRateState(NamedTuple):
    count: jax.Array  # steps taken so far, for schedules


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    r"""Descent step: :math:`u \leftarrow -\eta_t u`, with :math:`\eta_t` = ``learning_rate(t - 1)``
    for a schedule. Unlike ``optax.scale``, a float32 learning rate never promotes bf16 updates."""
    check("learning_rate", learning_rate)

    def init_fn(params):
        del params
        return ScaleByLearningRateState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        lr = learning_rate_at(learning_rate, state.count)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
        return updates, ScaleByLearningRateState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def add_weight_decay(weight_decay: jax.typing.ArrayLike = 0.0) -> optax.GradientTransformation:
    r"""PyTorch's ``weight_decay``, an L2 term added to the gradient: :math:`g \leftarrow g + wd\,p`.

    A concrete zero is skipped, as PyTorch's ``if weight_decay != 0`` does: ``g + 0 * p`` would
    cost a read of every parameter (and turn an infinite parameter into a NaN gradient). Otherwise
    ``update`` needs ``params``; a traced value is always applied.
    """
    check("weight_decay", weight_decay)

    def update_fn(updates, state, params=None):
        if is_zero(weight_decay):
            return updates, state
        if params is None:
            raise ValueError("weight_decay needs the parameters: call update(grads, state, params)")
        updates = jax.tree.map(lambda g, p: (g + weight_decay * p).astype(g.dtype), updates, params)
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
