"""``--search pbt``: population-based training of the study's trials (:class:`jaxmom.sweep.PBT`).

The population is ``--trials`` random draws (a member is a trial, with all its ``--seeds``).
Every ``--interval`` epochs the members are ranked by their validation accuracy (the test accuracy
with ``--validation 0``; the mean over the seeds), as the study's other searches rank trials; each of the bottom ``--fraction`` takes the
state and hyperparameters of a member of the top ``--fraction`` and perturbs the searched ones
(each range and choice of the command line).

What this adds to a search's outputs (:func:`jaxmom.studies.mnist.report.write_sweep_outputs`):

- results.json: each run's ``pbt`` record (:func:`records`): its ``member``, the ``lineage``
  (the member whose run trained each epoch of its final state) and the ``schedule`` (every
  hyperparameter of the grid in each epoch along that lineage), which replays the run; the
  ``sweep`` record's ``pbt`` is the library's ``info["pbt"]`` (settings, exploits, copies);
- sweep.csv and the table: ``member``, ``final_<name>`` (the value of the last epoch) and
  ``lineage`` per leg (:func:`columns`);
- the scatter plots, drawn over each member's last-epoch hyperparameters (:func:`final_values`):
  where a member started says little about the state it ended with;
- ``pbt_schedules.png`` (:func:`schedules_figure`).
"""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

import jaxmom.sweep.plot as sweep_plot
from jaxmom import sweep
from jaxmom.sweep import SEED, TRIAL, SweepResult, atomic_open

INTERVAL, FRACTION = 1, 0.25  # --interval's and --fraction's defaults
MODE = "max"  # the members are ranked by accuracy: validation's (fit's val/accuracy), or test's
FIGURE = "pbt_schedules.png"
SCATTER = ", each member at its last epoch's values"  # the scatter plots' title
HP = "hp/"


def check_flags(args) -> None:
    """How --interval and --fraction combine with --search, --trials and --epochs: one
    ``ValueError`` for the first mistake (the library's :class:`~jaxmom.sweep.PBT` would refuse
    the same values, later and in its own words)."""
    pbt = args.search == "pbt"
    for name in ("interval", "fraction"):
        if getattr(args, name) is not None and not pbt:
            raise ValueError(f"--{name} applies to --search pbt")
    if not pbt:
        return
    interval = INTERVAL if args.interval is None else args.interval
    fraction = FRACTION if args.fraction is None else args.fraction
    if interval < 1:
        raise ValueError(
            f"--interval must be at least 1 (epochs between two exploits), got {interval}"
        )
    if args.epochs >= 1 and interval >= args.epochs:
        raise ValueError(
            f"--interval {interval} leaves no exploit in {args.epochs} epochs: --search pbt needs "
            "an --interval below --epochs"
        )
    if not 0 < fraction <= 0.5:
        raise ValueError(
            f"--fraction must be in (0, 0.5] (the bottom F copy the top F), got {fraction:g}"
        )
    if args.trials is not None and args.trials < 2:
        raise ValueError(
            f"--search pbt needs a population of at least 2 --trials, got {args.trials}"
        )


def strategy(space: dict, interval: int, fraction: float, seed: int, metric: str) -> sweep.PBT:
    """The library's PBT for the study: ranked by ``metric`` (fit's name, :data:`MODE`)."""
    return sweep.PBT(
        space=space, interval=interval, fraction=fraction, metric=metric, mode=MODE, seed=seed
    )


def describe(interval: int, fraction: float, selected_on: str) -> dict:
    """What --search pbt adds to results.json's ``search``."""
    return {"interval": interval, "fraction": fraction, "metric": selected_on, "mode": MODE}


def header(search) -> str:
    """The search line's words for PBT."""
    ranked = words(search.selected_on)
    return f" (interval {search.interval}, fraction {search.fraction:g}, ranked by {ranked})"


def metric(res: SweepResult) -> str:
    """The study's column that ranks the members: ``val_accuracy``, or ``test_accuracy``."""
    return "val_accuracy" if "val_accuracy" in res.metrics else "test_accuracy"


def words(column: str) -> str:
    """``"validation accuracy"`` or ``"test accuracy"``."""
    return "validation accuracy" if column.startswith("val") else "test accuracy"


# ---- the result, member by member -----------------------------------------------------------


def by_member(res: SweepResult, values) -> np.ndarray:
    """``values`` (``res.grid.shape`` in front) as ``(members, seeds, ...)``: the cells of each
    member (its ``member`` metric) together."""
    member = np.asarray(res.metrics["member"]).reshape(-1)
    values = np.asarray(values)
    flat = values.reshape(res.grid.size, *values.shape[len(res.grid.shape) :])
    return flat[np.argsort(member, kind="stable")].reshape(
        int(member.max()) + 1, -1, *flat.shape[1:]
    )


def searched(res: SweepResult) -> list[str]:
    return list(res.info["pbt"]["space"])


def best_member(res: SweepResult) -> int | None:
    """The member of the highest final validation (else test) accuracy (its mean over the seeds) among those none of
    whose seeds diverged, as the table's best; None when every one diverged."""
    acc = by_member(res, res.metrics[metric(res)]).mean(1)
    ok = ~by_member(res, res.diverged).any(1) & np.isfinite(acc)
    if not ok.any():
        return None
    return int(np.flatnonzero(ok)[np.argmax(acc[ok])])


def lineages(res: SweepResult) -> list[dict]:
    """Each member's :meth:`~jaxmom.sweep.SweepResult.schedule`, member by member."""
    return [res.schedule(m) for m in range(res.info["pbt"]["members"])]


def records(res: SweepResult, records: list[dict]) -> list[dict]:
    """``records`` (one per cell, the grid's order), each with its ``pbt`` record: ``member``,
    ``lineage`` (per epoch, the member whose run trained it) and ``schedule`` (per epoch, each
    hyperparameter of the grid along that lineage)."""
    member = np.asarray(res.metrics["member"]).reshape(-1)
    sched = lineages(res)
    out = []
    for r, m in zip(records, member):
        s = sched[int(m)]
        schedule = {k: np.asarray(v).tolist() for k, v in s["hp"].items()}
        pbt = {"member": int(m), "lineage": s["members"].tolist(), "schedule": schedule}
        out.append({**r, "pbt": pbt})
    return out


def columns(res: SweepResult) -> list[dict]:
    """sweep.csv's and the table's PBT columns, one dict per cell in the grid's order: ``member``,
    ``final_<name>`` for each searched hyperparameter, and ``lineage``: the member whose run
    trained each leg of its final state, first leg first (``3>3>7``: member 7's state, copied
    from member 3 after the second leg)."""
    member = np.asarray(res.metrics["member"]).reshape(-1)
    ends = np.asarray(res.info["pbt"]["ends"]) - 1
    legs = [">".join(str(m) for m in s["members"][ends]) for s in lineages(res)]
    final = {k: np.asarray(res.metrics[HP + k])[..., -1].reshape(-1) for k in searched(res)}
    return [
        {"member": int(m), **{f"final_{k}": v[i].item() for k, v in final.items()}}
        | {"lineage": legs[int(m)]}
        for i, m in enumerate(member)
    ]


def verdict_keys(res: SweepResult, best: dict) -> list[str]:
    """The names the best row is told by: the grid's hyperparameters, or after PBT the member and
    the values it ended with."""
    if "pbt" not in res.info:
        return list(res.grid.params)
    return ["member", *(f"final_{k}" for k in searched(res))]


def final_values(res: SweepResult) -> SweepResult:
    """``res`` with each member at its last epoch's hyperparameters (a ``"trial"`` axis, the seed
    axis kept): what the scatter plots are drawn over."""
    values = {
        k: by_member(res, res.metrics[HP + k][..., -1])[:, 0].tolist() for k in res.grid.params
    }
    grid = sweep.zipped(axis=TRIAL, **values)
    seeded = SEED in res.grid.names
    if seeded:
        grid = grid.with_seeds(by_member(res, res.grid.coords()[SEED])[0].tolist())
    pick = lambda v: by_member(res, v).reshape(grid.shape + np.shape(v)[len(res.grid.shape) :])
    kept = ("final_train_loss", "val_accuracy", "test_accuracy")
    metrics = {k: pick(res.metrics[k]) for k in kept if k in res.metrics}
    return SweepResult(
        grid=grid,
        metrics=metrics,
        history="final_train_loss",
        divergence=(pick(res.diverged), pick(res.diverged_step)),
        info=res.info,
    )


def summary_line(res: SweepResult) -> str:
    """What PBT did: its exploits and copies, and the best member's lineage and schedule."""
    info = res.info["pbt"]
    copies = [len(c) for c in info["copies"]]
    after = ", ".join(str(e) for e in info["ends"][:-1])
    line = (
        f"pbt: {info['members']} members, {len(copies)} exploits (after epochs {after}), "
        f"{sum(copies)} copies, ranked by {words(metric(res))}"
    )
    best = best_member(res)
    if best is None:
        return line + "; every member diverged"
    s = res.schedule(best)
    ends = np.asarray(info["ends"]) - 1
    hp = ", ".join(f"{k} {s['hp'][k][0]:.3g} -> {s['hp'][k][-1]:.3g}" for k in searched(res))
    lineage = ">".join(str(m) for m in s["members"][ends])
    return f"{line}; best member {best}: lineage {lineage}, {hp}"


# ---- the figure -------------------------------------------------------------------------------


def schedules_figure(res: SweepResult, title: str) -> Figure:
    """``pbt_schedules.png``: one panel per searched hyperparameter (a log axis for a log-uniform
    one) and one of the test accuracy that ranks the members, against the epochs. Each member's
    line is the value it trained with in each epoch, a step per epoch (its accuracy after each
    epoch: the mean over its seeds), broken where it copied a donor: a copy is a dotted line from
    the donor's value to the member's perturbed one, ending in a triangle; exploits are the grey
    vertical lines. The best member's lineage (the schedule its final state was trained with,
    :meth:`~jaxmom.sweep.SweepResult.schedule`) is drawn bold in black."""
    info = res.info["pbt"]
    epochs = np.arange(1, info["ends"][-1] + 1)
    ranked = metric(res)
    panels = [*searched(res), ranked]
    fig = Figure(figsize=(4.6 * len(panels), 4.4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    best = best_member(res)
    sched = None if best is None else res.schedule(best)
    colour = lambda m: colormaps["tab20"](m % 20)
    breaks = {}  # member -> the epochs (0-based) at which it starts from a donor's state
    for end, copies in zip(info["ends"], info["copies"]):
        for m, _ in copies:
            breaks.setdefault(m, []).append(end)
    for ax, name in zip(axes, panels):
        acc = name == ranked
        if acc:
            values = 100 * by_member(res, res.metrics["epoch_" + ranked]).mean(1)
        else:
            values = by_member(res, res.metrics[HP + name])[:, 0]
        at = (
            (lambda e: e + 1) if acc else (lambda e: e + 0.5)
        )  # where a copy lands, epoch e 0-based
        for m, v in enumerate(values):
            cuts = [0, *breaks.get(m, []), len(epochs)]
            for a, b in zip(cuts, cuts[1:]):
                if acc:
                    ax.plot(epochs[a:b], v[a:b], "-", color=colour(m), lw=1.1, alpha=0.8)
                else:
                    edges = np.arange(a, b + 1) + 0.5
                    ax.stairs(v[a:b], edges, baseline=None, color=colour(m), lw=1.1, alpha=0.8)
        for end, copies in zip(info["ends"], info["copies"]):
            ax.axvline(end + 0.5, color="0.85", lw=0.8, zorder=0)
            for m, donor in copies:
                x0 = end if acc else end + 0.5
                ax.plot([x0, at(end)], [values[donor, end - 1], values[m, end]], ":", color="0.35",
                        lw=0.9)  # fmt: skip
                ax.plot(at(end), values[m, end], "v", color=colour(m), mec="k", mew=0.5, ms=6)
        if sched is not None and acc:
            ax.plot(epochs, values[sched["members"], epochs - 1], "o-", color="k", lw=2.4, ms=4)
        elif sched is not None:
            line = np.asarray(sched["hp"][name], float)
            ax.stairs(line, np.arange(len(epochs) + 1) + 0.5, baseline=None, color="k", lw=2.4)
        log = not acc and str(info["space"][name]).startswith("LogUniform")
        if log:
            ax.set_yscale("log")
            sweep_plot.plain_log_ticks(ax.yaxis, *ax.get_ylim())
        label = (
            f"{words(ranked)} (%), mean over the seeds" if acc else name + (" (log)" if log else "")
        )
        ax.set(xlabel="epoch", ylabel=label, xlim=(0.5, len(epochs) + 0.5))
        what = (
            f"{words(ranked)} after each epoch: it ranks the members"
            if acc
            else f"{name} per epoch"
        )
        ax.set_title(what, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
    legend = [
        (Line2D([], [], color="C0", lw=1.1), "a member (one colour each)"),
        (
            Line2D([], [], color="0.35", ls=":", marker="v", mfc="w", mec="k"),
            "a copy: from the donor's value to the member's new one",
        ),  # fmt: skip
        (Line2D([], [], color="0.85"), "an exploit"),
    ]
    if best is not None:
        legend.append(
            (
                Line2D([], [], color="k", lw=2.4, marker="o", ms=4),
                f"the best member ({best})'s lineage: the schedule of its final state",
            )  # fmt: skip
        )
    fig.legend(*zip(*legend), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=2, fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def write_figure(out, res: SweepResult, optimizer: str):
    """:func:`schedules_figure` as ``out / FIGURE``, written atomically; returns the path."""
    path = Path(out) / FIGURE
    fig = schedules_figure(res, figure_title(res, optimizer))
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    return path


def figure_title(res: SweepResult, optimizer: str) -> str:
    info = res.info["pbt"]
    seeds = res.grid.shape[res.grid.names.index(SEED)] if SEED in res.grid.names else 1
    every = f"every {info['interval']} epochs" if info["interval"] > 1 else "after every epoch"
    return (
        f"{optimizer}, population-based training of {info['members']} members "
        f"({seeds} seed{'s' if seeds > 1 else ''} each): {every} the bottom "
        f"{info['fraction']:.0%} copy the top {info['fraction']:.0%} by {words(info['metric'])}"
    )
