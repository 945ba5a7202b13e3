"""A VAE as plain tensors: the functions an export serves, and where it keeps them.

A SavedModel client may have no TFP and a phone has no TensorFlow, so every
endpoint returns the parameters of q(z|x) and p(x|z), never a distribution.
With B examples, latent codes [B, J] and images [B, *image_shape]:

    encode(x)                       -> z_mean, z_stddev [B, J]
    decode(z)                       -> Bernoulli: logits, probs, mean;
                                       Gaussian: loc, scale, mean
    sample_from_noise(eps, noise)   -> x ~ p(x|z) and mean E[x|z], with z ~ p(z)
    sample(num_samples)             -> the same, drawing its own noise
    reconstruct(x)                  -> mean E[x | z = posterior mean]
    elbo(x, eps)                    -> elbo, rate, distortion [B], in nats

TFP's samplers need Flex ops, which LiteRT cannot run (../shared/STACK.md), so
sampling takes its noise as input: z = prior.loc + prior.scale * eps with
eps ~ N(0, I), then
    Bernoulli p(x|z):  x = 1[u < sigmoid(logits)],  u ~ U(0, 1)  (`uniform_noise`)
    Gaussian p(x|z):   x = loc + scale * n,          n ~ N(0, I)  (`normal_noise`).
`sample(num_samples)` draws that noise itself with the builtin random ops.

An export keeps every endpoint in `saved_model/` and the decoder's
(`DECODER_SIGNATURES`) in one `decoder_<quantization>.tflite` per quantization.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import objectives
from tfvae.model import VAE

tfd = tfp.distributions

SAVED_MODEL_DIR = "saved_model"
QUANTIZATIONS = ("float32", "dynamic_int8", "float16", "int8")
DECODER_SIGNATURES = ("decode", "sample_from_noise", "sample")
PIXEL_NOISE = {"bernoulli": "uniform_noise", "gaussian": "normal_noise"}


class UnsupportedModelError(ValueError):
    """The model's distributions have no tensor-only export here."""


def tflite_name(quantization: str) -> str:
    """The file name of the `.tflite` decoder quantized as `quantization`."""
    return f"decoder_{quantization}.tflite"


# Tensors from distributions.

def likelihood_kind(likelihood: tfd.Distribution) -> str:
    """`"bernoulli"` or `"gaussian"` for the decoders tfvae builds.

    Raises:
        UnsupportedModelError: Any other p(x|z).
    """
    base = getattr(likelihood, "distribution", None)
    if isinstance(likelihood, tfd.Independent) and isinstance(base, tfd.Bernoulli):
        return "bernoulli"
    if isinstance(likelihood, tfd.Independent) and isinstance(base, tfd.Normal):
        return "gaussian"
    raise UnsupportedModelError(
        f"Export supports Independent(Bernoulli) and Independent(Normal) likelihoods, "
        f"not {likelihood.name} ({type(likelihood).__name__}).")


def model_likelihood(model: VAE) -> str:
    """The `likelihood_kind` of `model`'s decoder."""
    return likelihood_kind(model.decode(tf.zeros((1,) + tuple(model.latent_shape))))


def normal_parameters(distribution: tfd.Distribution,
                      role: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(loc, scale) of an `Independent(Normal)`, each of its batch and event shape.

    Args:
        distribution: The posterior, prior or Gaussian likelihood.
        role: Its name in the error message.

    Raises:
        UnsupportedModelError: `distribution` is no diagonal Gaussian.
    """
    base = getattr(distribution, "distribution", None)
    if not (isinstance(distribution, tfd.Independent) and isinstance(base, tfd.Normal)):
        raise UnsupportedModelError(
            f"Export needs a diagonal Gaussian {role} (Independent(Normal)) to "
            f"reparameterize it, got {type(distribution).__name__}.")
    return tf.convert_to_tensor(base.loc), tf.convert_to_tensor(base.scale)


def likelihood_parameters(likelihood: tfd.Distribution) -> dict[str, tf.Tensor]:
    """p(x|z)'s parameters and mean, each `[B, *image_shape]`."""
    if likelihood_kind(likelihood) == "bernoulli":
        logits = likelihood.distribution.logits_parameter()
        probs = tf.sigmoid(logits)
        return {"logits": logits, "probs": probs, "mean": probs}
    loc, scale = normal_parameters(likelihood, "likelihood")
    return {"loc": loc, "scale": scale, "mean": loc}


def draw_pixels(parameters: dict, noise):
    """x ~ p(x|z) `[B, *image_shape]` from its parameters and pixel noise.

    The endpoints call it on tensors, the parity checks on numpy arrays.
    """
    if "probs" in parameters:
        # tf.where keeps float32 for tensors and arrays alike; `(u < p) * 1.0`
        # stays bool for tensors, which a FloatArray on the device cannot read.
        return tf.where(noise < parameters["probs"], np.float32(1), np.float32(0))
    return parameters["loc"] + parameters["scale"] * noise


def prior_transform(model: VAE, eps) -> tf.Tensor:
    """z = prior.loc + prior.scale * eps `[B, *latent_shape]`, z ~ p(z) for eps ~ N(0, I)."""
    loc, scale = normal_parameters(model.prior(), "prior")
    return loc + scale * eps


def draw_noise(rng: np.random.Generator, model: VAE, kind: str,
               batch_size: int) -> dict[str, np.ndarray]:
    """Inputs of `sample_from_noise` for a `kind` likelihood, float32.

    Returns:
        {"eps": `[B, *latent_shape]` ~ N(0, I), `PIXEL_NOISE[kind]`:
        `[B, *image_shape]` ~ U(0, 1) (Bernoulli) or N(0, 1) (Gaussian)}.
    """
    image = (batch_size,) + tuple(model.input_event_shape)
    pixels = rng.random(image, np.float32) if kind == "bernoulli" else rng.standard_normal(
        image, np.float32)
    eps = rng.standard_normal((batch_size,) + tuple(model.latent_shape), np.float32)
    return {"eps": eps, PIXEL_NOISE[kind]: pixels}


# The endpoints.

def endpoints(model: VAE) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The exported functions of `model`, each with its named input signature.

    Args:
        model: A built VAE with a diagonal Gaussian posterior and prior.

    Returns:
        {name: (function returning a dict of tensors, input TensorSpecs)}, the
        functions as in the module docstring.

    Raises:
        UnsupportedModelError: Another likelihood, posterior or prior.
    """
    latent, image = tuple(model.latent_shape), tuple(model.input_event_shape)
    kind = model_likelihood(model)

    def encode(x):
        loc, scale = normal_parameters(model.encode(x), "posterior")
        return {"z_mean": loc, "z_stddev": scale}

    def decode(z):
        return likelihood_parameters(model.decode(z))

    def sample_from_noise(eps, pixel_noise):
        parameters = decode(prior_transform(model, eps))
        return {"x": draw_pixels(parameters, pixel_noise), "mean": parameters["mean"]}

    def sample(num_samples):
        return sample_from_noise(*_fresh_noise(num_samples, latent, image, kind))

    def reconstruct(x):
        return {"mean": model.reconstruct(x)}

    def elbo(x, eps):
        posterior, prior = model.encode(x), model.prior()
        loc, scale = normal_parameters(posterior, "posterior")
        z = (loc + scale * eps)[tf.newaxis]
        terms = objectives.elbo(model.log_likelihood(x, z), model.rate(posterior, prior, z))
        return {"elbo": terms.elbo, "rate": terms.rate, "distortion": terms.distortion}

    x, z, eps = (_spec((None,) + image, "x"), _spec((None,) + latent, "z"),
                 _spec((None,) + latent, "eps"))
    pixel_noise = _spec((None,) + image, PIXEL_NOISE[kind])
    return {
        "encode": (encode, [x]),
        "decode": (decode, [z]),
        "sample_from_noise": (sample_from_noise, [eps, pixel_noise]),
        "sample": (sample, [_spec((), "num_samples", tf.int32)]),
        "reconstruct": (reconstruct, [x]),
        "elbo": (elbo, [x, eps]),
    }


def _fresh_noise(num_samples: tf.Tensor, latent: tuple, image: tuple,
                 kind: str) -> tuple[tf.Tensor, tf.Tensor]:
    """eps `[num_samples, *latent]` and pixel noise `[num_samples, *image]`, drawn in-graph."""
    # Raw ops with seed = seed2 = 0: LiteRT then seeds each interpreter afresh.
    # tf.random.* would bake in any global seed of the exporting process, and
    # every app launch would draw the same faces.
    def draw(random, shape):
        return random(shape=tf.concat([[num_samples], shape], 0), dtype=tf.float32,
                      seed=0, seed2=0)
    pixel_random = (tf.raw_ops.RandomUniform if kind == "bernoulli"
                    else tf.raw_ops.RandomStandardNormal)
    return draw(tf.raw_ops.RandomStandardNormal, latent), draw(pixel_random, image)


def _spec(shape: tuple, name: str, dtype: tf.DType = tf.float32) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)
