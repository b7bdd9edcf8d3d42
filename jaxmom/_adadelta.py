"""Adadelta, with torch.optim.Adadelta's semantics (which Optax shares)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    check,
    check_dtype,
    check_params,
    scale_by_learning_rate,
    store,
    update_second_moment,
    zeros_like,
)


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`, with PyTorch's names (Optax's ``e_g``, ``e_x``)."""

    square_avg: optax.Updates  # E[g^2]
    acc_delta: optax.Updates  # E[delta^2]


def scale_by_adadelta(
    rho: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-6,
    *,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adadelta's unit-correcting rescaling.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) |g_t|^2, \qquad
        \delta_t = \frac{\sqrt{E[\delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t,
        \qquad E[\delta^2]_t = \rho E[\delta^2]_{t-1} + (1 - \rho) |\delta_t|^2

    Args:
      rho: :math:`\rho` in [0, 1], default 0.9.
      eps: :math:`\epsilon` >= 0, default 1e-6.
      nu_dtype: the real dtype of both averages (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`\delta_t`, with a
      :class:`ScaleByAdadeltaState`.

    Equal to ``optax.scale_by_adadelta(rho, eps)`` on real parameters, defaults included. On complex
    ones Optax squares :math:`g^2` (complex), jaxmom :math:`|g|^2`, as Optax's Adam and RMSprop do.
    """
    check("rho", rho, 0.0, 1.0, high_open=False)
    check("eps", eps)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByAdadeltaState(
            square_avg=zeros_like(params, nu_dtype, squares=True),
            acc_delta=zeros_like(params, nu_dtype, squares=True),
        )

    def update_fn(updates, state, params=None):
        del params
        square_avg = update_second_moment(updates, state.square_avg, rho)
        delta = jax.tree.map(
            lambda g, eg, ex: (jnp.sqrt(ex + eps) / jnp.sqrt(eg + eps) * g).astype(g.dtype),
            updates,
            square_avg,
            state.acc_delta,
        )
        acc_delta = update_second_moment(delta, state.acc_delta, rho)
        return delta, ScaleByAdadeltaState(
            store(square_avg, state.square_avg), store(acc_delta, state.acc_delta)
        )

    return optax.GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-6,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adadelta, exactly as ``torch.optim.Adadelta``.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) |g_t|^2, \qquad
        \delta_t = \frac{\sqrt{E[\delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t,

        E[\delta^2]_t = \rho E[\delta^2]_{t-1} + (1 - \rho) |\delta_t|^2, \qquad
        p_t = p_{t-1} - \eta_t \delta_t

    :math:`E[\delta^2]` tracks :math:`\delta` *before* the learning rate scales it.
    ``weight_decay`` adds :math:`wd\, p` to the gradient first.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1.0.
      rho: :math:`\rho` in [0, 1], default 0.9.
      eps: :math:`\epsilon` >= 0, default 1e-6.
      weight_decay: L2 coefficient added to the gradient, default 0.
      nu_dtype: the real dtype of :math:`E[g^2]` and :math:`E[\delta^2]` (static); None, the
        default, keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``.

    Equal to ``torch.optim.Adadelta`` (defaults included) and ``optax.adadelta`` with the same
    values on real parameters. Mind Optax's default ``learning_rate=None``: it applies no
    descent scaling, so ``optax.adadelta()`` steps *up* the gradient; pass ``1.0``. On
    complex ones PyTorch treats the real and imaginary parts as two real parameters and Optax
    squares :math:`g^2`; jaxmom squares :math:`|g|^2`, as Optax's Adam does.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.adadelta()
      >>> params = jnp.array([1.0])
      >>> updates, state = tx.update(jnp.array([2.0]), tx.init(params))
      >>> optax.apply_updates(params, updates)  # 1 - sqrt(1e-6 / (0.4 + 1e-6)) * 2
      Array([0.99683774], dtype=float32)

    References:
      Zeiler, *ADADELTA: An adaptive learning rate method*, 2012.
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_adadelta(rho, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )
