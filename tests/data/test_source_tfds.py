"""The tfds source: a prepared data_dir, label-free reads, missing or unprepared data sets."""

import pytest
from data_helpers import check_source_spec, collect

from burn_tf.data import DataSourceError, SourceNotFoundError, get_source_info, tfds_source


def test_tfds_source_prepared(tmp_path, tiny_tfds_builder_cls):
    import tensorflow_datasets as tfds

    builder = tiny_tfds_builder_cls(data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    ds = tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path)
    check_source_spec(ds)
    images, labels = collect(ds)
    assert sorted(labels) == [0, 0, 1, 1, 2]
    assert all(x.shape == (6, 5, 3) and (x == x[0, 0, 0]).all() for x in images)
    info = get_source_info(ds)
    assert info.class_names == ("a", "b", "c") and info.num_examples == 5
    unl = tfds_source("burn_tf_tiny_grey", "train[:2]", data_dir=tmp_path, label_key=None)
    assert collect(unl)[1] == [-1, -1]
    with pytest.raises(DataSourceError, match="no split 'test'"):
        tfds_source("burn_tf_tiny_grey", "test", data_dir=tmp_path)
    with pytest.raises(DataSourceError, match="'picture'"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path, image_key="picture")


def test_tfds_source_missing_or_unprepared(tmp_path, tiny_tfds_builder_cls):
    with pytest.raises(SourceNotFoundError, match="data_dir"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=tmp_path / "missing")
    with pytest.raises(SourceNotFoundError, match="data_dir="):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceNotFoundError, match="not prepared"):
        tfds_source("burn_tf_tiny_grey", "train", data_dir=empty)
    with pytest.raises(SourceNotFoundError, match="no_such_dataset_xyz"):
        tfds_source("no_such_dataset_xyz", "train", data_dir=empty)
