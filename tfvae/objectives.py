"""Objectives: the variational bounds on log p(x), as small pure functions.

For one datapoint x, posterior q(z|x), prior p(z) and likelihood p(x|z):

    rate       = KL(q(z|x) || p(z))                       (the "KL term")
    distortion = -E_q[log p(x|z)]
    elbo       = -distortion - rate                        <= log p(x)
    iwae_k     = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)]   with z_i ~ q(z|x)

`rate` is analytic where `tfd.kl_divergence` has a closed form (the SGVB
estimator B of Kingma & Welling), and a Monte Carlo average of
log q(z|x) - log p(z) otherwise (estimator A). iwae_1 = elbo, and iwae_k grows
with k towards log p(x) (Burda et al. 2016, theorem 1). Monte Carlo bounds are
computed by `tfp.vi.monte_carlo_variational_loss`.

Shapes: S samples of z per datapoint, a batch of B datapoints.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Eq. 3, 7, 10.
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Bound(NamedTuple):
    """Per-example terms of a bound, each `[B]`, in nats.

    `bound` is what is maximised (the ELBO or the IWAE bound); `elbo`, `rate`
    and `distortion` are the ELBO and its two parts from the same samples.
    """

    bound: tf.Tensor
    elbo: tf.Tensor
    rate: tf.Tensor
    distortion: tf.Tensor


def analytic_rate(posterior: tfd.Distribution,
                  prior: tfd.Distribution) -> tf.Tensor | None:
    """KL(q || p) in closed form, `[B]` for a posterior of batch `[B]`.

    Returns `None` where TFP registers no closed form for the pair.
    """
    try:
        return tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        return None


def has_analytic_kl(posterior: tfd.Distribution, prior: tfd.Distribution) -> bool:
    """Whether TFP has a closed-form KL(posterior || prior)."""
    return analytic_rate(posterior, prior) is not None


def monte_carlo_rate(posterior: tfd.Distribution, prior: tfd.Distribution,
                     z: tf.Tensor) -> tf.Tensor:
    """Mean of log q(z|x) - log p(z) over samples z `[S, B, *latent]`. Returns `[B]`."""
    return tf.reduce_mean(posterior.log_prob(z) - prior.log_prob(z), axis=0)


def elbo(log_likelihood: tf.Tensor, rate: tf.Tensor) -> Bound:
    """The SGVB bound from log p(x|z) `[S, B]` and a rate `[B]`."""
    distortion = -tf.reduce_mean(log_likelihood, axis=0)
    value = -distortion - rate
    return Bound(bound=value, elbo=value, rate=rate, distortion=distortion)


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """log (1/k) sum_i w_i from log weights `[k, B]`. Returns `[B]`."""
    k = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(k)


def monte_carlo_bound(target_log_prob_fn: Callable[[tf.Tensor], tf.Tensor],
                      posterior: tfd.Distribution, *, num_samples: int = 1,
                      importance_weighted: bool = False, seed=None) -> tf.Tensor:
    """A Monte Carlo ELBO (estimator A) or IWAE bound, through `tfp.vi`.

    Args:
        target_log_prob_fn: z `[S, B, *latent]` -> log p(x, z) `[S, B]`.
        posterior: q(z|x) with batch shape `[B]`, reparameterized.
        num_samples: S draws of z per datapoint: averaged over for the ELBO,
            or the k of the importance-weighted bound.
        importance_weighted: IWAE bound with k = `num_samples` if True.
        seed: A stateless seed (`[2]` int32 tensor or int).

    Returns:
        `[B]` bound per datapoint, differentiable by reparameterization.
    """
    k = num_samples if importance_weighted else 1
    loss = tfp.vi.monte_carlo_variational_loss(
        target_log_prob_fn, posterior, sample_size=num_samples // k,
        importance_sample_size=k, seed=seed)
    return -loss

