"""A shared least-squares problem for the sweep tests, importable by their subprocesses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmom

STEPS = 12
TRACES = {"n": 0}  # counts the traces of regression()

# A shared least-squares problem: X (32, 8), targets (32, 4); the model is a (8, 4) matrix.
_rng = np.random.default_rng(0)
X = _rng.normal(size=(32, 8)).astype(np.float32)
Y = _rng.normal(size=(32, 4)).astype(np.float32)


def regression(hparams, key, x, y):
    """SGD with momentum on 0.5*mean((xW - y)^2); W ~ N(0, 1) from the key. Counts its traces."""
    TRACES["n"] += 1
    w = jax.random.normal(key, (8, 4))
    tx = jaxmom.sgd(hparams["lr"], hparams["momentum"])

    def step(carry, _):
        w, state = carry
        loss, g = jax.value_and_grad(lambda w: 0.5 * jnp.mean((x @ w - y) ** 2))(w)
        updates, state = tx.update(g, state, w)
        return (optax.apply_updates(w, updates), state), loss

    (w, _), losses = jax.lax.scan(step, (w, tx.init(w)), None, length=STEPS)
    return {"loss": losses, "final_loss": losses[-1], "w": w}


def numpy_sgd(lr, momentum, w0):
    """torch.optim.SGD (b_1 = g_1; b = mu*b + g; p -= lr*b) on the same problem, in float64."""
    w, b, losses = np.asarray(w0, np.float64), None, []
    x, y = X.astype(np.float64), Y.astype(np.float64)
    for _ in range(STEPS):
        r = x @ w - y
        losses.append(0.5 * np.mean(r**2))
        g = x.T @ r / r.size
        b = g if b is None else momentum * b + g
        w = w - lr * b
    return np.array(losses), w
