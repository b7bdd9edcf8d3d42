"""The contract of ``fit``'s functions, checked before anything compiles or trains, by tracing them
abstractly on one batch; each breach is one line naming the function, what it gave and what was
expected:

- ``init(key)`` gives the params (any pytree), or with ``has_state=True`` a pair
  ``(params, model_state)``;
- ``loss(params, *batch)`` (with ``has_state``: ``loss(params, model_state, *batch)``) gives one
  floating value per example, shape ``(B,)``; with ``has_state``, the pair ``(losses (B,),
  new_model_state)``, the new state of the same structure, shapes and dtypes as ``init``'s;
- ``evaluate(params, *batch)`` (with ``has_state``: ``evaluate(params, model_state, *batch)``)
  gives a dict ``{name: (B,) values}`` of numbers or bools; its names, as the result names them
  (:func:`jaxmom.sweep._metrics.eval_metric`), are neither ``fit``'s own metrics (``loss``,
  ``epoch_loss``) nor the grid's columns (its hyperparameters, ``seed``) nor ``diverged`` and
  ``diverged_step``.

A ``loss`` or ``evaluate`` that has a parameter named ``key`` (keyword-only or not) gets a fresh
key at every call, as the keyword argument ``key=`` (:func:`takes_key`; which key:
:mod:`jaxmom.sweep._fit`'s contract).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import jax
import numpy as np

from jaxmom.sweep._grid import Grid
from jaxmom.sweep._metrics import eval_metric

# The metrics that every fit's result holds; an ``evaluate`` name may not be one of them.
OWN = ("loss", "epoch_loss")
# The columns a result's table adds (:data:`jaxmom.sweep._result.RESERVED`).
ADDED = ("diverged", "diverged_step")


def takes_key(fn: Callable | None) -> bool:
    """Whether ``fn`` has a parameter named ``key`` that can be passed by keyword."""
    if fn is None:
        return False
    try:
        p = inspect.signature(fn).parameters.get("key")
    except (TypeError, ValueError):  # no signature to read (a builtin): no key
        return False
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def _name(what: str, fn) -> str:
    name = getattr(fn, "__name__", None)
    return what if name in (None, "<lambda>", what) else f"{what} ({name})"


def _text(x) -> str:
    """What a traced output is, in a few words: ``float32 (16, 1)``, ``a dict of 2``..."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{x.dtype} {tuple(x.shape)}"
    if isinstance(x, tuple | list | Mapping):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


def _per_example(x, b: int, floating: bool) -> bool:
    kinds = "f" if floating else "biuf"
    return hasattr(x, "shape") and tuple(x.shape) == (b,) and np.dtype(x.dtype).kind in kinds


def check_init(init: Callable, has_state: bool):
    """``(params, model_state)`` as shapes (``model_state`` None without ``has_state``)."""
    out = jax.eval_shape(init, jax.random.key(0))
    if not has_state:
        return out, None
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ValueError(
            f"{_name('init', init)} gave {_text(out)}; with has_state=True it must give "
            "(params, model_state)"
        )
    return out[0], out[1]


def check_loss(loss, params, model_state, batch: tuple, has_state: bool) -> set[str]:
    """Trace ``loss`` on one batch and check what it gives; returns the names of the primitives
    it uses."""
    b = int(batch[0].shape[0])
    pre = (model_state,) if has_state else ()
    kw = {"key": jax.random.key(0)} if takes_key(loss) else {}
    jaxpr, out = jax.make_jaxpr(loss, return_shape=True)(params, *pre, *batch, **kw)
    name, want = _name("loss", loss), f"one floating value per example, shape ({b},)"
    if has_state:
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                f"{name} gave {_text(out)} for a batch of {b}; with has_state=True it must give "
                f"(losses, new_model_state), the losses {want}"
            )
        out, new = out
        _check_same_state(name, model_state, new)
    if not _per_example(out, b, floating=True):
        hint = ""
        if hasattr(out, "shape") and out.shape == ():
            hint = " (not the batch's mean: fit averages the per-example values)"
        elif isinstance(out, tuple | list) and not has_state:
            hint = " (a loss that gives (losses, new_model_state) needs has_state=True)"
        raise ValueError(f"{name} gave {_text(out)} for a batch of {b}; expected {want}{hint}")
    return primitives(jaxpr.jaxpr)


def primitives(jaxpr) -> set[str]:
    """The names of the primitives ``jaxpr`` uses, those of the jaxprs it calls included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's, or a Jaxpr itself
                if hasattr(inner, "eqns"):
                    names |= primitives(inner)
    return names


def _check_same_state(name: str, old, new) -> None:
    if jax.tree.structure(old) != jax.tree.structure(new):
        raise ValueError(
            f"{name}'s new model state has the structure {jax.tree.structure(new)}, not init's "
            f"{jax.tree.structure(old)}"
        )
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(old), jax.tree.leaves(new)):
        if (a.shape, a.dtype) != (b.shape, b.dtype):
            raise ValueError(
                f"{name}'s new model state{jax.tree_util.keystr(path)} is {_text(b)}, where "
                f"init's is {_text(a)}"
            )


def check_evaluate(evaluate, params, model_state, batch: tuple, has_state: bool) -> list[str]:
    """Trace ``evaluate`` on one batch and check what it gives; returns its names."""
    b = int(batch[0].shape[0])
    pre = (model_state,) if has_state else ()
    kw = {"key": jax.random.key(0)} if takes_key(evaluate) else {}
    out = jax.eval_shape(evaluate, params, *pre, *batch, **kw)
    name = _name("evaluate", evaluate)
    if not isinstance(out, Mapping) or not all(isinstance(k, str) for k in out):
        raise ValueError(
            f"{name} gave {_text(out)} for a batch of {b}; expected a dict "
            f"{{name: one value per example, shape ({b},)}}"
        )
    for k, v in out.items():
        if not _per_example(v, b, floating=False):
            raise ValueError(
                f"{name}'s {k!r} gave {_text(v)} for a batch of {b}; expected one number (or "
                f"bool) per example, shape ({b},)"
            )
    return list(out)


def check_names(names: list[str], sets: list[str | None], grid: Grid) -> None:
    """Refuse metric names (``evaluate``'s, as each set names them) that are ``fit``'s own or the
    grid's columns."""
    taken = {k: "a metric of fit's own" for k in OWN}
    taken.update({k: "a column of the grid" for k in grid.coords()})
    taken.update({k: "a column the result adds" for k in ADDED})
    clash = [eval_metric(s, k) for s in sets for k in names if eval_metric(s, k) in taken]
    if clash:
        why = ", ".join(f"{k!r} is {taken[k]}" for k in clash)
        raise ValueError(f"evaluate returns {clash}, which the result uses ({why}): rename them")
