"""Train a VAE: `tfvae-train --dataset frey_face` (or `python scripts/train.py ...`).

One flag per field of tfvae's configuration, grouped by section; an unset flag
takes the paper's default for the dataset (`--dataset mnist --help` shows
MNIST's). Writes saved_models/<run>/ (model.keras, config.json, history.csv,
pictures, TensorBoard logs); running the same command again resumes an
interrupted run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tfvae import flags
from tfvae.cli import add_verbose, fail, start_up

# What a run folder holds, for the closing summary (other files are listed bare).
FILES = {
    "model.keras": "the trained model: keras.models.load_model(path) after import tfvae",
    "config.json": "every setting of the run",
    "history.csv": "per epoch: the bound, rate, distortion, on train and test data",
    "training_curve.png": "the bound against training samples",
    "samples.png": "E[x|z] for z ~ p(z)",
    "manifold.png": "the decoded 2-D latent space",
    "reconstructions.png": "test images and their reconstructions",
}


def parser_for(argv) -> argparse.ArgumentParser:
    """The parser, its help showing the defaults of the `--dataset` in `argv`."""
    dataset_only = argparse.ArgumentParser(add_help=False)
    dataset_only.add_argument("--dataset")
    known, _ = dataset_only.parse_known_args(argv)
    parser = argparse.ArgumentParser(
        prog="tfvae-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_arguments(parser, known.dataset)
    add_verbose(parser)
    return parser


def main(argv=None) -> int:
    args = parser_for(argv).parse_args(argv)
    verbose = args.verbose
    del args.verbose  # Not part of the run's configuration.
    try:
        config = flags.from_arguments(args)
    except ValueError as error:  # A value no run can have, e.g. --latent-dim 0.
        return fail(error)
    # Imported after parsing so that flag errors answer at once.
    from tfvae import datasets, progress, training

    start_up(verbose)
    started = time.perf_counter()
    try:
        result = training.train(
            config,
            verbose=1 if verbose else 0,
            callbacks=[] if verbose else [progress.RunProgress()],
        )
    except (
        datasets.DataNotFoundError,
        training.RunExists,
        training.TrainingDiverged,
        ValueError,
    ) as error:
        return fail(error)
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Run the same command again to resume from the last checkpoint.",
            file=sys.stderr,
        )
        return 130
    print(summary(result.run_dir, result.history, time.perf_counter() - started))
    return 0


def summary(run_dir: Path, history: dict, seconds: float) -> str:
    """Where everything went, the final figures and the commands that come next."""
    # The ELBO whatever the objective minimised; a point mass has none, only its distortion.
    key, meaning = ("elbo", "ELBO") if "elbo" in history else ("loss", "distortion (no bound)")
    lines = [
        f"Trained in {seconds / 60:.1f} min: final {meaning} {history[key][-1]:.2f}, "
        f"test {meaning} {history['val_' + key][-1]:.2f} nats per datapoint.",
        f"Wrote {run_dir}/:",
    ]
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and not path.name.startswith(("checkpoint", ".")):
            lines.append(f"  {path.name:20s} {FILES.get(path.name, '')}".rstrip())
    lines += [
        f"  {'logs/':20s} TensorBoard: tensorboard --logdir {run_dir / 'logs'}",
        "Next:",
        f"  tfvae-evaluate {run_dir}   log-likelihood (k = 5000), KL decomposition",
        f"  tfvae-export {run_dir}     SavedModel and .tflite decoders",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
