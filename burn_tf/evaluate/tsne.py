"""t-SNE of backbone features (InvP supplement Fig. 2, seed 002).

The seed embeds the first 40 ImageNet classes × 200 random images each. Scaled to the data
set: Fashion-MNIST has 10 classes, so the default is all 10 classes × 200 random train
images (2,000 points). Features are L2-normalised (so Euclidean t-SNE distances follow the
cosine similarity used everywhere else), embedded in 2-d with scikit-learn's Barnes–Hut
``TSNE`` (PCA initialisation, fixed seed), and drawn as a PNG scatter coloured by class with
a legend (matplotlib Agg canvas, no pyplot). The result also reports the silhouette score of
the 2-d embedding under the true classes (higher = classes more separated), so two
backbones can be compared by a number as well as by eye.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from pathlib import Path

import numpy as np

from burn_tf.evaluate import common
from burn_tf.evaluate.data import (
    check_labels,
    class_names_for,
    data_name,
    load_labelled_data,
    select_per_class,
)
from burn_tf.evaluate.features import embed_timed, l2_normalize, resolve_input_size
from burn_tf.evaluate.plots import save_png
from burn_tf.evaluate.threads import limit_blas_threads
from burn_tf.progress import Progress

PROTOCOL_SOURCE = ("InvP (seed 002) supplement Fig. 2: t-SNE of the first 40 classes x 200 random "
                   "images, scaled to the data set; L2-normalised features, Barnes-Hut, PCA init")


def run_tsne(features: np.ndarray, perplexity: float = 30.0, max_iter: int = 1000, seed: int = 0,
             blas_threads: int | None = 1):
    """2-d Barnes–Hut t-SNE of L2-normalised features → (embedding [N, 2], KL divergence).

    ``blas_threads`` limits OpenMP/BLAS threads (:func:`~burn_tf.evaluate.threads.limit_blas_threads`;
    measured under load: 90 points 27 s with the default two threads, 0.08 s with one).
    """
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    if perplexity >= n:
        raise ValueError(f"perplexity={perplexity} must be smaller than the number of points ({n})")
    # verbose=2 only makes scikit-learn print a line every 50 iterations, read by _IterationLog.
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                max_iter=max_iter, random_state=seed, verbose=2)
    meter = Progress("tsne", int(max_iter), "iterations", stream=sys.stdout)
    with limit_blas_threads(blas_threads), contextlib.redirect_stdout(_IterationLog(meter)):
        embedding = tsne.fit_transform(l2_normalize(np.asarray(features, np.float64)))
    meter.finish()  # t-SNE may stop before max_iter
    return embedding.astype(np.float32), float(tsne.kl_divergence_)


class _IterationLog(io.TextIOBase):
    """Takes scikit-learn's t-SNE log (``verbose=2``: "[t-SNE] Iteration 50: …" every 50
    iterations) in place of stdout and turns its iteration counts into the progress lines of
    ``meter``; nothing else of the log is shown."""

    ITERATION = re.compile(r"\[t-SNE\] Iteration (\d+):")

    def __init__(self, meter: Progress):
        self.meter = meter

    def write(self, text: str) -> int:
        for match in self.ITERATION.finditer(text):
            self.meter.advance(max(int(match.group(1)) - self.meter.done, 0))
        return len(text)


def plot_tsne(embedding: np.ndarray, labels: np.ndarray, class_names: dict[int, str], path,
              title: str = "") -> str:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    classes = list(np.unique(labels))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(7.5, 6), dpi=110)
    ax = fig.add_subplot(111)
    for i, c in enumerate(classes):
        pts = embedding[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=5, alpha=0.75, color=cmap(i % cmap.N),
                   label=class_names.get(int(c), str(c)), linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=3,
              frameon=False, ncol=1 if len(classes) <= 20 else 2)
    return save_png(fig, path)


def tsne(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    num_classes: int = 10,
    per_class: int = 200,
    split: str = "train",
    perplexity: float = 30.0,
    max_iter: int = 1000,
    batch_size: int = 256,
    image_size: int | None = None,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> dict:
    """t-SNE PNG of the first ``num_classes`` classes × ``per_class`` random images.

    Writes ``tsne.png``, ``tsne_embedding.npz`` (embedding, labels, indices) and
    ``tsne.json`` to ``out_dir`` when given. ``blas_threads`` (also OpenMP): see
    :func:`~burn_tf.evaluate.threads.limit_blas_threads`.
    """
    from sklearn.metrics import silhouette_score

    started = time.perf_counter()
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    images, labels = load_labelled_data(data).split(split)
    check_labels(labels, f"{split} labels", min_classes=1)
    index = select_per_class(labels, num_classes, per_class, seed)
    images, labels = images[index], labels[index]
    (features,), extract_seconds = embed_timed(model, (images,), size, batch_size, "tsne features")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"backbone {model.name!r} produced NaN/Inf features")
    start = time.perf_counter()
    embedding, kl = run_tsne(features, perplexity, max_iter, seed, blas_threads)
    tsne_seconds = time.perf_counter() - start
    silhouette = float(silhouette_score(embedding, labels)) if len(np.unique(labels)) > 1 else float("nan")
    names = class_names_for(data, labels)
    n_classes = int(len(np.unique(labels)))
    plot, embedding_path = None, None
    if out_dir is not None:
        out = Path(out_dir)
        plot = plot_tsne(embedding, labels, names, out / "tsne.png",
                         f"t-SNE — {model.name} ({n_classes} classes × {per_class})")
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "tsne_embedding.npz", embedding=embedding, labels=labels, indices=index)
        embedding_path = str(out / "tsne_embedding.npz")
    result = common.evaluator_result(
        "tsne",
        data=data_name(data),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={"source": PROTOCOL_SOURCE, "split": split, "num_classes": int(num_classes),
                  "per_class": int(per_class), "perplexity": float(perplexity),
                  "max_iter": int(max_iter), "seed": int(seed), "input_size": size},
        seconds=time.perf_counter() - started,
        split=split,
        num_classes=n_classes,
        per_class=int(per_class),
        num_points=int(len(labels)),
        perplexity=float(perplexity),
        kl_divergence=kl,
        silhouette_2d=silhouette,
        extract_seconds=round(extract_seconds, 3),
        tsne_seconds=round(tsne_seconds, 3),
        plot=plot,
        embedding=embedding_path,
    )
    common.write_results(out_dir, "tsne", result)
    return result


def format_result(result: dict) -> str:
    keys = ("num_points", "num_classes", "perplexity", "kl_divergence", "silhouette_2d")
    row = {k: result[k] for k in keys}
    text = f"t-SNE ({result['backbone']['name']}, {result['data']})\n" + common.format_table([row])
    if result.get("plot"):
        text += f"\nplot: {result['plot']}"
    return text
