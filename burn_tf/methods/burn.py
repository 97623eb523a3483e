"""BURN: a binary network learns from a frozen FP feature extractor plus a jointly trained
FP classifier — the moving target (Kim & Choi, CVPR 2022, Alg. 1, Eq. 1–4).

    h_ζ  teacher_backbone     FP, self-supervised, frozen (BatchNorm in inference mode)
    g_θ  teacher_classifier   FP, randomly initialised, trained jointly with the student
    k_φ  student_backbone     binary ReActNet-A
    l_φ  student_classifier   FP head of the student

    loss = (1 − λ(t))·KL(softmax(g/T) ‖ softmax(l/T)) + λ(t)·L_FS

Usage in a notebook::

    model = BURN(teacher_backbone, student_backbone, MethodConfig())
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-4))
    model.fit(two_view_dataset, epochs=10,
              callbacks=[LambdaScheduler(total_steps=10 * steps_per_epoch)])

The dataset yields ``(view1, view2)`` batches (or single image batches when
``symmetric=False``). ``model(images)`` returns the student's features.
"""

from __future__ import annotations

import tensorflow as tf

from burn_tf import losses
from burn_tf.config import MethodConfig
from burn_tf.models.heads import build_head
from burn_tf.optim import current_learning_rate

METRICS = ("loss", "kl", "fs", "grad_norm_student_classifier", "grad_norm_student_backbone",
           "target_entropy")


class BURN(tf.keras.Model):
    """The BURN pretraining model; ``train_step`` implements Eq. 4 for one batch."""

    def __init__(
        self,
        teacher_backbone: tf.keras.Model,
        student_backbone: tf.keras.Model,
        config: MethodConfig | None = None,
        accumulation_steps: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config = config or MethodConfig()
        cfg = self.config
        self.teacher_backbone = teacher_backbone
        # Frozen: never trained, and called with training=False so its BN keeps its statistics.
        self.teacher_backbone.trainable = False
        self.student_backbone = student_backbone
        self.teacher_dim = int(teacher_backbone.outputs[0].shape[-1])
        self.student_dim = int(student_backbone.outputs[0].shape[-1])
        self.teacher_input_size = int(teacher_backbone.inputs[0].shape[1])
        self.student_input_size = int(student_backbone.inputs[0].shape[1])

        self.teacher_classifier = build_head(cfg.head, self.teacher_dim, cfg.head_width, "teacher_classifier")
        self.teacher_classifier.trainable = cfg.train_teacher_classifier
        self.student_classifier = build_head(cfg.head, self.student_dim, cfg.head_width, "student_classifier")
        self.student_projection = None
        if cfg.similarity_on == "features":
            # The FP and binary features differ in width (e.g. 2048 vs 1024): a learnable
            # linear map of the student feature makes them comparable.
            inputs = tf.keras.Input((self.student_dim,))
            self.student_projection = tf.keras.Model(
                inputs, tf.keras.layers.Dense(self.teacher_dim, use_bias=False, name="fc")(inputs),
                name="student_projection",
            )

        self.lambda_value = tf.Variable(cfg.lambda_start, trainable=False, dtype=tf.float32, name="lambda")
        # Counts batches seen (not optimizer applies): λ(t) is a function of it, and it is
        # checkpointed so a resumed run continues the same curve.
        self.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
        self.accumulation_steps = int(accumulation_steps)
        self._accumulators = None
        self.tracked_metrics = {name: tf.keras.metrics.Mean(name=name) for name in METRICS}

    # ------------------------------------------------------------------ building blocks
    @property
    def metrics(self):
        return list(self.tracked_metrics.values())

    def trainable_groups(self) -> dict[str, list[tf.Variable]]:
        groups = {
            "student_backbone": self.student_backbone.trainable_variables,
            "student_classifier": self.student_classifier.trainable_variables,
        }
        if self.student_projection is not None:
            groups["student_projection"] = self.student_projection.trainable_variables
        if self.config.train_teacher_classifier:
            groups["teacher_classifier"] = self.teacher_classifier.trainable_variables
        return groups

    def train_variables(self) -> list[tf.Variable]:
        return [v for group in self.trainable_groups().values() for v in group]

    def call(self, images, training=False):
        """The student's features (what the exported backbone computes)."""
        return self.student_backbone(images, training=training)

    def teacher_features(self, images):
        if self.teacher_input_size != self.student_input_size:
            images = tf.image.resize(images, (self.teacher_input_size, self.teacher_input_size))
        return tf.stop_gradient(self.teacher_backbone(images, training=False))

    def _split_views(self, data):
        # train_on_batch((v1, v2)) arrives as ((v1, v2),); fit on a dataset as (v1, v2).
        while isinstance(data, (tuple, list)) and len(data) == 1:
            data = data[0]
        if isinstance(data, (tuple, list)):
            if self.config.symmetric:
                if len(data) < 2:
                    raise ValueError("symmetric BURN needs (view1, view2) batches")
                return data[0], data[1]
            return data[0], None
        if self.config.symmetric:
            raise ValueError("symmetric BURN needs (view1, view2) batches, got a single tensor")
        return data, None

    def compute_losses(self, view1, view2, training=True):
        """Returns (loss, kl, fs, target_logits) for a batch; differentiable w.r.t. θ and φ."""
        cfg = self.config
        if view2 is None:
            images = view1
        else:
            # Both views in one call: one larger batch is faster than two on every device.
            images = tf.concat([view1, view2], axis=0)
        teacher_feat = self.teacher_features(images)
        student_feat = self.student_backbone(images, training=training)
        teacher_logits = self.teacher_classifier(
            teacher_feat, training=training and cfg.train_teacher_classifier
        )
        if not cfg.train_teacher_classifier:
            teacher_logits = tf.stop_gradient(teacher_logits)
        student_logits = self.student_classifier(student_feat, training=training)
        teacher_sim = teacher_logits if cfg.similarity_on == "head" else teacher_feat
        student_sim = (
            student_logits if cfg.similarity_on == "head"
            else self.student_projection(student_feat, training=training)
        )
        if view2 is not None:
            # Pair student(v1) with teacher(v2) and student(v2) with teacher(v1): swap halves.
            # The mean over the 2B pairs averages the released code's two summed terms.
            teacher_logits = tf.roll(teacher_logits, shift=tf.shape(view1)[0], axis=0)
            teacher_sim = tf.roll(teacher_sim, shift=tf.shape(view1)[0], axis=0)
        kl = losses.kl_divergence(teacher_logits, student_logits, cfg.temperature)
        fs = losses.feature_similarity(teacher_sim, student_sim, cfg.feature_similarity)
        loss = losses.burn_loss(kl, fs, self.lambda_value)
        return loss, kl, fs, teacher_logits

    # ------------------------------------------------------------------ training
    def _build_accumulators(self, variables):
        self._accumulators = [
            tf.Variable(tf.zeros_like(v), trainable=False, name=f"accum_{i}")
            for i, v in enumerate(variables)
        ]

    def train_step(self, data):
        view1, view2 = self._split_views(data)
        groups = self.trainable_groups()
        variables = [v for group in groups.values() for v in group]
        with tf.GradientTape() as tape:
            loss, kl, fs, teacher_logits = self.compute_losses(view1, view2, training=True)
            # Keras sums gradients over replicas; scale so the update is the global mean.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]

        offsets, norms, start = {}, {}, 0
        for name, group in groups.items():
            offsets[name] = (start, start + len(group))
            start += len(group)
        for name in ("student_classifier", "student_backbone"):
            a, b = offsets[name]
            norms[name] = tf.linalg.global_norm(grads[a:b])

        if self.accumulation_steps == 1:
            self.optimizer.apply_gradients(zip(grads, variables))
        else:
            if self._accumulators is None:
                self._build_accumulators(variables)
            for acc, g in zip(self._accumulators, grads):
                acc.assign_add(g)

            def apply():
                self.optimizer.apply_gradients(
                    zip([acc / self.accumulation_steps for acc in self._accumulators], variables)
                )
                for acc in self._accumulators:
                    acc.assign(tf.zeros_like(acc))
                return tf.constant(True)

            tf.cond(
                (self.global_step + 1) % self.accumulation_steps == 0, apply, lambda: tf.constant(False)
            )
        self.global_step.assign_add(1)

        values = {
            "loss": loss,
            "kl": kl,
            "fs": fs,
            "grad_norm_student_classifier": norms["student_classifier"],
            "grad_norm_student_backbone": norms["student_backbone"],
            "target_entropy": losses.batch_mean_entropy(teacher_logits, self.config.temperature),
        }
        for name, value in values.items():
            self.tracked_metrics[name].update_state(value)
        logs = {name: m.result() for name, m in self.tracked_metrics.items()}
        logs["lambda"] = tf.identity(self.lambda_value)
        logs["lr"] = current_learning_rate(self.optimizer)
        return logs

    def test_step(self, data):
        view1, view2 = self._split_views(data)
        loss, kl, fs, teacher_logits = self.compute_losses(view1, view2, training=False)
        for name, value in (("loss", loss), ("kl", kl), ("fs", fs)):
            self.tracked_metrics[name].update_state(value)
        return {name: self.tracked_metrics[name].result() for name in ("loss", "kl", "fs")}

    def build_all(self):
        """Creates every variable (heads, optimizer slots) before a checkpoint restore or a
        stage transfer, so both find the same objects."""
        x = tf.zeros((1, self.student_input_size, self.student_input_size, 3))
        self.teacher_classifier(self.teacher_features(x), training=False)
        feat = self.student_backbone(x, training=False)
        self.student_classifier(feat, training=False)
        if self.student_projection is not None:
            self.student_projection(feat, training=False)
        if self.optimizer is not None:
            self.optimizer.build(self.train_variables())
        if self.accumulation_steps > 1 and self._accumulators is None:
            self._build_accumulators(self.train_variables())
