import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from burn_tf.models.reactnet import (
    ReActNetConfig,
    RPReLU,
    RSign,
    binary_convs,
    block_output_names,
    block_strides,
    reactnet_a,
    transfer_stage1_to_stage2,
)

TINY = dict(input_size=32, width_multiplier=0.125)


def test_rsign_forward_is_sign_of_shifted_input():
    layer = RSign()
    x = tf.constant([[-2.0, -0.1, 0.3, 1.5]])
    layer.build(x.shape)
    layer.bias.assign([0.0, 0.2, -0.5, 0.0])
    np.testing.assert_array_equal(layer(x).numpy(), [[-1.0, 1.0, -1.0, 1.0]])


@pytest.mark.parametrize(
    "gradient, expected",
    # d/dx at x = -0.5, 0.5, 2: ApproxSign gives 2 - 2|x| inside |x| < 1; STE gives 1 inside.
    [("approx_sign", [1.0, 1.0, 0.0]), ("ste", [1.0, 1.0, 0.0])],
)
def test_rsign_surrogate_gradients(gradient, expected):
    layer = RSign(gradient)
    x = tf.constant([[-0.5, 0.5, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [expected], atol=1e-6)
    # The shift is learned through the same surrogate.
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(tf.constant([[0.25, 0.25, 0.25]])))
    grad = tape.gradient(y, layer.bias).numpy()
    want = 1.5 if gradient == "approx_sign" else 1.0
    np.testing.assert_allclose(grad, [want] * 3, atol=1e-6)


def test_rsign_rejects_unknown_gradient():
    with pytest.raises(ValueError, match="approx_sign"):
        RSign("tanh")


def test_rprelu_slope_starts_at_a_quarter_not_zero():
    layer = RPReLU()
    y = layer(tf.constant([[-4.0, 2.0]]))
    np.testing.assert_allclose(y.numpy(), [[-1.0, 2.0]])


def test_channels_and_strides_match_reference():
    cfg = ReActNetConfig()
    channels = cfg.channels()
    assert channels == [32, 64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    strides = block_strides(channels)
    assert [i + 1 for i, s in enumerate(strides) if s == 2] == [2, 4, 6, 12]
    assert len(strides) == 13


def test_block_output_shapes_at_32px():
    model = reactnet_a(ReActNetConfig(stage=2, **TINY))
    names = block_output_names(model)
    assert len(names) == 13
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe(tf.zeros((2, 32, 32, 3)))
    # stem /2 → 16 px; /2 after blocks 2, 4, 6, 12.
    sizes = [16, 8, 8, 4, 4, 2, 2, 2, 2, 2, 2, 1, 1]
    widths = [8, 16, 16, 32, 32] + [64] * 6 + [128, 128]
    for out, size, width in zip(outputs, sizes, widths):
        assert tuple(out.shape) == (2, size, size, width)
    assert tuple(model(tf.zeros((2, 32, 32, 3))).shape) == (2, 128)


def test_stage2_kernels_are_plus_minus_alpha_per_output_channel():
    model = reactnet_a(ReActNetConfig(stage=2, **TINY))
    conv = binary_convs(model)[3]
    kernel = conv.kernel
    with lq.context.quantized_scope(True):
        q = tf.convert_to_tensor(kernel).numpy()
    latent = kernel.latent_variable.numpy() if hasattr(kernel, "latent_variable") else kernel.numpy()
    alpha = np.abs(latent).reshape(-1, latent.shape[-1]).mean(axis=0)
    for c in range(q.shape[-1]):
        values = np.unique(np.round(np.abs(q[..., c]), 6))
        assert len(values) == 1
        np.testing.assert_allclose(values[0], alpha[c], rtol=1e-5)
    assert all(conv.kernel_quantizer.precision == 1 for conv in binary_convs(model))


def test_stage1_kernels_stay_full_precision():
    model = reactnet_a(ReActNetConfig(stage=1, **TINY))
    for conv in binary_convs(model):
        assert conv.kernel_quantizer is None
        assert conv.input_quantizer.precision == 1
        assert len(np.unique(conv.kernel.numpy())) > 2


def test_reference_size_parameters_and_binary_macs():
    """224 px, 1000 classes, stage 2: the reference's 29,343,592 params and 4.82e9 binary MACs."""
    model = reactnet_a(ReActNetConfig(stage=2, input_size=224), include_top=True, num_classes=1000)
    profile = lq.models.ModelProfile(model)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 29_343_592
    assert profile.op_count("mac", 1) == 4_816_896_000
    assert profile.op_count("mac", 32) == 11_862_016  # stem conv + classifier, ≈ 0.12e8


def test_stage1_to_stage2_transfer_copies_every_weight():
    stage1 = reactnet_a(ReActNetConfig(stage=1, **TINY))
    for w in stage1.weights:
        w.assign(tf.random.normal(w.shape))
    stage2 = reactnet_a(ReActNetConfig(stage=2, **TINY))
    copied = transfer_stage1_to_stage2(stage1, stage2)
    assert set(c.name for c in binary_convs(stage2)) <= set(copied)
    for a, b in zip(stage1.weights, stage2.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_stage_transfer_refuses_a_mismatch_naming_the_layer():
    stage1 = reactnet_a(ReActNetConfig(stage=1, input_size=32, width_multiplier=0.25))
    stage2 = reactnet_a(ReActNetConfig(stage=2, **TINY))
    with pytest.raises(ValueError, match="stem_conv|block_01"):
        transfer_stage1_to_stage2(stage1, stage2)


def test_first_step_gradients_are_finite_and_moderate():
    """The trap in docs/design.md: PReLU at 0 makes BN divide by sqrt(eps) and gradients reach 1e16+."""
    model = reactnet_a(ReActNetConfig(stage=2, **TINY), include_top=True, num_classes=10)
    x = tf.random.uniform((16, 32, 32, 3), seed=1)
    y = tf.range(16) % 10
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    norm = float(tf.linalg.global_norm(grads))
    assert np.isfinite(norm) and norm < 1e3


def test_small_inputs_and_config_validation():
    for size in (28, 64):
        model = reactnet_a(ReActNetConfig(stage=1, input_size=size, width_multiplier=0.125))
        assert model(tf.zeros((1, size, size, 3))).shape == (1, 128)
    with pytest.raises(ValueError, match="stage"):
        ReActNetConfig(stage=3)
    with pytest.raises(ValueError, match="activation_gradient"):
        ReActNetConfig(activation_gradient="relu")


def test_blocks_keeps_the_first_n_blocks_and_ends_in_the_last_ones_width():
    full = reactnet_a(ReActNetConfig(stage=2, **TINY))
    shallow = reactnet_a(ReActNetConfig(stage=2, blocks=4, **TINY))
    assert block_output_names(shallow) == [f"block_{i:02d}_out" for i in range(1, 5)]
    assert len(block_output_names(full)) == 13 and len(binary_convs(shallow)) == 8
    # 256·w features after block 4 (1024·w after 13), block 4 at stride 8 as in the full net.
    assert shallow.output_shape == (None, 32) and full.output_shape == (None, 128)
    assert shallow.get_layer("block_04_out").output_shape == full.get_layer("block_04_out").output_shape
    for bad in (0, 14, 2.0, "4", True):
        with pytest.raises(ValueError, match="backbone.blocks must be an integer in \\[1, 13\\]"):
            ReActNetConfig(blocks=bad)
