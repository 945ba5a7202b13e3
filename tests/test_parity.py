"""Tests for tfvae.parity: the checks pass on a faithful export (also one whose
bounds sum to about 0), fail on a perturbed one, and see Flex ops.

The tiny VAE's exports come from conftest.py (`exported`, once per likelihood).
"""

import shutil

import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import endpoints, export, parity


def test_op_names_see_flex_ops():
    # A stateless sampler converts only with SELECT_TF_OPS: the check must see it.
    function = tf.function(
        lambda: {"z": tf.random.stateless_normal([2], seed=[1, 2])}, input_signature=[]
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    ops = parity.tflite_op_names(converter.convert())
    assert any(op.startswith("Flex") for op in ops)


def test_tflite_parity_within_tolerances(exported, images):
    _, model, folder, _ = exported
    report = parity.check_export(model, folder, images(seed=1), seed=3)
    for quantization in endpoints.QUANTIZATIONS:
        metrics = report[endpoints.tflite_name(quantization)]
        assert metrics["passed"]
        assert metrics["max_abs_diff"] <= parity.TOLERANCES[quantization].max_abs
    assert report["decoder_float32.tflite"]["max_abs_diff"] < 1e-5
    # The quantized network differs from the float one, but stays close.
    assert 0 < report["decoder_dynamic_int8.tflite"]["max_abs_diff"]


def test_parity_fails_for_other_weights(exported, tiny_vae, images):
    likelihood, _, folder, _ = exported
    with pytest.raises(parity.ParityError, match="decoder_float32.tflite") as error:
        parity.check_export(tiny_vae(likelihood, seed=1), folder, images())
    assert not error.value.report["saved_model"]["passed"]


def test_one_perturbed_weight_in_the_export_fails_parity(exported, images, tmp_path):
    """A SavedModel (and the .tflite converted from it) with one decoder bias
    moved by 1e-3, about 2.5e-4 in one pixel's mean: both checks must see it."""
    _, model, folder, _ = exported
    loaded = tf.saved_model.load(str(folder / endpoints.SAVED_MODEL_DIR))
    (bias,) = [
        v
        for v in loaded.variables
        if any(f"decoder/likelihood/{layer}/bias" in v.name for layer in ("loc", "logits"))
    ]
    bias.assign(bias + tf.one_hot(17, bias.shape[0]) * 1e-3)
    perturbed = tmp_path / "export"
    perturbed.mkdir()
    tf.saved_model.save(
        loaded, str(perturbed / endpoints.SAVED_MODEL_DIR), signatures=dict(loaded.signatures)
    )
    (perturbed / "decoder_float32.tflite").write_bytes(
        export.convert_decoder(perturbed / endpoints.SAVED_MODEL_DIR, "float32")
    )
    with pytest.raises(parity.ParityError) as error:
        parity.check_export(model, perturbed, images(seed=1), quantizations=["float32"])
    report = error.value.report
    assert not report["saved_model"]["passed"] and not report["decoder_float32.tflite"]["passed"]
    assert any(
        "decode/mean" in failure and "index (" in failure and "tolerance" in failure
        for failure in report["saved_model"]["failures"]
    )
    # The unperturbed export of the same model still passes.
    shutil.rmtree(perturbed / endpoints.SAVED_MODEL_DIR)
    shutil.copytree(folder / endpoints.SAVED_MODEL_DIR, perturbed / endpoints.SAVED_MODEL_DIR)
    shutil.copy(folder / "decoder_float32.tflite", perturbed / "decoder_float32.tflite")
    assert parity.check_export(model, perturbed, images(seed=1), quantizations=["float32"])


SHARP, BROAD = 0.005, 1.0  # The decoder's scales on even and odd pixels.
# E[log p] per pixel is -log(SHARP) - log(2 pi)/2 - 1/2 on sharp pixels with
# x = loc + SHARP n, and -log(2 pi)/2 - r^2/2 on broad ones with x = loc + r:
# this residual r makes the expected sum of an image's 560 terms 0.
BROAD_RESIDUAL = np.sqrt(2 * (-np.log(SHARP) - np.log(2 * np.pi) - 0.5))


def straddling_decoder_vae() -> tfvae.VAE:
    """A Gaussian VAE over 28 x 20 images whose decoder scale is SHARP on even
    pixels and BROAD on odd ones, whatever z."""
    config = tfvae.ModelConfig(
        latent_dim=2, hidden_units=(32,), likelihood="gaussian", event_shape=(28, 20)
    )
    model = tfvae.build_vae(config, seed=0)
    head = model.decoder.head
    scale_layer = head.parameter_layers[head.parameter_names.index("scale")]
    scales = np.where(np.arange(28 * 20) % 2, BROAD, SHARP)
    raw = np.log(np.expm1(scales - head.min_scale)) - np.log(np.e - 1)  # softplus^-1, shifted.
    scale_layer.kernel.assign(tf.zeros_like(scale_layer.kernel))
    scale_layer.bias.assign(raw.astype(np.float32))
    return model


def straddling_images(model: tfvae.VAE, n: int = 64, seed: int = 0) -> np.ndarray:
    """Images `[n, 28, 20]` whose log p(x|z) sums are 0 +- 12 nats, of both signs:
    sharp pixels of +3.9 nats each, broad ones of -3.9, and N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    likelihood = model.decode(rng.standard_normal((n, 2)).astype(np.float32))
    loc, scale = likelihood.mean().numpy(), likelihood.distribution.scale.numpy()
    residual = np.where(
        scale < 0.5,
        scale * rng.standard_normal(loc.shape),
        BROAD_RESIDUAL * rng.choice([-1, 1], loc.shape),
    )
    return (loc + residual).astype(np.float32)


def test_bounds_that_sum_to_about_zero_pass_parity(tmp_path):
    """A sound export whose distortions straddle 0: the sums' rounding errors
    (1e-4, from 280 sharp pixels) dwarf any tolerance relative to the value."""
    model = straddling_decoder_vae()
    x = straddling_images(model)
    distortion = model.bound_terms(x, seed=1).distortion.numpy()
    assert (distortion > 0).any() and (distortion < 0).any()
    assert np.abs(distortion).min() < 5
    description = export.export_model(model, tmp_path / "export", x, quantizations=["float32"])
    assert description["parity"]["saved_model"]["passed"]
