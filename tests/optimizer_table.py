"""The optimizers under test: one record each, driving every contract test (as Optax's
``alias_test._OPTIMIZERS_UNDER_TEST`` does)."""

import dataclasses
from collections.abc import Callable
from typing import Any

import optax
import optimizer_reference as ref

import jaxmom


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One optimizer under test.

    Attributes:
      factory: the jaxmom factory.
      grid: ``{hyperparameter: three values}``; point ``i`` takes the ``i``-th value of each.
      flags: the static (boolean) arguments every test passes.
      base: the hyperparameters of a single run; by default the grid's first point.
      reference: the NumPy transcription in ``optimizer_reference`` taking the same arguments
        (see ``reference_kwargs``), or None.
    """

    factory: Callable[..., optax.GradientTransformation]
    grid: dict[str, list[Any]]
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    reference: Callable | None = None

    def __post_init__(self):
        if not self.base:
            object.__setattr__(self, "base", self.point(0))

    def point(self, i: int) -> dict[str, Any]:
        """The ``i``-th point of the grid: every hyperparameter at its ``i``-th value."""
        return {k: v[i] for k, v in self.grid.items()}

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a single run: ``base`` and ``flags``."""
        return {**self.base, **self.flags}

    def make(self, **overrides) -> optax.GradientTransformation:
        """The optimizer at ``base`` with ``overrides``, and ``flags``."""
        return self.factory(**{**self.base, **overrides}, **self.flags)


OPTIMIZERS = {
    "sgd": Optimizer(
        jaxmom.sgd,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            momentum=[0.9, 0.5, 0.0],
            dampening=[0.0, 0.3, 0.1],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        reference=ref.sgd,
    ),
    "sgd-nesterov": Optimizer(
        jaxmom.sgd,
        dict(learning_rate=[0.05, 0.02, 0.1], momentum=[0.9, 0.5, 0.2]),
        flags=dict(nesterov=True),
        reference=ref.sgd,
    ),
    "sutskever_sgd": Optimizer(
        jaxmom.sutskever_sgd,
        dict(learning_rate=[0.05, 0.02, 0.1], momentum=[0.9, 0.5, 0.2]),
        flags=dict(nesterov=True),
        reference=ref.sutskever_sgd,
    ),
    "ema_sgd": Optimizer(
        jaxmom.ema_sgd,
        dict(learning_rate=[0.05, 0.02, 0.1], beta=[0.9, 0.5, 0.0]),
        flags=dict(debias=True),
        reference=ref.ema_sgd,
    ),
    "adagrad": Optimizer(
        jaxmom.adagrad,
        dict(
            learning_rate=[0.1, 0.05, 0.2],
            lr_decay=[0, 0.1, 0.01],
            initial_accumulator_value=[0, 0.2, 1],
            eps=[1e-10, 1e-3, 0],
            weight_decay=[0, 0.1, 0],
        ),
        reference=ref.adagrad,
    ),
    "adadelta": Optimizer(
        jaxmom.adadelta,
        dict(
            learning_rate=[1.0, 0.5, 2.0],
            rho=[0.9, 0.8, 0.95],
            eps=[1e-6, 1e-4, 1e-5],
            weight_decay=[0, 0.1, 0.0],
        ),
        reference=ref.adadelta,
    ),
    "rmsprop": Optimizer(
        jaxmom.rmsprop,
        dict(
            learning_rate=[0.01, 0.02, 0.01],
            alpha=[0.99, 0.9, 0.5],
            eps=[1e-8, 1e-3, 1e-2],
            momentum=[0.9, 0.5, 0.1],
            weight_decay=[0, 0.1, 0],
        ),
        flags=dict(centered=True),
        reference=ref.rmsprop,
    ),
    "adam": Optimizer(
        jaxmom.adam,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-3],
            weight_decay=[0, 0.1, 0],
        ),
        flags=dict(amsgrad=True),
        reference=ref.adam,
    ),
    "adamw": Optimizer(
        jaxmom.adamw,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        flags=dict(amsgrad=True),
        base=dict(learning_rate=0.05, weight_decay=0.1),
    ),
    "nadam": Optimizer(
        jaxmom.nadam,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            momentum_decay=[4e-3, 0.05, 0.0],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        flags=dict(decoupled_weight_decay=True),
        base=dict(learning_rate=0.05, weight_decay=0.1),
    ),
    "radam": Optimizer(
        jaxmom.radam,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.9, 0.999, 0.5],  # rectified from step 2 (traced rho_t > 5), step 6, never
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        flags=dict(decoupled_weight_decay=False),
        base=dict(learning_rate=0.05, weight_decay=0.1),
    ),
    "adamax": Optimizer(
        jaxmom.adamax,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        base=dict(learning_rate=0.05, weight_decay=0.1),
    ),
    "lion": Optimizer(
        jaxmom.lion,
        dict(
            learning_rate=[0.01, 0.02, 0.005],
            b1=[0.9, 0.8, 0.0],
            b2=[0.99, 0.9, 1.0],
            weight_decay=[0.0, 0.5, 0.1],
        ),
        base=dict(learning_rate=0.01, weight_decay=0.5),
    ),
    "qhm": Optimizer(
        jaxmom.qhm,
        dict(
            learning_rate=[0.5, 0.2, 0.1],
            momentum=[0.9, 0.999, 0.0],
            nu=[0.7, 0.0, 1.0],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        flags=dict(decoupled_weight_decay=True),
        base=dict(learning_rate=0.5, momentum=0.9, weight_decay=0.1),
    ),
    "qhadam": Optimizer(
        jaxmom.qhadam,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            nu1=[0.7, 1.0, 0.0],
            nu2=[1.0, 0.5, 0.0],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        base=dict(learning_rate=0.05, nu1=0.7, weight_decay=0.1),
    ),
    "aggmo": Optimizer(
        jaxmom.aggmo,
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            betas=[(0.0, 0.9, 0.99), (0.0, 0.5, 0.9), (0.5, 0.5, 0.5)],
            weight_decay=[0.0, 0.1, 0.01],
        ),
        flags=dict(decoupled_weight_decay=True),
        base=dict(learning_rate=0.05, weight_decay=0.1),
    ),
    "schedule_free_sgd": Optimizer(
        jaxmom.schedule_free_sgd,
        dict(
            learning_rate=[0.2, 0.1, 0.5],
            b1=[0.9, 0.5, 0.99],
            warmup_steps=[3, 0, 10],
            weight_decay=[0.0, 0.1, 0.01],
            weight_lr_power=[2.0, 0.0, 1.0],
            r=[0.0, 0.5, 2.0],
        ),
        base=dict(learning_rate=0.2, warmup_steps=3, weight_decay=0.1),
    ),
}

REFERENCED = [name for name, o in OPTIMIZERS.items() if o.reference is not None]
