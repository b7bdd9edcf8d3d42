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
