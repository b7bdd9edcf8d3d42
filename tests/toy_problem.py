"""A training problem whose ranking is known by hand, for the halving and Optuna tests (importable
by their subprocesses)."""

import jax.numpy as jnp
import numpy as np
import optax

# params {"p", "q"}, both 0 at the start; 4 examples of x = 1, batch 1: 4 steps per epoch.
# The optimizer moves p by lr per step (p = 4 lr e after epoch e) and, where boom = 1, q to 2q + 1,
# so the loss 1 - p + q^2 passes 10x its first value at step 3: that trial diverged.
# The metric is dist = |p - 12|: after epoch 1 it is 4 |lr - 3|, after epoch 3 12 |lr - 1|.

ONES = np.ones((4, 1), np.float32)
LRS = [0.5, 1.0, 1.5, 2.0, 2.5, 2.9, 3.0, 3.6, 4.0]
BOOM = [0, 0, 0, 0, 0, 0, 1, 0, 0]  # lr 3.0 has the best dist after epoch 1, but diverged


def toy_init(key):
    return {"p": jnp.float32(0.0), "q": jnp.float32(0.0)}


TRACES = []


def toy_loss(params, x):
    TRACES.append(1)
    return x[:, 0] * (1.0 - params["p"]) + params["q"] ** 2


def toy_tx(h):
    def update(g, state, params):
        return {"p": -h["lr"] * g["p"], "q": h["boom"] * (params["q"] + 1.0)}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def toy_eval(params, x):
    return {"dist": jnp.abs(params["p"] - 12.0) * x[:, 0], "p": params["p"] * x[:, 0]}
