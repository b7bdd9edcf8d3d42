"""Hyperparameter sweeps: a whole grid trained in one compiled program.

jaxmom's hyperparameters are traced values, so a training run is a pure function
``train_fn(hparams, key, *args) -> metrics`` of a dict of scalars. A grid of ``K`` configurations
is then one program: ``vmap(train_fn)`` over ``K`` stacked hyperparameter values, compiled once and
reused for any other values of the same grid shape. Because ``vmap`` gives each configuration its
own independent lane, a configuration that blows up (NaN or inf) cannot touch any other one.
For example::

    grid = sweep.product(lr=[3e-3, 1e-2, 3e-2, 1e-1], momentum=[0, 0.5, 0.9, 0.99]).with_seeds(2)
    res = sweep.sweep(train_fn, grid, args=(data,))  # one compile, K = 4*4*2 runs
    res.metrics["loss"].shape                        # (4, 4, 2, steps): shaped like the grid
    res.best("final_loss"); res.to_csv("grid.csv"); res.heatmap("final_loss", "lr", "momentum", "h.png")

To sweep a model on a dataset, :func:`fit` writes the training loop (``init``, a per-example
``loss``, ``optimizer(hparams)`` and the data): shuffling, batching, evaluation after every epoch,
a chunk size from memory, progress and checkpoints.

``args`` (e.g. the training data) are shared by all cells, not batched: a first layer applied to a
shared input batch then lowers to one wide matmul against all ``K`` weight matrices.

Besides grids, :func:`sample` draws random or Sobol trials from :func:`uniform`,
:func:`log_uniform` and :func:`choice` spaces onto one ``"trial"`` axis; ``fit(...,
halving=Halving(...))`` runs successive halving inside the compiled sweep, ``fit(...,
search=PBT(...))`` population-based training (members copy and perturb each other between
compiled epochs), and :func:`optuna_search` lets an Optuna study pick the trials, a batch at a
time.

:func:`plan` tells what ``fit`` would do (chunk size, memory per configuration, the compiled
epoch's HLO) without training.

:func:`use_compile_cache` keeps compiled programs on disk for the next process (JAX's persistent
compilation cache, in :func:`default_compile_cache_dir`); importing jaxmom never turns it on.
Scripts call :func:`configure_compile_cache` (with the flags of :func:`add_compile_cache_flags`
and ``$JAXMOM_COMPILE_CACHE``), which only warns, in one line, where the folder is unusable.

What the sweeps' own tools use is public too, for scripts and studies built on them:
:func:`check_cells` (every cell of a grid built once by ``optimizer`` with concrete values, as
``fit`` does before it compiles) and :func:`check_divergence_factor` (``fit``'s rule for
``divergence_factor``); the space classes that :func:`uniform`, :func:`log_uniform` and
:func:`choice` return (:class:`Uniform`, :class:`LogUniform`, :class:`Choice`; ``Space`` is their
union), :data:`TRIAL`, the name of a sampled grid's axis, and :data:`MAX_TRIALS`, the most trials
:func:`sample` draws; and the files every sweep writes:
:func:`atomic_open`, :func:`write_text`, :func:`write_bytes` and :func:`write_json` (written whole
or not at all; JSON strict, NaN and inf as ``null``, which :func:`nan_if_null` reads back;
:func:`json_text` gives the text),
:func:`check_writable` (an output folder proved writable before any work) and
:class:`OutputError` (one line naming the path); and :func:`catch_interrupts`, within which a
Ctrl-C that lands where Python ignores exceptions (JAX's garbage-collection callback) is kept and
raised by :func:`check_interrupt`, which ``fit`` calls after every epoch.

Modules: :mod:`~jaxmom.sweep._grid` (the grid), :mod:`~jaxmom.sweep._sample` (sampled trials),
:mod:`~jaxmom.sweep._checks` (one check per shared argument), :mod:`~jaxmom.sweep._interrupt`
(Ctrl-C kept until the next epoch),
:mod:`~jaxmom.sweep._engine` (the compiled, sharded, chunked program and its cache),
:mod:`~jaxmom.sweep._result` (results, divergence, exports), :mod:`~jaxmom.sweep._result_parts`
(take and concat), :mod:`~jaxmom.sweep._result_file` (save and load),
:mod:`~jaxmom.sweep._metrics` (metric names: which way is better, evaluation sets),
:mod:`~jaxmom.sweep._compile_cache` (JAX's persistent compilation cache, on request),
:mod:`jaxmom.sweep.plot` (heatmaps and scatter plots, needs matplotlib). ``fit`` is built in
layers: :mod:`~jaxmom.sweep._setup` (the checked setup), :mod:`~jaxmom.sweep._contract` (the
functions' contract, traced before compiling), :mod:`~jaxmom.sweep._cell` (one cell's functions),
:mod:`~jaxmom.sweep._programs` (the compiled programs), :mod:`~jaxmom.sweep._memory` (chunk
size), :mod:`~jaxmom.sweep._driver` (the one chunk x epoch loop and its strategies),
:mod:`~jaxmom.sweep._checkpoint` (checkpoints) and :mod:`~jaxmom.sweep._fit` (the front door);
:mod:`~jaxmom.sweep._halving` (successive halving, a strategy of the driver),
:mod:`~jaxmom.sweep._pbt` (population-based training, another) and
:mod:`~jaxmom.sweep._optuna` (Optuna) search on it. The engine knows nothing of any model or
dataset: the MNIST study's sweep lives in :mod:`jaxmom.studies.mnist.sweep`.
"""

from jaxmom.sweep._checks import check_divergence_factor as check_divergence_factor
from jaxmom.sweep._compile_cache import add_compile_cache_flags as add_compile_cache_flags
from jaxmom.sweep._compile_cache import configure_compile_cache as configure_compile_cache
from jaxmom.sweep._compile_cache import default_compile_cache_dir as default_compile_cache_dir
from jaxmom.sweep._compile_cache import use_compile_cache as use_compile_cache
from jaxmom.sweep._engine import cache_size as cache_size
from jaxmom.sweep._engine import clear_cache as clear_cache
from jaxmom.sweep._engine import finite as finite
from jaxmom.sweep._engine import sweep as sweep
from jaxmom.sweep._files import OutputError as OutputError
from jaxmom.sweep._files import atomic_open as atomic_open
from jaxmom.sweep._files import check_writable as check_writable
from jaxmom.sweep._files import json_text as json_text
from jaxmom.sweep._files import nan_if_null as nan_if_null
from jaxmom.sweep._files import write_bytes as write_bytes
from jaxmom.sweep._files import write_json as write_json
from jaxmom.sweep._files import write_text as write_text
from jaxmom.sweep._fit import Plan as Plan
from jaxmom.sweep._fit import fit as fit
from jaxmom.sweep._fit import plan as plan
from jaxmom.sweep._grid import SEED as SEED
from jaxmom.sweep._grid import Axis as Axis
from jaxmom.sweep._grid import Grid as Grid
from jaxmom.sweep._grid import product as product
from jaxmom.sweep._grid import zipped as zipped
from jaxmom.sweep._halving import Halving as Halving
from jaxmom.sweep._interrupt import catch_interrupts as catch_interrupts
from jaxmom.sweep._interrupt import check_interrupt as check_interrupt
from jaxmom.sweep._optuna import optuna_search as optuna_search
from jaxmom.sweep._pbt import PBT as PBT
from jaxmom.sweep._result import SweepResult as SweepResult
from jaxmom.sweep._sample import MAX_TRIALS as MAX_TRIALS
from jaxmom.sweep._sample import TRIAL as TRIAL
from jaxmom.sweep._sample import Choice as Choice
from jaxmom.sweep._sample import LogUniform as LogUniform
from jaxmom.sweep._sample import Space as Space
from jaxmom.sweep._sample import Uniform as Uniform
from jaxmom.sweep._sample import choice as choice
from jaxmom.sweep._sample import log_uniform as log_uniform
from jaxmom.sweep._sample import sample as sample
from jaxmom.sweep._sample import uniform as uniform
from jaxmom.sweep._setup import check_cells as check_cells
