"""A method on a larq-zoo student (``backbone.kind: larq_zoo``) through the Python API, as a
notebook trains one: MoCo v2 — heads sized from the student's 512-d feature, an EMA target
cloned from a zoo network — trains, and stage 2 starts from stage 1 by the zoo's layer names."""

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


@pytest.mark.slow  # 4 QuickNetSmall networks built, 3 eager steps: ~100 s on the loaded 2-core machine
def test_moco_v2_trains_a_larq_zoo_student_and_stage2_starts_from_stage1(fashion_mnist_available):
    batch = first_batch(16)
    stage1 = make_moco(1)
    assert stage1.feature_dim == 512
    for _ in range(2):
        logs = stage1.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["grad_norm_backbone"] > 0
    stage2 = make_moco(2)
    stage2.build_all()
    stage2.init_from_previous_stage(stage1)
    for layer in stage2.backbone.layers:
        for mine, theirs in zip(layer.get_weights(), stage1.backbone.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)
    for _, online, target in stage2.momentum_pairs:  # the backbone's and the projector's
        for a, b in zip(target.get_weights(), online.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    before = [w.numpy() for w in stage2.backbone.trainable_weights]
    logs = stage2.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, stage2.backbone.trainable_weights))
