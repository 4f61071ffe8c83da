"""notebooks/: stored without outputs, and each runs headless, top to bottom, on the tiny run fixture."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_the_four_notebooks():
    assert [path.name for path in NOTEBOOKS] == ["attention_vs_construction.ipynb", "length_generalization.ipynb",
                                                 "study.ipynb", "temperature_gap_probes.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_headless_on_tiny_runs(path, request, monkeypatch):
    # study.ipynb summarises a study grid: the tiny grid with cells and evaluation.csv
    tiny_grid = request.getfixturevalue("tiny_study" if path.stem == "study" else "tiny_grid")
    monkeypatch.setenv("SOFTHARD_RUNS", str(tiny_grid))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the figures the notebook draws are rendered
    assert str(tiny_grid) in str(outputs[0].get("data", {}).get("text/plain", ""))  # it read the fixture, not a default
