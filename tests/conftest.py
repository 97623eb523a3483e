import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Layer-name counters and the default graph grow across tests otherwise.
    tf.keras.backend.clear_session()
    # Every test starts from the same global seeds (TF, NumPy, Python), so its random draws
    # do not depend on which tests ran before it (pretraining sets the global seed).
    tf.keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")  # session: module-scoped fixtures that train on it use it too
def fashion_mnist_available():
    if not os.path.exists(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return FASHION_MNIST_DIR


@pytest.fixture
def rng():
    return np.random.default_rng(0)
