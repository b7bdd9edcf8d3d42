"""docs/tutorial.ipynb runs from top to bottom in a Jupyter kernel, shows its figures inline, and is
stored without outputs (the site and this test execute it)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def execute(nb, monkeypatch) -> None:
    """Every cell in order, in a fresh python3 kernel that imports this checkout."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)  # the kernel is another process
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_without_error_and_shows_its_figures_inline(monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    execute(nb, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the momentum path and the sweep's heatmap, inline
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "best:" in text and "(4, 4, 2)" in text


def test_an_error_in_the_notebook_fails_the_test(monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("assert jaxmom.sgd is None, 'broken on purpose'"))
    with pytest.raises(CellExecutionError, match="broken on purpose"):
        execute(nb, monkeypatch)
