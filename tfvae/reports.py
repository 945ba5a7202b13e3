"""Reports: every measure of `tfvae.evaluation` on a dataset or a run folder.

`evaluate` gathers, for datapoints x, the ELBO with its rate and distortion, IWAE
bounds for a few k, the importance-sampled log p(x) (k = 5000, Burda et al. 2016),
active units, the rate decomposition into index-code mutual information, total
correlation and dimension-wise KL (seed 002 eq. 19-21, with both estimators) and
the mutual-information bounds (eq. 30), with the seconds each part took, as a
JSON-ready dict. `evaluate_run` does it for a folder written by `training.train`,
on the split as that run's training saw it (`load_split`), and writes
`evaluation.json` and the Markdown summary `evaluation.md` (`to_markdown`) beside
the model.

References:
    Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Chen, Li, Grosse & Duvenaud (2018). Isolating Sources of Disentanglement in
        Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfvae import datasets, decomposition, evaluation
from tfvae.config import RunConfig
from tfvae.model import VAE
from tfvae.training import write_text_atomic

SPLITS = ("test", "train", "valid")


def evaluate(
    model: VAE,
    x: np.ndarray,
    *,
    num_samples: int = 5000,
    iwae_samples: Sequence[int] = (5, 50),
    active_threshold: float = 0.01,
    decomposition_batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> dict:
    """Every measure of `tfvae.evaluation` on x, as a JSON-ready dict.

    Args:
        model: The VAE.
        x: `[N, *event]` datapoints, N >= 2.
        num_samples: k of the log-likelihood estimate.
        iwae_samples: The k of the cheaper IWAE bounds reported beside it.
        active_threshold: A_u above which a latent dimension counts as active.
        decomposition_batch_size: Minibatch size of the KL decomposition.
        seed: Seeds every draw.
        labels: `[N]` labels of a conditional VAE (its bounds are on log p(x|y)).

    Returns:
        Keys `num_examples`; `elbo`, `rate`, `distortion`; `iwae` (IW_k mean and
        stderr for each k in `iwae_samples`); `log_likelihood` (k = `num_samples`);
        `active_units`; `kl_decomposition` (both estimators, or the reason it does
        not apply); `mutual_information_bounds`; `seconds` spent per part.
    """
    seconds = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    terms = timed("elbo", evaluation.rate_distortion, model, x, seed=seed, labels=labels)
    iwae = {
        str(k): _log_likelihood_summary(
            timed(f"iwae_{k}", evaluation.log_likelihood, model, x, k, seed=seed, labels=labels)
        )
        for k in iwae_samples
    }
    likelihood = timed(
        "log_likelihood", evaluation.log_likelihood, model, x, num_samples, seed=seed, labels=labels
    )
    units = timed(
        "active_units", evaluation.active_units, model, x, threshold=active_threshold, labels=labels
    )
    discrete = evaluation.has_discrete_likelihood(model, x)
    entropy = evaluation.data_entropy(x) if discrete else None
    bounds = evaluation.mutual_information_bounds(terms.rate, terms.distortion, entropy)
    return {
        "num_examples": len(x),
        **terms._asdict(),
        "iwae": iwae,
        "log_likelihood": _log_likelihood_summary(likelihood),
        "active_units": {
            "count": units.count,
            "threshold": units.threshold,
            "activities": units.activities.tolist(),
        },
        "kl_decomposition": timed(
            "kl_decomposition", _decompositions, model, x, decomposition_batch_size, seed, labels
        ),
        "mutual_information_bounds": {**bounds._asdict(), "data_entropy": entropy},
        "seconds": seconds,
    }


def _log_likelihood_summary(result: evaluation.LogLikelihood) -> dict:
    """The dataset-level numbers of `result`; the `[N]` per-example arrays stay out."""
    return {
        "num_samples": result.num_samples,
        "mean": result.mean,
        "stderr": result.stderr,
        "monte_carlo_stderr": result.monte_carlo_stderr,
    }


def _decompositions(model: VAE, x, batch_size: int, seed: int, labels=None) -> dict:
    """Both estimators' decompositions of x `[N, *event]`, or why the model has none."""
    try:
        estimates = {
            name: evaluation.kl_decomposition(
                model, x, estimator=name, batch_size=batch_size, seed=seed, labels=labels
            )._asdict()
            for name in decomposition.ESTIMATORS
        }
    except evaluation.UnsupportedDistribution as error:
        # Other posterior or prior families still get every other measure.
        return {"unavailable": str(error)}
    return {"num_data": len(x), "batch_size": min(batch_size, len(x)), **estimates}


def load_split(config: RunConfig, split: str = "test") -> np.ndarray:
    """The datapoints of `split` `[N, *event]`, as the run's training saw them
    (`load_labels` gives their labels).

    Under dynamic binarization every split is binarized once with
    `datasets.TEST_BINARIZATION_SEED` (`datasets.as_scored`), as the test
    pipeline of `datasets.load` is; train is cut to the run's `limit`.

    Raises:
        ValueError: `split` is not one of `SPLITS`, or the dataset lacks it.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}.")
    arrays = datasets.load_arrays(config.data.dataset, config.data.data_dir)
    x = getattr(arrays, f"x_{split}")
    if x is None:
        raise ValueError(f"{config.data.dataset} has no {split} split.")
    if split == "train" and config.data.limit is not None:
        x = x[: config.data.limit]
    return datasets.as_scored(x, config.data.binarization)


def load_labels(config: RunConfig, split: str = "test") -> np.ndarray | None:
    """The labels `[N]` of `load_split(config, split)` for a conditional run, else None."""
    if not config.model.conditional:
        return None
    labels = getattr(datasets.load_arrays(config.data.dataset, config.data.data_dir), f"y_{split}")
    return labels[: config.data.limit] if split == "train" and config.data.limit else labels


def evaluate_run(
    run_dir: str | Path,
    *,
    num_samples: int = 5000,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
) -> Path:
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
        ValueError: An unknown or absent split, `limit` < 2, or a run that is
            not a VAE (`export.load_run`).
    """
    if limit is not None and limit < 2:
        raise ValueError(f"limit must be at least 2 (a spread over examples), got {limit}.")
    from tfvae.export import load_run  # Here: export imports the TFLite converter.

    run_dir = Path(run_dir)
    model, config = load_run(run_dir)
    x = load_split(config, split)[:limit]
    labels = load_labels(config, split)
    labels = None if labels is None else labels[:limit]
    report = {
        "run_dir": str(run_dir),
        "dataset": config.data.dataset,
        "split": split,
        "seed": seed,
        **evaluate(model, x, num_samples=num_samples, seed=seed, labels=labels),
    }
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
        "| measure | value |",
        "|---|---|",
        f"| ELBO | {report['elbo']:.2f} |",
        f"| rate KL(q(z\\|x) \\|\\| p(z)) | {report['rate']:.2f} |",
        f"| distortion -E log p(x\\|z) | {report['distortion']:.2f} |",
        *(
            f"| IWAE bound, k = {k} | {v['mean']:.2f} ± {v['stderr']:.2f} |"
            for k, v in report["iwae"].items()
        ),
        f"| log p(x), k = {likelihood['num_samples']} | {likelihood['mean']:.2f} ± "
        f"{likelihood['stderr']:.2f} (sampling z: ± {likelihood['monte_carlo_stderr']:.3f}) |",
        f"| active units (A_u > {units['threshold']}) | {units['count']} of "
        f"{len(units['activities'])} |",
        f"| I(x; z) bounds, eq. 30 | {_format_bound(bounds['lower'])} <= I <= "
        f"{bounds['upper']:.2f} |",
        "",
        *_decomposition_lines(report["kl_decomposition"]),
    ]
    return "\n".join(lines) + "\n"


def _format_bound(value: float | None) -> str:
    """The MI lower bound, or why there is none (a density likelihood: H(x) unknown)."""
    return "n/a (H(x) does not apply)" if value is None else f"{value:.2f}"


def _decomposition_lines(result: dict) -> list[str]:
    """The Markdown section of `evaluate`'s `kl_decomposition` entry."""
    if "unavailable" in result:
        return [f"KL decomposition: not available. {result['unavailable']}"]
    header = [
        "## Rate decomposition (eq. 19-21)",
        "",
        f"q(z) of the N = {result['num_data']} examples, minibatches of "
        f"{result['batch_size']}. The weighted estimator (Chen et al.'s MWS) "
        "underestimates q(z) and q(z_j) by a factor B to N: its MI is too high, its "
        "dimension-wise KL too low and its TC off by their difference; read the "
        "stratified row (eq. 29).",
        "",
        "| estimator | MI | TC | dim-wise KL | sum |",
        "|---|---|---|---|---|",
    ]
    rows = [
        f"| {name} | {r['mutual_information']:.2f} | {r['total_correlation']:.2f} | "
        f"{r['dimensionwise_kl']:.2f} | {sum(r.values()):.2f} |"
        for name, r in result.items()
        if name in decomposition.ESTIMATORS
    ]
    return header + rows
