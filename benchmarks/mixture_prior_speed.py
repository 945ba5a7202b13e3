"""The test NLL's cost under each prior, with the mixture log-density as matrix
products (`tfvae.gaussian_mixture`) and as TFP's elementwise one.

    python benchmarks/mixture_prior_speed.py [--num-examples 100] [--num-samples 5000]

`tfvae.evaluation.log_likelihood` (k = 5000, its default batch and chunk sizes)
on random binary images with the VampPrior setting's network (784-300-300-40
tanh, Bernoulli; untrained: the cost does not depend on the weights) and each
prior: N(0, I), a mixture of 500 Gaussians and a VampPrior with 500
pseudo-inputs. The "elementwise" rows build the same priors' distributions as
`tfd.MixtureSameFamily`, which evaluates the [draws, 500, 40] differences one by
one (the code before `DiagonalGaussianMixture`); the last column is the largest
difference of the per-image estimates from the matrix-product ones.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import tensorflow_probability as tfp

import tfvae
from tfvae import evaluation, priors

PRIORS = {
    "N(0, I)": tfvae.PriorConfig("standard_normal"),
    "mixture of 500 Gaussians": tfvae.PriorConfig("mixture_of_gaussians", num_components=500),
    "VampPrior, K = 500": tfvae.PriorConfig("vamp", num_pseudo_inputs=500),
}


def model_with(prior: tfvae.PriorConfig, seed: int = 0):
    config = tfvae.ModelConfig(
        latent_dim=40,
        hidden_units=(300, 300),
        event_shape=(28, 28),
        weight_decay=0.0,
        init_stddev=None,
        prior=prior,
    )
    model = tfvae.build_vae(config, seed=seed)
    model.build((None, 28, 28))
    return model


def timed(model, x, num_samples: int) -> tuple[float, np.ndarray]:
    evaluation.log_likelihood(model, x[:100], 200)  # Traces.
    start = time.perf_counter()
    estimate = evaluation.log_likelihood(model, x, num_samples)
    return time.perf_counter() - start, np.asarray(estimate.per_example)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-examples", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=5000)
    args = parser.parse_args()
    x = np.random.default_rng(0).uniform(size=(args.num_examples, 28, 28)) > 0.5
    x = x.astype(np.float32)
    print(
        f"{args.num_examples} images x k = {args.num_samples}\n"
        "| prior | log-density | seconds | seconds per 10,000 images | largest difference |\n"
        "|---|---|---|---|---|"
    )
    scale = 10_000 / args.num_examples
    for name, prior in PRIORS.items():
        model = model_with(prior)
        seconds, fast = timed(model, x, args.num_samples)
        print(f"| {name} | matrix products | {seconds:.1f} | {seconds * scale:,.0f} | 0 |")
        if prior.name == "standard_normal":
            continue
        with mock.patch.object(
            priors, "DiagonalGaussianMixture", tfp.distributions.MixtureSameFamily
        ):
            seconds, slow = timed(model_with(prior), x, args.num_samples)
        gap = np.max(np.abs(slow - fast))
        print(
            f"| {name} | elementwise | {seconds:.1f} | {seconds * scale:,.0f} | {gap:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
