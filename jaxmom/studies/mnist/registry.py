"""The optimizers the MNIST study can train: one :class:`OptimizerSpec` each, in :data:`OPTIMIZERS`.

The registry is the one place that knows the study's optimizers. Each spec names the jaxmom
factory, the study's own defaults where they differ from the factory's (the others are read from
the factory's signature, so they are stated once), the boolean options the study offers, and help
for hyperparameters no other spec documents; the command line's ``--optimizer`` choices, its
hyperparameter flags and their help are generated from it. Adding an optimizer to the study is
one :class:`OptimizerSpec`::

    OptimizerSpec(
        "aggmo",
        jaxmom.aggmo,
        overrides={"learning_rate": 0.01},  # aggmo's own signature has no default
        help={"betas": "damping of each of the K velocities"},  # names no other spec documents
    )

A default's type sets the hyperparameter's kind: a float (``--lr 0.1``, sweepable), an int
(``--warmup-steps 100``, sweepable, fed to the factory as int32) or a tuple of floats, an array
hyperparameter (``--betas 0,0.9,0.99``: the whole comma list is ONE value, not a grid axis).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

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
      overrides: the study's own defaults, where they differ from the factory's or the factory has
        none (e.g. a required learning rate). The other numeric hyperparameters and their defaults
        are read from ``inspect.signature(factory)``: every parameter whose default is a float, an
        int or a tuple of numbers (not a bool).
      defaults: (computed) every numeric hyperparameter the study passes, with its default: the
        factory's, overridden by ``overrides``. The type of the default gives the kind: float,
        int, or tuple of floats (an array hyperparameter).
      options: boolean options (keyword arguments of ``factory``) the study offers -> help text.
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
    overrides: Mapping[str, Default] = dataclasses.field(default_factory=dict)
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    note: str = ""
    eval_params: Callable[[Any, Any], Any] | None = None
    defaults: Mapping[str, Default] = dataclasses.field(init=False)

    def __post_init__(self):
        for field in ("overrides", "options", "help", "flags"):
            object.__setattr__(self, field, _frozen(getattr(self, field)))
        object.__setattr__(self, "defaults", _frozen(signature_defaults(self)))
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


def signature_defaults(spec: OptimizerSpec) -> dict[str, Default]:
    """The numeric hyperparameters of ``spec.factory`` with their defaults, from its signature,
    overridden by ``spec.overrides``; an override that is no parameter of the factory, or a
    numeric parameter without a default and without an override, is refused."""
    parameters = inspect.signature(spec.factory).parameters
    unknown = sorted(set(spec.overrides) - set(parameters))
    if unknown:
        raise ValueError(f"{spec.name}: {unknown} are not parameters of {spec.factory.__name__}")
    out: dict[str, Default] = {}
    for name, p in parameters.items():
        value = spec.overrides.get(name, p.default)
        if name in spec.options or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if value is inspect.Parameter.empty:
            raise ValueError(f"{spec.name}: {name} has no default in {spec.factory.__name__}")
        if isinstance(value, bool) and name not in spec.overrides:
            continue  # a boolean flag the study does not offer
        if name in spec.overrides or hyperparameter_kind(value) is not None:
            out[name] = value
    return out


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


# The study's optimizers. Defaults are the factories' (read from their signatures), overridden by
# the seed tutorials' settings where they use the optimizer (rmsprop: lr 1e-3, alpha 0.9) and a
# learning rate where the factory has none.
OPTIMIZERS: Mapping[str, OptimizerSpec] = registry(
    OptimizerSpec(
        "sgd",
        jaxmom.sgd,
        overrides={"learning_rate": 1e-2},
        options={"nesterov": "Nesterov momentum"},
        help={"dampening": "momentum dampening"},
    ),
    OptimizerSpec(
        "sutskever_sgd",
        jaxmom.sutskever_sgd,
        overrides={"learning_rate": 1e-2, "momentum": 0.9},
        options={"nesterov": "Nesterov momentum"},
    ),
    OptimizerSpec(
        "ema_sgd",
        jaxmom.ema_sgd,
        overrides={"learning_rate": 1e-1},
        options={"debias": "bias-corrected average"},
        help={"beta": "EMA decay of the gradient average"},
        note="ema_sgd at lr 0.1, beta 0.9 takes the same steps as sgd at lr 0.01, momentum 0.9.",
    ),
    OptimizerSpec(
        "adagrad",
        jaxmom.adagrad,
        help={
            "lr_decay": "lr / (1 + (t-1) lr_decay)",
            "initial_accumulator_value": "starting value of the sum of squared gradients",
        },
    ),
    OptimizerSpec(
        "adadelta",
        jaxmom.adadelta,
        help={"rho": "decay of both averages"},
    ),
    OptimizerSpec(
        "rmsprop",
        jaxmom.rmsprop,
        overrides={"learning_rate": 1e-3, "alpha": 0.9},
        options={"centered": "centered RMSprop"},
        help={"alpha": "decay of the squared-gradient average"},
    ),
    OptimizerSpec(
        "adam",
        jaxmom.adam,
        options={"amsgrad": "AMSGrad"},
        help={"b1": "first-moment decay", "b2": "second-moment decay"},
    ),
    # the rest of the momentum family (issue 10): the reference implementations' defaults
    OptimizerSpec(
        "adamw",
        jaxmom.adamw,
        options={"amsgrad": "AMSGrad"},
        note="adamw, lion: weight_decay is decoupled, p -= lr * wd * p (torch.optim.AdamW).",
    ),
    OptimizerSpec(
        "nadam",
        jaxmom.nadam,
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"momentum_decay": "psi in NAdam's mu_t = b1 (1 - 0.96^(t psi) / 2)"},
    ),
    OptimizerSpec(
        "radam",
        jaxmom.radam,
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
    ),
    OptimizerSpec(
        "adamax",
        jaxmom.adamax,
    ),
    OptimizerSpec(
        "lion",
        jaxmom.lion,
    ),
    OptimizerSpec(
        "qhm",
        jaxmom.qhm,
        overrides={"learning_rate": 1.0},
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"nu": "QHM's immediate discount: 0 is SGD, 1 is EMA momentum"},
        note="qhm's momentum is an EMA: qhm at lr 0.1, nu 1 takes sgd's steps at lr 0.01, 0.9.",
    ),
    OptimizerSpec(
        "qhadam",
        jaxmom.qhadam,
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"nu1": "QHAdam's first-moment discount", "nu2": "QHAdam's second-moment discount"},
    ),
    OptimizerSpec(
        "aggmo",
        jaxmom.aggmo,
        overrides={"learning_rate": 1e-2},
        options={"decoupled_weight_decay": "AdamW-style weight decay"},
        help={"betas": "damping of each of AggMo's K velocities"},
    ),
    OptimizerSpec(
        "schedule_free_sgd",
        jaxmom.schedule_free_sgd,
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


def options() -> dict[str, dict]:
    """Every boolean option of the registry: name -> {help, optimizers}."""
    out: dict[str, dict] = {}
    for spec in OPTIMIZERS.values():
        for name, text in spec.options.items():
            out.setdefault(name, {"help": text, "optimizers": []})["optimizers"].append(spec.name)
    return out
