"""The noisy quadratic that the optimizer tests run on, in one place (no test file imports another).

Each step's gradient is ``noise[k][t] + CURVATURE * p``, leaf by leaf: for jaxmom and Optax
(:func:`run_jax`, :func:`path_f64`), for the NumPy transcriptions (``optimizer_reference.run``)
and for PyTorch and the reference packages (:func:`run_torch`, :func:`torch_path`). :func:`steps`
runs an optimizer over gradients given in advance instead.
"""

import jax
import numpy as np
import optax
import torch

CURVATURE = 0.5
STEPS = 50


SHAPES = {"w": (3, 4), "b": (4,), "s": ()}
SMALL = {"w": (2, 3), "s": ()}  # a matrix and a scalar: enough for long flag products


def problem(dtype, steps=STEPS, seed=0, shapes=SHAPES):
    """A pytree of mixed shapes, a scalar included, and the gradient noise for each step."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}
    noise = {k: rng.normal(size=(steps, *s)).astype(dtype) for k, s in shapes.items()}
    return params, noise


def scan(tx, params, noise, curvature=CURVATURE):
    """``((final params, final state), parameter path)`` of ``tx``, as one ``lax.scan``."""

    def body(carry, n):
        p, s = carry
        g = jax.tree.map(lambda n, p: n + curvature * p, n, p)
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), p

    return jax.lax.scan(body, (params, tx.init(params)), noise)


def run_jax(tx, params, noise, curvature=CURVATURE):
    """The parameter path of ``tx`` (traceable, vmappable): the same problem as ``ref.run``."""
    return scan(tx, params, noise, curvature)[1]


def path_f64(tx, params, noise):
    """:func:`run_jax` jitted under float64, the path as NumPy arrays."""
    with jax.enable_x64(True):
        return jax.tree.map(np.asarray, jax.jit(run_jax, static_argnums=0)(tx, params, noise))


def steps(tx, params, grads):
    """The final parameters and state after one ``update`` per gradient of the list ``grads`` (a
    Python loop: jit it for one program)."""
    state, p = tx.init(params), params
    for g in grads:
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    return p, state


def torch_path(opt, tensors: dict, noise):
    """Steps the torch optimizer ``opt`` over ``tensors`` (name -> leaf); the parameter path."""
    path = {k: [] for k in tensors}
    for t in range(len(next(iter(noise.values())))):
        for k, p in tensors.items():
            p.grad = torch.tensor(noise[k][t]) + CURVATURE * p.detach()
        opt.step()
        for k, p in tensors.items():
            path[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in path.items()}


def run_torch(optimizer_class, kwargs, params, noise):
    """The parameter path of ``optimizer_class(params, **kwargs)`` from ``params``."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    return torch_path(optimizer_class(list(tensors.values()), **kwargs), tensors, noise)


# optax.safe_increment stops at 2**31 - 1: a few steps from here cross the top of int32
NEAR_MAX = 2**31 - 3


def at_count(state, count, **leaves):
    """``state`` with every leaf named ``count`` (the optimizer's, a schedule's) set to ``count``
    as int32, and any other named leaves set as given."""
    if optax.tree.get_all_with_path(state, "count"):
        state = optax.tree.set(state, count=np.int32(count))
    return optax.tree.set(state, **leaves) if leaves else state


def steps_from(tx, state, params, grads):
    """:func:`steps` from a given state, jitted; the final parameters and state."""

    @jax.jit
    def run(state, params):
        for g in grads:
            u, state = tx.update(g, state, params)
            params = optax.apply_updates(params, u)
        return params, state

    return run(state, params)


def check_saturation(tx, params, grads):
    """Steps taken from ``NEAR_MAX`` cross the top of int32: they stay finite, every count stops
    at 2**31 - 1, and they equal the same steps taken from 2**24, where every bias correction
    and warm-up has long converged too (the optimizer's own output, but in its unsaturated
    regime)."""
    state = tx.init(params)
    assert optax.tree.get_all_with_path(state, "count"), "no step count to saturate"
    top, s_top = steps_from(tx, at_count(state, NEAR_MAX), params, grads)
    low, _ = steps_from(tx, at_count(state, 2**24), params, grads)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((top, s_top)))
    assert all(int(c) == 2**31 - 1 for _, c in optax.tree.get_all_with_path(s_top, "count"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), top, low)
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(top), jax.tree.leaves(params)))


def counted(tables):
    """The names whose optimizer keeps a step count, from ``{name: (factory, kwargs)}``."""
    params = {"w": np.zeros((2, 3), np.float32)}
    return [
        name
        for name, (factory, kwargs) in tables.items()
        if optax.tree.get_all_with_path(factory(**kwargs).init(params), "count")
    ]
