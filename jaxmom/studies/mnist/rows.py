"""A sweep's rows, one per cell (the table's, sweep.csv's), and the best one: the pick.

With a validation split (:func:`~jaxmom.studies.mnist.split.hold_out`, the default of --sweep and
--search) the rows carry ``val_accuracy`` beside ``test_accuracy``, and the best row is the one of
the highest validation accuracy; its test accuracy is what the pick scores on data it was not
picked on. Without one (``--validation 0``) the best row is the one of the highest test accuracy.
"""

import numpy as np

from jaxmom.studies.mnist import pbt
from jaxmom.sweep import SEED, SweepResult

SWEEP_COLUMNS = ("final_train_loss", "val_accuracy", "test_accuracy", "diverged", "diverged_step")


def selected_on(rows: list[dict]) -> str:
    """The column that picks the best row: ``val_accuracy`` where the rows have it."""
    return "val_accuracy" if rows and "val_accuracy" in rows[0] else "test_accuracy"


def sweep_rows(res: SweepResult, records: list[dict]) -> list[dict]:
    """One dict per cell, in the grid's order: its swept hyperparameters (and seed, with a seed
    axis), ``final_train_loss``, ``val_accuracy`` (with a validation split), ``test_accuracy``,
    ``diverged`` and ``diverged_step`` (and ``epochs_trained`` and the accuracies at the epoch each
    trial stopped, ``*_accuracy_at_stop``, after successive halving; PBT's
    :func:`~jaxmom.studies.mnist.pbt.columns` after the hyperparameters)."""
    names = [n for n in res.grid.params] + (["seed"] if SEED in res.grid.names else [])
    halved = ()  # after successive halving: where each trial stopped, and its scores there
    if "halving" in res.info:
        halved = ("epochs_trained", *(f"{k}_at_stop" for k in ("val_accuracy", "test_accuracy")))
        split = "val_accuracy" in res.metrics
        halved = tuple(c for c in halved if c != "val_accuracy_at_stop" or split)
    extra = pbt.columns(res) if "pbt" in res.info else [{}] * len(records)
    columns = [c for c in SWEEP_COLUMNS if c != "val_accuracy" or "val_accuracy" in res.metrics]
    return [
        {
            **{n: r["seed"] if n == SEED else r["hyperparameters"][n] for n in names},
            **more,
            **{c: r[c] for c in (*columns, *halved)},
        }
        for r, more in zip(records, extra)
    ]


def best_row(rows: list[dict]) -> dict | None:
    """The row of the highest validation accuracy (:func:`selected_on`; the test accuracy without
    a validation split) among the cells that did not diverge; None if all did. With a seed column,
    each configuration's seeds are averaged first (one where any seed diverged is out) and the row
    holds the means, ``<column>_std`` (``ddof=0``) of each accuracy and ``n_seeds``."""
    on = selected_on(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple((k, v) for k, v in r.items() if k not in SWEEP_COLUMNS and k != "seed")
        groups.setdefault(key, []).append(r)
    kept = []
    for key, group in groups.items():
        acc = np.array([r[on] for r in group], float)
        if any(r["diverged"] for r in group) or not np.isfinite(acc).all():
            continue
        if "seed" not in group[0]:
            kept.append(group[0])
            continue
        row = {
            **dict(key),
            "final_train_loss": float(np.mean([r["final_train_loss"] for r in group])),
        }
        for c in ("val_accuracy", "test_accuracy"):
            if c in group[0]:
                values = np.array([r[c] for r in group], float)
                row |= {c: float(values.mean()), c + "_std": float(values.std())}
        kept.append(row | {"n_seeds": len(group)})
    return max(kept, key=lambda r: r[on]) if kept else None


def verdict(res: SweepResult, best: dict | None) -> str:
    """The line after a sweep's table: the pick, the accuracy it was picked on, and its test
    accuracy."""
    if best is None:
        return "best: none, every configuration diverged"
    spread = lambda c: f" (std {100 * best[c + '_std']:.2f})" if c + "_std" in best else ""
    seeds = f" (mean of {best['n_seeds']} seeds)" if "n_seeds" in best else ""
    accuracy = f"test accuracy {100 * best['test_accuracy']:.2f}%{spread('test_accuracy')}"
    if "val_accuracy" in best:
        accuracy = (
            f"validation accuracy {100 * best['val_accuracy']:.2f}%{spread('val_accuracy')}, "
            f"picked on it; its {accuracy}"
        )
    keys = ", ".join(f"{k}={best[k]:g}" for k in pbt.verdict_keys(res, best))
    return f"best: {keys}: {accuracy}{seeds}"
