"""Quasi-hyperbolic Adam (QHAdam), with qhoptim.pyt.QHAdam's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    abs_sq,
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


class ScaleByQhadamState(NamedTuple):
    """State of :func:`scale_by_qhadam`."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the first moment (not debiased)
    nu: optax.Updates  # v, the second moment (not debiased)


def scale_by_qhadam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    nu1: jax.typing.ArrayLike = 1.0,
    nu2: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""QHAdam's rescaling of the gradient; see :func:`jaxmom.qhadam`.

    Args:
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      nu1: :math:`\nu_1`, any finite number (usually in [0, 1]).
      nu2: :math:`\nu_2` in [0, 1], so that the root stays real.
      eps: :math:`\epsilon` >= 0.
      mu_dtype: the dtype of :math:`m` (static); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`v` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are the QHAdam direction (before the
      learning rate).
    """
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("nu1", nu1, -np.inf, np.inf)
    check("nu2", nu2, 0.0, 1.0, high_open=False)
    check("eps", eps)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByQhadamState(
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

        def direction(g, m, v):
            numerator = nu1 * (m / c1) + (1 - nu1) * g
            denom = jnp.sqrt(nu2 * (v / c2) + (1 - nu2) * abs_sq(g)) + eps
            return cast_to(numerator / denom, g.dtype)

        updates = jax.tree.map(direction, updates, mu, nu)
        return updates, ScaleByQhadamState(count, store(mu, state.mu), store(nu, state.nu))

    return optax.GradientTransformation(init_fn, update_fn)


def qhadam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    nu1: jax.typing.ArrayLike = 1.0,
    nu2: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Quasi-hyperbolic Adam, exactly as ``qhoptim.pyt.QHAdam`` (the paper authors' code).

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad
        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}
        \quad \text{(Adam's moments)},

        p_t = p_{t-1} - \eta_t \frac{(1 - \nu_1) g_t + \nu_1 \hat m_t}
        {\sqrt{(1 - \nu_2) g_t^2 + \nu_2 \hat v_t} + \epsilon}

    qhoptim keeps :math:`\hat m_t, \hat v_t` directly, as averages with weights
    :math:`1 - 1/w_t`, :math:`w_t = 1 + \beta w_{t-1}`; that is the same quantity.
    The paper recommends :math:`\nu_1 = 0.7, \nu_2 = 1` with :math:`\beta_1 = 0.995,
    \beta_2 = 0.999`.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      nu1: :math:`\nu_1`, default 1.0 (Adam).
      nu2: :math:`\nu_2` in [0, 1], default 1.0 (Adam).
      eps: :math:`\epsilon` >= 0, default 1e-8.
      weight_decay: :math:`wd` >= 0, default 0, added to the gradient.
      decoupled_weight_decay: decay the parameters directly, :math:`p \leftarrow (1 - \eta\,wd)p`
        (qhoptim's ``decouple_weight_decay``).
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the second moment (static); None keeps the parameters'
        dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_qhadam, scale_by_learning_rate)``, the decay after
      ``scale_by_qhadam`` when decoupled.

    Equal to:
      * ``qhoptim.pyt.QHAdam(params, lr, (b1, b2), (nu1, nu2), weight_decay,
        decouple_weight_decay, eps)``.
      * ``jaxmom.adam(lr, b1, b2, eps)`` with ``nu1 = nu2 = 1``, and
        ``jaxmom.adamw(lr, b1, b2, eps, wd)`` with ``decoupled_weight_decay`` as well.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.qhadam(0.1, nu1=0.7)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)  # the first step is lr * sign(g)
      Array([ 0.9, -1.9], dtype=float32)

    References:
      Ma and Yarats, *Quasi-hyperbolic momentum and Adam for deep learning*, ICLR 2019.
    """
    block = scale_by_qhadam(b1, b2, nu1, nu2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return chain_with_weight_decay(
        block, weight_decay, learning_rate, decoupled=decoupled_weight_decay
    )
