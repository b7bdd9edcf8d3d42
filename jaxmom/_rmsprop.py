"""RMSprop, with torch.optim.RMSprop's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    abs_sq,
    add_weight_decay,
    check,
    check_dtype,
    check_flag,
    check_params,
    scale_by_learning_rate,
    store,
    update_moment,
    update_second_moment,
    zeros_like,
)
from jaxmom._sgd import scale_by_momentum


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`, the fields of ``optax.ScaleByRmsState``."""

    nu: optax.Updates  # v, the average of |g|^2 (PyTorch's square_avg)


class ScaleByRStdDevState(NamedTuple):
    """State of ``scale_by_rms(centered=True)``, the fields of ``optax.ScaleByRStdDevState``."""

    mu: optax.Updates  # m, the average of g (PyTorch's grad_avg)
    nu: optax.Updates  # v, the average of |g|^2 (PyTorch's square_avg)


def scale_by_rms(
    alpha: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    centered: bool = False,
    eps_in_sqrt: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Divides by a running root-mean-square of the gradient, as ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1 - \alpha) |g_t|^2, \qquad
        \tilde v_t = v_t - |m_t|^2 \ \text{(centered, with } m_t = \alpha m_{t-1} +
        (1 - \alpha) g_t) \ \text{else} \ v_t, \qquad
        u_t = \frac{g_t}{\sqrt{\tilde v_t} + \epsilon} \ \ \text{or, with eps\_in\_sqrt,}
        \ \frac{g_t}{\sqrt{\tilde v_t + \epsilon}}

    Args:
      alpha: :math:`\alpha` in [0, 1], default 0.99 (PyTorch's).
      eps: :math:`\epsilon` >= 0, default 1e-8.
      centered: divide by the estimated standard deviation instead of the RMS.
      eps_in_sqrt: put eps inside the root, as Optax does by default.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`v` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`u_t`, with a
      :class:`ScaleByRmsState`, or a :class:`ScaleByRStdDevState` when centered.

    Equal to ``optax.scale_by_rms(alpha, eps, eps_in_sqrt=eps_in_sqrt)`` and, centered, to
    ``optax.scale_by_stddev(alpha, eps, eps_in_sqrt=eps_in_sqrt)``. Their defaults differ:
    decay 0.9 and ``eps_in_sqrt=True``.
    """
    check("alpha", alpha, 0.0, 1.0, high_open=False)
    check("eps", eps)
    check_flag("centered", centered)
    check_flag("eps_in_sqrt", eps_in_sqrt)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        nu = zeros_like(params, nu_dtype, squares=True)
        if centered:
            return ScaleByRStdDevState(mu=zeros_like(params, mu_dtype, name="mu_dtype"), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(updates, state, params=None):
        del params
        nu = update_second_moment(updates, state.nu, alpha)
        if centered:
            mu = update_moment(updates, state.mu, alpha)
            variance = jax.tree.map(lambda v, m: v - abs_sq(m), nu, mu)
            new_state = ScaleByRStdDevState(store(mu, state.mu), store(nu, state.nu))
        else:
            variance, new_state = nu, ScaleByRmsState(store(nu, state.nu))

        def scale(g, v):
            denom = jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps
            return (g / denom).astype(g.dtype)

        return jax.tree.map(scale, updates, variance), new_state

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
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""RMSprop, exactly as ``torch.optim.RMSprop``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad v_t = \alpha v_{t-1} + (1 - \alpha) |g_t|^2,
        \qquad \tilde v_t = v_t - |m_t|^2 \ \text{(centered, with } m_t = \alpha m_{t-1} +
        (1 - \alpha) g_t) \ \text{else} \ v_t,

        a_t = \sqrt{\tilde v_t} + \epsilon \ \ (\text{or} \ \sqrt{\tilde v_t + \epsilon}
        \ \text{with eps\_in\_sqrt}), \qquad
        b_t = \mu b_{t-1} + g_t / a_t, \qquad p_t = p_{t-1} - \eta_t b_t

    With momentum 0, :math:`b_t = g_t / a_t`. A Python or NumPy ``momentum`` of 0 keeps no
    momentum buffer, as PyTorch; a JAX-array or traced one keeps it. The state's structure
    follows such static values and the flags, never traced values.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-2.
      alpha: :math:`\alpha` in [0, 1], default 0.99.
      eps: :math:`\epsilon` >= 0, default 1e-8, outside the root unless ``eps_in_sqrt``.
      centered: divide by the estimated standard deviation instead of the RMS.
      momentum: :math:`\mu` in [0, 1), default 0.
      weight_decay: L2 coefficient added to the gradient, default 0.
      eps_in_sqrt: put eps inside the root, :math:`g / \sqrt{v + \epsilon}`, as Optax does.
      mu_dtype: the dtype of the centered average :math:`m` (static); None, the default, keeps
        the parameters' dtypes, as do the two below.
      nu_dtype: the real dtype of :math:`v` (static).
      accumulator_dtype: the dtype of the momentum buffer :math:`b` (static). Updates keep the
        gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_rms, scale_by_momentum, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum, centered)``,
        defaults included, on real parameters (on complex ones PyTorch treats the real and
        imaginary parts as two real parameters; jaxmom squares :math:`|g|^2`, as Optax).
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
        scale_by_rms(
            alpha,
            eps,
            centered=centered,
            eps_in_sqrt=eps_in_sqrt,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_momentum(momentum, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )
