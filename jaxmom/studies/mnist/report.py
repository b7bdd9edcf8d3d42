"""What the study reports: the summary table, results.json, the loss-curve figure, and a sweep's
table, CSV and heatmaps."""

import csv
import json

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import jaxmom
from jaxmom.studies.mnist.config import Config
from jaxmom.sweep import SweepResult


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


SMOOTH_FROM = 60  # logged points per run from which the plot also draws a smoothed curve


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


def write_outputs(out, records, title):
    (out / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    with open(out / "loss_every_30_steps.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "optimizer", "step", "epoch", "loss"])
        for r in records:
            for step, loss in zip(r["logged_steps"], r["logged_loss"]):
                writer.writerow(
                    [
                        r["label"],
                        r["optimizer"],
                        step,
                        f"{step / r['steps_per_epoch']:.4f}",
                        f"{loss:.6g}",
                    ]
                )
    print(f"wrote {out / 'results.json'}\nwrote {out / 'loss_every_30_steps.csv'}")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 2))
    for i, r in enumerate(records):
        # A run whose curve matches an earlier one (e.g. the two momentum forms) is drawn dashed.
        twin = next(
            (
                q["label"]
                for q in records[:i]
                if len(q["logged_loss"]) == len(r["logged_loss"])
                and np.allclose(q["logged_loss"], r["logged_loss"], rtol=1e-3)
            ),
            None,
        )
        style = {"ls": "--", "lw": 2.0} if twin else {"ls": "-", "lw": 1.3}
        # more runs than the default colour cycle has colours: tab20
        colour = {"color": plt.cm.tab20(i % 20)} if len(records) > 10 else {}
        label = f"{r['label']}: {r['final_train_loss']:.3f}" + (
            f" (same path as {twin})" if twin else ""
        )
        x = [s / r["steps_per_epoch"] for s in r["logged_steps"]]
        if len(x) >= SMOOTH_FROM:  # long, noisy curves: faint raw losses under their average
            (line,) = ax_loss.semilogy(
                x, smoothed(r["logged_loss"]), label=label, **style, **colour
            )
            ax_loss.semilogy(x, r["logged_loss"], color=line.get_color(), lw=0.6, alpha=0.25)
        else:
            (line,) = ax_loss.semilogy(x, r["logged_loss"], label=label, **style, **colour)
        ax_acc.plot(
            range(1, len(r["epoch_test_accuracy"]) + 1),
            [100 * a for a in r["epoch_test_accuracy"]],
            marker="o",
            color=line.get_color(),
            **style,
        )
    smooth = (
        " (bold: bias-corrected EMA, beta 0.9)"
        if any(len(r["logged_steps"]) >= SMOOTH_FROM for r in records)
        else ""
    )
    ax_loss.set(
        xlabel="epoch",
        ylabel=f"training loss (batch, every {records[0]['log_every']} steps)",
        title=f"Training loss{smooth}",
    )
    ax_loss.grid(True, which="both", alpha=0.3)
    fig.legend(
        *ax_loss.get_legend_handles_labels(),
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
    fig.savefig(out / "loss_curves.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out / 'loss_curves.png'}")


def best_run(res: SweepResult) -> dict | None:
    """The row of the highest test accuracy among the runs that did not diverge; None if all did."""
    try:
        return res.best("test_accuracy", "max")
    except ValueError:
        return None


def sweep_summary(res: SweepResult, config: Config) -> str:
    """The lines a sweep prints: timings, the table of every run, and the best run."""
    grid = res.grid
    cols = [*grid.params, "epoch_train_loss_last", "test_accuracy", "diverged", "diverged_step"]
    best = best_run(res)
    if best is None:
        verdict = "best: none, every configuration diverged"
    else:
        verdict = (
            "best: "
            + ", ".join(f"{k}={best[k]:g}" for k in grid.params)
            + f": test accuracy {100 * best['test_accuracy']:.2f}%"
        )
    return "\n".join(
        [
            f"compile {res.compile_seconds:.2f} s, train {res.train_seconds:.2f} s "
            f"for {grid.size} configurations",
            res.table(cols),
            verdict,
        ]
    )


def write_sweep_outputs(out, res: SweepResult, config: Config, data_source: str) -> list:
    """Writes ``sweep.csv``, ``results.json`` and one heatmap per pair of grid axes and metric
    (final training loss, test accuracy; diverged cells grey) into ``out``; returns the paths."""
    grid = res.grid
    values = {p: axis.columns[p].tolist() for axis in grid.axes for p in axis.columns}
    res.to_csv(out / "sweep.csv")
    rows = res.rows()
    loss = res.metrics["epoch_train_loss"].reshape(grid.size, -1)
    for r, curve in zip(rows, loss):
        r["epoch_train_loss"] = curve.tolist()
    record = {
        "optimizer": config.optimizer,
        "fixed_hyperparameters": config.full_hparams(),
        "grid": {k: list(v) for k, v in values.items()},
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "data_source": data_source,
        "divergence_factor": res.divergence_factor,
        "train_seconds": res.train_seconds,
        "compile_seconds": res.compile_seconds,
        "best": best_run(res),
        "configurations": rows,
    }
    for r in record["configurations"]:
        r.pop("epoch_train_loss_last", None)
        r["final_train_loss"] = r["epoch_train_loss"][-1]
    (out / "results.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    written = [out / "sweep.csv", out / "results.json"]
    names = list(grid.params)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            for metric, stem, label in (
                ("epoch_train_loss_last", "train_loss", "final epoch's mean training loss"),
                ("test_accuracy", "test_accuracy", "test accuracy"),
            ):
                path = out / f"heatmap_{stem}_{x}_{y}.png"
                title = f"{config.optimizer}, {config.epochs} epochs: {label}"
                res.heatmap(
                    metric,
                    x,
                    y,
                    path,
                    title=title + " (best in red)",
                    label=label,
                    best="max" if metric == "test_accuracy" else "min",
                    log_color=metric != "test_accuracy",
                )
                written.append(path)
    return written
