"""Aggregated momentum (AggMo), with pytorch_optimizer.AggMo's semantics."""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    cast_to,
    chain_with_weight_decay,
    check,
    check_dtype,
    check_params,
    store,
    widened,
    zeros_like,
)


class ScaleByAggmoState(NamedTuple):
    """State of :func:`scale_by_aggmo`."""

    buffers: tuple  # (b_1, ..., b_K), one tree like the parameters each


def scale_by_aggmo(
    betas: jax.typing.ArrayLike | Sequence[float] = (0.0, 0.9, 0.99),
    *,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""AggMo's direction, the mean of K momentum buffers; see :func:`jaxmom.aggmo`.

    Args:
      betas: the K damping factors :math:`\beta_i` in [0, 1), one 1-D array (or sequence) that may
        be traced; only its length K is fixed.
      accumulator_dtype: the dtype of the K buffers (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`\frac1K \sum_i b_{t,i}`.
    """
    if isinstance(betas, (tuple, list)):  # kept as Python numbers: float64 under x64
        for i, beta in enumerate(betas):
            check(f"betas[{i}]", beta, 0.0, 1.0)
        count = len(betas)
    else:
        check("betas", betas, 0.0, 1.0)
        shape = jnp.shape(jnp.asarray(betas))
        count = shape[0] if len(shape) == 1 else 0
    if count == 0:
        raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {np.shape(betas)}")
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        check_params(params)
        buffer = lambda: zeros_like(params, accumulator_dtype, name="accumulator_dtype")
        return ScaleByAggmoState(buffers=tuple(buffer() for _ in range(count)))

    def update_fn(updates, state, params=None):
        del params
        # K separate trees, not one stacked axis: XLA:CPU runs the stacked form 20x slower
        decay = jnp.asarray(betas)

        def accumulate(g, b, beta):
            g, b = widened(g, b)
            return (beta * b + g).astype(b.dtype)

        buffers = tuple(
            jax.tree.map(lambda g, b, i=i: accumulate(g, b, decay[i]), updates, buffer)
            for i, buffer in enumerate(state.buffers)
        )
        updates = jax.tree.map(
            lambda g, *b: cast_to(jnp.asarray(sum(b) / count), g.dtype), updates, *buffers
        )
        return updates, ScaleByAggmoState(buffers=store(buffers, state.buffers))

    return optax.GradientTransformation(init_fn, update_fn)


def aggmo(
    learning_rate: ScalarOrSchedule,
    betas: jax.typing.ArrayLike | Sequence[float] = (0.0, 0.9, 0.99),
    *,
    weight_decay: jax.typing.ArrayLike = 0.0,
    decoupled_weight_decay: bool = False,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Aggregated momentum, exactly as ``pytorch_optimizer.AggMo``: K heavy-ball buffers with
    different damping, averaged.

    .. math::
        g_t \leftarrow g_t + wd\, p_{t-1}, \qquad b_{t,i} = \beta_i b_{t-1,i} + g_t
        \quad (i = 1 \dots K), \qquad p_t = p_{t-1} - \frac{\eta_t}{K} \sum_{i=1}^K b_{t,i}

    The small :math:`\beta_i` damp the oscillations that the large ones cause, so AggMo tolerates
    a larger top :math:`\beta` than heavy ball. ``betas`` is one hyperparameter, an array: a sweep
    may vmap over it (stack rows of equal length).

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule.
      betas: the :math:`\beta_i` in [0, 1), default (0.0, 0.9, 0.99), the paper's K = 3, a = 0.1.
      weight_decay: :math:`wd` >= 0, default 0, added to the gradient.
      decoupled_weight_decay: decay the parameters directly, :math:`p \leftarrow (1 - \eta\,wd)p`
        (pytorch_optimizer's ``weight_decouple=True``).
      accumulator_dtype: the dtype of the buffer (static, Optax's name); None, the default,
        keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_aggmo, scale_by_learning_rate)``, the decay after
      ``scale_by_aggmo`` when decoupled.

    Equal to:
      * ``pytorch_optimizer.AggMo(params, lr, betas, weight_decay, weight_decouple)``.
      * ``jaxmom.sgd(lr, beta)`` with ``betas=(beta,)``; K equal betas are the same.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.aggmo(0.1, betas=(0.0, 0.9))
      >>> params = jnp.array([1.0, -2.0])
      >>> grads = jnp.array([1.0, 1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
      >>> updates, state = tx.update(grads, state)  # -lr * (g + (0.9 g + g)) / 2
      >>> updates.round(4)
      Array([-0.145, -0.145], dtype=float32)

    References:
      Lucas, Sun, Zemel and Grosse, *Aggregated momentum: stability through passive damping*,
      ICLR 2019.
    """
    block = scale_by_aggmo(betas, accumulator_dtype=accumulator_dtype)
    return chain_with_weight_decay(
        block, weight_decay, learning_rate, decoupled=decoupled_weight_decay
    )
