"""Models with state and per-step randomness for tests/test_fit_models.py (importable by its
subprocesses): a Flax linen CNN with BatchNorm and Dropout on tiny images, a Flax NNX MLP with
BatchNorm and Dropout whose evaluation also draws from its key, and the plain training loop that
fit's contract (jaxmom/sweep/_fit.py) describes, written apart from fit."""

import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from fit_problem import lecun_normal
from flax import nnx

import jaxmom

RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(10, 6, 6, 1)).astype(np.float32)  # batches of 4: 4 + 4 + 2
LABELS = RNG.integers(0, 3, 10).astype(np.int32)
X = RNG.normal(size=(11, 5)).astype(np.float32)  # batches of 4: 4 + 4 + 3
Y = RNG.integers(0, 3, 11).astype(np.int32)
EVAL = {"val": (X[:5], Y[:5]), "test": (X, Y)}  # batches of 4: 4 + 1, and 4 + 4 + 3
IMAGE_EVAL = {"val": (IMAGES[:3], LABELS[:3]), "test": (IMAGES, LABELS)}


def sgd(h):
    return jaxmom.sgd(h["lr"], h["momentum"])


# ---- Flax linen: a CNN with BatchNorm and Dropout ------------------------------------------------


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(4, (3, 3), kernel_init=lecun_normal)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.8)(x)
        x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
        return nn.Dense(3, kernel_init=lecun_normal)(x.reshape(x.shape[0], -1))


def linen_init(key):
    variables = CNN().init(key, IMAGES[:1], train=False)
    return variables["params"], {"batch_stats": variables["batch_stats"]}


def linen_loss(params, state, x, y, *, key):
    logits, new_state = CNN().apply(
        {"params": params, **state}, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, y), new_state


def linen_eval(params, state, x, y):
    logits = CNN().apply({"params": params, **state}, x, train=False)
    return {
        "accuracy": jnp.argmax(logits, -1) == y,
        "nll": optax.softmax_cross_entropy_with_integer_labels(logits, y),
    }


# ---- Flax NNX: an MLP with BatchNorm and Dropout ------------------------------------------------


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(5, 8, kernel_init=lecun_normal, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.8, rngs=rngs)
        self.drop = nnx.Dropout(0.3)
        self.out = nnx.Linear(8, 3, kernel_init=lecun_normal, rngs=rngs)

    def __call__(self, x, key=None):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x))), rngs=key))


GRAPHDEF = nnx.split(MLP(nnx.Rngs(0)), nnx.Param, nnx.BatchStat)[0]


def nnx_init(key):
    _, params, stats = nnx.split(MLP(nnx.Rngs(key)), nnx.Param, nnx.BatchStat)
    return params, stats


def nnx_loss(params, stats, x, y, *, key):
    model = nnx.merge(GRAPHDEF, params, stats, copy=True)
    model.train()
    logits = model(x, key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y), nnx.state(
        model, nnx.BatchStat
    )


def nnx_eval(params, stats, x, y, *, key):
    model = nnx.merge(GRAPHDEF, params, stats, copy=True)
    model.eval()
    return {
        "accuracy": jnp.argmax(model(x), -1) == y,
        "draw": jax.random.uniform(key, (x.shape[0],)),  # what the evaluation's key gives
    }


# ---- the plain loop of the contract --------------------------------------------------------------


@functools.cache
def _step(loss, make_tx):
    @jax.jit
    def step(params, opt_state, state, hp, batch, key):
        def objective(p):
            losses, new_state = loss(p, state, *batch, key=key)
            return losses.mean(), new_state

        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = make_tx(hp).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, value

    return step


@functools.cache
def _evaluate(evaluate):
    return jax.jit(evaluate)


def plain_loop(
    init, loss, evaluate, hparams, train, evals, batch_size, eval_batch_size, epochs, seed
):
    """The contract, step by step: ``(params, model_state, every step's loss, {metric: per-epoch
    values})``. ``evals``: ``{set name: arrays}`` (None: the one unnamed set)."""
    step = _step(loss, sgd)
    hp = {k: jnp.float32(v) for k, v in hparams.items()}
    root = jax.random.key(seed)
    init_key, data_key = jax.random.split(root)
    step_root, eval_root = jax.random.fold_in(root, 2), jax.random.fold_in(root, 3)
    params, state = init(init_key)
    opt_state = sgd(hp).init(params)
    n, losses, metrics = len(train[0]), [], {}
    takes_key = "key" in inspect.signature(evaluate).parameters
    for e in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, e), n))
        for i, start in enumerate(range(0, n, batch_size)):
            idx = order[start : start + batch_size]
            key = jax.random.fold_in(jax.random.fold_in(step_root, e), i)
            batch = tuple(a[idx] for a in train)
            params, opt_state, state, value = step(params, opt_state, state, hp, batch, key)
            losses.append(float(value))
        for name, data in evals.items():
            m, totals = len(data[0]), {}
            for j, start in enumerate(range(0, m, eval_batch_size)):
                batch = tuple(a[start : start + eval_batch_size] for a in data)
                kw = {"key": jax.random.fold_in(jax.random.fold_in(eval_root, e), j)}
                out = _evaluate(evaluate)(params, state, *batch, **(kw if takes_key else {}))
                for k, v in out.items():
                    totals[k] = totals.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
            for k, total in totals.items():
                metrics.setdefault(k if name is None else f"{name}/{k}", []).append(total / m)
    return params, state, np.array(losses), {k: np.array(v) for k, v in metrics.items()}


def assert_cells_equal_the_loop(res, cells, problem, **kw):
    """Every cell ``(index, hparams, seed)`` of ``res`` equals :func:`plain_loop`, in float32 to
    rounding: its losses, evaluations, params and model state."""
    for index, hparams, seed in cells:
        params, state, losses, metrics = plain_loop(*problem, hparams, seed=seed, **kw)
        np.testing.assert_allclose(res.metrics["loss"][index], losses, rtol=2e-5, atol=2e-6)
        for k, v in metrics.items():
            np.testing.assert_allclose(res.metrics[k][index], v, rtol=2e-5, atol=2e-6, err_msg=k)
        for got, want in ((res.params, params), (res.model_state, state)):
            if got is None and want == ():  # a model without state
                continue
            got = jax.tree.map(lambda x: x[index], got)
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5), got, want
            )
