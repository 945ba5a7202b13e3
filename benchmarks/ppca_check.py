"""The correctness check on probabilistic PCA (seed 001), where log p(x) is exact.

    python benchmarks/ppca_check.py [--epochs 30] [--num-test 500]

Trains a VAE whose encoder and decoder are linear-Gaussian (`tfvae.ppca`) on
synthetic pPCA data, from a random start, then compares on test data: the exact
log p(x) of the trained decoder, the ELBO, and `tfvae.log_likelihood` with a
growing number k of importance samples. The ELBO must stay below the exact value
and the estimate must approach it as k grows.
"""

import argparse

import keras
import numpy as np

import tfvae
from tfvae import ppca


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--num-test", type=int, default=500)
    args = parser.parse_args()
    truth = ppca.PPCA()
    x_train, x_test = truth.sample(5000, seed=1), truth.sample(args.num_test, seed=2)
    keras.utils.set_random_seed(0)  # This script's own process: seeds the random start.
    encoder, decoder = ppca.affine_encoder(), ppca.affine_decoder()
    vae = tfvae.VAE(encoder, decoder, seed=0)
    vae.compile(keras.optimizers.Adam(0.01))
    vae.fit(x_train, batch_size=100, epochs=args.epochs, verbose=0)
    exact = ppca.exact_log_evidence(decoder, x_test).mean()
    elbo = float(np.mean(vae.elbo(x_test, num_samples=1000, seed=0)))
    print(
        f"Exact log p(x) of the trained model: {exact:.4f} nats (mean over "
        f"{args.num_test} test points)\n"
    )
    print("| estimate | value | minus exact | stderr (Monte Carlo) |\n|---|---|---|---|")
    print(f"| ELBO (L = 1000) | {elbo:.4f} | {elbo - exact:+.4f} | |")
    for k in (1, 10, 100, 1000, 5000):
        estimate = tfvae.log_likelihood(vae, x_test, num_samples=k, seed=0)
        # The delta-method error needs a spread of weights: none with one sample.
        stderr = f"{estimate.monte_carlo_stderr:.4f}" if k > 1 else "n/a"
        print(
            f"| log_likelihood, k = {k} | {estimate.mean:.4f} | {estimate.mean - exact:+.4f} "
            f"| {stderr} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
