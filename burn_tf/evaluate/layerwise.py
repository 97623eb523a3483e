"""Layer-wise linear probes (InvP supplement, seed 002): how good is each block?

Protocol source: Invariance Propagation supplement (seed 002), § "Layer-wise Linear Results"
and § "linear classification" of its implementation details. The result's ``"protocol"``
names the protocol that ran (``protocol=``):

* ``"seed"`` — the seed's protocol: every block output (ReActNet-A: the stem and the 13
  ``block_XX_out`` layers; a larq-zoo student: the last layer at each resolution) is
  **average-pooled** — globally for ImageNet-style data (every
  data set here but Places/VOC), to about **9,000 dimensions** for Places205 / VOC07 (a g×g
  grid with channels · g² closest to 9,000, capped at the map's side) — and one linear
  softmax layer per block is trained on the frozen features with **SGD, momentum 0.9, 100
  epochs, batch 256, lr 30 (3.0 for Places/VOC), ×0.1 at epochs 60 and 80, no weight
  decay** (MoCo's init N(0, 0.01)). The heads are trained together on the same mini-batches;
  their parameters are disjoint and the loss is the sum of the per-head losses, so each head
  gets exactly the updates it would get alone.
* ``"fast"`` (default) — scikit-learn ``LogisticRegression`` (multinomial, L-BFGS, L2
  penalty ``C``) on *standardised* globally pooled features of a 10k train subset: the same
  kind of classifier solved to convergence in seconds per block, with no schedule to tune;
  good for comparing blocks, not for the seed's absolute numbers.

Accuracy is top-1 (and top-5) by :func:`burn_tf.evaluate.metrics.topk_accuracy`: ties are
broken towards the lower class index and are never counted as hits. The table and a PNG
curve (accuracy vs block, the best block starred as in seed 002's Fig. 1) show where the
representation is best (InvP finds the best ImageNet probe one block before the last).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from burn_tf.data.eval_images import prepare_images
from burn_tf.evaluate import common
from burn_tf.evaluate.data import data_name, load_train_test
from burn_tf.evaluate.features import (
    GridAveragePooling,
    pooling_grid_for,
    resolve_input_size,
)
from burn_tf.evaluate.metrics import topk_accuracy
from burn_tf.evaluate.plots import save_png
from burn_tf.evaluate.probe import dense_head, step_schedule
from burn_tf.evaluate.threads import limit_blas_threads
from burn_tf.models.larq_zoo import resolution_outputs
from burn_tf.models.reactnet import block_output_names
from burn_tf.progress import Progress, format_value

PROTOCOLS = ("fast", "seed")
SEED_SOURCE = ("Invariance Propagation supplement (seed 002), 'Layer-wise Linear Results' and "
               "'linear classification': per-block average pooling (global; ~9,000-d for "
               "Places205/VOC07), linear layer, SGD m 0.9, 100 epochs, batch 256, lr 30 (3.0 "
               "Places/VOC), x0.1 at 60 and 80, wd 0")
FAST_SOURCE = ("burn_tf fast probe: sklearn LogisticRegression on standardised globally pooled "
               "block features (a stand-in for seed 002's SGD probe)")
SCENE_POOL_DIM = 9000
STEM_LAYER = "stem_bn"


def default_layers(model: tf.keras.Model) -> list[str]:
    """The ReActNet-A stem output (``stem_bn``) and its 13 block outputs, in order; for a
    larq-zoo student the last layer at each spatial resolution (its stage outputs:
    :func:`~burn_tf.models.larq_zoo.resolution_outputs`)."""
    if getattr(model, "zoo_config", None) is not None:
        return [name for name, _ in resolution_outputs(model)]
    try:
        blocks = block_output_names(model)
    except ValueError:
        raise ValueError(
            f"backbone {model.name!r} has no ReActNet-A block outputs (block_XX_out); pass "
            "layers=[...] the names of the intermediate layers to probe"
        ) from None
    names = [layer.name for layer in model.layers]
    return ([STEM_LAYER] if STEM_LAYER in names else []) + blocks


def pooled_layer_model(model: tf.keras.Model, layers=None, pool_dim: int | None = None
                       ) -> tuple[tf.keras.Model, list[str]]:
    """A model image → [pooled output of each layer] and the list of layer names.

    ``layers``: names (default: :func:`default_layers`, the stem and the ReActNet-A block
    outputs). Outputs [B,H,W,C] are averaged over H, W (``pool_dim=None``) or over a g×g
    grid with C·g² closest to ``pool_dim`` (g capped at the map's side); [B,T,C] are
    averaged over T; [B,D] are kept.
    """
    if layers is None:
        layers = default_layers(model)
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
        if rank == 4 and pool_dim is not None:
            grid = min(pooling_grid_for(int(out.shape[-1]), int(pool_dim)), int(out.shape[1]), int(out.shape[2]))
            out = GridAveragePooling(grid, name=f"probe_pool_{len(outputs)}")(out)
        elif rank == 4:
            out = tf.keras.layers.GlobalAveragePooling2D(name=f"probe_pool_{len(outputs)}")(out)
        elif rank == 3:
            out = tf.keras.layers.GlobalAveragePooling1D(name=f"probe_pool_{len(outputs)}")(out)
        elif rank != 2:
            raise ValueError(f"layer {name!r} output has shape {tuple(out.shape)}; expected rank 2–4")
        outputs.append(out)
    return tf.keras.Model(model.inputs, outputs, name=f"{model.name}_layerwise"), layers


def extract_layer_features(probe_model: tf.keras.Model, images: np.ndarray, image_size: int,
                           batch_size: int = 256, progress: str | None = None) -> list[np.ndarray]:
    """Pooled features of every output of ``probe_model`` (inference mode), batch by batch.
    ``progress`` names the phase in progress lines (None: silent)."""
    forward = tf.function(lambda x: probe_model(x, training=False), reduce_retracing=True)
    parts: list[list[np.ndarray]] = []
    meter = Progress(progress, math.ceil(len(images) / batch_size), "batches") if progress else None
    for start in range(0, len(images), batch_size):
        outs = forward(prepare_images(images[start : start + batch_size], image_size))
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        if not parts:
            parts = [[] for _ in outs]
        for bucket, out in zip(parts, outs):
            bucket.append(out.numpy())
        if meter:
            meter.advance()
    return [np.concatenate(bucket).astype(np.float32) for bucket in parts]


def logistic_regression_probe(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 200,
                              seed: int = 0, blas_threads: int | None = 1) -> dict:
    """The ``fast`` protocol's probe: standardise + multinomial logistic regression (sklearn,
    L-BFGS) → {"top1", "train_top1", "converged"}. The seed protocol's SGD heads are
    :func:`train_probes_sgd`; the linear evaluator's is :func:`burn_tf.evaluate.probe.sgd_linear_probe`."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(), limit_blas_threads(blas_threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_x), train_y)
    return {
        "top1": _top1(clf.decision_function(scaler.transform(test_x)), clf.classes_, test_y),
        "train_top1": _top1(clf.decision_function(scaler.transform(train_x)), clf.classes_, train_y),
        "converged": bool(np.max(clf.n_iter_) < max_iter),
    }


def _top1(scores, classes, labels) -> float:
    """Top-1 by the one tie rule of :func:`~burn_tf.evaluate.metrics.topk_accuracy`, for
    sklearn class scores over ``classes`` (its sorted label set; unseen labels are misses)."""
    scores = np.asarray(scores)
    if scores.ndim == 1:  # two classes: sklearn gives the score of classes[1]
        scores = np.stack([-scores, scores], axis=1)
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    labels = np.asarray(labels).tolist()
    known = np.array([y in index for y in labels], bool)
    if not known.any():
        return 0.0
    mapped = np.array([index[y] for y, seen in zip(labels, known) if seen], np.int64)
    return topk_accuracy(scores[known], mapped, 1) * float(known.mean())


def train_probes_sgd(train_feats: list[np.ndarray], train_y: np.ndarray, num_classes: int, *,
                     epochs: int = 100, lr: float = 30.0, milestones=(60, 80), gamma: float = 0.1,
                     momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 256,
                     seed: int = 0) -> tuple[list[tf.keras.layers.Dense], list[float]]:
    """Seed 002's linear probes: one dense softmax head per feature block, SGD with momentum
    under a step schedule, trained together on the same shuffled mini-batches (disjoint
    parameters, summed losses: each head's updates are those of training it alone).
    Returns the heads and the mean per-head loss of each epoch; FloatingPointError if a
    loss is not finite."""
    tf.keras.utils.set_random_seed(int(seed))
    dims = [int(f.shape[1]) for f in train_feats]
    heads = [dense_head(num_classes, weight_decay, seed + i, name=f"probe_{i}") for i in range(len(dims))]
    for head, dim in zip(heads, dims):
        head.build((None, dim))
    n = len(train_y)
    steps = math.ceil(n / batch_size)
    optimizer = tf.keras.optimizers.SGD(step_schedule(epochs, lr, milestones, gamma, steps), momentum=momentum)
    variables = [v for head in heads for v in head.trainable_variables]
    optimizer.build(variables)  # made inside the first trace they would make `step` trace twice
    features = tf.constant(np.concatenate(train_feats, axis=1), tf.float32)
    labels = tf.constant(np.asarray(train_y, np.int64))
    splits = np.cumsum([0] + dims).tolist()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def step(index):
        x, y = tf.gather(features, index), tf.gather(labels, index)
        with tf.GradientTape() as tape:
            losses = [tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                y, head(x[:, a:b]), from_logits=True)) for head, a, b in zip(heads, splits[:-1], splits[1:])]
            total = tf.add_n(losses)
            if weight_decay:
                total += tf.add_n([tf.add_n(h.losses) for h in heads])
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return tf.add_n(losses) / len(losses)

    rng = np.random.default_rng(int(seed))
    history = []
    meter = Progress("layerwise SGD probes", int(epochs), "epochs")
    for epoch in range(int(epochs)):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            total += float(step(tf.constant(order[start : start + batch_size])))
        history.append(total / steps)
        meter.advance(note=f"loss {format_value(history[-1])}")
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"layer-wise SGD probes: the loss became {history[-1]} at epoch "
                                     f"{epoch + 1} (lr {lr}); lower lr")
    return heads, history


def plot_layerwise(rows: list[dict], path, title: str = "") -> str:
    """Accuracy per block; the best block is starred and named, as in seed 002's Fig. 1."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 0.45 * len(rows) + 2), 3.6), dpi=110)
    ax = fig.add_subplot(111)
    x = np.arange(1, len(rows) + 1)
    acc = [100 * r["top1"] for r in rows]
    ax.plot(x, acc, "o-", color="tab:blue", label="test top-1")
    if all("train_top1" in r for r in rows):
        ax.plot(x, [100 * r["train_top1"] for r in rows], "s--", color="tab:gray", alpha=0.6,
                label="train top-1")
    best = int(np.argmax(acc))
    ax.plot([x[best]], [acc[best]], marker="*", markersize=16, color="tab:red", linestyle="none",
            label=f"best: {rows[best]['layer']}")
    ax.axvline(x[best], color="tab:red", alpha=0.3, linestyle=":")
    ax.annotate(f"{acc[best]:.1f}%", (x[best], acc[best]), textcoords="offset points",
                xytext=(0, 9), ha="center", fontsize=8, color="tab:red")
    ax.set_xticks(x)
    ax.set_xticklabels([r["layer"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("block")
    ax.set_ylabel("linear probe accuracy (%)")
    ax.set_title(title or "layer-wise linear probes", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def _is_scene_data(data) -> bool:
    name = data_name(data).lower()
    return "places" in name or "voc" in name


def layerwise(
    backbone,
    *,
    data="fashion_mnist",
    out_dir=None,
    protocol: str = "fast",
    layers=None,
    num_train: int | None | str = "auto",
    num_test: int | None = None,
    pool_dim: int | None | str = "auto",
    C: float = 1.0,
    max_iter: int = 200,
    epochs: int = 100,
    lr: float | str = "auto",
    milestones=(60, 80),
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    probe_batch_size: int = 256,
    batch_size: int = 256,
    image_size: int | None = None,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> dict:
    """One linear probe per block on pooled block outputs (module docstring: protocols).

    ``protocol="seed"``: seed 002's SGD probes (``epochs``, ``lr`` — ``"auto"`` is 30, or 3.0
    for Places/VOC data —, ``milestones``, ``momentum``, ``weight_decay``,
    ``probe_batch_size``) on ``pool_dim`` pooled features (``"auto"``: global, ~9,000-d for
    Places/VOC; ``None`` global; a number: that many dimensions); ``num_train`` ``"auto"``
    is the whole train split. ``protocol="fast"``: logistic regression (``C``, ``max_iter``
    L-BFGS iterations, the ``converged`` column says whether it stopped early;
    ``blas_threads`` see :func:`~burn_tf.evaluate.threads.limit_blas_threads`) on globally
    pooled features of a 10k train subset (``num_train`` ``"auto"``).
    Either way the whole test split is scored; ``layers``: layer names to probe (default:
    ReActNet-A's stem and 13 blocks). Writes ``layerwise.json`` and ``layerwise.png`` to
    ``out_dir`` when given.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    seed_protocol = protocol == "seed"
    scene = _is_scene_data(data)
    if num_train == "auto":
        num_train = None if seed_protocol else 10000
    if pool_dim == "auto":
        pool_dim = SCENE_POOL_DIM if (seed_protocol and scene) else None
    if pool_dim is not None and (isinstance(pool_dim, bool) or not isinstance(pool_dim, (int, np.integer))
                                 or pool_dim < 1):
        raise ValueError(f"pool_dim must be 'auto', None or a positive integer, got {pool_dim!r}")
    if lr == "auto":
        lr = 3.0 if scene else 30.0
    started = time.perf_counter()
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    probe_model, names = pooled_layer_model(model, layers, pool_dim)
    x_train, y_train, x_test, y_test = load_train_test(data, num_train, num_test, seed)
    start = time.perf_counter()
    f_train = extract_layer_features(probe_model, x_train, size, batch_size, "layerwise train features")
    f_test = extract_layer_features(probe_model, x_test, size, batch_size, "layerwise test features")
    extract_seconds = time.perf_counter() - start
    for name, a, b in zip(names, f_train, f_test):
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError(f"layer {name!r} produced NaN/Inf features")
    rows = []
    start = time.perf_counter()
    if seed_protocol:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        heads, history = train_probes_sgd(
            f_train, y_train, num_classes, epochs=int(epochs), lr=float(lr), milestones=milestones,
            momentum=float(momentum), weight_decay=float(weight_decay),
            batch_size=int(probe_batch_size), seed=int(seed))
        k5 = min(5, num_classes)
        for i, (name, head, a, b) in enumerate(zip(names, heads, f_train, f_test)):
            test_logits, train_logits = head(b).numpy(), head(a).numpy()
            rows.append({"block": i, "layer": name, "dim": int(a.shape[1]),
                         "top1": topk_accuracy(test_logits, y_test, 1),
                         "top5": topk_accuracy(test_logits, y_test, k5),
                         "train_top1": topk_accuracy(train_logits, y_train, 1)})
        probe = {
            "protocol": "seed", "source": SEED_SOURCE,
            "pooling": "global" if pool_dim is None else f"grid to ~{int(pool_dim)} dims",
            "epochs": int(epochs), "lr": float(lr), "milestones": [int(m) for m in milestones],
            "gamma": 0.1, "momentum": float(momentum), "weight_decay": float(weight_decay),
            "batch_size": int(probe_batch_size), "train_loss": history,
        }
    else:
        meter = Progress("layerwise logistic probes", len(names), "layers")
        for i, (name, a, b) in enumerate(zip(names, f_train, f_test)):
            fit = logistic_regression_probe(a, y_train, b, y_test, C=C, max_iter=max_iter, seed=seed,
                               blas_threads=blas_threads)
            rows.append({"block": i, "layer": name, "dim": int(a.shape[1]), **fit})
            meter.advance(note=name)
        probe = {"protocol": "fast", "source": FAST_SOURCE, "pooling": "global",
                 "C": float(C), "max_iter": int(max_iter)}
    probe_seconds = time.perf_counter() - start
    best = max(rows, key=lambda r: r["top1"])  # first best on ties
    plot = None
    if out_dir is not None:
        plot = plot_layerwise(rows, Path(out_dir) / "layerwise.png",
                              f"layer-wise linear probes ({protocol}) — {model.name}")
    result = common.evaluator_result(
        "layerwise",
        data=data_name(data),
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol=probe,
        seconds=time.perf_counter() - started,
        probe=probe["source"],
        layers=names,
        accuracy=[r["top1"] for r in rows],
        rows=rows,
        best_layer=best["layer"],
        best_block=best["block"],
        best_top1=best["top1"],
        num_train=int(len(y_train)),
        num_test=int(len(y_test)),
        extract_seconds=round(extract_seconds, 3),
        probe_seconds=round(probe_seconds, 3),
        plot=plot,
    )
    common.write_results(out_dir, "layerwise", result)
    return result


def format_result(result: dict) -> str:
    columns = ["block", "layer", "dim", "top1", "train_top1"]
    columns += ["converged"] if result["protocol"]["protocol"] == "fast" else ["top5"]
    table = common.format_table(result["rows"], columns)
    lines = [f"layer-wise linear probes, {result['protocol']['protocol']} protocol "
             f"({result['backbone']['name']}, {result['data']})", table,
             f"best: {result['best_layer']} top-1 {result['best_top1']:.4f}"]
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)
