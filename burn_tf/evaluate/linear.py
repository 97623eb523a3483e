"""Linear evaluation: a dense softmax classifier on a frozen backbone.

The BURN supplement §1 (following Goyal et al. 2019 / MoCo): one fully-connected layer and a
softmax on the frozen backbone, SGD with momentum 0.9, 100 epochs, lr 30 multiplied by 0.1 at
epochs 60 and 80, no weight decay, batch 256; top-1 / top-5 on the test split.

Two paths, one protocol:

* ``augment=False`` (default, the fast path): features are extracted once (BatchNorm in
  inference mode) and the head is trained on the cached features — exact, since a frozen
  backbone with no augmentation maps each image to the same feature every epoch.
* ``augment=True``: every epoch sees a random resized crop + horizontal flip of each image
  through the frozen backbone (``training=False``: BatchNorm keeps its moving statistics).

The head is initialised N(0, 0.01) with zero bias, as in MoCo's ``main_lincls``; weight decay
is the coupled (PyTorch) kind, a gradient term ``wd · w`` (the training is
:func:`burn_tf.evaluate.probe.sgd_linear_probe`). Accuracies are fractions in [0, 1], top-k by
:func:`burn_tf.evaluate.metrics.topk_accuracy` (ties are not hits).

>>> from burn_tf.evaluate.linear import linear
>>> result = linear("runs/burn/backbone", data="fashion_mnist", epochs=100)
>>> result["top1"], result["top5"]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from burn_tf.evaluate import common
from burn_tf.evaluate.data import (
    check_classification_data,
    first_n_balanced_data,
    load_classification_data,
)
from burn_tf.evaluate.features import resolve_input_size
from burn_tf.evaluate.probe import sgd_linear_probe

TASK = "linear"
PROTOCOL_SOURCE = ("BURN supplement section 1 (Goyal et al. 2019 / MoCo main_lincls): frozen backbone, "
                   "dense softmax, SGD m 0.9, 100 epochs, lr 30 x0.1 at 60 and 80, wd 0, batch 256")
DEFAULT_DATA = "fashion_mnist"


def linear(
    backbone,
    *,
    data: Any = DEFAULT_DATA,
    out_dir=None,
    epochs: int = 100,
    lr: float = 30.0,
    milestones: Sequence[int] = (60, 80),
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    augment: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    image_size: int | None = None,
    feature_batch_size: int = 256,
    strategy: str = "default",
) -> dict:
    """Linear evaluation of ``backbone`` (exported path or Keras feature extractor).

    ``strategy`` (default | mirrored | multiworker | tpu, as ``train.strategy``) trains the
    head on every replica; ``batch_size`` is the global batch.

    ``data``: ``"fashion_mnist"`` (default), ``"tfds:<name>"`` with ``data_dir``, or
    ``(x_train, y_train, x_test, y_test)``. ``train_subset`` / ``test_subset`` keep the first
    N examples, class-balanced. Returns top-1 / top-5 (fractions) on the test split.
    """
    started = time.time()
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    model, meta = common.resolve_backbone(backbone)
    size = resolve_input_size(model, image_size)
    dataset = load_classification_data(data, image_size=size, data_dir=data_dir)
    dataset = check_classification_data(first_n_balanced_data(dataset, train_subset, test_subset))
    scores = sgd_linear_probe(
        model, dataset, size=size, epochs=int(epochs), lr=float(lr), milestones=list(milestones),
        gamma=float(gamma), momentum=float(momentum), weight_decay=float(weight_decay),
        batch_size=int(batch_size), augment=bool(augment), seed=int(seed),
        feature_batch_size=int(feature_batch_size), strategy=str(strategy),
    )
    result = common.evaluator_result(
        TASK,
        data=dataset.name,
        backbone=common.backbone_info(backbone, model, meta, input_size=size),
        protocol={
            "source": PROTOCOL_SOURCE,
            "epochs": int(epochs), "lr": float(lr), "milestones": [int(m) for m in milestones],
            "gamma": float(gamma), "momentum": float(momentum),
            "weight_decay": float(weight_decay), "batch_size": int(batch_size),
            "augment": bool(augment), "train_subset": train_subset, "test_subset": test_subset,
            "seed": int(seed), "input_size": size, "strategy": str(strategy),
        },
        seconds=time.time() - started,
        **scores,
    )
    common.write_results(out_dir, TASK, result)
    return result


def format_result(result: dict) -> str:
    row = {
        "data": result["data"],
        "classes": result["num_classes"],
        "train": result["num_train"],
        "test": result["num_test"],
        "top1 %": 100.0 * result["top1"],
        f"top{result.get('top5_k', 5)} %": 100.0 * result["top5"],
        "final loss": result["train_loss"][-1] if result.get("train_loss") else float("nan"),
    }
    p = result["protocol"]
    title = (f"linear evaluation of {result['backbone']['name']} — {p['epochs']} epochs, lr "
             f"{p['lr']} ×{p['gamma']} at {p['milestones']}, wd {p['weight_decay']}, batch "
             f"{p['batch_size']}, augment {p['augment']}")
    return title + "\n" + common.format_table([row])
