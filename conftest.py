"""pytest settings shared by the tests and the doctests (see [tool.pytest.ini_options])."""

import importlib
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

ROOT = Path(__file__).resolve().parent

# Sphinx's configuration is not a test module, and its extension needs Sphinx to import.
collect_ignore = ["docs/conf.py", "docs/_ext"]

_missing: list[str] = []

# The fast loop, `pytest -m "not slow"`, leaves out what the marker `slow` marks (see
# CONTRIBUTING.md): these modules, which run the study, the command line, several processes, the
# documentation build or a notebook kernel; tests marked @pytest.mark.slow in the other modules; and
# every case but the first of a parametrized test with MATRIX or more cases (the optimizer x
# option matrices), so each test function still runs once.
SLOW_MODULES = {
    "test_cli.py": "the command line end to end, in subprocesses",
    "test_mnist.py": "trains and sweeps the MNIST model",
    "test_family_study.py": "trains the momentum family on the study",
    "test_docs.py": "builds the documentation site",
    "test_sweep_multiprocess.py": "two jax.distributed processes",
    "test_torch_products.py": "PyTorch products against their sources",
    "test_tutorial_notebook.py": "executes docs/tutorial.ipynb in a Jupyter kernel",
}
MATRIX = 8


def pytest_configure(config):
    """The test session's compile cache: JAX's persistent compilation cache, shared by the
    session's subprocesses through the environment, so that a program compiled by one test or
    process is loaded, not compiled again, by the next. The full suite (CI) uses a fresh temporary
    folder, removed at the end. The fast loop (``-m "not slow"``, exactly) keeps its folder across
    sessions, :data:`FAST_LOOP_CACHE` under the user's cache folder (at most
    :data:`FAST_LOOP_CACHE_BYTES`, the least recently used entries dropped): a rerun while working
    compiles only what changed. An existing ``JAXMOM_COMPILE_CACHE`` is used instead (``off``:
    none; a folder: that one). Every entry is keyed by the program's HLO, its options and the
    devices: a hit is the very executable a compile would give."""
    from jaxmom.sweep import configure_compile_cache, default_compile_cache_dir

    fast = config.option.markexpr == "not slow"
    if fast:
        fast_loop_compiles()
    setting = os.environ.get("JAXMOM_COMPILE_CACHE")
    if setting is None and fast:
        setting = default_compile_cache_dir().parent / FAST_LOOP_CACHE
        os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(FAST_LOOP_CACHE_BYTES)
        import jax

        jax.config.update("jax_compilation_cache_max_size", FAST_LOOP_CACHE_BYTES)
    elif setting is None:
        setting = tempfile.mkdtemp(prefix="jaxmom-test-jax-cache-")
        config._jaxmom_cache = setting  # type: ignore[attr-defined]
    folder = configure_compile_cache(setting, prog="pytest")
    os.environ["JAXMOM_COMPILE_CACHE"] = str(folder) if folder else "off"
    if folder:  # subprocesses that never call configure_compile_cache: through JAX's variables
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


FAST_LOOP_CACHE = "pytest-fast-loop"  # beside the scripts' cache: ~/.cache/jaxmom/
FAST_LOOP_CACHE_BYTES = 512 * 2**20


def fast_loop_compiles():
    """The fast loop (``-m "not slow"``) compiles without LLVM's optimisations
    (``--xla_backend_optimization_level=0``, added to ``XLA_FLAGS`` unless they set the level):
    XLA:CPU then compiles its small programs in about half the CPU time, and the fast loop is
    mostly compiling (CONTRIBUTING.md). The HLO passes (fusion, layout) are the same; the full
    suite, as CI runs it, compiles as users do. Set before JAX starts its backend, which reads
    ``XLA_FLAGS`` once; subprocesses inherit it unless they set their own ``XLA_FLAGS``."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def pytest_unconfigure(config):
    folder = getattr(config, "_jaxmom_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_ignore_collect(collection_path: Path, config):
    """A module of the package that needs an optional library which is not installed is left
    out of the doctests (its import would fail, not its examples), and the summary says so. Any
    other import error still fails the collection."""
    if collection_path.suffix != ".py" or collection_path.parent.name == "tests":
        return None
    try:
        parts = collection_path.resolve().relative_to(ROOT).with_suffix("").parts
    except ValueError:
        return None
    if parts[0] != "jaxmom":
        return None
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] != "jaxmom":
            _missing.append(f"{name} (needs {error.name})")
            return True
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    cases = Counter(_function(item) for item in items)
    seen = set()
    for item in items:
        function = _function(item)
        first = function not in seen
        seen.add(function)
        if item.path.name in SLOW_MODULES or (cases[function] >= MATRIX and not first):
            item.add_marker(pytest.mark.slow)


def _function(item) -> tuple:
    """A test function, whatever its parameters: (file, name without the [case])."""
    return (str(item.path), item.name.split("[")[0])


def pytest_terminal_summary(terminalreporter):
    if _missing:
        terminalreporter.write_line(
            "doctests not collected, optional library missing: " + ", ".join(_missing)
        )


@pytest.fixture(autouse=True)
def _doctests_write_into_a_temporary_folder(request, tmp_path, monkeypatch):
    """Examples that save files (``res.to_csv("grid.csv")``) write into a fresh folder."""
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
