r"""The computations behind the seed tutorials' pictures, each grid of settings as one vmapped call.

The scripts in ``experiments/`` draw these; the tests check them against the tutorials' own loops.
Every function runs in float64 (``jax.enable_x64``) so that comparisons to NumPy hold to 1e-12 and
errors can be followed down to 1e-100 when convergence rates are measured. Hyperparameters enter
the jitted programs as traced arrays: one compilation serves the whole grid.

* :func:`ema_curves`: :math:`v_t = \beta v_{t-1} + (1-\beta)\theta_t`, optionally over
  :math:`1-\beta^t`, via ``jaxmom.ema``.
* :func:`momentum_paths`: ``v = -dx*lr + momentum*v; x += v`` (``jaxmom.sutskever_sgd``).
* :func:`regression_paths`: the tutorial's linear regression, gradient = SUM of per-point gradients.
* :func:`quadratic_errors`: gradient descent, heavy ball and Nesterov on
  :math:`\tfrac12 \sum_i \lambda_i x_i^2`, for :func:`jaxmom.theory`'s rates.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmom

# --- running an optimizer -------------------------------------------------------------------------


def _run(tx, grad_fn, x0, steps, observe=lambda x: x):
    """``steps`` updates of ``tx`` from ``x0``; returns ``observe(x_t)`` for t = 0..steps, stacked."""

    def step(carry, _):
        x, state = carry
        updates, state = tx.update(grad_fn(x), state, x)
        x = optax.apply_updates(x, updates)
        return (x, state), observe(x)

    _, seen = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
    return jnp.concatenate([observe(x0)[None], seen])


def _float64(*arrays):
    return [jnp.asarray(a, dtype=jnp.float64) for a in arrays]


# --- 1. exponentially weighted averages ------------------------------------------------------------


def seattle_temperature_2012():
    """Daily mean temperature (°C, mean of daily max and min) in Seattle over 2012, 366 values.

    The data ship inside the ``vega_datasets`` wheel (``seattle-weather.csv``, NOAA), so no network
    is needed. Returns ``(temperatures, source)``; ``source`` is a label for the figure. Without
    ``vega_datasets`` it returns :func:`synthetic_temperature` and says so in ``source``.
    """
    try:
        from vega_datasets import data
    except ImportError:
        return (
            synthetic_temperature(),
            "synthetic seasonal series, seed 0 (vega_datasets not installed)",
        )
    frame = data.seattle_weather()
    year = frame[frame["date"].dt.year == 2012]
    temps = np.asarray((year["temp_max"] + year["temp_min"]) / 2, dtype=np.float64)
    return temps, "Seattle daily mean temperature, 2012 (NOAA, via vega_datasets)"


def synthetic_temperature(days=366, seed=0):
    """A seeded stand-in: 11 °C mean, ±7 °C seasonal swing peaking in late July, N(0, 2.5²) noise."""
    t = np.arange(days)
    rng = np.random.default_rng(seed)
    return 11.0 - 7.0 * np.cos(2 * np.pi * (t - 25) / 365.25) + rng.normal(0.0, 2.5, days)


@partial(jax.jit, static_argnames="debias")
def _ema_curves(series, decays, debias):
    def one(decay):
        tx = jaxmom.ema(decay, debias=debias)

        def step(state, theta):
            out, state = tx.update(theta, state)
            return state, out

        return jax.lax.scan(step, tx.init(series[0]), series)[1]

    return jax.vmap(one)(decays)


def ema_curves(series, decays, *, debias=False):
    """The EMA of ``series`` for every decay in ``decays``: an array ``(len(decays), len(series))``.

    Row k, column t-1 is :math:`v_t` for :math:`\\beta` = ``decays[k]``, or
    :math:`v_t/(1-\\beta^t)` with ``debias``. One vmapped, jitted call for all decays.
    """
    with jax.enable_x64(True):
        series, decays = _float64(series, decays)
        return np.asarray(_ema_curves(series, decays, debias))


# --- 2. momentum on f(x) = x^2 ----------------------------------------------------------------------


@partial(jax.jit, static_argnames="steps")
def _momentum_paths(lrs, momenta, x0, steps):
    def one(lr, momentum):
        return _run(jaxmom.sutskever_sgd(lr, momentum), lambda x: 2 * x, x0, steps)

    return jax.vmap(one)(lrs, momenta)


def momentum_paths(lrs, momenta, *, x0=-5.0, steps=6):
    """Iterates :math:`x_0..x_{steps}` of ``v = -dx*lr + momentum*v; x += v`` on :math:`f(x)=x^2`.

    ``lrs`` and ``momenta`` are equal-length 1-D arrays, one setting per entry (flatten a grid
    first); returns ``(len(lrs), steps + 1)``. One vmapped, jitted call.
    """
    with jax.enable_x64(True):
        lrs, momenta, x0 = _float64(lrs, momenta, x0)
        return np.asarray(_momentum_paths(lrs, momenta, x0, steps))


# --- 3. linear regression with momentum -------------------------------------------------------------

REGRESSION_X = (30, 35, 37, 59, 70, 76, 88, 100)
REGRESSION_Y = (1100, 1423, 1377, 1800, 2304, 2588, 3495, 4839)
REGRESSION_START = (10.0, -20.0)  # (a, b)


def regression_data():
    """The tutorial's eight points, each of x and y min-max normalised to [0, 1]."""
    x, y = np.array(REGRESSION_X, float), np.array(REGRESSION_Y, float)
    return (x - x.min()) / (x.max() - x.min()), (y - y.min()) / (y.max() - y.min())


def regression_loss(a, b, x, y):
    r"""Mean over points of :math:`(y - (a x + b))^2 / 2`; broadcasts over ``a`` and ``b``."""
    a, b = np.asarray(a)[..., None], np.asarray(b)[..., None]
    return np.mean((y - (a * x + b)) ** 2 / 2, axis=-1)


def _sum_gradient(x, y):
    """Gradient of the SUM over points of (y - (a x + b))²/2, as the tutorial computes it."""
    return jax.grad(lambda p: jnp.sum((y - (p[0] * x + p[1])) ** 2 / 2))


@partial(jax.jit, static_argnames=("kind", "steps"))
def _regression_paths(lrs, momenta, start, x, y, kind, steps):
    def one(lr, momentum):
        if kind == "adam":
            tx = jaxmom.adam(lr, b1=momentum)
        else:
            tx = jaxmom.sutskever_sgd(lr, momentum, nesterov=kind == "nesterov")
        return _run(tx, _sum_gradient(x, y), start, steps)

    return jax.vmap(one)(lrs, momenta)


def regression_paths(lrs, momenta, *, kind="momentum", steps=100, start=REGRESSION_START):
    """Paths ``(len(lrs), steps + 1, 2)`` of ``(a, b)`` on :func:`regression_data`.

    The gradient is the sum of the per-point gradients of :math:`(y - (ax+b))^2/2`, i.e. 8 times
    the gradient of :func:`regression_loss`. ``kind``: ``"momentum"`` is ``jaxmom.sutskever_sgd``
    (the tutorial's ``v = -dx*lr + momentum*v; x += v``; momentum 0 is plain gradient descent),
    ``"nesterov"`` its Nesterov form, ``"adam"`` is ``jaxmom.adam(lr, b1=momentum)``. One vmapped,
    jitted call for all settings.
    """
    if kind not in ("momentum", "nesterov", "adam"):
        raise ValueError(f"kind must be 'momentum', 'nesterov' or 'adam', got {kind!r}")
    with jax.enable_x64(True):
        lrs, momenta, start, *data = _float64(lrs, momenta, start, *regression_data())
        return np.asarray(_regression_paths(lrs, momenta, start, *data, kind, steps))


# --- 4. convergence rates on quadratics ----------------------------------------------------------------


def spectrum(kappa, n=8):
    """``n`` eigenvalues evenly spaced in [1, kappa], both ends included (mu = 1, L = kappa)."""
    return np.linspace(1.0, kappa, n)


@partial(jax.jit, static_argnames=("nesterov", "steps"))
def _quadratic_errors(lrs, momenta, eigenvalues, nesterov, steps):
    def one(lr, momentum, lam):
        tx = jaxmom.sgd(lr, momentum, nesterov=nesterov)
        return _run(tx, lambda x: lam * x, jnp.ones_like(lam), steps, jnp.linalg.norm)

    return jax.vmap(one)(lrs, momenta, eigenvalues)


def quadratic_errors(lrs, momenta, eigenvalues, *, nesterov=False, steps=1000):
    r"""Error :math:`\|x_t - x^*\|` for t = 0..steps on :math:`f(x) = \tfrac12\sum_i\lambda_i x_i^2`.

    Row k runs ``jaxmom.sgd(lrs[k], momenta[k], nesterov=nesterov)`` from :math:`x_0 = (1,\dots,1)`
    on the eigenvalues ``eigenvalues[k]`` (shape ``(settings, n)``); :math:`x^* = 0`. Momentum 0 is
    gradient descent, momentum > 0 heavy ball. Diagonal :math:`A` loses nothing: every method here
    is rotation invariant. One vmapped, jitted call; returns ``(settings, steps + 1)``.
    """
    with jax.enable_x64(True):
        lrs, momenta, eigenvalues = _float64(lrs, momenta, eigenvalues)
        return np.asarray(_quadratic_errors(lrs, momenta, eigenvalues, nesterov, steps))


def measurement_window(errors, floor=1e-100):
    r"""The steps :math:`(T_1, T_2)` over which :func:`measured_rate` measures: :math:`T_2` is the
    last step whose error is above ``floor`` times the first (so nothing has underflowed) and
    :math:`T_1 = \lfloor T_2/2 \rfloor`."""
    errors = np.asarray(errors, dtype=float)
    alive = np.flatnonzero(errors > floor * errors[0])
    t2 = int(alive[-1])
    return t2 // 2, t2


def measured_rate(errors, floor=1e-100):
    r"""The per-step contraction factor measured on the late half of an error curve.

    Over the steps :math:`(T_1, T_2)` of :func:`measurement_window`, returns
    :math:`(e_{T_2}/e_{T_1})^{1/(T_2-T_1)}`. A repeated root makes
    :math:`e_t \approx C t \rho^t`, which biases this by the factor
    :math:`(T_2/T_1)^{1/(T_2 - T_1)} \approx 2^{1/T_1}`: small once :math:`T_1` spans many
    e-folds (:func:`repeated_root_bias`).
    """
    errors = np.asarray(errors, dtype=float)
    t1, t2 = measurement_window(errors, floor)
    if t1 == t2:
        raise ValueError("need an error curve with at least two steps above the floor")
    return float((errors[t2] / errors[t1]) ** (1.0 / (t2 - t1)))


def repeated_root_bias(rate, t1, t2):
    r"""How far :func:`measured_rate` of :math:`e_t = C t \rho^t` (a repeated root at
    :math:`\rho` = ``rate``) falls from :math:`\rho`, as the relative gap in steps per e-fold:
    :math:`\log\hat\rho / \log\rho - 1 = \log(T_2/T_1) / ((T_2 - T_1) \log \rho)`, negative.
    About :math:`-\log 2 / (T_1 \cdot (-\log\rho))`: -0.6% when the window ends at the 1e-100
    floor, more when the run ends it first."""
    return float(np.log(t2 / t1) / ((t2 - t1) * np.log(rate)))
