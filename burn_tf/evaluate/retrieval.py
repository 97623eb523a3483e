"""Image retrieval with backbone features (CLD supplement §7–8, seed 003).

Each query (a test image) retrieves its top-k cosine neighbours among the bank (train
images). precision@k is the fraction of the k retrievals that share the query's class,
averaged over the queries; ``hit@k`` is the fraction of queries with at least one correct
retrieval in the top k (:func:`burn_tf.evaluate.metrics.precision_at_k`). A PNG grid shows
queries (first column, blue frame) and their ranked retrievals, outlined green when the class
matches and red otherwise, as in the seed's Fig. A.3.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from burn_tf.evaluate import common
from burn_tf.evaluate.data import class_names_for, data_name, load_train_test
from burn_tf.evaluate.features import embed_timed, resolve_input_size
from burn_tf.evaluate.metrics import check_ks, precision_at_k
from burn_tf.evaluate.neighbours import cosine_topk
from burn_tf.evaluate.plots import save_png

PROTOCOL_SOURCE = (
    "CLD (seed 003) supplement sections 7-8 (Fig. A.3): top-k cosine neighbours of "
    "each test query among the train images; precision@k and hit@k by class"
)


def retrieve(query_features, bank_features, k: int, chunk_size: int | None = None):
    """Top-``k`` cosine neighbours, ranked → (similarities [Q, k], indices [Q, k])."""
    return cosine_topk(query_features, bank_features, k, chunk_size=chunk_size, sort=True)


def _show(ax, image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
    else:
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def _frame(ax, color: str, width: float = 3.0):
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(width)
        spine.set_visible(True)


def plot_retrieval_grid(
    query_images,
    query_labels,
    bank_images,
    bank_labels,
    neighbours,
    path,
    title: str = "",
    class_names: dict | None = None,
) -> str:
    """Rows: query + its ranked retrievals; green frame = same class, red = different."""
    from matplotlib.figure import Figure

    q, k = neighbours.shape
    cell = 1.05
    fig = Figure(figsize=(cell * (k + 1) + 0.4, cell * q + 0.6), dpi=100)
    axes = fig.subplots(q, k + 1, squeeze=False)
    for row in range(q):
        ax = axes[row, 0]
        _show(ax, query_images[row])
        _frame(ax, "tab:blue")
        label = int(query_labels[row])
        ax.set_ylabel((class_names or {}).get(label, str(label)), fontsize=7, rotation=0, ha="right", va="center")
        for col in range(k):
            j = int(neighbours[row, col])
            ax = axes[row, col + 1]
            _show(ax, bank_images[j])
            _frame(ax, "#1a9850" if int(bank_labels[j]) == label else "#d73027")
            if row == 0:
                ax.set_title(str(col + 1), fontsize=8)
    axes[0, 0].set_title("query", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.12, hspace=0.12)
    return save_png(fig, path)


def retrieval(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    ks: Sequence[int] = (1, 5, 10, 20),
    num_queries: int | None = 1000,
    num_bank: int | None = None,
    grid_queries: int = 8,
    grid_k: int = 8,
    batch_size: int = 256,
    chunk_size: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> dict:
    """precision@k of cosine retrieval: ``num_queries`` random test images (default 1000)
    against the train split (default: all of it) as the bank. Writes ``retrieval.json``
    and ``retrieval.png`` (the first ``grid_queries`` queries × ``grid_k`` retrievals)."""
    started = time.perf_counter()
    ks = check_ks(ks)
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    bank_images, bank_labels, query_images, query_labels = load_train_test(
        data, num_bank, num_queries, seed, what=("bank (train) labels", "query (test) labels")
    )
    k_max = max(ks[-1], int(grid_k) if out_dir is not None else 0)
    if k_max > len(bank_labels):
        raise ValueError(f"k={k_max} is larger than the bank ({len(bank_labels)} train images)")
    (f_bank, f_query), extract_seconds = embed_timed(
        model, (bank_images, query_images), size, batch_size, "retrieval features"
    )
    start = time.perf_counter()
    _, neighbours = retrieve(f_query, f_bank, k_max, chunk_size)
    scores = precision_at_k(query_labels, bank_labels, neighbours, ks)
    retrieval_seconds = time.perf_counter() - start
    plot = None
    if out_dir is not None and grid_queries > 0 and grid_k > 0:
        n = min(int(grid_queries), len(query_labels))
        plot = plot_retrieval_grid(
            query_images[:n],
            query_labels[:n],
            bank_images,
            bank_labels,
            neighbours[:n, :grid_k],
            Path(out_dir) / "retrieval.png",
            f"retrieval — {model.name}",
            class_names_for(data, np.concatenate([bank_labels, query_labels])),
        )
    result = common.evaluator_result(
        "retrieval",
        data=data_name(data),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={
            "source": PROTOCOL_SOURCE,
            "ks": ks,
            "num_queries": num_queries,
            "num_bank": num_bank,
            "seed": int(seed),
            "input_size": size,
        },
        seconds=time.perf_counter() - started,
        **scores,
        ks=ks,
        num_queries=int(len(query_labels)),
        num_bank=int(len(bank_labels)),
        extract_seconds=round(extract_seconds, 3),
        retrieval_seconds=round(retrieval_seconds, 3),
        plot=plot,
    )
    common.write_results(out_dir, "retrieval", result)
    return result


def format_result(result: dict) -> str:
    rows = [{"k": k, "precision@k": result[f"precision@{k}"], "hit@k": result[f"hit@{k}"]} for k in result["ks"]]
    text = (
        f"retrieval ({result['backbone']['name']}, {result['data']}, "
        f"{result['num_queries']} queries, bank {result['num_bank']})\n" + common.format_table(rows)
    )
    if result.get("plot"):
        text += f"\nplot: {result['plot']}"
    return text
