"""Lion, sign momentum, with lion_pytorch.Lion's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    cast_to,
    chain_with_weight_decay,
    check,
    check_dtype,
    check_params,
    store,
    update_moment,
    zeros_like,
)


class ScaleByLionState(NamedTuple):
    """State of :func:`scale_by_lion`, the fields of ``optax.ScaleByLionState``."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the momentum (an average with decay b2)


def scale_by_lion(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Lion's sign direction; see :func:`jaxmom.lion`.

    Args:
      b1: :math:`\beta_1` in [0, 1], the interpolation used for the step.
      b2: :math:`\beta_2` in [0, 1], the decay of the momentum kept in the state.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are
      :math:`\operatorname{sign}(\beta_1 m_{t-1} + (1 - \beta_1) g_t)`.
    """
    check("b1", b1, 0.0, 1.0, high_open=False)
    check("b2", b2, 0.0, 1.0, high_open=False)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)

    def init_fn(params):
        check_params(params)
        mu = zeros_like(params, mu_dtype, name="mu_dtype")
        return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update_fn(updates, state, params=None):
        del params
        interpolated = update_moment(updates, state.mu, b1)
        direction = jax.tree.map(lambda g, c: cast_to(jnp.sign(c), g.dtype), updates, interpolated)
        mu = store(update_moment(updates, state.mu, b2), state.mu)
        return direction, ScaleByLionState(count=optax.safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Lion (EvoLved Sign Momentum), exactly as ``lion_pytorch.Lion``.

    .. math::
        p_t = p_{t-1} - \eta_t \big( \operatorname{sign}(\beta_1 m_{t-1} + (1 - \beta_1) g_t)
        + wd\, p_{t-1} \big), \qquad m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t

    Every coordinate moves by exactly :math:`\eta_t` (plus the decay), so Lion wants a learning
    rate 3-10x smaller than AdamW's and a weight decay 3-10x larger. The decay is decoupled and
    multiplied by the learning rate.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-4.
      b1: :math:`\beta_1` in [0, 1], default 0.9.
      b2: :math:`\beta_2` in [0, 1], default 0.99.
      weight_decay: :math:`wd` >= 0, decoupled and multiplied by the learning rate, default 0.
      mu_dtype: the dtype of the momentum (static, Optax's name); None, the default, keeps the
        parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(scale_by_lion, add_weight_decay, scale_by_learning_rate)``.

    Equal to:
      * ``lion_pytorch.Lion(params, lr, (b1, b2), weight_decay)`` (its default
        ``decoupled_weight_decay=False``, which, despite the name, is the decay times lr above).
      * ``optax.lion(lr, b1, b2, mu_dtype, weight_decay=wd)``; Optax's default weight_decay is 1e-3, not 0.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.lion(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)
      Array([ 0.9, -1.9], dtype=float32)

    References:
      Chen et al., *Symbolic discovery of optimization algorithms*, NeurIPS 2023.
    """
    block = scale_by_lion(b1, b2, mu_dtype=mu_dtype)
    return chain_with_weight_decay(block, weight_decay, learning_rate, decoupled=True)
