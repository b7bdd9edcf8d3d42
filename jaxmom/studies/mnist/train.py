"""Training the study's model: pure functions, compiled ahead of time, resumable.

The loss of a batch is its mean softmax cross-entropy; the last, partial batch of an epoch averages
over its real examples only, as PyTorch's ``DataLoader`` (no ``drop_last``) does.

Everything is made of small pure functions: :func:`init_params`, :func:`init_opt_state`,
:func:`train_epoch` (one ``lax.scan`` over the epoch's batches, data on device) and
:func:`evaluate`. Numeric hyperparameters
are function ARGUMENTS (a dict of scalars), never closure constants, so one compiled program serves
every value, and :func:`make_train_fn` (the whole run as one pure function) can be vmapped over them
for a sweep. :func:`train_and_evaluate` is the entry point, as in Flax's MNIST example: it compiles
ahead of time (timing compilation separately), trains epoch by epoch, checkpoints after every epoch
and resumes bit-identically.

Randomness, for a given ``seed``: ``init_key, shuffle_key = split(key(seed))``; epoch ``e`` (0-based
inside the program) shuffles with ``fold_in(shuffle_key, e)``. A resumed run therefore sees exactly
the batches it would have seen. Epochs are numbered from 1 wherever they are shown or recorded.
"""

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmom.studies.mnist.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from jaxmom.studies.mnist.config import Config, dtype_of, eval_params, make_optimizer
from jaxmom.studies.mnist.model import MLP, preprocess


def keys(seed_key):
    """(init_key, shuffle_key) from the run's root key, e.g. ``jax.random.key(seed)``."""
    return jax.random.split(seed_key)


def init_params(init_key, *, model: MLP):
    """The model's parameters; the same for every optimizer, so runs differ only in the optimizer."""
    return model.init(init_key, jnp.zeros((1, 784), jnp.float32))["params"]


def init_opt_state(params, hparams, *, optimizer: str, options=()):
    """The optimizer state. Jit it with ``hparams`` as an argument, as training does, so that one
    compiled program serves every hyperparameter value."""
    return make_optimizer(optimizer, hparams, **dict(options)).init(params)


def batch_loss(params, model, images, labels, weights):
    """Mean cross-entropy over the examples with weight 1 (padding has weight 0).

    The model computes its logits feature-major, (10, batch), and returns their transpose; the
    loss transposes back and takes the softmax over axis 0, so XLA cancels the two transposes and
    lays the logits' gradient out (10, batch) too. Under a sweep's ``vmap`` the last layer's
    weight gradient is then one plain batched matmul, with no transposed copy of the gradient
    (measured: 2-4% of a 4x4 sweep's step on a 2-core Xeon)."""
    logits = model.apply({"params": params}, preprocess(images)).T
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels, axis=0)
    return jnp.sum(weights * losses) / jnp.sum(weights)


def epoch_batches(key, n: int, batch_size: int):
    """A shuffled epoch: (indices, weights), both (ceil(n/B), B); the last batch is padded with
    index 0 and weight 0, so it averages over its n mod B real examples like PyTorch's DataLoader."""
    steps = -(-n // batch_size)
    pad = steps * batch_size - n
    order = jnp.concatenate([jax.random.permutation(key, n), jnp.zeros(pad, jnp.int32)])
    weights = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return order.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def train_epoch(
    params,
    opt_state,
    hparams,
    epoch_key,
    images,
    labels,
    *,
    model: MLP,
    optimizer: str,
    batch_size: int,
    options=(),
):
    """One epoch as one ``lax.scan`` over its batches. Returns (params, opt_state, batch losses)."""
    tx = make_optimizer(optimizer, hparams, **dict(options))
    order, weights = epoch_batches(epoch_key, images.shape[0], batch_size)

    def step(carry, batch):
        params, opt_state = carry
        idx, w = batch
        loss, grads = jax.value_and_grad(batch_loss)(params, model, images[idx], labels[idx], w)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (order, weights))
    return params, opt_state, losses


EVAL_BATCH = 1000  # test images per matmul: 16 configurations' activations stay in cache


def evaluate(params, images, labels, *, model: MLP, batch_size: int = EVAL_BATCH):
    """Classification accuracy, over the test set in batches of ``batch_size`` (a ``lax.scan``).

    Under ``vmap`` over K configurations the images are shared, so each batch is one wide
    ``(K*200, 784) @ (784, batch_size)`` matmul whose activations fit in cache, instead of one
    (K, 200, n) activation array for the whole test set. The last batch is padded with label -1,
    which no prediction equals."""
    n = images.shape[0]
    size = min(batch_size, n)
    steps = -(-n // size)
    pad = steps * size - n
    if pad:
        images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = jnp.concatenate([labels, jnp.full(pad, -1, labels.dtype)])

    def count(correct, batch):
        x, y = batch
        logits = jnp.asarray(model.apply({"params": params}, preprocess(x)))
        return correct + jnp.sum(jnp.argmax(logits, -1) == y), None

    batches = (images.reshape(steps, size, *images.shape[1:]), labels.reshape(steps, size))
    correct, _ = jax.lax.scan(count, jnp.int32(0), batches)
    return correct / n


def as_hparams(hparams: dict) -> dict:
    """Numeric hyperparameters as float32 arrays (int32 for integer ones), so every value shares
    one compiled program."""
    return {k: jnp.asarray(v, dtype_of(k)) for k, v in hparams.items()}


def _static_args(config: Config) -> dict:
    """The keyword arguments that shape a run's programs: the model, optimizer name and options."""
    options = tuple(sorted(config.options.items()))
    return {
        "model": MLP(init_scheme=config.init),
        "optimizer": config.optimizer,
        "options": options,
    }


def make_train_fn(config: Config, *, test: bool = True):
    """The whole run as one pure function ``train_fn(hparams, key, data) -> metrics``, for sweeps.

    ``hparams`` maps some of the optimizer's hyperparameter names (e.g. ``learning_rate``,
    ``momentum``) to scalars, traced or not; the rest come from ``config``. ``key`` is the root key:
    ``jax.random.key(seed)`` reproduces :func:`train_and_evaluate`'s run up to float rounding.
    ``data`` is the tuple (train_images, train_labels, test_images, test_labels) of arrays, passed
    as an argument so that it is not baked into the program as a constant. Epochs are a
    ``lax.scan``, so ``jax.vmap(train_fn, in_axes=(0, None, None))`` trains one model per row of
    stacked hyperparameters in one program (this is the signature ``jaxmom.sweep.sweep`` expects,
    with ``args=(data,)``). Metrics: ``loss`` (every step's batch loss, ``(epochs * steps,)``),
    ``epoch_train_loss`` ``(epochs,)``, ``final_train_loss`` (the last epoch's mean) and ``test_accuracy``
    (at the optimizer's evaluation parameters: schedule-free SGD's :math:`x`). With ``test=False``
    the metrics hold those evaluation ``params`` instead of ``test_accuracy``, for a caller that
    evaluates in a program of its own (as the study's sweep does, to time it apart).
    """
    common = _static_args(config)
    model, options = common["model"], common["options"]

    def train_fn(hparams, key, data):
        hparams = {**config.full_hparams(), **hparams}
        train_images, train_labels, test_images, test_labels = data
        init_key, shuffle_key = keys(key)
        params = init_params(init_key, model=model)
        opt_state = init_opt_state(params, hparams, optimizer=config.optimizer, options=options)

        def one_epoch(carry, epoch):
            params, opt_state, losses = train_epoch(
                carry[0],
                carry[1],
                hparams,
                jax.random.fold_in(shuffle_key, epoch),
                train_images,
                train_labels,
                batch_size=config.batch_size,
                **common,
            )
            return (params, opt_state), losses

        (params, opt_state), losses = jax.lax.scan(
            one_epoch, (params, opt_state), jnp.arange(config.epochs)
        )
        tested = eval_params(config.optimizer, opt_state, params)
        metrics = {
            "loss": losses.reshape(-1),
            "epoch_train_loss": losses.mean(axis=1),
            "final_train_loss": losses[-1].mean(),
        }
        if not test:
            return {**metrics, "params": tested}
        return {**metrics, "test_accuracy": evaluate(tested, test_images, test_labels, model=model)}

    return train_fn


class Programs(NamedTuple):
    """A run's compiled programs, and how long compiling them took."""

    init_params: Any
    init_opt_state: Any
    epoch: Any
    evaluate: Any
    compile_seconds: float


def _quick_compile_options() -> dict[str, Any]:
    """For the programs that run once per run or epoch: less LLVM optimisation, which on CPU cuts
    the random init's compile time about threefold. Training keeps XLA's default."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}


def compiled_init(init: str, cache: dict):
    """The compiled ``init_params`` for init scheme ``init``, shared through ``cache``."""
    key = ("init_params", init)
    if key not in cache:
        fn = functools.partial(init_params, model=MLP(init_scheme=init))
        cache[key] = jax.jit(fn).lower(jax.random.key(0)).compile(_quick_compile_options())
    return cache[key]


def compile_programs(config: Config, data, cache: dict) -> tuple[Programs, bool]:
    """Compiles ahead of time (``jit(...).lower(...).compile()``), timing compilation apart from
    training, and returns (programs, whether all were already in ``cache``). Programs depend only on
    the optimizer name, its boolean options, the init scheme, the batch size and the data shapes:
    never on hyperparameter values or the seed, so e.g. sgd with and without momentum share one."""
    common = _static_args(config)
    model, options = common["model"], common["options"]
    hparams = as_hparams(config.full_hparams())
    shapes = tuple((x.shape, str(x.dtype)) for x in data)
    key = (config.optimizer, options, config.init, config.batch_size, shapes)
    if key in cache:
        return cache[key], True
    start = time.perf_counter()
    init = compiled_init(config.init, cache)
    quick = _quick_compile_options()
    params = jax.eval_shape(functools.partial(init_params, model=model), jax.random.key(0))
    opt_init = functools.partial(init_opt_state, optimizer=config.optimizer, options=options)
    opt_state = jax.eval_shape(opt_init, params, hparams)
    cache[key] = Programs(
        init,
        jax.jit(opt_init).lower(params, hparams).compile(quick),
        jax.jit(functools.partial(train_epoch, batch_size=config.batch_size, **common))
        .lower(params, opt_state, hparams, jax.random.key(0), data[0], data[1])
        .compile(),
        jax.jit(functools.partial(evaluate, model=model))
        .lower(params, data[2], data[3])
        .compile(quick),
        time.perf_counter() - start,
    )
    return cache[key], False


class Run(NamedTuple):
    params: Any
    opt_state: Any
    record: dict  # the results.json record


def train_and_evaluate(
    config: Config,
    data,
    checkpoint_dir=None,
    *,
    programs: dict | None = None,
    on_epoch: Callable | None = None,
) -> Run:
    """Trains ``config`` on ``data`` (a :class:`~jaxmom.studies.mnist.data.Dataset`); returns the
    final state.

    ``programs`` is a cache of compiled programs shared between runs (a dict; pass the same one to
    every call). With ``checkpoint_dir`` the state is saved after every epoch, and an existing
    checkpoint for the same run is resumed: the result is bit-identical to an uninterrupted run.
    ``on_epoch(epoch, record)`` is called after every epoch, numbered from 1 (e.g. to print or
    update a progress bar); ``record["resumed_from_epoch"]`` counts the epochs a checkpoint held.
    """
    arrays = tuple(jax.device_put(np.asarray(x)) for x in data[:4])
    prog, reused = compile_programs(config, arrays, {} if programs is None else programs)
    hparams = as_hparams(config.full_hparams())
    init_key, shuffle_key = keys(jax.random.key(config.seed))
    params = prog.init_params(init_key)
    opt_state = prog.init_opt_state(params, hparams)
    record = {
        "label": config.label or config.optimizer,
        "optimizer": config.optimizer,
        "hyperparameters": {**config.full_hparams(), **config.options},
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "init": config.init,
        "data_source": data.source,
        "train_examples": int(arrays[0].shape[0]),
        "test_examples": int(arrays[2].shape[0]),
        "steps_per_epoch": -(-int(arrays[0].shape[0]) // config.batch_size),
        "epoch_train_loss": [],
        "epoch_test_accuracy": [],
        "log_every": config.log_every,
        "logged_steps": [],
        "logged_loss": [],
        "train_seconds": 0.0,
        "compile_seconds": prog.compile_seconds,
        "compiled_program_reused": reused,
        "resumed_from_epoch": 0,
    }
    path = checkpoint_path(checkpoint_dir, config, data.source) if checkpoint_dir else None
    saved = load_checkpoint(path, params, opt_state) if path else None
    if saved is not None:
        params, opt_state = saved["params"], saved["opt_state"]
        for name in ("epoch_train_loss", "epoch_test_accuracy", "logged_steps", "logged_loss"):
            record[name] = np.asarray(saved[name]).tolist()
        record["train_seconds"] = float(saved["train_seconds"])
        record["resumed_from_epoch"] = int(saved["epoch"])

    for epoch in range(record["resumed_from_epoch"], config.epochs):
        start = time.perf_counter()
        params, opt_state, losses = prog.epoch(
            params, opt_state, hparams, jax.random.fold_in(shuffle_key, epoch), *arrays[:2]
        )
        accuracy = prog.evaluate(eval_params(config.optimizer, opt_state, params), *arrays[2:])
        losses, accuracy = np.asarray(losses), float(accuracy)  # waits for the device
        record["train_seconds"] += time.perf_counter() - start
        steps = epoch * len(losses) + np.arange(len(losses))
        logged = steps % config.log_every == 0
        record["logged_steps"] += steps[logged].tolist()
        record["logged_loss"] += losses[logged].tolist()
        record["epoch_train_loss"].append(float(losses.mean()))
        record["epoch_test_accuracy"].append(accuracy)
        if path:
            save_checkpoint(
                path,
                {
                    "epoch": epoch + 1,
                    "params": params,
                    "opt_state": opt_state,
                    **{
                        k: np.asarray(record[k])
                        for k in (
                            "epoch_train_loss",
                            "epoch_test_accuracy",
                            "logged_steps",
                            "logged_loss",
                        )
                    },
                    "train_seconds": record["train_seconds"],
                },
            )
        if on_epoch:
            on_epoch(epoch + 1, record)

    record["test_accuracy"] = record["epoch_test_accuracy"][-1]
    record["final_train_loss"] = record["epoch_train_loss"][-1]
    return Run(params, opt_state, record)
