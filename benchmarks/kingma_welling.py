"""Reproduce Kingma & Welling (2014), Figures 2 and 4, and print the results.

    TFVAE_DATA_DIR=../shared/data python benchmarks/kingma_welling.py \\
        --output-dir saved_models/reproductions [--frey-epochs 6250] [--mnist-epochs 20] \\
        [--datasets frey_face mnist]

Trains (or reuses, when a run folder already holds the finished run) the paper's
model for every latent size: Frey Face {2, 5, 10, 20} and MNIST {2, 3, 5, 10, 20, 200},
the setting of `RunConfig.for_dataset`. It writes the Figure 2 curves (lower bound
against training samples evaluated, log axis) and copies the 2-D manifolds (Figure 4)
into --docs-dir, and prints a Markdown table of the bounds at 1e5, 1e6 and 1e7 samples.
"""

import argparse
import shutil
from pathlib import Path

from tfvae import plots, training
from tfvae.config import RunConfig

LATENTS = {"frey_face": (2, 5, 10, 20), "mnist": (2, 3, 5, 10, 20, 200)}
CHECKPOINTS = (1e5, 1e6, 1e7)


def train_all(dataset: str, latents, epochs: int, output_dir: str) -> dict:
    """{latent size: TrainResult}, training only what is not finished yet."""
    return {
        z: training.train(
            RunConfig.for_dataset(dataset, latent_dim=z, epochs=epochs, output_dir=output_dir),
            verbose=0,
        )
        for z in latents
    }


def at_samples(history: dict, target: float) -> str:
    """'train / test' bounds of the epoch ending nearest `target` samples, if reached."""
    samples = history["samples"]
    if samples[-1] < 0.9 * target:
        return "not reached"
    i = min(range(len(samples)), key=lambda k: abs(samples[k] - target))
    return f"{history['elbo'][i]:.1f} / {history['val_elbo'][i]:.1f}"


def table(dataset: str, results: dict) -> str:
    rows = [
        "| latent | "
        + " | ".join(f"{t:.0e} train / test" for t in CHECKPOINTS)
        + " | samples | time (sum of epochs) |",
        "|---" * (len(CHECKPOINTS) + 3) + "|",
    ]
    for z, result in results.items():
        history = result.history
        seconds = sum(history["seconds"]) if "seconds" in history else None
        wall = f"{seconds / 60:.1f} min" if seconds else "not recorded"
        rows.append(
            f"| {z} | "
            + " | ".join(at_samples(history, t) for t in CHECKPOINTS)
            + f" | {history['samples'][-1]:.2e} | {wall} |"
        )
    return f"{dataset}\n\n" + "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="saved_models/reproductions")
    parser.add_argument("--docs-dir", default="docs/results")
    # 6250 epochs of the 1600 training samples an epoch evaluates: 1.0e7 samples.
    parser.add_argument("--frey-epochs", type=int, default=6250)
    parser.add_argument("--mnist-epochs", type=int, default=20)
    parser.add_argument("--datasets", nargs="+", choices=tuple(LATENTS), default=tuple(LATENTS))
    args = parser.parse_args()
    docs = Path(args.docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    epochs = {"frey_face": args.frey_epochs, "mnist": args.mnist_epochs}
    for dataset in args.datasets:
        latents = LATENTS[dataset]
        results = train_all(dataset, latents, epochs[dataset], args.output_dir)
        plots.bound_curves(
            {f"latent {z}": r.history for z, r in results.items()},
            docs / f"figure2_{dataset}.png",
            title=f"{dataset}: lower bound per datapoint",
        )
        shutil.copyfile(results[2].run_dir / "manifold.png", docs / f"figure4_{dataset}.png")
        print(table(dataset, results), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
