"""t-SNE: a valid PNG coloured by class; separable features give a high 2-d silhouette."""

import json

import numpy as np
import pytest
import tensorflow as tf

from burn_tf.evaluate.tsne import format_result, run_tsne, select_per_class, tsne


@pytest.fixture(scope="module")
def data():
    from burn_tf.data.sources import SourceNotFoundError, load_fashion_mnist_arrays

    try:
        x, y = load_fashion_mnist_arrays("train")
    except SourceNotFoundError as err:  # pragma: no cover
        pytest.skip(str(err))
    return {"x_train": x[:1000], "y_train": y[:1000], "x_test": x[1000:1100], "y_test": y[1000:1100],
            "name": "fmnist-1k", "class_names": ["top", "trouser", "pullover", "dress", "coat",
                                                 "sandal", "shirt", "sneaker", "bag", "boot"]}


def pixels_backbone():
    # Down-sampled pixels as features: a real, deterministic feature extractor.
    inputs = tf.keras.Input((28, 28, 3))
    pooled = tf.keras.layers.AveragePooling2D(4)(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Flatten()(pooled), name="pixels")


def test_png_written_and_valid(data, tmp_path):
    result = tsne(pixels_backbone(), data=data, out_dir=tmp_path, num_classes=4, per_class=40,
                  perplexity=15, max_iter=300)
    assert result["num_points"] == 160 and result["num_classes"] == 4
    png = tmp_path / "tsne.png"
    from PIL import Image

    with Image.open(png) as image:
        image.verify()
        assert image.format == "PNG"
    from matplotlib.image import imread

    assert imread(png).ndim == 3
    saved = np.load(tmp_path / "tsne_embedding.npz")
    assert saved["embedding"].shape == (160, 2)
    assert sorted(np.unique(saved["labels"])) == [0, 1, 2, 3]
    written = json.loads((tmp_path / "tsne.json").read_text())
    assert written["num_points"] == 160 and written["data"] == "fmnist-1k"
    assert result["silhouette_2d"] > 0.0  # pixel features of 4 garment classes do separate
    assert "silhouette" in format_result(result)


def test_separated_blobs_give_separated_embedding():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    centres = np.eye(3, 16) * 10
    features = centres[labels] + rng.standard_normal((90, 16)) * 0.3
    embedding, kl = run_tsne(features, perplexity=10, max_iter=300)
    from sklearn.metrics import silhouette_score

    assert silhouette_score(embedding, labels) > 0.6 and np.isfinite(kl)


def test_bad_input():
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="num_classes=5"):
        select_per_class(labels, 5, 2)
    with pytest.raises(ValueError, match="perplexity"):
        run_tsne(np.random.default_rng(0).standard_normal((10, 4)), perplexity=30)
    assert len(select_per_class(labels, 2, 3)) == 6
