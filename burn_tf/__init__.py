"""burn_tf: unsupervised representation learning for binary networks (BURN) in Keras/Larq."""

__version__ = "0.1.0"
