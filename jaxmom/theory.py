r"""Convergence rates of gradient descent, heavy ball and Nesterov on quadratics.

Take :math:`f(x) = \tfrac12 x^\top A x` with the eigenvalues of :math:`A` in :math:`[\mu, L]` and
condition number :math:`\kappa = L / \mu`. In the eigenbasis of :math:`A` every method below is a
linear recurrence in each coordinate separately. For one eigenvalue :math:`\lambda`, step size
:math:`\eta` and momentum :math:`\beta`, write :math:`h = \eta\lambda`:

.. math::
    \text{gradient descent:}\quad & x_{t+1} = (1 - h)\, x_t \\
    \text{heavy ball:}\quad & x_{t+1} = (1 + \beta - h)\, x_t - \beta\, x_{t-1} \\
    \text{Nesterov:}\quad & x_{t+1} = (1 + \beta)(1 - h)\, x_t - \beta (1 - h)\, x_{t-1}

Each is :math:`(x_{t+1}, x_t) = M (x_t, x_{t-1})` with :math:`M = [[a, -b], [1, 0]]`, whose
eigenvalues are the roots of :math:`z^2 - a z + b`. The error shrinks asymptotically by the
*spectral radius* :math:`\max_\lambda \max |z|` per step: that is the exact rate of any of them.

Heavy ball is ``jaxmom.sgd(eta, beta)`` (= ``jaxmom.sutskever_sgd``, constant step). Nesterov is
``jaxmom.sgd(eta, beta, nesterov=True)``, whose parameters are Nesterov's look-ahead points; they
obey the same recurrence, so they converge at the same rate.

Closed forms at the classical tunings (derived in each function's docstring):

* gradient descent: step :math:`2/(L+\mu)`; rate :math:`(\kappa-1)/(\kappa+1)`.
* heavy ball (Polyak): step :math:`4/(\sqrt L+\sqrt\mu)^2`, momentum
  :math:`((\sqrt\kappa-1)/(\sqrt\kappa+1))^2`; rate :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`.
* Nesterov: step :math:`1/L`, momentum :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`; rate
  :math:`1 - 1/\sqrt\kappa`.

Heavy ball and Nesterov reach their rate at a *repeated* root (heavy ball at both ends of the
spectrum, Nesterov at :math:`\lambda = \mu`). A repeated root :math:`\rho` of a 2x2 recurrence gives
:math:`x_t = (c_0 + c_1 t)\rho^t`, so the error approaches :math:`\rho^t` only slowly: over a window
:math:`[T_1, T_2]` the measured per-step factor is off by about
:math:`(T_2/T_1)^{1/(T_2 - T_1)}`.

References:
  Polyak, *Some methods of speeding up the convergence of iteration methods*, 1964.
  Nesterov, *Introductory Lectures on Convex Optimization*, 2004, section 2.2.
  Lessard, Recht, Packard, *Analysis and design of optimization algorithms via integral quadratic
  constraints*, 2016 (the 2x2 iteration matrices).
"""

import numpy as np
import scipy.optimize

METHODS = ("gd", "heavy_ball", "nesterov")


def _check(mu, L):
    mu, L = float(mu), float(L)
    if not (0 < mu <= L < np.inf):
        raise ValueError(f"need 0 < mu <= L < inf, got mu={mu!r}, L={L!r}")
    return mu, L


def gd_tuning(mu, L):
    r"""Step size :math:`2/(L+\mu)`, the one that minimises :math:`\max_\lambda |1 - \eta\lambda|`."""
    mu, L = _check(mu, L)
    return 2.0 / (L + mu)


def heavy_ball_tuning(mu, L):
    r"""Polyak's optimal ``(step size, momentum)``: :math:`4/(\sqrt L+\sqrt\mu)^2` and
    :math:`((\sqrt\kappa-1)/(\sqrt\kappa+1))^2`.

    They make the discriminant of :math:`z^2 - (1+\beta-\eta\lambda) z + \beta` zero at
    :math:`\lambda = \mu` and at :math:`\lambda = L`, and negative between, so every root has modulus
    :math:`\sqrt\beta`.
    """
    mu, L = _check(mu, L)
    root = (np.sqrt(L / mu) - 1) / (np.sqrt(L / mu) + 1)
    return 4.0 / (np.sqrt(L) + np.sqrt(mu)) ** 2, root**2


def nesterov_tuning(mu, L):
    r"""The strongly convex tuning ``(step size, momentum)``: :math:`1/L` and
    :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`.

    It is the textbook choice for any smooth strongly convex function, not the fastest on a
    quadratic: there a slightly larger step gives a smaller spectral radius.
    """
    mu, L = _check(mu, L)
    return 1.0 / L, (np.sqrt(L / mu) - 1) / (np.sqrt(L / mu) + 1)


def tuning(method, mu, L):
    """``(step size, momentum)`` of :func:`gd_tuning`, :func:`heavy_ball_tuning` or
    :func:`nesterov_tuning`; momentum is 0 for gradient descent."""
    if method == "gd":
        return gd_tuning(mu, L), 0.0
    if method == "heavy_ball":
        return heavy_ball_tuning(mu, L)
    if method == "nesterov":
        return nesterov_tuning(mu, L)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def gd_rate(kappa):
    r""":math:`(\kappa-1)/(\kappa+1)`: :math:`|1 - 2\lambda/(L+\mu)|` at :math:`\lambda = \mu` and
    :math:`\lambda = L`."""
    kappa = np.asarray(kappa, dtype=float)
    return (kappa - 1) / (kappa + 1)


def heavy_ball_rate(kappa):
    r""":math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)` = :math:`\sqrt\beta` at Polyak's tuning."""
    s = np.sqrt(np.asarray(kappa, dtype=float))
    return (s - 1) / (s + 1)


def nesterov_rate(kappa):
    r""":math:`1 - 1/\sqrt\kappa` at :func:`nesterov_tuning`.

    At :math:`\lambda = \mu`, :math:`(1+\beta)(1-h) = 2(1 - 1/\sqrt\kappa)` and
    :math:`\beta(1-h) = (1 - 1/\sqrt\kappa)^2`, so :math:`z^2 - az + b = (z - (1 - 1/\sqrt\kappa))^2`.
    For larger :math:`\lambda` the roots are complex with modulus :math:`\sqrt{\beta(1-h)}`, smaller.
    """
    return 1 - 1 / np.sqrt(np.asarray(kappa, dtype=float))


def closed_form_rate(method, kappa):
    """The closed-form rate of ``method`` at its tuning (see the module table)."""
    rates = {"gd": gd_rate, "heavy_ball": heavy_ball_rate, "nesterov": nesterov_rate}
    if method not in rates:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return rates[method](kappa)


def iteration_matrix(method, lr, momentum, eigenvalue):
    r"""The 2x2 matrix :math:`M` with :math:`(x_{t+1}, x_t) = M (x_t, x_{t-1})` for one eigenvalue.

    Broadcasts over ``lr``, ``momentum`` and ``eigenvalue``; the matrix is in the last two axes.
    ``"gd"`` ignores ``momentum``.
    """
    h = np.asarray(lr, dtype=float) * np.asarray(eigenvalue, dtype=float)
    beta = np.asarray(momentum, dtype=float)
    if method == "gd":
        a, b = 1 - h, 0 * beta
    elif method == "heavy_ball":
        a, b = 1 + beta - h, beta
    elif method == "nesterov":
        a, b = (1 + beta) * (1 - h), beta * (1 - h)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    a, b = np.broadcast_arrays(a, b)
    return np.stack([np.stack([a, -b], -1), np.stack([np.ones_like(a), np.zeros_like(a)], -1)], -2)


def spectral_radius(method, lr, momentum, eigenvalues):
    """The largest eigenvalue modulus of :func:`iteration_matrix` over ``eigenvalues``: the exact
    asymptotic rate per step of ``method`` on a quadratic with that spectrum."""
    matrices = iteration_matrix(method, lr, momentum, np.ravel(eigenvalues))
    return float(np.max(np.abs(np.linalg.eigvals(matrices))))


# --- quasi-hyperbolic and aggregated momentum (issue 10) -------------------------------------------
#
# QHM (``jaxmom.qhm(eta, beta, nu)``, buffer b_t = beta b_{t-1} + (1 - beta) g_t, step
# (1 - nu) g_t + nu b_t) eliminates its buffer exactly as heavy ball does, for t >= 1:
#
#     x_{t+1} = (1 + beta - h (1 - nu beta)) x_t - beta (1 - h (1 - nu)) x_{t-1}.
#
# nu = 1 is heavy ball with step eta (1 - beta); nu = beta is Nesterov with step eta (1 - beta);
# nu = 0 is gradient descent, whose second root beta belongs to the unused buffer.
#
# AggMo (``jaxmom.aggmo(eta, betas)``, K buffers b_i = beta_i b_i + g) has no 2-term form; in the
# state (x_t, c_t) with c_i = eta / K * b_i the step is linear of size K + 1:
#
#     c_{t+1, i} = beta_i c_{t, i} + (h / K) x_t,    x_{t+1} = (1 - h) x_t - sum_i beta_i c_{t, i}.


def qhm_iteration_matrix(lr, momentum, nu, eigenvalue):
    r"""QHM's 2x2 matrix :math:`M` with :math:`(x_{t+1}, x_t) = M (x_t, x_{t-1})`, :math:`t \ge 1`.

    :math:`a = 1 + \beta - h(1 - \nu\beta)`, :math:`b = \beta(1 - h(1 - \nu))`, :math:`h =
    \eta\lambda`, in the layout of :func:`iteration_matrix`; broadcasts over all arguments.
    """
    h = np.asarray(lr, dtype=float) * np.asarray(eigenvalue, dtype=float)
    beta, nu = np.asarray(momentum, dtype=float), np.asarray(nu, dtype=float)
    a, b = np.broadcast_arrays(1 + beta - h * (1 - nu * beta), beta * (1 - h * (1 - nu)))
    return np.stack([np.stack([a, -b], -1), np.stack([np.ones_like(a), np.zeros_like(a)], -1)], -2)


def aggmo_iteration_matrix(lr, betas, eigenvalue):
    r"""AggMo's :math:`(K+1) \times (K+1)` matrix on :math:`(x_t, c_{t,1}, \dots, c_{t,K})`,
    :math:`c_i = \eta b_i / K`, for one eigenvalue (or an array of them: matrices in the last two
    axes). Exact from :math:`t = 0` with :math:`c_0 = 0`."""
    betas = np.asarray(betas, dtype=float)
    if betas.ndim != 1 or betas.size == 0:
        raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {betas.shape}")
    h = np.asarray(lr, dtype=float) * np.asarray(eigenvalue, dtype=float)
    k = betas.size
    matrix = np.zeros((*h.shape, k + 1, k + 1))
    matrix[..., 0, 0] = 1 - h
    matrix[..., 0, 1:] = -betas
    matrix[..., 1:, 0] = (h / k)[..., None]
    matrix[..., 1:, 1:] = np.diag(betas)
    return matrix


def radius(matrices):
    """The largest eigenvalue modulus over a stack of square matrices: the asymptotic rate."""
    return float(np.max(np.abs(np.linalg.eigvals(matrices))))


def qhm_spectral_radius(lr, momentum, nu, eigenvalues):
    """QHM's exact asymptotic rate per step on a quadratic with these eigenvalues."""
    return radius(qhm_iteration_matrix(lr, momentum, nu, np.ravel(eigenvalues)))


def aggmo_spectral_radius(lr, betas, eigenvalues):
    """AggMo's exact asymptotic rate per step on a quadratic with these eigenvalues."""
    return radius(aggmo_iteration_matrix(lr, betas, np.ravel(eigenvalues)))


def best_lr(rate, low, high, points=400):
    """The step size in [low, high] that minimises ``rate(lr)``: a log grid, refined twice."""
    for _ in range(3):
        grid = np.geomspace(low, high, points)
        i = int(np.argmin([rate(lr) for lr in grid]))
        low, high = grid[max(i - 1, 0)], grid[min(i + 1, points - 1)]
    return float(grid[i])


def qhm_tuning(mu, L, nu=0.7):
    r"""``(step size, momentum, nu)`` for QHM on :math:`[\mu, L]` at a fixed :math:`\nu` (the
    paper's 0.7): the step size and momentum that minimise the spectral radius, found by
    Nelder-Mead from heavy ball's optimum (QHM's :math:`\nu = 1` point, where it stays)."""
    mu, L = _check(mu, L)
    eigenvalues = np.linspace(mu, L, 32)
    lr, beta = heavy_ball_tuning(mu, L)
    start = np.array([np.log(lr / (1 - beta)), np.log(beta / (1 - beta))])

    def rate(z):  # z = (log step size, logit momentum)
        return qhm_spectral_radius(np.exp(z[0]), 1 / (1 + np.exp(-z[1])), nu, eigenvalues)

    z = scipy.optimize.minimize(rate, start, method="Nelder-Mead", options=dict(xatol=1e-9)).x
    return float(np.exp(z[0])), float(1 / (1 + np.exp(-z[1]))), nu


def aggmo_tuning(mu, L):
    r"""``(step size, betas)`` for AggMo on :math:`[\mu, L]`: the paper's geometric damping
    :math:`\beta_i = 1 - a^{i-1}`, K = 3, with :math:`a` chosen so that the largest equals Polyak's
    momentum, and the step size that minimises the spectral radius."""
    mu, L = _check(mu, L)
    _, beta = heavy_ball_tuning(mu, L)
    a = np.sqrt(1 - beta)
    betas = (0.0, 1 - a, beta)
    rate = lambda lr: aggmo_spectral_radius(lr, betas, np.linspace(mu, L, 64))
    return best_lr(rate, 1e-3 / L, 10 / L), betas
