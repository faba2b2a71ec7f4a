"""Executes every notebook in notebooks/ on a deterministic target with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_five_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.fixture(scope="module")
def shared_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One workspace for all notebooks, as a reader running them in order would have.
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, shared_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRMODEL_NOTEBOOK_TARGET", "analytic")
    monkeypatch.setenv("PRMODEL_NOTEBOOK_WORKSPACE", str(shared_workspace))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3")
    client.execute(cwd=str(path.parent))
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors
    # every notebook ends in a table or a figure, not in nothing
    kinds = {key for cell in code for o in cell.outputs for key in o.get("data", {})}
    assert {"text/html", "image/png"} <= kinds
    # the notebook ran on the deterministic target, in the test's workspace (its setup cell
    # prints both), not on the cpu or in the default temporary folder
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs)
    assert f"target analytic-b16-l8, workspace {shared_workspace / 'analytic'}" in printed
