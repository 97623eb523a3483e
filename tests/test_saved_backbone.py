"""The exported-backbone format: round trip, metadata, refusals, a run's backbone."""

import hashlib
import json

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.models.reactnet import ReActNetConfig, reactnet_a
from burn_tf.saved_backbone import (
    FORMAT,
    METADATA_FILE,
    BackboneFormatError,
    find_backbone,
    load_backbone,
    model_stage,
    read_metadata,
    resolve_backbone,
    save_backbone,
)


def test_reactnet_round_trip_and_metadata(tmp_path):
    model = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125, blocks=4))
    path = save_backbone(model, tmp_path / "run" / "stage2" / "backbone", {"method": "burn"})
    loaded, meta = load_backbone(path)
    assert meta["format"] == FORMAT and meta["architecture"] == "reactnet_a" and meta["method"] == "burn"
    assert model_stage(loaded, meta) == 2 and read_metadata(path) == meta
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)
    assert find_backbone(tmp_path / "run") == (path, 2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_backbone(model, path)
    save_backbone(model, path, overwrite=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["backbone"]  # no temporaries left


def test_refusals_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such"):
        load_backbone(tmp_path / "no_such")
    with pytest.raises(BackboneFormatError, match="not a burn_tf backbone"):
        load_backbone(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{")
    with pytest.raises(BackboneFormatError, match="not valid JSON"):
        read_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text(json.dumps(["a list"]))
    with pytest.raises(BackboneFormatError, match="'format'"):
        read_metadata(tmp_path)
    with pytest.raises(FileNotFoundError, match="no exported backbone"):
        find_backbone(tmp_path)
    classifier = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    with pytest.raises(BackboneFormatError, match="feature extractor"):
        resolve_backbone(classifier)


def _tiny_export(tmp_path):
    model = reactnet_a(ReActNetConfig(stage=2, input_size=32, width_multiplier=0.125, blocks=4))
    return model, save_backbone(model, tmp_path / "backbone", {"method": "burn"})


def test_metadata_records_a_sha256_of_every_file(tmp_path):
    _, path = _tiny_export(tmp_path)
    meta = read_metadata(path)
    files = sorted(p.name for p in path.iterdir() if p.name != METADATA_FILE)
    assert sorted(meta["sha256"]) == files == ["backbone.keras", "backbone.weights.h5"]
    for name, digest in meta["sha256"].items():
        assert digest == hashlib.sha256((path / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["backbone.weights.h5", "backbone.keras"])
def test_a_file_edited_in_place_is_named(tmp_path, name):
    _, path = _tiny_export(tmp_path)
    data = bytearray((path / name).read_bytes())
    data[-100] ^= 0x01  # one flipped bit near the end: the file stays well-formed
    (path / name).write_bytes(bytes(data))
    with pytest.raises(BackboneFormatError, match="sha256") as err:
        load_backbone(path)
    assert str(path / name) in str(err.value)


def test_a_directory_without_metadata_is_refused_unless_allowed(tmp_path):
    model, path = _tiny_export(tmp_path)
    (path / METADATA_FILE).unlink()
    with pytest.raises(BackboneFormatError, match="allow_missing_metadata") as err:
        load_backbone(path)
    assert str(path / METADATA_FILE) in str(err.value)
    with pytest.raises(BackboneFormatError, match="allow_missing_metadata"):
        resolve_backbone(path)
    loaded, meta = load_backbone(path, allow_missing_metadata=True)
    assert meta == {} and loaded.output_shape == model.output_shape
