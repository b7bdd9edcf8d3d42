"""Quasi-hyperbolic momentum (QHM), with qhoptim.pyt.QHM's semantics."""

from typing import NamedTuple

import jax
import numpy as np
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


class ScaleByQhmState(NamedTuple):
    """State of :func:`scale_by_qhm`."""

    buffer: optax.Updates  # b, the exponentially weighted average of gradients


def scale_by_qhm(
    momentum: jax.typing.ArrayLike = 0.999,
    nu: jax.typing.ArrayLike = 0.7,
    *,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""QHM's direction, an average of the gradient and its EMA; see :func:`jaxmom.qhm`.

    Args:
      momentum: :math:`\beta` in [0, 1].
      nu: :math:`\nu`, any finite number (usually in [0, 1]).
      accumulator_dtype: the dtype of :math:`b` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`(1 - \nu) g_t + \nu b_t`.
    """
    check("momentum", momentum, 0.0, 1.0, high_open=False)
    check("nu", nu, -np.inf, np.inf)
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        check_params(params)
        return ScaleByQhmState(zeros_like(params, accumulator_dtype, name="accumulator_dtype"))

    def update_fn(updates, state, params=None):
        del params
        buffer = update_moment(updates, state.buffer, momentum)
        updates = jax.tree.map(
            lambda g, b: cast_to((1 - nu) * g + nu * b, g.dtype), updates, buffer
        )
        return updates, ScaleByQhmState(buffer=store(buffer, state.buffer))

    return optax.GradientTransformation(init_fn, update_fn)


def qhm(
    learning_rate: ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.999,
    nu: jax.typing.ArrayLike = 0.7,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic momentum, exactly as ``qhoptim.pyt.QHM`` (the paper authors' code).

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad b_t = \beta b_{t-1} + (1 - \beta) g_t, \qquad
        p_t = p_{t-1} - \eta_t \big( (1 - \nu) g_t + \nu b_t \big)

    The buffer is an exponentially weighted average (dampened momentum), so the learning rate is
    :math:`1/(1-\beta)` times that of ``torch.optim.SGD`` with the same momentum: SGD at
    (0.1, 0.9) is QHM at (1.0, 0.9, 1.0). :math:`\nu` = 0.7, :math:`\beta` = 0.999 is the paper's
    recommended start.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule (qhoptim has no default).
      momentum: :math:`\beta` in [0, 1], default 0.999.
      nu: :math:`\nu`, the immediate discount, default 0.7; 0 is SGD, 1 is EMA momentum.
      weight_decay: :math:`wd` >= 0, default 0, added to the gradient.
      decoupled_weight_decay: decay the parameters directly, :math:`p \leftarrow (1 - \eta\,wd)p`,
        qhoptim's ``weight_decay_type="direct"``.
      accumulator_dtype: the dtype of the buffer (static, Optax's name); None, the default,
        keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_qhm, scale_by_learning_rate)``, the decay after
      ``scale_by_qhm`` when decoupled.

    Equal to:
      * ``qhoptim.pyt.QHM(params, lr, momentum, nu, weight_decay, weight_decay_type)`` with
        ``"grad"`` (the default) or ``"direct"`` (``decoupled_weight_decay=True``).
      * ``jaxmom.ema_sgd(lr, momentum)`` with ``nu=1``, and ``jaxmom.sgd(lr)`` with ``nu=0``.
      * Nesterov's ``jaxmom.sgd(lr * (1 - beta), beta, nesterov=True)`` with ``nu = beta`` under a
        constant learning rate (the paper's section 3).

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.qhm(1.0, momentum=0.9, nu=0.7)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates).round(4)  # p - (0.3 + 0.7 * 0.1) * g
      Array([ 0.26, -0.52], dtype=float32)

    References:
      Ma and Yarats, *Quasi-hyperbolic momentum and Adam for deep learning*, ICLR 2019.
    """
    block = scale_by_qhm(momentum, nu, accumulator_dtype=accumulator_dtype)
    return chain_with_weight_decay(
        block, weight_decay, learning_rate, decoupled=decoupled_weight_decay
    )
