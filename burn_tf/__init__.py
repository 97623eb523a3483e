"""burn_tf: unsupervised representation learning for binary networks (BURN) in Keras/Larq."""

import os
import sys

# TensorFlow's C++ start-up chatter buries the progress a user wants to read. Level 2
# hides its INFO/WARNING lines; the "Unable to register cuDNN/cuFFT/cuBLAS factory" lines
# every CPU machine prints are ERROR-level, so the CLIs (`python -m burn_tf.…`, where
# Python sets argv[0] to "-m" while it imports the package) go to level 3. A user's own
# TF_CPP_MIN_LOG_LEVEL always wins; notebooks keep TensorFlow's errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if sys.argv[:1] == ["-m"] else "2")

__version__ = "0.1.0"
