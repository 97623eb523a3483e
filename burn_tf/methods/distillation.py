"""The middle layer of the methods that learn from a frozen FP teacher
(:class:`DistillationMethod`: BURN, S2-BNN, supervised KL-div): the teacher is built with
the method, never trained, called in inference mode behind ``stop_gradient`` on the
student's view resized to its own input size; one view, or two with ``symmetric``, the
student of each view paired with the teacher of the other.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow as tf

from burn_tf.methods.base import PretrainMethod


class DistillationMethod(PretrainMethod):
    """A binary (or FP) student learns from a frozen FP teacher.

    The teacher is frozen in one place: never trained, called with ``training=False`` so
    its BatchNorm keeps its statistics, its output behind ``stop_gradient``, its input
    resized from the student's view when the two sizes differ.
    """

    needs_teacher = True
    backbone_key = "student_backbone"
    # True: the teacher is built with its own head and outputs logits (S2-BNN).
    teacher_includes_head: ClassVar[bool] = False

    def __init__(self, teacher_backbone: tf.keras.Model, student_backbone: tf.keras.Model, config=None,
                 accumulation_steps: int = 1, **kwargs):
        super().__init__(student_backbone, config, accumulation_steps=accumulation_steps, **kwargs)
        self.teacher_backbone = teacher_backbone
        self.teacher_backbone.trainable = False
        self.teacher_dim = int(teacher_backbone.outputs[0].shape[-1])
        self.teacher_input_size = int(teacher_backbone.inputs[0].shape[1])

    @property
    def student_backbone(self) -> tf.keras.Model:
        return self.backbone

    @property
    def student_input_size(self) -> int:
        return self.input_size

    @property
    def student_dim(self) -> int:
        return self.feature_dim

    @classmethod
    def num_views_for(cls, config) -> int:
        """Two views with ``config.symmetric`` (each view's student against the other view's
        teacher, as BURN's released code), else one (both networks see the same view)."""
        return 2 if config.symmetric else 1

    @staticmethod
    def stacked_views(views: list) -> tf.Tensor:
        """The views as one batch (one call of each network: faster than one per view)."""
        return views[0] if len(views) == 1 else tf.concat(views, axis=0)

    @staticmethod
    def other_view(rows: tf.Tensor, views: list) -> tf.Tensor:
        """Rows of :meth:`stacked_views` order moved to the other view's image: with two views
        row i of view 1 faces row i of view 2 and vice versa (the halves swapped); one view:
        unchanged."""
        if len(views) != 2:
            return rows
        return tf.roll(rows, shift=tf.shape(views[0])[0], axis=0)

    def teacher_features(self, images):
        if self.teacher_input_size != self.input_size:
            images = tf.image.resize(images, (self.teacher_input_size, self.teacher_input_size))
        return tf.stop_gradient(self.teacher_backbone(images, training=False))
