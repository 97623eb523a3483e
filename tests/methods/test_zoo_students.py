"""A method on a larq-zoo student (``backbone.kind: larq_zoo``) through the Python API, as a
notebook trains one: MoCo v2 — heads sized from the student's 512-d feature, an EMA target
cloned from a zoo network — trains. Stage 2 from stage 1 by the zoo's layer names is
checked for BURN through the CLI (tests/test_pretrain.py) and for every student's layers
(tests/models/test_larq_zoo.py)."""

import numpy as np
import pytest
import tensorflow as tf
from contrastive_helpers import first_batch

from burn_tf.methods import MoCoV2, MoCoV2Config
from burn_tf.models.larq_zoo import build_zoo_student


def make_moco(stage: int) -> MoCoV2:
    student = build_zoo_student("QuickNetSmall", 32, stage, model_name="student_backbone")
    model = MoCoV2(student, MoCoV2Config(queue_size=32, projector_hidden=16, projector_dim=8))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), run_eagerly=True)
    return model


@pytest.mark.slow  # 2 QuickNetSmall networks built, 2 eager steps
def test_moco_v2_trains_a_larq_zoo_student_with_a_cloned_momentum_target(fashion_mnist_available):
    batch = first_batch(16)
    model = make_moco(1)
    assert model.feature_dim == 512
    model.build_all()
    for _, online, target in model.momentum_pairs:  # the backbone's and the projector's clones start equal
        for a, b in zip(target.get_weights(), online.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    before = [w.numpy() for w in model.backbone.trainable_weights]
    for _ in range(2):
        logs = model.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["grad_norm_backbone"] > 0
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.backbone.trainable_weights))
