"""SGD with momentum, the seed tutorials' convention: the learning rate sits inside the velocity."""

import jax
import optax

from jaxmom._base import ScalarOrSchedule, scale_by_learning_rate
from jaxmom._sgd import scale_by_momentum


def sutskever_sgd(
    learning_rate: ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.0,
    *,
    nesterov: bool = False,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Momentum with the learning rate inside the velocity (seed tutorials, CS231n, Keras).

    .. math::
        v_t = \mu v_{t-1} + \eta_t g_t, \qquad
        p_t = p_{t-1} - v_t \quad \text{or, with nesterov,} \quad p_t = p_{t-1} - (\mu v_t + \eta_t g_t)

    It is ``chain(scale_by_learning_rate, scale_by_momentum)``: the learning rate comes *before*
    the buffer, so each step keeps its own learning rate in the history. The state's buffer holds
    :math:`-v_t` (the Keras / CS231n sign), which is exactly the tutorials' ``v`` in
    ``v = -dx * lr + momentum * v; x += v``.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule.
      momentum: :math:`\mu` in [0, 1), default 0, as Keras, PyTorch and Optax. A Python or NumPy
        0 keeps no buffer.
      nesterov: the reparametrised Nesterov step of Sutskever et al. (2013); needs momentum > 0.
      accumulator_dtype: the dtype of the velocity buffer, static (Optax's name); None, the
        default, keeps the parameters' dtypes. Updates keep the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation``.

    Equal to:
      * the tutorials' ``sgd_momentum(parameters, vs, lr, gamma)``: ``v = gamma*v + lr*g; p -= v``;
      * ``keras.optimizers.SGD(lr, momentum, nesterov)``, defaults included;
      * under a constant learning rate, ``jaxmom.sgd(lr, momentum, nesterov=nesterov)``,
        ``torch.optim.SGD`` and ``optax.sgd`` with the same values (:math:`v_t = \eta b_t`), and
        ``sutskever_sgd(lr)`` is ``sgd(lr)``, ``torch.optim.SGD(params, lr)`` and
        ``optax.sgd(lr)``. Under a schedule the paths differ.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.sutskever_sgd(0.1, momentum=0.9)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> optax.apply_updates(params, updates)
      Array([ 0.8, -1.6], dtype=float32)

    References:
      Sutskever et al., *On the importance of initialization and momentum in deep learning*, 2013.
    """
    return optax.chain(
        scale_by_learning_rate(learning_rate),
        scale_by_momentum(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
    )
