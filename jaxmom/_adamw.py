"""AdamW: Adam with decoupled weight decay, with torch.optim.AdamW's semantics."""

import jax
import optax

from jaxmom._adam import scale_by_adam
from jaxmom._base import ScalarOrSchedule, chain_with_weight_decay, check_flag


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 1e-2,
    *,
    amsgrad: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""AdamW, exactly as ``torch.optim.AdamW``: Adam whose weight decay skips the moments.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,

        p_t = p_{t-1} - \eta_t \Big( \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)}
        + \epsilon} + wd\, p_{t-1} \Big)

    The decay is multiplied by the learning rate (``p *= 1 - lr * wd`` in PyTorch), so a schedule
    scales it too. With ``amsgrad``, :math:`v_t` under the root becomes :math:`\max(v_1, \dots, v_t)`.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-3.
      b1: :math:`\beta_1` in [0, 1), default 0.9.
      b2: :math:`\beta_2` in [0, 1), default 0.999.
      eps: :math:`\epsilon` >= 0, default 1e-8.
      weight_decay: :math:`wd` >= 0, decoupled from the gradient, default 1e-2 (PyTorch's).
      amsgrad: use the running maximum of the raw second moment, as PyTorch does.
      mu_dtype: the dtype of the first moment (static, Optax's name); None, the default, keeps
        the parameters' dtypes.
      nu_dtype: the real dtype of the second moment and the amsgrad maximum (static); None
        keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(scale_by_adam, add_weight_decay, scale_by_learning_rate)``.

    Equal to:
      * ``torch.optim.AdamW(params, lr, (b1, b2), eps, weight_decay, amsgrad)``.
      * ``optax.adamw(lr, b1, b2, eps, weight_decay=wd, mu_dtype=mu_dtype)`` without amsgrad (Optax's default
        weight_decay is 1e-4, not 1e-2). Optax's adamw has no amsgrad; ``optax.amsgrad`` chained
        with decayed weights takes the maximum of the bias-corrected moments instead (optax
        issue #1389), so it differs whenever :math:`v_t` shrinks.
      * ``jaxmom.adam(lr, b1, b2, eps)`` when ``weight_decay`` is 0.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.adamw(0.5, weight_decay=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params), params)
      >>> optax.apply_updates(params, updates).round(4)  # p - lr * (sign(g) + wd * p)
      Array([ 0.25, -1.  ], dtype=float32)

    References:
      Loshchilov and Hutter, *Decoupled weight decay regularization*, ICLR 2019.
    """
    check_flag("amsgrad", amsgrad)
    block = scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return chain_with_weight_decay(block, weight_decay, learning_rate, decoupled=True)
