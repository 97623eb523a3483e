import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import tensorflow as tf
from shape_helpers import check_result_shape

from burn_tf.data.source_info import SourceNotFoundError
from burn_tf.evaluate.data import VOC_CLASSES
from burn_tf.evaluate.detection import DetectionConfigError, detect, summarize_runs
from burn_tf.evaluate.detection import data as detection_data
from burn_tf.evaluate.detection import model as detection_model
from burn_tf.models.larq_zoo import ZooStudentConfig, build_zoo_student, resolution_outputs
from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import save_backbone
from burn_tf.schema import ConfigError

# All 13 blocks: P5 (stride 32) is block 13's output. A build of it costs seconds, so the
# tests share one and rebuild only what detect itself rebuilds.
TINY = ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125)


@pytest.fixture(scope="module")
def tiny_reactnet_13():
    return reactnet_a(TINY)


@pytest.fixture(scope="module")
def tiny_backbone_dir(tiny_reactnet_13, tmp_path_factory):
    path = tmp_path_factory.mktemp("detect") / "backbone"
    save_backbone(tiny_reactnet_13, path)
    return path


# The small CNN's levels at strides 8/16/32: where a test checks detect's arguments or
# plumbing rather than a binary backbone, the detector is built on it (it traces in a
# fraction of a ReActNet-A's time).
SMALL_CNN_LEVELS = "down_3,down_4,down_5"


def small_cnn():
    """A plain functional Keras feature extractor (not a ReActNet-A), strides 2..32."""
    inputs = tf.keras.Input((64, 64, 3))
    x = inputs
    for i, filters in enumerate((8, 8, 16, 16, 16), start=1):
        x = tf.keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"down_{i}")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, x, name="small_cnn")


# --------------------------------------------------------------------------- backbone


@pytest.mark.slow  # > 30 s
def test_reactnet_pyramid_levels_and_rebuild_at_the_detection_size(tiny_reactnet_13):
    model, meta = tiny_reactnet_13, {}  # rebuilt from model.reactnet_config (an export's metadata: the CLI test)
    sized = detection_model.backbone_at_size(model, meta, 64)
    assert sized.inputs[0].shape[1:3] == (64, 64) and sized.reactnet_config.width_multiplier == 0.125
    for a, b in zip(model.get_weights(), sized.get_weights()):
        np.testing.assert_array_equal(a, b)
    for size, rebuilt in ((64, sized), (128, detection_model.backbone_at_size(model, meta, 128))):
        levels = detection_model.resolve_pyramid_layers(rebuilt, None, size, reactnet=True)
        assert levels == {"P3": "block_05_out", "P4": "block_11_out", "P5": "block_13_out"}
    backbone = detection_model.pyramid_backbone(sized, levels)
    import keras_cv

    # protocol "frozen": the RetinaNet's feature extractor shares the backbone's layers, so
    # freezing the wrapper leaves only the FPN and heads trainable.
    detector = detection_model.build_retinanet(sized, levels, 10, anchor_size=8, head_width=8, head_depth=1)
    backbone_ids = {id(v) for v in sized.weights}
    assert any(id(v) in backbone_ids for v in detector.trainable_variables)
    detector.backbone.trainable = False
    assert detector.trainable_variables and not any(id(v) in backbone_ids for v in detector.trainable_variables)

    assert isinstance(backbone, keras_cv.models.Backbone)
    assert backbone.pyramid_level_inputs == levels
    assert backbone.get_layer("block_11_out").output.shape[1:3] == (4, 4)


def test_a_larq_zoo_student_is_rebuilt_at_the_detection_size_and_taps_strides_8_16_32():
    # Rebuilt from model.zoo_config; that an exported student reloads with it:
    # tests/models/test_larq_zoo.py::test_exported_backbone_reloads_with_safe_mode.
    model, meta = build_zoo_student("QuickNet", 32, stage=2), {}
    sized = detection_model.backbone_at_size(model, meta, 64)
    assert sized.zoo_config == ZooStudentConfig("QuickNet", 64, 2)
    for a, b in zip(model.get_weights(), sized.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    levels = detection_model.resolve_pyramid_layers(sized, None, 64, reactnet=False)
    # The last layer at sides 8, 4, 2: the ends of QuickNet's stages 2-4 (and its final ReLU).
    assert [sized.get_layer(levels[k]).output.shape[1] for k in detection_model.LEVELS] == [8, 4, 2]
    assert list(levels.values()) == [n for n, side in resolution_outputs(sized) if side in (8, 4, 2)]
    fresh = detection_model.random_init_like(model, meta, 64, seed=1)
    assert fresh.zoo_config == sized.zoo_config
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), sized.get_weights(), strict=True))
    # 100 px: QuickNet's max-pools (−1 px) give sides 12, 6, 3, not ceil(100 / 8, 16, 32) = 13, 7, 4.
    with pytest.raises(DetectionConfigError, match=r"larq-zoo QuickNet at 100 px has feature maps of sides .* 128"):
        detection_model.resolve_pyramid_layers(detection_model.backbone_at_size(model, meta, 100), None, 100, False)
    with pytest.raises(DetectionConfigError, match="QuickNet cannot take 28 px inputs: it needs at least 29 px"):
        detection_model.backbone_at_size(model, meta, 28)


def test_generic_backbone_needs_pyramid_layers_and_then_builds():
    model = small_cnn()
    with pytest.raises(DetectionConfigError, match="pyramid_layers") as err:
        detection_model.resolve_pyramid_layers(model, None, 64, reactnet=False)
    assert "down_3" in str(err.value)  # suggests the layers at strides 8/16/32
    with pytest.raises(DetectionConfigError, match="no layer 'nope'"):
        detection_model.resolve_pyramid_layers(model, ["down_3", "down_4", "nope"], 64, reactnet=False)
    with pytest.raises(DetectionConfigError, match="stride 8"):
        detection_model.resolve_pyramid_layers(model, ["down_2", "down_4", "down_5"], 64, reactnet=False)
    with pytest.raises(DetectionConfigError, match="three layer names"):
        detection_model.resolve_pyramid_layers(model, ["down_3"], 64, reactnet=False)
    # Cloned at another size, given its levels, it builds a RetinaNet that runs.
    sized = detection_model.backbone_at_size(model, {}, 128)
    assert sized.inputs[0].shape[1:3] == (128, 128)
    levels = detection_model.resolve_pyramid_layers(sized, "down_3,down_4,down_5", 128, reactnet=False)
    detector = detection_model.build_retinanet(sized, levels, 3, anchor_size=16, head_width=8, head_depth=1)
    out = detector(tf.zeros((2, 128, 128, 3)), training=False)
    num_anchors = 9 * sum(math.ceil(128 / s) ** 2 for s in (8, 16, 32, 64, 128))
    assert out["box"].shape == (2, num_anchors, 4) and out["classification"].shape == (2, num_anchors, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"input_size": 80}, DetectionConfigError, "multiple of 32"),
        ({"data": "coco"}, DetectionConfigError, "data must be one of"),
        ({"epochs": 0}, DetectionConfigError, "epochs"),
        ({"nms": "soft"}, DetectionConfigError, "nms"),
        ({"learning_rate": "fast"}, DetectionConfigError, "learning_rate must be a number"),
        ({"num_train": None}, DetectionConfigError, "num_train"),
        ({"protocols": ["linear"]}, DetectionConfigError, "protocols must be one or more of"),
        ({"num_seeds": 0}, DetectionConfigError, "num_seeds"),
        ({"background": "grey", "input_size": 64}, DetectionConfigError, "background must be one of"),
        ({"data": "voc/2007"}, SourceNotFoundError, "data_dir"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    # The data errors come after the backbone is read and rebuilt at the input size: a
    # small CNN, not a ReActNet-A (two builds per case).
    with pytest.raises(error, match=match):
        detect(small_cnn(), pyramid_layers=SMALL_CNN_LEVELS, **kwargs)


def test_voc_needs_a_prepared_data_dir(tmp_path):
    with pytest.raises(SourceNotFoundError, match="not prepared"):
        detect(small_cnn(), pyramid_layers=SMALL_CNN_LEVELS, data="voc/2007", data_dir=tmp_path, input_size=64)


def test_generic_backbone_without_levels_is_refused_by_detect():
    with pytest.raises(DetectionConfigError, match="pyramid_layers"):
        detect(small_cnn(), input_size=64)


def test_voc_examples_become_pixel_xyxy_batches():
    def example(h, w, bbox, labels, difficult):
        return {"image": np.full((h, w, 3), 255, np.uint8),
                "objects": {"bbox": np.array(bbox, np.float32), "label": np.array(labels, np.int64),
                            "is_difficult": np.array(difficult, bool)}}

    examples = [example(40, 60, [[0.1, 0.2, 0.5, 0.6]], [3], [False]),
                example(50, 30, [[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0]], [0, 19], [False, True])]

    def to_ds(items):
        return tf.data.Dataset.from_generator(
            lambda: iter(items),
            output_signature={"image": tf.TensorSpec([None, None, 3], tf.uint8),
                              "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32),
                                          "label": tf.TensorSpec([None], tf.int64),
                                          "is_difficult": tf.TensorSpec([None], tf.bool)}})

    data = detection_data.voc_detection_data(to_ds(examples), to_ds(examples), VOC_CLASSES, 64, 2,
                                             False, 0, "fake")
    np.testing.assert_allclose(data.test_gt[0][0], [[0.2 * 64, 0.1 * 64, 0.6 * 64, 0.5 * 64]], rtol=1e-6)
    np.testing.assert_array_equal(data.test_gt[1][1], [0, 19])
    np.testing.assert_array_equal(data.test_gt[1][2], [False, True])
    batch = next(iter(data.train))
    assert batch["images"].shape == (2, 64, 64, 3)
    assert batch["bounding_boxes"]["boxes"].shape == (2, 2, 4)
    assert sorted(batch["bounding_boxes"]["classes"].numpy().ravel().tolist()) == [-1.0, 0.0, 3.0, 19.0]
    images, index = next(iter(data.test))
    assert images.shape == (2, 64, 64, 3) and index.numpy().tolist() == [0, 1]
    assert data.num_train == 2 and data.num_test == 2


# -------------------------------------------------------------------------- end to end


def test_random_init_like_is_the_same_architecture_freshly_initialised():
    # 4 blocks: the rebuild from the config does not depend on the depth (a third of the
    # 13-block net's build time for each of the four builds).
    model, meta = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125, blocks=4)), {}
    a = detection_model.random_init_like(model, meta, 64, seed=1)
    b = detection_model.random_init_like(model, meta, 64, seed=1)
    c = detection_model.random_init_like(model, meta, 64, seed=2)
    assert a.inputs[0].shape[1:3] == (64, 64)
    assert [w.shape for w in a.get_weights()] == [w.shape for w in model.get_weights()]
    kernel = [i for i, w in enumerate(a.get_weights()) if w.ndim == 4][0]
    np.testing.assert_array_equal(a.get_weights()[kernel], b.get_weights()[kernel])  # seeded
    assert not np.array_equal(a.get_weights()[kernel], c.get_weights()[kernel])
    assert not np.array_equal(a.get_weights()[kernel], model.get_weights()[kernel])


def test_summary_means_stds_and_paired_margins():
    runs = [{"protocol": "frozen", "init": init, "seed": seed, "mAP": m, "AP50": m * 2, "AP75": m / 2}
            for init, values in (("trained", (0.30, 0.32, 0.34)), ("random_init", (0.10, 0.14, 0.12)))
            for seed, m in enumerate(values)]
    summary = summarize_runs(runs, ["frozen"], random_init=True)["frozen"]
    assert summary["trained"]["AP50"]["mean"] == pytest.approx(0.64)
    # spreads over seeds are sample stds (ddof 1), as in compare / ablate
    assert summary["random_init"]["mAP"]["std"] == pytest.approx(np.std([0.10, 0.14, 0.12], ddof=1))
    one_seed = summarize_runs([r for r in runs if r["seed"] == 0], ["frozen"], True)["frozen"]
    assert one_seed["trained"]["mAP"]["std"] == 0.0 and one_seed["margin_mAP"]["std"] == 0.0
    margin = summary["margin_mAP"]
    assert margin["values"] == pytest.approx([0.20, 0.18, 0.22])  # paired by seed
    assert margin["mean"] == pytest.approx(0.20) and margin["exceeds_seed_std"]
    close = [dict(r, mAP=r["mAP"] + (0.19 if r["init"] == "random_init" else 0.0)) for r in runs]
    assert not summarize_runs(close, ["frozen"], True)["frozen"]["margin_mAP"]["exceeds_seed_std"]


@pytest.mark.slow  # two short detector trainings (trained backbone and its random-init floor)
def test_short_real_run_through_the_cli(tiny_backbone_dir, tmp_path):
    from burn_tf.evaluate.__main__ import main

    out = tmp_path / "eval"
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        main(["detect", "--backbone", str(tiny_backbone_dir), "--out", str(out), "--json",
              "--set", "input_size=64", "--set", "epochs=2", "--set", "num_train=128",
              "--set", "num_test=24", "--set", "batch_size=16", "--set", "head_width=16",
              "--set", "head_depth=1", "--set", "verbose=0", "--set", "protocols=frozen"])
    printed = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert "mAP@[.5:.95]" in stdout.getvalue() and "random_init" in stdout.getvalue()
    result = json.loads((out / "detect.json").read_text())
    check_result_shape("detect", result, out, tiny_backbone_dir)  # as every evaluator's
    assert result["pyramid_layers"]["P5"] == "block_13_out"
    assert "Faster R-CNN" in result["protocol"]["source"] and result["protocol"]["protocols"] == ["frozen"]
    assert result["composites"]["background"] == "clutter"
    assert [(r["protocol"], r["init"], r["seed"]) for r in result["runs"]] == [
        ("frozen", "trained", 0), ("frozen", "random_init", 0)]
    for run in result["runs"]:
        losses = run["train_loss"]
        assert len(losses) == 2 and all(np.isfinite(losses)) and losses[-1] < losses[0]
        assert 0.0 <= run["AP75"] <= run["AP50"] <= 1.0 and 0.0 <= run["mAP"] <= 1.0
    for key in ("mAP", "AP50", "AP75"):
        assert result[key] == printed[key] == result["runs"][0][key]
        assert result["random_init_floor"]["frozen"][key] == result["runs"][1][key]
    assert result["summary"]["frozen"]["margin_AP50"]["values"] == [
        pytest.approx(result["runs"][0]["AP50"] - result["runs"][1]["AP50"])]
    assert result["num_train"] == 128 and result["num_test"] == 24 and result["input_size"] == 64
    assert set(result["per_class"]) <= {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                        "Shirt", "Sneaker", "Bag", "Ankle boot"}


def test_under_a_strategy_trains_the_detector_on_its_replicas_as_without():
    """``strategy="mirrored"`` (here one CPU, one replica) builds backbone copy, detector and
    optimizer in the strategy's scope; the run equals the one without a strategy. An unknown
    name is the config error. The backbone is a small CNN (the copy is a clone of it, made in
    the scope as a ReActNet-A's rebuild is, by the same call): a ReActNet-A detector's train
    step takes a minute to trace here, and one trains in the CLI test above."""
    settings = {"input_size": 64, "epochs": 1, "num_train": 32, "num_test": 8, "batch_size": 16,
                "head_width": 8, "head_depth": 1, "protocols": "finetune", "random_init": False,
                "warmup_epochs": 0.0, "verbose": 0, "pyramid_layers": SMALL_CNN_LEVELS}
    backbone = small_cnn()
    before = [w.copy() for w in backbone.get_weights()]
    plain = detect(backbone, **settings)
    mirrored = detect(backbone, strategy="mirrored", **settings)
    assert mirrored["strategy"] == "mirrored" and plain["strategy"] == "default"
    assert mirrored["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)
    assert (mirrored["mAP"], mirrored["AP50"]) == pytest.approx((plain["mAP"], plain["AP50"]), abs=1e-6)
    for a, b in zip(before, backbone.get_weights(), strict=True):  # fine-tuned a copy, both times
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="train.strategy='nowhere'"):
        detect(backbone, strategy="nowhere", **settings)
