"""Optuna as the search engine: ask a batch of trials, train them as one ``fit``, tell the values.

Needs the ``tune`` extra (``pip install "jaxmom[tune]"``, Optuna 4 or later). Any sampler (the
study's; Optuna's default is TPE) and any storage work, so several processes or hosts can share one
study through a database or a journal file: each asks its own trials, and Optuna records every
trial once.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxmom.sweep._grid import zipped
from jaxmom.sweep._metrics import direction
from jaxmom.sweep._sample import TRIAL, Choice, LogUniform, Uniform


def _distributions(space: Mapping[str, Any]) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if not space:
        raise ValueError("optuna_search() needs at least one hyperparameter space")
    out = {}
    for name, s in space.items():
        if isinstance(s, Uniform):
            out[name] = FloatDistribution(s.lo, s.hi)
        elif isinstance(s, LogUniform):
            out[name] = FloatDistribution(s.lo, s.hi, log=True)
        elif isinstance(s, Choice):
            out[name] = CategoricalDistribution(s.values)
        else:
            raise ValueError(
                f"optuna_search(): {name}={s!r} is not a space; use sweep.uniform(lo, hi), "
                "sweep.log_uniform(lo, hi) or sweep.choice([...])"
            )
    return out


def optuna_search(
    study,
    space: Mapping[str, Any],
    fit_kwargs: Mapping[str, Any],
    *,
    trials: int,
    batch: int,
    metric: str = "epoch_loss",
    seeds: int | list[int] | None = None,
) -> list:
    """Run ``trials`` trials of ``study``, ``batch`` at a time, each batch one compiled ``fit``.

    Each round asks the study for ``batch`` trials (the last round for fewer, padded by repeating
    its last trial so that every round has one shape and one compiled program), trains them as the
    ``"trial"`` axis of a grid with :func:`~jaxmom.sweep.fit`, and tells each trial the last epoch's
    ``metric`` (the mean over ``seeds``, when given). A trial that diverged (any seed; see
    :class:`~jaxmom.sweep.SweepResult`) or whose value is not finite is told as
    ``TrialState.FAIL``, never as a number. Each told trial also gets the user attributes
    ``std`` and ``n_seeds``.

    Args:
      study: an ``optuna.Study`` with one objective; its direction says whether lower or higher
        ``metric`` is better, its sampler picks the values, its storage records them.
      space: each hyperparameter's space: :func:`~jaxmom.sweep.uniform`,
        :func:`~jaxmom.sweep.log_uniform` or :func:`~jaxmom.sweep.choice`.
      fit_kwargs: every keyword argument of :func:`~jaxmom.sweep.fit` but the grid (``init``,
        ``loss``, ``optimizer``, ``train``, ``batch_size``, ``epochs``, ``eval``, ...).
      trials: how many trials this call runs.
      batch: trials trained at once.
      metric: a per-epoch metric of ``fit``'s result: ``"epoch_loss"`` or a name ``evaluate``
        returns (checked before the first ask, on ``fit``'s own setup of one probe trial); with
        several evaluation sets, named after its set (``"val/accuracy"``). A metric whose name
        tells which way is better (:mod:`jaxmom.sweep._metrics`) must agree with the study's
        direction. Each round's result names it in ``info["selected_on"]``.
      seeds: a seed axis for every trial (a count or a list), averaged in the told value.

    Its own arguments (the space, ``seeds``, ``metric``...) are checked before the first trial is
    asked, so a refused call leaves the study as it was; any error after an ask (from ``fit``,
    say) tells that round's asked trials ``FAIL`` before it is raised, so none stays ``RUNNING``.

    Returns:
      The :class:`~jaxmom.sweep.SweepResult` of each round (the padding trials dropped).
    """
    import optuna

    from jaxmom.sweep._fit import fit

    for name, value, low in (("trials", trials, 1), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"optuna_search(): {name} must be a positive integer, got {value!r}")
    if len(study.directions) != 1:
        raise ValueError("optuna_search() needs a study with one objective")
    if "halving" in fit_kwargs or "grid" in fit_kwargs:
        raise ValueError("optuna_search(): fit_kwargs must not hold grid or halving")
    distributions = _distributions(space)
    # Everything that can be checked is checked before the first ask: a trial asked and never
    # told stays RUNNING in a shared study for good.
    corner = {n: _corner(s) for n, s in space.items()}
    probe = zipped(axis=TRIAL, **{n: [v] for n, v in corner.items()})
    if seeds is not None:
        probe = probe.with_seeds(seeds)
    if not isinstance(metric, str):
        raise ValueError(f"optuna_search(): metric must be a metric's name, got {metric!r}")
    names = _metric_names(fit_kwargs, probe)
    if metric not in names:
        raise ValueError(
            f"optuna_search(): metric {metric!r} is not one of fit's per-epoch metrics {names}"
        )
    wanted = {"min": "minimize", "max": "maximize"}.get(direction(metric) or "")
    if wanted is not None and study.directions[0].name.lower() != wanted:
        raise ValueError(
            f"optuna_search(): the study would {study.directions[0].name.lower()} {metric!r}, "
            f"which its name says to {wanted}: create the study with direction={wanted!r}"
        )
    results, done = [], 0
    while done < trials:
        k = min(batch, trials - done)
        asked = [study.ask(distributions) for _ in range(k)]
        try:  # any error from here on: the asked trials are told FAIL first, none stays RUNNING
            values = {n: [t.params[n] for t in asked] for n in distributions}
            values = {n: v + [v[-1]] * (batch - k) for n, v in values.items()}  # one shape
            grid = zipped(axis=TRIAL, **values)
            if seeds is not None:
                grid = grid.with_seeds(seeds)
            res = fit(grid, **fit_kwargs)
            mean, std, n = res.seed_stats(f"{metric}_last")
        except BaseException:
            for t in asked:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        for i, t in enumerate(asked):
            value = float(np.asarray(mean).reshape(-1)[i])
            t.set_user_attr("std", float(np.asarray(std).reshape(-1)[i]))
            t.set_user_attr("n_seeds", int(n))
            if math.isfinite(value):
                study.tell(t, value)
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
        if k < batch:  # no padding (the run's info describes the padded grid: not kept)
            res = res.take(TRIAL, range(k), info={"selected_on": metric})
        else:
            res.info["selected_on"] = metric
        results.append(res)
        done += k
    return results


def _corner(space):
    """A value of ``space`` (its low end, or its first choice), to check what it feeds."""
    return space.values[0] if isinstance(space, Choice) else space.lo


def _metric_names(fit_kwargs: Mapping[str, Any], probe) -> list[str]:
    """The per-epoch metrics of ``fit``'s result on the ``probe`` grid, found as ``fit`` finds
    them: its checked setup (a bad argument or cell is refused here, in one line) and
    ``evaluate`` traced abstractly; nothing trains or compiles."""
    from jaxmom.sweep._programs import eval_names
    from jaxmom.sweep._setup import setup

    takes = inspect.signature(setup).parameters
    s = setup(probe, **{k: v for k, v in fit_kwargs.items() if k in takes})
    return ["loss", "epoch_loss", *eval_names(s)]
