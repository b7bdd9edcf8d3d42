"""What momentum buys: error per step on quadratics with kappa = 10 … 10000, beside the theory.

f(x) = ½ Σ λ_i x_i² with 8 eigenvalues evenly spaced in [1, kappa]. Gradient descent at lr 2/(L+mu),
heavy ball at Polyak's lr 4/(√L+√mu)² and momentum ((√κ-1)/(√κ+1))², Nesterov at lr 1/L and momentum
(√κ-1)/(√κ+1), all through ``jaxmom.sgd``; each method's four kappas are one vmapped, jitted call.
Beside them, QHM (``jaxmom.qhm``, the paper's ν = 0.7, step and momentum tuned for the smallest
spectral radius) and AggMo (``jaxmom.aggmo``, betas (0, 1-a, 1-a²) whose largest is Polyak's
momentum, step tuned), vmapped over kappa with traced hyperparameters, betas included. On a
quadratic neither beats heavy ball (QHM at ν = 1 is heavy ball); at a fixed ν = 0.7 QHM's best
steps per e-fold grow about like κ, not √κ (a brute-force grid over step and momentum agrees).
Theory (``jaxmom.theory``): the spectral radius of each method's iteration over the spectrum
(2×2; (K+1)×(K+1) for AggMo) and the closed forms. The measured rate is taken on the late half of
each error curve, in float64.

    python experiments/convergence.py --out runs/convergence
"""

import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _plotting import output_dir, save
from matplotlib.lines import Line2D

import jaxmom
from jaxmom import theory
from jaxmom.studies import tutorials

KAPPAS = (10.0, 100.0, 1000.0, 10000.0)
STEPS = 20000
NAMES = {
    "gd": "gradient descent",
    "heavy_ball": "heavy ball (Polyak)",
    "nesterov": "Nesterov",
    "qhm": "QHM (ν = 0.7)",
    "aggmo": "AggMo (K = 3)",
}
# Tuned at the setting where the two roots of their iteration meet (Polyak's heavy ball, Nesterov's
# 1/L and (√κ-1)/(√κ+1), QHM's smallest spectral radius): the error is C·t·ρ^t there, not C·ρ^t.
REPEATED_ROOT = ("heavy_ball", "nesterov", "qhm")
COLORS = {
    "gd": "0.25",
    "heavy_ball": "crimson",
    "nesterov": "royalblue",
    "qhm": "darkorange",
    "aggmo": "seagreen",
}


def run(kappas=KAPPAS, steps=STEPS, n=8):
    """Error curves and rates per method: ``{method: (errors (len(kappas), steps+1), measured,
    spectral radius, closed form)}``, rates as arrays over ``kappas``."""
    eigenvalues = np.stack([tutorials.spectrum(k, n) for k in kappas])
    results = {}
    for method in theory.METHODS:
        lrs, momenta = np.array([theory.tuning(method, 1.0, k) for k in kappas]).T
        errors = tutorials.quadratic_errors(
            lrs, momenta, eigenvalues, nesterov=method == "nesterov", steps=steps
        )
        measured = np.array([tutorials.measured_rate(e) for e in errors])
        radius = np.array(
            [
                theory.spectral_radius(method, lr, m, ev)
                for lr, m, ev in zip(lrs, momenta, eigenvalues)
            ]
        )
        results[method] = (
            errors,
            measured,
            radius,
            theory.closed_form_rate(method, np.array(kappas)),
        )
    return results


def _errors(make, hparams, eigenvalues, steps):
    """‖x_t‖ for t = 0..steps of ``make(**hparams[k])`` on eigenvalues[k]; one vmapped call."""

    def one(hp, lam):
        tx = make(**hp)

        def step(carry, _):
            x, state = carry
            updates, state = tx.update(lam * x, state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), jnp.linalg.norm(x)

        x0 = jnp.ones_like(lam)
        _, seen = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
        return jnp.concatenate([jnp.linalg.norm(x0)[None], seen])

    with jax.enable_x64(True):
        hparams = {k: jnp.asarray(v, jnp.float64) for k, v in hparams.items()}
        return np.asarray(jax.jit(jax.vmap(one))(hparams, jnp.asarray(eigenvalues)))


def run_family(kappas=KAPPAS, steps=STEPS, n=8):
    """QHM and AggMo as :func:`run`: ``{method: (errors, measured, spectral radius)}``."""
    eigenvalues = np.stack([tutorials.spectrum(k, n) for k in kappas])
    qhm = np.array([theory.qhm_tuning(1.0, k) for k in kappas])
    aggmo = [theory.aggmo_tuning(1.0, k) for k in kappas]
    settings = {
        "qhm": (
            jaxmom.qhm,
            dict(learning_rate=qhm[:, 0], momentum=qhm[:, 1], nu=qhm[:, 2]),
            [theory.qhm_spectral_radius(*row, ev) for row, ev in zip(qhm, eigenvalues)],
        ),
        "aggmo": (
            jaxmom.aggmo,
            dict(learning_rate=[lr for lr, _ in aggmo], betas=np.array([b for _, b in aggmo])),
            [theory.aggmo_spectral_radius(lr, b, ev) for (lr, b), ev in zip(aggmo, eigenvalues)],
        ),
    }
    results = {}
    for method, (make, hparams, radius) in settings.items():
        errors = _errors(make, hparams, eigenvalues, steps)
        measured = np.array([tutorials.measured_rate(e) for e in errors])
        results[method] = (errors, measured, np.array(radius), None)
    return results


def plot(results, kappas=KAPPAS):
    fig = plt.figure(figsize=(16, 9.5))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.1])
    for k, kappa in enumerate(kappas):
        ax = fig.add_subplot(grid[k // 2, k % 2])
        nesterov = results["nesterov"][0][k]
        horizon = int(1.15 * np.argmax(nesterov < 1e-12 * nesterov[0])) or nesterov.size - 1
        steps = np.arange(horizon + 1)
        for method, (errors, _, radius, _) in results.items():
            e = errors[k, : horizon + 1] / errors[k, 0]
            ax.semilogy(steps, e, color=COLORS[method], lw=2)
            ax.semilogy(steps, radius[k] ** steps, color=COLORS[method], lw=1.2, ls="--")
        ax.set_ylim(1e-13, 3)
        ax.set_xlim(0, horizon)
        ax.set_title(f"κ = {kappa:g}")
        ax.set_xlabel("step t")
        ax.set_ylabel(r"$\|x_t - x^*\| \,/\, \|x_0 - x^*\|$")
        ax.grid(alpha=0.3, which="major")
    # One legend for the four panels, below them, so that none covers a curve; the rates
    # themselves are the terminal's table and the right panel's dots.
    handles = [Line2D([], [], color=COLORS[m], lw=2, label=NAMES[m]) for m in results]
    handles += [
        Line2D([], [], color="k", lw=2, label="measured error"),
        Line2D([], [], color="k", lw=1.2, ls="--", label=r"theory $\rho^t$"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=10, bbox_to_anchor=(0.33, 0.0))
    ax = fig.add_subplot(grid[:, 2])
    dense = np.geomspace(3, 3e4, 200)
    for method, (_, measured, radius, closed) in results.items():
        if closed is not None:
            ax.loglog(
                dense,
                -1 / np.log(theory.closed_form_rate(method, dense)),
                color=COLORS[method],
                lw=1.5,
                ls="--",
            )
        else:  # no closed form: the spectral radius at each kappa
            ax.loglog(kappas, -1 / np.log(radius), color=COLORS[method], lw=1.5, ls=":")
        ax.loglog(
            kappas,
            -1 / np.log(measured),
            "o",
            color=COLORS[method],
            ms=9,
            mec="k",
            label=f"{NAMES[method]}",
        )
    ax.text(300, 3e3, "gradient descent:\n≈ κ/2 steps per e-fold", fontsize=9, color=COLORS["gd"])
    ax.text(
        300, 3.5, "momentum:\n≈ √κ/2 (heavy ball)\n≈ √κ (Nesterov)", fontsize=9, color="crimson"
    )
    ax.set_xlabel("condition number κ = L / μ")
    ax.set_ylabel("steps to shrink the error by e:  −1 / log ρ")
    ax.set_title(
        "dots: measured, dashed: closed form (κ−1)/(κ+1),\n(√κ−1)/(√κ+1), 1 − 1/√κ; "
        "dotted: spectral radius (QHM, AggMo)"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    fig.suptitle(
        "What momentum buys on f(x) = ½ Σ λᵢ xᵢ², λ evenly spaced in [1, κ]: "
        "error per step (solid) against the theoretical rate ρ^t (dashed)\n"
        "ρ = spectral radius of each method's iteration matrix; heavy ball, Nesterov and QHM as "
        "tuned have a repeated root there, so their error is ≈ C·t·ρ^t and runs slightly above ρ^t",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def main(argv=None):
    out = output_dir(argv, "convergence", __doc__.splitlines()[0])
    results = {**run(), **run_family()}
    print(
        f"rate per step, measured on the late half of {STEPS} steps (float64) | spectral radius | "
        "closed form | gap = -log(measured) / -log(theory) - 1, and what explains it"
    )
    for method, (errors, measured, radius, closed) in results.items():
        closed = [None] * len(KAPPAS) if closed is None else closed
        for kappa, e, m, r, c in zip(KAPPAS, errors, measured, radius, closed):
            c = "   -    " if c is None else f"{c:.6f}"
            t1, t2 = tutorials.measurement_window(e)
            if method in REPEATED_ROOT:  # C·t·ρ^t measured over steps t1..t2
                why = (
                    f"repeated root, error ≈ (a + b·t)·ρ^t: over steps {t1}..{t2} the factor t "
                    f"alone gives {tutorials.repeated_root_bias(r, t1, t2):+.2%}"
                )
            else:
                why = "simple root: 0 expected"
            print(
                f"{NAMES[method]:>20}  kappa {kappa:>7g}: {m:.6f} | {r:.6f} | {c} | "
                f"{np.log(m) / np.log(r) - 1:+.2%} ({why})"
            )
    gd, hb = results["gd"][1], results["heavy_ball"][1]
    print(
        "steps per e-fold of error at kappa = 10000: gradient descent "
        f"{-1 / np.log(gd[-1]):.0f}, heavy ball {-1 / np.log(hb[-1]):.0f}, Nesterov "
        f"{-1 / np.log(results['nesterov'][1][-1]):.0f}, QHM (nu 0.7) "
        f"{-1 / np.log(results['qhm'][1][-1]):.0f}, AggMo {-1 / np.log(results['aggmo'][1][-1]):.0f}"
    )
    save(plot(results), out / "convergence.png")


if __name__ == "__main__":
    main(sys.argv[1:])
