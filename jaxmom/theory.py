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
