"""NAdam, Adam with Nesterov momentum, with torch.optim.NAdam's semantics."""

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


class ScaleByNadamState(NamedTuple):
    """State of :func:`scale_by_nadam`."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu_product: jax.Array  # the product of the momentum schedule, mu_1 ... mu_t
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment


def scale_by_nadam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    momentum_decay: jax.typing.ArrayLike = 4e-3,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""NAdam's rescaling of the gradient; see :func:`jaxmom.nadam`.

    Args:
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      eps: :math:`\epsilon` >= 0.
      momentum_decay: :math:`\psi` >= 0 in :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`v` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are the NAdam direction (before the
      learning rate).
    """
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("eps", eps)
    check("momentum_decay", momentum_decay)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByNadamState(
            count=jnp.zeros([], jnp.int32),
            mu_product=jnp.ones([]),
            mu=zeros_like(params, mu_dtype, name="mu_dtype"),
            nu=zeros_like(params, nu_dtype, squares=True),
        )

    def update_fn(updates, state, params=None):
        del params
        # both counts saturate at 2**31 - 1, as Optax's: count + 1 would wrap to -2**31
        count = optax.safe_increment(state.count)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (count * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** (optax.safe_increment(count) * momentum_decay))
        mu_product = (state.mu_product * mu_t).astype(state.mu_product.dtype)
        mu = update_moment(updates, state.mu, b1)
        nu = update_second_moment(updates, state.nu, b2)
        c2 = bias_correction(b2, count)
        g_weight = (1 - mu_t) / (1 - mu_product)
        m_weight = mu_next / (1 - mu_product * mu_next)

        def direction(g, m, v):
            denom = jnp.sqrt(v / c2) + eps
            return cast_to(g_weight * g / denom + m_weight * m / denom, g.dtype)

        updates = jax.tree.map(direction, updates, mu, nu)
        mu, nu = store(mu, state.mu), store(nu, state.nu)
        return updates, ScaleByNadamState(count=count, mu_product=mu_product, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    momentum_decay: jax.typing.ArrayLike = 4e-3,
    weight_decay: jax.typing.ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""NAdam, exactly as ``torch.optim.NAdam``: Adam with Nesterov's look-ahead on the momentum.

    .. math::
        \mu_t = \beta_1 \big(1 - \tfrac12\, 0.96^{t\psi}\big), \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,

        p_t = p_{t-1} - \eta_t \Big( \frac{1 - \mu_t}{1 - \prod_{i \le t} \mu_i}\, g_t
        + \frac{\mu_{t+1}}{1 - \prod_{i \le t+1} \mu_i}\, m_t \Big)
        \Big/ \Big( \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \Big)

    Weight decay adds :math:`wd\, p_{t-1}` to :math:`g_t` first or, with
    ``decoupled_weight_decay``, adds :math:`\eta_t\, wd\, p_{t-1}` to the step (NAdamW).

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 2e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8.
      momentum_decay: :math:`\psi` >= 0, default 4e-3; 0 gives the constant :math:`\mu = \beta_1/2`.
      weight_decay: :math:`wd` >= 0, default 0.
      decoupled_weight_decay: decay the parameters directly (AdamW-style) instead of the gradient.
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the second moment (static); None keeps the parameters'
        dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_nadam, scale_by_learning_rate)``, the decay after
      ``scale_by_nadam`` when decoupled.

    Equal to:
      * ``torch.optim.NAdam(params, lr, (b1, b2), eps, weight_decay, momentum_decay,
        decoupled_weight_decay)``.
      * Not ``optax.nadam``: Optax uses Dozat's simplified form with a constant :math:`\beta_1`,
        :math:`\hat m = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`,
        with no momentum schedule and no product of :math:`\mu`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.nadam(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates).round(4)  # lr * (1 + 0.0564) * sign(g)
      Array([ 0.8944, -1.8944], dtype=float32)

    References:
      Dozat, *Incorporating Nesterov momentum into Adam*, ICLR 2016 workshop.
    """
    block = scale_by_nadam(
        b1, b2, eps, momentum_decay=momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return chain_with_weight_decay(
        block, weight_decay, learning_rate, decoupled=decoupled_weight_decay
    )
