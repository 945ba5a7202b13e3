"""Trunks and probabilistic networks: shapes, conditions, spatial heads, saving, LiteRT.

Sizes are distinct on every axis (batch B, latent J, condition K, filters and
hidden widths) and the networks tiny, so that a wrong axis fails and the file
runs in seconds. The spatial log-probability is checked against a numpy 1 x 1
convolution of the head's own weights, the crop against the uncropped map of
an identically seeded decoder.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae import likelihoods, posteriors
from tfvae.networks import MLP, ConvolutionalDecoder, ConvolutionalEncoder, ProbabilisticNetwork

B, J, K = 3, 5, 4
FILTERS, HIDDEN = (4, 6), (7,)
IMAGES = [(28, 28), (28, 20), (32, 32, 3)]


def rng():
    return np.random.default_rng(0)


def one_hot(labels):
    return np.eye(K, dtype=np.float32)[labels]


def randomize(model, seed=1):
    """Every weight ~ N(0, 0.3^2): a weight not saved, or not created on load,
    reloads at its (seeded) initial value and changes the outputs."""
    generator = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(generator.normal(0, 0.3, size=weight.shape).astype(np.float32))


# Shapes.


@pytest.mark.parametrize("image", IMAGES)
def test_encoder_features_for_any_image_size(image):
    encoder = ConvolutionalEncoder(FILTERS, HIDDEN, seed=0)
    x = rng().uniform(size=(B, *image)).astype(np.float32)
    assert tuple(encoder(x).shape) == (B, HIDDEN[-1]) == encoder.compute_output_shape((B, *image))
    # Without Dense layers: the flattened map of two stride-2 convolutions.
    flat = ConvolutionalEncoder(FILTERS, (), seed=0)
    height, width = (-(-d // 4) for d in image[:2])
    assert tuple(flat(x).shape) == (B, height * width * FILTERS[-1])


@pytest.mark.parametrize("filters", [(4, 6), (6, 5, 4)])
@pytest.mark.parametrize("image", IMAGES)
def test_decoder_feature_map_is_exactly_the_image(image, filters):
    decoder = ConvolutionalDecoder(image, filters, HIDDEN, seed=0)
    features = decoder(rng().normal(size=(B, J)).astype(np.float32))
    expected = (B, *image[:2], filters[-1])
    assert tuple(features.shape) == expected == decoder.compute_output_shape((B, J))
    scale = 2 ** len(filters)
    assert decoder.base_shape == tuple(-(-d // scale) for d in image[:2])


def test_decoder_crops_the_centre_of_its_map():
    # Same seed, filters and 4 x 3 base map: the same weights, so the 28 x 20
    # output is the centre of the 32 x 24 one.
    z = rng().normal(size=(B, J)).astype(np.float32)
    cropped, full = (
        ConvolutionalDecoder(image, (6, 5, 4), HIDDEN, seed=0)(z).numpy()
        for image in [(28, 20), (32, 24)]
    )
    np.testing.assert_array_equal(cropped, full[:, 2:30, 2:22])


def test_decoder_base_sizes_of_frey_face_and_cifar():
    assert ConvolutionalDecoder((28, 20)).base_shape == (7, 5)
    assert ConvolutionalDecoder((32, 32, 3)).base_shape == (8, 8)
    assert ConvolutionalDecoder((28, 20), (8, 6, 4)).base_shape == (4, 3)


def test_trunks_refuse_shapes_they_cannot_make():
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        ConvolutionalDecoder((784,))
    with pytest.raises(ValueError, match="at least one"):
        ConvolutionalEncoder(())
    with pytest.raises(ValueError, match=r"\[B, H, W\] or \[B, H, W, C\]"):
        ConvolutionalEncoder(FILTERS).build((None, 784))


# Initialisers.


def test_conv_kernels_are_seeded_and_variance_preserving():
    def kernels(seed):
        encoder = ConvolutionalEncoder((16, 16), (32,), seed=seed)
        encoder.build((None, 12, 10, 8))
        return [layer.kernel.numpy() for layer in [*encoder.convolutions, *encoder.hidden]]

    first, again, other = kernels(3), kernels(3), kernels(4)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    # He normal: variance 2 / fan_in (truncated at 2 sd, rescaled), fan_in = 4 * 4 * 8.
    assert np.std(first[0]) == pytest.approx(np.sqrt(2 / 128), rel=0.1)
    # init_stddev, when given, is the Dense kernels' N(0, s^2); the convolutions keep He's.
    encoder = ConvolutionalEncoder((16,), (512,), init_stddev=0.01, seed=3)
    encoder.build((None, 12, 10, 8))
    assert np.std(encoder.hidden[0].kernel.numpy()) == pytest.approx(0.01, rel=0.05)
    assert np.std(encoder.convolutions[0].kernel.numpy()) == pytest.approx(
        np.sqrt(2 / 128), rel=0.1
    )


def test_mlp_and_head_without_init_stddev_start_variance_preserving():
    """init_stddev=None: Glorot uniform for tanh and linear layers, variance
    2 / (fan_in + fan_out) and bound sqrt(6 / (fan_in + fan_out)); He normal for
    ReLU, variance 2 / fan_in. N(0, 0.01^2) would give std 0.01 whatever the size."""
    fan_in, width, latent = 600, 300, 40
    tanh = MLP((width, width), init_stddev=None, seed=1)
    tanh.build((None, fan_in))
    first, second = (layer.kernel.numpy() for layer in tanh.hidden)
    assert np.var(first) == pytest.approx(2 / (fan_in + width), rel=0.05)
    assert np.abs(first).max() <= np.sqrt(6 / (fan_in + width))
    assert np.var(second) == pytest.approx(2 / (2 * width), rel=0.05)
    relu = MLP((width,), activation="relu", init_stddev=None, seed=1)
    relu.build((None, fan_in))
    assert np.var(relu.hidden[0].kernel.numpy()) == pytest.approx(2 / fan_in, rel=0.05)
    head = posteriors.DiagonalGaussian(latent, init_stddev=None, seed=2)
    network = ProbabilisticNetwork(tanh, head)
    network(np.zeros((1, fan_in), np.float32))
    projections = [w.numpy() for w in head.trainable_weights if w.shape == (width, latent)]
    assert projections
    for kernel in projections:
        assert np.var(kernel) == pytest.approx(2 / (width + latent), rel=0.1)
    # The paper's initialiser stays the default.
    paper = MLP((width,), seed=1)
    paper.build((None, fan_in))
    assert np.std(paper.hidden[0].kernel.numpy()) == pytest.approx(0.01, rel=0.05)


# Conditions.

TRUNKS = {
    "mlp": (lambda k: MLP(HIDDEN, condition_size=k, seed=0), (6, 5)),
    "encoder": (lambda k: ConvolutionalEncoder(FILTERS, HIDDEN, condition_size=k, seed=0), (8, 6)),
    "decoder": (
        lambda k: ConvolutionalDecoder((8, 6), FILTERS, HIDDEN, condition_size=k, seed=0),
        (J,),
    ),
}


@pytest.mark.parametrize("name", TRUNKS)
def test_the_condition_changes_the_output(name):
    make, shape = TRUNKS[name]
    trunk = make(K)
    inputs = rng().uniform(size=(B, *shape)).astype(np.float32)
    first = trunk(inputs, condition=one_hot([0, 1, 2])).numpy()
    np.testing.assert_array_equal(trunk(inputs, condition=one_hot([0, 1, 2])), first)
    second = trunk(inputs, condition=one_hot([3, 1, 0])).numpy()
    assert np.array_equal(first[1], second[1])  # Same label, same output.
    assert not np.allclose(first[0], second[0]) and not np.allclose(first[2], second[2])


def test_the_condition_is_appended_where_the_trunk_is_flat():
    x = rng().uniform(size=(B, 6, 5)).astype(np.float32)
    y = one_hot([2, 0, 3])
    # No hidden layer: the features are the flattened input, then the condition.
    np.testing.assert_array_equal(
        MLP((), condition_size=K)(x, condition=y), np.concatenate([x.reshape(B, -1), y], axis=1)
    )
    encoder = ConvolutionalEncoder(FILTERS, (), condition_size=K, seed=0)
    np.testing.assert_array_equal(encoder(x, condition=y)[:, -K:], y)
    decoder = ConvolutionalDecoder((8, 6), FILTERS, HIDDEN, condition_size=K, seed=0)
    decoder.build((None, J))
    assert decoder.hidden[0].kernel.shape == (J + K, HIDDEN[0])


@pytest.mark.parametrize("name", TRUNKS)
def test_a_missing_or_unexpected_condition_is_refused(name):
    make, shape = TRUNKS[name]
    inputs = np.zeros((B, *shape), np.float32)
    with pytest.raises(ValueError, match="without a condition"):
        make(0)(inputs, condition=one_hot([0, 1, 2]))
    with pytest.raises(ValueError, match=f"condition_size={K}"):
        make(K)(inputs)
    with pytest.raises(ValueError, match=rf"condition \[B, {K}\]"):
        make(K)(inputs, condition=np.zeros((B, K + 1), np.float32))


def test_a_network_passes_its_condition_to_the_trunk():
    network = ProbabilisticNetwork(
        MLP(HIDDEN, condition_size=K, seed=0), posteriors.DiagonalGaussian(J, seed=1)
    )
    x = rng().uniform(size=(B, 6, 5)).astype(np.float32)
    y = one_hot([1, 3, 0])
    parameters = network.parameters(x, condition=y)
    expected = network.head.parameters(network.trunk(x, condition=y))
    for name, value in expected.items():
        np.testing.assert_array_equal(parameters[name], value)
    np.testing.assert_array_equal(network(x, condition=y).mean(), parameters["loc"])


# Saving.


def assert_reloads_identically(network, inputs, condition, path):
    network(inputs, condition=condition)
    randomize(network)
    keras.saving.save_model(network, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.trunk.get_config() == network.trunk.get_config()
    assert loaded.head.get_config() == network.head.get_config()
    assert len(loaded.weights) == len(network.weights)
    expected = network.parameters(inputs, condition=condition)
    for name, value in loaded.parameters(inputs, condition=condition).items():
        np.testing.assert_array_equal(value, expected[name])


def test_a_conv_decoder_with_a_spatial_head_reloads_identically(tmp_path):
    network = ProbabilisticNetwork(
        ConvolutionalDecoder((28, 20), FILTERS, HIDDEN, seed=0),
        likelihoods.Bernoulli((28, 20), spatial=True, seed=1),
    )
    z = rng().normal(size=(B, J)).astype(np.float32)
    assert_reloads_identically(network, z, None, tmp_path / "decoder.keras")


def test_a_conditional_mlp_network_reloads_identically(tmp_path):
    network = ProbabilisticNetwork(
        MLP(HIDDEN, condition_size=K, seed=0), posteriors.DiagonalGaussian(J, seed=1)
    )
    x = rng().uniform(size=(B, 6, 5)).astype(np.float32)
    assert_reloads_identically(network, x, one_hot([2, 2, 1]), tmp_path / "encoder.keras")


# Every argument away from its default.
NON_DEFAULT_TRUNKS = {
    "mlp": lambda: MLP(HIDDEN, "relu", 0.2, 1e-3, 4, condition_size=K),
    "encoder": lambda: ConvolutionalEncoder(
        (3,),
        (),
        kernel_size=3,
        activation="tanh",
        init_stddev=0.1,
        weight_decay=1e-3,
        seed=4,
        condition_size=K,
    ),
    "decoder": lambda: ConvolutionalDecoder(
        (9, 7, 2),
        (3,),
        (),
        kernel_size=2,
        activation="elu",
        init_stddev=0.1,
        weight_decay=1e-3,
        seed=4,
        condition_size=K,
    ),
}


@pytest.mark.parametrize("name", NON_DEFAULT_TRUNKS)
def test_config_covers_every_constructor_argument(name):
    trunk = NON_DEFAULT_TRUNKS[name]()
    config = trunk.get_config()
    for cls in type(trunk).__mro__[: type(trunk).__mro__.index(keras.layers.Layer)]:
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        assert arguments <= set(config), arguments - set(config)
    assert type(trunk).from_config(config).get_config() == config


# Spatial heads.

SPATIAL_HEADS = {
    "bernoulli": lambda event: likelihoods.Bernoulli(event, spatial=True, seed=1),
    **{
        f"gaussian_{scale}": (
            lambda event, scale=scale: likelihoods.Gaussian(
                event, scale=scale, spatial=True, seed=1
            )
        )
        for scale in likelihoods.SCALE_MODES
    },
    "continuous_bernoulli": lambda event: likelihoods.ContinuousBernoulli(
        event, spatial=True, seed=1
    ),
    "discretized_logistic": lambda event: likelihoods.DiscretizedLogistic(
        event, spatial=True, seed=1
    ),
}


def feature_map(event, width=6, seed=2):
    """Random features `[B, H, W, width]` for an image event."""
    size = (B, *event[:2], width)
    return tf.constant(np.random.default_rng(seed).normal(size=size), tf.float32)


def data_in_support(head, shape, seed=3):
    u = np.random.default_rng(seed).uniform(size=shape)
    x = {
        "binary": np.round(u),
        "real": u,
        "unit_interval": u,
        "grey_levels": np.round(u * 255) / 255,
    }[head.support]
    return x.astype(np.float32)


@pytest.mark.parametrize("event", [(7, 5), (7, 5, 2)])
@pytest.mark.parametrize("name", SPATIAL_HEADS)
def test_every_likelihood_projects_each_pixel(name, event):
    head = SPATIAL_HEADS[name](event)
    features = feature_map(event)
    head.build(features.shape)
    parameters = head.parameters(features)
    channels = event[2] if len(event) == 3 else 1
    for layer in head.parameter_layers:
        assert layer.kernel.shape == (features.shape[-1], channels)
    for value in parameters.values():
        assert tuple(value.shape) == (B, *event)
    x = data_in_support(head, (B, *event))
    log_prob = head(features).log_prob(x).numpy()
    assert log_prob.shape == (B,) and np.all(np.isfinite(log_prob))
    elementwise = head.elementwise_log_prob(parameters, x).numpy()
    np.testing.assert_allclose(elementwise.reshape(B, -1).sum(1), log_prob, rtol=1e-5)
    config = head.get_config()
    assert config["spatial"] is True
    assert type(head).from_config(config).get_config() == config


@pytest.mark.parametrize("event", [(7, 5), (7, 5, 2)])
def test_spatial_bernoulli_log_prob_is_the_sum_of_per_pixel_terms(event):
    head = likelihoods.Bernoulli(event, spatial=True, seed=1)
    features = feature_map(event)
    head.build(features.shape)
    randomize(head)
    # A 1 x 1 convolution in numpy: each pixel's features times the kernel.
    kernel, bias = (w.numpy().astype(np.float64) for w in head.parameter_layers[0].weights)
    logits = (np.einsum("bhwf,fc->bhwc", features.numpy(), kernel) + bias).reshape(B, *event)
    x = data_in_support(head, (B, *event))
    expected = np.sum(x * logits - np.logaddexp(0, logits), axis=tuple(range(1, x.ndim)))
    np.testing.assert_allclose(head(features).log_prob(x), expected, rtol=1e-5)


class FlatLogits(likelihoods.Bernoulli):
    """A Bernoulli whose raw logits come out flat, `[H W]`: not projectable per pixel."""

    def raw_shapes(self):
        return {"logits": (int(np.prod(self.event_shape)),)}


def test_a_spatial_head_needs_event_shaped_parameters_and_a_matching_map():
    with pytest.raises(ValueError, match="cannot be projected per pixel"):
        FlatLogits((7, 5), spatial=True)
    with pytest.raises(ValueError, match=r"image event"):
        posteriors.DiagonalGaussian(J, spatial=True)
    with pytest.raises(ValueError, match=r"image event"):
        posteriors.FullCovarianceGaussian(J, spatial=True)
    with pytest.raises(ValueError, match=r"feature map \[B, 7, 5, F\]"):
        likelihoods.Bernoulli((7, 5), spatial=True).build((None, 7, 6, 3))
    with pytest.raises(ValueError, match=r"feature map \[B, 7, 5, F\]"):
        likelihoods.Bernoulli((7, 5), spatial=True).build((None, 35))
    assert likelihoods.Bernoulli((7, 5)).get_config()["spatial"] is False


# LiteRT.


def test_conv_networks_convert_to_litert_builtins_and_agree(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from tfvae.parity import tflite_op_names

    image = (12, 10)
    encoder = ProbabilisticNetwork(
        ConvolutionalEncoder(FILTERS, HIDDEN, seed=0), posteriors.DiagonalGaussian(J, seed=1)
    )
    decoder = ProbabilisticNetwork(
        ConvolutionalDecoder(image, (4, 6, 3), HIDDEN, condition_size=K, seed=2),
        likelihoods.Bernoulli(image, spatial=True, seed=3),
    )
    generator = np.random.default_rng(5)
    x = generator.uniform(size=(B, *image)).astype(np.float32)
    z = generator.normal(size=(B, J)).astype(np.float32)
    y = one_hot([0, 3, 1])
    encoder(x), decoder(z, condition=y)
    randomize(encoder), randomize(decoder, seed=2)

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(decoder)
    archive.add_endpoint(
        "encode",
        lambda x: {"loc": encoder.parameters(x)["loc"]},
        input_signature=[tf.TensorSpec([None, *image], tf.float32, name="x")],
    )
    archive.add_endpoint(
        "decode",
        lambda z, y: {"logits": decoder.parameters(z, condition=y)["logits"]},
        input_signature=[
            tf.TensorSpec([None, J], tf.float32, name="z"),
            tf.TensorSpec([None, K], tf.float32, name="y"),
        ],
    )
    archive.write_out(str(tmp_path / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "saved_model"), signature_keys=["encode", "decode"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()  # Raises on any op without a builtin.

    assert {"CONV_2D", "TRANSPOSE_CONV", "CONCATENATION"} <= tflite_op_names(flatbuffer)
    runner = Interpreter(model_content=flatbuffer).get_signature_runner
    np.testing.assert_allclose(
        runner("encode")(x=x)["loc"], encoder.parameters(x)["loc"], atol=1e-5
    )
    np.testing.assert_allclose(
        runner("decode")(z=z, y=y)["logits"],
        decoder.parameters(z, condition=y)["logits"],
        atol=1e-5,
    )
