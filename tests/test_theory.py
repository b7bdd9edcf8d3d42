"""jaxmom.theory: closed forms, spectral radii, and the iteration matrices against jaxmom's optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmom
from jaxmom import theory
from jaxmom.studies import tutorials

KAPPAS = [2.0, 10.0, 100.0, 1e4]


@pytest.mark.parametrize("kappa", KAPPAS)
@pytest.mark.parametrize("method", theory.METHODS)
def test_spectral_radius_equals_closed_form(method, kappa):
    eigenvalues = np.linspace(1.0, kappa, 9)  # both ends included
    lr, momentum = theory.tuning(method, 1.0, kappa)
    radius = theory.spectral_radius(method, lr, momentum, eigenvalues)
    # repeated roots make eigvals accurate to ~sqrt(machine eps) only
    np.testing.assert_allclose(radius, theory.closed_form_rate(method, kappa), rtol=1e-6)


def test_closed_forms_by_hand():
    # kappa = 9: sqrt(kappa) = 3
    assert theory.gd_rate(9) == pytest.approx(8 / 10)
    assert theory.heavy_ball_rate(9) == pytest.approx(2 / 4)
    assert theory.nesterov_rate(9) == pytest.approx(2 / 3)
    assert theory.gd_tuning(1, 9) == pytest.approx(0.2)
    assert theory.heavy_ball_tuning(1, 9) == pytest.approx((4 / 16, 0.25))
    assert theory.nesterov_tuning(1, 9) == pytest.approx((1 / 9, 0.5))


def test_heavy_ball_tuning_puts_every_root_on_one_circle():
    """Polyak's tuning: every eigenvalue's roots have modulus sqrt(momentum)."""
    lr, momentum = theory.heavy_ball_tuning(1.0, 50.0)
    matrices = theory.iteration_matrix("heavy_ball", lr, momentum, np.linspace(1, 50, 40))
    moduli = np.abs(np.linalg.eigvals(matrices))
    np.testing.assert_allclose(moduli, np.sqrt(momentum), rtol=1e-6)


@pytest.mark.parametrize("method", ["gd", "heavy_ball"])
def test_tunings_are_locally_optimal(method):
    """Nudging the step size or the momentum of the optimal tuning makes the rate worse."""
    eigenvalues = np.linspace(1.0, 30.0, 7)
    lr, momentum = theory.tuning(method, 1.0, 30.0)
    best = theory.spectral_radius(method, lr, momentum, eigenvalues)
    for factor in (0.97, 1.03):
        assert theory.spectral_radius(method, lr * factor, momentum, eigenvalues) > best
        if method != "gd":
            assert theory.spectral_radius(method, lr, momentum * factor, eigenvalues) > best


def test_nesterov_textbook_tuning_is_not_the_fastest_on_quadratics():
    """Step 1/L is the general strongly convex tuning; on a quadratic a slightly larger one wins."""
    eigenvalues = np.linspace(1.0, 30.0, 7)
    lr, momentum = theory.nesterov_tuning(1.0, 30.0)
    textbook = theory.spectral_radius("nesterov", lr, momentum, eigenvalues)
    assert theory.spectral_radius("nesterov", 1.03 * lr, momentum, eigenvalues) < textbook


@pytest.mark.parametrize("method", theory.METHODS)
def test_iteration_matrix_matches_the_optimizer(method):
    """(x_{t+1}, x_t) = M (x_t, x_{t-1}) along the iterates of jaxmom.sgd on f(x) = lam/2 x²."""
    lam, lr, momentum = 3.0, 0.2, (0.0 if method == "gd" else 0.6)
    tx = jaxmom.sgd(lr, momentum, nesterov=method == "nesterov")
    with jax.enable_x64(True):
        x = jnp.array(1.0, dtype=jnp.float64)
        state, xs = tx.init(x), [x]
        for _ in range(8):
            updates, state = tx.update(lam * x, state, x)
            x = optax.apply_updates(x, updates)
            xs.append(x)
    xs = np.array(xs)
    matrix = theory.iteration_matrix(method, lr, momentum, lam)
    for t in range(1, len(xs) - 1):
        np.testing.assert_allclose(matrix @ xs[[t, t - 1]], xs[[t + 1, t]], rtol=1e-12, atol=1e-15)


def test_bad_input():
    with pytest.raises(ValueError, match="mu <= L"):
        theory.gd_tuning(2.0, 1.0)
    with pytest.raises(ValueError, match="mu <= L"):
        theory.heavy_ball_tuning(0.0, 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        theory.tuning("adam", 1.0, 2.0)
    with pytest.raises(ValueError, match="method must be one of"):
        theory.iteration_matrix("polyak", 0.1, 0.9, 1.0)


# --- QHM and AggMo (issue 10) ---------------------------------------------------------------


def _iterates(tx, lam, steps):
    """x_0 .. x_steps and the states after each step of ``tx`` on f(x) = lam/2 x², float64."""
    with jax.enable_x64(True):
        x = jnp.array(1.0, dtype=jnp.float64)
        state, xs, states = tx.init(x), [x], []
        for _ in range(steps):
            updates, state = tx.update(lam * x, state, x)
            x = optax.apply_updates(x, updates)
            xs.append(x)
            states.append(state)
    return np.array(xs), states


@pytest.mark.parametrize("nu", [0.0, 0.7, 1.0, 1.3])
def test_qhm_iteration_matrix_matches_the_optimizer(nu):
    lam, lr, momentum = 3.0, 0.2, 0.6
    xs, _ = _iterates(jaxmom.qhm(lr, momentum, nu), lam, 8)
    matrix = theory.qhm_iteration_matrix(lr, momentum, nu, lam)
    for t in range(1, len(xs) - 1):
        np.testing.assert_allclose(matrix @ xs[[t, t - 1]], xs[[t + 1, t]], rtol=1e-12, atol=1e-15)


def test_aggmo_iteration_matrix_matches_the_optimizer():
    lam, lr, betas = 3.0, 0.2, (0.0, 0.5, 0.9)
    xs, states = _iterates(jaxmom.aggmo(lr, betas), lam, 8)
    scaled = [np.zeros(3)] + [lr / 3 * np.asarray(s[1].buffers) for s in states]  # c = lr/K * b
    matrix = theory.aggmo_iteration_matrix(lr, betas, lam)
    for t in range(len(xs) - 1):
        np.testing.assert_allclose(
            matrix @ np.r_[xs[t], scaled[t]],
            np.r_[xs[t + 1], scaled[t + 1]],
            rtol=1e-12,
            atol=1e-15,
        )


def test_qhm_and_aggmo_contain_heavy_ball_and_nesterov():
    lr, beta, lams = 0.3, 0.8, np.linspace(1, 20, 7)
    heavy = theory.iteration_matrix("heavy_ball", lr * (1 - beta), beta, lams)
    nesterov = theory.iteration_matrix("nesterov", lr * (1 - beta), beta, lams)
    np.testing.assert_allclose(theory.qhm_iteration_matrix(lr, beta, 1.0, lams), heavy)
    np.testing.assert_allclose(theory.qhm_iteration_matrix(lr, beta, beta, lams), nesterov)
    # one AggMo buffer is heavy ball (lr outside the buffer): the same spectral radius
    assert theory.aggmo_spectral_radius(lr, (beta,), lams) == pytest.approx(
        theory.spectral_radius("heavy_ball", lr, beta, lams), rel=1e-9
    )


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_qhm_and_aggmo_measured_rates_equal_the_spectral_radius(kappa):
    """-log(rate) measured on jaxmom.qhm and jaxmom.aggmo is within 5% of the spectral radius."""
    eigenvalues = tutorials.spectrum(kappa)
    lr, beta, nu = theory.qhm_tuning(1.0, kappa)
    lr_a, betas = theory.aggmo_tuning(1.0, kappa)
    cases = [
        (jaxmom.qhm(lr, beta, nu), theory.qhm_spectral_radius(lr, beta, nu, eigenvalues)),
        (jaxmom.aggmo(lr_a, betas), theory.aggmo_spectral_radius(lr_a, betas, eigenvalues)),
    ]
    with jax.enable_x64(True):
        for tx, radius in cases:

            def step(carry, _, tx=tx):
                x, state = carry
                updates, state = tx.update(eigenvalues * x, state, x)
                x = optax.apply_updates(x, updates)
                return (x, state), jnp.linalg.norm(x)

            x0 = jnp.ones(eigenvalues.size, jnp.float64)
            _, errors = jax.jit(lambda x: jax.lax.scan(step, (x, tx.init(x)), length=3000))(x0)
            measured = tutorials.measured_rate(np.r_[np.sqrt(eigenvalues.size), errors])
            assert np.log(measured) == pytest.approx(np.log(radius), rel=0.05)
            assert radius < theory.gd_rate(kappa)  # momentum helps


def test_qhm_tuning_at_nu_1_is_heavy_ball():
    lr, beta, _ = theory.qhm_tuning(1.0, 10.0, nu=1.0)
    radius = theory.qhm_spectral_radius(lr, beta, 1.0, np.linspace(1, 10, 32))
    assert np.log(radius) == pytest.approx(np.log(theory.heavy_ball_rate(10.0)), rel=0.05)


def test_qhm_and_aggmo_bad_input():
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D sequence"):
        theory.aggmo_iteration_matrix(0.1, [[0.5]], 1.0)
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D sequence"):
        theory.aggmo_iteration_matrix(0.1, [], 1.0)
    with pytest.raises(ValueError, match="mu <= L"):
        theory.qhm_tuning(2.0, 1.0)
    with pytest.raises(ValueError, match="mu <= L"):
        theory.aggmo_tuning(0.0, 1.0)
