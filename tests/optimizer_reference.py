"""Independent NumPy transcriptions of ../shared/FORMULAS.md, written from the formulas, not the code.

Each factory returns ``step(p, g, s, t) -> (p, s)`` for ONE array: ``s`` is a dict of buffers
(empty at t = 1), ``t`` counts from 1, and a callable learning rate is called with ``t - 1``.
Scalars such as bias corrections are computed in Python double precision, as PyTorch does.
"""

import numpy as np


def _lr(lr, t):
    return lr(t - 1) if callable(lr) else lr


def _get(s, key, like, value=0.0):
    return s.get(key, np.full_like(like, value))


def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    def step(p, g, s, t):
        g = g + weight_decay * p
        b = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
        d = g + momentum * b if nesterov else b
        return p - _lr(lr, t) * d, {"b": b}

    return step


def sutskever_sgd(lr, momentum=0.9, nesterov=False):
    def step(p, g, s, t):
        v = momentum * _get(s, "v", p) + _lr(lr, t) * g
        return p - (momentum * v + _lr(lr, t) * g if nesterov else v), {"v": v}

    return step


def ema(decay, debias=False):
    """Here ``p`` is ignored and the returned 'parameter' is the (debiased) average itself."""

    def step(p, x, s, t):
        v = decay * _get(s, "v", x) + (1 - decay) * x
        return (v / (1 - decay**t) if debias else v), {"v": v}

    return step


def ema_sgd(lr, beta=0.9, debias=False):
    def step(p, g, s, t):
        v = beta * _get(s, "v", g) + (1 - beta) * g
        v_hat = v / (1 - beta**t) if debias else v
        return p - _lr(lr, t) * v_hat, {"v": v}

    return step


def adagrad(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, weight_decay=0.0):
    def step(p, g, s, t):
        g = g + weight_decay * p
        clr = _lr(lr, t) / (1 + (t - 1) * lr_decay)
        G = _get(s, "G", p, initial_accumulator_value) + g * g
        return p - clr * g / (np.sqrt(G) + eps), {"G": G}

    return step


def adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    def step(p, g, s, t):
        g = g + weight_decay * p
        Eg = rho * _get(s, "Eg", p) + (1 - rho) * g * g
        Ex = _get(s, "Ex", p)
        delta = np.sqrt(Ex + eps) / np.sqrt(Eg + eps) * g
        Ex = rho * Ex + (1 - rho) * delta * delta
        return p - _lr(lr, t) * delta, {"Eg": Eg, "Ex": Ex}

    return step


def rmsprop(
    lr=1e-2, alpha=0.99, eps=1e-8, centered=False, momentum=0.0, weight_decay=0.0, eps_in_sqrt=False
):
    def step(p, g, s, t):
        g = g + weight_decay * p
        v = alpha * _get(s, "v", p) + (1 - alpha) * g * g
        m = alpha * _get(s, "m", p) + (1 - alpha) * g
        vt = v - m * m if centered else v
        avg = np.sqrt(vt + eps) if eps_in_sqrt else np.sqrt(vt) + eps
        if momentum > 0:
            b = momentum * _get(s, "b", p) + g / avg
            return p - _lr(lr, t) * b, {"v": v, "m": m, "b": b}
        return p - _lr(lr, t) * g / avg, {"v": v, "m": m}

    return step


def adam(
    lr=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    amsgrad=False,
    weight_decay=0.0,
    bias_correction=True,
    eps_in_sqrt=False,
):
    def step(p, g, s, t):
        g = g + weight_decay * p
        m = b1 * _get(s, "m", p) + (1 - b1) * g
        v = b2 * _get(s, "v", p) + (1 - b2) * g * g
        vmax = np.maximum(_get(s, "vmax", p), v)
        c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
        m_hat, v_hat = m / c1, (vmax if amsgrad else v) / c2
        denom = np.sqrt(v_hat + eps) if eps_in_sqrt else np.sqrt(v_hat) + eps
        return p - _lr(lr, t) * m_hat / denom, {"m": m, "v": v, "vmax": vmax}

    return step


def run(step, params: dict, noise: dict, curvature: float):
    """Runs ``step`` on each leaf of ``params`` for ``len(noise[k])`` steps.

    The gradient at step t is ``noise[k][t-1] + curvature * p``: a noisy quadratic that is computed
    with one IEEE multiply-add, so NumPy and JAX see the same gradient for the same parameters.
    Returns the trajectory of each leaf, shape (steps, *leaf.shape).
    """
    out = {}
    for k, p in params.items():
        s, path = {}, []
        for t, n in enumerate(noise[k], start=1):
            p, s = step(p, n + curvature * p, s, t)
            path.append(p)
        out[k] = np.stack(path)
    return out
