"""Exponentially weighted averages, and SGD whose momentum is one (Andrew Ng's convention)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    bias_correction,
    cast_to,
    check,
    check_dtype,
    check_flag,
    check_params,
    scale_by_learning_rate,
    store,
    update_moment,
    zeros_like,
)


class EmaState(NamedTuple):
    """State of :func:`ema`, the fields of ``optax.EmaState``."""

    count: jax.typing.ArrayLike  # values seen so far
    ema: optax.Updates  # v_t, never debiased


def ema(
    decay: jax.typing.ArrayLike,
    *,
    debias: bool = True,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""The exponentially weighted average of what flows through it.

    .. math::
        v_0 = 0, \qquad v_t = \beta v_{t-1} + (1 - \beta)\, \theta_t, \qquad
        \text{output } v_t \ \text{or, with debias,} \ v_t / (1 - \beta^t)

    With ``beta`` = 0.9 it averages roughly the last :math:`1 / (1 - \beta)` = 10 values. The
    debiased value is a weighted mean whose weights sum to one, so its first value is
    :math:`\theta_1` and the start-up lag towards zero disappears.

    Args:
      decay: :math:`\beta` in [0, 1).
      debias: divide by :math:`1 - \beta^t` (bias correction), default True as in Optax.
      accumulator_dtype: the dtype of :math:`v`, static (Optax's name); None, the default, keeps
        the inputs' dtypes. The average is taken in the wider of it and the input's dtype, and
        the output keeps the input's dtype.

    Returns:
      An ``optax.GradientTransformation``; the state keeps the raw average.

    Equal to ``optax.ema(decay, debias=debias, accumulator_dtype=accumulator_dtype)``, defaults
    included: ``ema(decay)`` is ``optax.ema(decay)``.

    Example:
      >>> import jax.numpy as jnp, jaxmom
      >>> tx = jaxmom.ema(0.9)
      >>> out, state = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> print(out.round(5))  # the first debiased value is the first observation
      [3.]
    """
    check("decay", decay, 0.0, 1.0)
    check_flag("debias", debias)
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        check_params(params)
        average = zeros_like(params, accumulator_dtype, name="accumulator_dtype")
        return EmaState(count=jnp.zeros([], jnp.int32), ema=average)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        new = update_moment(updates, state.ema, decay)
        c = bias_correction(decay, count) if debias else 1
        out = jax.tree.map(lambda g, v: cast_to(v / c, g.dtype), updates, new)
        return out, EmaState(count=count, ema=store(new, state.ema))

    return optax.GradientTransformation(init_fn, update_fn)


def ema_sgd(
    learning_rate: ScalarOrSchedule,
    beta: jax.typing.ArrayLike = 0.9,
    *,
    debias: bool = False,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Momentum as an exponentially weighted average of gradients (Andrew Ng's course).

    .. math::
        v_t = \beta v_{t-1} + (1 - \beta) g_t, \qquad
        p_t = p_{t-1} - \eta_t \hat v_t, \quad \hat v_t = v_t \ \text{or} \ v_t / (1 - \beta^t)

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule.
      beta: :math:`\beta` in [0, 1), default 0.9.
      debias: bias-correct :math:`v_t`, as Adam does for its first moment. Default False, the
        course's form (unlike :func:`ema`, whose default follows ``optax.ema``).
      accumulator_dtype: the dtype of :math:`v`, static (Optax's name); None, the default, keeps
        the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``: ``chain(ema, scale_by_learning_rate)``.

    Equal to:
      * ``chain(optax.ema(beta, debias=debias), optax.scale_by_learning_rate(lr))``; mind that
        ``optax.ema`` debiases by default and ``ema_sgd`` does not;
      * with ``debias=False`` and a constant learning rate, ``jaxmom.sgd(lr * (1 - beta), beta)``,
        ``torch.optim.SGD(lr=lr * (1 - beta), momentum=beta)`` and ``optax.sgd`` likewise,
        first step included. ``torch.optim.SGD(momentum=beta, dampening=beta)`` has the same
        recurrence but starts from :math:`b_1 = g_1`, not :math:`(1 - \beta) g_1`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.ema_sgd(1.0, beta=0.9)
      >>> params = jnp.array([1.0])
      >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params))
      >>> optax.apply_updates(params, updates)
      Array([0.8], dtype=float32)
    """
    check("beta", beta, 0.0, 1.0)
    check_flag("debias", debias)
    return optax.chain(
        ema(beta, debias=debias, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )
