"""The quickstart notebook runs top to bottom offline (on the embedded model)."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.get("outputs", []))
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    assert "Always respond in a way that reflects the following values: Curiosity, Care, and Autonomy." in outputs[1]
    assert "seed" in outputs[3] and "final" in outputs[3]
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the radar chart was not displayed"
    assert "iteration 1: J =" in outputs[4] and "proposer" in outputs[4]
