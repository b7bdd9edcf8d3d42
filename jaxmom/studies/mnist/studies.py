"""The lists of runs the MNIST study trains: the seed tutorials' (:data:`STUDY`, the default) and
the momentum family's (:data:`FAMILY_STUDY`, ``--study family``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jaxmom.studies.mnist.registry import Default


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
