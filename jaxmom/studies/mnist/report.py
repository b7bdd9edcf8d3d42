"""What the study reports: the summary table, results.json, the loss-curve figure, and a sweep's
table, CSV and heatmaps.

Every file goes through :func:`jaxmom.sweep.atomic_open` (a temporary file, then
``os.replace``): a full disk or a kill leaves the earlier file intact and no temporary file behind.
This module never picks a matplotlib backend: figures are :class:`matplotlib.figure.Figure` objects, returned, and saved
only by the ``write_*`` functions; the script (:func:`jaxmom.studies.mnist.cli.run`) picks the
backend.

The results' vocabulary, one for results.json, sweep.csv and train_loss.csv (docs/mnist.md has the
table): ``final_train_loss`` is the last epoch's mean training loss, ``epoch_train_loss`` every
epoch's, ``test_accuracy`` the fraction (0 to 1) of test examples classified right after the last
epoch, ``epoch_test_accuracy`` after every epoch, and ``loss`` a single batch's training loss at
``step`` (from 0). Printed tables show accuracy in percent, with a ``%`` sign.
"""

import csv
import functools
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

import jaxmom
import jaxmom.sweep.plot as sweep_plot
from jaxmom.studies.mnist import pbt
from jaxmom.studies.mnist.config import Config
from jaxmom.studies.mnist.folders import LOSS_CSV
from jaxmom.studies.mnist.rows import best_row, selected_on, sweep_rows
from jaxmom.studies.mnist.rows import verdict as rows_verdict
from jaxmom.studies.mnist.sweep import Search, space_text
from jaxmom.sweep import TRIAL, SweepResult, atomic_open, json_text, write_text


def save_figure(fig: Figure, path) -> None:
    """``fig`` as a PNG at ``path``, written atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def write_json(path, value) -> None:
    write_text(path, json_text(value, indent=2, default=float) + "\n")  # NaN, inf: null


def data_line(dataset) -> str:
    """Where the data came from and how much of it."""
    return (
        f"data: {dataset.source}: {len(dataset.train_images):,} train / "
        f"{len(dataset.test_images):,} test examples"
        + (
            f", {len(dataset.val_images):,} held out for validation"
            if dataset.val_images is not None
            else ""
        )
    )


def run_header(config: Config) -> str:
    return f"\n== {config.label} =="


def sweep_header(config: Config, grid) -> str:
    return f"sweep: {config.optimizer}, {grid!r}, {config.epochs} epochs each, through fit"


def search_header(config: Config, search: Search) -> str:
    """The line a search prints before training."""
    space = ", ".join(f"{k} {space_text(v)}" for k, v in search.space.items())
    seeds = f" x {len(search.seeds)} seeds" if search.seeds else ""
    eta = f" (eta {search.eta})" if search.method == "halving" else ""
    eta = pbt.header(search) if search.method == "pbt" else eta
    return (
        f"search: {search.method}{eta}, {search.trials} trials{seeds} of {config.optimizer} "
        f"over {space}; {config.epochs} epochs each, through fit"
    )


def halving_line(info: dict) -> str:
    """What successive halving spent: its rungs and configuration-epochs against the full budget."""
    rungs = ", ".join(f"{r['trials']} trials to epoch {r['epochs']}" for r in info["rungs"])
    spent, full = info["config_epochs"], info["full_config_epochs"]
    return f"halving: {rungs}; {spent} of {full} configuration-epochs ({100 * spent / full:.0f}%)"


def wrote(paths) -> str:
    return "\n".join(f"wrote {p}" for p in paths)


def study_summary(records: list[dict]) -> str:
    """The study's closing lines: the data and settings, then :func:`summary_table`."""
    r = records[0]
    return (
        f"\n{r['data_source']}, {r['epochs']} epochs, batch {r['batch_size']}, seed {r['seed']}, "
        f"init {r['init']}\n{summary_table(records)}"
    )


def figure_title(dataset: str, records: list[dict], *, family: bool = False) -> str:
    """loss_curves.png's title: the dataset (and whether it is the embedded subset), the model,
    batch size and seed."""
    r = records[0]
    subset = " (embedded 4k/1k subset)" if r["data_source"].startswith("embedded") else ""
    if family:
        subset += ", the momentum family"
    return f"{dataset}{subset}: 784-200-10 MLP, batch {r['batch_size']}, seed {r['seed']}"


def run_lines(record: dict) -> str:
    """The lines printed after a run: the seed tutorials' line per epoch (numbered from 1; those a
    checkpoint held are marked), then the timings and the test accuracy."""
    resumed = record["resumed_from_epoch"]
    lines = [
        f"epoch: {e}, Train Loss: {loss:.6f}, Test Acc: {100 * acc:.2f}%"
        + (" (from the checkpoint)" if e <= resumed else "")
        for e, (loss, acc) in enumerate(
            zip(record["epoch_train_loss"], record["epoch_test_accuracy"]), 1
        )
    ]
    shared = ", shared" if record["compiled_program_reused"] else ""
    after = f", resumed after epoch {resumed}" if resumed else ""
    lines.append(
        f"Time used: {record['train_seconds']:.5f} s (compile {record['compile_seconds']:.2f} s"
        f"{shared}{after}), test accuracy {100 * record['test_accuracy']:.2f}%"
    )
    return "\n".join(lines)


def summary_table(records):
    header = "| run | optimizer | hyperparameters | final train loss | test accuracy | train s | compile s |"
    rows = [header, "|---|---|---|---|---|---|---|"]
    for r in records:
        hp = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r["hyperparameters"].items()
            if v or k == "learning_rate"
        )
        compile_s = f"{r['compile_seconds']:.2f}" + (
            " (shared)" if r["compiled_program_reused"] else ""
        )
        rows.append(
            f"| {r['label']} | {r['optimizer']} | {hp} | {r['final_train_loss']:.4f} | "
            f"{100 * r['test_accuracy']:.2f}% | {r['train_seconds']:.2f} | {compile_s} |"
        )
    return "\n".join(rows)


def smoothed(values, beta=0.9):
    """The seed tutorials' bias-corrected EMA, through ``jaxmom.ema``:
    v_t = beta v_{t-1} + (1-beta) x_t, shown as v_t / (1 - beta^t)."""
    tx = jaxmom.ema(beta, debias=True)
    x = jnp.asarray(values, jnp.float32)

    def step(state, value):
        out, state = tx.update(value, state)
        return state, out

    _, out = jax.lax.scan(step, tx.init(x[0]), x)
    return np.asarray(out).tolist()


def epoch_beta(record: dict) -> float:
    """The EMA's beta that averages over about one epoch of logged losses:
    1 - log_every / steps_per_epoch (0 when an epoch logs one loss or none)."""
    return max(0.0, 1.0 - record["log_every"] / record["steps_per_epoch"])


SAME_PATH, NEAR_PATH = 1e-3, 2e-2  # largest relative difference of two runs' logged losses


def twin(record: dict, earlier: list[dict]) -> tuple[str, float] | None:
    """The first of ``earlier`` whose logged losses and epoch means ``record`` follows to within
    :data:`NEAR_PATH` (relative), and that largest relative difference; None if there is none."""
    for q in earlier:
        if len(q["logged_loss"]) != len(record["logged_loss"]):
            continue
        pairs = [
            (np.asarray(q[k], float), np.asarray(record[k], float))
            for k in ("logged_loss", "epoch_train_loss")
        ]
        gap = max(float(np.max(np.abs(b / a - 1))) for a, b in pairs)
        if gap < NEAR_PATH:
            return q["label"], gap
    return None


# Eleven colours (Tableau's ten and black) and eleven marker shapes: two runs whose colours look
# alike (lion's pink, radam's purple) still differ in shape. A run past them is dash-dotted.
COLOURS = [colormaps["tab10"](i) for i in range(10)] + ["black"]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">"]


def mean_positions(record: dict) -> list[float]:
    """Where loss_curves draws each epoch's mean, in epochs: at the epoch's last logged batch,
    where the smoothed curve (about one epoch's average) stands for the same batches; at the
    epoch's end when it logged none."""
    steps, per = record["logged_steps"], record["steps_per_epoch"]
    out = []
    for e in range(1, len(record["epoch_train_loss"]) + 1):
        inside = [s for s in steps if per * (e - 1) <= s < per * e]
        out.append(inside[-1] / per if inside else float(e))
    return out


def write_outputs(out, records, title) -> list[Path]:
    """Writes results.json (:func:`results` of the records), train_loss.csv (the logged batch losses) and
    loss_curves.png (:func:`loss_curves`) into ``out``; returns the paths."""
    out = Path(out)
    write_json(out / "results.json", results(records))
    with atomic_open(out / LOSS_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "optimizer", "step", "epoch", "loss"])
        for r in records:
            for step, loss in zip(r["logged_steps"], r["logged_loss"]):
                epoch = f"{step / r['steps_per_epoch']:.4f}"
                writer.writerow([r["label"], r["optimizer"], step, epoch, f"{loss:.6g}"])
    save_figure(loss_curves(records, title), out / "loss_curves.png")
    return [out / "results.json", out / LOSS_CSV, out / "loss_curves.png"]


def loss_curves(records, title) -> Figure:
    """The study's figure: each run's training loss (semilogy) beside its test accuracy after every
    epoch. A single batch's loss, logged every ``log_every`` steps, is noisy (a bump that all runs
    share is one hard batch), so each run is drawn as its logged losses smoothed over about one
    epoch (:func:`smoothed` with :func:`epoch_beta`: bold), each epoch's mean training loss at the
    epoch's last logged batch (markers: there the smoothed curve has averaged about that epoch,
    and the curve reaches the last of them), and the single-batch losses themselves (faint). A run
    that follows an earlier one (:func:`twin`) is drawn dashed, and its label says whose path and
    how close. Each run has its own colour and marker shape; runs past :data:`COLOURS` are
    dash-dotted. The loss axis is labelled with plain numbers."""
    fig = Figure(figsize=(13, 5.6))
    ax_loss, ax_acc = fig.subplots(1, 2, width_ratios=(3, 2))
    legend: list[tuple[Line2D, str]] = []  # each run's look (line, colour, marker), its label
    for i, r in enumerate(records):
        found = twin(r, records[:i])
        if found is None:
            note = ""
        elif found[1] < SAME_PATH:
            note = f" (same path as {found[0]})"
        else:
            note = f" ({found[0]}'s path, within {found[1]:.1%})"
        style = (
            {"ls": (0, (4, 3)), "lw": 2.2}
            if found
            else {"ls": "-" if i < len(COLOURS) else "-.", "lw": 1.8}
        )
        colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        label = f"{r['label']}: {r['final_train_loss']:.3f}{note}"
        x = [s / r["steps_per_epoch"] for s in r["logged_steps"]]
        ax_loss.semilogy(x, r["logged_loss"], color=colour, lw=0.6, alpha=0.25)
        ax_loss.semilogy(x, smoothed(r["logged_loss"], epoch_beta(r)), color=colour, **style)
        look = Line2D([], [], color=colour, marker=marker, mec="k", mew=0.5, **style)
        legend.append((look, label))
        ax_loss.semilogy(
            mean_positions(r), r["epoch_train_loss"], marker, color=colour, ms=6, mec="k", mew=0.5
        )
        ax_acc.plot(
            range(1, len(r["epoch_test_accuracy"]) + 1),
            [100 * a for a in r["epoch_test_accuracy"]],
            marker=marker,
            color=colour,
            **style,
        )
    ax_loss.set(
        xlabel="epoch",
        ylabel="training loss (log)",
        title=f"Training loss: bold, a batch's loss (every {records[0]['log_every']} steps) "
        "smoothed over an epoch;\nmarkers, each epoch's mean, at its last logged batch; "
        "faint, the single batches",
    )
    ax_loss.title.set_fontsize(10)
    sweep_plot.plain_log_ticks(ax_loss.yaxis, *ax_loss.get_ylim())
    ax_loss.grid(True, which="both", alpha=0.3)
    fig.legend(
        *zip(*legend),
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        ncol=2,
        fontsize=9,
        title="run: final epoch's mean training loss",
    )
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy after each epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.grid(True, alpha=0.3)
    fig.suptitle(title)
    return fig


def table(rows: list[dict], columns) -> str:
    """``rows`` as an aligned plain-text table; accuracies in percent."""

    def cell(name, v):
        if name.endswith("accuracy"):
            return f"{100 * v:.2f}%"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [list(columns)] + [[cell(c, r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(s.rjust(w) for s, w in zip(row, widths)) for row in cells)


def sweep_summary(res: SweepResult, records: list[dict]) -> str:
    """The lines a sweep prints: timings, the table of every run, and the best run."""
    rows = sweep_rows(res, records)
    verdict = rows_verdict(res, best_row(rows))
    return "\n".join(
        [
            f"compile {res.compile_seconds:.2f} s, train {res.train_seconds:.2f} s, "
            f"evaluate {res.eval_seconds:.2f} s for {res.grid.size} configurations",
            table(rows, list(rows[0])),
            verdict,
        ]
    )


def results(records: list[dict], sweep: dict | None = None) -> dict:
    """results.json, one schema for single runs and sweeps: ``runs`` (one record per run or per
    cell, the same keys) and ``sweep`` (None, or the grid: its values, the fixed hyperparameters,
    the divergence factor and the best cell's row)."""
    return {"runs": records, "sweep": sweep}


def write_sweep_outputs(out, res: SweepResult, config: Config, records: list[dict]) -> list[Path]:
    """Writes ``sweep.csv`` (:func:`sweep_rows`), ``results.json`` (:func:`results`) and one
    heatmap per pair of grid axes and metric (final training loss, validation and test accuracy,
    the pick outlined on the one it was selected on; diverged cells grey) into ``out``, or for sampled trials (a ``"trial"`` axis) one scatter plot per pair of
    hyperparameters (or per hyperparameter, when there is one); returns the paths."""
    out, grid = Path(out), res.grid
    rows = sweep_rows(res, records)
    with atomic_open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sweep = {
        "optimizer": config.optimizer,
        "grid": {p: axis.columns[p].tolist() for axis in grid.axes for p in axis.columns},
        "fixed_hyperparameters": {
            k: v for k, v in config.full_hparams().items() if k not in grid.params
        },
        "divergence_factor": res.divergence_factor,
        "selected_on": selected_on(rows),  # the column that picked "best"
        "best": best_row(rows),
        "search": res.info.get("search"),  # --search's plan, None for a grid
        "halving": res.info.get("halving"),  # successive halving's rungs and spend
        "pbt": res.info.get("pbt"),  # PBT's settings, exploits and copies
    }
    written = [out / "sweep.csv", out / "results.json"]
    if "pbt" in res.info:  # each run's lineage, the schedules; scatter plots at the last values
        written.append(pbt.write_figure(out, res, config.optimizer))
        records, res = pbt.records(res, records), pbt.final_values(res)
    write_json(out / "results.json", results(records, sweep))
    names = list(grid.params)
    sampled = TRIAL in grid.names  # --search's trials: scatter plots, a heatmap does not fit
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1 :]]
    if sampled and len(names) == 1:
        pairs = [(names[0], None)]
    space = (res.info.get("search") or {}).get("space", {})
    log_axes = [n for n in names if str(space.get(n, "")).startswith("log")]
    for x, y in pairs:
        for metric, stem, label in (
            ("final_train_loss", "train_loss", "final epoch's mean training loss"),
            ("val_accuracy", "val_accuracy", "validation accuracy"),
            ("test_accuracy", "test_accuracy", "test accuracy"),
        ):
            if metric not in res.metrics:  # no validation split: --validation 0
                continue
            # the outline marks the pick: best by validation accuracy where there is one
            outline = metric == "final_train_loss" or metric == selected_on(rows)
            plot: Callable[..., Figure] = functools.partial(sweep_plot.heatmap, res)
            if sampled:  # the search's log-uniform ranges on log axes
                plot = functools.partial(res.scatter, log=log_axes)
            if not sampled:
                path = out / f"heatmap_{stem}_{x}_{y}.png"
            elif y is None:
                path = out / f"scatter_{stem}_{x}.png"
            else:
                path = out / f"scatter_{stem}_{x}_{y}.png"
            # two short lines: one long line was wider than a small grid's figure
            epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
            title = f"{config.optimizer}, {epochs}{pbt.SCATTER * ('pbt' in res.info)}:\n{label}"
            if not res.diverged.all() and outline:  # else the figure says every one diverged
                title += " (best in red)"
            if over := sweep_plot.averaged_over(res, x, y):  # "mean over 3 seeds"
                title += f"\n{over}"
            if "halving" in res.info:  # its stopped trials are drawn faded, at their value at stop
                rungs = res.info["halving"]["rungs"]
                title += (
                    f"\nsuccessive halving: {rungs[0]['trials']} trials, "
                    f"{rungs[-1]['trials']} trained to the end"
                )
            # after successive halving, the per-epoch column: a stopped trial at its value at stop
            halved = "halving" in res.info and sampled
            plot(  # saved atomically by jaxmom.sweep.plot
                f"epoch_{metric.removeprefix('final_')}_last" if halved else metric,
                x,
                y,
                path,
                title=title,
                label=label,
                percent=metric != "final_train_loss",  # as the tables print it
                best=None if not outline else "min" if metric == "final_train_loss" else "max",
                # nothing finite to scale when every cell diverged (sweep.plot's
                # LogNorm then fails): a linear, all-grey map
                log_color=metric == "final_train_loss" and not res.diverged.all(),
            )
            written.append(path)
    return written
