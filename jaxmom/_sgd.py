"""SGD with momentum, the PyTorch / Optax convention: the learning rate sits outside the buffer."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    check,
    concrete,
    is_zero,
    scale_by_learning_rate,
)


class ScaleByMomentumState(NamedTuple):
    count: jax.Array  # steps taken so far
    buffer: optax.Updates  # b, the momentum buffer


def scale_by_momentum(
    momentum: jax.typing.ArrayLike = 0.0,
    dampening: jax.typing.ArrayLike = 0.0,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    r"""The momentum buffer of ``torch.optim.SGD``, first step included.

    .. math::
        b_1 = g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        d_t = g_t + \mu b_t \ \text{(nesterov)} \ \text{else} \ b_t

    With ``dampening`` 0 this is ``optax.trace(momentum, nesterov)``.

    Args:
      momentum: :math:`\mu`, in [0, 1).
      dampening: :math:`\tau`, in [0, 1]; not applied on the first step, as in PyTorch.
      nesterov: use the Nesterov direction. Needs ``momentum`` > 0 and ``dampening`` 0.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`d_t`.
    """
    check("momentum", momentum, 0.0, 1.0)
    check("dampening", dampening, 0.0, 1.0, high_open=False)
    if nesterov and concrete(dampening) is not None and not is_zero(dampening):
        raise ValueError(f"nesterov needs dampening == 0, got dampening={dampening!r}")
    if nesterov and is_zero(momentum):
        raise ValueError("nesterov needs momentum > 0, got momentum=0")

    def init_fn(params):
        return ScaleByMomentumState(
            count=jnp.zeros([], jnp.int32), buffer=jax.tree.map(jnp.zeros_like, params)
        )

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        buffer = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1 - dampening) * g).astype(b.dtype),
            updates,
            state.buffer,
        )
        if nesterov:
            updates = jax.tree.map(lambda g, b: (g + momentum * b).astype(g.dtype), updates, buffer)
        else:
            updates = buffer
        return updates, ScaleByMomentumState(count=optax.safe_increment(state.count), buffer=buffer)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.0,
    *,
    dampening: jax.typing.ArrayLike = 0.0,
    nesterov: bool = False,
    weight_decay: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformation:
    r"""Stochastic gradient descent with momentum, exactly as ``torch.optim.SGD``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad
        b_1 = g_1, \quad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        p_t = p_{t-1} - \eta_t\, d_t, \quad d_t = g_t + \mu b_t \ \text{(nesterov)} \ \text{else} \ b_t

    The learning rate is outside the buffer, so a schedule rescales the whole history at once.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule.
      momentum: :math:`\mu` in [0, 1). Default 0: plain SGD.
      dampening: :math:`\tau` in [0, 1], default 0; PyTorch skips it on the first step, and so do we.
      nesterov: Nesterov's direction; needs momentum > 0 and dampening 0 (as PyTorch).
      weight_decay: L2 coefficient added to the gradient, default 0.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_momentum, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)`` with the same
        values, first step included.
      * ``optax.sgd(lr, momentum, nesterov=nesterov)`` when dampening and weight_decay are 0.
      * ``jaxmom.sutskever_sgd(lr, momentum)`` and ``jaxmom.ema_sgd(lr / (1 - momentum), momentum)``
        under a constant learning rate; see :func:`jaxmom.convert_momentum`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.sgd(0.1, momentum=0.9)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(2 * params, state, params)  # gradient of sum(p ** 2)
      >>> optax.apply_updates(params, updates)
      Array([ 0.8, -1.6], dtype=float32)

    References:
      Polyak, *Some methods of speeding up the convergence of iteration methods*, 1964.
      Sutskever et al., *On the importance of initialization and momentum in deep learning*, 2013.
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_momentum(momentum, dampening, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )
