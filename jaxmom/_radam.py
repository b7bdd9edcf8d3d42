"""RAdam, Adam with a rectified adaptive step, with torch.optim.RAdam's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    bias_correction,
    cast_to,
    chain_with_weight_decay,
    check,
    check_dtype,
    check_params,
    store,
    update_moment,
    update_second_moment,
    zeros_like,
)


class ScaleByRadamState(NamedTuple):
    """State of :func:`scale_by_radam`, the fields of ``optax.ScaleByAdamState``."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment


def scale_by_radam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""RAdam's rescaling of the gradient; see :func:`jaxmom.radam`.

    The :math:`\rho_t > 5` test is a ``jnp.where``, so traced :math:`\beta_2` works.

    Args:
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      eps: :math:`\epsilon` >= 0.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`v` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are the RAdam direction (before the
      learning rate).
    """
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("eps", eps)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByRadamState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype, name="mu_dtype"),
            nu=zeros_like(params, nu_dtype, squares=True),
        )

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1)
        nu = update_second_moment(updates, state.nu, b2)
        c1, c2 = bias_correction(b1, count), bias_correction(b2, count)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2.0 * count * b2**count / c2  # 2.0: 2 * count would wrap in int32
        rectify = rho_t > 5
        # where not rectified, any positive stand-ins keep the unused branch finite
        rt, ri = jnp.where(rectify, rho_t, 6.0), jnp.where(rectify, rho_inf, 6.0)
        r = jnp.sqrt((rt - 4) * (rt - 2) * ri / ((ri - 4) * (ri - 2) * rt))

        def direction(g, m, v):
            adaptive = r * jnp.sqrt(c2) / (jnp.sqrt(v) + eps)
            return cast_to(m / c1 * jnp.where(rectify, adaptive, 1.0), g.dtype)

        updates = jax.tree.map(direction, updates, mu, nu)
        return updates, ScaleByRadamState(count, store(mu, state.mu), store(nu, state.nu))

    return optax.GradientTransformation(init_fn, update_fn)


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""RAdam, exactly as ``torch.optim.RAdam``: SGD with momentum until the variance of the
    adaptive step is tractable, then Adam with a rectification factor.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,
        \qquad \rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},

        p_t = p_{t-1} - \eta_t \frac{m_t}{1 - \beta_1^t} \times
        \begin{cases}
        r_t \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}, \quad
        r_t = \sqrt{\dfrac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}
        & \rho_t > 5 \\
        1 & \text{otherwise}
        \end{cases}

    Weight decay adds :math:`wd\, p_{t-1}` to :math:`g_t` first or, with
    ``decoupled_weight_decay``, adds :math:`\eta_t\, wd\, p_{t-1}` to the step.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8, added to :math:`\sqrt{v_t}` (not debiased).
      weight_decay: :math:`wd` >= 0, default 0.
      decoupled_weight_decay: decay the parameters directly (AdamW-style) instead of the gradient.
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the second moment (static); None keeps the parameters'
        dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_radam, scale_by_learning_rate)``, the decay after
      ``scale_by_radam`` when decoupled.

    Equal to:
      * ``torch.optim.RAdam(params, lr, (b1, b2), eps, weight_decay, decoupled_weight_decay)``.
      * ``optax.radam(lr, b1, b2, eps)`` only when ``eps`` is 0 and :math:`\rho_t` never equals 5:
        Optax adds eps to the *debiased* :math:`\sqrt{\hat v_t}` (so its eps is ours times
        :math:`1/\sqrt{1 - \beta_2^t}`) and rectifies when :math:`\rho_t \ge 5`, not :math:`> 5`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.radam(0.25)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates).round(4)  # rho_1 = 1: the first step is lr * g
      Array([ 0.5, -1. ], dtype=float32)

    References:
      Liu et al., *On the variance of the adaptive learning rate and beyond*, ICLR 2020.
    """
    block = scale_by_radam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return chain_with_weight_decay(
        block, weight_decay, learning_rate, decoupled=decoupled_weight_decay
    )
