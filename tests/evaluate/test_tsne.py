"""t-SNE: a valid PNG coloured by class; separable features give a high 2-d silhouette."""

import json

import numpy as np
import pytest

from burn_tf.evaluate.tsne import format_result, run_tsne, tsne


@pytest.fixture
def data(fashion_splits):
    x, y = fashion_splits["train"]
    return {"x_train": x[:1000], "y_train": y[:1000], "x_test": x[1000:1100], "y_test": y[1000:1100],
            "name": "fmnist-1k", "class_names": ["top", "trouser", "pullover", "dress", "coat",
                                                 "sandal", "shirt", "sneaker", "bag", "boot"]}


def test_png_written_and_valid(data, tmp_path, pixel_backbone):
    result = tsne(pixel_backbone(pool=4), data=data, out_dir=tmp_path, num_classes=4, per_class=40,
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
    # (select_per_class, the point selection, is tested in test_data.py)
    with pytest.raises(ValueError, match="perplexity"):
        run_tsne(np.random.default_rng(0).standard_normal((10, 4)), perplexity=30)
