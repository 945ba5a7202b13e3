"""Evaluation: the importance-sampled log-likelihood and diagnostics of a VAE.

    log p(x) ~ IW_k(x) = log (1/k) sum_i w_i,   w_i = p(x|z_i) p(z) / q(z_i|x),  z_i ~ q(z|x)

(seed 002, eq. 36-40; Burda et al. 2016) is a lower bound in expectation that
tightens to log p(x) as k grows; papers report it with k = 5000. `log_likelihood`
draws the k samples in chunks and folds them into a running log-sum-exp, so memory
stays fixed whatever k is, and the per-example cost is that of k decoder passes.

Diagnostics over a dataset: rate and distortion (the ELBO's two terms), active
units (Burda et al. 2016, section 5.2), the decomposition of the rate into
index-code mutual information, total correlation and dimension-wise KL
(`tfvae.decomposition`, seed 002 eq. 19-29) and the bounds on the mutual
information (eq. 30). `tfvae.reports` gathers them all for a dataset or a run
folder.

References:
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Alemi et al. (2018). Fixing a Broken ELBO. ICML. Appendix D.
    Chen, Li, Grosse & Duvenaud (2018). Isolating Sources of Disentanglement in
        Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import data_checks, decomposition, estimators
from tfvae.model import VAE

tfd = tfp.distributions


class UnsupportedDistribution(ValueError):
    """A diagnostic needs a posterior or prior family that the model does not have."""


class LogLikelihood(NamedTuple):
    """Importance-sampled log p(x), in nats.

    Attributes:
        per_example: `[N]` IW_k estimates of log p(x_n).
        per_example_stderr: `[N]` delta-method standard errors of each estimate,
            std(w) / (sqrt(k) mean(w)): first order in 1/k, and too small when the
            weights are so heavy-tailed that the k draws miss their large values.
        mean: Mean of `per_example`: the test log-likelihood papers report.
        stderr: Standard error of `mean` over examples, std / sqrt(N): what
            papers report as "±".
        monte_carlo_stderr: The part of the error due to sampling z only,
            sqrt(sum of per-example variances) / N.
        num_samples: k.
    """

    per_example: np.ndarray
    per_example_stderr: np.ndarray
    mean: float
    stderr: float
    monte_carlo_stderr: float
    num_samples: int


class RateDistortion(NamedTuple):
    """Dataset means of the ELBO and its terms, nats per datapoint."""

    elbo: float
    rate: float
    distortion: float


class ActiveUnits(NamedTuple):
    """Latent dimensions u with A_u = Var_x(E_q(u|x)[u]) > threshold.

    Attributes:
        count: Number of active dimensions.
        activities: `[J]` A_u per dimension.
        threshold: The threshold (Burda et al.: 0.01).
    """

    count: int
    activities: np.ndarray
    threshold: float


class MutualInformationBounds(NamedTuple):
    """H(x) - distortion <= I(x; z) <= rate (eq. 30); `lower` is None when H(x) is unknown."""

    lower: float | None
    upper: float


# Importance-sampled log-likelihood.


def log_likelihood(
    model: VAE,
    x: np.ndarray,
    num_samples: int = 5000,
    *,
    batch_size: int = 100,
    sample_chunk: int = 100,
    seed: int = 0,
    jit_compile: bool = False,
    labels: np.ndarray | None = None,
) -> LogLikelihood:
    """Estimates log p(x) per example with k = `num_samples` importance samples.

    Datapoints go through in batches of `batch_size`, samples in chunks of
    `sample_chunk`: each compiled step returns the log weights
    log p(x|z) + log p(z) - log q(z|x) `[sample_chunk, batch_size]`, which
    `log_mean_weight` folds into running sums.

    Args:
        model: The VAE; its posterior may be any distribution that samples.
        x: `[N, *event]` datapoints.
        num_samples: k.
        batch_size: Datapoints per step.
        sample_chunk: Samples per step; memory grows with batch_size * sample_chunk.
            Steps of 10^4 decoder rows (the defaults) already run at full speed.
        seed: The draws are a function of (seed, batch_size, sample_chunk,
            jit_compile): XLA's stateless sampler gives other draws than TF's.
        jit_compile: Compile the step with XLA. Off by default: on a 2-core CPU
            the MNIST MLP step ran 1.45x faster as a plain graph (oneDNN matmuls).
        labels: `[N]` labels of a conditional VAE (then log p(x|y) is estimated).

    Returns:
        `LogLikelihood` with `[N]` estimates and standard errors.

    Raises:
        ValueError: x holds NaN or inf, or values outside the likelihood's
            support (grey pixels under a Bernoulli likelihood).
        UnsupportedDistribution: The posterior is a point mass.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    _check_density(model)
    model.check_arrays(x, "x")
    step = tf.function(_log_weights, jit_compile=jit_compile)
    chunks = [
        min(sample_chunk, num_samples - start) for start in range(0, num_samples, sample_chunk)
    ]
    estimates, stderrs = [], []
    for i, start in enumerate(range(0, len(x), batch_size)):
        x_batch = tf.convert_to_tensor(x[start : start + batch_size], model.probability_dtype)
        y_batch = _batch(labels, start, batch_size)
        estimate, stderr = log_mean_weight(
            step(model, x_batch, chunk, _seed(seed, i, j), y_batch).numpy()
            for j, chunk in enumerate(chunks)
        )
        estimates.append(estimate)
        stderrs.append(stderr)
    return _summarize(np.concatenate(estimates), np.concatenate(stderrs), num_samples)


def _log_weights(model: VAE, x, num_samples: int, seed, labels=None) -> tf.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), `[num_samples, B]`, z ~ q(z|x)."""
    posterior = model.encode(x, labels)
    z = posterior.sample(num_samples, seed=seed)  # [k, B, latent]
    return model.log_likelihood(x, z, labels) + model.prior().log_prob(z) - posterior.log_prob(z)


def _batch(labels, start: int, size: int):
    """labels[start:start + size] as int32, or None."""
    return (
        None if labels is None else tf.constant(np.asarray(labels)[start : start + size], tf.int32)
    )


def log_mean_weight(log_weight_chunks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """IW_k = log (1/k) sum_i w_i and its standard error, streamed over chunks of log w.

    Keeps a running maximum m and the sums of w / e^m and (w / e^m)^2 in float64,
    so no w is ever exponentiated outside [0, 1]. The delta-method standard error
    of log mean(w) is std(w) / (sqrt(k) mean(w)); with the unbiased variance it is
    sqrt((k sum w^2 / (sum w)^2 - 1) / (k - 1)), free of e^m.

    Args:
        log_weight_chunks: Arrays `[c, B]` of log weights, any chunk sizes c,
            k = sum of c in total.

    Returns:
        `[B]` IW_k estimates and `[B]` standard errors (0 when k = 1).
    """
    shift = sums = squares = None
    k = 0
    for chunk in log_weight_chunks:
        chunk = np.asarray(chunk, np.float64)
        new_shift = chunk.max(axis=0) if shift is None else np.maximum(shift, chunk.max(axis=0))
        scaled = np.exp(chunk - new_shift)
        if shift is None:
            sums, squares = scaled.sum(axis=0), np.square(scaled).sum(axis=0)
        else:
            rescale = np.exp(shift - new_shift)
            sums = sums * rescale + scaled.sum(axis=0)
            squares = squares * rescale**2 + np.square(scaled).sum(axis=0)
        shift, k = new_shift, k + len(chunk)
    relative_variance = np.maximum(k * squares / sums**2 - 1, 0) / max(k - 1, 1)
    return shift + np.log(sums / k), np.sqrt(relative_variance)


def _summarize(estimates: np.ndarray, stderrs: np.ndarray, k: int) -> LogLikelihood:
    """`LogLikelihood` from `[N]` estimates and their `[N]` standard errors."""
    n = len(estimates)
    spread = estimates.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return LogLikelihood(
        per_example=estimates,
        per_example_stderr=stderrs,
        mean=float(estimates.mean()),
        stderr=float(spread),
        monte_carlo_stderr=float(np.sqrt(np.sum(stderrs**2)) / n),
        num_samples=k,
    )


def _seed(seed: int, *counters: int) -> tf.Tensor:
    """A stateless `[2]` int32 seed for one step, derived from `seed` and step counters."""
    pair = tf.constant([0, seed], tf.int64)
    for counter in counters:
        pair = tf.random.experimental.stateless_fold_in(pair, counter)
    return tf.cast(pair, tf.int32)


# Diagnostics.


def rate_distortion(
    model: VAE,
    x: np.ndarray,
    *,
    batch_size: int = 100,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> RateDistortion:
    """Means over x of the ELBO, rate and distortion (one z per example).

    The rate is analytic where TFP has the KL (the model's `kl_estimator`).

    Args:
        model: The VAE.
        x: `[N, *event]` datapoints.
        batch_size: Datapoints per step.
        seed: Seeds the draw of z.
        labels: `[N]` labels of a conditional VAE.

    Returns:
        `RateDistortion` of floats, nats per datapoint.
    """
    terms = [
        model.bound_terms(
            x[start : start + batch_size],
            "elbo",
            1,
            _seed(seed, i),
            labels=_batch(labels, start, batch_size),
        )
        for i, start in enumerate(range(0, len(x), batch_size))
    ]
    mean = {
        name: float(np.mean(np.concatenate([getattr(t, name).numpy() for t in terms])))
        for name in RateDistortion._fields
    }
    return RateDistortion(**mean)


def active_units(
    model: VAE,
    x: np.ndarray,
    *,
    threshold: float = 0.01,
    batch_size: int = 1000,
    labels: np.ndarray | None = None,
) -> ActiveUnits:
    """Burda et al.'s active units: A_u = Var_x(E_q(u|x)[u]) > `threshold`.

    Args:
        model: The VAE; its posterior needs a `mean`.
        x: `[N, *event]` datapoints.
        threshold: A_u above which a dimension is active.
        batch_size: Datapoints per encoder call.
        labels: `[N]` labels of a conditional VAE.

    Returns:
        `ActiveUnits` with `[J]` activities (the diagonal of Cov_x(E_q[z|x])).
    """
    means = np.concatenate(
        [
            model.posterior_mean(
                x[start : start + batch_size], _batch(labels, start, batch_size)
            ).numpy()
            for start in range(0, len(x), batch_size)
        ]
    )
    activities = means.reshape(len(means), -1).var(axis=0)
    return ActiveUnits(int(np.sum(activities > threshold)), activities, threshold)


def kl_decomposition(
    model: VAE,
    x: np.ndarray,
    *,
    estimator: str = "stratified",
    batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> decomposition.KLDecomposition:
    """The rate split into MI, total correlation and dimension-wise KL over x (eq. 19-21).

    q(z) is the aggregate posterior of the N = len(x) datapoints given. They are
    shuffled (seeded) into near-equal minibatches of at most `batch_size`, each
    estimate uses the minibatch and N (eq. 29 or Chen et al.'s MWS), and the
    terms are averaged. With batch_size >= N the stratified estimator is the
    full-data estimator eq. 24; memory grows as batch_size^2 * J.

    Args:
        model: The VAE.
        x: `[N, *event]` datapoints, N >= 2.
        estimator: `stratified` or `weighted` (see `tfvae.decomposition`).
        batch_size: Largest minibatch.
        seed: Seeds the minibatches and the draw of one z per datapoint.
        labels: `[N]` labels of a conditional VAE (q(z) is then the aggregate
            of the q(z|x, y)).

    Returns:
        `KLDecomposition` of floats, nats per datapoint.

    Raises:
        UnsupportedDistribution: q(z|x) or p(z) does not factorize over
            dimensions (a full covariance, a flow, a mixture prior).
    """
    _check_density(model)
    num_data = len(x)
    order = np.random.default_rng(seed).permutation(num_data)
    batches = np.array_split(order, math.ceil(num_data / batch_size))
    terms = []
    for i, indices in enumerate(batches):
        x_batch = tf.gather(x, indices)
        y_batch = None if labels is None else tf.gather(tf.constant(labels, tf.int32), indices)
        z = model.encode(x_batch, y_batch).sample(seed=_seed(seed, i))
        terms.append(
            decomposition.decompose_pairwise(
                _pairwise_log_prob(model, x_batch, z, y_batch),
                _prior_marginals_log_prob(model, z),
                num_data,
                estimator,
            )
        )
    sizes = np.array([len(indices) for indices in batches])
    values = np.array([[float(term) for term in batch_terms] for batch_terms in terms])
    return decomposition.KLDecomposition(*(float(v) for v in sizes @ values / num_data))


def _pairwise_log_prob(model: VAE, x, z, labels=None) -> tf.Tensor:
    """log q(z_bj | x_b') `[B, B', J]`: every draw under every posterior, per dimension."""
    try:
        return estimators.pairwise_log_posterior(model, x, z, labels)
    except NotImplementedError as error:
        raise UnsupportedDistribution(
            f"The KL decomposition needs a posterior that factorizes over the latent "
            f"dimensions: {error}"
        ) from None


def _prior_marginals_log_prob(model: VAE, z: tf.Tensor) -> tf.Tensor:
    """log p(z_j) `[B, J]` of a factorized prior; raises for a prior that does not factorize."""
    try:
        return model.prior_part().elementwise_log_prob(z)
    except NotImplementedError as error:
        raise UnsupportedDistribution(
            "The KL decomposition here assumes a factorized prior p(z) = prod_j p(z_j), so "
            f"that the prior-factorization term of eq. 21 vanishes: {error}"
        ) from None


def _check_density(model: VAE) -> None:
    if not model.has_density:
        raise UnsupportedDistribution(
            "The posterior is a point mass (the plain autoencoder): it has no density, so "
            "there are no importance weights and no rate."
        )


def data_entropy(x: np.ndarray) -> float:
    """H(x) in nats of the empirical distribution of x `[N, *event]` (log N if all distinct)."""
    _, counts = np.unique(np.reshape(x, (len(x), -1)), axis=0, return_counts=True)
    p = counts / len(x)
    return float(-np.sum(p * np.log(p)))


def mutual_information_bounds(
    rate: float, distortion: float, entropy: float | None = None
) -> MutualInformationBounds:
    """Eq. 30: H(x) - distortion <= I(x; z) <= rate, with I under p(x) q(z|x).

    H(x) is the entropy of the data distribution that the rate and distortion
    average over. For the N datapoints at hand (the empirical distribution, the
    same p(x) as the index-code MI of the decomposition) it is `data_entropy(x)`,
    log N when all are distinct. That holds only when p(x|z) is a probability
    mass function over the values x takes (a Bernoulli decoder on binary x).
    For real-valued x and a density p(x|z) the bound needs the differential
    entropy of p(x), which is unknown (the empirical distribution has none), so
    there is no lower bound: pass `entropy=None`. For the population behind
    discrete data H(x) is unknown too; 0 - distortion is valid but vacuous.
    For discrete x also I(x; z) <= H(x): the MI of N datapoints is at most log N.

    Args:
        rate: E_x KL(q(z|x) || p(z)), nats.
        distortion: -E_x E_q log p(x|z), nats.
        entropy: H(x) in nats, or None.

    Returns:
        `MutualInformationBounds`; `lower` is None when `entropy` is.
    """
    return MutualInformationBounds(
        lower=None if entropy is None else entropy - distortion, upper=rate
    )


def has_discrete_likelihood(model: VAE, x: np.ndarray) -> bool:
    """Whether p(x|z) is a probability mass function and x `[N, *event]` lies on its
    support (0/1 pixels, or grey levels), so that log p(x|z) is a log-probability."""
    head = model.likelihood_head()
    if not head.is_discrete:
        return False
    try:
        data_checks.check_support(x, head.support, "none")
    except ValueError:
        return False
    return True
