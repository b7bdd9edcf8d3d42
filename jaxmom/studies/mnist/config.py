"""What the MNIST study can train: the optimizer registry, one run's :class:`Config`, the default study.

The registry is the one place that knows the study's optimizers. Each :class:`OptimizerSpec` names
the jaxmom factory, the study's default for every numeric hyperparameter and the boolean options;
the command line's ``--optimizer`` choices, its hyperparameter flags and their help are generated
from it. Adding an optimizer to the study is one :class:`OptimizerSpec` in :data:`OPTIMIZERS`::

    OptimizerSpec(
        "aggmo",
        jaxmom.aggmo,
        defaults={"learning_rate": 0.1, "betas": (0.0, 0.9, 0.99), "weight_decay": 0.0},
        help={"betas": "damping of each of the K velocities"},  # names no other spec documents
    )

A default's type sets the hyperparameter's kind: a float (``--lr 0.1``, sweepable), an int
(``--warmup-steps 100``, sweepable, fed to the factory as int32) or a tuple of floats, an array
hyperparameter (``--betas 0,0.9,0.99``: the whole comma list is ONE value, not a grid axis).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import jaxmom

Default = float | int | tuple[float, ...]

# Flag names that differ from the hyperparameter's name (which gives --weight-decay etc.).
FLAG_NAMES = {"learning_rate": "lr"}

# Help for the hyperparameters that several optimizers share; a spec documents its own new ones.
COMMON_HELP = {
    "learning_rate": "learning rate",
    "momentum": "momentum mu",
    "weight_decay": "weight decay wd: L2 term wd*p added to the gradient (decoupled for adamw, lion)",
    "eps": "denominator epsilon",
}


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the study.

    Attributes:
      name: the ``--optimizer`` name.
      factory: the jaxmom function, called as ``factory(**numeric, **options)``.
      defaults: every numeric hyperparameter the study passes, with the study's default. The type
        of the default gives the kind: float, int, or tuple of floats (an array hyperparameter).
      options: boolean options (keyword arguments of ``factory``) -> help text.
      help: help text of hyperparameters that are not in :data:`COMMON_HELP` and no other
        spec documents.
      flags: hyperparameter -> flag name (without ``--``), where the default, the name with
        ``-`` for ``_`` (or :data:`FLAG_NAMES`), does not suit.
      note: a line for ``--help``'s list of defaults.
      eval_params: ``eval_params(opt_state, params)``, the parameters to test where they are not
        the trained ones (schedule-free SGD's :math:`x`); None tests ``params``.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, Default]
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    note: str = ""
    eval_params: Callable[[Any, Any], Any] | None = None

    def __post_init__(self):
        for field in ("defaults", "options", "help", "flags"):
            object.__setattr__(self, field, _frozen(getattr(self, field)))
        for name, value in self.defaults.items():
            kind = hyperparameter_kind(value)
            if kind is None:
                raise TypeError(
                    f"{self.name}: default of {name} must be a float, an int or a tuple of "
                    f"floats, got {value!r}"
                )
        unknown = sorted((set(self.help) | set(self.flags)) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.name}: help or flag for unknown hyperparameter(s) {unknown}")

    def make(self, hparams: Mapping[str, Any], options: Mapping[str, bool]):
        """The optimizer with ``hparams`` over the defaults (floats, arrays or traced values)."""
        return self.factory(**{**self.defaults, **hparams}, **options)


def hyperparameter_kind(value) -> type | None:
    """``float``, ``int`` or ``tuple`` (array hyperparameter) for a default value; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, tuple) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple
    return None


def registry(*specs: OptimizerSpec) -> Mapping[str, OptimizerSpec]:
    """The specs by name, after checking that they agree with each other: one name, one kind and
    one flag per hyperparameter across all specs, and help for every hyperparameter."""
    out: dict[str, OptimizerSpec] = {}
    kinds: dict[str, type | None] = {}
    flags: dict[str, str] = {}
    helps = dict(COMMON_HELP)
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"optimizer {spec.name!r} is registered twice")
        out[spec.name] = spec
        for name, value in spec.defaults.items():
            kind = hyperparameter_kind(value)
            if kinds.setdefault(name, kind) is not kind:
                here, there = (getattr(k, "__name__", k) for k in (kind, kinds[name]))
                raise ValueError(f"{spec.name}: {name} is {here} here but {there} elsewhere")
            flag = spec.flags.get(name, FLAG_NAMES.get(name, name))
            if flags.setdefault(name, flag) != flag:
                raise ValueError(
                    f"{spec.name}: {name} has flag {flag!r} here, {flags[name]!r} elsewhere"
                )
            if name in spec.help:
                helps.setdefault(name, spec.help[name])
    missing = sorted(n for n in kinds if n not in helps)
    if missing:
        raise ValueError(f"no help text for hyperparameter(s) {missing}: add it to a spec's help")
    return MappingProxyType(out)


# The study's optimizers. Defaults are the seed tutorials' settings where they use the optimizer
# (rmsprop: lr 1e-3, alpha 0.9), else jaxmom's.
OPTIMIZERS: Mapping[str, OptimizerSpec] = registry(
    OptimizerSpec(
        "sgd",
        jaxmom.sgd,
        defaults={"learning_rate": 1e-2, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
        options={"nesterov": "Nesterov momentum"},
        help={"dampening": "momentum dampening"},
    ),
    OptimizerSpec(
        "sutskever_sgd",
        jaxmom.sutskever_sgd,
        defaults={"learning_rate": 1e-2, "momentum": 0.9},
        options={"nesterov": "Nesterov momentum"},
    ),
    OptimizerSpec(
        "ema_sgd",
        jaxmom.ema_sgd,
        defaults={"learning_rate": 1e-1, "beta": 0.9},
        options={"debias": "bias-corrected average"},
        help={"beta": "EMA decay of the gradient average"},
        note="ema_sgd at lr 0.1, beta 0.9 takes the same steps as sgd at lr 0.01, momentum 0.9.",
    ),
    OptimizerSpec(
        "adagrad",
        jaxmom.adagrad,
        defaults={
            "learning_rate": 1e-2,
            "lr_decay": 0.0,
            "initial_accumulator_value": 0.0,
            "eps": 1e-10,
            "weight_decay": 0.0,
        },
        help={
            "lr_decay": "lr / (1 + (t-1) lr_decay)",
            "initial_accumulator_value": "starting value of the sum of squared gradients",
        },
    ),
    OptimizerSpec(
        "adadelta",
        jaxmom.adadelta,
        defaults={"learning_rate": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
        help={"rho": "decay of both averages"},
    ),
    OptimizerSpec(
        "rmsprop",
        jaxmom.rmsprop,
        defaults={
            "learning_rate": 1e-3,
            "alpha": 0.9,
            "eps": 1e-8,
            "momentum": 0.0,
            "weight_decay": 0.0,
        },
        options={"centered": "centered RMSprop"},
        help={"alpha": "decay of the squared-gradient average"},
    ),
    OptimizerSpec(
        "adam",
        jaxmom.adam,
        defaults={"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        options={"amsgrad": "AMSGrad"},
        help={"b1": "first-moment decay", "b2": "second-moment decay"},
    ),
    # the rest of the momentum family (issue 10): the reference implementations' defaults
    OptimizerSpec(
        "adamw",
        jaxmom.adamw,
        defaults={"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
        options={"amsgrad": "AMSGrad"},
        note="adamw, lion: weight_decay is decoupled, p -= lr * wd * p (torch.optim.AdamW).",
    ),
    OptimizerSpec(
        "nadam",
        jaxmom.nadam,
        defaults={
            "learning_rate": 2e-3,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "momentum_decay": 4e-3,
            "weight_decay": 0.0,
        },
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"momentum_decay": "psi in NAdam's mu_t = b1 (1 - 0.96^(t psi) / 2)"},
    ),
    OptimizerSpec(
        "radam",
        jaxmom.radam,
        defaults={"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
    ),
    OptimizerSpec(
        "adamax",
        jaxmom.adamax,
        defaults={"learning_rate": 2e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    ),
    OptimizerSpec(
        "lion",
        jaxmom.lion,
        defaults={"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0},
    ),
    OptimizerSpec(
        "qhm",
        jaxmom.qhm,
        defaults={"learning_rate": 1.0, "momentum": 0.999, "nu": 0.7, "weight_decay": 0.0},
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"nu": "QHM's immediate discount: 0 is SGD, 1 is EMA momentum"},
        note="qhm's momentum is an EMA: qhm at lr 0.1, nu 1 takes sgd's steps at lr 0.01, 0.9.",
    ),
    OptimizerSpec(
        "qhadam",
        jaxmom.qhadam,
        defaults={
            "learning_rate": 1e-3,
            "b1": 0.9,
            "b2": 0.999,
            "nu1": 1.0,
            "nu2": 1.0,
            "eps": 1e-8,
            "weight_decay": 0.0,
        },
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"nu1": "QHAdam's first-moment discount", "nu2": "QHAdam's second-moment discount"},
    ),
    OptimizerSpec(
        "aggmo",
        jaxmom.aggmo,
        defaults={"learning_rate": 1e-2, "betas": (0.0, 0.9, 0.99), "weight_decay": 0.0},
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"betas": "damping of each of AggMo's K velocities"},
    ),
    OptimizerSpec(
        "schedule_free_sgd",
        jaxmom.schedule_free_sgd,
        defaults={
            "learning_rate": 1.0,
            "b1": 0.9,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "weight_lr_power": 2.0,
            "r": 0.0,
        },
        help={
            "warmup_steps": "linear learning-rate warmup, in steps",
            "weight_lr_power": "the average's weights are lr_max to this power",
            "r": "and (t+1)^r times that",
        },
        flags={"r": "average-power"},
        note="schedule_free_sgd is tested at its evaluation parameters x (schedulefree's .eval()).",
        eval_params=jaxmom.schedule_free_eval_params,
    ),
)

INITS = ("torch", "flax")

INT32_MAX = 2**31 - 1  # epochs, batch size and integer hyperparameters reach XLA as int32
SEED_MAX = 2**31 - 1  # seeds reach jax.random.key as int32: larger ones would wrap or repeat


def hyperparameters() -> dict[str, dict]:
    """Every hyperparameter of the registry: name -> {kind, flag, help, optimizers}."""
    out: dict[str, dict] = {}
    for spec in OPTIMIZERS.values():
        for name, value in spec.defaults.items():
            entry = out.setdefault(
                name,
                {
                    "kind": hyperparameter_kind(value),
                    "flag": spec.flags.get(name, FLAG_NAMES.get(name, name)).replace("_", "-"),
                    "help": COMMON_HELP.get(name),
                    "optimizers": [],
                },
            )
            entry["help"] = entry["help"] or spec.help.get(name)
            entry["optimizers"].append(spec.name)
    return out


def dtype_of(name: str):
    """The dtype a hyperparameter is fed to the optimizer in: int32 for integer ones, else float32."""
    kinds = {
        hyperparameter_kind(s.defaults[name]) for s in OPTIMIZERS.values() if name in s.defaults
    }
    return jnp.int32 if int in kinds else jnp.float32


def options() -> dict[str, dict]:
    """Every boolean option of the registry: name -> {help, optimizers}."""
    out: dict[str, dict] = {}
    for spec in OPTIMIZERS.values():
        for name, text in spec.options.items():
            out.setdefault(name, {"help": text, "optimizers": []})["optimizers"].append(spec.name)
    return out


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run, checked when it is built (one-line ``ValueError``).

    ``hparams`` overrides the optimizer's numeric defaults (see :data:`OPTIMIZERS`); ``options``
    sets its boolean options (e.g. ``{"nesterov": True}``).
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

    def __post_init__(self):
        check_config(self)

    @property
    def spec(self) -> OptimizerSpec:
        return OPTIMIZERS[self.optimizer]

    def full_hparams(self) -> dict:
        """All numeric hyperparameters: the optimizer's defaults overridden by ``hparams``."""
        return {**self.spec.defaults, **self.hparams}


def check_config(config: Config) -> None:
    """Raises ValueError with a one-line message for any bad setting, before anything compiles.
    :class:`Config` calls it when it is built."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}"
        )
    spec = OPTIMIZERS[config.optimizer]
    for kind, given, allowed in (
        ("hyperparameter", config.hparams, spec.defaults),
        ("option", config.options, spec.options),
    ):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"{config.optimizer} has no {kind} {', '.join(unknown)}")
    for name in ("epochs", "batch_size", "log_every"):
        value = getattr(config, name)
        if not 1 <= value <= INT32_MAX:
            raise ValueError(f"{name} must be an integer in [1, {INT32_MAX}], got {value}")
    if not 0 <= config.seed <= SEED_MAX:
        raise ValueError(
            f"seed must be an integer in [0, {SEED_MAX}] (it reaches jax.random.key as int32), "
            f"got {config.seed}"
        )
    for name, value in config.hparams.items():
        if hyperparameter_kind(spec.defaults[name]) is int and not (
            isinstance(value, int | np.integer) and -INT32_MAX - 1 <= value <= INT32_MAX
        ):
            raise ValueError(
                f"{name} is fed to the optimizer as int32: it must be an integer in "
                f"[{-INT32_MAX - 1}, {INT32_MAX}], got {value!r}"
            )
    if config.init not in INITS:
        raise ValueError(f"unknown init {config.init!r}; choose from {', '.join(INITS)}")
    spec.make(config.hparams, config.options)  # jaxmom checks the values


def eval_params(name: str, opt_state, params):
    """The parameters to test after training ``name``: its spec's ``eval_params``, or ``params``."""
    spec = OPTIMIZERS[name]
    return params if spec.eval_params is None else spec.eval_params(opt_state, params)


def make_optimizer(name: str, hparams: Mapping, **options) -> optax.GradientTransformation:
    """The jaxmom optimizer ``name`` with numeric ``hparams`` (floats, arrays or traced values)."""
    return OPTIMIZERS[name].make(hparams, options)


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One run of the default study: its label, optimizer and hyperparameters."""

    label: str
    optimizer: str
    hparams: Mapping[str, Default] = dataclasses.field(default_factory=dict)


# The default study: the seed tutorials' settings.
STUDY = (
    StudyRun("sgd", "sgd", {"learning_rate": 1e-2}),
    StudyRun(
        "momentum 0.9, lr inside v (sutskever_sgd)",
        "sutskever_sgd",
        {"learning_rate": 1e-2, "momentum": 0.9},
    ),
    StudyRun("momentum 0.9, PyTorch form (sgd)", "sgd", {"learning_rate": 1e-2, "momentum": 0.9}),
    StudyRun("adam", "adam", {"learning_rate": 1e-3}),
    StudyRun("rmsprop alpha 0.9", "rmsprop", {"learning_rate": 1e-3, "alpha": 0.9}),
    StudyRun("adagrad", "adagrad", {"learning_rate": 1e-2}),
    StudyRun("adadelta", "adadelta", {"learning_rate": 1.0}),
)

# ``--study family``: the rest of the momentum family at the settings their authors publish, beside
# the tutorials' momentum SGD and Adam. QHM's and QHAdam's are the QHM paper's recommendations
# (QHM: beta 0.999, nu 0.7 at momentum SGD's EMA-form lr, here 0.01 / (1 - 0.9) = 0.1); AggMo's
# are its paper's betas at the tutorials' SGD lr; the others are their packages' defaults.
FAMILY_STUDY = (
    StudyRun("momentum 0.9 (sgd)", "sgd", {"learning_rate": 1e-2, "momentum": 0.9}),
    StudyRun("adam", "adam", {"learning_rate": 1e-3}),
    StudyRun("adamw", "adamw", {"learning_rate": 1e-3, "weight_decay": 1e-2}),
    StudyRun("nadam", "nadam", {"learning_rate": 2e-3}),
    StudyRun("radam", "radam", {"learning_rate": 1e-3}),
    StudyRun("adamax", "adamax", {"learning_rate": 2e-3}),
    StudyRun("lion", "lion", {"learning_rate": 1e-4}),
    StudyRun("qhm nu 0.7 beta 0.999", "qhm", {"learning_rate": 0.1, "momentum": 0.999, "nu": 0.7}),
    StudyRun(
        "qhadam nu1 0.7 b1 0.995",
        "qhadam",
        {"learning_rate": 1e-3, "b1": 0.995, "b2": 0.999, "nu1": 0.7, "nu2": 1.0},
    ),
    StudyRun("aggmo 0,0.9,0.99", "aggmo", {"learning_rate": 1e-2, "betas": (0.0, 0.9, 0.99)}),
    StudyRun("schedule-free sgd", "schedule_free_sgd", {"learning_rate": 1.0}),
)
STUDIES = {"tutorials": STUDY, "family": FAMILY_STUDY}
