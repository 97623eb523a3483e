"""Writing the evaluators' figures (layer-wise curve, t-SNE, clustering, retrieval grid)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def save_png(fig, path) -> str:
    """Saves a matplotlib ``Figure`` (built without pyplot, Agg canvas) atomically as PNG.

    No global backend is switched, so a notebook's inline backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(path)
