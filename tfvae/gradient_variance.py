"""The variance of gradient estimators of the same objective, per group of parameters.

For an estimator g_r of grad_theta L (the mean loss over a batch x) drawn with
R independent seeds r, and a group of parameters with coordinates i:

    variance     = sum_i Var_r[g_ri]                  (the trace of Cov g)
    signal       = ||E g||^2, estimated without bias by ||mean_r g_r||^2 - variance / R
    max_abs_z    = max_i |mean g^a_i - mean g^b_i| / sqrt(Var g^a_i / R + Var g^b_i / R)

Two unbiased estimators of the same gradient (the ELBO by reparameterization
and by the score function, seed 003 section 5.1) have the same E g: their
`signal`s agree, and `max_abs_z`, the largest of n roughly standard normal
statistics, stays below sqrt(2 ln n) (about 4-5 for 10^3-10^6 coordinates;
lower, as the coordinates of a gradient are correlated; higher when R is too
small for the standard errors, e.g. R < 20). The score function's own `signal`
is noise-dominated where its variance / R exceeds ||E g||^2.
Every estimator is given the same seeds, so the same z: where the two
estimators share the gradient of a term (the decoder's, log p(x|z) at the same
z) their draws are identical, and the combined standard error, which ignores
that pairing, is conservative.

The groups are the parts of `tfvae.model.VAE`: each network's trunk and head
(q(z|x)'s or p(x|z)'s parameters), the prior's parameters, anything else.
They are found by ownership, not by `variable.path`: a `.keras` file reloads
the encoder's and the decoder's variables with the same paths
(`trunk/hidden_0/kernel` for both).

References:
    Williams (1992). Simple statistical gradient-following algorithms for
        connectionist reinforcement learning. Machine Learning 8.
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR, section 2.4.
    Mohamed, Rosca, Figurnov & Mnih (2020). Monte Carlo Gradient Estimation in
        Machine Learning. JMLR 21 (sections 4-5: the two estimators' variances).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

GROUPS = ("encoder_trunk", "encoder_head", "decoder_trunk", "decoder_head", "prior", "other")


@dataclasses.dataclass(frozen=True)
class Moments:
    """Per-coordinate mean and variance over R draws of one group's gradient.

    Attributes:
        mean: `[n]` float64, mean_r g_ri.
        variance: `[n]` float64, the unbiased Var_r g_ri (R - 1 in the denominator).
        repeats: R.
    """

    mean: np.ndarray
    variance: np.ndarray
    repeats: int

    @property
    def total_variance(self) -> float:
        return float(self.variance.sum())

    @property
    def signal(self) -> float:
        """||E g||^2 without the bias variance / R of ||mean_r g_r||^2 (may be < 0)."""
        return float(np.sum(self.mean**2) - self.total_variance / self.repeats)


def parameter_groups(model) -> dict[str, list]:
    """The trainable variables of a VAE by role, in `GROUPS` order; empty groups left out.

    A network with `trunk` and `head` (`tfvae.networks.ProbabilisticNetwork`)
    splits into `<network>_trunk` and `<network>_head`; another network is all
    `<network>_trunk`.
    """
    owners = {}
    for network in ("encoder", "decoder"):
        part = getattr(model, network)
        head = getattr(part, "head", None)
        for variable in part.trainable_variables:
            owners[id(variable)] = f"{network}_trunk"
        for variable in head.trainable_variables if head is not None else ():
            owners[id(variable)] = f"{network}_head"
    if hasattr(model.prior_model, "trainable_variables"):
        for variable in model.prior_model.trainable_variables:
            # A VampPrior's encoder stays the encoder's.
            owners.setdefault(id(variable), "prior")
    groups = {name: [] for name in GROUPS}
    for variable in model.trainable_variables:
        groups[owners.get(id(variable), "other")].append(variable)
    return {name: variables for name, variables in groups.items() if variables}


def gradient_moments(model, x, objective, repeats: int, step: int = 0) -> dict[str, Moments]:
    """Moments of grad_theta mean_b loss_b over seeds `[r, 0]`, r = 0..R-1, per group.

    Args:
        model: A `tfvae.model.VAE`; its `num_samples` and `kl_estimator` are used.
        x: `[B, *event]` datapoints.
        objective: A `tfvae.objectives.Objective` (it replaces the model's,
            which is not used).
        repeats: R >= 2 seeds.
        step: The training step t of the objective's KL weight w_t.

    Returns:
        {group: `Moments`} in `parameter_groups` order.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 (a variance), got {repeats}.")
    if not model.has_density:
        raise ValueError(
            "A point-mass posterior (the plain autoencoder) has no density: "
            "there is no score function, nor a rate, to estimate."
        )
    objective.check(model.num_samples, model.has_density)
    groups = parameter_groups(model)
    variables = [variable for group in groups.values() for variable in group]
    x = tf.convert_to_tensor(x, model.probability_dtype)
    step = tf.constant(step)

    @tf.function
    def gradient(seed):
        with tf.GradientTape() as tape:
            loss, _ = objective.loss(model, x, seed, step)
            loss = tf.reduce_mean(loss)
        return tape.gradient(loss, variables, unconnected_gradients="zero")

    # Sums of g_r - g_0 and its square: O(n) memory, and no cancellation where
    # the mean is large beside the spread.
    shift = total = squares = None
    for r in range(repeats):
        flat = np.concatenate([np.ravel(g) for g in gradient(tf.constant([r, 0], tf.int32))])
        if shift is None:
            shift, total, squares = flat.astype(np.float64), 0.0, 0.0
        deviation = flat - shift
        total, squares = total + deviation, squares + deviation**2
    mean = shift + total / repeats
    variance = np.maximum(squares - total**2 / repeats, 0.0) / (repeats - 1)
    moments, start = {}, 0
    for name, group in groups.items():
        end = start + sum(int(np.prod(variable.shape)) for variable in group)
        moments[name] = Moments(mean[start:end], variance[start:end], repeats)
        start = end
    return moments


def max_abs_z(a: Moments, b: Moments) -> float:
    """The largest |mean difference| / combined standard error over coordinates.

    Coordinates where both estimators have zero variance count as 0 if their
    means agree exactly, else as infinity.
    """
    difference = np.abs(a.mean - b.mean)
    stderr = np.sqrt(a.variance / a.repeats + b.variance / b.repeats)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(stderr > 0, difference / stderr, np.where(difference > 0, np.inf, 0.0))
    return float(z.max())


def compare(model, x, estimators: Mapping[str, object], repeats: int, step: int = 0) -> list[dict]:
    """Per group: its size, each estimator's variance and signal, and the agreement.

    Args:
        model, x, repeats, step: As `gradient_moments`.
        estimators: {name: Objective}, two of them: the reference first
            (e.g. reparameterization), then the one compared with it.

    Returns:
        One dict per group: `group`, `num_parameters`, `variance` and `signal`
        ({estimator name: float}), `variance_ratio` (second / first; inf when
        the first is 0 and the second is not, nan when both are) and `max_abs_z`.
    """
    if len(estimators) != 2:
        raise ValueError(f"compare takes two estimators, got {len(estimators)}.")
    (first, a), (second, b) = [
        (name, gradient_moments(model, x, objective, repeats, step))
        for name, objective in estimators.items()
    ]
    rows = []
    for group in a:
        variance = {first: a[group].total_variance, second: b[group].total_variance}
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = float(np.float64(variance[second]) / variance[first])
        rows.append(
            {
                "group": group,
                "num_parameters": int(a[group].mean.size),
                "variance": variance,
                "variance_ratio": ratio,
                "signal": {first: a[group].signal, second: b[group].signal},
                "max_abs_z": max_abs_z(a[group], b[group]),
            }
        )
    return rows
