"""S2-BNN: a binary network distils a *frozen* FP network including its head (Shen et al.,
CVPR 2021) — BURN's fixed-target baseline (BURN paper Tables 1–4, temperature 0.2).

    loss = KL(softmax(t̂/T) ‖ softmax(ŝ/T)),   t = frozen teacher head(h_ζ(x)),  s = l_φ(k_φ(x))

t̂, ŝ are t and s L2-normalised: in S2-BNN's released code both networks are MoCo v2 query
encoders whose output is the 128-d projection ``q = normalize(fc(encoder(x)))`` (``fc`` the
``--mlp`` head Linear → ReLU → Linear), and the loss is ``DistributionLoss(student_q /
moco_t, teacher_q / moco_t)`` with ``moco_t`` 0.2 (szq0214/S2-BNN
``Distillation_only/step1/main_moco.py`` ``train``, ``moco/builder_teacher.py`` ``MoCo.forward``)
— the soft cross-entropy to the teacher's softmax, which is this KL plus the (constant)
teacher entropy. The student's head is S2-BNN's ``--mlp`` head, Linear(d, d) → ReLU →
Linear(d, 128) without BatchNorm, d the student's feature width (``moco/builder.py``
l. 29-32; ``head: projector``, ``head_hidden: null``). Both see the same view
(``images[0]``); with ``symmetric: true`` the student sees one view and the teacher the
other, as BURN's released code does.

The teacher given to :class:`S2BNN` already outputs its head (pretraining builds it with
``build_teacher(..., include_head=True)``, or from a burn_tf export with the head saved
beside it). What that head is decides ``normalize`` (:func:`teacher_head_role`):

- a *projector* — S2-BNN's teacher: MoCo v2's projector, ``projector.keras`` of a burn_tf
  ``moco_v2`` run (``teacher.weights: <run>/stage1/backbone``; ``configs/demo_teacher.yaml``
  trains one) or the ``fc.0``/``fc.2`` MLP of a MoCo v2 ``.pth`` — is L2-normalised
  (``normalize: null`` or ``true``; ``false`` is refused: a projection's length is arbitrary,
  S2-BNN and MoCo compare its direction).
- a class *classifier* — EfficientNet-Lite0's 1000-way ImageNet ``_fc`` (the only ImageNet
  network that ships offline), a burn_tf ``supervised`` export's ``classifier.keras`` — is
  distilled as raw logits (``normalize: null`` or ``false``; ``true`` is refused). There is
  no projection to distil there, and normalising 1000 logits and dividing by 0.2 leaves a
  target within 0.014 nats of uniform (EfficientNet-Lite0 on Fashion-MNIST at 64 px, mean
  over 512 test images), so the student learns next to nothing from it. This is then S2-BNN's
  loss on a supervised network's class posteriors, not S2-BNN's target.
- unknown (a random head; one linear layer from a checkpoint): ``null`` normalises, as
  S2-BNN's code does.

    model = S2BNN(teacher_with_head, student_backbone, S2BNN.Config())
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from burn_tf.losses import distillation
from burn_tf.methods.base import MethodConfig
from burn_tf.methods.distillation import DistillationMethod
from burn_tf.methods.registry import register
from burn_tf.models.heads import build_head, build_projector
from burn_tf.models.teacher import teacher_head_role
from burn_tf.ops import diagnostics
from burn_tf.schema import ConfigError, check_choice, check_range

STUDENT_HEADS = ("projector", "mlp", "dense")


@dataclasses.dataclass
class S2BNNConfig(MethodConfig):
    name: str = "s2bnn"
    temperature: float = 0.2
    # The student's head l_φ to the teacher head's width: "projector" (S2-BNN's: MoCo's --mlp
    # head Linear → ReLU → Linear, no BatchNorm), "mlp" (BURN's, with BatchNorm) or "dense".
    head: str = "projector"
    # The hidden width; null: the student's feature width (S2-BNN's dim_mlp = fc's input).
    head_hidden: int | None = None
    symmetric: bool = False
    # L2-normalise both outputs before the temperature (S2-BNN's MoCo q). None: by what the
    # teacher's head is (a projector: yes; a class classifier: no; unknown: yes); an explicit
    # value that contradicts the head is refused (see the docstring).
    normalize: bool | None = None

    def __post_init__(self):
        check_choice("method", "head", self.head, STUDENT_HEADS)
        check_range("method", "temperature", self.temperature, 0, low_open=True)
        if self.head_hidden is not None:
            check_range("method", "head_hidden", self.head_hidden, 1)


def normalize_for_head(head_role: str | None, normalize: bool | None, method: str = "s2bnn") -> bool:
    """Whether to L2-normalise the teacher's head output (and the student's), given what the
    head is (:func:`burn_tf.models.teacher.teacher_head_role`) and ``method.normalize``."""
    if head_role == "classifier" and normalize:
        raise ConfigError(
            f"method.normalize=true ({method}): the teacher's head is a class classifier (e.g. "
            "EfficientNet-Lite0's 1000-way ImageNet logits), not a projection; L2-normalised and divided by "
            "the temperature its logits give a near-uniform target. S2-BNN distils a MoCo v2 projection: set "
            "teacher.weights to a burn_tf moco_v2 export (<run>/stage1/backbone, e.g. of configs/"
            "demo_teacher.yaml), or set method.normalize=false (or null) to distil the classifier's raw logits"
        )
    if head_role == "projector" and normalize is False:
        raise ConfigError(
            f"method.normalize=false ({method}): the teacher's head is a projector (MoCo's q), whose length "
            "is arbitrary; S2-BNN distils the L2-normalised projection: set method.normalize=true (or null)"
        )
    if normalize is None:
        return head_role != "classifier"
    return bool(normalize)


@register
class S2BNN(DistillationMethod):
    method_name = "s2bnn"
    Config = S2BNNConfig
    loss_terms = ("kl", "target_entropy")
    teacher_includes_head = True

    def __init__(self, teacher_with_head: tf.keras.Model, student_backbone: tf.keras.Model,
                 config: S2BNNConfig | None = None, accumulation_steps: int = 1, **kwargs):
        super().__init__(teacher_with_head, student_backbone, config, accumulation_steps=accumulation_steps,
                         **kwargs)
        cfg = self.config
        # The effective setting (config None resolved by the teacher's head).
        self.normalize = normalize_for_head(teacher_head_role(teacher_with_head), cfg.normalize, self.method_name)
        hidden = cfg.head_hidden or self.student_dim
        if cfg.head == "projector":
            # S2-BNN's student: moco/builder.py l. 29-32, fc → Linear(dim_mlp, dim_mlp), ReLU, fc.
            head = build_projector(self.student_dim, hidden, self.teacher_dim, "student_classifier", batchnorm=False)
        else:
            head = build_head(cfg.head, self.student_dim, self.teacher_dim, "student_classifier", hidden=hidden)
        self.student_classifier = self.add_head("student_classifier", head, exported="classifier")

    def head_outputs(self, views, training) -> tuple[tf.Tensor, tf.Tensor]:
        """(teacher logits, student logits) of the views, paired image by image (the
        teacher's of the other view with ``symmetric``), normalised if configured."""
        images = self.stacked_views(views)
        target_logits = self.other_view(self.teacher_features(images), views)
        student_logits = self.student_classifier(self.student_backbone(images, training=training), training=training)
        if self.normalize:
            target_logits = tf.math.l2_normalize(target_logits, axis=-1)
            student_logits = tf.math.l2_normalize(student_logits, axis=-1)
        return target_logits, student_logits

    def compute_losses(self, views, labels=None, training=True) -> dict:
        target_logits, student_logits = self.head_outputs(views, training)
        kl = distillation.kl_divergence(target_logits, student_logits, self.config.temperature)
        return {"loss": kl, "kl": kl,
                "target_entropy": diagnostics.batch_mean_entropy(target_logits, self.config.temperature)}
