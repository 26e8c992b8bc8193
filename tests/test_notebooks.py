"""Every numbered notebook: well-formed, clean, and runnable by papermill in smoke mode."""

import ast
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMON_PARAMETERS = {"dataset", "epochs", "lr", "batch_size", "seed", "device", "smoke", "output_dir",
                     "checkpoint_dir"}


def _parameters_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_the_core_sequence_exists():
    names = [p.name for p in NOTEBOOKS]
    assert names[:1] == ["01_teacher_training.ipynb"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata, f"{path.name} carries papermill's run record: run make clean-notebooks"
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: the parameters cell holds only `name = literal` lines"
        ast.literal_eval(node.value)  # raises unless the value is a literal
        names.add(node.targets[0].id)
    assert COMMON_PARAMETERS <= names, f"{path.name} lacks parameters {COMMON_PARAMETERS - names}"
    for line in cells[0].source.splitlines():
        assert "#" in line, f"{path.name}: every parameter needs a comment: {line!r}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} is committed with outputs"


@pytest.fixture(scope="module")
def shared_checkpoints(tmp_path_factory):
    # One folder for the whole module: notebook 01's smoke teacher is reused by 02+.
    return tmp_path_factory.mktemp("checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_smoke_run(path, tmp_path, shared_checkpoints):
    import papermill

    out = tmp_path / "out"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                               parameters={"smoke": True, "output_dir": str(out),
                                           "checkpoint_dir": str(shared_checkpoints)},
                               progress_bar=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and metrics["smoke"] is True
    assert list(out.glob("*.png")), "the notebook saves its figures"
    if path.name.startswith("01_"):
        import kdlab

        model, meta = kdlab.checkpoint.load(shared_checkpoints / "teacher_digits_smoke.pt")
        assert meta["test_metrics"]["accuracy"] == metrics["teacher_accuracy"]
