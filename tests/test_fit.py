"""jaxmom.sweep.fit: every cell equals a plain training loop run alone (MLP and CNN, seeds, the
partial last batch, drop_last), chunking, bad cells refused before compiling, checkpoints that
resume bit-identically after kill -9 and refuse tampered files, memory, progress."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmom
from jaxmom import sweep

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 40).astype(np.int32)
IMAGES = RNG.normal(size=(20, 28, 28, 1)).astype(np.float32)
LABELS = RNG.integers(0, 10, 20).astype(np.int32)


# ---- models ------------------------------------------------------------------------------------


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


# ---- the plain loop, written apart from fit ----------------------------------------------------


def plain_loop(init, loss, make_tx, hparams, train, batch_size, epochs, seed, drop_last=False):
    """The contract: split(key(seed)) into init and data keys; epoch e visits
    permutation(fold_in(data_key, e), n) in slices of batch_size; a jitted value_and_grad of the
    mean loss, tx.update, optax.apply_updates. Returns (params, every step's loss)."""

    @jax.jit
    def step(params, opt_state, hp, batch):
        value, grads = jax.value_and_grad(lambda p: jnp.mean(loss(p, *batch)))(params)
        updates, opt_state = make_tx(hp).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    hp = {k: jnp.float32(v) for k, v in hparams.items()}
    init_key, data_key = jax.random.split(jax.random.key(seed))
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


def assert_cell_equals_loop(res, index, cell, init, loss, train, batch_size, epochs, seed, **kw):
    params, losses = plain_loop(init, loss, sgd, cell, train, batch_size, epochs, seed, **kw)
    np.testing.assert_allclose(res.metrics["loss"][index], losses, rtol=2e-5, atol=2e-6)
    got = jax.tree.map(lambda x: x[index], res.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5), got, params)


# ---- a cell equals the plain loop -----------------------------------------------------------


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_mlp_cell_with_two_seeds_equals_the_plain_loop(drop_last):
    grid = sweep.product(lr=[0.05, 0.3], momentum=[0.0, 0.9]).with_seeds(2)
    res = sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, drop_last=drop_last, return_params=True, progress=False, chunk_size=None,
    )  # fmt: skip
    steps = 2 if drop_last else 3  # 40 = 16 + 16 + 8: the partial batch is kept or dropped
    assert res.metrics["loss"].shape == (2, 2, 2, 2 * steps)
    assert res.metrics["epoch_loss"].shape == (2, 2, 2, 2)
    np.testing.assert_allclose(
        res.metrics["epoch_loss"], res.metrics["loss"].reshape(2, 2, 2, 2, steps).mean(-1)
    )
    for i, lr in enumerate([0.05, 0.3]):
        for j, mu in enumerate([0.0, 0.9]):
            for seed in (0, 1):
                assert_cell_equals_loop(
                    res, (i, j, seed), {"lr": lr, "momentum": mu}, mlp_init, mlp_loss,
                    (X, Y), 16, 2, seed, drop_last=drop_last,
                )  # fmt: skip


def test_cnn_cells_with_two_seeds_and_a_partial_batch_equal_the_plain_loop():
    grid = sweep.product(lr=[0.02, 0.1], momentum=[0.9]).with_seeds(2)
    res = sweep.fit(
        grid, init=cnn_init, loss=cnn_loss, optimizer=sgd, train=(IMAGES, LABELS), batch_size=8,
        epochs=2, return_params=True, progress=False, chunk_size=None,
    )  # fmt: skip
    assert res.metrics["loss"].shape == (2, 1, 2, 6)  # 20 = 8 + 8 + 4
    for i, lr in enumerate([0.02, 0.1]):
        for seed in (0, 1):
            assert_cell_equals_loop(
                res, (i, 0, seed), {"lr": lr, "momentum": 0.9}, cnn_init, cnn_loss,
                (IMAGES, LABELS), 8, 2, seed,
            )  # fmt: skip


def test_without_a_seed_axis_every_cell_uses_seed_and_evaluation_averages_all_of_eval():
    grid = sweep.product(lr=[0.1, 0.5], momentum=[0.5])
    res = sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, seed=3, eval=(X[:25], Y[:25]), evaluate=mlp_metrics, eval_batch_size=10,
        return_params=True, progress=False,
    )  # fmt: skip
    for i, lr in enumerate([0.1, 0.5]):
        assert_cell_equals_loop(
            res, (i, 0), {"lr": lr, "momentum": 0.5}, mlp_init, mlp_loss, (X, Y), 16, 2, 3
        )
        logits = mlp_logits(jax.tree.map(lambda x: x[i, 0], res.params), X[:25])
        accuracy = np.mean(np.argmax(logits, -1) == Y[:25])
        test_loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, Y[:25]))
        np.testing.assert_allclose(res.metrics["accuracy"][i, 0, -1], accuracy, rtol=1e-6)
        np.testing.assert_allclose(res.metrics["test_loss"][i, 0, -1], test_loss, rtol=1e-5)
    assert res.metrics["accuracy"].shape == (2, 1, 2)
    assert res.eval_seconds > 0


def test_fixed_values_and_eval_params_reach_the_optimizer_and_the_evaluation():
    calls = []

    def make_tx(h):
        return jaxmom.sgd(h["lr"], h["momentum"], weight_decay=h["weight_decay"])

    def eval_params(params, opt_state):
        calls.append(type(opt_state))
        return jax.tree.map(jnp.zeros_like, params)

    res = sweep.fit(
        sweep.product(lr=[0.1]), init=mlp_init, loss=mlp_loss, optimizer=make_tx, train=(X, Y),
        batch_size=16, epochs=1, fixed={"momentum": 0.9, "weight_decay": 0.01},
        eval=(X, Y), evaluate=mlp_metrics, eval_params=eval_params, progress=False,
        return_params=True,
    )  # fmt: skip
    tx = lambda h: jaxmom.sgd(h["lr"], 0.9, weight_decay=0.01)
    params, losses = plain_loop(mlp_init, mlp_loss, tx, {"lr": 0.1}, (X, Y), 16, 1, 0)
    np.testing.assert_allclose(res.metrics["loss"][0], losses, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(res.metrics["test_loss"][0, 0], np.log(3.0), rtol=1e-6)
    assert calls


# ---- bad input, refused before any compile -------------------------------------------------


def counting_loss():
    traced = []

    def loss(params, x, y):
        traced.append(1)
        return mlp_loss(params, x, y)

    return loss, traced


def test_a_grid_cell_the_optimizer_refuses_names_the_cell_before_compiling():
    loss, traced = counting_loss()
    grid = sweep.product(lr=[0.1], momentum=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"^grid cell lr=0\.1, momentum=1\.0: .*momentum") as e:
        sweep.fit(
            grid, init=mlp_init, loss=loss, optimizer=sgd, train=(X, Y), batch_size=8, epochs=1
        )
    assert "\n" not in str(e.value)
    assert not traced


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"epochs": 1.5}, "epochs must be a positive integer, got 1.5"),
        (
            {"train": (X, Y[:30])},
            r"train arrays need equal leading \(example\) axes, got \[40, 30\]",
        ),
        ({"train": (X[:0], Y[:0])}, "train needs at least one example, got 0"),
        ({"train": X}, "train must be a non-empty tuple of arrays, got ndarray"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer, None or 'auto', got 0"),
        ({"chunk_size": True}, "chunk_size must be a positive integer, None or 'auto', got True"),
        (
            {"chunk_size": "bogus"},
            "chunk_size must be a positive integer, None or 'auto', got 'bogus'",
        ),
        ({"drop_last": True, "batch_size": 64}, "drop_last=True with batch_size 64 above the 40"),
        ({"evaluate": mlp_metrics}, "eval and evaluate go together"),
        ({"fixed": {"lr": 0.1}}, r"fixed hyperparameters \['lr'\] are also axes of the grid"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_compiling(kwargs, message):
    loss, traced = counting_loss()
    args = dict(
        init=mlp_init, loss=loss, optimizer=sgd, train=(X, Y), batch_size=8, epochs=1,
        fixed={"momentum": 0.5},
    )  # fmt: skip
    if "fixed" in kwargs:
        args["fixed"] = {"momentum": 0.5, **kwargs.pop("fixed")}
    with pytest.raises(ValueError, match=message) as e:
        sweep.fit(sweep.product(lr=[0.1]), **{**args, **kwargs})
    assert "\n" not in str(e.value)
    assert not traced


# ---- chunks -------------------------------------------------------------------------------------


@functools.cache
def _mlp_fit(chunk_size, **kw):
    grid = sweep.product(lr=[0.05, 0.1, 0.3], momentum=[0.0, 0.9])
    return sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, eval=(X, Y), evaluate=mlp_metrics, return_params=True, progress=False,
        chunk_size=chunk_size, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("chunk_size", [1, 4, "auto"])
def test_chunked_equals_unchunked(chunk_size):
    whole, chunked = _mlp_fit(None), _mlp_fit(chunk_size)
    for name in whole.metrics:
        np.testing.assert_allclose(chunked.metrics[name], whole.metrics[name], rtol=1e-6, atol=1e-7)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        chunked.params,
        whole.params,
    )
