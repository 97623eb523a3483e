"""The detection evaluator's results: a detector's COCO-style AP on the test images
(:func:`evaluate_detector`), the per-protocol mean ± std over seeds with the paired margin
over the random-init floor (:func:`summarize_runs`) and the printed table
(:func:`format_result`). :mod:`burn_tf.evaluate.detection.train` runs the detectors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from burn_tf.evaluate.common import format_table
from burn_tf.evaluate.metrics import coco_average_precision, seed_std


def evaluate_detector(model, test: tf.data.Dataset, test_gt: list, num_classes: int, max_detections: int = 100) -> dict:
    """Runs ``model`` (a keras-cv RetinaNet) on ``test`` batches of (images, index) and
    scores its decoded detections with :func:`coco_average_precision`."""

    size = model.inputs["images"].shape[1:] if isinstance(model.inputs, dict) else model.inputs[0].shape[1:]

    @tf.function(input_signature=[tf.TensorSpec([None, *size], tf.float32)])
    def predict(images):
        return model.decode_predictions(model(images, training=False), images)

    preds = [None] * len(test_gt)
    for images, index in test:
        out = {k: v.numpy() for k, v in predict(images).items()}
        for row, i in enumerate(index.numpy()):
            n = int(out["num_detections"][row])
            preds[int(i)] = (out["boxes"][row, :n], out["confidence"][row, :n], out["classes"][row, :n])
    if any(p is None for p in preds):
        raise RuntimeError("detection evaluation lost test images (dataset and ground truth disagree)")
    return coco_average_precision(
        [g[0] for g in test_gt], [g[1] for g in test_gt],
        [p[0] for p in preds], [p[1] for p in preds], [p[2] for p in preds],
        num_classes=num_classes, gt_ignore=[g[2] for g in test_gt], max_detections=max_detections,
    )


def mean_over_seeds(values) -> dict:
    """Mean and sample std over seeds (:func:`~burn_tf.evaluate.metrics.seed_std`, ddof 1)."""
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": seed_std(values), "values": values.tolist()}


def summarize_runs(runs: list[dict], protocols, random_init: bool) -> dict:
    """Per protocol: trained (and random-init) AP / AP50 / AP75 mean ± std over the seeds and,
    with the floor, the paired margin trained − random per seed."""
    out = {}
    for protocol in protocols:
        entry = {}
        for init in ("trained", "random_init") if random_init else ("trained",):
            chosen = [r for r in runs if r["protocol"] == protocol and r["init"] == init]
            entry[init] = {key: mean_over_seeds([r[key] for r in chosen]) for key in ("mAP", "AP50", "AP75")}
        if random_init:
            trained = [r for r in runs if r["protocol"] == protocol and r["init"] == "trained"]
            floor = {r["seed"]: r for r in runs if r["protocol"] == protocol and r["init"] == "random_init"}
            for key in ("mAP", "AP50", "AP75"):
                margin = mean_over_seeds([r[key] - floor[r["seed"]][key] for r in trained])
                spread = max(entry["trained"][key]["std"], entry["random_init"][key]["std"])
                margin["exceeds_seed_std"] = bool(margin["mean"] > spread)
                entry[f"margin_{key}"] = margin
        out[protocol] = entry
    return out


def format_result(result: dict) -> str:
    lines = [
        f"detect [{result['data']}] {result['detector']}",
        f"  {result['num_train']} train / {result['num_test']} test images, {result['input_size']} px, "
        f"{result['epochs']} epochs, seeds {result['protocol']['seeds']}, "
        f"anchor coverage {result['anchor_coverage']:.2f}",
    ]
    rows = []
    for protocol, entry in result["summary"].items():
        for init in ("trained", "random_init"):
            if init in entry:
                rows.append(
                    {
                        "protocol": protocol,
                        "backbone": init,
                        **{
                            k: f"{entry[init][k]['mean']:.4f} ± {entry[init][k]['std']:.4f}"
                            for k in ("mAP", "AP50", "AP75")
                        },
                    }
                )
        if "margin_AP50" in entry:
            m = entry["margin_AP50"]
            rows.append(
                {
                    "protocol": protocol,
                    "backbone": "margin (paired)",
                    "mAP": f"{entry['margin_mAP']['mean']:+.4f}",
                    "AP50": f"{m['mean']:+.4f} ± {m['std']:.4f}",
                    "AP75": f"{entry['margin_AP75']['mean']:+.4f}",
                }
            )
    lines.append(format_table(rows, ["protocol", "backbone", "mAP", "AP50", "AP75"]))
    lines.append(
        f"  mAP@[.5:.95] {result['mAP']:.4f}   AP50 {result['AP50']:.4f}   AP75 {result['AP75']:.4f}"
        f"   (trained, {result['protocol']['protocols'][0]}, mean over seeds)"
    )
    return "\n".join(lines)
