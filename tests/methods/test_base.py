"""The shared base: what a method file gets for free, tested on small real methods."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import snapshot, tiny_reactnet, view_pair

from burn_tf.callbacks import ScheduledValue
from burn_tf.losses import classification, distillation
from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.momentum import MomentumMethod
from burn_tf.ops import schedules


def small_backbone(name="backbone"):
    """FP conv + BatchNorm + pooling: BN statistics must stay the target's own."""
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.ReLU()(x))
    return tf.keras.Model(inputs, x, name=name)


@dataclasses.dataclass
class PairConfig(MethodConfig):
    name: str = "pair_test"
    tau_start: float = 0.9
    tau_end: float = 1.0


class OnlineTargetPair(MomentumMethod):
    """A BYOL-shaped method without predictor: online(v1) → EMA target(v2)."""

    method_name = "pair_test"
    Config = PairConfig

    def __init__(self, backbone, config=None, **kwargs):
        super().__init__(backbone, config, **kwargs)
        self.target_backbone = self.add_momentum_pair(backbone)

    def compute_losses(self, views, labels=None, training=True):
        online = self.backbone(views[0], training=training)
        target = tf.stop_gradient(self.target_backbone(views[1], training=False))
        return {"loss": distillation.feature_similarity(target, online)}


def test_momentum_update_is_the_exact_ema_of_weights_not_bn_statistics():
    model = OnlineTargetPair(small_backbone())
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5), run_eagerly=True)
    model.tau.assign(0.9)
    target_before = snapshot(model.target_backbone.weights)
    model.train_on_batch(view_pair(), return_dict=True)
    online = {w.name.split("/", 1)[-1]: w.numpy() for w in model.backbone.weights}
    updated = 0
    for w, before in zip(model.target_backbone.weights, target_before):
        key = w.name.split("/", 1)[-1]
        if "moving_" in key:
            np.testing.assert_array_equal(w.numpy(), before)  # statistics are the target's own
        else:
            np.testing.assert_allclose(w.numpy(), 0.9 * before + 0.1 * online[key], rtol=1e-6, atol=1e-7)
            updated += 1
    assert updated == len(model.backbone.trainable_weights)
    # The online BN statistics did move (training=True), the target's did not follow them.
    assert not np.array_equal(online[[k for k in online if "moving_mean" in k][0]],
                              [b for w, b in zip(model.target_backbone.weights, target_before)
                               if "moving_mean" in w.name][0])
    assert "momentum_backbone" in model.checkpoint_parts()


def test_tau_follows_the_cosine_from_global_step():
    model = OnlineTargetPair(small_backbone(), PairConfig(tau_start=0.99, tau_end=1.0))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), run_eagerly=True)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.tau.numpy()))

    ds = tf.data.Dataset.from_tensors(view_pair(4)).repeat(5)
    model.fit(ds, epochs=1, verbose=0, callbacks=[*model.callbacks(5), Record()])
    assert isinstance(model.callbacks(5)[0], ScheduledValue) and model.callbacks(5)[0].variable is model.tau
    assert seen == pytest.approx([schedules.cosine_momentum(t, 5, 0.99, 1.0) for t in range(5)], abs=1e-6)
    assert seen[0] == pytest.approx(0.99) and seen[-1] > seen[0]


def test_a_method_needs_its_views_and_its_labels():
    class NeedsLabels(PretrainMethod):
        method_name = "labels_test"
        needs_labels = True
        num_views = 1

        def __init__(self, backbone, **kwargs):
            super().__init__(backbone, **kwargs)
            self.classifier = tf.keras.Sequential([tf.keras.layers.Dense(10)])

        def trainable_groups(self):
            return {"backbone": self.backbone.trainable_variables,
                    "classifier": self.classifier.trainable_variables}

        def compute_losses(self, views, labels, training=True):
            logits = self.classifier(self.backbone(views[0], training=training))
            return {"loss": classification.cross_entropy(labels, logits)}

    model = NeedsLabels(small_backbone())
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), run_eagerly=True)
    v1, _ = view_pair(8)
    with pytest.raises(ValueError, match="needs labels"):
        model.train_on_batch(v1)
    logs = model.train_on_batch((v1, tf.range(8, dtype=tf.int64)), return_dict=True)
    assert set(logs) >= {"loss", "grad_norm_backbone", "grad_norm_classifier", "lr"}
    with pytest.raises(ValueError, match="view1, view2"):
        OnlineTargetPair(small_backbone()).parse_batch(v1)


def test_default_stage_transfer_copies_backbone_by_layer_name():
    def model(stage):
        backbone = tiny_reactnet(stage)
        return OnlineTargetPair(backbone)

    stage1, stage2 = model(1), model(2)
    # The stage-1 target lags its online network (an EMA of it).
    for w in stage1.target_backbone.weights:
        w.assign(w + 0.5)
    stage2.init_from_previous_stage(stage1)
    for a, b in zip(stage1.backbone.weights, stage2.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The EMA target restarts as a copy of the (transferred) online network.
    for a, b in zip(stage2.backbone.weights, stage2.target_backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_target_called_in_training_mode_keeps_its_own_batch_statistics():
    """Keras runs a frozen BatchNorm in inference mode whatever ``training`` says; a momentum
    target (MoCo's key encoder, BYOL's target) must use and track its own batch statistics,
    and stay without trainable weights."""
    model = OnlineTargetPair(small_backbone())
    target = model.target_backbone
    assert target.trainable_weights == []
    before = snapshot(target.weights)
    images = view_pair()[0]
    inference = target(images, training=False).numpy()
    in_training = target(images, training=True).numpy()
    assert not np.allclose(inference, in_training)  # batch statistics, not the moving ones
    moved = [n for w, b, n in zip(target.weights, before, [w.name for w in target.weights])
             if not np.array_equal(w.numpy(), b)]
    assert moved and all("moving_" in n for n in moved)
