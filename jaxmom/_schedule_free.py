"""Schedule-free SGD, with schedulefree.SGDScheduleFree's semantics."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom._base import (
    ScalarOrSchedule,
    add_weight_decay,
    cast_to,
    check,
    check_dtype,
    check_params,
    is_zero,
    learning_rate_at,
    widened,
    zeros_like,
)


class ScheduleFreeSgdState(NamedTuple):
    """State of :func:`scale_by_schedule_free_sgd`; :func:`schedule_free_eval_params` reads it."""

    count: jax.typing.ArrayLike  # k, steps taken so far
    z: optax.Updates  # z_k, the plain SGD sequence; starts at the parameters
    weight_sum: jax.Array  # the sum of the averaging weights so far
    lr_max: jax.Array  # the largest learning rate so far (-1 before the first step)
    b1: jax.Array  # the interpolation used last, for schedule_free_eval_params


def scale_by_schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: jax.typing.ArrayLike = 0.9,
    *,
    warmup_steps: jax.typing.ArrayLike = 0,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    r: jax.typing.ArrayLike = 0.0,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Schedule-free SGD's step, learning rate included; see :func:`jaxmom.schedule_free_sgd`.

    The learning rate enters the averaging weights, so it is part of this block rather than a
    ``scale_by_learning_rate`` after it. ``update`` needs ``params`` (the :math:`y` sequence).

    Args:
      learning_rate: :math:`\gamma`, >= 0, or an Optax schedule (multiplied by the warmup).
      b1: :math:`\beta` in (0, 1).
      warmup_steps: linear warmup length >= 0, may be traced.
      weight_lr_power: the averaging weight is :math:`\gamma_{\max}` to this power, >= 0.
      r: and :math:`(k+1)^r` times that, >= 0.
      accumulator_dtype: the dtype of :math:`z` (static); None keeps the parameters'.

    Returns:
      An ``optax.GradientTransformation`` whose updates are :math:`y_{k+1} - y_k`.
    """
    check("learning_rate", learning_rate)
    check("b1", b1, 0.0, 1.0)
    if is_zero(b1):
        raise ValueError("b1 must be a finite number in (0, 1), got 0")
    check("warmup_steps", warmup_steps)
    check("weight_lr_power", weight_lr_power)
    check("r", r)
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        check_params(params)
        z = jax.tree.map(jnp.copy, params)
        if accumulator_dtype is not None:
            like = zeros_like(params, accumulator_dtype, name="accumulator_dtype")
            z = jax.tree.map(lambda p, b: jnp.array(p, b.dtype, copy=True), params, like)
        return ScheduleFreeSgdState(
            count=jnp.zeros([], jnp.int32),
            z=z,
            weight_sum=jnp.zeros([]),
            lr_max=-jnp.ones([]),
            b1=jnp.asarray(b1, jnp.zeros([]).dtype),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "schedule_free_sgd needs the parameters: call update(g, state, params)"
            )
        k = state.count
        # k + 1 in floating point: in int32 it would wrap to -2**31 where k saturates (2**31 - 1)
        steps = k.astype(state.weight_sum.dtype) + 1
        lr = learning_rate_at(learning_rate, k) * jnp.minimum(steps / warmup_steps, 1.0)
        lr_max = jnp.maximum(lr, state.lr_max).astype(state.lr_max.dtype)
        weight = steps**r * lr_max**weight_lr_power
        weight_sum = (state.weight_sum + weight).astype(state.weight_sum.dtype)
        positive = weight_sum > 0
        c = jnp.where(positive, weight / jnp.where(positive, weight_sum, 1.0), 0.0)
        grad_weight = lr * (b1 * (1 - c) - 1)

        def move_y(g, y, z):  # y_{k+1} - y_k, in the wider of the three dtypes
            wide_g, wide_y, wide_z = widened(g, y, z)
            return cast_to(c * (wide_z - wide_y) + grad_weight * wide_g, y.dtype)

        def move_z(g, z):
            wide_g, wide_z = widened(g, z)
            return (wide_z - lr * wide_g).astype(z.dtype)

        new = jax.tree.map(move_y, updates, params, state.z)
        z = jax.tree.map(move_z, updates, state.z)
        b1_now = jnp.asarray(b1, state.b1.dtype)
        return new, ScheduleFreeSgdState(optax.safe_increment(k), z, weight_sum, lr_max, b1_now)

    return optax.GradientTransformation(init_fn, update_fn)


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: jax.typing.ArrayLike = 0.9,
    *,
    warmup_steps: jax.typing.ArrayLike = 0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    r: jax.typing.ArrayLike = 0.0,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Schedule-free SGD, exactly as ``schedulefree.SGDScheduleFree`` (the paper authors' code).

    Three sequences replace momentum and the schedule: SGD steps :math:`z`, their weighted
    average :math:`x` (the parameters to evaluate), and the interpolation :math:`y` at which the
    gradient is taken (the parameters this optimizer trains):

    .. math::
        \gamma_k = \eta \min\!\big(\tfrac{k+1}{\text{warmup}}, 1\big), \quad
        w_k = (k+1)^r \big(\max_{j \le k} \gamma_j\big)^{\text{power}}, \quad
        c_{k+1} = \frac{w_k}{\sum_{j \le k} w_j},

        g_k = \nabla f(y_k) + wd\, y_k, \qquad z_{k+1} = z_k - \gamma_k g_k, \qquad
        x_{k+1} = (1 - c_{k+1}) x_k + c_{k+1} z_{k+1}, \qquad
        y_{k+1} = \beta x_{k+1} + (1 - \beta) z_{k+1},

    with :math:`z_0 = x_0 = y_0` the initial parameters. Only :math:`y` and :math:`z` are kept;
    :func:`schedule_free_eval_params` recovers :math:`x = y + (1 - 1/\beta)(z - y)`, as
    ``optimizer.eval()`` does.

    Args:
      learning_rate: :math:`\eta`, >= 0, or an Optax schedule (usually constant). Default 1.0.
      b1: :math:`\beta` in (0, 1), default 0.9.
      warmup_steps: linear warmup length, default 0 (none).
      weight_decay: L2 coefficient added to the gradient at :math:`y`, default 0.
      weight_lr_power: default 2.0; 0 gives the uniform average (with ``r`` = 0).
      r: polynomial weighting of the average, default 0.
      accumulator_dtype: the dtype of :math:`z` (static; Optax's ``state_dtype``); None, the
        default, keeps the parameters' dtypes. Updates keep the parameters' dtype.

    Returns:
      An ``optax.GradientTransformation``:
      ``chain(add_weight_decay, scale_by_schedule_free_sgd)``. Its parameters are :math:`y`;
      evaluate at ``schedule_free_eval_params(state, params)``.

    Equal to:
      * ``schedulefree.SGDScheduleFree(params, lr, momentum=b1, weight_decay, warmup_steps, r,
        weight_lr_power)`` in train mode; its ``.eval()`` parameters are
        :func:`schedule_free_eval_params`.
      * ``optax.contrib.schedule_free_sgd(lr, None, b1, weight_decay, weight_lr_power)`` without
        warmup (and with ``r`` = 0). With warmup Optax's inner SGD counts from 0, so its first
        :math:`z` step uses learning rate 0 while its averaging weights use
        :math:`\eta/\text{warmup}`; here, as in schedulefree, both use :math:`\eta/\text{warmup}`.
        Optax also keeps :math:`\beta` in the state from ``init`` on, so ``inject_hyperparams``
        cannot change it.

    Example:
      >>> import jax.numpy as jnp, optax, jaxmom
      >>> tx = jaxmom.schedule_free_sgd(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(2 * params, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> params  # the first step is SGD's: y_1 = x_1 = z_1
      Array([ 0.8, -1.6], dtype=float32)
      >>> updates, state = tx.update(2 * params, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> params, jaxmom.schedule_free_eval_params(state, params)  # y_2 and x_2
      (Array([ 0.712, -1.424], dtype=float32), Array([ 0.72, -1.44], dtype=float32))

    References:
      Defazio et al., *The road less scheduled*, NeurIPS 2024.
    """
    return optax.chain(
        add_weight_decay(weight_decay),
        scale_by_schedule_free_sgd(
            learning_rate,
            b1,
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            r=r,
            accumulator_dtype=accumulator_dtype,
        ),
    )


def schedule_free_eval_params(state: optax.OptState, params: optax.Params) -> optax.Params:
    r"""The evaluation parameters :math:`x = y + (1 - 1/\beta)(z - y)` of schedule-free SGD.

    Args:
      state: the optimizer state of :func:`schedule_free_sgd`, or of any chain, wrapper
        (``inject_hyperparams``, ``MultiSteps``) or tree that holds one ``ScheduleFreeSgdState``.
      params: the trained parameters :math:`y`.

    Returns:
      What ``schedulefree.SGDScheduleFree.eval()`` swaps into the model: the parameters to test.
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ScheduleFreeSgdState))
        if isinstance(s, ScheduleFreeSgdState)
    ]
    if len(found) != 1:
        raise ValueError(f"state must hold one ScheduleFreeSgdState, found {len(found)}")
    b1 = found[0].b1
    return jax.tree.map(
        lambda y, z: cast_to(y + (1 - 1 / b1) * (z - y), y.dtype), params, found[0].z
    )
