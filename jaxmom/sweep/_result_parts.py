"""Parts of results: :meth:`SweepResult.take` (some cells of one grid axis) and
:meth:`SweepResult.concat` (results end to end along one axis), which carry the divergence marks
over exactly, never recomputing them (their docstrings say what each keeps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from jaxmom.sweep._grid import Grid, positions
from jaxmom.sweep._result import RESERVED, SweepResult, _leaf_name


def take(res: SweepResult, axis: str, indices, info: Mapping | None) -> SweepResult:
    """See :meth:`SweepResult.take`."""
    a = res.grid.axis_of(axis)
    idx = positions(indices, res.grid.axes[a])
    pick = lambda x: np.take(np.asarray(x), idx, axis=a)
    return type(res)(
        grid=res.grid.take(axis, idx),
        metrics=jax.tree.map(pick, res.metrics),
        compile_seconds=res.compile_seconds,
        train_seconds=res.train_seconds,
        eval_seconds=res.eval_seconds,
        history=res.history,
        devices=res.devices,
        divergence_factor=res.divergence_factor,
        divergence=(pick(res.diverged), pick(res.diverged_step)),
        info=info,
        params=None if res.params is None else jax.tree.map(pick, res.params),
        model_state=None if res.model_state is None else jax.tree.map(pick, res.model_state),
    )


def concat(cls, results: Sequence[SweepResult], axis: str, info: Mapping | None) -> SweepResult:
    """See :meth:`SweepResult.concat`."""
    results = list(results)
    if not results:
        raise ValueError("concat needs at least one result")
    first = results[0]
    grid = Grid.concat([r.grid for r in results], axis)
    a, lead = first.grid.axis_of(axis), len(first.grid.shape)
    for r in results[1:]:
        for what in ("history", "divergence_factor"):
            if getattr(r, what) != getattr(first, what):
                raise ValueError(
                    f"results to concatenate need the same {what}, got "
                    f"{getattr(first, what)!r} and {getattr(r, what)!r}"
                )
    for what in ("params", "model_state"):
        if len({getattr(r, what) is None for r in results}) > 1:
            raise ValueError(f"results to concatenate need {what} in all of them or in none")

    def join(what: str, trees: list):
        named = [jax.tree_util.tree_leaves_with_path(t) for t in trees]
        for t, leaves in zip(trees[1:], named[1:]):
            if jax.tree.structure(t) != jax.tree.structure(trees[0]):
                names = lambda ls: [_leaf_name(p) for p, _ in ls]
                raise ValueError(
                    f"results to concatenate need the same {what}, got {names(named[0])} "
                    f"and {names(leaves)}"
                )
        for k, (path, _) in enumerate(named[0]):
            beyond = list(dict.fromkeys(np.shape(ls[k][1])[lead:] for ls in named))
            if len(beyond) > 1:
                raise ValueError(
                    f"results to concatenate need the same shape beyond the grid for "
                    f"{what} {_leaf_name(path)!r}, got {beyond[0]} and {beyond[1]}"
                )
        cat = lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=a)
        return jax.tree.map(cat, *trees)

    metrics = join("metrics", [r.metrics for r in results])
    params = None if first.params is None else join("params", [r.params for r in results])
    model_state = None
    if first.model_state is not None:
        model_state = join("model_state", [r.model_state for r in results])
    marks = [np.concatenate([getattr(r, m) for r in results], axis=a) for m in RESERVED]
    return cls(
        grid=grid,
        metrics=metrics,
        compile_seconds=sum(r.compile_seconds for r in results),
        train_seconds=sum(r.train_seconds for r in results),
        eval_seconds=sum(r.eval_seconds for r in results),
        history=first.history,
        devices=tuple(dict.fromkeys(d for r in results for d in r.devices)),
        divergence_factor=first.divergence_factor,
        divergence=(marks[0], marks[1]),
        info=info,
        params=params,
        model_state=model_state,
    )
