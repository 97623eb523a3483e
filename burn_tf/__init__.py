"""burn_tf: unsupervised representation learning for binary networks (BURN) in Keras/Larq."""

import os

# TensorFlow's C++ start-up chatter (CUDA plugins absent on CPU machines) buries the
# progress a user wants to read; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
