"""Every optimizer and flag combination against an independent NumPy transcription, 50 steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimizer_reference as ref
import pytest
from noisy_quadratic import CURVATURE, problem, run_jax
from optimizer_reference import reference_kwargs

import jaxmom

# Dyadic values, exact in every precision, so float64 runs can be held to rtol 1e-12.
# (test_optimizer_contracts runs every optimizer under warmup_cosine_decay_schedule too.)
SCHEDULE = optax.piecewise_constant_schedule(0.0625, {10: 0.5, 30: 0.25})

# (jaxmom factory, reference factory, keyword arguments shared by both)
CASES = {
    "sgd": (jaxmom.sgd, ref.sgd, dict(learning_rate=0.05)),
    "sgd-momentum": (jaxmom.sgd, ref.sgd, dict(learning_rate=0.05, momentum=0.9)),
    "sgd-dampening": (jaxmom.sgd, ref.sgd, dict(learning_rate=0.05, momentum=0.9, dampening=0.5)),
    "sgd-nesterov": (jaxmom.sgd, ref.sgd, dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    "sgd-weight-decay": (
        jaxmom.sgd,
        ref.sgd,
        dict(learning_rate=0.05, momentum=0.5, dampening=0.1, weight_decay=0.1),
    ),
    "sgd-schedule": (jaxmom.sgd, ref.sgd, dict(learning_rate=SCHEDULE, momentum=0.9)),
    "sutskever": (jaxmom.sutskever_sgd, ref.sutskever_sgd, dict(learning_rate=0.05)),
    "sutskever-momentum": (
        jaxmom.sutskever_sgd,
        ref.sutskever_sgd,
        dict(learning_rate=0.05, momentum=0.9),
    ),
    "sutskever-nesterov": (
        jaxmom.sutskever_sgd,
        ref.sutskever_sgd,
        dict(learning_rate=0.05, momentum=0.8, nesterov=True),
    ),
    "sutskever-schedule": (
        jaxmom.sutskever_sgd,
        ref.sutskever_sgd,
        dict(learning_rate=SCHEDULE, momentum=0.9),
    ),
    "ema_sgd": (jaxmom.ema_sgd, ref.ema_sgd, dict(learning_rate=0.1, beta=0.9)),
    "ema_sgd-debias": (jaxmom.ema_sgd, ref.ema_sgd, dict(learning_rate=0.1, beta=0.9, debias=True)),
    "ema_sgd-schedule": (jaxmom.ema_sgd, ref.ema_sgd, dict(learning_rate=SCHEDULE, beta=0.8)),
    "adagrad": (jaxmom.adagrad, ref.adagrad, dict(learning_rate=0.1)),
    "adagrad-all": (
        jaxmom.adagrad,
        ref.adagrad,
        dict(
            learning_rate=0.1,
            lr_decay=0.05,
            initial_accumulator_value=0.2,
            eps=1e-3,
            weight_decay=0.1,
        ),
    ),
    "adagrad-schedule": (jaxmom.adagrad, ref.adagrad, dict(learning_rate=SCHEDULE, lr_decay=0.01)),
    "adadelta": (jaxmom.adadelta, ref.adadelta, dict()),
    "adadelta-all": (
        jaxmom.adadelta,
        ref.adadelta,
        dict(learning_rate=0.5, rho=0.8, eps=1e-4, weight_decay=0.1),
    ),
    "adadelta-schedule": (jaxmom.adadelta, ref.adadelta, dict(learning_rate=SCHEDULE)),
    "adam-schedule": (jaxmom.adam, ref.adam, dict(learning_rate=SCHEDULE)),
    "rmsprop-schedule": (
        jaxmom.rmsprop,
        ref.rmsprop,
        dict(learning_rate=SCHEDULE, momentum=0.5, alpha=0.9),
    ),
}
for centered in (False, True):
    for momentum in (0.0, 0.9):
        for eps_in_sqrt in (False, True):
            kw = dict(centered=centered, momentum=momentum, eps_in_sqrt=eps_in_sqrt)
            name = "rmsprop-" + "-".join(f"{k}={v}" for k, v in kw.items())
            CASES[name] = (jaxmom.rmsprop, ref.rmsprop, dict(learning_rate=0.01, alpha=0.9, **kw))
CASES["rmsprop-weight-decay"] = (jaxmom.rmsprop, ref.rmsprop, dict(weight_decay=0.1, eps=1e-3))
for amsgrad in (False, True):
    for debias in (False, True):
        for eps_in_sqrt in (False, True):
            kw = dict(amsgrad=amsgrad, debias=debias, eps_in_sqrt=eps_in_sqrt)
            name = "adam-" + "-".join(f"{k}={v}" for k, v in kw.items())
            CASES[name] = (jaxmom.adam, ref.adam, dict(learning_rate=0.05, **kw))
CASES["adam-weight-decay"] = (
    jaxmom.adam,
    ref.adam,
    dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-4, weight_decay=0.1),
)

TOLERANCE = {jnp.float32: 1e-5, jnp.float64: 1e-12}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy_transcription(case, dtype):
    factory, reference, kwargs = CASES[case]
    with jax.enable_x64(dtype == jnp.float64):
        params, noise = problem(np.dtype(dtype))
        expected = ref.run(reference(**reference_kwargs(kwargs)), params, noise, CURVATURE)
        actual = jax.jit(run_jax, static_argnums=0)(factory(**kwargs), params, noise)
        rtol = TOLERANCE[dtype]
        for k in params:
            assert actual[k].dtype == dtype
            scale = np.max(np.abs(expected[k]))
            np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("debias", [False, True])
def test_ema_matches_numpy_transcription(debias):
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        tx = jaxmom.ema(0.8, debias=debias)

        def body(s, x):
            out, s = tx.update(x, s)
            return s, out

        actual = jax.lax.scan(body, tx.init(params), noise)[1]
        expected = ref.run(ref.ema(0.8, debias), params, noise, 0.0)
        chex.assert_trees_all_close(actual, expected, rtol=1e-12, atol=1e-14)


def test_first_steps_by_hand():
    """Hand-derived values: g = 1 every step, p0 = 0, lr = 0.1, momentum = 0.9."""
    grads = jnp.ones(())

    def path(tx, n=3):
        p, s, out = jnp.zeros(()), tx.init(jnp.zeros(())), []
        for _ in range(n):
            u, s = tx.update(grads, s, p)
            p = optax.apply_updates(p, u)
            out.append(float(p))
        return out

    # b = 1, 1.9, 2.71  ->  p = -0.1, -0.29, -0.561
    np.testing.assert_allclose(path(jaxmom.sgd(0.1, 0.9)), [-0.1, -0.29, -0.561], rtol=1e-6)
    # dampening 0.5 is skipped on step 1: b = 1, 1.4, 1.76
    np.testing.assert_allclose(
        path(jaxmom.sgd(0.1, 0.9, dampening=0.5)), [-0.1, -0.24, -0.416], rtol=1e-6
    )
    # nesterov: d = 1 + 0.9 b = 1.9, 2.71, 3.439
    np.testing.assert_allclose(
        path(jaxmom.sgd(0.1, 0.9, nesterov=True)), [-0.19, -0.461, -0.8049], rtol=1e-6
    )
    # EMA: v = 0.1, 0.19, 0.271 with lr 1; debiased v_hat = 1, 1, 1
    np.testing.assert_allclose(path(jaxmom.ema_sgd(1.0, 0.9)), [-0.1, -0.29, -0.561], rtol=1e-6)
    np.testing.assert_allclose(path(jaxmom.ema_sgd(1.0, 0.9, debias=True)), [-1, -2, -3], rtol=1e-6)
    # Adam's first step is lr * sign(g); with constant g every step is lr
    np.testing.assert_allclose(path(jaxmom.adam(0.1)), [-0.1, -0.2, -0.3], rtol=1e-5)
    # Adagrad: G = 1, 2, 3 -> steps 0.1/1, 0.1/sqrt(2), 0.1/sqrt(3)
    np.testing.assert_allclose(
        path(jaxmom.adagrad(0.1)), np.cumsum([-0.1, -0.1 / 2**0.5, -0.1 / 3**0.5]), rtol=1e-6
    )
