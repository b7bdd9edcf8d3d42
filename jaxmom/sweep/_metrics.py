"""Metric names: which way a metric is better, known from its name, and the names ``fit`` gives the
metrics of several evaluation sets.

Which way is better (:func:`direction`), for :meth:`~jaxmom.sweep.SweepResult.best`, the heatmap's
and scatter plot's outline, :class:`~jaxmom.sweep.Halving` and :func:`~jaxmom.sweep.optuna_search`
when no ``mode`` is given: the name is split into words at every character that is not a letter or
a digit (``"val/top1_error_last"``: ``val``, ``top1``, ``error``, ``last``); a name with a word of
:data:`LOWER` (``loss``, ``error``, ...) is minimised, one with a word of :data:`HIGHER`
(``accuracy``, ``acc``, ...) maximised. A name with words of neither list, or of both, has no known
direction: ``best`` and the searches refuse it in one line asking for ``mode``, and a plot outlines
no cell.

Several evaluation sets (``fit(..., eval={"val": (x, y), "test": (x, y)})``): the metric ``name``
that ``evaluate`` returns on set ``s`` is ``"s/name"`` (``"val/accuracy"``; its table column after
the last epoch ``"val/accuracy_last"``); with one unnamed set (``eval=(x, y)``) it is ``name``.
"""

from __future__ import annotations

import re

# Words that make a metric better lower.
LOWER = (
    "loss",
    "losses",
    "error",
    "errors",
    "err",
    "nll",
    "mse",
    "mae",
    "rmse",
    "perplexity",
    "ppl",
    "dist",
    "distance",
    "regret",
    "cost",
    "wer",
    "cer",
)
# Words that make a metric better higher.
HIGHER = (
    "accuracy",
    "acc",
    "auc",
    "f1",
    "precision",
    "recall",
    "correct",
    "score",
    "reward",
    "return",
    "iou",
    "bleu",
    "r2",
)


def direction(metric: str) -> str | None:
    """``"min"`` or ``"max"``: which way ``metric`` is better by its name (see the module's rule);
    None when the rule does not tell."""
    words = set(re.split(r"[^0-9a-z]+", metric.lower()))
    low, high = bool(words & set(LOWER)), bool(words & set(HIGHER))
    if low == high:
        return None
    return "min" if low else "max"


def mode_of(metric: str, mode: str | None, who: str) -> str:
    """``mode`` checked (``"min"`` or ``"max"``), or without one the direction of ``metric`` by
    its name; a name that does not tell is refused in one line that starts with ``who``."""
    if mode is not None:
        if mode not in ("min", "max"):
            raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
        return mode
    found = direction(metric)
    if found is None:
        raise ValueError(
            f"{who}: is {metric!r} better lower or higher? Its name holds no word (or words of "
            "both kinds) of those minimised (loss, error, ...) or maximised (accuracy, acc, ...): "
            "pass mode='min' or mode='max'"
        )
    return found


def eval_metric(set_name: str | None, name: str) -> str:
    """The metric name of ``evaluate``'s ``name`` on the evaluation set ``set_name`` (None: the one
    unnamed set)."""
    return name if set_name is None else f"{set_name}/{name}"
