"""SGD with momentum, the PyTorch / Optax convention: the learning rate sits outside the buffer."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    cast_to,
    check,
    check_dtype,
    check_flag,
    check_params,
    concrete,
    is_static_zero,
    is_zero,
    scale_by_learning_rate,
    store,
    widened,
    zeros_like,
)


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: PyTorch's ``momentum_buffer`` and the step count."""

    count: jax.typing.ArrayLike  # steps taken so far; the first step sets b_1 = g_1
    buffer: optax.Updates  # b, the momentum buffer, like the parameters


def scale_by_momentum(
    momentum: jax.typing.ArrayLike = 0.0,
    dampening: jax.typing.ArrayLike = 0.0,
    *,
    nesterov: bool = False,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""The momentum buffer of ``torch.optim.SGD``, first step included.

    .. math::
        b_1 = g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        d_t = g_t + \mu b_t \ \text{(nesterov)} \ \text{else} \ b_t

    With :math:`\mu = 0`, :math:`d_t = g_t` whatever :math:`\tau`: PyTorch keeps no buffer then,
    so it never applies the dampening. A traced :math:`\mu` that is 0 gives the same.

    The state's structure follows the static values only: a Python or NumPy ``momentum`` of 0
    keeps no state at all (``optax.EmptyState``), as ``torch.optim.SGD`` and ``optax.sgd`` keep
    no buffer; a JAX-array or traced ``momentum`` always keeps the buffer and the count.

    Args:
      momentum: :math:`\mu`, in [0, 1). Default 0: the updates pass through.
      dampening: :math:`\tau`, in [0, 1]; not applied on the first step, as in PyTorch.
      nesterov: use the Nesterov direction. Needs ``momentum`` > 0 and ``dampening`` 0.
      accumulator_dtype: the dtype of the buffer :math:`b` (static); None, the default, keeps
        the parameters' dtypes. The step is computed in the wider of it and the gradient's.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`d_t`, with a
      :class:`ScaleByMomentumState` (or ``optax.EmptyState`` for a static zero momentum).

    Equal to ``optax.trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)``
    when ``dampening`` is 0; both default to ``nesterov=False``.
    """
    check("momentum", momentum, 0.0, 1.0)
    check("dampening", dampening, 0.0, 1.0, high_open=False)
    check_flag("nesterov", nesterov)
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype)
    if nesterov and concrete(dampening) is not None and not is_zero(dampening):
        raise ValueError(f"nesterov needs dampening == 0, got dampening={dampening!r}")
    if nesterov and is_zero(momentum):
        raise ValueError("nesterov needs momentum > 0, got momentum=0")
    if is_static_zero(momentum):
        return optax.GradientTransformation(
            lambda params: check_params(params) or optax.EmptyState(),
            lambda updates, state, params=None: (updates, state),
        )

    def init_fn(params):
        check_params(params)
        buffer = zeros_like(params, accumulator_dtype, name="accumulator_dtype")
        return ScaleByMomentumState(count=jnp.zeros([], jnp.int32), buffer=buffer)

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        # torch ignores dampening when momentum == 0 (it keeps no buffer): so must a traced 0.
        # The first step, b_1 = 0 * b_0 + 1 * g_1 = g_1 (b_0 is zero), by scalar coefficients
        # rather than a select over the tensors: XLA fuses a select with a transposed layout badly
        # (jaxmom.sweep keeps kernels transposed through an epoch).
        decay = jnp.where(first, 0.0, momentum)
        kept = jnp.where(first | (momentum == 0), 1.0, 1 - dampening)

        def accumulate(g, b):
            g, b = widened(g, b)
            return (decay * b + kept * g).astype(b.dtype)

        buffer = jax.tree.map(accumulate, updates, state.buffer)
        direction = (lambda g, b: g + momentum * b) if nesterov else (lambda g, b: b)
        updates = jax.tree.map(lambda g, b: cast_to(direction(g, b), g.dtype), updates, buffer)
        count = optax.safe_increment(state.count)
        return updates, ScaleByMomentumState(count=count, buffer=store(buffer, state.buffer))

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.0,
    *,
    dampening: jax.typing.ArrayLike = 0.0,
    nesterov: bool = False,
    weight_decay: jax.typing.ArrayLike = 0.0,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
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
      dampening: :math:`\tau` in [0, 1], default 0. PyTorch skips it on the first step and when
        :math:`\mu = 0`, and so do we.
      nesterov: Nesterov's direction; needs momentum > 0 and dampening 0 (as PyTorch).
      weight_decay: L2 coefficient added to the gradient, default 0.
      accumulator_dtype: the dtype of the momentum buffer, static (Optax's name); None, the
        default, keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_momentum, scale_by_learning_rate)``. A Python or NumPy
      ``momentum`` of 0 keeps no buffer; the state's structure follows such static values and the
      flags, never traced values.

    Equal to:
      * ``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)`` with the same
        values, first step included; ``sgd(lr)`` is ``torch.optim.SGD(params, lr)``.
      * ``optax.sgd(lr, momentum, nesterov=nesterov, accumulator_dtype=...)`` when dampening and
        weight_decay are 0; ``sgd(lr)`` is ``optax.sgd(lr)``.
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
        scale_by_momentum(
            momentum, dampening, nesterov=nesterov, accumulator_dtype=accumulator_dtype
        ),
        scale_by_learning_rate(learning_rate),
    )
