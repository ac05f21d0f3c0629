"""The notebooks run top to bottom offline: the quickstart on the embedded model, composition on the scripted world."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path) -> tuple[list[str], object]:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") != "stderr")
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    return outputs, notebook


@pytest.mark.embedded
def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    outputs, notebook = run_notebook("quickstart.ipynb", tmp_path)
    assert "Always respond in a way that reflects the following values: Curiosity, Care, and Autonomy." in outputs[1]
    assert "seed" in outputs[3] and "final" in outputs[3]
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the radar chart was not displayed"
    assert "iteration 1: J =" in outputs[4] and "proposer" in outputs[4]


def test_composition_notebook_composes_in_both_orders_and_shows_values_and_lineage(tmp_path):
    outputs, _ = run_notebook("composition.ipynb", tmp_path)
    assert "demos kept: 2" in outputs[1] and "Universalism" in outputs[1]  # few-shot, then PICACO
    assert "demos added: 1" in outputs[2] and "instruction unchanged: True" in outputs[2]  # PICACO, then few-shot
    seed, final = (line for line in outputs[3].splitlines() if line.startswith(("seed", "final")))
    assert "Hedonism 5.00" in final and "Hedonism 5.00" not in seed  # the final instruction honours every value
    assert "best per value:" in outputs[3] and "non-dominated:" in outputs[3] and "chosen=True" in outputs[3]
    lineage = outputs[4].splitlines()
    assert lineage[0].startswith("0. iteration 0, seed") and "lm_proposal" in outputs[4]
    assert "meta-instruction kept after MIPROv2: True" in outputs[5] and "ensemble answer:" in outputs[5]
