import json
import shutil

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from larq_zoo import preprocess_input
from larq_zoo.sota.quicknet import QuickNetFactory

from burn_tf.models.larq_zoo import (
    REFUSED_ZOO_MODELS,
    ZOO_STUDENTS,
    build_zoo_student,
    zoo_min_input_size,
    zoo_stage_factory,
)
from burn_tf.models.reactnet import Normalize, transfer_stage1_to_stage2
from burn_tf.saved_backbone import BackboneFormatError, load_backbone, load_keras_file, save_backbone
from burn_tf.summary import model_stats

TEST_SIZE = 32
# The fast tier builds the two students issue 29 names first; the others are slow (a
# student's two builds take 10-20 s).
FAST = ("QuickNet", "BiRealNet")
# The smallest input of each student, from its layers (see zoo_min_input_size).
MIN_SIZES = {"QuickNetSmall": 29, "QuickNet": 29, "QuickNetLarge": 29, "BiRealNet": 1, "RealToBinaryNet": 1,
             "BinaryDenseNet28": 8, "BinaryDenseNet37": 8, "XNORNet": 217}


def _params(names, fast=FAST):
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


def _size(name: str) -> int:
    """The test size, or the student's minimum where it cannot take 32 px (XNOR-Net: 217)."""
    return max(TEST_SIZE, zoo_min_input_size(name))


def _quantized(model: tf.keras.Model) -> list:
    """The layers with an input and a kernel quantizer (QuickNet's FP stem depthwise conv has neither)."""
    return [layer for layer in model.layers if isinstance(layer, (lq.layers.QuantConv2D, lq.layers.QuantDense))]


@pytest.fixture(scope="module", params=_params(ZOO_STUDENTS))
def stages(request):
    name = request.param
    return name, build_zoo_student(name, _size(name), stage=1), build_zoo_student(name, _size(name), stage=2)


def test_each_student_gives_pooled_features_of_images_in_0_1(stages):
    name, stage1, stage2 = stages
    size, dim = _size(name), ZOO_STUDENTS[name].feature_dim
    images = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype("float32")
    for model in (stage1, stage2):
        assert model.input_shape == (None, size, size, 3)
        assert model.output_shape == (None, dim)
        assert isinstance(model.get_layer("normalize"), Normalize)
        features = model(images, training=False).numpy()
        assert features.shape == (2, dim) and np.isfinite(features).all()
    assert stage2.zoo_config.name == name and stage2.zoo_config.stage == 2
    # The same layer names in both stages although stage 2 was built later in this process.
    assert [layer.name for layer in stage1.layers] == [layer.name for layer in stage2.layers]


def test_stage1_has_binary_activations_and_real_weights_stage2_binary_weights_too(stages):
    name, stage1, stage2 = stages
    one, two = model_stats(stage1), model_stats(stage2)
    assert one["binary_macs"] == 0 and one["binary_params"] == 0
    assert one["binary_activation_macs"] > 0
    assert two["binary_macs"] == two["binary_activation_macs"] == one["binary_activation_macs"]
    assert two["binary_params"] > 0 and two["total_params"] == one["total_params"]
    for layer1, layer2 in zip(_quantized(stage1), _quantized(stage2), strict=True):
        # The zoo's input quantizer in both stages; its kernel quantizer only in stage 2.
        assert type(layer1.input_quantizer) is type(layer2.input_quantizer)
        assert layer1.kernel_quantizer is None and layer1.kernel_constraint is None
        if layer2.input_quantizer is not None:
            assert layer2.kernel_quantizer is not None


def test_stage2_starts_from_stage1_every_weight_and_batchnorm_statistic(stages):
    name, stage1, stage2 = stages
    rng = np.random.default_rng(1)
    for layer in stage1.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):  # statistics that differ from the init
            layer.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    copied = transfer_stage1_to_stage2(stage1, stage2)
    binary = [layer.name for layer in _quantized(stage2) if layer.kernel_quantizer is not None]
    assert binary and set(binary) <= set(copied)
    for layer in stage2.layers:
        for mine, theirs in zip(layer.get_weights(), stage1.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{name} {layer.name}")


# One student per way of building (QuickNetSmall and -Large are QuickNet's factory with other
# block counts, BinaryDenseNet37 is BinaryDenseNet28's): a save and a safe-mode load of a
# 12-23 M-parameter model is 15-45 s of the test command each.
RELOADED = ("QuickNet", "BiRealNet", "RealToBinaryNet", "BinaryDenseNet28", "XNORNet")


# The stage-2 student of the module's `stages` (pytest runs these with the other tests of the
# same student: one build per student and stage in the module).
@pytest.mark.parametrize("stages", _params(RELOADED, fast=("QuickNet",)), indirect=True)
def test_exported_backbone_reloads_with_safe_mode(stages, tmp_path):
    # QuickNet: a registered initializer function and TFOpLambda adds; Real-to-Binary Net:
    # its identity Lambdas became Identity layers.
    name, _, stage2 = stages
    images = np.random.default_rng(2).uniform(0, 1, (2, _size(name), _size(name), 3)).astype("float32")
    save_backbone(stage2, tmp_path / "backbone")
    loaded, meta = load_backbone(tmp_path / "backbone")
    assert meta["feature_dim"] == ZOO_STUDENTS[name].feature_dim
    # Rebuilt from metadata.json (what the student is) and its weights file.
    assert meta["architecture"] == "larq_zoo" and meta["stage"] == 2 and meta["input_size"] == _size(name)
    assert meta["student"] == {"name": name, "input_size": _size(name), "stage": 2}
    assert loaded.zoo_config == stage2.zoo_config and loaded.name == stage2.name
    np.testing.assert_array_equal(loaded(images, training=False), stage2(images, training=False))
    # The .keras file alone loads too, with safe_mode.
    alone = load_keras_file(tmp_path / "backbone" / "backbone.keras")
    np.testing.assert_array_equal(alone(images, training=False), stage2(images, training=False))


@pytest.mark.parametrize("stages", ["BiRealNet"], indirect=True)  # zoo_export's student
@pytest.mark.parametrize("student, words", [
    ({"name": "MobileNet", "input_size": 32, "stage": 2}, ["'MobileNet' is not one of the students"]),
    ({"name": "BiRealNet", "input_size": 32, "stage": 3}, ["stage must be one of"]),
    ({"name": "BiRealNet", "input_size": 32, "stage": 2, "width_multiplier": 0.5}, ["width_multiplier"]),
    ("BiRealNet", ["key 'student' must be a mapping"]),
    ({"name": "QuickNetSmall", "input_size": 32, "stage": 2}, ["backbone.weights.h5: does not fit a larq-zoo student"]),
])
def test_bad_zoo_metadata_names_the_file_and_key(stages, zoo_export, tmp_path, student, words):
    path = tmp_path / "backbone"
    shutil.copytree(zoo_export, path)
    meta = json.loads((path / "metadata.json").read_text())
    (path / "metadata.json").write_text(json.dumps({**meta, "student": student}))
    with pytest.raises(BackboneFormatError) as err:
        load_backbone(path)
    for word in [*words, "metadata.json" if "weights" not in words[0] else "backbone"]:
        assert word in str(err.value)


@pytest.fixture(scope="module")
def zoo_export(stages, tmp_path_factory):
    """The stage-2 BiRealNet at 32 px of ``stages``, exported (no build of its own)."""
    name, _, stage2 = stages
    assert name == "BiRealNet" and stage2.zoo_config.input_size == 32
    return save_backbone(stage2, tmp_path_factory.mktemp("zoo") / "backbone")


def test_min_input_sizes_follow_the_layers():
    assert {name: zoo_min_input_size(name) for name in ZOO_STUDENTS} == MIN_SIZES


# One student per size rule (_quicknet_sizes, _densenet_sizes, _xnornet_sizes; the ResNet-18
# layouts build down to 1 px).
@pytest.mark.parametrize("name", _params(["QuickNet", "BinaryDenseNet28", "XNORNet"]))
def test_larq_zoo_itself_builds_at_the_minimum_and_not_below(name):
    minimum = zoo_min_input_size(name)
    factory = zoo_stage_factory(name, 2)
    factory(include_top=False, weights=None, input_shape=(minimum, minimum, 3), num_classes=1000).build()
    with pytest.raises(ValueError):
        factory(include_top=False, weights=None, input_shape=(minimum - 1, minimum - 1, 3), num_classes=1000).build()


@pytest.mark.parametrize("name, size, words", [
    ("QuickNet", 28, ["QuickNet", "28 px", "at least 29 px"]),
    ("XNORNet", 32, ["XNORNet", "at least 217 px"]),
    ("BiRealNet", 2048, ["BiRealNet", "at most 1024"]),
])
def test_a_size_the_student_cannot_take_names_the_model_and_the_limit(name, size, words):
    with pytest.raises(ValueError) as err:
        build_zoo_student(name, size, stage=1)
    for word in words:
        assert word in str(err.value)


def test_refused_and_unknown_models_are_named_with_the_reason():
    with pytest.raises(ValueError, match=r"DoReFaNet.*cannot be a binary student.*2-bit"):
        build_zoo_student("DoReFaNet", 224)
    assert "DoReFaNet" in REFUSED_ZOO_MODELS
    with pytest.raises(ValueError, match=r"'MobileNet' is not one of the students.*QuickNet"):
        build_zoo_student("MobileNet", 224)
    with pytest.raises(ValueError, match="stage must be one of"):
        build_zoo_student("QuickNet", 32, stage=3)


def test_stage1_factory_drops_only_the_kernel_quantizer():
    kwargs = dict(include_top=False, weights=None, input_shape=(32, 32, 3), num_classes=1000)
    zoo, stage1 = QuickNetFactory(**kwargs), zoo_stage_factory("QuickNet", 1)(**kwargs)
    assert zoo_stage_factory("QuickNet", 2) is QuickNetFactory
    assert stage1.kernel_quantizer is None and stage1.kernel_constraint is None
    config = {k: v for k, v in stage1.input_quantizer.get_config().items() if k != "name"}
    assert config == {k: v for k, v in zoo.input_quantizer.get_config().items() if k != "name"}
    assert config["clip_value"] == 1.25
    assert zoo.kernel_quantizer is not None


def test_normalisation_is_larq_zoo_preprocess_input_of_0_255_pixels():
    # A constant image: larq-zoo's crop and resize leave it as it is, only the normalisation acts.
    pixel = np.array([200.0, 30.0, 120.0], "float32")
    image = np.broadcast_to(pixel, (256, 256, 3)).copy()
    theirs = np.asarray(preprocess_input(image))[0, 0]
    mine = Normalize()(tf.constant(pixel[None] / 255.0)).numpy()[0]
    np.testing.assert_allclose(mine, theirs, rtol=1e-5)
