"""Weights first: the layout that lets XLA:CPU run the matrix products of many stacked
configurations without copying their kernels (issue 26).

``fit`` stacks the configurations of a chunk on a leading axis. A layer ``x @ W`` with an ``(in,
out)`` kernel, as Flax's ``nn.Dense`` stores it, then meets K kernels ``(K, in, out)``; to multiply
the shared batch by all of them at once XLA must see them as one matrix, and ``(K, in, out)`` is
not one: XLA:CPU copies the K kernels into ``(in, K*out)`` for the forward product and the
gradient ``(K*out, in)`` back, every step (``docs/speed.md`` shows the profile). Two rewrites,
neither visible to the user's model or optimizer, remove both copies:

- :func:`weights_first` evaluates the user's loss with every ``x @ W`` (``W`` a 2-D parameter,
  ``x`` not) computed as ``(W.T @ x.T).T``: the kernel becomes the left operand, whose K stacked
  copies ``(K, out, in)`` are one ``(K*out, in)`` matrix;
- :func:`swap` keeps those kernels, and the optimizer-state leaves of their shape, transposed,
  ``(out, in)``, for the length of an epoch's ``lax.scan``: the carry is swapped back before each
  step and again after it (XLA cancels the two), so the optimizer and the loss see the arrays
  they were written for, and everything outside the scan sees the state unchanged.

Mathematically nothing changes; float results differ from the direct products by rounding only.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.layout import Layout, with_layout_constraint
from jax.extend import core

# Primitives that pass a parameter through unchanged, up to dtype: their output is still "the
# weight" for the purpose of choosing operand order.
_SAME = frozenset({"convert_element_type", "copy", "copy_p"})
_CALLS = frozenset({"jit", "pjit", "closed_call"})


def weights_first(fn: Callable, found: list | None = None, traces: dict | None = None) -> Callable:
    """``fn(params, *args, **kw)`` computed with every ``x @ W`` (``W`` a 2-D leaf of ``params``
    contracted on its first axis, ``x`` not a parameter) as ``(W.T @ x.T).T``. ``found``, if
    given, collects the shapes of the kernels so rewritten. ``traces``, if given, keeps ``fn``'s
    jaxpr by its arguments' types, so that calls sharing it trace ``fn`` once, as a direct call
    would (its keyword arguments are inputs of the jaxpr, never closed over)."""

    def rewritten(params, *args, **kw):
        flat, tree = jax.tree.flatten((params, args, kw))
        n_params = len(jax.tree.leaves(params))
        key = (tree, tuple(_type(x) for x in flat))
        if traces is not None and key in traces:
            closed, shape = traces[key]
        else:

            def call(*leaves):
                p, a, k = jax.tree.unflatten(tree, leaves)
                return fn(p, *a, **k)

            closed, shape = jax.make_jaxpr(call, return_shape=True)(*flat)
            if traces is not None:
                traces[key] = closed, shape
        weights = [i < n_params for i in range(len(flat))]
        out = _eval(closed.jaxpr, closed.consts, flat, weights, found)
        return jax.tree.unflatten(jax.tree.structure(shape), out)

    return rewritten


def _type(x) -> tuple:
    """What a trace of ``fn`` depends on: shape, dtype, weak type (not the sharding, which a
    ``jax.ShapeDtypeStruct`` batch lacks and the chunk's batch has)."""
    t = jax.typeof(x)
    return t.shape, t.dtype, getattr(t, "weak_type", False)


def _eval(jaxpr, consts, args, weights, found):
    """Evaluate ``jaxpr`` on ``args``; ``weights[i]``: ``args[i]`` is a parameter."""
    env, is_weight = {}, {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]

    def weight(v):
        return not isinstance(v, core.Literal) and is_weight.get(v, False)

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x, w in zip(jaxpr.invars, args, weights):
        env[v], is_weight[v] = x, w
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        invals = [read(v) for v in eqn.invars]
        flags = [weight(v) for v in eqn.invars]
        out_weight = [False] * len(eqn.outvars)
        if name == "dot_general" and _kernel_on_right(eqn, flags):
            outvals = [_swapped_dot(*invals, **eqn.params)]
            if found is not None:
                found.append(tuple(invals[1].shape))
        elif name in _CALLS:
            inner = eqn.params["jaxpr"]
            outvals = _eval(inner.jaxpr, inner.consts, invals, flags, found)
        else:
            with eqn.ctx.manager:  # as jax.core.eval_jaxpr binds
                outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outvals = outvals if eqn.primitive.multiple_results else [outvals]
            if name in _SAME:
                out_weight = [flags[0]]
        for v, x, w in zip(eqn.outvars, outvals, out_weight):
            env[v], is_weight[v] = x, w
    return [read(v) for v in jaxpr.outvars]


def _kernel_on_right(eqn, flags) -> bool:
    """``x @ W``: a 2-D parameter on the right contracted on its first axis, no batch axes, and
    no parameter on the left."""
    (_, rc), (lb, rb) = eqn.params["dimension_numbers"]
    rhs = eqn.invars[1].aval
    return flags[1] and not flags[0] and rhs.ndim == 2 and tuple(rc) == (0,) and not lb and not rb


def _swapped_dot(lhs, rhs, *, dimension_numbers, precision, preferred_element_type, **rest):
    """``dot_general(lhs, rhs)`` computed as ``dot_general(rhs.T, lhs)`` and transposed back: the
    kernel ``rhs`` (in, out) enters as its transpose (out, in), contracted on its last axis."""
    (lc, _), _ = dimension_numbers
    if isinstance(precision, tuple):
        precision = precision[::-1]
    out = lax.dot_general_p.bind(
        rhs.T,
        lhs,
        dimension_numbers=(((1,), tuple(lc)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
        **rest,
    )
    n_lhs = lhs.ndim - len(lc)  # out: the kernel's one free axis, then lhs's
    return jnp.transpose(out, [*range(1, 1 + n_lhs), 0])


def kernels(fn: Callable, params, *args, key: bool = False, traces: dict | None = None) -> list:
    """The shapes of the kernels :func:`weights_first` rewrites in ``fn(params, *args)`` (with
    ``key=`` a random key if ``key``); ``args`` may be ``jax.ShapeDtypeStruct``s. Traces only
    (``traces``: as :func:`weights_first`'s)."""
    found = []
    rewritten = weights_first(fn, found, traces)
    call = lambda p, k, *a: rewritten(p, *a, **({"key": k} if key else {}))
    jax.eval_shape(call, params, jax.eval_shape(lambda: jax.random.key(0)), *args)
    return found


def kernel_mask(tree, shapes) -> object:
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
