"""Pieces every optimizer shares: checks, state buffers, moments, the learning rate, weight decay.

Hyperparameters are values, never Python branches: a float, a JAX array or a traced value all go
through the same arithmetic, so one compiled program serves every value. Only concrete values are
checked, and only at construction.

The state's *structure* follows the flags and the static zeros only, never a value that could be
traced: a Python or NumPy zero (say ``momentum=0.0``) may drop a buffer, a JAX array never does,
whether it is concrete or traced. So ``init`` and ``update`` agree on the structure under
``jax.jit``, ``jax.vmap`` and ``optax.inject_hyperparams``, which hands the same value to ``init``
as a concrete array and to ``update`` as a traced one.
"""

import functools
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

ScalarOrSchedule = jax.typing.ArrayLike | optax.Schedule

_NUMBERS = (int, float, np.integer, np.floating)
_TRACED = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def concrete(value):
    """Returns ``value`` as a float64 NumPy array, or None when it is traced or a schedule."""
    if callable(value):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except _TRACED:
        return None


def is_traced(value) -> bool:
    """True when ``value`` is a JAX tracer: a number only known when the program runs."""
    return not callable(value) and concrete(value) is None


def is_zero(value) -> bool:
    """True when ``value`` is concretely zero (a traced value never is)."""
    v = concrete(value)
    return v is not None and not np.any(v)


def is_static_zero(value) -> bool:
    """True when ``value`` is a Python or NumPy zero: the test that may drop a state buffer.

    A JAX array, even a concrete one, is a value that may later arrive traced (``jax.jit``,
    ``optax.inject_hyperparams``), so it never changes the state's structure.
    """
    return isinstance(value, (*_NUMBERS, np.ndarray)) and is_zero(value)


def _interval(low, high, high_open):
    return f"[{low:g}, {'inf' if high == np.inf else f'{high:g}'}{')' if high_open else ']'}"


def check(name, value, low=0.0, high=np.inf, *, high_open=True, allow_schedule=None):
    """Raises a one-line error unless ``value`` is a number in [low, high) (or [low, high]).

    Accepted: a Python int or float, a NumPy or JAX real number or array (each concrete element is
    checked; traced ones are not), and a callable schedule where ``allow_schedule`` (by default
    only for ``name == "learning_rate"``). A bool, a Fraction, a string or a complex number is a
    ``TypeError``; a value outside the interval is a ``ValueError`` naming the first bad element.
    """
    interval = _interval(low, high, high_open)
    if callable(value):
        if allow_schedule if allow_schedule is not None else name == "learning_rate":
            return
        raise TypeError(f"{name} must be a number in {interval}, got the callable {value!r}")
    dtype = getattr(value, "dtype", None)
    numeric = isinstance(value, _NUMBERS) and not isinstance(value, (bool, np.bool_))
    array = (
        isinstance(value, (np.ndarray, jax.Array))
        and dtype is not None
        and (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))
    )
    if not (numeric or array):
        kind = f"{type(value).__name__}" + (f" of dtype {dtype}" if dtype is not None else "")
        raise TypeError(f"{name} must be a real number in {interval}, got a {kind}: {value!r:.80}")
    v = concrete(value)
    if v is None:
        return
    inside = np.isfinite(v) & (v >= low) & ((v < high) if high_open else (v <= high))
    if np.all(inside):
        return
    if v.ndim == 0:
        shown = value if isinstance(value, numbers.Number) else v.item()
        raise ValueError(f"{name} must be a finite number in {interval}, got {shown!r}")
    index = tuple(int(i) for i in np.argwhere(~inside)[0])
    raise ValueError(
        f"{name} must be finite numbers in {interval}; element {list(index)} of the "
        f"{v.shape} array is {np.asarray(value)[index]!s}"
    )


def check_flag(name, value) -> None:
    """Raises a one-line ``TypeError`` unless ``value`` is a real bool (Python or NumPy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r:.80}")


def check_params(params) -> None:
    """Raises a one-line ``TypeError`` naming the first leaf whose dtype is not float or complex.

    An integer parameter would get silent zero updates after the cast back to its dtype; PyTorch
    refuses such parameters too. Call it in every ``init``.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = leaf.dtype if hasattr(leaf, "dtype") else jnp.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.inexact):
            where = f"params{jax.tree_util.keystr(path)}"
            raise TypeError(
                f"{where} has dtype {dtype}: optimizers need floating-point or complex parameters"
            )


def check_dtype(name, dtype, *, real=False):
    """``dtype`` canonicalised (``jax.dtypes.canonicalize_dtype``, as Optax), or None for None.

    A state dtype is static: a Python value read at construction, never traced. It must be a
    floating-point dtype, or complex unless ``real`` (a buffer of :math:`|g|^2` is real). Anything
    else is a one-line ``TypeError`` naming ``name`` and the value.
    """
    if dtype is None:
        return None
    kinds = "a real floating-point" if real else "a floating-point or complex"
    if isinstance(dtype, jax.Array):  # what optax.inject_hyperparams makes of jnp.bfloat16
        raise TypeError(
            f"{name} must be None or {kinds} dtype, got an array: under inject_hyperparams "
            f"pass jnp.dtype({str(dtype.dtype)!r}) or {str(dtype.dtype)!r}, or list it in "
            "static_args, since a dtype class is a callable and so taken for a schedule"
        )
    try:
        canonical = jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))
    except TypeError:
        canonical = None
    if canonical is None or not jnp.issubdtype(canonical, jnp.inexact):
        raise TypeError(f"{name} must be None or {kinds} dtype, got {dtype!r:.80}")
    if real and jnp.issubdtype(canonical, jnp.complexfloating):
        raise TypeError(f"{name} must be None or {kinds} dtype (|g|^2 is real), got {canonical}")
    return canonical


def _buffer_dtype(path, leaf, dtype, name, squares):
    if not squares and jnp.iscomplexobj(leaf) and not jnp.issubdtype(dtype, jnp.complexfloating):
        where = f"params{jax.tree_util.keystr(path)}"
        raise TypeError(
            f"{name}={dtype} cannot hold the buffer of the complex {where} ({leaf.dtype}): "
            "pass a complex dtype or None"
        )
    return dtype


def zeros_like(params, dtype=None, *, name="dtype", squares=False, value=0.0):
    """A fresh buffer shaped like ``params``, filled with ``value``, in the state ``dtype``.

    ``dtype=None`` keeps each leaf's own dtype: the state follows the parameters. Otherwise every
    leaf is ``dtype``; a buffer of :math:`g` (``squares=False``) refuses a real ``dtype`` for a
    complex leaf in one line naming ``name``, a buffer of :math:`|g|^2` (``squares=True``) is real.

    Call it once per state field: every state leaf must be its own buffer, or donating the state
    (``jax.jit(..., donate_argnums=...)``) fails with "donate the same buffer twice".
    """
    if dtype is None:
        return optax.tree.full_like(params, value)
    return jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.full(jnp.shape(p), value, _buffer_dtype(path, p, dtype, name, squares)),
        params,
    )


def full_like(params, value, dtype=None, *, name="dtype", squares=False):
    """:func:`zeros_like` filled with ``value``."""
    return zeros_like(params, dtype, name=name, squares=squares, value=value)


def widened(*arrays):
    """``arrays`` cast to the dtype that holds each of them (``jnp.promote_types``): a stored
    buffer is read into it before it meets the gradient. bfloat16 with float32 is float32,
    float32 with complex64 is complex64, bfloat16 with float16 is float32; equal dtypes stay."""
    dtype = functools.reduce(jnp.promote_types, [jnp.asarray(a).dtype for a in arrays])
    return tuple(jnp.asarray(a).astype(dtype) for a in arrays)


def cast_to(x, dtype):
    """``x`` as ``dtype``; a complex ``x`` cast to a real ``dtype`` gives its real part.

    A complex buffer of real gradients (a complex ``mu_dtype`` for real parameters, as Optax
    allows) holds no imaginary part; this drops it without JAX's complex-to-real warning.
    """
    if jnp.iscomplexobj(x) and not jnp.issubdtype(dtype, jnp.complexfloating):
        x = jnp.real(x)
    return x.astype(dtype)


def store(tree, state_tree):
    """``tree`` cast leaf by leaf to the dtypes of the stored ``state_tree``
    (``optax.tree.cast_like``): what an ``update`` writes back into its state."""
    return optax.tree.cast_like(tree, state_tree)


def abs_sq(x):
    """:math:`|x|^2`, real for a complex ``x`` (``optax._src.numerics.abs_sq``): ``conj(x) * x``.

    Every second moment squares with this, never ``x * x``, so complex parameters follow Optax.
    The result keeps ``x``'s dtype kind: real for real input, the real part for complex input.
    """
    return jnp.real(jnp.conj(x) * x) if jnp.iscomplexobj(x) else jnp.square(x)


def learning_rate_at(learning_rate: ScalarOrSchedule, count):
    """The learning rate for the step that has ``count`` steps before it."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def update_moment(values, moments, decay):
    """``decay * m + (1 - decay) * x`` leaf by leaf, in the wider of the two dtypes (:func:`widened`).

    Use the result for this step's update, and :func:`store` it back in the state's dtype: a
    bfloat16 moment of float32 gradients is combined in float32 and rounded only when stored.
    """

    def update(x, m):
        x, m = widened(x, m)
        return (decay * m + (1 - decay) * x).astype(m.dtype)

    return jax.tree.map(update, values, moments)


def update_second_moment(values, moments, decay):
    """``decay * m + (1 - decay) * |x|^2`` leaf by leaf (:func:`abs_sq`), in the moment's dtype."""
    return update_moment(jax.tree.map(abs_sq, values), moments, decay)


def bias_correction(decay, count):
    """``1 - decay**count``, computed so that float32 keeps its digits when decay is near 1.

    ``1 - 0.999**t`` loses five digits to cancellation in float32; ``-expm1(t * log1p(-(1 - decay)))``
    does not, and for a Python-float decay ``1 - decay`` is even exact in double precision.
    """
    return -jnp.expm1(count * jnp.log1p(-(1 - decay)))


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate` with a schedule (a constant keeps none)."""

    count: jax.typing.ArrayLike  # steps taken so far, the schedule's argument


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    r"""The descent step :math:`u \leftarrow -\eta_t u`.

    Unlike ``optax.scale``, a float32 learning rate never promotes bf16 updates.

    Args:
      learning_rate: :math:`\eta` >= 0, a number (traced or not) or an Optax schedule, which is
        called with the number of steps taken before this one.

    Returns:
      An ``optax.GradientTransformation``. A constant learning rate keeps no state
      (``optax.EmptyState``), as Optax's does; a schedule keeps a
      :class:`ScaleByLearningRateState` with the step count.
    """
    check("learning_rate", learning_rate)

    def init_fn(params):
        check_params(params)
        if callable(learning_rate):
            return ScaleByLearningRateState(count=jnp.zeros([], jnp.int32))
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        lr: Any = learning_rate
        if callable(learning_rate):
            lr = learning_rate(state.count)
            state = ScaleByLearningRateState(count=optax.safe_increment(state.count))
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def add_weight_decay(weight_decay: jax.typing.ArrayLike = 0.0) -> optax.GradientTransformation:
    r"""PyTorch's ``weight_decay``, an L2 term added to the gradient: :math:`g \leftarrow g + wd\,p`.

    A concrete zero is skipped, as PyTorch's ``if weight_decay != 0`` does: ``g + 0 * p`` would
    cost a read of every parameter (and turn an infinite parameter into a NaN gradient). Otherwise
    ``update`` needs ``params``; a traced value is always applied. It keeps no state.

    Args:
      weight_decay: :math:`wd` >= 0.

    Returns:
      An ``optax.GradientTransformation`` with ``optax.EmptyState``.
    """
    check("weight_decay", weight_decay)

    def update_fn(updates, state, params=None):
        if is_zero(weight_decay):
            return updates, state
        if params is None:
            raise ValueError("weight_decay needs the parameters: call update(grads, state, params)")
        updates = jax.tree.map(lambda g, p: (g + weight_decay * p).astype(g.dtype), updates, params)
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def chain_with_weight_decay(
    block: optax.GradientTransformation,
    weight_decay: jax.typing.ArrayLike,
    learning_rate: ScalarOrSchedule,
    *,
    decoupled: bool,
) -> optax.GradientTransformation:
    r"""An optimizer from its ``block``: weight decay, the block, the learning rate.

    Coupled (PyTorch's ``weight_decay``): :math:`u = -\eta_t\,\mathrm{block}(g + wd\,p)`.
    Decoupled (AdamW's): :math:`u = -\eta_t\,(\mathrm{block}(g) + wd\,p)`, so the parameters shrink
    by :math:`(1 - \eta_t\,wd)` beside the step. Either way the decay is :func:`add_weight_decay`: a
    concrete zero is skipped, a traced value always applied.

    Args:
      block: the optimizer's ``scale_by_*`` transformation.
      weight_decay: :math:`wd` >= 0.
      learning_rate: :math:`\eta` >= 0, a number or an Optax schedule.
      decoupled: put the decay after ``block`` instead of before it; checked as
        ``decoupled_weight_decay``.

    Returns:
      ``optax.chain(add_weight_decay, block, scale_by_learning_rate)``, or with the first two
      swapped when ``decoupled``.
    """
    check_flag("decoupled_weight_decay", decoupled)
    decay = add_weight_decay(weight_decay)
    parts = (block, decay) if decoupled else (decay, block)
    return optax.chain(*parts, scale_by_learning_rate(learning_rate))
