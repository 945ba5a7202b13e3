"""Tomczak & Welling (2018): the standard, mixture-of-Gaussians and VampPrior priors, one setting.

    TFVAE_DATA_DIR=../shared/data python benchmarks/vampprior.py \\
        --output-dir /work/runs/vampprior [--rows standard mog vamp] [--epochs 300]
    TFVAE_DATA_DIR=../shared/data python benchmarks/vampprior.py --dataset frey_face \\
        --output-dir /work/runs/vampprior --epochs 2000 [--validation-split blocks] [--seeds 0 1 2]

The setting is their code's, held fixed across the rows: 40 latents, two hidden
layers of 300 units (tanh MLPs here; they use gated dense layers), Adam with lr
5e-4, batch 100, KL warm-up beta = min(1, epoch / 100), K = 500 pseudo-inputs
for the VampPrior and 500 components for the mixture of Gaussians (`--components`
sets K for both; the folder name then has -K<K>), and
variance-preserving initial weights (Glorot here, He in their code). With
Kingma & Welling's N(0, 0.01^2) these two-layer networks start collapsed,
q(z|x) = p(z) for every x, and the VampPrior rows (and on Frey Face every row)
never leave that start: the rate stays at 0 and the test NLL at the
pixel-marginal model's (206 nats on MNIST, 2510 on Frey Face). MNIST is
dynamically binarized with a Bernoulli likelihood; Frey Face has their
discretized logistic over 256 levels, on tfvae's documented split
(`tfvae.datasets.frey_face_split`, 180 test frames), not their shuffled one.
As in their code, each run holds out a random subset of the training set as a
validation set (10,000 on MNIST, their 50k/10k; 200 of Frey Face's 1605
training frames, as their shuffled split) and stops 50 epochs after its best
validation ELBO, keeping that epoch's weights; --epochs caps the run.
`--validation-split blocks` holds the validation frames out as Frey Face's test
frames are (blocks of 20 with 10-frame gaps dropped), so that the stop follows
held-out frames without near neighbours in training; `--seeds` trains each
prior once per seed. The test
NLL is estimated with k = 5000 importance samples; for Frey Face also in bits
per dimension, NLL / (560 ln 2).
An interrupted run resumes when the same command runs again.
"""

import argparse
import math

import scored_runs

from tfvae.config import VALIDATION_SPLITS, RunConfig

# --rows key: (prior, the config field holding its K or None)
PRIORS = {
    "standard": ("standard_normal", None),
    "mog": ("mixture_of_gaussians", "num_components"),
    "vamp": ("vamp", "num_pseudo_inputs"),
}
DEFAULT_COMPONENTS = 500  # their code's K, the shipped rows'.
# Tomczak & Welling (2018), one stochastic layer, statically binarized MNIST.
PAPER_VAMP_STATIC_MNIST = 85.57
DATASETS = {
    "mnist": {"likelihood": "bernoulli", "validation_size": 10_000},
    "frey_face": {"likelihood": "discretized_logistic", "validation_size": 200},
}
EARLY_STOPPING = 50  # epochs without a better validation ELBO, their code's


def config(dataset: str, prior: str, args: argparse.Namespace, seed: int = 0) -> RunConfig:
    """The row's run; its folder is named after everything that varies here."""
    name, field = PRIORS[prior]
    options = {field: args.components} if field else {}
    # Suffixes only when not the defaults, so the shipped rows keep their names.
    sized = f"-K{args.components}" if field and args.components != DEFAULT_COMPONENTS else ""
    split = "" if args.validation_split == "random" else f"-v{args.validation_split}"
    seeded = f"-s{seed}" if seed else ""
    return RunConfig.for_dataset(
        dataset,
        hidden_units=(300, 300),
        latent_dim=40,
        batch_size=100,
        optimizer="adam",
        learning_rate=5e-4,
        weight_decay=0.0,
        init_stddev=None,
        warmup="linear",
        warmup_length=100,
        epochs=args.epochs,
        early_stopping=EARLY_STOPPING,
        prior=name,
        **options,
        **DATASETS[dataset],
        validation_split=args.validation_split,
        seed=seed,
        output_dir=args.output_dir,
        run_name=f"vamp-{dataset}-{prior}-e{args.epochs}-es{EARLY_STOPPING}{sized}{split}{seeded}",
    )


def row(prior: str, dataset: str, seed: int, result, report, pixels: int) -> str:
    value, stderr = scored_runs.nll(report)
    bits = f" | {value / (pixels * math.log(2)):.3f}" if dataset == "frey_face" else ""
    paper = PAPER_VAMP_STATIC_MNIST if (dataset, prior) == ("mnist", "vamp") else "-"
    return (
        f"| {PRIORS[prior][0]} | {seed} | {len(result.history['elbo'])} "
        f"| {scored_runs.training_time(result.history)} | {value:.2f} ± {stderr:.2f}"
        f"{bits} | {paper} |"
    )


def main():
    parser = scored_runs.parser(__doc__, output_dir="/work/runs/vampprior")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--rows", nargs="+", choices=list(PRIORS), default=list(PRIORS))
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument(
        "--validation-split",
        choices=VALIDATION_SPLITS,
        default="random",
        help="blocks: validation frames in blocks with gaps, as Frey Face's test split",
    )
    parser.add_argument(
        "--components",
        type=int,
        default=DEFAULT_COMPONENTS,
        help="K: pseudo-inputs of the VampPrior, components of the mixture of Gaussians",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one run per prior and seed"
    )
    args = parser.parse_args()
    bits = " | bits/dim" if args.dataset == "frey_face" else ""
    print(
        f"| prior | seed | epochs | training time | test NLL (k = {args.num_samples}){bits} "
        f"| paper |\n|---|---|---|---|---|{'---|' if bits else ''}---|"
    )
    for seed in args.seeds:
        for prior in args.rows:
            result, report = scored_runs.train_and_score(
                config(args.dataset, prior, args, seed), args.num_samples, args.ship_dir
            )
            saved = RunConfig.from_json((result.run_dir / "config.json").read_text())
            pixels = math.prod(saved.model.event_shape)
            print(row(prior, args.dataset, seed, result, report, pixels), flush=True)


if __name__ == "__main__":
    main()
