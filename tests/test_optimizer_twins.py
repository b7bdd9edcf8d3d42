"""Each optimizer against its twins: Optax, and the seed tutorials' own loops (torch.optim's
flag products are in test_torch_products.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from noisy_quadratic import CURVATURE, problem, run_jax

import jaxmom

# torch.optim twins: every flag product in test_torch_products.py.


# (jaxmom optimizer, the Optax optimizer with matching settings)
OPTAX_CASES = {
    "sgd-momentum": (jaxmom.sgd(0.05, 0.9), optax.sgd(0.05, 0.9)),
    "sgd-nesterov": (jaxmom.sgd(0.05, 0.9, nesterov=True), optax.sgd(0.05, 0.9, nesterov=True)),
    "sutskever-nesterov": (
        jaxmom.sutskever_sgd(0.05, 0.9, nesterov=True),
        optax.sgd(0.05, 0.9, nesterov=True),
    ),
    "adagrad": (
        jaxmom.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        optax.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
    ),
    "adadelta": (jaxmom.adadelta(0.5, 0.8, 1e-4), optax.adadelta(0.5, 0.8, 1e-4)),
    "rmsprop": (jaxmom.rmsprop(0.01, 0.9), optax.rmsprop(0.01, 0.9, eps_in_sqrt=False)),
    "rmsprop-eps_in_sqrt": (
        jaxmom.rmsprop(0.01, 0.9, eps_in_sqrt=True),
        optax.rmsprop(0.01, 0.9),
    ),
    "rmsprop-centered-momentum": (
        jaxmom.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.9),
        optax.rmsprop(0.01, 0.9, 1e-3, eps_in_sqrt=False, centered=True, momentum=0.9),
    ),
    "rmsprop-centered-momentum-eps_in_sqrt": (
        jaxmom.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.5, eps_in_sqrt=True),
        optax.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.5),
    ),
    "adam": (jaxmom.adam(0.05, 0.8, 0.99, 1e-4), optax.adam(0.05, 0.8, 0.99, 1e-4)),
}


@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_matches_optax(case):
    ours, theirs = OPTAX_CASES[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        run = jax.jit(run_jax, static_argnums=0)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
            run(ours, params, noise),
            run(theirs, params, noise),
        )


def test_ema_matches_optax():
    params, noise = problem(np.float32)
    for debias in (False, True):
        outs = []
        for tx in (jaxmom.ema(0.8, debias=debias), optax.ema(0.8, debias=debias)):
            s, out = tx.init(params), []
            for t in range(5):
                u, s = tx.update({k: v[t] for k, v in noise.items()}, s)
                out.append(u)
            outs.append(out)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), *outs)


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_differences_from_optax_are_the_stated_ones():
    """Where no setting makes them equal, the difference is the one the docstrings state."""
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        run = jax.jit(run_jax, static_argnums=0)

        # amsgrad: Optax maximises the bias-corrected v, PyTorch (and jaxmom) the raw v.
        ours = run(jaxmom.adam(0.05, amsgrad=True), params, noise)
        theirs = run(optax.amsgrad(0.05), params, noise)
        assert max_difference(ours, theirs) > 1e-4
        corrected_max = optax.chain(
            optax.scale_by_amsgrad(), optax.scale_by_learning_rate(0.05)
        )  # Optax's own rule, written out: max over v_t / (1 - b2^t)
        np.testing.assert_allclose(run(corrected_max, params, noise)["w"], theirs["w"], rtol=1e-12)

        # rmsprop momentum under a schedule: Optax keeps lr inside its buffer, PyTorch outside.
        schedule = optax.linear_schedule(0.02, 0.0, 50)
        ours = run(jaxmom.rmsprop(schedule, 0.9, momentum=0.9), params, noise)
        theirs = run(optax.rmsprop(schedule, 0.9, eps_in_sqrt=False, momentum=0.9), params, noise)
        assert max_difference(ours, theirs) > 1e-3
        same = run(optax.rmsprop(schedule, 0.9, eps_in_sqrt=False), params, noise)
        ours_no_momentum = run(jaxmom.rmsprop(schedule, 0.9), params, noise)
        assert max_difference(ours_no_momentum, same) < 1e-12

        # adagrad defaults: Optax starts G at 0.1 and puts eps inside the root.
        ours = run(jaxmom.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-3), params, noise)
        theirs = run(optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-3), params, noise)
        assert max_difference(ours, theirs) > 1e-6


# --- the seed tutorials' own loops, transcribed as they are written (in PyTorch) ---


def sgd_momentum(parameters, vs, lr, gamma):
    for param, v in zip(parameters, vs):
        v[:] = gamma * v + lr * param.grad.data
        param.data = param.data - v


def adam(parameters, vs, sqrs, lr, t, beta1=0.9, beta2=0.999):
    eps = 1e-8
    for param, v, sqr in zip(parameters, vs, sqrs):
        v[:] = beta1 * v + (1 - beta1) * param.grad.data
        sqr[:] = beta2 * sqr + (1 - beta2) * param.grad.data**2
        v_hat = v / (1 - beta1**t)
        s_hat = sqr / (1 - beta2**t)
        param.data = param.data - lr * v_hat / torch.sqrt(s_hat + eps)


def GD_momentum(x_start, df, epochs, lr, momentum):
    dx = 0
    v = 0
    x = x_start
    xs = np.zeros(epochs + 1)
    xs[0] = x
    for i in range(epochs):
        dx = df(x)
        v = -dx * lr + momentum * v
        x += v
        xs[i + 1] = x
    return xs


def run_seed_loop(update, params, noise):
    tensors = [torch.tensor(params[k], requires_grad=True) for k in sorted(params)]
    state = [[torch.zeros_like(p) for p in tensors] for _ in range(2)]
    path = []
    for t in range(len(noise["w"])):
        for k, p in zip(sorted(params), tensors):
            p.grad = torch.tensor(noise[k][t]) + CURVATURE * p.detach()
        update(tensors, state, t + 1)
        path.append({k: p.detach().numpy().copy() for k, p in zip(sorted(params), tensors)})
    return {k: np.stack([step[k] for step in path]) for k in params}


@pytest.mark.parametrize(
    "tx, loop",
    [
        (jaxmom.sutskever_sgd(0.05, 0.9), lambda p, s, t: sgd_momentum(p, s[0], 0.05, 0.9)),
        (jaxmom.adam(0.05, eps_in_sqrt=True), lambda p, s, t: adam(p, s[0], s[1], 0.05, t)),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_matches_seed_loops(tx, loop):
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        # the tutorials' `v[:] = ...` needs at least one dimension: drop the scalar leaf
        params, noise = ({k: d[k] for k in ("w", "b")} for d in (params, noise))
        actual = jax.jit(run_jax, static_argnums=0)(tx, params, noise)
    expected = run_seed_loop(loop, params, noise)
    for k in params:
        np.testing.assert_allclose(actual[k], expected[k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("lr, momentum", [(0.1, 0.0), (0.1, 0.5), (0.6, 0.9), (0.01, 0.1)])
def test_matches_seed_gd_momentum_on_x_squared(lr, momentum):
    with jax.enable_x64(True):
        tx = jaxmom.sutskever_sgd(lr, momentum)
        x, state, xs = jnp.asarray(-5.0), None, [-5.0]
        state = tx.init(x)
        for _ in range(20):
            u, state = tx.update(2 * x, state)
            x = optax.apply_updates(x, u)
            xs.append(float(x))
            # the state's buffer is the tutorial's v, sign included (momentum 0 keeps none)
            if momentum:
                assert float(state[1].buffer) == pytest.approx(
                    xs[-1] - xs[-2], rel=1e-12, abs=1e-15
                )
            else:
                assert state[1] == optax.EmptyState()
    np.testing.assert_allclose(xs, GD_momentum(-5.0, lambda x: 2 * x, 20, lr, momentum), rtol=1e-12)
