"""Layer-wise linear probes (InvP supplement §A, seed 002): how good is each block?

For every block output (ReActNet-A: the 13 ``block_XX_out`` layers, from
:func:`burn_tf.models.reactnet.block_output_names`; any other backbone: pass ``layers=`` a
list of layer names) the backbone's activations are **global-average pooled** and cached,
then **one linear probe per block** is trained on the train subset and scored on the test
subset. The table and a PNG curve (accuracy vs block) show where the representation is best
(InvP finds the best ImageNet probe one block before the last).

Probe: scikit-learn ``LogisticRegression`` (multinomial softmax, L-BFGS, L2 penalty
``C``) on standardised pooled features — a linear classifier like the seed's, but
solved to convergence on cached features instead of the seed's 100 SGD epochs at lr 30,
which is fast (seconds per block) and has no learning-rate schedule to tune.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.common import format_table, resolve_backbone, write_results
from burn_tf.evaluate.data import data_name, load_train_test
from burn_tf.evaluate.features import resolve_input_size
from burn_tf.evaluate.images import prepare_images
from burn_tf.evaluate.plots import save_png
from burn_tf.evaluate.threads import limit_blas_threads
from burn_tf.models.reactnet import block_output_names


def pooled_layer_model(model: tf.keras.Model, layers=None) -> tuple[tf.keras.Model, list[str]]:
    """A model image → [pooled output of each layer] and the list of layer names.

    ``layers``: names (default: the ReActNet-A block outputs). Outputs [B,H,W,C] are
    averaged over H, W; [B,T,C] over T; [B,D] are kept.
    """
    if layers is None:

        try:
            layers = block_output_names(model)
        except ValueError:
            raise ValueError(
                f"backbone {model.name!r} has no ReActNet-A block outputs (block_XX_out); pass "
                "layers=[...] the names of the intermediate layers to probe"
            ) from None
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty; pass at least one layer name")
    known = [layer.name for layer in model.layers]
    outputs = []
    for name in layers:
        if name not in known:
            hint = [n for n in known if n.endswith("_out")] or known
            more = " …" if len(hint) > 15 else ""
            raise ValueError(f"backbone {model.name!r} has no layer {name!r}; its layers include: "
                             f"{', '.join(hint[:15])}{more}")
        try:
            out = model.get_layer(name).output
        except AttributeError as err:
            raise ValueError(f"layer {name!r} of {model.name!r} has no single output ({err})") from None
        if isinstance(out, (list, tuple)):
            raise ValueError(f"layer {name!r} has {len(out)} outputs; probe single-output layers")
        rank = out.shape.rank
        if rank == 4:
            out = tf.keras.layers.GlobalAveragePooling2D(name=f"probe_pool_{len(outputs)}")(out)
        elif rank == 3:
            out = tf.keras.layers.GlobalAveragePooling1D(name=f"probe_pool_{len(outputs)}")(out)
        elif rank != 2:
            raise ValueError(f"layer {name!r} output has shape {tuple(out.shape)}; expected rank 2–4")
        outputs.append(out)
    return tf.keras.Model(model.inputs, outputs, name=f"{model.name}_layerwise"), layers


def extract_layer_features(probe_model: tf.keras.Model, images: np.ndarray, image_size: int,
                           batch_size: int = 256) -> list[np.ndarray]:
    """Pooled features of every output of ``probe_model`` (inference mode), batch by batch."""
    forward = tf.function(lambda x: probe_model(x, training=False), reduce_retracing=True)
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        outs = forward(prepare_images(images[start : start + batch_size], image_size))
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        if not parts:
            parts = [[] for _ in outs]
        for bucket, out in zip(parts, outs):
            bucket.append(out.numpy())
    return [np.concatenate(bucket).astype(np.float32) for bucket in parts]


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 200,
                 seed: int = 0, blas_threads: int | None = 1) -> dict:
    """Standardise + multinomial logistic regression → {"top1", "train_top1", "converged"}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(), limit_blas_threads(blas_threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_x), train_y)
    return {
        "top1": float(np.mean(clf.predict(scaler.transform(test_x)) == test_y)),
        "train_top1": float(np.mean(clf.predict(scaler.transform(train_x)) == train_y)),
        "converged": bool(np.max(clf.n_iter_) < max_iter),
    }


def plot_layerwise(rows: list[dict], path, title: str = "") -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 0.45 * len(rows) + 2), 3.6), dpi=110)
    ax = fig.add_subplot(111)
    x = np.arange(1, len(rows) + 1)
    acc = [100 * r["top1"] for r in rows]
    ax.plot(x, acc, "o-", color="tab:blue", label="test top-1")
    ax.plot(x, [100 * r["train_top1"] for r in rows], "s--", color="tab:gray", alpha=0.6,
            label="train top-1")
    best = int(np.argmax(acc))
    ax.annotate(f"{acc[best]:.1f}%", (x[best], acc[best]), textcoords="offset points",
                xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([r["layer"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("block")
    ax.set_ylabel("linear probe accuracy (%)")
    ax.set_title(title or "layer-wise linear probes", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def layerwise(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    layers=None,
    num_train: int | None = 10000,
    num_test: int | None = None,
    C: float = 1.0,
    max_iter: int = 200,
    batch_size: int = 256,
    image_size: int | None = None,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> dict:
    """One linear probe per block on global-average-pooled block outputs.

    Defaults: a 10k random subset of the train split for the probes, the whole test split
    for the accuracy. ``layers``: layer names to probe (default: ReActNet-A's 13 blocks).
    ``max_iter`` bounds the L-BFGS iterations (the ``converged`` column says whether it was
    reached); ``blas_threads`` see :func:`~burn_tf.evaluate.threads.limit_blas_threads`.
    Writes ``layerwise.json`` and ``layerwise.png`` to ``out_dir`` when given.
    """
    model, meta = resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    probe_model, names = pooled_layer_model(model, layers)
    x_train, y_train, x_test, y_test = load_train_test(data, num_train, num_test, seed)
    start = time.perf_counter()
    f_train = extract_layer_features(probe_model, x_train, size, batch_size)
    f_test = extract_layer_features(probe_model, x_test, size, batch_size)
    extract_seconds = time.perf_counter() - start
    rows = []
    start = time.perf_counter()
    for i, (name, a, b) in enumerate(zip(names, f_train, f_test), start=1):
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError(f"layer {name!r} produced NaN/Inf features")
        probe = linear_probe(a, y_train, b, y_test, C=C, max_iter=max_iter, seed=seed,
                             blas_threads=blas_threads)
        rows.append({"block": i, "layer": name, "dim": int(a.shape[1]), **probe})
    best = max(rows, key=lambda r: r["top1"])
    result = {
        "task": "layerwise",
        "data": data_name(data),
        "backbone": meta.get("name", model.name),
        "probe": f"sklearn LogisticRegression(C={C}) on standardised GAP features",
        "layers": names,
        "accuracy": [r["top1"] for r in rows],
        "rows": rows,
        "best_layer": best["layer"],
        "best_top1": best["top1"],
        "num_train": int(len(y_train)),
        "num_test": int(len(y_test)),
        "extract_seconds": round(extract_seconds, 3),
        "probe_seconds": round(time.perf_counter() - start, 3),
        "plot": None,
    }
    if out_dir is not None:
        result["plot"] = plot_layerwise(rows, Path(out_dir) / "layerwise.png",
                                        f"layer-wise linear probes — {result['backbone']}")
    write_results(out_dir, "layerwise", result)
    return result


def format_result(result: dict) -> str:
    table = format_table(result["rows"], ["block", "layer", "dim", "top1", "train_top1", "converged"])
    lines = [f"layer-wise linear probes ({result.get('backbone', '')}, {result.get('data', '')})", table,
             f"best: {result['best_layer']} top-1 {result['best_top1']:.4f}"]
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)
