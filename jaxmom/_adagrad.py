"""Adagrad, with torch.optim.Adagrad's semantics."""

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
    check_params,
    full_like,
    learning_rate_at,
    scale_by_learning_rate,
    store,
    widened,
)


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: PyTorch's ``sum``, with ``optax.ScaleByRssState``'s name."""

    sum_of_squares: optax.Updates  # G, the running sum of squared gradients


def scale_by_adagrad(
    initial_accumulator_value: jax.typing.ArrayLike = 0.0,
    eps: jax.typing.ArrayLike = 1e-10,
    *,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Divides by the root of the sum of squared gradients, as ``torch.optim.Adagrad``.

    .. math::
        G_0 = a, \qquad G_t = G_{t-1} + |g_t|^2, \qquad u_t = \frac{g_t}{\sqrt{G_t} + \epsilon}

    Args:
      initial_accumulator_value: :math:`a` >= 0, default 0 (PyTorch's).
      eps: :math:`\epsilon` >= 0, outside the root, default 1e-10 (PyTorch's).
      nu_dtype: the real dtype of :math:`G` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`u_t`, with a
      :class:`ScaleByAdagradState`.

    Equal to ``optax.scale_by_rss(initial_accumulator_value=a, eps=0)`` when ``eps`` is 0 and
    :math:`a > 0`. Optax's defaults differ (:math:`a = 0.1`, and its eps 1e-7 sits inside the root,
    zeroing the update where :math:`G = 0`).
    """
    check("initial_accumulator_value", initial_accumulator_value)
    check("eps", eps)
    nu_dtype = check_dtype("nu_dtype", nu_dtype, real=True)

    def init_fn(params):
        check_params(params)
        return ScaleByAdagradState(
            full_like(params, initial_accumulator_value, nu_dtype, squares=True)
        )

    def update_fn(updates, state, params=None):
        del params

        def accumulate(g, s):
            s, square = widened(s, abs_sq(g))
            return s + square

        total = jax.tree.map(accumulate, updates, state.sum_of_squares)
        updates = jax.tree.map(
            lambda g, s: (g / (jnp.sqrt(s) + eps)).astype(g.dtype), updates, total
        )
        return updates, ScaleByAdagradState(store(total, state.sum_of_squares))

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    *,
    lr_decay: jax.typing.ArrayLike = 0.0,
    initial_accumulator_value: jax.typing.ArrayLike = 0.0,
    eps: jax.typing.ArrayLike = 1e-10,
    weight_decay: jax.typing.ArrayLike = 0.0,
    nu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Adagrad, exactly as ``torch.optim.Adagrad``.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad G_t = G_{t-1} + |g_t|^2, \qquad
        p_t = p_{t-1} - \frac{\eta_t}{1 + (t - 1)\,\lambda} \cdot \frac{g_t}{\sqrt{G_t} + \epsilon}

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule. Default 1e-2.
      lr_decay: :math:`\lambda` >= 0, default 0.
      initial_accumulator_value: :math:`G_0` >= 0, default 0.
      eps: :math:`\epsilon` >= 0, outside the root, default 1e-10.
      weight_decay: L2 coefficient added to the gradient, default 0.
      nu_dtype: the real dtype of the sum of squares :math:`G` (static); None, the default,
        keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``.

    Equal to:
      * ``torch.optim.Adagrad`` with the same values, defaults included, on real parameters.
        On complex ones PyTorch treats the real and imaginary parts as two real parameters;
        jaxmom follows Optax and squares :math:`|g|^2`.
      * ``optax.adagrad(lr, initial_accumulator_value=a, eps=0)`` when ``eps=0``, ``lr_decay=0``,
        ``weight_decay=0`` and the same ``a > 0``. Optax's defaults differ: :math:`G_0 = 0.1`, and
        its eps (1e-7) sits *inside* the root, :math:`g / \sqrt{G + \epsilon}`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.adagrad(0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)
      Array([ 0.5, -1.5], dtype=float32)

    References:
      Duchi et al., *Adaptive subgradient methods for online learning and stochastic
      optimization*, JMLR 2011.
    """
    check("learning_rate", learning_rate)
    check("lr_decay", lr_decay)

    def decayed(count):
        return learning_rate_at(learning_rate, count) / (1 + count * lr_decay)

    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_adagrad(initial_accumulator_value, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(decayed),
    )
