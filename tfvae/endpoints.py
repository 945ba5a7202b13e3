"""A VAE as plain tensors: the functions an export serves, and where it keeps them.

A SavedModel client may have no TFP and a phone has no TensorFlow, so every
endpoint returns tensors, never a distribution. They are written once for all
parts, through the part interface (`tfvae.parts`): each likelihood, posterior
and prior names its parameters and the noise a draw takes. With B examples,
latent codes [B, J] and images [B, *image_shape]:

    encode(x)                  -> z_mean [B, J] and posterior_<parameter>
    decode(z)                  -> the likelihood's parameters and mean E[x|z]
    sample_from_noise(noise..) -> x ~ p(x|z), mean E[x|z], and z ~ p(z) itself
    sample(num_samples)        -> the same, drawing its own noise
    reconstruct(x)             -> mean E[x | z = posterior mean]
    elbo(x, noise..)           -> elbo, rate, distortion [B], in nats, one draw of z

TFP's samplers need Flex ops, which LiteRT cannot run (../shared/STACK.md), so
sampling takes its noise as input: `sample_from_noise` takes the prior's noise
(e.g. `eps` ~ N(0, I) for N(0, I), plus `component_noise` ~ U(0, 1) for a
mixture) and the likelihood's (e.g. `uniform_noise` for Bernoulli pixels,
`normal_noise` for Gaussian ones); `elbo` takes the posterior's. Each is
standard normal or uniform (`tfvae.parts.NOISE_KINDS`). `sample(num_samples)`
draws that noise itself with the builtin random ops.

A conditional VAE (`model.num_classes` = K) takes one more input in every
endpoint, last: `labels`, int32 `[B]`, each in 0..K-1, one-hot encoded in the
graph (`VAE.condition`; LiteRT's builtin ONE_HOT) and fed to the encoder
q(z|x, y) and the decoder p(x|z, y); the prior p(z) has none. Its `sample`
takes `labels` `[n]` alone and draws n images, image i of class `labels[i]`:
the batch of every signature is the leading size of its inputs, and a count
beside the labels could only disagree with them. A label outside 0..K-1
encodes as all zeros (no class), as in the Keras model: nothing checks it in
the graph, so check it in the app.

An export keeps every endpoint in `saved_model/` and the decoder's
(`DECODER_SIGNATURES`) in one `decoder_<quantization>.tflite` per quantization.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae.model import VAE

SAVED_MODEL_DIR = "saved_model"
QUANTIZATIONS = ("float32", "dynamic_int8", "float16", "int8")
DECODER_SIGNATURES = ("decode", "sample_from_noise", "sample")
LABELS = "labels"  # A conditional VAE's extra input: int32 class labels [B].

NoiseSpec = dict[str, tuple[str, tuple[int, ...]]]


class UnsupportedModelError(ValueError):
    """The model has no tensor-only export (a posterior without a density, or
    networks without tfvae part heads)."""


def tflite_name(quantization: str) -> str:
    """The file name of the `.tflite` decoder quantized as `quantization`."""
    return f"decoder_{quantization}.tflite"


# Noise.


def sampling_noise(model: VAE) -> NoiseSpec:
    """{name: (kind, shape per example)} of `sample_from_noise`: the prior's, then
    the likelihood's.

    Raises:
        UnsupportedModelError: The networks have no part heads, or two parts
            name their noise alike.
    """
    heads = _heads(model)
    prior = model.prior_part().noise_spec(model.encoder)
    pixels = heads["likelihood"].noise_spec()
    shared = set(prior) & set(pixels)
    if shared:
        raise UnsupportedModelError(f"The prior and the likelihood both take noise {shared}.")
    return {**prior, **pixels}


def posterior_noise(model: VAE) -> NoiseSpec:
    """{name: (kind, shape per example)} of the noise one draw of q(z|x) takes."""
    return _heads(model)["posterior"].noise_spec()


def draw_noise(rng: np.random.Generator, spec: NoiseSpec, batch_size: int) -> dict[str, np.ndarray]:
    """Float32 noise `[batch_size, *shape]` per entry of `spec`, from `rng`."""
    draw = {"normal": rng.standard_normal, "uniform": rng.random}
    return {
        name: draw[kind]((batch_size,) + tuple(shape), np.float32)
        for name, (kind, shape) in spec.items()
    }


def draw_labels(model: VAE, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """{"labels": int32 `[n]`, uniform over 0..K-1, from `rng`} for a conditional
    VAE; {} for an ordinary one (so that `{**noise, **labels}` feeds either)."""
    if model.num_classes is None:
        return {}
    return {LABELS: rng.integers(0, model.num_classes, n).astype(np.int32)}


def prior_draw(model: VAE, noise) -> tf.Tensor:
    """z ~ p(z) `[B, J]` from the prior's part of `noise` (names as `sampling_noise`)."""
    prior = model.prior_part()
    spec = prior.noise_spec(model.encoder)
    return prior.draw({name: tf.convert_to_tensor(noise[name]) for name in spec}, model.encoder)


# The endpoints.


def endpoints(model: VAE) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The exported functions of `model`, each with its named input signature.

    Args:
        model: A built VAE whose encoder and decoder have tfvae part heads and
            whose posterior has a density.

    Returns:
        {name: (function returning a dict of tensors, input TensorSpecs)}, the
        functions as in the module docstring; a conditional VAE's take `labels`
        last (its `sample`, `labels` alone).

    Raises:
        UnsupportedModelError: See `UnsupportedModelError`.
    """
    heads = _heads(model)
    posterior, likelihood = heads["posterior"], heads["likelihood"]
    latent, image = tuple(model.latent_shape), tuple(model.input_event_shape)
    sample_spec, elbo_spec = sampling_noise(model), posterior_noise(model)
    # The trailing `*labels` is (labels,) for a conditional VAE, () otherwise.
    labels_spec = [] if model.num_classes is None else [_spec((None,), LABELS, tf.int32)]

    def encode(x, *labels):
        parameters = model.posterior_parameters(x, *labels)
        return {
            "z_mean": posterior.mean(parameters),
            **{f"posterior_{name}": value for name, value in parameters.items()},
        }

    def decode(z, *labels):
        parameters = model.likelihood_parameters(z, *labels)
        return {**parameters, "mean": likelihood.mean(parameters)}

    def sample_from_noise(*inputs):
        noise, labels = dict(zip(sample_spec, inputs)), inputs[len(sample_spec) :]
        z = prior_draw(model, noise)
        parameters = model.likelihood_parameters(z, *labels)
        pixels = {name: noise[name] for name in likelihood.noise_spec()}
        return {
            "x": likelihood.draw(parameters, pixels),
            "mean": likelihood.mean(parameters),
            "z": z,
        }

    def sample(num_samples):
        return sample_from_noise(*fresh_noise(num_samples, sample_spec).values())

    def sample_labelled(labels):
        return sample_from_noise(*fresh_noise(tf.shape(labels)[0], sample_spec).values(), labels)

    def reconstruct(x, *labels):
        return {"mean": model.reconstruct(x, *labels)}

    def elbo(x, *inputs):
        noise, labels = dict(zip(elbo_spec, inputs)), inputs[len(elbo_spec) :]
        parameters = model.posterior_parameters(x, *labels)  # One pass for z and q(z|x).
        z = posterior.draw(parameters, noise)[tf.newaxis]
        rate = model.rate(posterior.distribution(parameters), model.prior(), z)
        terms = objectives.elbo(model.log_likelihood(x, z, *labels), rate)
        return {"elbo": terms.elbo, "rate": terms.rate, "distortion": terms.distortion}

    x, z = _spec((None,) + image, "x"), _spec((None,) + latent, "z")
    return {
        "encode": (encode, [x, *labels_spec]),
        "decode": (decode, [z, *labels_spec]),
        "sample_from_noise": (sample_from_noise, _noise_specs(sample_spec) + labels_spec),
        "sample": (
            (sample_labelled, labels_spec)
            if labels_spec
            else (sample, [_spec((), "num_samples", tf.int32)])
        ),
        "reconstruct": (reconstruct, [x, *labels_spec]),
        "elbo": (elbo, [x, *_noise_specs(elbo_spec), *labels_spec]),
    }


def fresh_noise(num_samples: tf.Tensor, spec: NoiseSpec) -> dict[str, tf.Tensor]:
    """Noise `[num_samples, *shape]` per entry of `spec`, drawn in-graph."""
    # Raw ops with seed = seed2 = 0: LiteRT then seeds each interpreter afresh.
    # tf.random.* would bake in any global seed of the exporting process, and
    # every app launch would draw the same faces.
    random = {"normal": tf.raw_ops.RandomStandardNormal, "uniform": tf.raw_ops.RandomUniform}
    return {
        name: random[kind](
            shape=tf.concat([[num_samples], tf.constant(shape, tf.int32)], 0),
            dtype=tf.float32,
            seed=0,
            seed2=0,
        )
        for name, (kind, shape) in spec.items()
    }


def _heads(model: VAE) -> dict:
    """The posterior and likelihood heads, or `UnsupportedModelError` saying why not."""
    try:
        heads = {"posterior": model.posterior_head(), "likelihood": model.likelihood_head()}
    except TypeError as error:
        raise UnsupportedModelError(str(error)) from None
    if not heads["posterior"].has_density:
        raise UnsupportedModelError(
            "The posterior is a point mass (the plain autoencoder): it has no density, so "
            "there is no bound on log p(x) to serve, and its codes are not shaped to the "
            "prior, so there is nothing to sample. It is neither exported nor evaluated."
        )
    return heads


def _noise_specs(spec: NoiseSpec) -> list[tf.TensorSpec]:
    return [_spec((None,) + tuple(shape), name) for name, (_, shape) in spec.items()]


def _spec(shape: tuple, name: str, dtype: tf.DType = tf.float32) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)
