"""Networks: backbones (ReActNet-A, ResNet, EfficientNet-Lite), teachers and heads.

Importing this package registers the heads' custom Keras layers
(:mod:`burn_tf.models.heads`), so an exported head file loads without a method module.
"""

from burn_tf.models.heads import CosineDense, L2Normalize, build_head, build_projector

__all__ = ["CosineDense", "L2Normalize", "build_head", "build_projector"]
