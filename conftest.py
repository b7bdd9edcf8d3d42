"""pytest settings shared by the tests and the doctests (see [tool.pytest.ini_options])."""

import importlib
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

ROOT = Path(__file__).resolve().parent

# Sphinx's configuration is not a test module, and its extension needs Sphinx to import.
collect_ignore = ["docs/conf.py", "docs/_ext"]

_missing: list[str] = []


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
