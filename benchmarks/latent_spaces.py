"""The 2-D latent space of a plain autoencoder beside the VAE's, on MNIST (seed 000, problem 2).

    TFVAE_DATA_DIR=../shared/data python benchmarks/latent_spaces.py \\
        --output-dir saved_models/reproductions [--epochs 20]

Both use the paper's MNIST networks (500 tanh units, Bernoulli decoder, dynamic
binarization, Adagrad); the autoencoder is the same run with
`--posterior point_mass` (a point code, no KL term). Writes the test codes
coloured by digit to --docs-dir and prints the test losses.
"""

import argparse
from pathlib import Path

from tfvae import datasets, plots, training
from tfvae.config import RunConfig


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="saved_models/reproductions")
    parser.add_argument("--docs-dir", default="docs/results")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    docs = Path(args.docs_dir)
    x, labels = None, None
    print("| model | test loss (nats) | spread of z (std per axis) |\n|---|---|---|")
    for name, posterior in (("VAE", "diagonal_gaussian"), ("autoencoder", "point_mass")):
        config = RunConfig.for_dataset(
            "mnist",
            latent_dim=2,
            epochs=args.epochs,
            posterior=posterior,
            output_dir=args.output_dir,
        )
        result = training.train(config, verbose=0)
        if x is None:
            arrays = datasets.load_arrays("mnist", config.data.data_dir)
            x = datasets.as_scored(arrays.x_test, config.data.binarization)
            labels = arrays.y_test
        z = result.model.posterior_mean(x).numpy()  # The code f(x) of a point mass.
        plots.latent_scatter(
            z, labels, docs / f"latent_{name.lower()}.png", title=f"{name}: MNIST test codes"
        )
        spread = ", ".join(f"{s:.2f}" for s in z.std(axis=0))
        print(f"| {name} | {result.history['val_loss'][-1]:.2f} | {spread} |", flush=True)


if __name__ == "__main__":
    main()
