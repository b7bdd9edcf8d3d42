"""The rest of the momentum family against the reference implementations, 60 steps in float64.

torch.optim for AdamW, NAdam, RAdam and Adamax; lion_pytorch, qhoptim, pytorch_optimizer and
schedulefree (the paper authors' code where there is one) for the rest; Optax where it has the
same rule, and the identities that tie the family to jaxmom's older optimizers.
"""

import importlib
import warnings

import jax
import numpy as np
import optax
import pytest
import torch
from noisy_quadratic import CURVATURE, problem, run_jax, scan, torch_path

import jaxmom

STEPS = 60
RTOL = 1e-9


def _import(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


@pytest.mark.parametrize(
    "name", ["lion_pytorch", "qhoptim.pyt", "pytorch_optimizer", "schedulefree"]
)
def test_reference_packages_import(name):
    assert _import(name) is not None
    assert torch.__version__.startswith("2.13.0")


def _torch(name):
    """The reference optimizer class, imported lazily."""
    module, _, cls = name.rpartition(".")
    return getattr(_import(module), cls)


def run_torch(optimizer_class, kwargs, params, noise, *, schedule_free=False):
    """``optimizer_class`` on the noisy quadratic in float64: the parameter path and, for
    schedule-free optimizers, the parameters that ``.eval()`` swaps in at the end."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the optimizers' scalar state (NAdam's mu product)
    try:
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # qhoptim's deprecated add_(scalar, tensor)
            opt = _torch(optimizer_class)(list(tensors.values()), **kwargs)
            if schedule_free:
                opt.train()
            path = torch_path(opt, tensors, noise)
            if schedule_free:
                opt.eval()
        final = {k: p.detach().numpy().copy() for k, p in tensors.items()}
    finally:
        torch.set_default_dtype(previous)
    return path, final


# (jaxmom optimizer, reference class, its keyword arguments): every flag, on and off
REFERENCE_CASES = {
    f"adamw-amsgrad={a}": (
        jaxmom.adamw(0.05, 0.8, 0.99, 1e-4, 0.1, amsgrad=a),
        "torch.optim.AdamW",
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.1, amsgrad=a),
    )
    for a in (False, True)
}
REFERENCE_CASES["adamw-defaults"] = (jaxmom.adamw(), "torch.optim.AdamW", {})
for d in (False, True):
    REFERENCE_CASES[f"nadam-decoupled={d}"] = (
        jaxmom.nadam(
            0.05, 0.8, 0.99, 1e-4, momentum_decay=0.05, weight_decay=0.1, decoupled_weight_decay=d
        ),
        "torch.optim.NAdam",
        dict(
            lr=0.05,
            betas=(0.8, 0.99),
            eps=1e-4,
            momentum_decay=0.05,
            weight_decay=0.1,
            decoupled_weight_decay=d,
        ),
    )
    # b2 = 0.999 switches the rectification on at step 6; b2 = 0.5 never does (rho_inf = 3)
    REFERENCE_CASES[f"radam-decoupled={d}"] = (
        jaxmom.radam(0.05, 0.8, 0.999, 1e-4, weight_decay=0.1, decoupled_weight_decay=d),
        "torch.optim.RAdam",
        dict(lr=0.05, betas=(0.8, 0.999), eps=1e-4, weight_decay=0.1, decoupled_weight_decay=d),
    )
    REFERENCE_CASES[f"qhm-decoupled={d}"] = (
        jaxmom.qhm(0.5, 0.9, 0.7, weight_decay=0.1, decoupled_weight_decay=d),
        "qhoptim.pyt.QHM",
        dict(
            lr=0.5,
            momentum=0.9,
            nu=0.7,
            weight_decay=0.1,
            weight_decay_type="direct" if d else "grad",
        ),
    )
    REFERENCE_CASES[f"qhadam-decoupled={d}"] = (
        jaxmom.qhadam(0.05, 0.8, 0.99, 0.7, 0.9, 1e-4, weight_decay=0.1, decoupled_weight_decay=d),
        "qhoptim.pyt.QHAdam",
        dict(
            lr=0.05,
            betas=(0.8, 0.99),
            nus=(0.7, 0.9),
            eps=1e-4,
            weight_decay=0.1,
            decouple_weight_decay=d,
        ),
    )
    REFERENCE_CASES[f"aggmo-decoupled={d}"] = (
        jaxmom.aggmo(0.05, (0.0, 0.5, 0.9), weight_decay=0.1, decoupled_weight_decay=d),
        "pytorch_optimizer.AggMo",
        dict(lr=0.05, betas=(0.0, 0.5, 0.9), weight_decay=0.1, weight_decouple=d),
    )
REFERENCE_CASES |= {
    "nadam-defaults": (jaxmom.nadam(), "torch.optim.NAdam", {}),
    "radam-never-rectified": (
        jaxmom.radam(0.05, 0.9, 0.5),
        "torch.optim.RAdam",
        dict(lr=0.05, betas=(0.9, 0.5)),
    ),
    "adamax": (jaxmom.adamax(), "torch.optim.Adamax", {}),
    "adamax-all": (
        jaxmom.adamax(0.05, 0.8, 0.99, 1e-2, weight_decay=0.1),
        "torch.optim.Adamax",
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-2, weight_decay=0.1),
    ),
    "lion": (jaxmom.lion(0.01), "lion_pytorch.Lion", dict(lr=0.01)),
    "lion-all": (
        jaxmom.lion(0.01, 0.8, 0.95, weight_decay=0.5),
        "lion_pytorch.Lion",
        dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.5),
    ),
    "qhm-nu=0": (jaxmom.qhm(0.1, 0.9, 0.0), "qhoptim.pyt.QHM", dict(lr=0.1, momentum=0.9, nu=0.0)),
    "qhadam-defaults": (jaxmom.qhadam(), "qhoptim.pyt.QHAdam", {}),
    "aggmo-defaults": (jaxmom.aggmo(1e-3), "pytorch_optimizer.AggMo", dict(lr=1e-3)),
}
SCHEDULE_FREE_CASES = {
    "defaults": (dict(learning_rate=0.1), dict(lr=0.1)),
    "all": (
        dict(
            learning_rate=0.2, b1=0.8, warmup_steps=10, weight_decay=0.1, weight_lr_power=1.0, r=0.5
        ),
        dict(lr=0.2, momentum=0.8, warmup_steps=10, weight_decay=0.1, weight_lr_power=1.0, r=0.5),
    ),
    "no-weighting": (
        dict(learning_rate=0.1, warmup_steps=5, weight_lr_power=0.0),
        dict(lr=0.1, warmup_steps=5, weight_lr_power=0.0),
    ),
}


def _assert_paths(actual, expected, rtol=RTOL):
    for k in expected:
        np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_matches_reference(case):
    tx, optimizer_class, kwargs = REFERENCE_CASES[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        actual = jax.jit(run_jax, static_argnums=0)(tx, params, noise)
    expected, _ = run_torch(optimizer_class, kwargs, params, noise)
    _assert_paths(actual, expected)


def run_schedule_free(tx, params, noise):
    """``run_jax`` that also returns the evaluation parameters after the last step."""
    (p, s), path = scan(tx, params, noise)
    return path, jaxmom.schedule_free_eval_params(s, p)


@pytest.mark.parametrize("case", list(SCHEDULE_FREE_CASES))
def test_schedule_free_matches_reference_train_and_eval(case):
    ours, theirs = SCHEDULE_FREE_CASES[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        tx = jaxmom.schedule_free_sgd(**ours)
        path, evaluation = jax.jit(run_schedule_free, static_argnums=0)(tx, params, noise)
    expected_path, expected_eval = run_torch(
        "schedulefree.SGDScheduleFree", theirs, params, noise, schedule_free=True
    )
    _assert_paths(path, expected_path)
    _assert_paths(evaluation, expected_eval)
    assert max(np.max(np.abs(evaluation[k] - path[k][-1])) for k in params) > 1e-3  # x != y


# --- the first steps by hand --------------------------------------------------------------


def test_first_steps_by_hand():
    def two_steps(tx, g1, g2, p=1.0):
        state = tx.init(np.float64(p))
        u1, state = tx.update(np.float64(g1), state, np.float64(p))
        u2, _ = tx.update(np.float64(g2), state, np.float64(p) + u1)
        return float(u1), float(u2)

    with jax.enable_x64(True):
        # QHM (beta 0.5, nu 0.5): b1 = 0.5 g1 = 2, d1 = 0.5 g1 + 0.5 b1 = 3;
        # b2 = 0.5 b1 + 0.5 g2 = 2, d2 = 0.5 g2 + 0.5 b2 = 2
        assert two_steps(jaxmom.qhm(1.0, 0.5, 0.5), 4.0, 2.0) == pytest.approx((-3.0, -2.0))
        # AggMo (0, 0.5): b1 = (g1, g1), b2 = (g2, 0.5 g1 + g2), step lr * mean
        assert two_steps(jaxmom.aggmo(1.0, (0.0, 0.5)), 4.0, 2.0) == pytest.approx((-4.0, -3.0))
        # Lion: sign(0.9 * 0 + 0.1 g1); m1 = 0.01 g1; sign(0.9 * 0.04 - 0.1 * 1) = -1
        assert two_steps(jaxmom.lion(0.5), 4.0, -1.0) == pytest.approx((-0.5, 0.5))
        # Adamax: u1 = |g1|, d1 = (0.1 g1 / 0.1) / |g1| = 1; u2 = max(0.999 * 4, 8)
        u1, u2 = two_steps(jaxmom.adamax(1.0, eps=0.0), 4.0, 8.0)
        assert (u1, u2) == pytest.approx((-1.0, -(0.09 * 4 + 0.1 * 8) / 0.19 / 8))
        # RAdam: rho_1 = rho_2 = 1 < 5 with b2 = 0.999, so m_hat only
        u1, u2 = two_steps(jaxmom.radam(1.0), 4.0, 2.0)
        assert (u1, u2) == pytest.approx((-4.0, -(0.09 * 4 + 0.1 * 2) / 0.19))
        # schedule-free, lr 1: c1 = 1 so y1 = z1 = p - g1; c2 = 1/2, z2 = z1 - g2
        # y2 = 0.9 x2 + 0.1 z2 with x2 = (z1 + z2) / 2
        u1, u2 = two_steps(jaxmom.schedule_free_sgd(1.0), 0.5, 0.25)
        z1, z2 = 0.5, 0.25
        assert (u1, u2) == pytest.approx((-0.5, 0.9 * (z1 + z2) / 2 + 0.1 * z2 - z1))


# --- identities ----------------------------------------------------------------------------

IDENTITIES = {
    "qhm-nu=1-is-ema_sgd": (jaxmom.qhm(0.5, 0.9, 1.0), jaxmom.ema_sgd(0.5, 0.9)),
    "qhm-nu=0-is-sgd": (jaxmom.qhm(0.05, 0.9, 0.0), jaxmom.sgd(0.05)),
    "qhm-nu=beta-is-nesterov": (
        jaxmom.qhm(0.5, 0.8, 0.8),
        jaxmom.sgd(0.5 * (1 - 0.8), 0.8, nesterov=True),
    ),
    "qhadam-nu=1-is-adam": (
        jaxmom.qhadam(0.05, 0.8, 0.99, 1.0, 1.0, 1e-4, weight_decay=0.1),
        jaxmom.adam(0.05, 0.8, 0.99, 1e-4, weight_decay=0.1),
    ),
    "qhadam-nu=1-decoupled-is-adamw": (
        jaxmom.qhadam(
            0.05, 0.8, 0.99, 1.0, 1.0, 1e-4, weight_decay=0.1, decoupled_weight_decay=True
        ),
        jaxmom.adamw(0.05, 0.8, 0.99, 1e-4, 0.1),
    ),
    "adamw-wd=0-is-adam": (jaxmom.adamw(0.05, weight_decay=0.0), jaxmom.adam(0.05)),
    "aggmo-one-beta-is-sgd": (jaxmom.aggmo(0.05, (0.9,)), jaxmom.sgd(0.05, 0.9)),
    "aggmo-equal-betas-is-sgd": (jaxmom.aggmo(0.05, (0.9, 0.9, 0.9)), jaxmom.sgd(0.05, 0.9)),
    "radam-unrectified-is-debiased-ema": (
        jaxmom.radam(0.05, 0.9, 0.5),
        jaxmom.ema_sgd(0.05, 0.9, debias=True),
    ),
}


@pytest.mark.parametrize("case", list(IDENTITIES))
def test_identities(case):
    ours, twin = IDENTITIES[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        run = jax.jit(run_jax, static_argnums=0)
        _assert_paths(run(ours, params, noise), run(twin, params, noise), rtol=1e-12)


# --- Optax -------------------------------------------------------------------------------

OPTAX_SAME = {
    "adamw": (
        jaxmom.adamw(0.05, 0.8, 0.99, 1e-4, 0.1),
        optax.adamw(0.05, 0.8, 0.99, 1e-4, weight_decay=0.1),
    ),
    "adamax": (jaxmom.adamax(0.05, 0.8, 0.99, 1e-2), optax.adamax(0.05, 0.8, 0.99, 1e-2)),
    "lion": (
        jaxmom.lion(0.01, 0.8, 0.95, weight_decay=0.5),
        optax.lion(0.01, 0.8, 0.95, weight_decay=0.5),
    ),
    "radam-eps=0": (jaxmom.radam(0.05, 0.8, 0.99, 0.0), optax.radam(0.05, 0.8, 0.99, 0.0)),
}
# the differences the docstrings state
OPTAX_DIFFERENT = {
    "nadam-no-momentum-schedule": (jaxmom.nadam(0.05, 0.8, 0.99), optax.nadam(0.05, 0.8, 0.99)),
    "radam-eps-on-debiased-root": (
        jaxmom.radam(0.05, 0.8, 0.99, 1e-2),
        optax.radam(0.05, 0.8, 0.99, 1e-2),
    ),
}


@pytest.mark.parametrize("case", list(OPTAX_SAME))
def test_matches_optax(case):
    ours, theirs = OPTAX_SAME[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        run = jax.jit(run_jax, static_argnums=0)
        _assert_paths(run(ours, params, noise), run(theirs, params, noise))


@pytest.mark.parametrize("case", list(OPTAX_DIFFERENT))
def test_differs_from_optax_as_documented(case):
    ours, theirs = OPTAX_DIFFERENT[case]
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        run = jax.jit(run_jax, static_argnums=0)
        a, b = run(ours, params, noise), run(theirs, params, noise)
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in params) > 1e-4


def _optax_schedule_free(warmup_steps):
    return optax.contrib.schedule_free_sgd(
        0.2, warmup_steps, 0.8, weight_decay=0.1, weight_lr_power=1.0
    )


def test_schedule_free_matches_optax_without_warmup_and_differs_with_it():
    with jax.enable_x64(True):
        params, noise = problem(np.float64, steps=STEPS)
        run = jax.jit(run_schedule_free, static_argnums=0)
        kwargs = dict(b1=0.8, weight_decay=0.1, weight_lr_power=1.0)
        path, evaluation = run(jaxmom.schedule_free_sgd(0.2, **kwargs), params, noise)
        optax_path = jax.jit(run_jax, static_argnums=0)(_optax_schedule_free(None), params, noise)
        _assert_paths(path, optax_path)
        # Optax's eval params from its own state, at the same y
        tx = _optax_schedule_free(None)
        state, p = tx.init(params), params
        for t in range(STEPS):
            g = jax.tree.map(lambda n, p: n[t] + CURVATURE * p, noise, p)
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
        _assert_paths(evaluation, optax.contrib.schedule_free_eval_params(state, p))
        warm, _ = run(jaxmom.schedule_free_sgd(0.2, warmup_steps=10, **kwargs), params, noise)
        optax_warm = jax.jit(run_jax, static_argnums=0)(_optax_schedule_free(10), params, noise)
    assert max(float(np.max(np.abs(warm[k] - optax_warm[k]))) for k in params) > 1e-4
