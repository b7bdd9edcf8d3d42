"""Adam, with torch.optim.Adam's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    bias_correction,
    check,
    scale_by_learning_rate,
    update_moment,
)


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # steps taken so far
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment
    nu_max: optax.Updates | None  # the running maximum of v (amsgrad only)


def scale_by_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    amsgrad: bool = False,
    debias: bool = True,
    eps_in_sqrt: bool = False,
) -> optax.GradientTransformation:
    r"""Adam's rescaling of the gradient; see :func:`jaxmom.adam`."""
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("eps", eps)

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros if amsgrad else None
        )

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1)
        nu = update_moment(jax.tree.map(jnp.square, updates), state.nu, b2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else None
        c1, c2 = (bias_correction(b1, count), bias_correction(b2, count)) if debias else (1, 1)

        def direction(m, v):
            m_hat, v_hat = m / c1, v / c2
            denom = jnp.sqrt(v_hat + eps) if eps_in_sqrt else jnp.sqrt(v_hat) + eps
            return (m_hat / denom).astype(m.dtype)

        updates = jax.tree.map(direction, mu, nu_max if amsgrad else nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    amsgrad: bool = False,
    weight_decay: jax.typing.ArrayLike = 0.0,
    bias_correction: bool = True,
    eps_in_sqrt: bool = False,
) -> optax.GradientTransformation:
    r"""Adam, exactly as ``torch.optim.Adam``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,

        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t}, \qquad
        p_t = p_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    With ``amsgrad``, :math:`v_t` in :math:`\hat v_t` is replaced by
    :math:`\max(v_1, \dots, v_t)`, the maximum of the *raw* second moments, as PyTorch does.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8.
      amsgrad: use the running maximum of the second moment.
      weight_decay: L2 coefficient added to the gradient (not AdamW's decoupled decay), default 0.
      bias_correction: divide by :math:`1 - \beta^t`; False gives :math:`\hat m = m, \hat v = v`.
      eps_in_sqrt: :math:`\hat m / \sqrt{\hat v + \epsilon}`, the seed tutorial's hand-written form.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_adam, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.Adam(params, lr, (b1, b2), eps, weight_decay, amsgrad)``.
      * ``optax.adam(lr, b1, b2, eps)`` (algebraically; rounding differs in the last bits).
      * the seed tutorial's ``adam(parameters, vs, sqrs, lr, t)`` with ``eps_in_sqrt=True``.
      * Not ``optax.amsgrad``: Optax takes the maximum of the *bias-corrected* second moments
        (optax issue #1389), so the two differ whenever :math:`v_t` shrinks.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.adam(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)  # the first step is lr * sign(g)
      Array([ 0.9, -1.9], dtype=float32)

    References:
      Kingma and Ba, *Adam: A method for stochastic optimization*, ICLR 2015.
      Reddi et al., *On the convergence of Adam and beyond*, ICLR 2018 (amsgrad).
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_adam(
            b1, b2, eps, amsgrad=amsgrad, debias=bias_correction, eps_in_sqrt=eps_in_sqrt
        ),
        scale_by_learning_rate(learning_rate),
    )
