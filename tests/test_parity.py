"""Tests for tfvae.parity: the checks pass on a faithful export, fail on another
model's weights, and see Flex ops.

The tiny VAE's exports come from conftest.py (`exported`, once per likelihood).
"""

import pytest
import tensorflow as tf

from tfvae import endpoints, parity


def test_op_names_see_flex_ops():
    # A stateless sampler converts only with SELECT_TF_OPS: the check must see it.
    function = tf.function(lambda: {"z": tf.random.stateless_normal([2], seed=[1, 2])},
                           input_signature=[])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
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
