"""The seed tutorials' MNIST optimizer study: a 784-200-10 ReLU MLP trained by jaxmom's optimizers.

Modules, from the bottom up:

- :mod:`~jaxmom.studies.mnist.registry`: the optimizers (:data:`OPTIMIZERS`), their defaults read
  from the factories' signatures;
- :mod:`~jaxmom.studies.mnist.studies`: the lists of runs (:data:`STUDY`, ``--study family``);
- :mod:`~jaxmom.studies.mnist.config`: one run's :class:`Config`, the study's only validator;
- :mod:`~jaxmom.studies.mnist.data`: MNIST and Fashion-MNIST from IDX files, tfds, a download or
  the embedded subset;
- :mod:`~jaxmom.studies.mnist.split`: the validation split held out of the training set
  (:func:`~jaxmom.studies.mnist.split.hold_out`);
- :mod:`~jaxmom.studies.mnist.model`: the Flax MLP, its PyTorch-style initialisation and input scaling;
- :mod:`~jaxmom.studies.mnist.train`: every run through :func:`jaxmom.sweep.fit` (a single run is
  a one-cell grid, :func:`train_and_evaluate`), resumable, and its results.json records;
- :mod:`~jaxmom.studies.mnist.sweep`: the study over a grid (:func:`run_sweep`) or sampled trials
  (a search's plan, ``Search``, run by ``run_search``: random, Sobol, successive halving,
  population-based training, Optuna);
- :mod:`~jaxmom.studies.mnist.pbt`: ``--search pbt``'s flags, lineages, columns and
  ``pbt_schedules.png``;
- :mod:`~jaxmom.studies.mnist.folders`: --out and --checkpoint-dir, checked before any work;
- :mod:`~jaxmom.studies.mnist.report`: summary table, results.json, loss curves, sweep outputs;
- :mod:`~jaxmom.studies.mnist.flags`: the command line's flags turned into runs, a grid or a
  search (pure);
- :mod:`~jaxmom.studies.mnist.cli`: the parser and ``main`` behind ``experiments/mnist.py``.
"""

from jaxmom.studies.mnist.config import Config as Config
from jaxmom.studies.mnist.registry import OPTIMIZERS as OPTIMIZERS
from jaxmom.studies.mnist.registry import OptimizerSpec as OptimizerSpec
from jaxmom.studies.mnist.studies import STUDY as STUDY
from jaxmom.studies.mnist.sweep import run_sweep as run_sweep
from jaxmom.studies.mnist.train import train_and_evaluate as train_and_evaluate
