"""Heads: a method declares each network once (``add_head``/``add_state``), the base derives
its gradient groups, checkpoint keys and exported files; the head builders and BURN's custom
layers live in ``burn_tf.models.heads`` so an exported head loads without a method module."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import tiny_teacher

import burn_tf
from burn_tf.methods import method_class, method_names
from burn_tf.methods.base import PretrainMethod
from burn_tf.methods.burn import BURNConfig, build_classifier

PACKAGE_ROOT = str(Path(burn_tf.__file__).resolve().parents[1])

# Every registered method at a tiny size (and the variants whose parts differ), on a small CNN.
VARIANTS = {
    "burn": ("burn", dict(head_width=16)),
    "burn_head_centered_frozen_g": ("burn", dict(head_width=16, similarity_on="head", target="centered",
                                                 train_teacher_classifier=False)),
    "byol": ("byol", dict(projector_hidden=16, projector_dim=8, predictor_hidden=16)),
    "moco_v2": ("moco_v2", dict(queue_size=32, projector_hidden=16, projector_dim=8)),
    "infomin": ("infomin", dict(queue_size=32, projector_hidden=16, projector_dim=8, negatives_fraction=0.5)),
    "simclr_v2": ("simclr_v2", dict(projector_hidden=16, projector_dim=8)),
    "swav": ("swav", dict(projection_hidden=16, projection_dim=8, num_prototypes=10, queue_size=16, small_crops=0)),
    "swav_no_queue": ("swav", dict(projection_hidden=16, projection_dim=8, num_prototypes=10, queue_size=0,
                                   small_crops=0)),
    "npid": ("npid", dict(projection_dim=8, negatives=4)),
    "cld_npid": ("cld", dict(projection_dim=8, negatives=4, num_groups=2, group_dim=8)),
    "cld_moco": ("cld", dict(instance="moco", projection_dim=8, queue_size=32, projector_hidden=16, num_groups=2,
                             group_dim=8, projection_head="mlp")),
    # The shipped defaults since the heads became their scripts' (CLD's normalised linear heads,
    # S2-BNN's Linear → ReLU → Linear without BatchNorm).
    "cld_moco_script_heads": ("cld", dict(instance="moco", projection_dim=8, queue_size=32, num_groups=2,
                                          group_dim=8)),
    "supervised": ("supervised", dict()),
    "s2bnn": ("s2bnn", dict(head="mlp", head_hidden=16)),
    "s2bnn_script_head": ("s2bnn", dict(head_hidden=16)),
    "supervised_kl": ("supervised_kl", dict()),
}

# What the code before the heads were declared once (commit 2236e80) returned for VARIANTS:
# gradient groups in order with their variable counts (the order is the optimizer's slot
# order, so a resumed run's optimizer state must find it), checkpoint keys and exported file
# stems (a run directory's format). Generated once from that code, pasted here; the variants
# added since (``*_script_head(s)``), NPID's ``nce_normaliser`` (lemniscate's Z, estimated
# once and checkpointed, since 70b58b6) and SwAV's ``steps_before_stage`` (the run's step
# count stage 2 continues) were read off the code that added them.
EXPECTED_LAYOUT = {
    "burn": {
        "trainable_groups": [("student_backbone", 6), ("student_classifier", 6), ("student_projection", 1),
                             ("teacher_classifier", 6)],
        "checkpoint_modules": ["student_backbone", "student_classifier", "student_projection", "teacher_classifier"],
        "exported_heads": ["classifier"],
    },
    "burn_head_centered_frozen_g": {
        "trainable_groups": [("student_backbone", 6), ("student_classifier", 6)],
        "checkpoint_modules": ["student_backbone", "student_classifier", "target_center", "teacher_classifier"],
        "exported_heads": ["classifier"],
    },
    "byol": {
        "trainable_groups": [("backbone", 6), ("projector", 5), ("predictor", 5)],
        "checkpoint_modules": ["backbone", "momentum_backbone", "momentum_projector", "predictor", "projector"],
        "exported_heads": ["predictor", "projector"],
    },
    "moco_v2": {
        "trainable_groups": [("backbone", 6), ("projector", 4)],
        "checkpoint_modules": ["backbone", "momentum_backbone", "momentum_projector", "projector", "queue",
                               "queue_pointer"],
        "exported_heads": ["projector"],
    },
    "infomin": {
        "trainable_groups": [("backbone", 6), ("projector", 4)],
        "checkpoint_modules": ["backbone", "momentum_backbone", "momentum_projector", "projector", "queue",
                               "queue_pointer"],
        "exported_heads": ["projector"],
    },
    "simclr_v2": {
        "trainable_groups": [("backbone", 6), ("projector", 8)],
        "checkpoint_modules": ["backbone", "projector"],
        "exported_heads": ["projector"],
    },
    "swav": {
        "trainable_groups": [("backbone", 6), ("projector", 6), ("prototypes", 1)],
        "checkpoint_modules": ["backbone", "projector", "prototypes", "queue", "queue_filled", "steps_before_stage"],
        "exported_heads": ["projector", "prototypes"],
    },
    "swav_no_queue": {
        "trainable_groups": [("backbone", 6), ("projector", 6), ("prototypes", 1)],
        "checkpoint_modules": ["backbone", "projector", "prototypes", "steps_before_stage"],
        "exported_heads": ["projector", "prototypes"],
    },
    "npid": {
        "trainable_groups": [("backbone", 6), ("projector", 2)],
        "checkpoint_modules": ["backbone", "memory_bank", "nce_normaliser", "projector"],
        "exported_heads": ["projector"],
    },
    "cld_npid": {
        "trainable_groups": [("backbone", 6), ("projector", 2), ("group_projector", 2)],
        "checkpoint_modules": ["backbone", "group_projector", "memory_bank", "nce_normaliser", "projector"],
        "exported_heads": ["group_projector", "projector"],
    },
    "cld_moco": {
        "trainable_groups": [("backbone", 6), ("projector", 4), ("group_projector", 2)],
        "checkpoint_modules": ["backbone", "group_projector", "momentum_backbone", "momentum_projector", "projector",
                               "queue", "queue_pointer"],
        "exported_heads": ["group_projector", "projector"],
    },
    "cld_moco_script_heads": {
        "trainable_groups": [("backbone", 6), ("projector", 1), ("group_projector", 1)],
        "checkpoint_modules": ["backbone", "group_projector", "momentum_backbone", "momentum_projector", "projector",
                               "queue", "queue_pointer"],
        "exported_heads": ["group_projector", "projector"],
    },
    "supervised": {
        "trainable_groups": [("backbone", 6), ("classifier", 2)],
        "checkpoint_modules": ["backbone", "classifier"],
        "exported_heads": ["classifier"],
    },
    "s2bnn": {
        "trainable_groups": [("student_backbone", 6), ("student_classifier", 6)],
        "checkpoint_modules": ["student_backbone", "student_classifier"],
        "exported_heads": ["classifier"],
    },
    "s2bnn_script_head": {
        "trainable_groups": [("student_backbone", 6), ("student_classifier", 4)],
        "checkpoint_modules": ["student_backbone", "student_classifier"],
        "exported_heads": ["classifier"],
    },
    "supervised_kl": {
        "trainable_groups": [("student_backbone", 6), ("student_classifier", 2)],
        "checkpoint_modules": ["student_backbone", "student_classifier"],
        "exported_heads": ["classifier"],
    },
}


def test_every_registered_method_is_covered():
    assert {name for name, _ in VARIANTS.values()} == set(method_names())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_groups_checkpoint_keys_and_exported_heads_are_those_of_the_old_code(variant):
    name, settings = VARIANTS[variant]
    cls = method_class(name)
    backbone = tiny_teacher(dim=16)  # a small CNN: the parts do not depend on the backbone
    backbone._name = "tiny_student"
    if cls.needs_teacher:
        model = cls(tiny_teacher(), backbone, cls.Config(**settings))
    else:
        model = cls(backbone, cls.Config(**settings), **({"dataset_size": 8} if cls.needs_index else {}))
    layout = {
        "trainable_groups": [(k, len(v)) for k, v in model.trainable_groups().items()],
        "checkpoint_modules": sorted(model.checkpoint_modules()),
        "exported_heads": sorted(model.exported_heads()),
    }
    assert layout == EXPECTED_LAYOUT[variant]


def test_a_head_declared_once_is_trained_checkpointed_and_exported_under_its_names():
    class TwoHeads(PretrainMethod):
        method_name = "two_heads_test"
        backbone_key = "student_backbone"

        def __init__(self, backbone, **kwargs):
            super().__init__(backbone, **kwargs)
            self.head = self.add_head("student_head", tf.keras.Sequential([tf.keras.layers.Dense(3)]),
                                      exported="classifier")
            self.frozen = self.add_head("frozen_head", tf.keras.Sequential([tf.keras.layers.Dense(2)]),
                                        trainable=False, exported=False)
            self.centre = self.add_state("centre", tf.Variable(tf.zeros(3), trainable=False))

    model = TwoHeads(tiny_teacher())
    model.head.build((None, 24))
    model.frozen.build((None, 24))
    assert list(model.trainable_groups()) == ["student_backbone", "student_head"]
    assert model.trainable_groups()["student_head"] == model.head.trainable_variables
    assert model.checkpoint_modules() == {"student_backbone": model.backbone, "student_head": model.head,
                                          "frozen_head": model.frozen, "centre": model.centre}
    assert model.exported_heads() == {"classifier": model.head}
    with pytest.raises(ValueError, match="'centre' is declared twice"):
        model.add_state("centre", tf.Variable(0.0))


# Loads the given .keras files with burn_tf.models as the only burn_tf import; prints which
# burn_tf.methods modules got imported and each model's outputs.
_LOAD_WITH_MODELS_ONLY = """
import json, sys
import numpy as np
import tensorflow as tf
import burn_tf.models
x = np.load(sys.argv[1])
outputs = [tf.keras.models.load_model(p, compile=False, safe_mode=True)(x).numpy().tolist() for p in sys.argv[2:]]
print(json.dumps({"methods": sorted(m for m in sys.modules if m.startswith("burn_tf.methods")), "outputs": outputs}))
"""


def test_an_exported_bounded_classifier_loads_with_only_burn_tf_models_imported(tmp_path):
    cfg = BURNConfig(bounded_logits=True, head="dense", head_width=16, bottleneck_dim=4)
    classifier = build_classifier(cfg, 8, "student_classifier")
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    new_file = tmp_path / "classifier.keras"
    classifier.save(new_file)
    # A file as the code before the move exported it: the same registered names
    # (burn_tf>L2Normalize, burn_tf>CosineDense) under the layers' old module.
    old_file = tmp_path / "old_classifier.keras"
    with zipfile.ZipFile(new_file) as src, zipfile.ZipFile(old_file, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["registered_name"] and layer["registered_name"].startswith("burn_tf>"):
                        layer["module"] = "burn_tf.methods.burn"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    # The same burn_tf as this process, whatever the working directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _LOAD_WITH_MODELS_ONLY, str(tmp_path / "x.npy"), str(new_file),
                             str(old_file)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["methods"] == []
    expected = classifier(x).numpy()
    for outputs in loaded["outputs"]:
        np.testing.assert_allclose(outputs, expected, rtol=1e-6, atol=1e-6)
