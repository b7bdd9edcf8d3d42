"""Linear regression y ≈ a·x + b trained with momentum, drawn on its loss surface.

The seed tutorial's run: eight min-max normalised points, loss = mean of (y - (a·x + b))²/2, start at
a = 10, b = -20, the gradient is the SUM of per-point gradients, lr 0.1, momentum 0.9, 100 steps of
``v = -dx*lr + momentum*v; x += v`` (``jaxmom.sutskever_sgd``). A second figure overlays gradient
descent, heavy ball, Nesterov and Adam on the same contour map.

    python experiments/regression.py --out runs/regression
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
from _plotting import output_dir, save
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, LogLocator

from jaxmom.studies import tutorials

LR, MOMENTUM, STEPS = 0.1, 0.9, 100
# The comparison: one small lr for the three SGD variants, so only the momentum rule differs.
COMPARISON = (
    ("gradient descent", "momentum", 0.02, 0.0, "lr 0.02", "k"),
    ("heavy ball", "momentum", 0.02, 0.9, "lr 0.02, momentum 0.9", "crimson"),
    ("Nesterov", "nesterov", 0.02, 0.9, "lr 0.02, momentum 0.9", "royalblue"),
    ("Adam", "adam", 1.0, 0.9, "lr 1.0, b1 0.9, b2 0.999", "seagreen"),
)
A_RANGE, B_RANGE = (-14.0, 22.0), (-24.0, 15.0)


def least_squares():
    """The exact minimiser (a*, b*) and its loss, from NumPy's least squares."""
    x, y = tutorials.regression_data()
    (a, b), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
    return a, b, float(tutorials.regression_loss(a, b, x, y))


def loss_grid(n=200):
    a, b = np.meshgrid(np.linspace(*A_RANGE, n), np.linspace(*B_RANGE, n))
    return a, b, tutorials.regression_loss(a, b, *tutorials.regression_data())


def contour(ax, grid, cmap="viridis"):
    a, b, loss = grid
    levels = np.geomspace(loss.min() * 1.5, loss.max(), 18)
    filled = ax.contourf(a, b, loss, levels=levels, norm=LogNorm(), cmap=cmap, alpha=0.85)
    ax.contour(a, b, loss, levels=levels, colors="w", linewidths=0.4, alpha=0.6)
    a_star, b_star, _ = least_squares()
    ax.plot(
        a_star, b_star, "*", color="gold", ms=16, mec="k", label="least-squares minimum", zorder=5
    )
    ax.set_xlabel("slope a")
    ax.set_ylabel("intercept b")
    return filled


def loss_colorbar(fig, filled, ax):
    """The contour map's colour bar: ticks at the powers of ten, written plainly (0.01, 0.1, 1, 10,
    100), not at the contour levels (257, 72.4, 20.4)."""
    return fig.colorbar(
        filled,
        ax=ax,
        label="loss (log scale)",
        ticks=LogLocator(),
        format=FuncFormatter(lambda v, _: f"{v:g}"),
    )


# Each kind's function, as the title names it (see tutorials.regression_paths).
KINDS = {
    "momentum": "jaxmom.sutskever_sgd",
    "nesterov": "jaxmom.sutskever_sgd, nesterov=True",
    "adam": "jaxmom.adam",
}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def words(items):
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def comparison_title(rows=COMPARISON):
    """The comparison figure's title, from ``rows`` (:data:`COMPARISON`): how many optimizers,
    and each one's name after the function that runs it ("gradient descent and heavy ball
    (jaxmom.sutskever_sgd), ...")."""
    count = NUMBERS[len(rows)] if len(rows) < len(NUMBERS) else str(len(rows))
    kinds = dict.fromkeys(row[1] for row in rows)
    named = [f"{words(r[0] for r in rows if r[1] == kind)} ({KINDS[kind]})" for kind in kinds]
    if "momentum" in kinds:  # named once: the Nesterov form is "the same"
        named = [n.replace(f"({KINDS['momentum']}, ", "(the same, ") for n in named]
    return f"Same problem, {count} optimizers: " + "; ".join(named)


def draw_path(ax, path, color, label, start=True, **kw):
    ax.plot(path[:, 0], path[:, 1], "-o", color=color, ms=3, lw=1.2, label=label, **kw)
    if start:
        ax.plot(*path[0], "s", color=color, ms=8, mec="k")
    ax.plot(*path[-1], "o", color=color, ms=11, mec="k")


def plot_run(path, loss):
    x, y = tutorials.regression_data()
    a_star, b_star, best = least_squares()
    grid = loss_grid()
    fig = plt.figure(figsize=(13, 10.5))
    ax3d = fig.add_subplot(2, 2, 1, projection="3d")
    ax3d.plot_surface(*grid, cmap="viridis", alpha=0.55, linewidth=0, rstride=5, cstride=5)
    ax3d.plot(path[:, 0], path[:, 1], loss, "-o", color="crimson", ms=2.5, lw=1.2, zorder=10)
    ax3d.scatter(
        *path[0], loss[0], color="crimson", s=60, marker="s", edgecolor="k", depthshade=False
    )
    ax3d.scatter(
        *path[-1], loss[-1], color="gold", s=120, marker="*", edgecolor="k", depthshade=False
    )
    ax3d.set_xlabel("slope a")
    ax3d.set_ylabel("intercept b")
    ax3d.set_zlabel("loss", labelpad=10)  # clear of the tick labels (500, 400, ...)
    ax3d.view_init(elev=35, azim=-60)
    ax3d.set_title("loss surface and the momentum path (square: start, star: step 100)")

    ax = fig.add_subplot(2, 2, 2)
    filled = contour(ax, grid)
    draw_path(ax, path, "crimson", f"momentum path, {STEPS} steps")
    loss_colorbar(fig, filled, ax)
    ax.legend(loc="lower left", fontsize=9)
    ax.set_title("contour map: the path overshoots and spirals in")

    ax = fig.add_subplot(2, 2, 3)
    xs = np.linspace(-0.05, 1.05, 2)
    shown = (40, 60, 80, len(path) - 1)
    for t in shown[:-1]:
        ax.plot(
            xs,
            path[t, 0] * xs + path[t, 1],
            color="0.35",
            lw=1,
            alpha=t / 90,
            label="steps 40, 60, 80 (fainter = earlier)" if t == 80 else None,
        )
    ax.plot(
        xs,
        path[-1, 0] * xs + path[-1, 1],
        color="crimson",
        lw=2.5,
        label=f"after {STEPS} steps: y = {path[-1, 0]:.3f}x {path[-1, 1]:+.3f}",
    )
    ax.plot(
        xs,
        a_star * xs + b_star,
        "--",
        color="goldenrod",
        lw=1.5,
        label=f"least squares: y = {a_star:.3f}x {b_star:+.3f}",
    )
    ax.scatter(x, y, s=45, color="k", zorder=5, label="data (min-max normalised)")
    # Every line drawn stays on the axes: the limits hold the data and each line's two ends.
    ends = np.concatenate([path[list(shown), :1] * xs + path[list(shown), 1:], [y]], axis=None)
    ends = np.append(ends, a_star * xs + b_star)
    pad = 0.05 * (ends.max() - ends.min())
    ax.set_ylim(ends.min() - pad, ends.max() + pad)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("x (normalised)")
    ax.set_ylabel("y (normalised)")
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title("data and the fitted line")

    ax = fig.add_subplot(2, 2, 4)
    ax.semilogy(loss, color="crimson", lw=2, label="momentum")
    ax.axhline(best, color="goldenrod", ls="--", label=f"least-squares minimum {best:.4f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss = mean (y - (ax+b))² / 2")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"loss per step (final {loss[-1]:.4f})")
    fig.suptitle(
        f"Linear regression with momentum: lr {LR}, momentum {MOMENTUM}, start (a, b) = "
        f"(10, -20), gradient = sum over the 8 points",
        fontsize=13,
    )
    fig.tight_layout()
    return fig


def plot_comparison(paths):
    fig, (ax, curves) = plt.subplots(
        1, 2, figsize=(15, 6.2), gridspec_kw={"width_ratios": [1.25, 1]}
    )
    filled = contour(ax, loss_grid(), cmap="Greys")
    loss_colorbar(fig, filled, ax)
    data = tutorials.regression_data()
    for (name, _, _, _, setting, color), path in zip(COMPARISON, paths):
        draw_path(ax, path, color, f"{name} ({setting})", start=False)
        curves.semilogy(
            tutorials.regression_loss(path[:, 0], path[:, 1], *data),
            color=color,
            lw=2,
            label=f"{name} ({setting})",
        )
    # The shared start in white: not the colour of any optimizer, nor the minimum's gold.
    ax.plot(*paths[0][0], "s", color="w", ms=9, mec="k", zorder=6, label="start (10, -20)")
    ax.legend(loc="lower left", fontsize=8.5)
    ax.set_title("paths from (10, -20), the white square; large dot = step 100")
    curves.axhline(least_squares()[2], color="goldenrod", ls="--", label="least-squares minimum")
    curves.set_xlabel("step")
    curves.set_ylabel("loss")
    curves.grid(alpha=0.3, which="both")
    curves.legend(fontsize=9)
    curves.set_title("loss per step")
    fig.suptitle(comparison_title(), fontsize=13)
    fig.tight_layout()
    return fig


def comparison_paths():
    """The COMPARISON paths: one vmapped call per optimizer kind (GD and heavy ball share one)."""
    paths = {}
    for kind in dict.fromkeys(row[1] for row in COMPARISON):
        rows = [i for i, row in enumerate(COMPARISON) if row[1] == kind]
        lrs, momenta = [COMPARISON[i][2] for i in rows], [COMPARISON[i][3] for i in rows]
        paths.update(zip(rows, tutorials.regression_paths(lrs, momenta, kind=kind, steps=STEPS)))
    return [paths[i] for i in range(len(COMPARISON))]


def main(argv=None):
    out = output_dir(argv, "regression", __doc__.splitlines()[0])
    x, y = tutorials.regression_data()
    path = tutorials.regression_paths([LR], [MOMENTUM], steps=STEPS)[0]
    loss = tutorials.regression_loss(path[:, 0], path[:, 1], x, y)
    a_star, b_star, best = least_squares()
    print(
        f"start (a, b) = (10, -20), loss {loss[0]:.2f}; least squares ({a_star:.4f}, {b_star:+.4f}),"
        f" loss {best:.5f}"
    )
    print(
        f"momentum (lr {LR}, momentum {MOMENTUM}): loss at steps 10/25/50/100 = "
        + " / ".join(f"{loss[t]:.4g}" for t in (10, 25, 50, 100))
        + f"; final (a, b) = ({path[-1, 0]:.4f}, {path[-1, 1]:+.4f})"
    )
    save(plot_run(path, loss), out / "regression.png")
    paths = comparison_paths()
    for (name, _, _, _, setting, _), p in zip(COMPARISON, paths):
        losses = tutorials.regression_loss(p[:, 0], p[:, 1], x, y)
        print(
            f"{name:>16} ({setting}): loss at steps 25/50/100 = "
            + " / ".join(f"{losses[t]:.4g}" for t in (25, 50, 100))
            + f", distance to the minimum {np.hypot(p[-1, 0] - a_star, p[-1, 1] - b_star):.4f}"
        )
    save(plot_comparison(paths), out / "regression_optimizers.png")


if __name__ == "__main__":
    main(sys.argv[1:])
