"""Draws of z and their log-densities, once per step, for the objectives.

For a batch x `[B, *event]` and S draws z_s ~ q(z|x) per datapoint:

    log p(x|z_s)  `[S, B]`     log q(z_s|x)  `[S, B]`     log p(z_s)  `[S, B]`

and, for the objectives that need them, the KL term per latent dimension and
every draw's log-density under every posterior of the batch (the minibatch
estimators of q(z), `tfvae.decomposition`).

Seeds follow `VAE.bound_terms` exactly: a closed-form rate draws z from the
seed itself, a Monte Carlo one from the first half of its split (as
`tfp.vi.monte_carlo_variational_loss` does), so a bound computed here and one
computed there from the same seed use the same z.

With `score_function=True` the draws carry no gradient to q(z|x)'s parameters
(z is a constant), and `log_posterior` does: the score-function estimator's
ingredients (`tfvae.objectives.score_function_surrogate`).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Draws(NamedTuple):
    """z ~ q(z|x) and the log-densities at z (see the module docstring).

    Attributes:
        z: `[S, B, *latent]`.
        log_likelihood: log p(x|z) `[S, B]`.
        log_posterior: log q(z|x) `[S, B]`, or None where not asked for.
        log_prior: log p(z) `[S, B]`, or None where not asked for.
        closed_form_rate: KL(q(z|x) || p(z)) `[B]` in closed form, or None
            where the model's `kl_estimator` or TFP has none.
        posterior: q(z|x), batch `[B]`.
        prior: p(z).
        parameters: q(z|x)'s parameters {name: `[B, ...]`} where the encoder
            has a `tfvae.posteriors` head (so that one encoder pass serves the
            per-dimension and pairwise terms too), else None.
    """

    z: tf.Tensor
    log_likelihood: tf.Tensor
    log_posterior: tf.Tensor | None
    log_prior: tf.Tensor | None
    closed_form_rate: tf.Tensor | None
    posterior: tfd.Distribution
    prior: tfd.Distribution
    parameters: dict | None = None

    @property
    def rate(self) -> tf.Tensor:
        """KL(q(z|x) || p(z)) `[B]`: the closed form, else the mean of
        log q(z|x) - log p(z) over the S draws."""
        if self.closed_form_rate is not None:
            return self.closed_form_rate
        return tf.reduce_mean(self.log_posterior - self.log_prior, axis=0)

    @property
    def distortion(self) -> tf.Tensor:
        """-E_q log p(x|z) `[B]`, the mean over the S draws."""
        return -tf.reduce_mean(self.log_likelihood, axis=0)


def draw(
    model,
    x,
    num_samples: int,
    seed,
    *,
    densities: bool = False,
    score_function: bool = False,
    labels=None,
) -> Draws:
    """S = `num_samples` draws of z ~ q(z|x) per datapoint and their log-densities.

    Args:
        model: A `tfvae.model.VAE`.
        x: `[B, *event]` datapoints.
        num_samples: S.
        seed: A stateless `[2]` int32 seed.
        densities: Also compute log q(z|x) and log p(z) when the rate has a closed form
            (they are always computed when it has none).
        score_function: Stop z's gradient (see the module docstring).
        labels: `[B]` labels of a conditional VAE.

    Returns:
        `Draws`.
    """
    x = model._as_input(x)
    parameters, posterior = _posterior(model, x, labels)
    prior = model.prior()
    closed_form = model._closed_form_rate(posterior, prior)
    if closed_form is not None:
        z, log_posterior = posterior.sample(num_samples, seed=seed), None
    else:
        sample_seed, _ = tfp.random.split_seed(seed)
        z, log_posterior = posterior.experimental_sample_and_log_prob(num_samples, seed=sample_seed)
    if score_function:
        z = tf.stop_gradient(z)
        log_posterior = posterior.log_prob(z)
    elif log_posterior is None and densities:
        log_posterior = posterior.log_prob(z)
    log_prior = prior.log_prob(z) if log_posterior is not None else None
    return Draws(
        z=z,
        log_likelihood=model.log_likelihood(x, z, labels),
        log_posterior=log_posterior,
        log_prior=log_prior,
        closed_form_rate=closed_form,
        posterior=posterior,
        prior=prior,
        parameters=parameters,
    )


def _posterior(model, x, labels):
    """(parameters or None, q(z|x)): through the head where there is one."""
    head = getattr(model.encoder, "head", None)
    if head is None or not hasattr(head, "distribution"):
        return None, model.encode(x, labels)
    parameters = model.posterior_parameters(x, labels)
    model.latent_shape = tuple(head.event_shape)
    return parameters, head.distribution(parameters)


def rate_per_dimension(model, x, draws: Draws, labels=None) -> tf.Tensor:
    """KL(q(z_j|x) || p(z_j)) `[B, J]` of a posterior and prior that factorize.

    In closed form where the rate has one (TFP's KL between the factors), else
    the mean over the draws of log q(z_j|x) - log p(z_j).

    Raises:
        NotImplementedError: q(z|x) or p(z) does not factorize over dimensions.
    """
    if draws.closed_form_rate is not None:
        posterior, prior = draws.posterior, draws.prior
        if isinstance(posterior, tfd.Independent) and isinstance(prior, tfd.Independent):
            return tfd.kl_divergence(posterior.distribution, prior.distribution)
    parameters = draws.parameters or model.posterior_parameters(x, labels)
    log_posterior = model.posterior_head().elementwise_log_prob(parameters, draws.z)
    return tf.reduce_mean(log_posterior - model.prior_part().elementwise_log_prob(draws.z), axis=0)


def pairwise_log_posterior(model, x, z, labels=None, parameters=None) -> tf.Tensor:
    """log q(z_bj | x_b') `[B, B', J]`: every draw under every posterior, per dimension.

    Args:
        model: A VAE whose posterior factorizes over dimensions.
        x: `[B, *event]`.
        z: `[B, J]`, one draw per datapoint.
        labels: `[B]` labels of a conditional VAE.
        parameters: q(z|x)'s parameters at x, if already computed.

    Raises:
        NotImplementedError: q(z|x) does not factorize over dimensions.
    """
    if parameters is None:
        parameters = model.posterior_parameters(x, labels)
    return model.posterior_head().elementwise_log_prob(
        {name: value[tf.newaxis] for name, value in parameters.items()}, z[:, tf.newaxis]
    )
