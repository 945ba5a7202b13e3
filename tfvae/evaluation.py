"""Evaluation: importance-sampled log-likelihood, diagnostics and run reports.

    log p(x) ~ IW_k(x) = log (1/k) sum_i w_i,   w_i = p(x|z_i) p(z) / q(z_i|x),  z_i ~ q(z|x)

(seed 002, eq. 36-40; Burda et al. 2016) is a lower bound in expectation that
tightens to log p(x) as k grows; papers report it with k = 5000. `log_likelihood`
draws the k samples in chunks and folds them into a running log-sum-exp, so memory
stays fixed whatever k is, and the per-example cost is that of k decoder passes.

Diagnostics over a dataset: rate and distortion (the ELBO's two terms), active
units (Burda et al. 2016, section 5.2), the decomposition of the rate into
index-code mutual information, total correlation and dimension-wise KL
(`tfvae.decomposition`, seed 002 eq. 19-29) and the bounds on the mutual
information (eq. 30). `evaluate_run` does all of it for a run folder and writes
`evaluation.json` and `evaluation.md` beside the model.

References:
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Alemi et al. (2018). Fixing a Broken ELBO. ICML. Appendix D.
    Chen, Li, Grosse & Duvenaud (2018). Isolating Sources of Disentanglement in
        Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable, NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import datasets, decomposition
from tfvae.config import RunConfig
from tfvae.model import VAE
from tfvae.training import write_text_atomic

tfd = tfp.distributions

SPLITS = ("test", "train", "valid")
# Families whose log_prob is a log-probability (not a density), so that the data
# entropy H(x) - distortion lower-bounds the mutual information (eq. 30).
DISCRETE_LIKELIHOODS = (tfd.Bernoulli, tfd.Categorical, tfd.OneHotCategorical,
                        tfd.Binomial, tfd.Poisson, tfd.Geometric)


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

def log_likelihood(model: VAE, x, num_samples: int = 5000, *, batch_size: int = 100,
                   sample_chunk: int = 100, seed: int = 0,
                   jit_compile: bool = False) -> LogLikelihood:
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

    Returns:
        `LogLikelihood` with `[N]` estimates and standard errors.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    step = tf.function(_log_weights, jit_compile=jit_compile)
    chunks = [min(sample_chunk, num_samples - start)
              for start in range(0, num_samples, sample_chunk)]
    estimates, stderrs = [], []
    for i, start in enumerate(range(0, len(x), batch_size)):
        x_batch = tf.convert_to_tensor(x[start:start + batch_size], model.compute_dtype)
        estimate, stderr = log_mean_weight(
            step(model, x_batch, chunk, _seed(seed, i, j)).numpy()
            for j, chunk in enumerate(chunks))
        estimates.append(estimate)
        stderrs.append(stderr)
    return _summarize(np.concatenate(estimates), np.concatenate(stderrs), num_samples)


def _log_weights(model: VAE, x, num_samples: int, seed) -> tf.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), `[num_samples, B]`, z ~ q(z|x)."""
    posterior = model.encode(x)
    z = posterior.sample(num_samples, seed=seed)  # [k, B, latent]
    return model.log_likelihood(x, z) + model.prior().log_prob(z) - posterior.log_prob(z)


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
    n = len(estimates)
    spread = estimates.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return LogLikelihood(
        per_example=estimates, per_example_stderr=stderrs, mean=float(estimates.mean()),
        stderr=float(spread), monte_carlo_stderr=float(np.sqrt(np.sum(stderrs**2)) / n),
        num_samples=k)


def _seed(seed: int, *counters: int) -> tf.Tensor:
    """A stateless `[2]` int32 seed for one step, derived from `seed` and step counters."""
    pair = tf.constant([0, seed], tf.int64)
    for counter in counters:
        pair = tf.random.experimental.stateless_fold_in(pair, counter)
    return tf.cast(pair, tf.int32)


# Diagnostics.

def rate_distortion(model: VAE, x, *, batch_size: int = 100, seed: int = 0) -> RateDistortion:
    """Means over x `[N, *event]` of the ELBO, rate and distortion (one z per example).

    The rate is analytic where TFP has the KL (the model's `kl_estimator`).
    """
    terms = [model.bound_terms(x[start:start + batch_size], "elbo", 1, _seed(seed, i))
             for i, start in enumerate(range(0, len(x), batch_size))]
    mean = {name: float(np.mean(np.concatenate([getattr(t, name).numpy() for t in terms])))
            for name in RateDistortion._fields}
    return RateDistortion(**mean)


def active_units(model: VAE, x, *, threshold: float = 0.01,
                 batch_size: int = 1000) -> ActiveUnits:
    """Burda et al.'s active units: A_u = Var_x(E_q(u|x)[u]) > `threshold`.

    Args:
        x: `[N, *event]` datapoints.

    Returns:
        `ActiveUnits` with `[J]` activities (the diagonal of Cov_x(E_q[z|x])).
    """
    means = np.concatenate([model.encode(x[start:start + batch_size]).mean().numpy()
                            for start in range(0, len(x), batch_size)])
    activities = means.reshape(len(means), -1).var(axis=0)
    return ActiveUnits(int(np.sum(activities > threshold)), activities, threshold)


def kl_decomposition(model: VAE, x, *, estimator: str = "stratified",
                     batch_size: int = 1000, seed: int = 0) -> decomposition.KLDecomposition:
    """The rate split into MI, total correlation and dimension-wise KL over x (eq. 19-21).

    q(z) is the aggregate posterior of the N = len(x) datapoints given. They are
    shuffled (seeded) into near-equal minibatches of at most `batch_size`, each
    estimate uses the minibatch and N (eq. 29 or Chen et al.'s MWS), and the
    terms are averaged. With batch_size >= N the stratified estimator is the
    full-data estimator eq. 24; memory grows as batch_size^2 * J.

    Args:
        x: `[N, *event]` datapoints, N >= 2.
        estimator: `stratified` or `weighted` (see `tfvae.decomposition`).
        seed: Seeds the minibatches and the draw of one z per datapoint.

    Returns:
        `KLDecomposition` of floats, nats per datapoint.

    Raises:
        UnsupportedDistribution: q(z|x) is not a diagonal Gaussian or p(z) does
            not factorize over dimensions.
    """
    num_data = len(x)
    order = np.random.default_rng(seed).permutation(num_data)
    batches = np.array_split(order, math.ceil(num_data / batch_size))
    terms = []
    for i, indices in enumerate(batches):
        posterior = model.encode(tf.gather(x, indices))
        loc, scale = _diagonal_gaussian(posterior)
        z = posterior.sample(seed=_seed(seed, i))
        terms.append(decomposition.kl_decomposition(
            z, loc, scale, _prior_marginals_log_prob(model.prior(), z), num_data, estimator))
    sizes = np.array([len(indices) for indices in batches])
    values = np.array([[float(term) for term in batch_terms] for batch_terms in terms])
    return decomposition.KLDecomposition(*(float(v) for v in sizes @ values / num_data))


def _diagonal_gaussian(posterior: tfd.Distribution) -> tuple[tf.Tensor, tf.Tensor]:
    """(loc, scale) `[B, J]` of a diagonal Gaussian q(z|x); raises for other families."""
    is_independent_normal = (isinstance(posterior, tfd.Independent)
                             and isinstance(posterior.distribution, tfd.Normal)
                             and posterior.event_shape.rank == 1)
    if not (is_independent_normal or isinstance(posterior, tfd.MultivariateNormalDiag)):
        raise UnsupportedDistribution(
            "The KL decomposition needs a diagonal Gaussian posterior with a flat latent "
            f"(Independent(Normal) or MultivariateNormalDiag); got {posterior.name} "
            f"with event shape {posterior.event_shape}.")
    return posterior.mean(), posterior.stddev()


def _prior_marginals_log_prob(prior: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """log p(z_j) `[B, J]` of a factorized prior; raises for a prior that does not factorize."""
    if isinstance(prior, tfd.MultivariateNormalDiag):
        return tfd.Normal(prior.mean(), prior.stddev()).log_prob(z)
    if (isinstance(prior, tfd.Independent) and prior.event_shape.rank == 1
            and prior.distribution.event_shape.rank == 0):
        return prior.distribution.log_prob(z)
    raise UnsupportedDistribution(
        "The KL decomposition here assumes a factorized prior p(z) = prod_j p(z_j) "
        "(Independent of a univariate distribution, or MultivariateNormalDiag), so that "
        f"the prior-factorization term of eq. 21 vanishes; got {prior.name}.")


def data_entropy(x) -> float:
    """H(x) in nats of the empirical distribution of x `[N, *event]` (log N if all distinct)."""
    _, counts = np.unique(np.reshape(x, (len(x), -1)), axis=0, return_counts=True)
    p = counts / len(x)
    return float(-np.sum(p * np.log(p)))


def mutual_information_bounds(rate: float, distortion: float,
                              entropy: float | None = None) -> MutualInformationBounds:
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
    """
    return MutualInformationBounds(
        lower=None if entropy is None else entropy - distortion, upper=rate)


def has_discrete_likelihood(model: VAE, x) -> bool:
    """Whether p(x|z) is a probability mass function and x `[N, *event]` whole numbers."""
    likelihood = model.decode(model.encode(x[:1]).mean())
    while isinstance(likelihood, tfd.Independent):
        likelihood = likelihood.distribution
    return isinstance(likelihood, DISCRETE_LIKELIHOODS) and bool(np.all(np.round(x) == x))


# Reports.

def evaluate(model: VAE, x, *, num_samples: int = 5000, iwae_samples=(5, 50),
             active_threshold: float = 0.01, decomposition_batch_size: int = 1000,
             seed: int = 0) -> dict:
    """Every measure of this module on x `[N, *event]`, as a JSON-ready dict.

    Keys: `elbo`, `rate`, `distortion`; `iwae` (IW_k mean and stderr for each k
    in `iwae_samples`); `log_likelihood` (k = `num_samples`); `active_units`;
    `kl_decomposition` (both estimators, or the reason it does not apply);
    `mutual_information_bounds`; `seconds` spent per part.
    """
    seconds = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    terms = timed("elbo", rate_distortion, model, x, seed=seed)
    iwae = {str(k): _log_likelihood_summary(timed(f"iwae_{k}", log_likelihood, model, x, k,
                                                  seed=seed))
            for k in iwae_samples}
    likelihood = timed("log_likelihood", log_likelihood, model, x, num_samples, seed=seed)
    units = timed("active_units", active_units, model, x, threshold=active_threshold)
    entropy = data_entropy(x) if has_discrete_likelihood(model, x) else None
    bounds = mutual_information_bounds(terms.rate, terms.distortion, entropy)
    return {
        "num_examples": len(x), **terms._asdict(), "iwae": iwae,
        "log_likelihood": _log_likelihood_summary(likelihood),
        "active_units": {"count": units.count, "threshold": units.threshold,
                         "activities": units.activities.tolist()},
        "kl_decomposition": timed("kl_decomposition", _decompositions, model, x,
                                  decomposition_batch_size, seed),
        "mutual_information_bounds": {**bounds._asdict(), "data_entropy": entropy},
        "seconds": seconds,
    }


def _log_likelihood_summary(result: LogLikelihood) -> dict:
    return {"num_samples": result.num_samples, "mean": result.mean, "stderr": result.stderr,
            "monte_carlo_stderr": result.monte_carlo_stderr}


def _decompositions(model: VAE, x, batch_size: int, seed: int) -> dict:
    try:
        estimates = {name: kl_decomposition(model, x, estimator=name, batch_size=batch_size,
                                            seed=seed)._asdict()
                     for name in decomposition.ESTIMATORS}
    except UnsupportedDistribution as error:
        return {"unavailable": str(error)}
    return {"num_data": len(x), "batch_size": min(batch_size, len(x)), **estimates}


def load_split(config: RunConfig, split: str = "test") -> np.ndarray:
    """The datapoints of `split` `[N, *event]`, as the run's training saw them.

    The test set comes from `datasets.load`'s test pipeline (under dynamic
    binarization, binarized once with `datasets.TEST_BINARIZATION_SEED`);
    train (cut to the run's `limit`) and valid are binarized the same way.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}.")
    data = datasets.load(config.data, seed=config.train.seed)
    if split == "test":
        return np.concatenate(list(data.test.as_numpy_iterator()))
    x = getattr(data.arrays, f"x_{split}")
    if x is None:
        raise ValueError(f"{config.data.dataset} has no {split} split.")
    if config.data.binarization == "dynamic":
        x = datasets.fixed_binarization(x, datasets.TEST_BINARIZATION_SEED)
    return x


def evaluate_run(run_dir, *, num_samples: int = 5000, split: str = "test",
                 limit: int | None = None, seed: int = 0) -> Path:
    """Evaluates a run folder's `model.keras` and writes `evaluation.json` and `.md`.

    Args:
        run_dir: A folder written by `training.train` (config.json, model.keras).
        num_samples: k of the log-likelihood estimate.
        split: `test`, `train` or `valid`.
        limit: Evaluate only the first `limit` datapoints of the split.
        seed: Seeds every draw.

    Returns:
        The path of `evaluation.json`.

    Raises:
        FileNotFoundError: The folder, its config.json or model.keras is missing
            (or the data are: `datasets.DataNotFoundError`).
        ValueError: An unknown or absent split, or `limit` < 2.
    """
    if limit is not None and limit < 2:
        raise ValueError(f"limit must be at least 2 (a spread over examples), got {limit}.")
    run_dir = Path(run_dir)
    for path in (run_dir, run_dir / "config.json", run_dir / "model.keras"):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: pass a run folder written by "
                                    "scripts/train.py.")
    config = RunConfig.from_json((run_dir / "config.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    x = load_split(config, split)[:limit]
    report = {"run_dir": str(run_dir), "dataset": config.data.dataset, "split": split,
              "seed": seed, **evaluate(model, x, num_samples=num_samples, seed=seed)}
    write_text_atomic(run_dir / "evaluation.json", json.dumps(report, indent=2))
    write_text_atomic(run_dir / "evaluation.md", to_markdown(report))
    return run_dir / "evaluation.json"


def to_markdown(report: dict) -> str:
    """A short Markdown summary of an `evaluate_run` report."""
    likelihood = report["log_likelihood"]
    units = report["active_units"]
    bounds = report["mutual_information_bounds"]
    lines = [
        f"# Evaluation of {report['run_dir']}",
        "",
        f"{report['dataset']}, {report['split']} split, {report['num_examples']} examples, "
        f"seed {report['seed']}. Nats per datapoint; ± is the standard error over examples.",
        "",
        "| measure | value |", "|---|---|",
        f"| ELBO | {report['elbo']:.2f} |",
        f"| rate KL(q(z\\|x) \\|\\| p(z)) | {report['rate']:.2f} |",
        f"| distortion -E log p(x\\|z) | {report['distortion']:.2f} |",
        *(f"| IWAE bound, k = {k} | {v['mean']:.2f} ± {v['stderr']:.2f} |"
          for k, v in report["iwae"].items()),
        f"| log p(x), k = {likelihood['num_samples']} | {likelihood['mean']:.2f} ± "
        f"{likelihood['stderr']:.2f} (sampling z: ± {likelihood['monte_carlo_stderr']:.3f}) |",
        f"| active units (A_u > {units['threshold']}) | {units['count']} of "
        f"{len(units['activities'])} |",
        f"| I(x; z) bounds, eq. 30 | {_format_bound(bounds['lower'])} <= I <= "
        f"{bounds['upper']:.2f} |",
        "", *_decomposition_lines(report["kl_decomposition"]),
    ]
    return "\n".join(lines) + "\n"


def _format_bound(value) -> str:
    return "n/a (H(x) does not apply)" if value is None else f"{value:.2f}"


def _decomposition_lines(result: dict) -> list[str]:
    if "unavailable" in result:
        return [f"KL decomposition: not available. {result['unavailable']}"]
    header = ["## Rate decomposition (eq. 19-21)", "",
              f"q(z) of the N = {result['num_data']} examples, minibatches of "
              f"{result['batch_size']}. The weighted estimator (Chen et al.'s MWS) "
              "underestimates q(z) and q(z_j) by a factor B to N: its MI is too high, its "
              "dimension-wise KL too low and its TC off by their difference; read the "
              "stratified row (eq. 29).", "",
              "| estimator | MI | TC | dim-wise KL | sum |", "|---|---|---|---|---|"]
    rows = [f"| {name} | {r['mutual_information']:.2f} | {r['total_correlation']:.2f} | "
            f"{r['dimensionwise_kl']:.2f} | {sum(r.values()):.2f} |"
            for name, r in result.items() if name in decomposition.ESTIMATORS]
    return header + rows
