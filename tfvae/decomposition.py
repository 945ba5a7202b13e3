"""The KL-term decomposition: index-code mutual information, total correlation
and dimension-wise KL, as small pure functions.

With data x ~ p(x) (the N datapoints at hand), posterior q(z|x), aggregate
posterior q(z) = E_p(x) q(z|x), its marginals q(z_j), and a factorized prior
p(z) = prod_j p(z_j), the rate splits into three parts (seed 002, eq. 17-21):

    E_x KL(q(z|x) || p(z))
        = E_q(z,x)[log q(z|x) - log q(z)]                  mutual information I(x; z)
        + E_q(z)[log q(z) - sum_j log q(z_j)]              total correlation
        + E_q(z)[sum_j log q(z_j) - log p(z_j)]            dimension-wise KL

(the "prior factorization" term of eq. 21 is zero for a factorized prior).
Every term needs log q(z) and log q(z_j) at z ~ q(z|x_b), and q(z) is a mixture
of all N posteriors (eq. 23-24). From a minibatch of B datapoints:

    weighted (Chen et al. 2018, minibatch weighted sampling, "MWS"):
        log q(z_b) ~ log sum_b' q(z_b|x_b') - log(N B)
    stratified (Esmaeili et al. 2019, eq. 29, "MSS"):
        q(z_b) ~ q(z_b|x_b) / N + (N - 1) / (N (B - 1)) sum_{b' != b} q(z_b|x_b')

The stratified estimator is unbiased for q(z_b) itself (the log adds a Jensen
bias that shrinks with B), and with B = N it is exactly the full-data estimator
eq. 24. The weighted one is Chen et al.'s training estimator: its weights sum to
1/N, not 1, so it underestimates q(z_b) and each q(z_bj) by a factor between B
(posteriors that do not overlap) and N (posteriors that overlap). MI comes out
too high by log B to log N, dimension-wise KL too low by J log B to J log N, and
total correlation shifts by the difference: (J - 1) log N when all overlap, 175
nats for J = 20 on the 10^4 MNIST test images. Constant shifts do not change
gradients, which is all training needs; as a measurement, prefer `stratified`.

Because the three terms telescope, they add up to the Monte Carlo rate
mean_b[log q(z_b|x_b) - log p(z_b)] exactly, for either estimator.

Shapes: B datapoints (and one z per datapoint), J latent dimensions.

References:
    Chen, Li, Grosse & Duvenaud (2018). Isolating Sources of Disentanglement in
        Variational Autoencoders. NeurIPS. Section 3 and appendix C.
    Esmaeili et al. (2019). Structured Disentangled Representations. AISTATS.
    Kim & Mnih (2018). Disentangling by Factorising. ICML.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

ESTIMATORS = ("stratified", "weighted")


class KLDecomposition(NamedTuple):
    """The three parts of the rate (eq. 19-21), in nats per datapoint."""

    mutual_information: tf.Tensor
    total_correlation: tf.Tensor
    dimensionwise_kl: tf.Tensor


def pairwise_log_prob(z: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """log N(z_bj; loc_b'j, scale_b'j^2): every draw under every posterior, per dimension.

    Args:
        z: `[B, J]` draws, z_b ~ q(z|x_b).
        loc, scale: `[B', J]` parameters of diagonal Gaussian posteriors q(z|x_b').

    Returns:
        `[B, B', J]` log q(z_bj | x_b'); sum over J for the joint density.
    """
    standardized = (z[:, tf.newaxis, :] - loc[tf.newaxis]) / scale[tf.newaxis]
    return (
        -0.5 * tf.square(standardized)
        - tf.math.log(scale[tf.newaxis])
        - 0.5 * math.log(2 * math.pi)
    )


def minibatch_weighted_log_density(log_q: tf.Tensor, num_data: int) -> tf.Tensor:
    """Chen et al.'s MWS estimate of log q(z_b): logsumexp_b' log q(z_b|x_b') - log(N B).

    Args:
        log_q: `[B, B, ...]` log q(z_b|x_b') (draw b on axis 0, posterior b' on axis 1).
        num_data: N, the size of the dataset the minibatch was drawn from.

    Returns:
        `[B, ...]`; biased low (see the module docstring).
    """
    batch_size = tf.cast(tf.shape(log_q)[0], log_q.dtype)
    return tf.reduce_logsumexp(log_q, axis=1) - tf.math.log(batch_size * num_data)


def minibatch_stratified_log_density(log_q: tf.Tensor, num_data: int) -> tf.Tensor:
    """The MSS estimate of log q(z_b), eq. 29.

    Args:
        log_q: `[B, B, ...]` log q(z_b|x_b') (draw b on axis 0, posterior b' on
            axis 1), B >= 2.
        num_data: N >= B, the size of the dataset the minibatch was drawn from.

    Returns:
        `[B, ...]` log(q(z_b|x_b) / N + (N - 1) / (N (B - 1)) sum_{b' != b} q(z_b|x_b')).
    """
    static_size = log_q.shape[0]
    if static_size is not None and (static_size < 2 or num_data < static_size):
        raise ValueError(
            f"The stratified estimator needs 2 <= B <= N; got B={static_size}, N={num_data}."
        )
    # In a traced train or test step B may be known only at run time (a last,
    # smaller batch): the weights are computed from tf.shape.
    batch_size = tf.shape(log_q)[0]
    is_own = tf.reshape(
        tf.eye(batch_size, dtype=tf.bool),
        tf.concat([[batch_size, batch_size], tf.ones([len(log_q.shape) - 2], tf.int32)], 0),
    )
    own = tf.constant(-math.log(num_data), log_q.dtype)
    others = tf.cast(tf.maximum(batch_size - 1, 1), log_q.dtype)
    other = math.log(num_data - 1) - math.log(num_data) - tf.math.log(others)
    return tf.reduce_logsumexp(log_q + tf.where(is_own, own, other), axis=1)


def decompose(
    log_posterior: tf.Tensor,
    log_aggregate: tf.Tensor,
    log_marginals: tf.Tensor,
    log_prior_marginals: tf.Tensor,
) -> KLDecomposition:
    """Eq. 19-21 from log densities at z_b ~ q(z|x_b), averaged over the batch.

    Args:
        log_posterior: `[B]` log q(z_b|x_b).
        log_aggregate: `[B]` estimates of log q(z_b).
        log_marginals: `[B, J]` estimates of log q(z_bj).
        log_prior_marginals: `[B, J]` log p(z_bj) of a factorized prior.

    Returns:
        Scalar terms whose sum is mean_b[log q(z_b|x_b) - sum_j log p(z_bj)].
    """
    terms = decompose_per_example(log_posterior, log_aggregate, log_marginals, log_prior_marginals)
    return KLDecomposition(*(tf.reduce_mean(term) for term in terms))


def decompose_per_example(
    log_posterior: tf.Tensor,
    log_aggregate: tf.Tensor,
    log_marginals: tf.Tensor,
    log_prior_marginals: tf.Tensor,
) -> KLDecomposition:
    """The summands of eq. 19-21 at each z_b: `[B]` terms (arguments as `decompose`),
    whose sum is log q(z_b|x_b) - sum_j log p(z_bj) for every b."""
    log_product = tf.reduce_sum(log_marginals, axis=-1)
    return KLDecomposition(
        mutual_information=log_posterior - log_aggregate,
        total_correlation=log_aggregate - log_product,
        dimensionwise_kl=tf.reduce_sum(log_marginals - log_prior_marginals, axis=-1),
    )


def kl_decomposition(
    z: tf.Tensor,
    loc: tf.Tensor,
    scale: tf.Tensor,
    log_prior_marginals: tf.Tensor,
    num_data: int,
    estimator: str = "stratified",
) -> KLDecomposition:
    """The decomposition of the rate from one minibatch of diagonal Gaussian posteriors.

    Args:
        z: `[B, J]` draws, z_b ~ q(z|x_b).
        loc, scale: `[B, J]` posterior parameters of the same B datapoints.
        log_prior_marginals: `[B, J]` log p(z_bj) under a factorized prior.
        num_data: N, the dataset size (B = N with `stratified` is eq. 24, exact).
        estimator: `stratified` (eq. 29) or `weighted` (Chen et al.'s MWS).

    Returns:
        `KLDecomposition` of scalars, in nats per datapoint.
    """
    return decompose_pairwise(
        pairwise_log_prob(z, loc, scale), log_prior_marginals, num_data, estimator
    )


def decompose_pairwise(
    log_q: tf.Tensor, log_prior_marginals: tf.Tensor, num_data: int, estimator: str = "stratified"
) -> KLDecomposition:
    """The decomposition of the rate from every draw under every posterior of a minibatch.

    Args:
        log_q: `[B, B, J]` log q(z_bj | x_b') of a posterior that factorizes over
            the J dimensions (draw b on axis 0, posterior b' on axis 1).
        log_prior_marginals: `[B, J]` log p(z_bj) under a factorized prior.
        num_data: N, the dataset size.
        estimator: `stratified` (eq. 29) or `weighted` (Chen et al.'s MWS).

    Returns:
        `KLDecomposition` of scalars, in nats per datapoint.
    """
    terms = decompose_pairwise_per_example(log_q, log_prior_marginals, num_data, estimator)
    return KLDecomposition(*(tf.reduce_mean(term) for term in terms))


def decompose_pairwise_per_example(
    log_q: tf.Tensor, log_prior_marginals: tf.Tensor, num_data: int, estimator: str = "stratified"
) -> KLDecomposition:
    """`decompose_pairwise`'s terms at each draw: `[B]` each (what beta-TCVAE weights)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not one of {ESTIMATORS}.")
    log_density = {
        "stratified": minibatch_stratified_log_density,
        "weighted": minibatch_weighted_log_density,
    }[estimator]
    log_q_joint = tf.reduce_sum(log_q, axis=-1)  # [B, B]: the posterior factorizes.
    return decompose_per_example(
        tf.linalg.diag_part(log_q_joint),
        log_density(log_q_joint, num_data),
        log_density(log_q, num_data),
        log_prior_marginals,
    )
