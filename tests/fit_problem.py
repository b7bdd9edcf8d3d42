"""The small problems of tests/test_fit.py, importable by its subprocesses: an MLP on random
features and a small CNN (two 3x3 convolutions of 16 and 32 channels, max-pooling, a dense layer) on
random Fashion-MNIST-shaped images."""

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


def mlp_init(key):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (6, 16)) * 0.5,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(k2, (16, 3)) * 0.5,
    }


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
    """Two 3x3 convolutions (16 and 32 channels), max-pooling, a dense layer."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def cnn_init(key):
    return CNN().init(key, jnp.zeros((1, 28, 28, 1)))["params"]


def cnn_loss(params, x, y):
    logits = CNN().apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def sgd(h):
    return jaxmom.sgd(h["lr"], h["momentum"])
