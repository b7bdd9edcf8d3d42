"""Every flag product of the PyTorch twins against the real torch.optim, in float64.

Each case runs three ways on the same noisy quadratic: jaxmom (jitted), torch.optim, and the NumPy
transcription of torch's source in ``optimizer_reference``. All three agree to ~1e-12. A
combination torch refuses (nesterov without momentum, or with dampening) must be refused by jaxmom
and by the transcription too.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimizer_reference as ref
import pytest
import torch
from noisy_quadratic import CURVATURE, SMALL, path_f64, problem, run_jax, run_torch

import jaxmom

STEPS = 30
RTOL = 1e-12


def assert_paths_close(actual, expected, rtol=RTOL):
    for k in expected:
        scale = max(1.0, float(np.max(np.abs(expected[k]))))
        np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=rtol * scale)


def product(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def name(kwargs):
    return "-".join(f"{k}={v}" for k, v in kwargs.items())


# (jaxmom factory, torch class, reference factory, jaxmom kwargs -> torch kwargs, flag products)
TWINS = {
    "sgd": (
        jaxmom.sgd,
        torch.optim.SGD,
        ref.sgd,
        lambda kw: kw,
        product(
            lr=[0.05],
            momentum=[0.0, 0.5, 0.9],
            dampening=[0.0, 0.3],
            nesterov=[False, True],
            weight_decay=[0.0, 0.01],
        ),
    ),
    "rmsprop": (
        jaxmom.rmsprop,
        torch.optim.RMSprop,
        ref.rmsprop,
        lambda kw: kw,
        product(
            lr=[0.01],
            alpha=[0.99, 0.9],
            eps=[1e-8],
            centered=[False, True],
            momentum=[0.0, 0.9],
            weight_decay=[0.0, 0.01],
        ),
    ),
    "adagrad": (
        jaxmom.adagrad,
        torch.optim.Adagrad,
        ref.adagrad,
        lambda kw: kw,
        product(
            lr=[0.1],
            lr_decay=[0.0, 0.05],
            initial_accumulator_value=[0.0, 0.2],
            eps=[1e-10],
            weight_decay=[0.0, 0.01],
        ),
    ),
    "adadelta": (
        jaxmom.adadelta,
        torch.optim.Adadelta,
        ref.adadelta,
        lambda kw: kw,
        product(lr=[0.5], rho=[0.9, 0.5], eps=[1e-6, 1e-3], weight_decay=[0.0, 0.01]),
    ),
    "adam": (
        jaxmom.adam,
        torch.optim.Adam,
        ref.adam,
        lambda kw: {
            **{k: v for k, v in kw.items() if k not in ("b1", "b2")},
            "betas": (kw["b1"], kw["b2"]),
        },
        product(
            lr=[0.05],
            b1=[0.9, 0.0],
            b2=[0.999],
            eps=[1e-8],
            amsgrad=[False, True],
            weight_decay=[0.0, 0.01],
        ),
    ),
}
CASES = [(twin, kw) for twin, (*_, products) in TWINS.items() for kw in products]


def jaxmom_kwargs(kwargs):
    out = dict(kwargs)
    out["learning_rate"] = out.pop("lr")
    return out


def valid_for_torch(twin, kwargs):
    return not (
        twin == "sgd" and kwargs["nesterov"] and (kwargs["momentum"] == 0 or kwargs["dampening"])
    )


@pytest.mark.parametrize("twin, kwargs", CASES, ids=[f"{t}-{name(k)}" for t, k in CASES])
def test_matches_torch_and_the_transcription_of_its_source(twin, kwargs):
    factory, torch_class, reference, to_torch, _ = TWINS[twin]
    params, noise = problem("float64", STEPS, shapes=SMALL)
    if not valid_for_torch(twin, kwargs):
        with pytest.raises(ValueError, match="Nesterov"):
            torch_class([torch.zeros(1, requires_grad=True)], **to_torch(kwargs))
        with pytest.raises(ValueError, match="Nesterov"):
            reference(**kwargs)
        with pytest.raises(ValueError, match="nesterov needs"):
            factory(**jaxmom_kwargs(kwargs))
        return
    expected = run_torch(torch_class, to_torch(kwargs), params, noise)
    transcribed = ref.run(reference(**kwargs), params, noise, CURVATURE)
    assert_paths_close(transcribed, expected)
    assert_paths_close(path_f64(factory(**jaxmom_kwargs(kwargs)), params, noise), expected)


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_traced_momentum_zero_ignores_dampening_as_torch_does(dampening):
    """A sweep over momentum {0, 0.9}: each cell of the vmap is torch.optim.SGD's path."""
    params, noise = problem("float64", STEPS, shapes=SMALL)
    momenta = [0.0, 0.9]

    def path(momentum):
        tx = jaxmom.sgd(0.05, momentum, dampening=dampening, weight_decay=0.01)
        return run_jax(tx, params, noise)

    with jax.enable_x64(True):
        paths = jax.tree.map(np.asarray, jax.jit(jax.vmap(path))(jnp.asarray(momenta)))
    for i, momentum in enumerate(momenta):
        kwargs = dict(lr=0.05, momentum=momentum, dampening=dampening, weight_decay=0.01)
        expected = run_torch(torch.optim.SGD, kwargs, params, noise)
        assert_paths_close({k: v[i] for k, v in paths.items()}, expected)


def test_dampening_without_momentum_on_x_squared():
    """The issue's numbers: x^2 from 1.0 at lr 0.1, momentum 0, dampening 0.3."""
    for momentum in (0.0, jnp.asarray(0.0)):
        tx = jaxmom.sgd(0.1, momentum, dampening=0.3)
        x, state, xs = jnp.asarray(1.0), None, []
        state = tx.init(x)
        for _ in range(3):
            u, state = jax.jit(tx.update)(2 * x, state)
            x = optax.apply_updates(x, u)
            xs.append(float(x))
        np.testing.assert_allclose(xs, [0.8, 0.64, 0.512], rtol=1e-6)


def test_adam_amsgrad_float32_matches_torch():
    params, noise = problem("float64", STEPS, shapes=SMALL)
    params, noise = (jax.tree.map(lambda x: np.asarray(x, np.float32), d) for d in (params, noise))
    kwargs = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, amsgrad=True, weight_decay=0.1)
    tx = jaxmom.adam(0.05, 0.8, 0.99, 1e-4, amsgrad=True, weight_decay=0.1)
    actual = jax.tree.map(np.asarray, jax.jit(run_jax, static_argnums=0)(tx, params, noise))
    expected = run_torch(torch.optim.Adam, kwargs, params, noise)
    assert_paths_close(actual, expected, rtol=1e-5)
