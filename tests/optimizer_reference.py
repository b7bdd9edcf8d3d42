"""Independent NumPy transcriptions: PyTorch's optimizers from its source, the others from the formulas.

``sgd``, ``adagrad``, ``adadelta``, ``rmsprop`` and ``adam`` are transcribed line by line from
``_single_tensor_*`` in ``torch/optim/{sgd,adagrad,adadelta,rmsprop,adam}.py`` (torch 2.13.0),
keeping torch's branches (``if momentum != 0``, ``buf is None`` on the first step, ``if
momentum > 0``). Deliberate extensions, off by default: a callable ``lr`` (a schedule, called with
``t - 1``), ``eps_in_sqrt`` and ``debias``. Where torch writes ``addcmul(grad, grad)`` these write
``sq(grad)`` = |grad|^2: the same on real arrays; on complex ones jaxmom follows Optax, while torch
would treat the real and imaginary parts as two real parameters.

Each factory returns ``step(p, g, s, t) -> (p, s)`` for ONE array: ``s`` is a dict of buffers
(empty at t = 1), ``t`` counts from 1. Scalars such as bias corrections are computed in Python
double precision, as PyTorch does.
"""

import numpy as np


def _lr(lr, t):
    return lr(t - 1) if callable(lr) else lr


def _get(s, key, like, value=0.0):
    return s.get(key, np.full_like(like, value))


def sq(x):
    """|x|^2, as optax's numerics.abs_sq: conj(x) * x, real-valued."""
    return np.real(np.conj(x) * x).astype(x.dtype)


def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """torch/optim/sgd.py, _single_tensor_sgd."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(param, grad, s, t):
        s = dict(s)
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            buf = s.get("momentum_buffer")
            if buf is None:
                buf = grad.copy()
            else:
                buf = buf * momentum + (1 - dampening) * grad
            s["momentum_buffer"] = buf
            if nesterov:
                grad = grad + momentum * buf
            else:
                grad = buf
        return param - _lr(lr, t) * grad, s

    return step


def sutskever_sgd(lr, momentum=0.0, nesterov=False):
    """The seed tutorials' form: v = mu*v + lr*g; p -= v (Sutskever's nesterov: p -= mu*v + lr*g)."""

    def step(p, g, s, t):
        v = momentum * _get(s, "v", p) + _lr(lr, t) * g
        return p - (momentum * v + _lr(lr, t) * g if nesterov else v), {"v": v}

    return step


def ema(decay, debias=True):
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
    """torch/optim/adagrad.py, _single_tensor_adagrad (dense gradients)."""

    def step(param, grad, s, t):
        state_sum = s.get("sum", np.full_like(param, initial_accumulator_value))
        step_t = s.get("step", 0) + 1
        if weight_decay != 0:
            grad = grad + weight_decay * param
        clr = _lr(lr, t) / (1 + (step_t - 1) * lr_decay)
        state_sum = state_sum + sq(grad)
        std = np.sqrt(state_sum) + eps
        return param - clr * (grad / std), {"sum": state_sum, "step": step_t}

    return step


def adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    """torch/optim/adadelta.py, _single_tensor_adadelta."""

    def step(param, grad, s, t):
        square_avg, acc_delta = _get(s, "square_avg", param), _get(s, "acc_delta", param)
        if weight_decay != 0:
            grad = grad + weight_decay * param
        square_avg = square_avg * rho + (1 - rho) * sq(grad)
        std = np.sqrt(square_avg + eps)
        delta = np.sqrt(acc_delta + eps)
        delta = delta / std * grad
        acc_delta = acc_delta * rho + (1 - rho) * sq(delta)
        return param - _lr(lr, t) * delta, {"square_avg": square_avg, "acc_delta": acc_delta}

    return step


def rmsprop(
    lr=1e-2, alpha=0.99, eps=1e-8, centered=False, momentum=0.0, weight_decay=0.0, eps_in_sqrt=False
):
    """torch/optim/rmsprop.py, _single_tensor_rmsprop (plus eps_in_sqrt)."""

    def step(param, grad, s, t):
        s = dict(s)
        if weight_decay != 0:
            grad = grad + weight_decay * param
        square_avg = _get(s, "square_avg", param) * alpha + (1 - alpha) * sq(grad)
        s["square_avg"] = square_avg
        if centered:
            grad_avg = _get(s, "grad_avg", param)
            grad_avg = grad_avg + (1 - alpha) * (grad - grad_avg)  # lerp_(grad, 1 - alpha)
            s["grad_avg"] = grad_avg
            avg = square_avg - sq(grad_avg)
        else:
            avg = square_avg
        avg = np.sqrt(avg + eps) if eps_in_sqrt else np.sqrt(avg) + eps
        if momentum > 0:
            buf = _get(s, "momentum_buffer", param) * momentum + grad / avg
            s["momentum_buffer"] = buf
            return param - _lr(lr, t) * buf, s
        return param - _lr(lr, t) * (grad / avg), s

    return step


def adam(
    lr=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    amsgrad=False,
    weight_decay=0.0,
    debias=True,
    eps_in_sqrt=False,
):
    """torch/optim/adam.py, _single_tensor_adam (not capturable; plus debias and eps_in_sqrt)."""

    def step(param, grad, s, t):
        s = dict(s)
        exp_avg, exp_avg_sq = _get(s, "exp_avg", param), _get(s, "exp_avg_sq", param)
        step_t = s.get("step", 0) + 1
        if weight_decay != 0:
            grad = grad + weight_decay * param
        exp_avg = exp_avg + (1 - b1) * (grad - exp_avg)  # lerp_(grad, 1 - beta1)
        exp_avg_sq = exp_avg_sq * b2 + (1 - b2) * sq(grad)
        bias_correction1 = 1 - b1**step_t if debias else 1.0
        bias_correction2 = 1 - b2**step_t if debias else 1.0
        step_size = _lr(lr, t) / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        v = exp_avg_sq
        if amsgrad:
            v = s["max_exp_avg_sq"] = np.maximum(_get(s, "max_exp_avg_sq", param).real, v.real)
        if eps_in_sqrt:
            denom = np.sqrt(v / bias_correction2 + eps)
        else:
            denom = np.sqrt(v) / bias_correction2_sqrt + eps
        s.update(exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, step=step_t)
        return param - step_size * (exp_avg / denom), s

    return step


def reference_kwargs(kwargs):
    """jaxmom's keyword arguments as the transcriptions take them: ``learning_rate`` is ``lr``, and
    a schedule is called in double precision."""
    out = dict(kwargs)
    if "learning_rate" in out:
        lr = out.pop("learning_rate")
        out["lr"] = (lambda c: float(lr(c))) if callable(lr) else lr
    return out


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
