"""Objectives and networks at one fixed short budget: the tables of docs/results.md.

    TFVAE_DATA_DIR=../shared/data python benchmarks/objectives_table.py \\
        --output-dir /work/runs/objectives [--epochs 10] [--nll-examples 500]

Every run trains for --epochs with Adam (learning rate 1e-3, batch 100, seed 0)
and the paper's model otherwise (latent 20, 500 tanh units, Bernoulli pixels),
changing what its row names through the flags shown:

1. beta in {0.5, 1, 4} on MNIST (dynamic binarization);
2. beta-TCVAE (alpha = gamma = 1, TC weight 6) against the beta-VAE with the same
   beta = 6, on MNIST;
3. a convolutional VAE (stride-2 convolutions 32-64, ReLU, 500 hidden units)
   against the MLP one on binarized MNIST;
4. a conditional VAE on MNIST: `conditional_samples.png` in its run folder,
   one row of E[x|z, y] per label y, the same ten z ~ N(0, I) in every row.

Columns, on the first --nll-examples test images: rate, distortion and ELBO
(nats, one z per image, the true beta = 1 quantities whatever the objective),
active units (Burda et al.: Var_x E_q[z_j] > 0.01), the test NLL (k = 1000
importance samples, ± its standard error over images), and for rows 1-2 the
KL decomposition (stratified estimator over the same images): mutual
information, total correlation, dimension-wise KL.
Runs live in --output-dir; rerunning resumes or reuses them.
"""

import argparse
import shutil

import numpy as np

from tfvae import evaluation, plots, seeds, training
from tfvae.config import RunConfig
from tfvae.export import load_test_images

COMMON = {"optimizer": "adam", "learning_rate": 1e-3}
BETA_ROWS = [
    ("beta = 0.5", {"beta": 0.5}),
    ("beta = 1 (the ELBO)", {}),
    ("beta = 4", {"beta": 4.0}),
]
TC_ROWS = [
    ("beta-VAE, beta = 6", {"beta": 6.0}),
    ("beta-TCVAE, TC weight 6", {"objective": "beta_tcvae", "tc_weight": 6.0}),
]
NETWORK_ROWS = [("MLP", {}), ("convolutional", {"network": "conv", "activation": "relu"})]


def train(dataset: str, overrides: dict, args):
    config = RunConfig.for_dataset(
        dataset, epochs=args.epochs, output_dir=args.output_dir, **COMMON, **overrides
    )
    return config, training.train(config, verbose=0)


def measure(dataset: str, overrides: dict, args, decomposition: bool = False) -> dict:
    """Trains (or reuses) one run and measures it on the first test images."""
    config, result = train(dataset, overrides, args)
    model = result.model
    x = load_test_images(config, limit=args.nll_examples)
    terms = evaluation.rate_distortion(model, x)
    estimate = evaluation.log_likelihood(model, x, 1000)
    row = {
        "rate": terms.rate,
        "distortion": terms.distortion,
        "elbo": terms.elbo,
        "active": evaluation.active_units(model, x).count,
        "nll": f"{-estimate.mean:.1f} ± {estimate.stderr:.1f}",
        "seconds": sum(training.read_history(result.run_dir / "history.csv")["seconds"]),
    }
    if decomposition:
        row.update(evaluation.kl_decomposition(model, x)._asdict())
    return row


def table(title: str, rows, dataset: str, args, decomposition: bool = False) -> None:
    extra = " | MI | TC | dimension-wise KL" if decomposition else ""
    print(
        f"\n{title}\n\n| run | flags | rate | distortion | ELBO | active units | "
        f"test NLL, k = 1000 | train seconds{extra} |\n|---|---|---|---|---|---|---|---"
        + "|---" * (3 if decomposition else 0)
        + "|"
    )
    for name, overrides in rows:
        row = measure(dataset, overrides, args, decomposition)
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()) or "-"
        cells = [f"{row[k]:.1f}" for k in ("rate", "distortion", "elbo")]
        cells += [str(row["active"]), row["nll"], f"{row['seconds']:.0f}"]
        if decomposition:
            cells += [
                f"{row[k]:.1f}"
                for k in ("mutual_information", "total_correlation", "dimensionwise_kl")
            ]
        print(f"| {name} | `{flags}` | " + " | ".join(cells) + " |", flush=True)


def conditional_samples(args) -> None:
    """Trains the conditional VAE and decodes ten draws of z with every label."""
    _, result = train("mnist", {"conditional": True}, args)
    model = result.model
    z = model.prior().sample(10, seed=seeds.stateless(0)).numpy()
    labels = np.repeat(np.arange(model.num_classes), len(z))
    means = model.likelihood_mean(np.tile(z, (model.num_classes, 1)), labels).numpy()
    path = plots.image_grid(
        means,
        result.run_dir / "conditional_samples.png",
        ncols=10,
        title="conditional VAE: row y = E[x | z, y], z ~ N(0, I)",
    )
    if args.figure:
        shutil.copyfile(path, args.figure)
    print(f"\nConditional samples: {args.figure or path}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="saved_models/objectives")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--nll-examples", type=int, default=500)
    parser.add_argument("--figure", help="Also copy the conditional samples here.")
    parser.add_argument(
        "--samples-only", action="store_true", help="Only the conditional samples (no tables)."
    )
    args = parser.parse_args()
    if args.samples_only:
        conditional_samples(args)
        return
    print(
        f"Budget: {args.epochs} epochs, Adam 1e-3, batch 100, seed 0; measured on the "
        f"first {args.nll_examples} test images."
    )
    table("beta on MNIST", BETA_ROWS, "mnist", args, decomposition=True)
    table("beta-TCVAE against the beta-VAE on MNIST", TC_ROWS, "mnist", args, decomposition=True)
    table("Networks on binarized MNIST", NETWORK_ROWS, "binarized_mnist", args)
    conditional_samples(args)


if __name__ == "__main__":
    main()
