"""RMSprop, with torch.optim.RMSprop's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    check,
    scale_by_learning_rate,
    update_moment,
)
from jaxmom._sgd import scale_by_momentum


class ScaleByRmsState(NamedTuple):
    square_avg: optax.Updates  # v, the average of g^2
    grad_avg: optax.Updates | None  # m, the average of g (centered only)


def scale_by_rms(
    alpha: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    centered: bool = False,
    eps_in_sqrt: bool = False,
) -> optax.GradientTransformation:
    r"""Divides by a running root-mean-square of the gradient; see :func:`jaxmom.rmsprop`."""
    check("alpha", alpha, 0.0, 1.0, high_open=False)
    check("eps", eps)

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ScaleByRmsState(square_avg=zeros, grad_avg=zeros if centered else None)

    def update_fn(updates, state, params=None):
        del params
        square_avg = update_moment(jax.tree.map(jnp.square, updates), state.square_avg, alpha)
        variance, grad_avg = square_avg, None
        if centered:
            grad_avg = update_moment(updates, state.grad_avg, alpha)
            variance = jax.tree.map(lambda v, m: v - m * m, square_avg, grad_avg)

        def scale(g, v):
            denom = jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps
            return (g / denom).astype(g.dtype)

        updates = jax.tree.map(scale, updates, variance)
        return updates, ScaleByRmsState(square_avg=square_avg, grad_avg=grad_avg)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    alpha: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    centered: bool = False,
    momentum: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = False,
) -> optax.GradientTransformation:
    r"""RMSprop, exactly as ``torch.optim.RMSprop``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2,
        \qquad \tilde v_t = v_t - m_t^2 \ \text{(centered, with } m_t = \alpha m_{t-1} +
        (1 - \alpha) g_t) \ \text{else} \ v_t,

        a_t = \sqrt{\tilde v_t} + \epsilon \ \ (\text{or} \ \sqrt{\tilde v_t + \epsilon}
        \ \text{with eps\_in\_sqrt}), \qquad
        b_t = \mu b_{t-1} + g_t / a_t, \qquad p_t = p_{t-1} - \eta_t b_t

    With momentum 0, :math:`b_t = g_t / a_t`: the buffer is always kept, so momentum may be traced.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-2.
      alpha: :math:`\alpha` in [0, 1], default 0.99.
      eps: :math:`\epsilon` >= 0, default 1e-8, outside the root unless ``eps_in_sqrt``.
      centered: divide by the estimated standard deviation instead of the RMS.
      momentum: :math:`\mu` in [0, 1), default 0.
      weight_decay: L2 coefficient added to the gradient, default 0.
      eps_in_sqrt: put eps inside the root, :math:`g / \sqrt{v + \epsilon}`, as Optax does.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_rms, scale_by_momentum, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum, centered)``.
      * ``optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt, centered=centered,
        momentum=momentum)`` under a constant learning rate. Optax's defaults differ
        (decay 0.9, ``eps_in_sqrt=True``), and its momentum buffer holds ``lr * b``: under a
        schedule the two differ.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.rmsprop(0.01, alpha=0.75, eps=0.0)
      >>> params = jnp.array([1.0])
      >>> updates, state = tx.update(jnp.array([3.0]), tx.init(params))
      >>> optax.apply_updates(params, updates)  # 1 - 0.01 * 3 / sqrt(0.25 * 9)
      Array([0.98], dtype=float32)

    References:
      Hinton, *Neural networks for machine learning*, lecture 6e, 2012.
      Graves, *Generating sequences with recurrent neural networks*, 2013 (centered).
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_rms(alpha, eps, centered=centered, eps_in_sqrt=eps_in_sqrt),
        scale_by_momentum(momentum),
        scale_by_learning_rate(learning_rate),
    )
