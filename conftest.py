"""pytest settings shared by the tests and the doctests (see [tool.pytest.ini_options])."""

import pytest
from _pytest.doctest import DoctestItem

# Sphinx's configuration is not a test module, and its extension needs Sphinx to import.
collect_ignore = ["docs/conf.py", "docs/_ext"]


@pytest.fixture(autouse=True)
def _doctests_write_into_a_temporary_folder(request, tmp_path, monkeypatch):
    """Examples that save files (``res.to_csv("grid.csv")``) write into a fresh folder."""
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
