import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# The longest files, longest first (by the seconds of one worker, measured with --junitxml
# on the quiet 2-core machine; docs/benchmarks.md).
# The test command runs pytest-xdist with --dist loadfile --no-loadscope-reorder, which hands
# whole files out in collection order, so these start first and the ~100 short files fill in
# around them (by default xdist hands out the files with most tests first, and the one-test
# end-to-end files came last, one worker running them while the other idled). A stale or
# missing entry only costs balance, never a test.
LONGEST_FILES = (
    "test_distributed.py", "test_notebooks.py", "test_full_size_step.py", "studies/test_demo.py",
    "evaluate/test_detect.py", "test_pretrain.py", "test_faults.py", "studies/test_compare.py",
    "methods/test_moco.py", "export/test_export.py", "methods/test_burn.py", "methods/test_cld.py",
    "studies/test_ablate.py", "studies/test_students.py", "evaluate/test_svm.py", "methods/test_s2bnn.py",
    "methods/test_byol.py", "methods/test_npid.py", "methods/test_swav.py",
)


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}

    def file_rank(item):
        path = Path(item.fspath).resolve()
        return rank.get(path.relative_to(tests).as_posix(), len(rank)) if path.is_relative_to(tests) else len(rank)

    items.sort(key=file_rank)  # stable: within a file, and among the rest, the collected order


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
