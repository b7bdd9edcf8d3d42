"""Adamax, Adam with the infinity norm, with torch.optim.Adamax's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    bias_correction,
    cast_to,
    check,
    check_dtype,
    check_params,
    scale_by_learning_rate,
    store,
    update_moment,
    widened,
    zeros_like,
)


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the first moment
    inf_norm: optax.Updates  # u, the decayed running maximum of |g| + eps


def scale_by_adamax(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adamax's rescaling of the gradient; see :func:`jaxmom.adamax`.

    Args:
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      eps: :math:`\epsilon` >= 0.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`u` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are
      :math:`m_t / ((1 - \beta_1^t) u_t)`.
    """
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("eps", eps)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByAdamaxState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype, name="mu_dtype"),
            inf_norm=zeros_like(params, nu_dtype, squares=True),
        )

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1)

        def infinity_norm(g, u):
            a, u = widened(jnp.abs(g), u)
            return jnp.maximum(b2 * u, a + eps).astype(u.dtype)

        inf_norm = jax.tree.map(infinity_norm, updates, state.inf_norm)
        c1 = bias_correction(b1, count)
        updates = jax.tree.map(lambda g, m, u: cast_to(m / c1 / u, g.dtype), updates, mu, inf_norm)
        mu, inf_norm = store(mu, state.mu), store(inf_norm, state.inf_norm)
        return updates, ScaleByAdamaxState(count=count, mu=mu, inf_norm=inf_norm)

    return optax.GradientTransformation(init_fn, update_fn)


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adamax, exactly as ``torch.optim.Adamax``: Adam with an infinity-norm second moment.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        u_t = \max(\beta_2 u_{t-1},\, |g_t| + \epsilon),

        p_t = p_{t-1} - \frac{\eta_t}{1 - \beta_1^t} \frac{m_t}{u_t}

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 2e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8, added to :math:`|g_t|` inside the maximum.
      weight_decay: L2 coefficient added to the gradient, default 0.
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the infinity norm :math:`u` (static); None keeps the
        parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_adamax, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.Adamax(params, lr, (b1, b2), eps, weight_decay)``.
      * ``optax.adamax(lr, b1, b2, eps)`` when ``weight_decay`` is 0 (Optax also puts eps inside
        the maximum).

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.adamax(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)  # the first step is lr * sign(g)
      Array([ 0.9, -1.9], dtype=float32)

    References:
      Kingma and Ba, *Adam: A method for stochastic optimization*, ICLR 2015, section 7.1.
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )
