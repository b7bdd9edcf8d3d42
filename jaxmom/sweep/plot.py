"""Figures of sweep results (needs matplotlib): heatmaps over two grid axes, scatter plots of
sampled trials.

Every function builds a :class:`matplotlib.figure.Figure` with the Figure API (no ``pyplot``, no
global figure list) and returns it, so a notebook shows it inline; it writes a PNG only when given a
``path`` (atomically, see :mod:`jaxmom.sweep._files`). This module never touches the matplotlib
backend: picking one is the business of scripts.

Imports run one way: :class:`~jaxmom.sweep.SweepResult` imports this module when one of its plotting
methods is called, and this module names the result type for type checking only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from jaxmom.sweep._files import atomic_open
from jaxmom.sweep._metrics import direction

if TYPE_CHECKING:
    from jaxmom.sweep._result import SweepResult


def save(fig: Figure, path, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG to ``path``, atomically (a temporary file, then ``os.replace``)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)


def _plain_ticks(bar, norm) -> None:
    """Colour-bar labels as plain numbers; on a log scale the minor ticks are labelled only when
    the range spans less than a decade (else they crowd into each other)."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    bar.ax.yaxis.set_major_formatter(plain)
    low, high = norm.vmin, norm.vmax
    narrow = isinstance(norm, LogNorm) and low is not None and high is not None and high < 10 * low
    bar.ax.yaxis.set_minor_formatter(plain if narrow else NullFormatter())


def plain_log_ticks(axis, low: float, high: float) -> None:
    """Label a log ``axis`` (``ax.xaxis``, ``ax.yaxis``) that runs from ``low`` to ``high`` with
    plain numbers (0.2, 0.5, 1, 2; not 2×10⁻¹): at 1, 2 and 5 times the powers of ten when it spans
    two decades or less (every digit under half a decade), else at the powers; minor ticks stay
    unlabelled, so no two labels crowd into each other."""
    decades = np.log10(high / low) if low > 0 and high > low else 0.0
    subs = tuple(range(1, 10)) if decades <= 0.5 else (1, 2, 5) if decades <= 2 else (1,)
    axis.set_major_locator(LogLocator(subs=[float(s) for s in subs]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _best_mode(metric: str, best: str | None) -> str | None:
    """``"min"``, ``"max"`` or None (no outline) from a plot's ``best`` argument."""
    if best not in ("auto", None, "min", "max"):
        raise ValueError(f"best must be 'auto', 'min', 'max' or None, got {best!r}")
    return direction(metric) if best == "auto" else best


def heatmap(
    result: SweepResult,
    metric: str,
    x: str,
    y: str,
    path=None,
    *,
    title: str | None = None,
    label: str | None = None,
    best: str | None = "auto",
    log_color: bool | None = None,
    std: bool = False,
    percent: bool = False,
) -> Figure:
    """A heatmap of ``result``'s ``metric`` over the axes carrying ``x`` and ``y``.

    Other axes (e.g. seeds) are averaged; a cell where any averaged run diverged is shown
    grey and labelled "div" (one without a value for another reason, such as a trial that
    successive halving stopped, grey and "-"). An axis whose values are all positive and span at least a
    decade is drawn on a log scale. The colour scale is logarithmic when ``log_color`` is
    True or, by default, when the metric's values are positive and span a factor of 5 or
    more (losses; pass False for bounded metrics such as accuracy). ``best="min"`` or
    ``"max"`` outlines the best cell in red (by the mean); ``"auto"`` (the default) does so in
    the direction that the metric's name tells (:func:`jaxmom.sweep._metrics.direction`:
    losses and errors lower, accuracies higher), and outlines nothing for a name that tells
    neither; None outlines nothing. ``std=True`` colours each cell by
    the standard deviation (``ddof=0``) of the runs it averages (the seeds) instead, and labels it
    "±std". ``percent=True`` shows a fraction (an accuracy) in percent, cells and colour bar, as a
    table prints it ("87.21%"). The default title says what was averaged ("mean over 3 seeds").

    Returns:
      The :class:`~matplotlib.figure.Figure`; it is also saved as a PNG to ``path`` if given.
    """
    best = _best_mode(metric, best)
    ix, iy = result.grid.axis_of(x), result.grid.axis_of(y)
    if ix == iy:
        raise ValueError(
            f"{x!r} and {y!r} lie on the same grid axis; pick two axes (or plot.scatter)"
        )
    mean = cell_values(result, metric, x, y)
    div = np.moveaxis(np.asarray(result.diverged), (iy, ix), (0, 1))
    div = np.asarray(div.reshape(div.shape[0], div.shape[1], -1).any(-1))
    z = cell_values(result, metric, x, y, std=True) if std else mean
    scale = 100.0 if percent else 1.0
    z = z * scale
    xv = result.grid.axes[ix].columns.get(x, next(iter(result.grid.axes[ix].columns.values())))
    yv = result.grid.axes[iy].columns.get(y, next(iter(result.grid.axes[iy].columns.values())))

    fig = Figure(figsize=(1.2 * len(xv) + 2.5, 0.9 * len(yv) + 1.8))
    ax = fig.subplots()
    fin = z[np.isfinite(z)]
    if not fin.size:  # every cell diverged: an all-grey map, no colour scale to draw
        norm = Normalize(0.0, 1.0)
    elif log_color if log_color is not None else fin.min() > 0 and fin.max() >= 5 * fin.min():
        norm = LogNorm(fin.min(), fin.max()) if fin.min() > 0 else Normalize()
    else:
        norm = Normalize(fin.min(), fin.max())
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.75")
    xe, xlog = _edges(xv)
    ye, ylog = _edges(yv)
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), cmap=cmap, norm=norm)
    if fin.size:
        name = label or (f"std of {metric}" if std else metric)
        bar = fig.colorbar(mesh, ax=ax, label=name + (" (%)" if percent else ""))
        _plain_ticks(bar, norm)
    xc, yc = _centres(xe, xlog), _centres(ye, ylog)
    digits = _digits(fin)
    for (i, j), v in np.ndenumerate(z):
        dark = np.isfinite(v) and np.asarray(norm(v)) < 0.6  # viridis is dark at its low end
        ax.text(
            float(xc[j]),
            float(yc[i]),
            ("div" if div[i, j] else "-")
            if not np.isfinite(v)
            else _cell_text(v, std=std, percent=percent, digits=digits),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if dark else "black",
        )
    if best is not None and fin.size:
        pick = np.nanargmin if best == "min" else np.nanargmax
        i, j = np.unravel_index(pick(mean), mean.shape)
        ax.add_patch(
            Rectangle(
                (xe[j], ye[i]),
                xe[j + 1] - xe[j],
                ye[i + 1] - ye[i],
                fill=False,
                edgecolor="red",
                linewidth=2.5,
            )
        )
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")
    ax.set_xticks(xc, [f"{v:g}" for v in xv])
    ax.set_yticks(yc, [f"{v:g}" for v in yv])
    ax.minorticks_off()
    ax.set_xlabel(x + (" (log)" if xlog else ""))
    ax.set_ylabel(y + (" (log)" if ylog else ""))
    over = averaged_over(result, x, y, std=std)
    default = metric + (f", {over}" if over else "")
    ax.set_title((title or default) + ("" if fin.size else " (every cell diverged)"))
    fig.tight_layout()
    if path is not None:
        save(fig, path)
    return fig


def _digits(values: np.ndarray) -> int:
    """Significant digits that tell the cells apart: 3, or more (up to 6) when the values differ
    only in later digits (2.3042 and 2.3033, not 2.3 and 2.3)."""
    if values.size < 2 or values.max() == values.min():
        return 3
    need = np.ceil(np.log10(np.abs(values).max() / (values.max() - values.min()))) + 1
    return int(min(max(3, need), 6))


def _cell_text(v: float, *, std: bool, percent: bool, digits: int = 3) -> str:
    if percent:
        return f"±{v:.2f}" if std else f"{v:.2f}%"
    return f"±{v:.2g}" if std else f"{v:.{digits}g}"


def averaged_over(result: SweepResult, x: str, y: str | None = None, *, std: bool = False) -> str:
    """What a figure of ``x`` (and ``y``) reduces, in words: "mean over 3 seeds", "mean over 4
    values of wd and 2 seeds" (``std=True``: "std over ..."); "" when no axis of more than one
    value is left. Every grid axis but those carrying ``x`` and ``y`` is reduced."""
    grid = result.grid
    kept = {grid.axis_of(x)} | ({grid.axis_of(y)} if y is not None else set())
    parts = []
    for i, (name, n) in enumerate(zip(grid.names, grid.shape)):
        if i in kept or n < 2:
            continue
        parts.append(f"{n} seeds" if name == "seed" else f"{n} values of {name}")
    if not parts:
        return ""
    words = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{'std' if std else 'mean'} over {words}"


def cell_values(
    result: SweepResult, metric: str, x: str, y: str, *, std: bool = False
) -> np.ndarray:
    """The heatmap's numbers, shape (len y, len x): ``metric`` averaged over the other axes (with
    ``std=True`` their standard deviation, ``ddof=0``), NaN (drawn grey, "div") where any averaged
    run diverged."""
    vals = np.where(result.diverged, np.nan, result.metric_grid(metric))
    z = np.moveaxis(vals, (result.grid.axis_of(y), result.grid.axis_of(x)), (0, 1))
    z = z.reshape(z.shape[0], z.shape[1], -1)
    return z.std(-1) if std else z.mean(-1)


def _edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cell edges for ``pcolormesh``: geometric on a log axis, else evenly spaced categories."""
    v = np.asarray(values, float)
    log = len(v) > 1 and v.min() > 0 and v.max() >= 10 * v.min() and np.all(np.diff(v) > 0)
    if not log:
        return np.arange(len(v) + 1) - 0.5, False
    lv = np.log10(v)
    mid = (lv[1:] + lv[:-1]) / 2
    return 10 ** np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]), True


def _centres(edges: np.ndarray, log: bool) -> np.ndarray:
    return np.sqrt(edges[1:] * edges[:-1]) if log else (edges[1:] + edges[:-1]) / 2


def scatter(
    result: SweepResult,
    metric: str,
    x: str,
    y: str | None = None,
    path=None,
    *,
    log: bool | Sequence[str] | None = None,
    best: str | None = "auto",
    title: str | None = None,
    label: str | None = None,
    log_color: bool | None = None,
    percent: bool = False,
) -> Figure:
    """A scatter plot of ``metric`` over the trials, for sampled grids where a heatmap does not fit.

    One point per configuration, its seeds averaged (with error bars of their standard
    deviation, ``ddof=0``, when there are several). With one hyperparameter ``x`` the metric is
    the vertical axis; with two, ``x`` and ``y`` are the axes and the metric the colour. A
    configuration where any seed diverged is a grey cross (along the bottom edge in the
    one-hyperparameter plot); a trial that successive halving stopped is a faded grey point at
    its ``<name>_at_stop`` value (for a ``<name>_last`` metric; left out otherwise), and the title
    says how many trials trained to the end. ``log``: the hyperparameters drawn on a log axis (True: all);
    by default, those whose values are positive, span at least a decade and have their median
    nearer the geometric than the arithmetic midpoint, as a :func:`~jaxmom.sweep.log_uniform`
    space's do. ``best="min"`` or ``"max"`` circles the best configuration in red; ``"auto"`` (the
    default) in the direction the metric's name tells, as for :func:`heatmap`; None: no circle.
    ``percent=True`` shows a fraction (an accuracy) in percent. When no configuration has a value
    (every one diverged, say), the axes are grey and the title says so.

    Returns:
      The :class:`~matplotlib.figure.Figure`; it is also saved as a PNG to ``path`` if given.
    """
    best = _best_mode(metric, best)
    names = [x] if y is None else [x, y]
    for name in names:
        if name not in result.grid.params:
            raise ValueError(f"{name!r} is not a hyperparameter of this grid {result.grid.params}")
    mean, std, n = result.seed_stats(metric)
    seeded = "seed" in result.grid.names
    coords = result.grid.coords()
    if "seed" in result.grid.names:
        at = result.grid.names.index("seed")
        coords = {k: np.take(v, 0, axis=at) for k, v in coords.items()}
    scale = 100.0 if percent else 1.0
    mean, std = scale * mean.reshape(-1), scale * std.reshape(-1)
    shown = (label or metric) + (" (%)" if percent else "")
    values = {k: np.asarray(coords[k], float).reshape(-1) for k in names}
    diverged = result.diverged
    if seeded:
        diverged = np.moveaxis(diverged, result.grid.names.index("seed"), -1).any(-1)
    ok = np.isfinite(mean)
    bad = diverged.reshape(-1)  # grey crosses
    # successive halving: a stopped trial is a faded point at its value at stop (see _stopped)
    halved, stop = _stopped_values(result, metric, scale)
    stopped = ~ok & ~bad & np.isfinite(stop)

    def is_log(name):
        if isinstance(log, bool):
            return log
        if log is not None:
            return name in log
        return _looks_log(values[name])

    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    xv = values[x]
    if y is None:
        if seeded and n > 1:
            ax.errorbar(xv[ok], mean[ok], yerr=std[ok], fmt="none", ecolor="0.6", lw=1)
        ax.scatter(xv[ok], mean[ok], s=22, color="C0", zorder=3)
        if stopped.any():
            ax.scatter(xv[stopped], stop[stopped], s=16, color="0.55", alpha=FADED, label=STOP)
        ax.scatter(
            xv[bad],
            np.full(bad.sum(), 0.02),
            marker="x",
            color="0.5",
            transform=ax.get_xaxis_transform(),
            label="diverged" if bad.any() else None,  # no legend entry for no cross
        )
        ax.set_ylabel(shown)
        # the crosses sit on the axes' edge, so they set no data limit: the x limits hold them
        drawn = ok | bad | stopped
        ax.set_xlim(*_limits(xv[drawn] if drawn.any() else xv, is_log(x)))
        if not ok.any():
            ax.set_yticks([])  # no value to read off
        yv = mean
    else:
        yv = values[y]
        fin = mean[ok]
        if (
            log_color
            if log_color is not None
            else fin.size and fin.min() > 0 and fin.max() >= 5 * fin.min()
        ):
            norm = LogNorm(fin.min(), fin.max()) if fin.size and fin.min() > 0 else Normalize()
        else:
            norm = Normalize(*((fin.min(), fin.max()) if fin.size else (0.0, 1.0)))
        points = ax.scatter(xv[ok], yv[ok], c=fin, cmap="viridis", norm=norm, s=30, zorder=3)
        if stopped.any():
            ax.scatter(xv[stopped], yv[stopped], s=18, color="0.55", alpha=FADED, label=STOP)
        ax.scatter(
            xv[bad], yv[bad], marker="x", color="0.5", label="diverged" if bad.any() else None
        )
        if fin.size:
            bar = fig.colorbar(points, ax=ax, label=shown)
            _plain_ticks(bar, norm)
        ax.set_ylabel(y + (" (log)" if is_log(y) else ""))
        ax.set_yscale("log" if is_log(y) else "linear")
        if not (
            ok | bad | stopped
        ).any():  # nothing drawn: the searched ranges, not matplotlib's 0 to 1
            ax.set_xlim(*_limits(xv, is_log(x)))
            ax.set_ylim(*_limits(yv, is_log(y)))
    if best is not None and ok.any():
        i = (np.nanargmin if best == "min" else np.nanargmax)(mean)
        ax.scatter(
            [xv[i]], [yv[i]], s=160, facecolors="none", edgecolors="red", linewidths=2, zorder=4
        )
    if bad.any() or stopped.any():
        ax.legend(loc="best", fontsize=8)
    ax.set_xscale("log" if is_log(x) else "linear")
    ax.set_xlabel(x + (" (log)" if is_log(x) else ""))
    if is_log(x):
        plain_log_ticks(ax.xaxis, *ax.get_xlim())
    if y is not None and is_log(y):
        plain_log_ticks(ax.yaxis, *ax.get_ylim())
    over = averaged_over(result, x, y)
    over = f", {over}" if over else ""
    count, missing = f"{len(mean)} configurations", ""
    if halved is not None:
        count = f"successive halving: {len(mean)} trials, {halved} trained to the end"
    if not ok.any():  # nothing to colour or to place: grey axes, and the title says why
        ax.set_facecolor("0.88")
        if bad.all():
            count, missing = f"all {count} diverged", " (every configuration diverged)"
        else:
            some = f"; {int(bad.sum())} diverged" if bad.any() else ""
            count += f", none with a value{some}"
            missing = f" (no configuration has a value{some})"
    ax.set_title(title + missing if title else f"{metric}{over} ({count})")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save(fig, path)
    return fig


FADED = 0.35  # the alpha of a trial that successive halving stopped
STOP = "stopped early (value at stop)"


def _stopped_values(result: SweepResult, metric: str, scale: float):
    """(trials trained to the end, or None without successive halving; each configuration's
    ``<name>_at_stop`` for a ``<name>_last`` metric, seeds averaged and scaled, else NaN)."""
    stops = getattr(result, "_stops", {})
    if "stopped_epoch" not in stops:
        return None, np.full(result.seed_stats(metric)[0].size, np.nan)
    trained = np.asarray(result.metric_grid("stopped_epoch"))
    if "seed" in result.grid.names:
        trained = np.take(trained, 0, axis=result.grid.names.index("seed"))
    rungs = result.info.get("halving", {}).get("rungs") or [{"epochs": trained.max()}]
    if "halving" not in result.info and (trained == trained.max()).all():
        return None, np.full(trained.size, np.nan)  # every trial trained to the end: no halving
    full = int((trained >= rungs[-1]["epochs"]).sum())
    name = metric.removesuffix("_last") + "_at_stop"
    if not metric.endswith("_last") or name not in stops:
        return full, np.full(trained.size, np.nan)
    return full, scale * result.seed_stats(name)[0].reshape(-1)


def _limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    """Axis limits holding ``values`` with a 5% margin (in log space on a log axis, which holds
    only the positive ones)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(v[v > 0])
    if not v.size:
        return (0.1, 10.0) if log else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    pad = 0.05 * (hi - lo) if hi > lo else (0.1 if log else max(0.1 * abs(lo), 0.5))
    lo, hi = lo - pad, hi + pad
    return (10**lo, 10**hi) if log else (lo, hi)


def _looks_log(values: np.ndarray) -> bool:
    """Positive values spanning a decade or more whose median sits nearer their geometric than
    their arithmetic midpoint: drawn from a log space (a log-uniform range, a log-spaced list)."""
    v = np.asarray(values, float)
    lo, hi = v.min(), v.max()
    if not (lo > 0 and hi >= 10 * lo):
        return False
    med = np.log(np.median(v))
    return bool(abs(med - np.log(np.sqrt(lo * hi))) < abs(med - np.log((lo + hi) / 2)))
