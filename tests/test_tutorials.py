"""The seed tutorials' demonstrations (jaxmom.studies.tutorials) against the tutorials' loops."""

import sys

import numpy as np
import pytest

from jaxmom import theory
from jaxmom.studies import tutorials

# --- EMA ------------------------------------------------------------------------------------------


def numpy_ema(series, beta):
    v, plain, corrected = 0.0, [], []
    for t, theta in enumerate(series, start=1):
        v = beta * v + (1 - beta) * theta
        plain.append(v)
        corrected.append(v / (1 - beta**t))
    return np.array(plain), np.array(corrected)


def test_ema_matches_the_recurrence():
    series = tutorials.synthetic_temperature(days=80, seed=3)
    betas = (0.5, 0.9, 0.98)
    plain = tutorials.ema_curves(series, betas)
    corrected = tutorials.ema_curves(series, betas, debias=True)
    for k, beta in enumerate(betas):
        want_plain, want_corrected = numpy_ema(series, beta)
        np.testing.assert_allclose(plain[k], want_plain, rtol=1e-12)
        np.testing.assert_allclose(corrected[k], want_corrected, rtol=1e-12)


def test_bias_correction_removes_the_startup_lag():
    series = tutorials.synthetic_temperature()
    plain = tutorials.ema_curves(series, [0.98])[0]
    corrected = tutorials.ema_curves(series, [0.98], debias=True)[0]
    assert corrected[0] == pytest.approx(series[0], rel=1e-12)
    assert plain[0] == pytest.approx(0.02 * series[0], rel=1e-12)
    gap_plain = np.mean(np.abs(plain[:20] - series[:20]))
    gap_corrected = np.mean(np.abs(corrected[:20] - series[:20]))
    assert gap_corrected < 0.5 * gap_plain
    # late in the year beta^t < 0.2%, so the correction hardly matters any more
    np.testing.assert_allclose(corrected[-50:], plain[-50:], rtol=2e-3)


def test_real_temperature_series():
    pytest.importorskip("vega_datasets")
    temps, source = tutorials.seattle_temperature_2012()
    assert "Seattle" in source and temps.shape == (366,)
    # rows 2012/01/01 and 2012/12/31 of seattle-weather.csv: (12.8 + 5.0)/2 and (3.3 - 1.1)/2
    assert temps[0] == pytest.approx(8.9) and temps[-1] == pytest.approx(1.1)


def test_without_vega_datasets_the_series_is_synthetic_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "vega_datasets", None)  # makes the import fail
    temps, source = tutorials.seattle_temperature_2012()
    assert "synthetic" in source
    np.testing.assert_array_equal(temps, tutorials.synthetic_temperature())


# --- momentum on x^2 -------------------------------------------------------------------------------


def tutorial_x_squared(lr, momentum, x=-5.0, steps=6):
    v, xs = 0.0, [x]
    for _ in range(steps):
        dx = 2 * x
        v = -dx * lr + momentum * v
        x += v
        xs.append(x)
    return xs


def test_quadratic_grid_matches_the_tutorial_loop(load_script):
    quadratic = load_script("quadratic")
    paths = quadratic.grid_paths()
    assert paths.shape == (4, 4, 7)
    for i, lr in enumerate((0.01, 0.1, 0.6, 0.9)):
        for j, momentum in enumerate((0.0, 0.1, 0.5, 0.9)):
            np.testing.assert_allclose(paths[i, j], tutorial_x_squared(lr, momentum), atol=1e-6)


def test_new_hyperparameter_values_reuse_the_compiled_program():
    tutorials.momentum_paths(np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    compiled = tutorials._momentum_paths._cache_size()
    paths = tutorials.momentum_paths(np.array([0.7, 0.05]), np.array([0.0, 0.8]))
    assert tutorials._momentum_paths._cache_size() == compiled
    np.testing.assert_allclose(paths[1], tutorial_x_squared(0.05, 0.8), atol=1e-12)


# --- linear regression -----------------------------------------------------------------------------

X = [30, 35, 37, 59, 70, 76, 88, 100]
Y = [1100, 1423, 1377, 1800, 2304, 2588, 3495, 4839]


def tutorial_regression(lr=0.1, momentum=0.9, steps=100, nesterov=False):
    """The tutorial's loop, with the gradient summed over points; Nesterov in Sutskever's form."""
    x, y = np.array(X, float), np.array(Y, float)
    x, y = (x - x.min()) / (x.max() - x.min()), (y - y.min()) / (y.max() - y.min())
    p, v, path = np.array([10.0, -20.0]), np.zeros(2), []
    path.append(p.copy())
    for _ in range(steps):
        residual = y - (p[0] * x + p[1])
        grad = np.array([np.sum(-residual * x), np.sum(-residual)])
        v = -grad * lr + momentum * v
        p = p + (momentum * v - lr * grad if nesterov else v)
        path.append(p.copy())
    return np.array(path)


def test_regression_momentum_path_matches_the_tutorial_loop():
    path = tutorials.regression_paths([0.1], [0.9])[0]
    assert path.shape == (101, 2)
    np.testing.assert_allclose(path, tutorial_regression(), rtol=1e-10, atol=1e-10)


def test_regression_comparison_paths(load_script):
    regression = load_script("regression")
    gd, heavy_ball, nesterov, adam = regression.comparison_paths()
    np.testing.assert_allclose(gd, tutorial_regression(0.02, 0.0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(heavy_ball, tutorial_regression(0.02, 0.9), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        nesterov, tutorial_regression(0.02, 0.9, nesterov=True), rtol=1e-10, atol=1e-10
    )
    # Adam's first step is lr * sign(-g) in each coordinate; here both gradients are negative
    np.testing.assert_allclose(adam[1], [10.0 + 1.0, -20.0 + 1.0], rtol=1e-9)
    # what the figure shows: at lr 0.02, momentum arrives in 100 steps and plain GD does not
    best = regression.least_squares()[2]
    final = [
        tutorials.regression_loss(*p[-1], *tutorials.regression_data())
        for p in (gd, heavy_ball, nesterov, adam)
    ]
    assert final[0] > 50 * best
    assert final[1] < 1.05 * best and final[2] < 1.05 * best and final[3] < 2.5 * best


def test_regression_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be"):
        tutorials.regression_paths([0.1], [0.9], kind="rmsprop")


# --- convergence rates -----------------------------------------------------------------------------


def test_measured_rates_match_theory(load_script):
    """-log(rate) measured on the late half of each curve is within 5% of theory, for every kappa."""
    results = load_script("convergence").run()
    for method, (errors, measured, radius, closed) in results.items():
        assert errors.shape == (4, 20001)
        np.testing.assert_allclose(radius, closed, rtol=1e-6)
        np.testing.assert_allclose(np.log(measured), np.log(radius), rtol=0.05, err_msg=method)
    # and momentum really buys sqrt(kappa): at kappa = 10000 it is 50-100x faster per step
    assert np.log(results["heavy_ball"][1][-1]) / np.log(results["gd"][1][-1]) > 50


def test_measured_rate_on_known_curves():
    t = np.arange(2001.0)
    assert tutorials.measured_rate(0.9**t) == pytest.approx(0.9, rel=1e-12)
    # a repeated root, C t rho^t: biased by at most (T2/T1)^(1/(T2-T1))
    curve = (1 + t) * 0.9**t
    t2 = np.flatnonzero(curve > 1e-100)[-1]
    bias = 2.0 ** (1.0 / (t2 // 2))
    assert 0.9 <= tutorials.measured_rate(curve) <= 0.9 * bias
    with pytest.raises(ValueError, match="at least two steps"):
        tutorials.measured_rate([1.0, 1e-200])


def test_nesterov_on_a_quadratic_matches_theory_tuning():
    """The vmapped runner gives each row its own eigenvalues and hyperparameters."""
    kappas = np.array([4.0, 25.0])
    tunings = np.array([theory.nesterov_tuning(1.0, k) for k in kappas])
    errors = tutorials.quadratic_errors(
        tunings[:, 0],
        tunings[:, 1],
        np.stack([tutorials.spectrum(k, 3) for k in kappas]),
        nesterov=True,
        steps=3000,
    )
    for row, kappa in zip(errors, kappas):
        assert np.log(tutorials.measured_rate(row)) == pytest.approx(
            np.log(theory.nesterov_rate(kappa)), rel=0.05
        )
