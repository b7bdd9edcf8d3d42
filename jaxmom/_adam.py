"""Adam, with torch.optim.Adam's semantics."""

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
    check_flag,
    check_params,
    scale_by_learning_rate,
    store,
    update_moment,
    update_second_moment,
    zeros_like,
)


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`, the fields of ``optax.ScaleByAdamState``."""

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment, of |g|^2


class ScaleByAmsgradState(NamedTuple):
    """State of ``scale_by_adam(amsgrad=True)``, the fields of ``optax.ScaleByAmsgradState``.

    Here ``nu_max`` is the running maximum of the *raw* :math:`v_t`, as in PyTorch; Optax keeps
    the maximum of the bias-corrected ones.
    """

    count: jax.typing.ArrayLike  # steps taken so far
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment, of |g|^2
    nu_max: optax.Updates  # max(v_1, ..., v_t)


def scale_by_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    amsgrad: bool = False,
    debias: bool = True,
    eps_in_sqrt: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adam's rescaling of the gradient, as ``torch.optim.Adam`` without the learning rate.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2, \qquad
        u_t = \frac{m_t / (1 - \beta_1^t)}{\sqrt{\hat v_t / (1 - \beta_2^t)} + \epsilon}

    with :math:`\hat v_t = v_t`, or :math:`\max(v_1, \dots, v_t)` with ``amsgrad``.

    Args:
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8.
      amsgrad: use the running maximum of the raw second moment (PyTorch's order).
      debias: divide by :math:`1 - \beta^t`; False drops both corrections.
      eps_in_sqrt: :math:`\epsilon` inside the root, :math:`\sqrt{v / (1 - \beta_2^t) + \epsilon}`.
      mu_dtype: the dtype of :math:`m` (static, Optax's name); None keeps the parameters'.
      nu_dtype: the real dtype of :math:`v` and of the amsgrad maximum (static); None keeps the
        parameters'. Each step is computed in the wider of the stored and the gradient's dtype.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`u_t`, with a
      :class:`ScaleByAdamState`, or a :class:`ScaleByAmsgradState` with ``amsgrad``.

    Equal to ``optax.scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype)``, defaults included (algebraically: the
    corrections are computed more accurately here, see :func:`jaxmom.adam`). Not to
    ``optax.scale_by_amsgrad``, which maximises the bias-corrected :math:`v_t`.
    """
    check("b1", b1, 0.0, 1.0)
    check("b2", b2, 0.0, 1.0)
    check("eps", eps)
    check_flag("amsgrad", amsgrad)
    check_flag("debias", debias)
    check_flag("eps_in_sqrt", eps_in_sqrt)
    mu_dtype = check_dtype("mu_dtype", mu_dtype)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        count = jnp.zeros([], jnp.int32)
        mu = zeros_like(params, mu_dtype, name="mu_dtype")
        nu = zeros_like(params, nu_dtype, squares=True)
        if amsgrad:
            nu_max = zeros_like(params, nu_dtype, squares=True)
            return ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)
        return ScaleByAdamState(count=count, mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1)
        nu = update_second_moment(updates, state.nu, b2)
        stored = store(mu, state.mu), store(nu, state.nu)
        if amsgrad:
            nu_hat = jax.tree.map(jnp.maximum, state.nu_max, nu)
            new_state = ScaleByAmsgradState(count, *stored, store(nu_hat, state.nu_max))
        else:
            new_state, nu_hat = ScaleByAdamState(count, *stored), nu
        c1, c2 = (bias_correction(b1, count), bias_correction(b2, count)) if debias else (1, 1)

        def direction(g, m, v):
            m_hat, v_hat = m / c1, v / c2
            denom = jnp.sqrt(v_hat + eps) if eps_in_sqrt else jnp.sqrt(v_hat) + eps
            return cast_to(m_hat / denom, g.dtype)

        return jax.tree.map(direction, updates, mu, nu_hat), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    amsgrad: bool = False,
    weight_decay: jax.typing.ArrayLike = 0.0,
    debias: bool = True,
    eps_in_sqrt: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adam, exactly as ``torch.optim.Adam``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2,

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
      debias: divide by :math:`1 - \beta^t` (bias correction), default True; False gives
        :math:`\hat m = m, \hat v = v`.
      eps_in_sqrt: :math:`\hat m / \sqrt{\hat v + \epsilon}`, the seed tutorial's hand-written form.
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the second moment and the amsgrad maximum (static); None
        keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_adam, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.Adam(params, lr, (b1, b2), eps, weight_decay, amsgrad)``, defaults
        included, on real parameters (on complex ones PyTorch treats the real and imaginary parts
        as two real parameters; jaxmom squares :math:`|g|^2`, as Optax).
      * ``optax.adam(lr, b1, b2, eps, mu_dtype=mu_dtype)``, defaults included, algebraically. In float32 jaxmom is
        the more accurate: Optax's ``1 - b2**t`` loses digits to cancellation (see
        :func:`jaxmom._base.bias_correction`).
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
            b1,
            b2,
            eps,
            amsgrad=amsgrad,
            debias=debias,
            eps_in_sqrt=eps_in_sqrt,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )
