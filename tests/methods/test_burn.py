import json

import numpy as np
import pytest
import tensorflow as tf
from method_helpers import changed, snapshot, tiny_reactnet, tiny_teacher, view_pair

from burn_tf.callbacks import (
    CollapseCriterion,
    CollapseWatcher,
    ScheduledValue,
    StepScalarLogger,
)
from burn_tf.methods.burn import BURN, BURNConfig
from burn_tf.ops import diagnostics
from burn_tf.ops.schedules import lambda_at


def make_burn(stage=1, **method):
    student = tiny_reactnet(stage)
    cfg = BURNConfig(head_width=32, **method)
    model = BURN(tiny_teacher(), student, cfg)
    # Eager: tracing the binary net's train step costs more than the few steps a test runs;
    # train_step is the same code either way (pretrain tests run it compiled).
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def small_student():
    student = tiny_teacher(dim=16)
    student._name = "tiny_student"
    return student


def make_small_burn(**method):
    """BURN with a tiny FP CNN as the student: for tests of the loss, schedule and
    accumulation machinery, which does not depend on the backbone (a ReActNet-A student is
    trained by test_one_step_trains_theta_and_phi_but_not_zeta_nor_its_bn_stats and
    test_short_fit_on_fashion_mnist_lowers_the_loss)."""
    model = BURN(tiny_teacher(), small_student(), BURNConfig(**{"head_width": 32, **method}))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    return model


def batch(n=16, seed=0):
    return view_pair(n, seed)


def test_one_step_trains_theta_and_phi_but_not_zeta_nor_its_bn_stats():
    model = make_burn()
    model.build_all()
    teacher_all = snapshot(model.teacher_backbone.weights)  # includes BN moving mean/var
    theta = snapshot(model.teacher_classifier.trainable_variables)
    phi_k = snapshot(model.student_backbone.trainable_variables)
    phi_l = snapshot(model.student_classifier.trainable_variables)
    logs = model.train_on_batch(batch(), return_dict=True)
    assert not changed(teacher_all, model.teacher_backbone.weights)
    assert changed(theta, model.teacher_classifier.trainable_variables)
    assert changed(phi_k, model.student_backbone.trainable_variables)
    assert changed(phi_l, model.student_classifier.trainable_variables)
    for key in ("loss", "kl", "fs", "lambda", "lr", "grad_norm_student_classifier",
                "grad_norm_student_backbone", "grad_norm_teacher_classifier", *BURN.loss_terms):
        assert np.isfinite(logs[key]), key
        if key not in ("lambda", "lr"):
            assert np.isfinite(logs[f"{key}_step"]), key
    assert logs["grad_norm_student_backbone"] > 0


def test_frozen_teacher_classifier_stays_fixed():
    model = make_small_burn(train_teacher_classifier=False)
    model.build_all()
    theta_all = snapshot(model.teacher_classifier.weights)
    phi = snapshot(model.student_backbone.trainable_variables)
    model.train_on_batch(batch())
    assert not changed(theta_all, model.teacher_classifier.weights)
    assert changed(phi, model.student_backbone.trainable_variables)


@pytest.mark.parametrize("similarity_on, kind", [("features", "cosine"), ("head", "l2"), ("head", "l1")])
def test_options_train(similarity_on, kind):
    model = make_small_burn(similarity_on=similarity_on, feature_similarity=kind, head="dense")
    logs = model.train_on_batch(batch(), return_dict=True)
    assert np.isfinite(logs["loss"])
    if similarity_on == "features":
        assert model.student_projection is not None
        assert model.student_projection.outputs[0].shape[-1] == model.teacher_dim


def test_loss_is_eq4_of_its_terms():
    model = make_small_burn()
    model.lambda_value.assign(0.8)
    terms = model.compute_losses(list(batch()), None, training=False)
    assert float(terms["loss"]) == pytest.approx(0.2 * float(terms["kl"]) + 0.8 * float(terms["fs"]), rel=1e-5)


def test_single_view_mode_is_alg1():
    model = make_small_burn(symmetric=False)
    v1, _ = batch()
    logs = model.train_on_batch(v1, return_dict=True)
    assert np.isfinite(logs["loss"])
    with pytest.raises(ValueError, match="view1, view2"):
        make_small_burn(symmetric=True).train_on_batch(v1)


def test_lambda_scheduler_follows_global_step():
    model = make_small_burn()
    v1, v2 = batch(8)
    ds = tf.data.Dataset.from_tensors((v1, v2)).repeat(6)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.lambda_value.numpy()))

    model.fit(ds, epochs=1, callbacks=[*model.callbacks(6), Record()], verbose=0)
    assert seen == pytest.approx([lambda_at(t, 6) for t in range(6)], abs=1e-6)
    assert int(model.global_step.numpy()) == 6


def test_kl_warmup_weight_is_scheduled_beside_lambda_and_bad_schedules_fail_early():
    model = make_small_burn(kl_warmup_fraction=0.5)
    scheduled = {c.name: c for c in model.callbacks(8) if isinstance(c, ScheduledValue)}
    assert scheduled["lambda"].variable is model.lambda_value and scheduled["kl_weight"].variable is model.kl_weight
    assert [scheduled["kl_weight"].schedule(t) for t in (0, 3, 4)] == [0.25, 1.0, 1.0]
    assert "kl_weight" not in {c.name for c in make_small_burn().callbacks(8) if isinstance(c, ScheduledValue)}
    with pytest.raises(ValueError, match="lambda schedule needs total_steps >= 1"):
        model.callbacks(0)
    with pytest.raises(ValueError, match="not one of"):
        ScheduledValue(model.lambda_value, lambda t: lambda_at(t, 8, schedule="linear"), "lambda")


def test_gradient_accumulation_applies_every_n_batches():
    model = BURN(tiny_teacher(), small_student(), BURNConfig(head_width=32), accumulation_steps=3)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    model.build_all()
    phi = snapshot(model.student_backbone.trainable_variables)
    model.train_on_batch(batch(seed=1))
    model.train_on_batch(batch(seed=2))
    assert int(model.optimizer.iterations.numpy()) == 0
    assert not changed(phi, model.student_backbone.trainable_variables)
    model.train_on_batch(batch(seed=3))
    assert int(model.optimizer.iterations.numpy()) == 1
    assert changed(phi, model.student_backbone.trainable_variables)


def test_short_fit_on_fashion_mnist_lowers_the_loss(fashion_mnist_available):
    from burn_tf.data import AugmentConfig, fashion_mnist, two_view_dataset

    model = make_burn(head="dense")
    # 3 epochs of 2 batches of 16 from one iterator over 32 repeated images: the last epoch's
    # loss was 70-83 % below the first one's over seeds 0-2.
    source = fashion_mnist("train").take(32)
    ds = two_view_dataset(source, AugmentConfig(image_size=32), batch_size=16, seed=0, cache=True, repeat=True)
    model.lambda_value.assign(0.7)
    history = model.fit(ds, epochs=3, steps_per_epoch=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_symmetric_loss_pairs_each_student_view_with_the_other_teacher_view():
    from burn_tf.losses import distillation

    # The ReActNet-A student: the tiny FP student gives both views almost the same output, so
    # the swapped pairing would not be told apart from the same-view one.
    model = make_burn(head="dense", similarity_on="features")
    model.lambda_value.assign(0.5)
    v1, v2 = batch(8)
    terms = model.compute_losses([v1, v2], None, training=False)

    def teacher_side(x):
        feat = model.teacher_features(x)
        return model.teacher_classifier(feat, training=False), feat

    def student_side(x):
        feat = model.student_backbone(x, training=False)
        return model.student_classifier(feat, training=False), model.student_projection(feat, training=False)

    (t1, tf1), (t2, tf2) = teacher_side(v1), teacher_side(v2)
    (s1, sp1), (s2, sp2) = student_side(v1), student_side(v2)
    # Student(v1) against teacher(v2) and student(v2) against teacher(v1), averaged.
    kl = 0.5 * (distillation.kl_divergence(t2, s1, 0.2) + distillation.kl_divergence(t1, s2, 0.2))
    fs = 0.5 * (distillation.feature_similarity(tf2, sp1) + distillation.feature_similarity(tf1, sp2))
    assert float(terms["kl"]) == pytest.approx(float(kl), rel=1e-4)
    assert float(terms["fs"]) == pytest.approx(float(fs), rel=1e-4)
    # The same-view pairing gives a different value on these views: the swap is observable.
    same = 0.5 * (distillation.kl_divergence(t1, s1, 0.2) + distillation.kl_divergence(t2, s2, 0.2))
    assert abs(float(same) - float(kl)) > 1e-3


def test_gradient_accumulation_applies_the_mean_of_k_gradients():
    model = BURN(tiny_teacher(), small_student(), BURNConfig(head_width=32, head="dense"), accumulation_steps=2)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), run_eagerly=True)
    variables = model.train_variables()
    before = snapshot(variables)
    batches = [batch(seed=1), batch(seed=2)]
    grads = []
    for b in batches:
        with tf.GradientTape() as tape:
            loss = model.compute_losses(list(b), None, training=True)["loss"]
        grads.append(tape.gradient(loss, variables))
    for b in batches:
        model.train_on_batch(b)
    assert int(model.optimizer.iterations.numpy()) == 1
    for w0, v, g1, g2 in zip(before, variables, *grads):
        g1 = np.zeros_like(w0) if g1 is None else g1.numpy()
        g2 = np.zeros_like(w0) if g2 is None else g2.numpy()
        np.testing.assert_allclose(v.numpy(), w0 - 0.1 * (g1 + g2) / 2, rtol=1e-4, atol=1e-6)


def test_accumulators_exist_after_compile_not_created_by_train_step():
    model = BURN(tiny_teacher(), small_student(), BURNConfig(head_width=32), accumulation_steps=2)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), run_eagerly=True)
    accumulators = list(model._accumulators)
    assert len(accumulators) == len(model.train_variables())
    model.train_on_batch(batch())
    assert all(a is b for a, b in zip(accumulators, model._accumulators))
    assert "accumulated_gradients" in model.checkpoint_parts()


def test_registry_and_config_class():
    from burn_tf.methods import method_class

    assert method_class("burn") is BURN and BURN.Config is BURNConfig
    assert BURN.num_views_for(BURNConfig(symmetric=False)) == 1
    assert set(make_small_burn().exported_heads()) == {"classifier"}


@pytest.mark.parametrize("similarity_on", ["head", "features"])
def test_feature_similarity_sends_no_gradient_into_the_teacher_classifier(similarity_on):
    model = make_small_burn(similarity_on=similarity_on)
    with tf.GradientTape(persistent=True) as tape:
        terms = model.compute_losses(list(batch(8)), None, training=True)
    theta = model.teacher_classifier.trainable_variables
    assert all(g is None for g in tape.gradient(terms["fs"], theta))
    assert any(g is not None for g in tape.gradient(terms["kl"], theta))  # the moving target


ANTI_COLLAPSE = [
    dict(target="centered"),
    dict(target="sinkhorn"),
    dict(teacher_classifier_lr_multiplier=0.1),
    dict(entropy_bonus=1.0),
    dict(bounded_logits=True, bottleneck_dim=8),
    dict(kl_warmup_fraction=0.5),
    dict(lambda_schedule="heaviside"),
]


@pytest.mark.parametrize("option", ANTI_COLLAPSE, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_anti_collapse_option_trains_the_moving_target(option):
    model = make_small_burn(**option)
    model.build_all()
    theta = snapshot(model.teacher_classifier.trainable_variables)
    phi = snapshot(model.student_backbone.trainable_variables)
    model.lambda_value.assign(0.5)
    logs = model.train_on_batch(batch(), return_dict=True)
    assert all(np.isfinite(logs[k]) for k in ("loss", *model.loss_terms))
    assert changed(theta, model.teacher_classifier.trainable_variables)
    assert changed(phi, model.student_backbone.trainable_variables)


def test_lr_multiplier_scales_the_teacher_classifier_step():
    steps = {}
    for m in (1.0, 0.1):
        tf.keras.utils.set_random_seed(3)
        model = make_small_burn(head="dense", teacher_classifier_lr_multiplier=m)
        model.build_all()
        if m != 1.0:
            model.snapshot_teacher_classifier()
        before = snapshot(model.teacher_classifier.trainable_variables)
        model.train_on_batch(batch(seed=4))
        steps[m] = [v.numpy() - b for v, b in zip(model.teacher_classifier.trainable_variables, before)]
    for full, slow in zip(steps[1.0], steps[0.1]):
        np.testing.assert_allclose(slow, 0.1 * full, rtol=1e-3, atol=1e-7)


def test_centering_keeps_an_ema_of_the_batch_mean_logits():
    model = make_small_burn(target="centered", center_momentum=0.9, symmetric=False)
    v1, _ = batch(8)
    feat = model.teacher_features(v1)
    mean = tf.reduce_mean(model.teacher_classifier(feat, training=True), axis=0)
    model.compute_losses([v1], None, training=True)
    np.testing.assert_allclose(model.target_center.numpy(), 0.1 * mean.numpy(), rtol=1e-4, atol=1e-6)
    model.compute_losses([v1], None, training=False)  # evaluation leaves the centre alone
    np.testing.assert_allclose(model.target_center.numpy(), 0.1 * mean.numpy(), rtol=1e-4, atol=1e-6)


def test_sinkhorn_target_is_equipartitioned_and_fitted_by_the_teacher_classifier():
    model = make_small_burn(target="sinkhorn", symmetric=False)
    v1, _ = batch(16)
    logits = model.teacher_classifier(model.teacher_features(v1))
    q = np.exp(model.target_log_probs(logits, training=True).numpy())
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-4)
    assert "target_fit" in model.loss_terms
    with tf.GradientTape() as tape:
        terms = model.compute_losses([v1], None, training=True)
    grads = tape.gradient(terms["target_fit"], model.teacher_classifier.trainable_variables)
    assert any(g is not None and float(tf.norm(g)) > 0 for g in grads)


def test_stage2_teacher_classifier_from_stage1_or_from_scratch():
    stage1 = make_small_burn()
    stage1.train_on_batch(batch())
    for from_stage1 in (True, False):
        stage2 = make_small_burn(teacher_classifier_from_stage1=from_stage1)
        fresh = snapshot(stage2.teacher_classifier.weights)
        stage2.init_from_previous_stage(stage1)
        same = all(np.array_equal(a.numpy(), b.numpy())
                   for a, b in zip(stage2.teacher_classifier.weights, stage1.teacher_classifier.weights))
        assert same is from_stage1
        assert changed(fresh, stage2.teacher_classifier.weights) is from_stage1


def test_collapse_is_reported_in_the_logs_and_the_step_file(tmp_path):
    model = make_small_burn(head="dense", collapse_patience=2)
    model.log_dir = tmp_path
    v1, v2 = batch(8)
    ds = tf.data.Dataset.from_tensors((v1, v2)).repeat(3)
    # model.callbacks gives the StepScalarLogger (into model.log_dir) with the watcher.
    callbacks = model.callbacks(3)
    assert sum(isinstance(c, StepScalarLogger) for c in callbacks) == 1
    watcher = next(c for c in callbacks if isinstance(c, CollapseWatcher))
    assert watcher.criterion == CollapseCriterion(0.5, 1e-3) and watcher.patience == 2
    # A floor no real KL reaches: every step counts as collapsed, so the watcher must fire.
    watcher.criterion = CollapseCriterion(kl_floor=1e9)
    history = model.fit(ds, epochs=1, callbacks=callbacks, verbose=0)
    assert history.history["target_collapsed"] == [1.0]
    assert history.history["collapse_step"] == [1.0]
    assert history.history["kl_min"][0] > 0
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    for key in ("kl", "fs", "lambda", "lr", "target_entropy", "target_mutual_information", "head_agreement",
                "grad_norm_student_backbone", "grad_norm_teacher_classifier"):
        assert all(np.isfinite(r[key]) for r in lines), key
    assert (tmp_path / "logs" / "steps").is_dir()


def test_released_head_init_draws_kaiming_necks_and_a_torch_default_pre_fc():
    # naver-ai/burn: necks kaiming_init(fan_in, relu) = N(0, 2/fan_in), bias 0; the student's
    # use_mlp Linear(1024, 1024) keeps nn.Linear's U(±1/√fan_in).
    model = make_small_burn(head_width=512, head_init="released", student_pre_fc=True)
    fc2 = model.teacher_classifier.get_layer("teacher_classifier_fc2")
    assert float(np.std(fc2.kernel.numpy())) == pytest.approx((2.0 / 512) ** 0.5, rel=0.02)
    assert not np.any(fc2.bias.numpy())
    pre_fc = model.student_classifier.get_layer("student_classifier_pre_fc")
    bound = 16 ** -0.5
    for w in (pre_fc.kernel.numpy(), pre_fc.bias.numpy()):
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.5 * bound
    student_fc2 = model.student_classifier.get_layer("student_classifier_head").get_layer("student_classifier_head_fc2")
    assert float(np.std(student_fc2.kernel.numpy())) == pytest.approx((2.0 / 512) ** 0.5, rel=0.02)
    # Keras' default: Glorot uniform, std √(2 / (fan_in + fan_out)) = √(1/512) here.
    keras = make_small_burn(head_width=512).teacher_classifier.get_layer("teacher_classifier_fc2")
    assert float(np.std(keras.kernel.numpy())) == pytest.approx((1.0 / 512) ** 0.5, rel=0.02)
    with pytest.raises(ValueError, match="head_init"):
        BURNConfig(head_init="he")


def test_student_pre_fc_is_a_trained_relu_layer_before_the_student_head():
    model = make_small_burn(student_pre_fc=True, symmetric=False)
    pre_fc = model.student_classifier.get_layer("student_classifier_pre_fc")
    assert pre_fc.kernel.shape == (16, 16) and pre_fc.activation is tf.keras.activations.relu
    head = model.student_classifier.get_layer("student_classifier_head")
    feat = tf.random.normal((4, 16), seed=1)
    np.testing.assert_allclose(model.student_classifier(feat).numpy(),
                               head(pre_fc(feat)).numpy(), rtol=1e-5, atol=1e-6)
    before = snapshot([pre_fc.kernel])
    model.train_on_batch(batch()[0])
    assert changed(before, [pre_fc.kernel])
    assert model.teacher_classifier.layers[1].name == "teacher_classifier_fc1"  # g_θ has none


@pytest.mark.parametrize("batch_stats", [False, True])
def test_a_frozen_teacher_classifier_normalises_by_the_batch_when_asked(batch_stats):
    # The released code freezes its neck's parameters but leaves it in train mode: its
    # BatchNorm normalises by each batch. Either way no weight of g_θ is trained.
    model = make_small_burn(symmetric=False, train_teacher_classifier=False, teacher_classifier_batch_stats=batch_stats)
    images = batch()[0]
    logits = model.teacher_classifier(model.teacher_features(images), training=batch_stats)
    want = diagnostics.entropy_of_mean(tf.nn.log_softmax(logits / model.config.temperature))
    got = model.compute_losses([images], training=True)["target_entropy"]
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    theta = snapshot(model.teacher_classifier.trainable_weights)
    model.train_on_batch(images)
    assert not changed(theta, model.teacher_classifier.trainable_weights)
    assert "teacher_classifier" not in model.trainable_groups()
