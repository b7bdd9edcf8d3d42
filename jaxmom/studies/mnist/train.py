"""Training the study's model: every run, a single one or a grid's, through :func:`jaxmom.sweep.fit`.

A single run is a grid of one cell (every numeric hyperparameter on a one-cell axis, so one
compiled program serves every value, as before); a sweep is a grid of many, its fixed
hyperparameters given to ``fit`` as ``fixed=`` (where ``fit`` makes scalar zeros Python constants,
so a zero weight decay costs no read of the parameters at every step). Both give the same
:class:`~jaxmom.sweep.SweepResult` (:func:`fit_config`) and the same records (:func:`records`),
one schema for results.json.

``fit``'s contract is the study's rule: for seed ``s``, ``init_key, data_key =
split(key(s))``; epoch ``e`` (0-based) visits ``permutation(fold_in(data_key, e), n)`` in slices of
``batch_size``, the last partial batch averaged over its real examples as PyTorch's
``DataLoader`` (no ``drop_last``) does. A resumed run therefore sees exactly the batches it would
have seen. Epochs are numbered from 1 wherever they are shown or recorded.

The model is a plain ``nn.Dense`` MLP (:mod:`~jaxmom.studies.mnist.model`); ``fit`` lays out its
products for a sweep itself. ``init``, ``loss``, ``optimizer``, ``evaluate`` and
``eval_params`` are the same function objects for the same optimizer, options and init scheme
(:func:`functions`), so ``fit`` reuses its compiled programs from run to run.
"""

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.core import Tracer

from jaxmom import sweep
from jaxmom.studies.mnist import registry
from jaxmom.studies.mnist.config import Config, check_hparams
from jaxmom.studies.mnist.model import MLP, preprocess
from jaxmom.studies.mnist.registry import hyperparameter_kind

EVAL_BATCH = 1000  # test images per matmul: a chunk's activations stay in cache
_MODEL = MLP()  # applying the model does not depend on how it was initialised


def inputs(params, images):
    """The scaled images in the parameters' dtype: bfloat16 parameters compute in bfloat16."""
    return preprocess(images).astype(jax.tree.leaves(params)[0].dtype)


def loss(params, images, labels):
    """Per-example softmax cross-entropy, shape (batch,). The model computes in the parameters'
    dtype (:func:`inputs`), the loss in float32."""
    logits = jnp.asarray(_MODEL.apply({"params": params}, inputs(params, images)))
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def evaluate(params, images, labels):
    """``{"test_accuracy": 1.0 where the predicted class is the label, else 0.0}`` per example;
    ``fit`` averages it over the whole test set after every epoch."""
    logits = jnp.asarray(_MODEL.apply({"params": params}, inputs(params, images)))
    return {"test_accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}


def accuracy(params, images, labels):
    """``{"accuracy": ...}`` per example, as :func:`evaluate`: ``fit``'s evaluation with named
    sets (``"val"``, ``"test"``), whose metrics are then ``val/accuracy`` and ``test/accuracy``."""
    return {"accuracy": evaluate(params, images, labels)["test_accuracy"]}


def has_validation(data) -> bool:
    """Whether ``data`` holds a validation split (:func:`~jaxmom.studies.mnist.split.hold_out`)."""
    return getattr(data, "val_images", None) is not None


def selection_metric(data) -> str:
    """``fit``'s metric that a search selects on: ``val/accuracy`` with a validation split, else
    ``test_accuracy`` (``--validation 0``)."""
    return "val/accuracy" if has_validation(data) else "test_accuracy"


def selected_on_data(data) -> str:
    """The study's column that picks the best run on ``data``: ``val_accuracy`` with a validation
    split, else ``test_accuracy``."""
    return "val_accuracy" if has_validation(data) else "test_accuracy"


class Functions(NamedTuple):
    """``fit``'s ``init``, ``optimizer`` and ``eval_params`` for one optimizer, options and init."""

    init: Callable
    optimizer: Callable
    eval_params: Callable | None


@functools.cache
def functions(optimizer: str, options: tuple, init: str, param_dtype: str = "float32") -> Functions:
    """The same function objects for the same ``(optimizer, sorted options, init scheme,
    parameter dtype)``, so that ``fit``'s compile cache (keyed on them) serves every run of that
    kind. ``options`` are the factory's static keyword arguments, the state dtypes included
    (:meth:`Config.optimizer_options`); the parameters are drawn in float32 and cast to
    ``param_dtype``, so every dtype starts from the same weights, rounded. The optimizer function,
    given concrete values (``fit`` builds it once per grid cell before it compiles:
    :func:`jaxmom.sweep.check_cells`), applies the study's rules
    (:func:`~jaxmom.studies.mnist.config.check_hparams`) before the optimizer's own checks."""
    model, spec = MLP(init_scheme=init), registry.OPTIMIZERS[optimizer]

    def init_params(key):
        params = model.init(key, jnp.zeros((1, 784), jnp.float32))["params"]
        return jax.tree.map(lambda p: p.astype(param_dtype), params)

    ints = {k for k, v in spec.defaults.items() if hyperparameter_kind(v) is int}

    def make(hparams):
        if not any(isinstance(v, Tracer) for v in jax.tree.leaves(hparams)):
            # concrete values: fit checks a cell before it compiles; the study's rules too, an
            # integer hyperparameter's whole float (a grid of 10.0, 20.0) taken as that integer
            whole = {k: int(v) for k, v in hparams.items() if k in ints and _whole(v)}
            check_hparams(optimizer, {**hparams, **whole})
        return spec.make(hparams, dict(options))

    tested = spec.eval_params  # fit calls eval_params(params, opt_state), the registry the reverse
    eval_params = None if tested is None else functools.partial(_swapped, tested)
    return Functions(init_params, make, eval_params)


def _whole(value) -> bool:
    return isinstance(value, float) and value.is_integer()


def _swapped(fn, params, opt_state):
    return fn(opt_state, params)


def typed(config: Config, name: str, value) -> Any:
    """A hyperparameter value as its registry kind: float, int, or a float32 array (a tuple)."""
    kind = hyperparameter_kind(config.spec.defaults[name])
    if kind is tuple:
        return np.asarray(value, np.float32)
    return int(value) if kind is int else float(value)


def single_grid(config: Config) -> sweep.Grid:
    """The single run ``config`` as a grid of one cell: every scalar hyperparameter on one axis,
    ``"run"`` (an array hyperparameter, e.g. AggMo's betas, goes to ``fixed=``)."""
    scalars = {
        k: [typed(config, k, v)]
        for k, v in config.full_hparams().items()
        if hyperparameter_kind(config.spec.defaults[k]) is not tuple
    }
    return sweep.zipped(axis="run", **scalars)


def config_functions(config: Config) -> Functions:
    """:func:`functions` for ``config``'s optimizer, options, init scheme and parameter dtype."""
    options = tuple(sorted(config.optimizer_options().items()))
    return functions(config.optimizer, options, config.init, config.param_dtype)


def optimizer_arguments(config: Config, swept=()) -> dict:
    """``fit``'s ``optimizer`` for ``config`` and its ``fixed`` hyperparameters (every one not in
    ``swept``), the two that :func:`jaxmom.sweep.check_cells` takes beside the grid."""
    hparams = {k: typed(config, k, v) for k, v in config.full_hparams().items()}
    return dict(
        optimizer=config_functions(config).optimizer,
        fixed={k: v for k, v in hparams.items() if k not in swept},
    )


def fit_arguments(config: Config, data, swept=()) -> dict:
    """:func:`jaxmom.sweep.fit`'s keyword arguments for ``config`` on ``data``, but the grid and
    how to run it: the study's functions, the data, batch size, epochs, seed, and every
    hyperparameter not in ``swept`` as ``fixed``."""
    fns = config_functions(config)
    test = (np.asarray(data[2]), np.asarray(data[3]))
    if has_validation(data):
        test = {"val": (np.asarray(data.val_images), np.asarray(data.val_labels)), "test": test}
    return dict(
        init=fns.init,
        loss=loss,
        **optimizer_arguments(config, swept),
        train=(np.asarray(data[0]), np.asarray(data[1])),
        eval=test,
        evaluate=accuracy if has_validation(data) else evaluate,
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
        eval_params=fns.eval_params,
        eval_batch_size=EVAL_BATCH,
    )


def fit_config(
    config: Config,
    data,
    grid: sweep.Grid | None = None,
    *,
    checkpoint_dir=None,
    progress: bool = False,
    return_params: bool = False,
    chunk_size: int | str | None = "auto",
    memory_budget: int | None = None,
    divergence_factor: float | None = 10.0,
    halving: sweep.Halving | None = None,
    search: sweep.PBT | None = None,
    info: dict | None = None,
) -> sweep.SweepResult:
    """``config`` trained on ``data`` by :func:`jaxmom.sweep.fit`: one run per cell of ``grid``
    (whose names are hyperparameters of ``config``'s optimizer; the others stay fixed), or, without
    a grid, the single run ``config`` as a one-cell grid.

    ``checkpoint_dir`` keeps one folder per run or grid (:func:`run_folder`), holding ``fit``'s
    checkpoint: a run killed and started again resumes bit-identically. ``halving`` runs
    successive halving over the grid's trials instead (no checkpoint), ``search`` (a
    :class:`jaxmom.sweep.PBT`) population-based training.

    Metrics: see :func:`study_result`; ``params`` with ``return_params``; ``info`` is added to
    the result's ``info`` (e.g. a search's plan, ``{"search": ...}``).
    """
    grid = single_grid(config) if grid is None else grid
    folder = None if checkpoint_dir is None else run_folder(checkpoint_dir, config, data, grid)
    res = sweep.fit(
        grid,
        **fit_arguments(config, data, grid.params),
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        progress=progress,
        checkpoint_dir=folder,
        return_params=return_params,
        divergence_factor=divergence_factor,
        halving=halving,
        search=search,
    )
    resumed = np.asarray(res.info.get("resumed_epochs", 0), np.int32)  # halving: no checkpoint
    out = study_result(config, res, np.broadcast_to(resumed, grid.shape).reshape(-1))
    out.info.update(info or {})
    return out


def study_result(config: Config, res: sweep.SweepResult, resumed=None) -> sweep.SweepResult:
    """``fit``'s result ``res`` in the study's names, each with ``grid.shape`` in front:
    ``loss`` (every step's batch loss), ``epoch_train_loss`` and ``epoch_test_accuracy`` (per
    epoch), ``final_train_loss`` and ``test_accuracy`` (after the last epoch: NaN for a trial that
    successive halving stopped earlier), with a validation split ``epoch_val_accuracy`` and
    ``val_accuracy`` too, ``epochs_trained`` and ``resumed_from_epoch``
    (``resumed``: epochs per cell loaded from a checkpoint). ``res``'s divergence marks, params
    and ``info`` are kept, and so are population-based training's ``member``, ``parent`` and
    ``hp/<name>``."""
    grid, m = res.grid, res.metrics
    trained = m.get("epochs_trained", np.full(grid.shape, config.epochs))
    resumed = np.zeros(grid.size, np.int32) if resumed is None else resumed
    test = m.get("test/accuracy", m.get("test_accuracy"))
    val = {"val_accuracy": m["val/accuracy"]} if "val/accuracy" in m else {}
    metrics = {
        "loss": m["loss"],
        "epoch_train_loss": m["epoch_loss"],
        "final_train_loss": m["epoch_loss"][..., -1],
        **{"epoch_" + k: v for k, v in val.items()},
        **{k: v[..., -1] for k, v in val.items()},
        "epoch_test_accuracy": test,
        "test_accuracy": test[..., -1],
        "epochs_trained": np.asarray(trained, np.int32).reshape(grid.shape),
        "resumed_from_epoch": np.asarray(resumed).reshape(grid.shape),
        **{k: v for k, v in m.items() if k in ("member", "parent") or k.startswith("hp/")},
    }
    return sweep.SweepResult(
        grid=grid,
        metrics=metrics,
        compile_seconds=res.compile_seconds,
        train_seconds=res.train_seconds,
        eval_seconds=res.eval_seconds,
        history="loss",
        devices=res.devices,
        divergence_factor=res.divergence_factor,
        divergence=(res.diverged, res.diverged_step),
        info=res.info,
        params=res.params,
    )


def run_folder(checkpoint_dir, config: Config, data, grid: sweep.Grid) -> Path:
    """One checkpoint folder per distinct run or grid: a readable name plus a hash of everything
    that shapes it (the optimizer, its options and init scheme included, which ``fit``'s own
    fingerprint does not see), so that two runs never share a checkpoint."""
    values = {k: np.asarray(v).tolist() for k, v in grid.coords().items()}
    fingerprint = json.dumps(
        [dataclasses.asdict(config), config.full_hparams(), data.source, grid.names, values],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    name = re.sub(r"[^\w.-]", "_", config.label or config.optimizer)
    return Path(checkpoint_dir) / f"{name}-{digest}"


def records(config: Config, data, res: sweep.SweepResult, *, single: bool = False) -> list[dict]:
    """One results.json record per cell of ``res`` (see docs/mnist.md's table): the same keys for
    a single run (``single``: ``res`` is :func:`single_grid`'s) and a sweep's cell, whose label
    adds its values. A sweep's cells share the seconds of their one ``fit`` call."""
    grid, m = res.grid, res.metrics
    n_train, n_test = len(data[0]), len(data[2])
    steps_per_epoch = -(-n_train // config.batch_size)
    coords = {k: v.reshape(-1) for k, v in grid.coords().items()}
    flat = {k: np.asarray(v).reshape(grid.size, -1) for k, v in m.items()}
    diverged, diverged_step = res.diverged.reshape(-1), res.diverged_step.reshape(-1)
    swept = () if single else grid.params
    val = "val_accuracy" in flat
    out = []
    for i in range(grid.size):
        cell = {k: coords[k][i].item() for k in swept}
        label = config.label or config.optimizer
        if cell:
            label += " " + ", ".join(f"{k}={v:g}" for k, v in cell.items())
        if sweep.SEED in coords:
            label += f", seed={coords[sweep.SEED][i]}"
        logged = np.arange(0, flat["loss"].shape[1], config.log_every)
        out.append(
            {
                "label": label,
                "optimizer": config.optimizer,
                "hyperparameters": {**config.full_hparams(), **cell, **config.options},
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "seed": int(coords[sweep.SEED][i]) if sweep.SEED in coords else config.seed,
                "init": config.init,
                "param_dtype": config.param_dtype,
                "state_dtype": config.state_dtype or config.param_dtype,
                "data_source": data.source,
                "train_examples": n_train,
                "test_examples": n_test,
                "validation_examples": len(data.val_labels) if has_validation(data) else 0,
                "steps_per_epoch": steps_per_epoch,
                "final_train_loss": float(flat["final_train_loss"][i, 0]),
                "val_accuracy": float(flat["val_accuracy"][i, 0]) if val else None,
                "test_accuracy": float(flat["test_accuracy"][i, 0]),
                "epoch_train_loss": flat["epoch_train_loss"][i].tolist(),
                "epoch_val_accuracy": flat["epoch_val_accuracy"][i].tolist() if val else None,
                "epoch_test_accuracy": flat["epoch_test_accuracy"][i].tolist(),
                "diverged": bool(diverged[i]),
                "diverged_step": int(diverged_step[i]),
                "log_every": config.log_every,
                "logged_steps": logged.tolist(),
                "logged_loss": flat["loss"][i, logged].tolist(),
                "train_seconds": res.train_seconds,
                "eval_seconds": res.eval_seconds,
                "compile_seconds": res.compile_seconds,
                "compiled_program_reused": res.compile_seconds == 0,
                "epochs_trained": int(flat["epochs_trained"][i, 0]),
                # the accuracies of the last epoch trained (successive halving stops trials early)
                **{  # one schema: null without a validation split, as val_accuracy
                    f"{k}_at_stop": (
                        float(flat[f"epoch_{k}"][i, flat["epochs_trained"][i, 0] - 1])
                        if f"epoch_{k}" in flat
                        else None
                    )
                    for k in ("test_accuracy", "val_accuracy")
                },
                "resumed_from_epoch": int(flat["resumed_from_epoch"][i, 0]),
            }
        )
    return out


class Run(NamedTuple):
    params: Any  # the final parameters
    record: dict  # the results.json record


def train_and_evaluate(config: Config, data, checkpoint_dir=None, *, progress: bool = False) -> Run:
    """Trains ``config`` on ``data`` (a :class:`~jaxmom.studies.mnist.data.Dataset`), a one-cell
    :func:`fit_config`, as Flax's MNIST example names it; returns the final parameters and the
    results.json record.

    With ``checkpoint_dir`` the state is saved after every epoch, and an existing checkpoint for
    the same run is resumed: the result is bit-identical to an uninterrupted run;
    ``record["resumed_from_epoch"]`` counts the epochs the checkpoint held."""
    res = fit_config(
        config, data, checkpoint_dir=checkpoint_dir, progress=progress, return_params=True
    )
    (record,) = records(config, data, res, single=True)
    return Run(jax.tree.map(lambda x: x[0], res.params), record)
