"""The MNIST study's workload, laid out for speed: used by ``experiments/benchmark.py`` and sweeps.

Same model and maths as :mod:`jaxmom.studies.mnist`: the 784-200-10 ReLU MLP with PyTorch's ``nn.Linear``
initialisation, mean softmax cross-entropy over batches of 64. Only the memory layout differs:

* weights are stored as PyTorch stores them, ``(out, in)``;
* activations are feature-major, ``(features, batch)``; labels are one-hot, (10, batch).

The first layer's forward is ``hT = W1 @ x.T`` and its weight gradient ``dW1 = dhT @ x``: the
weight matrix is only ever read and written row-major, whole. Under ``vmap`` over K configurations
sharing the data, ``W1`` stacks to (K, 200, 784), which is contiguously a (K*200, 784) matrix, so
both become ONE wide matmul, ``(K*200, 784) @ (784, 64)`` and ``(K*200, 64) @ (64, 784)``, with no
copy of the weights, and the optimizer's update runs over contiguous memory. (With Flax's
(in, out) kernels the stacked (K, 784, 200) weights must be transposed into a (784, K*200)
matrix at every step: 10 MB copied per step for K = 16.)

FLOPs per step, as the benchmark counts them: 41.2 MFLOP per configuration, forward plus backward
(the issue's convention; the exact multiply-add count, ``2*64*(2*(784*200 + 200*10) + 200*10)``
with no input gradient, is 40.9 MFLOP).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmom.studies.mnist.config import make_optimizer
from jaxmom.studies.mnist.model import torch_linear_init

SIZES = (784, 200, 10)
FLOPS_PER_STEP = 41.2e6


def init_params(key) -> dict:
    """PyTorch ``nn.Linear`` default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        key, kw, kb = jax.random.split(key, 3)
        init = torch_linear_init(fan_in)
        params[f"w{i}"] = init(kw, (fan_out, fan_in))
        params[f"b{i}"] = init(kb, (fan_out, 1))
    return params


def batches(x: np.ndarray, y: np.ndarray, batch_size: int = 64):
    """Device arrays ``(x, onehotT)`` of shapes (S, B, 784) and (S, 10, B), with
    S = len(x) // batch_size full batches (the remainder is dropped)."""
    steps = len(x) // batch_size
    xb = np.asarray(x[: steps * batch_size], np.float32).reshape(steps, batch_size, -1)
    onehot = np.eye(SIZES[-1], dtype=np.float32)[np.asarray(y[: steps * batch_size])]
    onehot_t = onehot.reshape(steps, batch_size, -1).transpose(0, 2, 1)
    return jnp.asarray(xb), jnp.asarray(np.ascontiguousarray(onehot_t))


def loss(params: dict, x, onehot_t):
    """Mean softmax cross-entropy of the batch, feature-major: logits are (10, batch)."""
    h = jax.nn.relu(params["w1"] @ x.T + params["b1"])
    logits = params["w2"] @ h + params["b2"]
    return jnp.mean(jax.nn.logsumexp(logits, axis=0) - jnp.sum(onehot_t * logits, axis=0))


def make_train_fn(optimizer: str = "sgd"):
    """``train_fn(hparams, key, data) -> {"loss": per-step losses}``: one epoch as a ``lax.scan``.

    ``hparams`` are the numeric hyperparameters of ``jaxmom.studies.mnist.OPTIMIZERS[optimizer]`` (e.g.
    ``learning_rate``, ``momentum``), scalars that may be traced; ``data`` is :func:`batches`'
    output. Ready for ``jaxmom.sweep.sweep(train_fn, grid, args=(data,))``.
    """

    def train_fn(hparams, key, data):
        params = init_params(key)
        tx = make_optimizer(optimizer, hparams)
        state = tx.init(params)

        def step(carry, batch):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, *batch)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        _, losses = jax.lax.scan(step, (params, state), data)
        return {"loss": losses}

    return train_fn


def synthetic(n: int = 60000, seed: int = 0):
    """MNIST-shaped synthetic data: inputs uniform in [-1, 1], random labels."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 784)).astype(np.float32), rng.integers(0, 10, n)
