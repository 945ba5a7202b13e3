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

What training minimises is an `Objective`, a small serializable object:

    ELBO        distortion + w_t rate; w_t = beta a_t (`tfvae.schedules`: the
                beta-VAE, KL warm-up, cyclical annealing); w = 1 is -elbo
    IWAE        -iwae_k, each log weight log p(x|z) + w_t (log p(z) - log q(z|x))
    FreeBits    distortion + w_t sum_j max(lambda, mean_batch KL_j)
    BetaTCVAE   distortion + w_t (alpha MI + beta TC + gamma dimension-wise KL),
                the three estimated from the minibatch (`tfvae.decomposition`)

and reports the true elbo, rate and distortion (w = 1) of the draws it used.
The ELBO's gradient is by reparameterization (z = g(eps, x), Kingma & Welling
section 2.4) or, with `gradient_estimator="score_function"`, by the
log-derivative trick (`score_function_surrogate`, seed 003 section 5.1), which
needs no reparameterizable posterior and has a far larger variance
(`benchmarks/gradient_variance.py` measures it).

Shapes: S samples of z per datapoint, a batch of B datapoints, J latent dimensions.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Eq. 3, 7, 10.
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016). Improved
        Variational Inference with Inverse Autoregressive Flow. NeurIPS (free bits).
    Chen, Li, Grosse & Duvenaud (2018). Isolating Sources of Disentanglement in
        Variational Autoencoders. NeurIPS (beta-TCVAE).
    Williams (1992). Simple statistical gradient-following algorithms for
        connectionist reinforcement learning. Machine Learning 8 (REINFORCE).
    Kool, van Hoof & Welling (2019). Buy 4 REINFORCE Samples, Get a Baseline
        for Free! ICLR workshop (the leave-one-out baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import decomposition, estimators
from tfvae.schedules import KLWeight

tfd = tfp.distributions

GRADIENT_ESTIMATORS = ("reparameterization", "score_function")
BASELINES = ("none", "leave_one_out")  # The score function's control variates.


class Bound(NamedTuple):
    """Per-example terms of a bound, each `[B]`, in nats.

    `bound` is what is maximised (the ELBO or the IWAE bound); `elbo`, `rate`
    and `distortion` are the ELBO and its two parts from the same samples.
    """

    bound: tf.Tensor
    elbo: tf.Tensor
    rate: tf.Tensor
    distortion: tf.Tensor


def analytic_rate(posterior: tfd.Distribution, prior: tfd.Distribution) -> tf.Tensor | None:
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


def monte_carlo_rate(
    posterior: tfd.Distribution, prior: tfd.Distribution, z: tf.Tensor
) -> tf.Tensor:
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


def monte_carlo_bound(
    target_log_prob_fn: Callable[[tf.Tensor], tf.Tensor],
    posterior: tfd.Distribution,
    *,
    num_samples: int = 1,
    importance_weighted: bool = False,
    seed: int | tf.Tensor | None = None,
) -> tf.Tensor:
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
        target_log_prob_fn,
        posterior,
        sample_size=num_samples // k,
        importance_sample_size=k,
        seed=seed,
    )
    return -loss


def free_bits_rate(rate_per_dimension: tf.Tensor, free_bits: float) -> tf.Tensor:
    """sum_j max(lambda, mean_b KL_bj) from the KL per dimension `[B, J]`. Returns `[]`.

    Below lambda a dimension's term is the constant lambda: no gradient pushes
    its KL lower (Kingma et al. 2016, eq. 15, one group per dimension).
    """
    return tf.reduce_sum(
        tf.maximum(
            tf.cast(free_bits, rate_per_dimension.dtype), tf.reduce_mean(rate_per_dimension, axis=0)
        )
    )


def weighted_kl_decomposition(
    terms: decomposition.KLDecomposition,
    mi_weight: float,
    tc_weight: float,
    dimension_kl_weight: float,
) -> tf.Tensor:
    """alpha MI + beta TC + gamma dimension-wise KL (Chen et al. 2018, eq. 4), each `[B]`."""
    return (
        mi_weight * terms.mutual_information
        + tc_weight * terms.total_correlation
        + dimension_kl_weight * terms.dimensionwise_kl
    )


def score_function_surrogate(
    signal: tf.Tensor, log_posterior: tf.Tensor, baseline: str = "none"
) -> tf.Tensor:
    """A surrogate whose value is mean_s f_s and whose gradient is the score-function one.

    With z_s drawn without a gradient (Williams 1992; seed 003, section 5.1):

        grad = mean_s [grad f(z_s) + (f(z_s) - b_s) grad log q(z_s|x)],

    unbiased for grad E_q f since E_q[grad log q] = 0, for any b_s that does not
    depend on z_s. `leave_one_out` takes b_s = the mean of the other draws'
    f (Kool et al. 2019), which needs S >= 2.

    Args:
        signal: f(z_s) `[S, B]` (e.g. log p(x|z) + log p(z) - log q(z|x)).
        log_posterior: log q(z_s|x) `[S, B]`, differentiable in q's parameters.
        baseline: `none` or `leave_one_out`.

    Returns:
        `[B]`.
    """
    if baseline == "leave_one_out":
        num_samples = tf.cast(tf.shape(signal)[0], signal.dtype)
        others = (tf.reduce_sum(signal, axis=0, keepdims=True) - signal) / (num_samples - 1)
    elif baseline == "none":
        others = tf.zeros_like(signal)
    else:
        raise ValueError(f"baseline={baseline!r} is not one of {BASELINES}.")
    advantage = tf.stop_gradient(signal - others)
    # log q - stop(log q) is 0 in value and grad log q in gradient.
    score = log_posterior - tf.stop_gradient(log_posterior)
    return tf.reduce_mean(signal + advantage * score, axis=0)


class Objective:
    """What a VAE's `train_step` minimises: distortion + w_t * (a KL term), per example.

    Every objective reports the same, true quantities from the draws it used
    (`Bound`: the ELBO, rate and distortion at w = 1), so that runs with
    different objectives compare; only the minimised loss differs.

    Args:
        kl_weight: w_t, `tfvae.schedules.KLWeight` (beta and warm-up); default 1.
        gradient_estimator: `reparameterization` (Kingma & Welling) or
            `score_function` (REINFORCE; `ELBO` only).
        baseline: The score function's control variate: `none` or
            `leave_one_out` (needs num_samples >= 2).
    """

    name = ""
    bound = "elbo"  # The bound `VAE.bound_terms` computes by default.
    supports_score_function = False

    def __init__(
        self,
        kl_weight: KLWeight | None = None,
        *,
        gradient_estimator: str = "reparameterization",
        baseline: str = "none",
    ):
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(
                f"gradient_estimator={gradient_estimator!r} is not one of {GRADIENT_ESTIMATORS}."
            )
        if baseline not in BASELINES:
            raise ValueError(f"baseline={baseline!r} is not one of {BASELINES}.")
        if gradient_estimator == "score_function" and not self.supports_score_function:
            raise ValueError(
                f"The score-function estimator is implemented for the elbo "
                f"objective only, not {self.name!r}."
            )
        if baseline != "none" and gradient_estimator != "score_function":
            raise ValueError(
                "A baseline is a control variate of the score-function "
                "estimator: add gradient_estimator='score_function'."
            )
        self.kl_weight = kl_weight or KLWeight()
        self.gradient_estimator = gradient_estimator
        self.baseline = baseline

    @property
    def score_function(self) -> bool:
        return self.gradient_estimator == "score_function"

    def check(self, num_samples: int, has_density: bool) -> None:
        """Raises ValueError if a model with these settings cannot use this objective."""
        if not has_density and (self.name != "elbo" or not self.kl_weight.is_one):
            raise ValueError(
                "A point-mass posterior (the plain autoencoder) has no KL term to weight: "
                "it trains on the distortion alone, with the plain elbo objective."
            )
        if self.baseline == "leave_one_out" and num_samples < 2:
            raise ValueError(
                "baseline='leave_one_out' averages the other draws: it needs "
                "num_samples >= 2 (--num-samples)."
            )

    def loss(self, model, x, seed, step, labels=None) -> tuple[tf.Tensor, Bound]:
        """(the minimised loss `[B]`, the true terms) at training step t.

        Args:
            model: The `tfvae.model.VAE`.
            x: `[B, *event]` datapoints.
            seed: Stateless `[2]` int32 seed of the draws.
            step: t, an int scalar tensor (the KL weight's step).
            labels: `[B]` labels of a conditional VAE.
        """
        if not model.has_density:
            terms = model.bound_terms(x, seed=seed, labels=labels)
            return terms.distortion, terms
        return self.weighted_loss(model, x, seed, self.kl_weight(step), labels)

    def weighted_loss(self, model, x, seed, weight, labels) -> tuple[tf.Tensor, Bound]:
        """(loss `[B]`, terms) with the KL weight w (a float scalar tensor)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "kl_weight": self.kl_weight.get_config(),
            "gradient_estimator": self.gradient_estimator,
            "baseline": self.baseline,
        }

    @classmethod
    def from_config(cls, config: dict) -> Objective:
        config = dict(config)
        config["kl_weight"] = KLWeight.from_config(config["kl_weight"])
        return cls(**config)


def _terms(draws: estimators.Draws) -> Bound:
    elbo_value = -draws.distortion - draws.rate
    return Bound(bound=elbo_value, elbo=elbo_value, rate=draws.rate, distortion=draws.distortion)


@keras.saving.register_keras_serializable(package="tfvae")
class ELBO(Objective):
    """distortion + w_t KL: the ELBO at w = 1, the beta-VAE at w = beta, warm-up
    while w rises; by reparameterization or the score function."""

    name = "elbo"
    supports_score_function = True

    def weighted_loss(self, model, x, seed, weight, labels):
        draws = estimators.draw(
            model, x, model.num_samples, seed, labels=labels, score_function=self.score_function
        )
        if not self.score_function:
            return draws.distortion + weight * draws.rate, _terms(draws)
        if draws.closed_form_rate is not None:
            # Only the expectation needs the score; the closed-form KL keeps its exact gradient.
            surrogate = score_function_surrogate(
                draws.log_likelihood, draws.log_posterior, self.baseline
            )
            return -surrogate + weight * draws.closed_form_rate, _terms(draws)
        signal = draws.log_likelihood + weight * (draws.log_prior - draws.log_posterior)
        surrogate = score_function_surrogate(signal, draws.log_posterior, self.baseline)
        return -surrogate, _terms(draws)


@keras.saving.register_keras_serializable(package="tfvae")
class IWAE(Objective):
    """The importance-weighted bound with k = the model's num_samples (Burda et al.
    2016); with w != 1 each log weight is log p(x|z) + w (log p(z) - log q(z|x))."""

    name = "iwae"
    bound = "iwae"

    def weighted_loss(self, model, x, seed, weight, labels):
        tempered = None if self.kl_weight.is_one else weight
        terms = model.bound_terms(x, "iwae", seed=seed, kl_weight=tempered, labels=labels)
        return -terms.bound, terms


@keras.saving.register_keras_serializable(package="tfvae")
class FreeBits(Objective):
    """distortion + w_t sum_j max(lambda, KL_j averaged over the batch) (Kingma et al.
    2016): no dimension is pushed below lambda nats.

    Args:
        free_bits: lambda in nats per dimension (0.25 by default).
        **kwargs: Of `Objective`.
    """

    name = "free_bits"

    def __init__(self, free_bits: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        if not free_bits >= 0:
            raise ValueError(f"free_bits must be 0 or more nats, got {free_bits!r}.")
        self.free_bits = float(free_bits)

    def weighted_loss(self, model, x, seed, weight, labels):
        draws = estimators.draw(model, x, model.num_samples, seed, labels=labels)
        per_dimension = estimators.rate_per_dimension(model, x, draws, labels)
        # The batch-level term is spread evenly, so that the mean over examples is the loss.
        kl_term = free_bits_rate(per_dimension, self.free_bits)
        return draws.distortion + weight * kl_term, _terms(draws)

    def get_config(self):
        return {**super().get_config(), "free_bits": self.free_bits}


@keras.saving.register_keras_serializable(package="tfvae")
class BetaTCVAE(Objective):
    """distortion + w_t (alpha MI + beta TC + gamma dimension-wise KL) (Chen et al. 2018).

    The three terms are estimated from the minibatch (`tfvae.decomposition`),
    one z per datapoint, with q(z) the aggregate posterior of the N training
    points.

    Args:
        dataset_size: N, the size of the training set the batches come from.
        mi_weight, tc_weight, dimension_kl_weight: alpha, beta, gamma.
        estimator: `stratified` (minibatch stratified sampling) or `weighted`
            (Chen et al.'s minibatch weighted sampling).
        **kwargs: Of `Objective`.
    """

    name = "beta_tcvae"

    def __init__(
        self,
        dataset_size: int,
        mi_weight: float = 1.0,
        tc_weight: float = 6.0,
        dimension_kl_weight: float = 1.0,
        estimator: str = "stratified",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(dataset_size, int) or dataset_size < 2:
            raise ValueError(
                f"dataset_size is N, the number of training examples (at "
                f"least 2), given explicitly; got {dataset_size!r}."
            )
        if estimator not in decomposition.ESTIMATORS:
            raise ValueError(f"estimator={estimator!r} is not one of {decomposition.ESTIMATORS}.")
        self.dataset_size = dataset_size
        self.weights = (float(mi_weight), float(tc_weight), float(dimension_kl_weight))
        self.estimator = estimator

    def check(self, num_samples, has_density):
        super().check(num_samples, has_density)
        if num_samples != 1:
            raise ValueError(
                "beta_tcvae estimates q(z) from one z per datapoint: use num_samples=1."
            )

    def weighted_loss(self, model, x, seed, weight, labels):
        draws = estimators.draw(model, x, 1, seed, densities=True, labels=labels)
        z = draws.z[0]
        parts = decomposition.decompose_pairwise_per_example(
            estimators.pairwise_log_posterior(model, x, z, labels, draws.parameters),
            model.prior_part().elementwise_log_prob(z),
            self.dataset_size,
            self.estimator,
        )
        kl_term = weighted_kl_decomposition(parts, *self.weights)
        return draws.distortion + weight * kl_term, _terms(draws)

    def get_config(self):
        mi, tc, dimension_kl = self.weights
        return {
            **super().get_config(),
            "dataset_size": self.dataset_size,
            "mi_weight": mi,
            "tc_weight": tc,
            "dimension_kl_weight": dimension_kl,
            "estimator": self.estimator,
        }


OBJECTIVES = {cls.name: cls for cls in (ELBO, IWAE, FreeBits, BetaTCVAE)}


def get(objective: str | Objective) -> Objective:
    """An `Objective`: `objective` itself, or the default one of that name
    (`elbo` or `iwae`; the others have settings to choose)."""
    if isinstance(objective, Objective):
        return objective
    if objective in ("elbo", "iwae"):
        return OBJECTIVES[objective]()
    hint = (
        " The plain autoencoder is a VAE whose encoder has a tfvae.posteriors.PointMass "
        "head (--posterior point_mass)."
        if objective == "reconstruction"
        else ""
    )
    raise ValueError(
        f"objective={objective!r}: pass 'elbo', 'iwae' or a "
        f"tfvae.objectives.Objective ({', '.join(OBJECTIVES)}).{hint}"
    )
