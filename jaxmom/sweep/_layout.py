"""Weights first: the layout that lets XLA:CPU run the matrix products of many stacked
configurations without copying their kernels (issue 26).

``fit`` stacks the configurations of a chunk on a leading axis. A layer ``x @ W`` with an ``(in,
out)`` kernel, as Flax's ``nn.Dense`` stores it, then meets K kernels ``(K, in, out)``; to multiply
the shared batch by all of them at once XLA must see them as one matrix, and ``(K, in, out)`` is
not one: XLA:CPU copies the K kernels into ``(in, K*out)`` for the forward product and the
gradient ``(K*out, in)`` back, every step (``docs/speed.md`` shows the profile). This module
computes such a model kernel first and feature-major, as a hand-written ``W @ x.T`` model would,
with no change to the user's model or optimizer:

- :func:`swap` stores the kernels, and the optimizer-state leaves of their shape, transposed,
  ``(out, in)``, for the length of an epoch's ``lax.scan``; the K stacked copies ``(K, out, in)``
  are one ``(K*out, in)`` matrix. Outside the scan the state is as the user wrote it;
- :func:`weights_first` evaluates the user's loss (and evaluation) through its jaxpr on those
  stored kernels: every ``x @ W`` (``W`` a 2-D parameter contracted on its first axis, ``x`` not
  a parameter) is computed as ``W.T @ x.T`` with the stored kernel as the left operand, and its
  result stays feature-major, ``(out, batch)``, through what follows it element by element (bias,
  activation, also under a custom derivative such as ``nn.relu``'s) or reduces it, into the next
  layer's product. A value is transposed back only where an operation of another kind (a gather,
  a sort, the loss's output) needs it. Its gradient comes out stored, ``(out, in)``;
- :func:`in_layout` runs the optimizer's update the same way on the stored gradient, state and
  parameters: an element-wise update touches the stored arrays as they are, and anything that
  depends on the layout (a row norm, an orthogonalisation) gets the values transposed back.

Mathematically nothing changes; float results differ from the direct products by rounding only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.layout import Layout, with_layout_constraint
from jax.extend import core

# Primitives that pass a parameter through unchanged, up to dtype: their output is still "the
# weight" for the purpose of choosing operand order.
_SAME = frozenset({"convert_element_type", "copy", "copy_p"})
_CALLS = frozenset({"jit", "pjit", "closed_call"})


def weights_first(
    fn: Callable,
    found: list | None = None,
    traces: dict | None = None,
    moved: object = None,
) -> Callable:
    """``fn(params, *args, **kw)`` computed with every ``x @ W`` (``W`` a 2-D leaf of ``params``
    contracted on its first axis, ``x`` not a parameter) as ``W.T @ x.T``, its result kept
    feature-major while it can be. ``moved``, if given, is a tree of bools over ``params``: those
    leaves come stored transposed, ``(out, in)`` (a kernel enters its product as it is stored).
    ``found``, if given, collects the shapes of the kernels so rewritten. ``traces``, if given,
    keeps ``fn``'s jaxpr by its arguments' types, so that calls sharing it trace ``fn`` once, as a
    direct call would (its keyword arguments are inputs of the jaxpr, never closed over)."""

    def rewritten(params, *args, **kw):
        n_params, n_rest = len(jax.tree.leaves(params)), len(jax.tree.leaves((args, kw)))
        flags = [False] * n_params if moved is None else jax.tree.leaves(moved)
        flags, weights = flags + [False] * n_rest, [True] * n_params + [False] * n_rest
        out, out_moved, tree = _run(fn, (params, *args), kw, flags, weights, found, traces)
        return jax.tree.unflatten(tree, [_as(x, m, False) for x, m in zip(out, out_moved)])

    return rewritten


def in_layout(fn: Callable, moved_in, moved_out) -> Callable:
    """``fn(*args)`` on arguments whose leaves marked in ``moved_in`` (a tree of bools over
    ``args``) are stored transposed; of its outputs, those marked in ``moved_out`` (a tree of
    bools over them) are returned stored transposed, the others as they are. ``fn`` runs through
    its jaxpr: element-wise work (an optimizer's update) runs on the stored arrays themselves, and
    whatever needs the values as they are gets them transposed back."""

    def call(*args):
        flags = jax.tree.leaves(moved_in)
        out, out_moved, tree = _run(fn, args, {}, flags, [False] * len(flags), None, None)
        want = jax.tree.leaves(moved_out)
        return jax.tree.unflatten(tree, [_as(*x) for x in zip(out, out_moved, want)])

    return call


def _run(fn, args: tuple, kw: dict, moved: list, weights: list, found, traces):
    """``fn(*args, **kw)`` through its jaxpr, the flat leaves marked in ``moved`` stored
    transposed; (flat outputs as stored, which of them are moved, the outputs' tree)."""
    flat, tree = jax.tree.flatten((args, kw))
    types = [_type(x, m) for x, m in zip(flat, moved)]
    key = (tree, tuple(types))
    if traces is not None and key in traces:
        closed, shape = traces[key]
    else:

        def call(*leaves):
            a, k = jax.tree.unflatten(tree, leaves)
            return fn(*a, **k)

        logical = [_struct(*t) if m else x for x, t, m in zip(flat, types, moved)]
        closed, shape = jax.make_jaxpr(call, return_shape=True)(*logical)
        if traces is not None:
            traces[key] = closed, shape
    out, out_moved = _eval(closed.jaxpr, closed.consts, flat, weights, found, moved)
    return out, out_moved, jax.tree.structure(shape)


def _struct(shape, dtype, weak_type):
    return jax.ShapeDtypeStruct(shape, dtype, weak_type=weak_type)


def _as(x, is_moved: bool, want_moved: bool):
    """``x`` (moved or not) as wanted: stored transposed, or as it is."""
    if is_moved == want_moved:
        return x
    return jnp.moveaxis(x, 0, -1) if is_moved else jnp.moveaxis(x, -1, 0)


def _type(x, moved: bool = False) -> tuple:
    """What a trace of ``fn`` depends on: shape (as ``fn`` sees it: a moved leaf's transposed
    back), dtype, weak type (not the sharding, which a ``jax.ShapeDtypeStruct`` batch lacks and
    the chunk's batch has)."""
    t = jax.typeof(x)
    shape = (*t.shape[1:], t.shape[0]) if moved else t.shape
    return shape, t.dtype, getattr(t, "weak_type", False)


# Primitives that act element by element (operands of one shape, or of size 1 along an axis, or
# scalars): they run as well on activations kept feature-major, so those stay feature-major.
_ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp complex conj
    convert_element_type copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor ge gt
    imag integer_pow is_finite le lt log log1p logistic max min mul ne neg nextafter not or pow
    real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square stop_gradient sub tan
    tanh xor""".split()
)
_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call"})
_REDUCTIONS = frozenset(
    "argmax argmin reduce_and reduce_max reduce_min reduce_or reduce_prod reduce_sum".split()
)


class _Env:
    """The values of a jaxpr's variables. A *moved* value is kept feature-major: stored with its
    last axis first, ``stored = moveaxis(value, -1, 0)``; :meth:`read` gives the value itself."""

    def __init__(self):
        self.stored, self.moved, self.weight = {}, set(), set()

    def put(self, v, x, moved=False, weight=False):
        self.stored[v] = x
        (self.moved.add if moved else self.moved.discard)(v)
        (self.weight.add if weight else self.weight.discard)(v)

    def is_moved(self, v) -> bool:
        return not isinstance(v, core.Literal) and v in self.moved

    def is_weight(self, v) -> bool:
        return not isinstance(v, core.Literal) and v in self.weight

    def raw(self, v):
        return v.val if isinstance(v, core.Literal) else self.stored[v]

    def read(self, v):
        x = self.raw(v)
        return jnp.moveaxis(x, 0, -1) if self.is_moved(v) else x


def _eval(jaxpr, consts, args, weights, found, moved=None):
    """Evaluate ``jaxpr`` on ``args``; ``weights[i]``: ``args[i]`` is a parameter; ``moved[i]``:
    ``args[i]`` is stored feature-major. Returns the outputs and which of them are moved."""
    env = _Env()
    for v, x in zip(jaxpr.constvars, consts):
        env.put(v, x)
    for v, x, w, m in zip(jaxpr.invars, args, weights, moved or [False] * len(args)):
        env.put(v, x, moved=m, weight=w)
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        outs = None
        if name in _CALLS:
            inner = eqn.params["jaxpr"]
            flags = [env.is_weight(v) for v in eqn.invars]
            moves = [env.is_moved(v) for v in eqn.invars]
            raws = [env.raw(v) for v in eqn.invars]
            vals, out_moved = _eval(inner.jaxpr, inner.consts, raws, flags, found, moves)
            outs = list(zip(vals, out_moved))
        elif name == "dot_general" and _kernel_on_right(eqn, env):
            outs = [(_kernel_first_dot(eqn, env), True)]
            if found is not None:
                found.append(tuple(eqn.invars[1].aval.shape))
        elif any(env.is_moved(v) for v in eqn.invars):
            outs = _feature_major(eqn, env)
        if outs is None:
            outs = [(x, False) for x in _bind(eqn, [env.read(v) for v in eqn.invars])]
        same = name in _SAME and env.is_weight(eqn.invars[0])
        for v, (x, m) in zip(eqn.outvars, outs):
            env.put(v, x, moved=m, weight=same)
    return [env.raw(v) for v in jaxpr.outvars], [env.is_moved(v) for v in jaxpr.outvars]


def _bind(eqn, invals) -> list:
    with eqn.ctx.manager:  # as jax.core.eval_jaxpr binds
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _kernel_on_right(eqn, env) -> bool:
    """``x @ W``: a 2-D parameter on the right contracted on its first axis, no batch axes, and
    no parameter on the left."""
    (_, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars
    return (
        env.is_weight(rhs)
        and not env.is_weight(lhs)
        and rhs.aval.ndim == 2
        and tuple(rc) == (0,)
        and not lb
        and not rb
    )


def _kernel_first_dot(eqn, env):
    """``x @ W`` computed as ``W.T @ x.T``, kept feature-major: the kernel ``W`` (in, out) enters
    as its transpose (out, in), contracted on its last axis; ``x`` enters as stored."""
    lhs, rhs = eqn.invars
    (lc, _), _ = eqn.params["dimension_numbers"]
    x = env.raw(lhs)
    if env.is_moved(lhs) and tuple(lc) == (lhs.aval.ndim - 1,):
        lc = (0,)  # its features are already first
    elif env.is_moved(lhs):
        x = env.read(lhs)
    params: dict = {**eqn.params, "dimension_numbers": (((1,), tuple(lc)), ((), ()))}
    if isinstance(params["precision"], tuple):
        params["precision"] = params["precision"][::-1]
    kernel = env.raw(rhs) if env.is_moved(rhs) else env.raw(rhs).T  # (out, in)
    with eqn.ctx.manager:
        return lax.dot_general_p.bind(kernel, x, **params)


def _feature_major(eqn, env):
    """``eqn`` run on its operands as stored, where some are moved: an element-wise primitive (or
    a custom derivative of one) or a reduction. ``None`` where it cannot be: then the moved
    operands are moved back."""
    name, ndim = eqn.primitive.name, eqn.outvars[0].aval.ndim
    if name in _REDUCTIONS and len(eqn.invars) == 1:
        axes = tuple(eqn.params["axes"])
        stored = tuple(0 if a == ndim + len(axes) - 1 else a + 1 for a in axes)
        out = _bind(_with(eqn, axes=stored), [env.raw(eqn.invars[0])])
        return [(out[0], ndim + len(axes) - 1 not in axes)]
    custom = name in _CUSTOM and _is_elementwise(_inner(eqn))
    operands = _aligned(eqn, env) if name in _ELEMENTWISE or custom else None
    if operands is None:
        return None
    if not custom:
        return [(x, True) for x in _bind(eqn, operands)]
    # a custom derivative of an element-wise function was traced for the value's own shape: it
    # gets the same elements in that shape, a reshape that XLA makes free
    shapes = [v.aval.shape for v in eqn.invars]
    flat = [x.reshape(s) if jnp.ndim(x) else x for x, s in zip(operands, shapes)]
    stored = next(x.shape for x in operands if jnp.ndim(x))
    return [(x.reshape(stored), True) for x in _bind(eqn, flat)]


def _aligned(eqn, env):
    """Every operand of ``eqn`` as stored, feature-major, for an element-wise primitive: moved
    ones as they are, scalars as they are, others of the same rank moved (a size-1 one, such as
    a bias ``(1, out)``, for free). ``None`` where an operand has another rank."""
    ndim = eqn.outvars[0].aval.ndim
    out = []
    for v in eqn.invars:
        if env.is_moved(v) or v.aval.ndim == 0:
            out.append(env.raw(v))
        elif v.aval.ndim == ndim and ndim > 0:
            out.append(jnp.moveaxis(env.raw(v), -1, 0))
        else:
            return None
    return out


def _with(eqn, **params):
    return eqn.replace(params=dict(eqn.params, **params))


def _inner(eqn):
    """The closed jaxpr a call-like primitive runs (``None`` if it has none)."""
    for p in eqn.params.values():
        if isinstance(p, core.ClosedJaxpr):
            return p.jaxpr
    return None


def _is_elementwise(jaxpr) -> bool:
    """Whether ``jaxpr`` is element-wise: every equation element-wise (or a call of such), on
    operands of one shape or scalars, and nothing else in or out."""
    if jaxpr is None or not jaxpr.outvars:
        return False
    shape = jaxpr.outvars[0].aval.shape
    ok = lambda v: v.aval.shape in (shape, ())
    if not all(ok(v) for v in [*jaxpr.invars, *jaxpr.outvars]):
        return False
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inner_ok = name in _CALLS | _CUSTOM and _is_elementwise(_inner(eqn))
        if not (name in _ELEMENTWISE or inner_ok) or not all(
            ok(v) for v in [*eqn.invars, *eqn.outvars]
        ):
            return False
    return True


def kernels(fn: Callable, params, *args, key: bool = False, traces: dict | None = None) -> list:
    """The shapes of the kernels :func:`weights_first` rewrites in ``fn(params, *args)`` (with
    ``key=`` a random key if ``key``); ``args`` may be ``jax.ShapeDtypeStruct``s. Traces only
    (``traces``: as :func:`weights_first`'s)."""
    found = []
    rewritten = weights_first(fn, found, traces)
    call = lambda p, k, *a: rewritten(p, *a, **({"key": k} if key else {}))
    jax.eval_shape(call, params, jax.eval_shape(lambda: jax.random.key(0)), *args)
    return found


def kernel_mask(tree, shapes) -> Any:
    """True at every 2-D leaf of ``tree`` whose shape is in ``shapes`` (a rewritten kernel's: the
    kernel itself and the optimizer state that mirrors it), False elsewhere."""
    shapes = set(shapes)
    return jax.tree.map(lambda a: a.ndim == 2 and tuple(a.shape) in shapes, tree)


def swap(tree, mask, pinned: bool = False) -> object:
    """``tree`` with the leaves marked in ``mask`` transposed; its own inverse. ``pinned``: held
    in the default row-major layout (for the scan's initial carry: without the constraint, XLA
    lays the carry out as the program's input and the transpose costs a copy at every step)."""
    row_major = Layout(major_to_minor=(0, 1))
    at = lambda a: with_layout_constraint(a.T, row_major) if pinned else a.T
    return jax.tree.map(lambda a, m: at(a) if m else a, tree, mask)
