"""Momentum on f(x) = x²: 6 steps from x0 = -5 for every lr × momentum, as a 4×4 grid of panels.

The update is the seed tutorials' ``v = -dx*lr + momentum*v; x += v`` (``jaxmom.sutskever_sgd``);
all 16 trajectories come from one vmapped, jitted call (``jaxmom.studies.tutorials.momentum_paths``).

    python experiments/quadratic.py --out runs/quadratic
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
from _plotting import output_dir, save

from jaxmom.studies import tutorials

LRS = (0.01, 0.1, 0.6, 0.9)
MOMENTA = (0.0, 0.1, 0.5, 0.9)
X0, STEPS = -5.0, 6


def grid_paths():
    """The 16 trajectories, shape (len(LRS), len(MOMENTA), STEPS + 1): row = lr, column = momentum."""
    lrs, momenta = np.meshgrid(LRS, MOMENTA, indexing="ij")
    paths = tutorials.momentum_paths(lrs.ravel(), momenta.ravel(), x0=X0, steps=STEPS)
    return paths.reshape(len(LRS), len(MOMENTA), STEPS + 1)


def plot(paths):
    fig, axes = plt.subplots(len(LRS), len(MOMENTA), figsize=(13, 11.5), sharex=True, sharey=True)
    curve = np.linspace(-6, 6, 200)
    colors = plt.cm.plasma(np.linspace(0, 0.85, STEPS + 1))
    for i, lr in enumerate(LRS):
        for j, momentum in enumerate(MOMENTA):
            ax, xs = axes[i, j], paths[i, j]
            ax.plot(curve, curve**2, color="0.6", lw=1.5, zorder=1)
            ax.plot(xs, xs**2, color="0.3", lw=0.8, ls="--", zorder=2)
            ax.scatter(xs[:-1], xs[:-1] ** 2, c=colors[:-1], s=28, zorder=3)
            ax.scatter(
                xs[-1],
                xs[-1] ** 2,
                color="crimson",
                s=140,
                marker="*",
                zorder=4,
                edgecolor="k",
                linewidth=0.6,
            )
            ax.set_title(f"lr={lr}, momentum={momentum}\nfinal x={xs[-1]:+.3f}", fontsize=9.5)
            ax.set_xlim(-6.2, 6.2)
            ax.set_ylim(-2, 38)
            ax.grid(alpha=0.25)
            if i == len(LRS) - 1:
                ax.set_xlabel("x")
            if j == 0:
                ax.set_ylabel("f(x) = x²")
    handles = [
        plt.Line2D([], [], color=colors[0], marker="o", ls="", label="x₀ = -5 (start)"),
        plt.Line2D(
            [], [], color=colors[3], marker="o", ls="", label="iterates x₁…x₅ (colour = step)"
        ),
        plt.Line2D(
            [], [], color="crimson", marker="*", ms=13, ls="", mec="k", label="x₆, the final point"
        ),
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.01)
    )
    fig.suptitle(
        "Momentum on f(x) = x²: 6 steps of v = -lr·f'(x) + momentum·v;  x += v\n"
        "rows: learning rate, columns: momentum (one vmapped, jitted call for all 16)",
        fontsize=13,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def main(argv=None):
    out = output_dir(argv, "quadratic", __doc__.splitlines()[0])
    paths = grid_paths()
    print(
        f"f(x) = x², x0 = {X0}, {STEPS} steps; final x (and f) per lr (rows) × momentum (columns):"
    )
    print("lr \\ momentum " + "".join(f"{m:>18}" for m in MOMENTA))
    for lr, row in zip(LRS, paths[:, :, -1]):
        print(f"{lr:<14}" + "".join(f"{x:>+9.4f} ({x * x:6.3f})" for x in row))
    best = np.unravel_index(np.argmin(np.abs(paths[:, :, -1])), paths.shape[:2])
    print(
        f"closest to the minimum after {STEPS} steps: lr={LRS[best[0]]}, "
        f"momentum={MOMENTA[best[1]]}, x={paths[best][-1]:+.5f}"
    )
    save(plot(paths), out / "quadratic.png")


if __name__ == "__main__":
    main(sys.argv[1:])
