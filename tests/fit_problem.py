"""The small problems of tests/test_fit.py, importable by its subprocesses: an MLP on random
features and a small CNN (one 3x3 convolution of 8 channels, max-pooling, a dense layer) on random
Fashion-MNIST-shaped images; and the plain loop, written apart from fit, that a cell must equal."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmom

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 40).astype(np.int32)
IMAGES = RNG.normal(size=(20, 28, 28, 1)).astype(np.float32)
LABELS = RNG.integers(0, 10, 20).astype(np.int32)


def normal(key, shape, dtype=jnp.float32):
    """Standard normal draws of ``shape``, drawn flat then reshaped: XLA:CPU compiles a vmapped
    draw of a matrix about twice as slowly as of a vector, and every fit compiles its init."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def mlp_init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": normal(k1, (6, 16)) * 0.5, "b1": jnp.zeros(16), "w2": normal(k2, (16, 3)) * 0.5}


def mlp_logits(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def mlp_loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(mlp_logits(params, x), y)


def mlp_metrics(params, x, y):
    logits = mlp_logits(params, x)
    return {
        "accuracy": jnp.argmax(logits, -1) == y,
        "test_loss": optax.softmax_cross_entropy_with_integer_labels(logits, y),
    }


class CNN(nn.Module):
    """A 3x3 convolution (8 channels), max-pooling, a dense layer: the least that convolves (a
    second convolution made the test half as long again, and tested nothing more)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), kernel_init=lecun_normal)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(10, kernel_init=lecun_normal)(x.reshape(x.shape[0], -1))


def lecun_normal(key, shape, dtype=jnp.float32):
    """LeCun's normal init (variance 1/fan_in) with :func:`normal`'s draws: Flax's default, a
    truncated normal of the kernel's shape, took the CNN's test twice as long to compile."""
    return normal(key, shape, dtype) / math.sqrt(math.prod(shape[:-1]))


def cnn_init(key):
    return CNN().init(key, jnp.zeros((1, 28, 28, 1)))["params"]


def cnn_loss(params, x, y):
    logits = CNN().apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def sgd(h):
    return jaxmom.sgd(h["lr"], h["momentum"])


# ---- the plain loop, written apart from fit ----------------------------------------------------


@functools.cache
def jitted_step(loss, make_tx):
    """A jitted step of the mean loss: value_and_grad, tx.update, optax.apply_updates."""

    @jax.jit
    def step(params, opt_state, hp, batch):
        value, grads = jax.value_and_grad(lambda p: jnp.mean(loss(p, *batch)))(params)
        updates, opt_state = make_tx(hp).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def plain_loop(init, loss, make_tx, hparams, train, batch_size, epochs, seed, drop_last=False):
    """The contract: split(key(seed)) into init and data keys; epoch e visits
    permutation(fold_in(data_key, e), n) in slices of batch_size; a jitted value_and_grad of the
    mean loss, tx.update, optax.apply_updates. Returns (params, every step's loss)."""
    step = jitted_step(loss, make_tx)
    hp = {k: jnp.float32(v) for k, v in hparams.items()}
    root = seed if isinstance(seed, jax.Array) else jax.random.key(seed)  # a seed, or its key
    init_key, data_key = jax.random.split(root)
    params = init(init_key)
    opt_state = make_tx(hp).init(params)
    n, losses = len(train[0]), []
    for e in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, e), n))
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            params, opt_state, value = step(params, opt_state, hp, tuple(a[idx] for a in train))
            losses.append(float(value))
    return params, np.array(losses)
