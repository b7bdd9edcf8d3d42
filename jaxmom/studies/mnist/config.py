"""One training run of the MNIST study, :class:`Config`: its values, checked once when it is built.

:class:`Config` is the study's only validator: the command line builds Configs and reports their
``ValueError`` in one line; its rules for hyperparameter values (:func:`check_hparams`) also run
in the optimizer function the study gives :func:`jaxmom.sweep.fit`, so that ``fit``'s check of
every grid cell applies them. The optimizers and their defaults are
:mod:`~jaxmom.studies.mnist.registry`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping

import numpy as np

from jaxmom.studies.mnist import registry
from jaxmom.studies.mnist.registry import OptimizerSpec, hyperparameter_kind

INITS = ("torch", "flax")
DTYPES = ("float32", "bfloat16")  # of the parameters and of the optimizer state

INT32_MAX = 2**31 - 1  # epochs, batch size and integer hyperparameters reach XLA as int32
SEED_MAX = 2**31 - 1  # seeds reach jax.random.key as int32: larger ones would wrap or repeat


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run, checked when it is built (one-line ``ValueError``).

    ``hparams`` overrides the optimizer's numeric defaults (see :data:`OPTIMIZERS`); ``options``
    sets its boolean options (e.g. ``{"nesterov": True}``). ``param_dtype`` is the parameters'
    dtype (the model computes in it, the loss in float32); ``state_dtype`` every state dtype the
    optimizer takes (``accumulator_dtype``, ``mu_dtype``, ``nu_dtype``), None keeping the
    parameters'.
    """

    optimizer: str = "sgd"
    hparams: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    init: str = "torch"
    log_every: int = 30
    label: str = ""
    param_dtype: str = "float32"
    state_dtype: str | None = None  # None: the optimizer state follows the parameters

    def __post_init__(self):
        check_config(self)

    @property
    def spec(self) -> OptimizerSpec:
        return registry.OPTIMIZERS[self.optimizer]

    def full_hparams(self) -> dict:
        """All numeric hyperparameters: the optimizer's defaults overridden by ``hparams``."""
        return {**self.spec.defaults, **self.hparams}

    def optimizer_options(self) -> dict:
        """The factory's static keyword arguments: the boolean ``options`` and every state dtype
        it takes (``accumulator_dtype``, ``mu_dtype``, ``nu_dtype``) set to ``state_dtype``."""
        return {**self.options, **state_dtype_options(self.optimizer, self.state_dtype)}


def state_dtype_options(optimizer: str, state_dtype: str | None) -> dict:
    """``{name: state_dtype}`` for every ``*_dtype`` argument of ``optimizer``'s factory; none
    for None, which keeps the state in the parameters' dtype."""
    if state_dtype is None:
        return {}
    names = inspect.signature(registry.OPTIMIZERS[optimizer].factory).parameters
    return {name: state_dtype for name in names if name.endswith("_dtype")}


def check_config(config: Config) -> None:
    """Raises ValueError with a one-line message for any bad setting, before anything compiles.
    :class:`Config` calls it when it is built."""
    optimizers = registry.OPTIMIZERS
    if config.optimizer not in optimizers:
        raise ValueError(
            f"unknown optimizer {config.optimizer!r}; choose from {', '.join(optimizers)}"
        )
    spec = optimizers[config.optimizer]
    check_hparams(config.optimizer, config.hparams)
    unknown = sorted(set(config.options) - set(spec.options))
    if unknown:
        raise ValueError(f"{config.optimizer} has no option {', '.join(unknown)}")
    for name in ("epochs", "batch_size", "log_every"):
        value = getattr(config, name)
        if not 1 <= value <= INT32_MAX:
            raise ValueError(f"{name} must be an integer in [1, {INT32_MAX}], got {value}")
    if not 0 <= config.seed <= SEED_MAX:
        raise ValueError(
            f"seed must be an integer in [0, {SEED_MAX}] (it reaches jax.random.key as int32), "
            f"got {config.seed}"
        )
    if config.init not in INITS:
        raise ValueError(f"unknown init {config.init!r}; choose from {', '.join(INITS)}")
    for name, allowed in (("param_dtype", DTYPES), ("state_dtype", (None, *DTYPES))):
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"unknown {name} {getattr(config, name)!r}; choose from {', '.join(DTYPES)}"
            )
    spec.make(config.hparams, config.optimizer_options())  # jaxmom checks the values


def check_hparams(optimizer: str, hparams: Mapping) -> None:
    """The study's own rules for hyperparameter values, beyond the optimizer's checks: every name
    is one of ``optimizer``'s hyperparameters, and an integer hyperparameter is an integer within
    int32 (XLA receives it as int32: a larger one would wrap). One-line ``ValueError``.
    :class:`Config` applies them to its ``hparams``, and the optimizer function the study gives
    :func:`jaxmom.sweep.fit` (:func:`~jaxmom.studies.mnist.train.functions`) to every grid cell
    that ``fit`` checks before it compiles."""
    defaults = registry.OPTIMIZERS[optimizer].defaults
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ValueError(f"{optimizer} has no hyperparameter {', '.join(unknown)}")
    for name, value in hparams.items():
        if hyperparameter_kind(defaults[name]) is int and not (
            isinstance(value, int | np.integer) and -INT32_MAX - 1 <= value <= INT32_MAX
        ):
            raise ValueError(
                f"{name} is fed to the optimizer as int32: it must be an integer in "
                f"[{-INT32_MAX - 1}, {INT32_MAX}], got {value!r}"
            )
