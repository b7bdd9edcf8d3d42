"""The functions of one cell of a ``fit``: ``init``, one training ``epoch`` (or, for a
:attr:`~jaxmom.sweep._setup.Setup.stepwise` setup, the epoch's batches ``order`` and one ``step``)
and ``evaluate``, as :mod:`jaxmom.sweep._fit`'s contract defines them; ``vmap`` and ``shard_map``
make them a chunk's in :mod:`jaxmom.sweep._programs`.

A cell's state is ``(params, opt_state)``, or ``(params, opt_state, model_state)`` for a model with
state (``has_state``). Batches come from :func:`_batches`: ``(steps, batch_size)`` indices and
weights, the last, partial batch padded with weight 0. A model whose loss is plain (no state, no
key) averages that padded batch by its weights, as it always did; a model with state or a key meets
every batch at its true size (its last, partial one sliced to its real examples), so that
BatchNorm's batch statistics and a dropout mask's shape are those of the plain loop.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmom.sweep import _engine
from jaxmom.sweep._layout import in_layout, kernel_mask, kernels, swap, weights_first
from jaxmom.sweep._setup import Setup, batch_shapes


class CellFns(NamedTuple):
    """One cell's functions (``vmap`` and ``shard_map`` make them a chunk's)."""

    init: Callable  # (hp, seed, fixed) -> state
    epoch: Callable  # (state, hp, seed, e, fixed, train) -> (state, per-step losses)
    evaluate: Callable  # (state, seed, e, data) -> {name: mean over data}
    order: Callable  # (seed, e) -> (indices, weights[, keys]), each (steps, ...)
    step: Callable  # (state, hp, xs, i, fixed, train, size=None) -> (state, loss)


def _batches(key, n: int, size: int, steps: int):
    """(indices, weights), both (steps, size): ``permutation(key, n)`` in consecutive slices, the
    last padded with index 0 and weight 0 (or dropped, when ``steps * size <= n``)."""
    pad = max(steps * size - n, 0)
    order = jnp.concatenate([jax.random.permutation(key, n), jnp.zeros(pad, jnp.int32)])
    weights = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return order[: steps * size].reshape(steps, size), weights[: steps * size].reshape(steps, size)


def _keys(seed):
    """(init_key, data_key) of a cell: ``jax.random.split(jax.random.key(seed))``."""
    init_key, data_key = jax.random.split(_engine._key(seed))
    return init_key, data_key


def step_key(seed, e, i):
    """The key of step ``i`` (0-based, in its epoch) of epoch ``e``:
    ``fold_in(fold_in(fold_in(key(seed), 2), e), i)``."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(_engine._key(seed), 2), e), i)


def eval_key(seed, e, j):
    """The key of evaluation batch ``j`` after epoch ``e`` (0-based):
    ``fold_in(fold_in(fold_in(key(seed), 3), e), j)``."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(_engine._key(seed), 3), e), j)


def partial_size(n: int, size: int, drop_last: bool) -> int:
    """The size of the last, partial batch of ``n`` examples in batches of ``size``; 0: none."""
    return 0 if drop_last else n % size


def cell_fns(s: Setup) -> CellFns:
    """The functions of one cell of ``s`` (see :class:`CellFns`)."""
    static = dict(s.static)
    exact = s.exact  # every batch at its true size (a model with state or a key)
    rest = partial_size(s.n, s.batch_size, s.drop_last) if exact else 0
    # the user's loss and evaluate computed kernel first (jaxmom.sweep._layout); one trace of each
    # per program, shared by the search for their kernels and their calls
    traces, eval_traces = {}, {}
    loss_fn = weights_first(s.loss, traces=traces)

    def tx_of(hp, fixed):
        return s.optimizer({**fixed, **static, **hp})

    def init(hp, seed, fixed):
        out = s.init(_keys(seed)[0])
        params = out[0] if s.has_state else out
        state = params, tx_of(hp, fixed).init(params)
        return (*state, out[1]) if s.has_state else state

    def order(seed, e):
        xs = _batches(jax.random.fold_in(_keys(seed)[1], e), s.n, s.batch_size, s.steps)
        if not s.loss_key:
            return xs
        keys = jax.vmap(lambda i: step_key(seed, e, i))(jnp.arange(s.steps))
        return (*xs, keys)

    def mean_loss(loss_fn, params, batch, w):
        return jnp.sum(w * loss_fn(params, *batch)) / jnp.sum(w)

    def objective(loss_fn, params, model_state, batch, key):
        """(the batch's mean loss, the new model state) of a model with state or a key."""
        kw = {"key": key} if s.loss_key else {}
        # rebuilt in the gradient's trace: the Variables of a Flax NNX state are then this
        # trace's, which BatchNorm may update (those made outside it refuse to be)
        model_state = jax.tree.map(lambda a: a, model_state)
        out = loss_fn(params, *((model_state,) if s.has_state else ()), *batch, **kw)
        losses, new = out if s.has_state else (out, None)
        return jnp.mean(losses), new

    def one_step(state, tx, xs, train, size=None, mask=None):
        """One step. ``mask`` (a tree of bools over ``state``): the leaves stored transposed,
        kernels first (see :func:`epoch`); the loss and the update then run on them so."""
        loss, update = loss_fn, tx.update
        if mask is not None:
            loss = weights_first(s.loss, traces=traces, moved=mask[0])
            update = in_layout(tx.update, (mask[0], mask[1], mask[0]), (mask[0], mask[1]))
        idx, w = xs[0], xs[1]
        if not exact:  # the plain loss: the padded batch, averaged by its weights
            params, opt_state = state
            batch = tuple(a[idx] for a in train)
            value, grads = jax.value_and_grad(partial(mean_loss, loss))(params, batch, w)
            updates, opt_state = update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value
        idx = idx if size is None else idx[:size]
        batch = tuple(a[idx] for a in train)
        key = xs[2] if s.loss_key else None
        model_state = state[2] if s.has_state else None
        grad = jax.value_and_grad(partial(objective, loss), has_aux=True)
        (value, model_state), grads = grad(state[0], model_state, batch, key)
        updates, opt_state = update(grads, state[1], state[0])
        params = optax.apply_updates(state[0], updates)
        return ((params, opt_state, model_state) if s.has_state else (params, opt_state)), value

    def epoch(state, hp, seed, e, fixed, train):
        tx = tx_of(hp, fixed)
        xs = order(seed, e)
        # the kernels and their optimizer state are kept (out, in) through the scan, and the
        # loss, its gradient and the update computed on them so: no step moves a kernel (see
        # jaxmom.sweep._layout); apply_updates adds element by element, whatever the layout
        pre = (state[2],) if s.has_state else ()
        batch = batch_shapes(train, s.batch_size)
        found = kernels(s.loss, state[0], *pre, *batch, key=s.loss_key, traces=traces)
        params_mask, opt_mask = kernel_mask(state[:2], found)  # the model's state stays as it is
        mask = (params_mask, opt_mask, *jax.tree.map(lambda _: False, pre))

        def body(c, b):
            return one_step(c, tx, b, train, mask=mask)

        def run(state, xs):
            state, losses = jax.lax.scan(body, swap(state, mask, pinned=True), xs)
            return swap(state, mask), losses

        if not rest:
            return run(state, xs)
        state, losses = run(state, jax.tree.map(lambda a: a[:-1], xs))
        state, last = one_step(state, tx, jax.tree.map(lambda a: a[-1], xs), train, rest)
        return state, jnp.concatenate([losses, last[None]])

    def step(state, hp, xs, i, fixed, train, size=None):
        return one_step(state, tx_of(hp, fixed), jax.tree.map(lambda a: a[i], xs), train, size)

    def evaluate(state, seed, e, data):
        params = state[0] if s.eval_params is None else s.eval_params(state[0], state[1])
        pre = (state[2],) if s.has_state else ()
        n = int(data[0].shape[0])
        size = min(s.eval_batch_size, n)
        # kernels first, as in training: transposed once, outside the loop over batches
        assert s.evaluate is not None  # an evaluation program exists only with one
        batch = batch_shapes(data, size)
        found = kernels(s.evaluate, params, *pre, *batch, key=s.eval_key, traces=eval_traces)
        mask = kernel_mask(params, found)
        at = weights_first(s.evaluate, traces=eval_traces, moved=mask)
        stored = swap(params, mask, pinned=True)
        if not s.exact_eval:
            return _padded_mean(at, stored, data, n, size)

        def values(j, batch):
            kw = {"key": eval_key(seed, e, j)} if s.eval_key else {}
            out = at(stored, *pre, *batch, **kw)
            return {k: jnp.sum(v.astype(jnp.float32)) for k, v in out.items()}

        full, part = n // size, n % size
        add = lambda t, v: jax.tree.map(jnp.add, t, v)

        def body(total, j):
            batch = tuple(jax.lax.dynamic_slice_in_dim(a, j * size, size) for a in data)
            return add(total, values(j, batch)), None

        shapes = jax.eval_shape(values, 0, tuple(a[:size] for a in data))
        total = {k: jnp.zeros((), jnp.float32) for k in shapes}
        total, _ = jax.lax.scan(body, total, jnp.arange(full))
        if part:
            total = add(total, values(full, tuple(a[full * size :] for a in data)))
        return {k: v / n for k, v in total.items()}

    return CellFns(init, epoch, evaluate, order, step)


def _padded_mean(evaluate: Callable, params, data: tuple, n: int, size: int) -> dict:
    """The mean over ``data`` of each value ``evaluate(params, *batch)`` gives, in batches of
    ``size``, the last padded (with the last example, weight 0)."""
    steps = -(-n // size)
    idx = jnp.minimum(jnp.arange(steps * size), n - 1).reshape(steps, size)
    w = (jnp.arange(steps * size) < n).astype(jnp.float32).reshape(steps, size)

    def add(total, xs):
        i, wi = xs
        values = evaluate(params, *(a[i] for a in data))
        add = lambda t, v: t + jnp.sum(wi * v.astype(jnp.float32))
        return jax.tree.map(add, total, values), None

    shapes = jax.eval_shape(evaluate, params, *(a[:size] for a in data))
    zeros = {k: jnp.zeros((), jnp.float32) for k in shapes}
    total, _ = jax.lax.scan(add, zeros, (idx, w))
    return {k: v / n for k, v in total.items()}
