"""Kernels first (issue 26): ``fit`` evaluates a loss's ``x @ W`` as ``(W.T @ x.T).T`` and keeps
those kernels transposed through an epoch, so that XLA:CPU copies no stacked kernel per step.
Pins the internal ``jaxmom.sweep._layout`` (the rewrite itself) and, through ``sweep.plan``, the
compiled epoch's loop."""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fit_problem import X, Y, mlp_init, mlp_loss, plain_loop
from flax import nnx

import jaxmom
from jaxmom import sweep
from jaxmom.sweep._layout import in_layout, kernel_mask, kernels, swap, weights_first


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(5)(x)))


def _mlp():
    model = MLP()
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 7)))["params"]
    return params, lambda p, x: model.apply({"params": p}, x)


def _values_and_grads(fn, params, *args):
    loss = lambda p, *args: jnp.sum(jnp.sin(fn(p, *args)))
    return jax.jit(jax.value_and_grad(loss))(params, *args)  # one compile, not one per operation


def test_the_rewritten_loss_equals_the_loss_in_value_and_gradient():
    params, apply = _mlp()
    x = jax.random.normal(jax.random.key(1), (4, 7))
    found = []
    got = _values_and_grads(weights_first(apply, found), params, x)
    want = _values_and_grads(apply, params, x)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
    assert sorted(found) == [(5, 3), (7, 5)]  # both kernels, (in, out)


def test_a_batch_of_sequences_and_an_nnx_linear_are_rewritten_too():
    layer = nnx.Linear(6, 2, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)
    apply = lambda p, x: nnx.merge(graphdef, p)(x)
    x = jax.random.normal(jax.random.key(2), (3, 4, 6))  # (batch, time, features)
    found = []
    got = _values_and_grads(weights_first(apply, found), params, x)
    chex.assert_trees_all_close(got, _values_and_grads(apply, params, x), rtol=1e-6, atol=1e-6)
    assert found == [(6, 2)]


def _transposes(fn, *args) -> list[tuple]:
    """The shapes that ``fn``'s jaxpr transposes, nested calls included."""
    out = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "transpose":
                out.append(tuple(eqn.invars[0].aval.shape))
            for p in eqn.params.values():
                if hasattr(p, "jaxpr"):
                    walk(p.jaxpr if hasattr(p.jaxpr, "eqns") else p.jaxpr.jaxpr)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return out


def test_activations_stay_feature_major_between_layers():
    """Bias, ReLU (a custom derivative) and the next layer run on the first layer's output as it
    comes out of the kernel-first product, (5, 4): nothing transposes it back to (4, 5)."""
    params, apply = _mlp()
    x = jax.random.normal(jax.random.key(1), (4, 7))
    assert _transposes(jax.jit(lambda x: jnp.sin(x).T), x) == [(4, 7)]  # the helper sees calls
    assert (5, 4) not in _transposes(weights_first(apply), params, x)


class Mixed(nn.Module):
    """Element-wise functions with and without custom derivatives, a size-1 broadcast, reductions
    over either axis, and an operation that is not element-wise (which gets the value back)."""

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(6)(x))
        h = nn.relu(nn.Dense(5)(h)) * jnp.exp(-jnp.mean(h, axis=-1, keepdims=True))
        h = h + jax.nn.softplus(h) - jnp.max(h, axis=0)
        h = jnp.where(h > 0.1, h, 0.5 * h) / jnp.sqrt(1.0 + jnp.sum(h**2, axis=-1))[..., None]
        h = jnp.cumsum(nn.Dense(4)(h), axis=-1)  # not element-wise
        return jax.nn.log_softmax(nn.Dense(3)(jnp.tanh(h)))


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 7)], ids=["batch", "batch-time"])
def test_a_mixed_model_is_unchanged_in_value_gradient_and_argmax(shape):
    model = Mixed()
    x = jax.random.normal(jax.random.key(4), shape)
    params = jax.jit(model.init)(jax.random.key(5), x)["params"]
    apply = lambda p, x: model.apply({"params": p}, x)
    found = []
    got = _values_and_grads(weights_first(apply, found), params, x)
    chex.assert_trees_all_close(got, _values_and_grads(apply, params, x), rtol=2e-5, atol=2e-6)
    assert len(found) == 4
    top = lambda p, x: jnp.argmax(apply(p, x), axis=-1)
    np.testing.assert_array_equal(jax.jit(weights_first(top))(params, x), jax.jit(top)(params, x))


@pytest.mark.parametrize(
    "fn",
    [
        lambda p, x: x @ p["w"].T,  # (out, in), as PyTorch stores it: already kernel first
        lambda p, x: p["w"] @ x.T,  # the kernel on the left
        lambda p, x: (x @ x.T) * p["b"],  # no parameter in the product
        lambda p, x: x @ p["v"],  # a vector, not a kernel
    ],
    ids=["transposed", "left", "data", "vector"],
)
def test_other_products_are_left_as_they_are(fn):
    params = {"w": jnp.ones((4, 6)), "b": jnp.ones(()), "v": jnp.ones(6)}
    x = jax.random.normal(jax.random.key(3), (4, 6))
    found = []
    got = _values_and_grads(weights_first(fn, found), params, x)
    chex.assert_trees_all_equal(got, _values_and_grads(fn, params, x))
    assert found == []


def test_swap_transposes_the_marked_leaves_only_and_is_its_own_inverse():
    tree = {"k": jnp.arange(6.0).reshape(2, 3), "other": jnp.arange(6.0).reshape(3, 2)}
    mask = kernel_mask(tree, [(2, 3)])
    assert mask == {"k": True, "other": False}
    swapped = swap(tree, mask)
    np.testing.assert_array_equal(swapped["k"], tree["k"].T)
    np.testing.assert_array_equal(swapped["other"], tree["other"])
    chex.assert_trees_all_equal(swap(swapped, mask), tree)


def _body_computations(hlo: str) -> dict[str, list[str]]:
    """The computations the HLO's widest while loop runs each iteration, by name."""
    comps, name = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head:
            name = head.group(1)
            comps[name] = []
        elif name:
            comps[name].append(line)
    loops = [line for lines in comps.values() for line in lines if " while(" in line]
    body = re.search(r"body=%?([\w.\-]+)", max(loops, key=len)).group(1)
    todo, seen = [body], {body}
    while todo:
        for line in comps[todo.pop()]:
            for called in re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line):
                if called in comps and called not in seen:
                    seen.add(called)
                    todo.append(called)
    return {n: comps[n] for n in seen}


def test_no_step_of_a_dense_models_sweep_copies_a_stacked_kernel():
    """The compiled epoch of a 2x4 sweep of an nn.Dense MLP (8 configurations per chunk): its
    loop moves no (8, 37, 29) or (8, 29, 37) first-layer kernel (before: two copies a step), nor
    that layer's (8, 32, 29) output (before: transposed back to batch-major between layers)."""
    model = MLP()
    wide = nn.Dense(29)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "a": wide.init(k1, jnp.zeros((1, 37)))["params"],
            "b": model.init(k2, jnp.zeros((1, 29)))["params"],
        }

    def loss(p, x, y):
        h = jax.nn.relu(wide.apply({"params": p["a"]}, x))
        return optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p["b"]}, h), y
        )

    rng = np.random.default_rng(0)
    train = (rng.normal(size=(96, 37)).astype(np.float32), rng.integers(0, 3, 96).astype(np.int32))
    plan = sweep.plan(
        sweep.product(lr=[0.01, 0.1], momentum=[0.0, 0.5, 0.9, 0.99]),
        init=init,
        loss=loss,
        optimizer=lambda h: jaxmom.sgd(h["lr"], h["momentum"]),
        train=train,
        batch_size=32,
        epochs=1,
        chunk_size=8,
    )
    moves = [
        line
        for lines in _body_computations(plan.epoch_hlo()).values()
        for line in lines
        if re.search(r"= f32\[8,(37,29|29,37|32,29|29,32)\]\{[\d,]*\} (transpose|copy)\(", line)
    ]
    assert moves == []


def test_in_layout_runs_element_wise_work_on_the_stored_arrays_and_the_rest_as_written():
    g, p = (jax.random.normal(jax.random.key(i), (4, 3)) for i in (6, 7))
    fn = lambda g, p: (2 * g + p, jnp.sum(g * g, axis=0), (g @ g.T) @ p, p)
    call = in_layout(fn, (True, True), (True, False, False, False))
    got = jax.jit(call)(g.T, p.T)  # g and p come stored transposed
    want = fn(g, p)
    np.testing.assert_allclose(got[0], want[0].T, rtol=1e-6)  # asked back stored
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def shaped_sgd(h):
    """SGD after a step that depends on each 2-D gradient's layout: its columns normalised, then
    one Newton-Schulz-like product (``g - 0.1 (g g^T) g``), as Muon-style optimizers do."""

    def update(updates, state, params=None):
        def shape(g):
            if g.ndim != 2:
                return g
            g = g / (jnp.linalg.norm(g, axis=0, keepdims=True) + 1e-3)
            return g - 0.1 * (g @ g.T) @ g

        return jax.tree.map(shape, updates), state

    shaped = optax.GradientTransformation(lambda params: optax.EmptyState(), update)
    return optax.chain(shaped, jaxmom.sgd(h["lr"], h["momentum"]))


def test_an_update_that_depends_on_the_layout_is_computed_as_written():
    """The kernels are stored (out, in) through the epoch and the update runs on them: an update
    that reads a kernel's axes (column norms, a matrix product) still sees (in, out)."""
    assert sorted(kernels(mlp_loss, mlp_init(jax.random.key(0)), X[:16], Y[:16])) == [
        (6, 16),
        (16, 3),
    ]
    res = sweep.fit(
        sweep.product(lr=[0.1], momentum=[0.0, 0.9]), init=mlp_init, loss=mlp_loss,
        optimizer=shaped_sgd, train=(X, Y), batch_size=16, epochs=2, seed=3,
        return_params=True, progress=False, chunk_size=None,
    )  # fmt: skip
    for j, mu in enumerate([0.0, 0.9]):
        hp = {"lr": 0.1, "momentum": mu}
        params, losses = plain_loop(mlp_init, mlp_loss, shaped_sgd, hp, (X, Y), 16, 2, 3)
        np.testing.assert_allclose(res.metrics["loss"][0, j], losses, rtol=2e-5, atol=2e-6)
        got = jax.tree.map(lambda x: x[0, j], res.params)
        chex.assert_trees_all_close(got, params, rtol=1e-4, atol=2e-5)
