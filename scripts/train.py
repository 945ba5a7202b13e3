"""Train a VAE: `python scripts/train.py --dataset frey_face`.

Flags are generated from tfvae.config by tfvae.flags (one per field); unset flags take the
paper's default for the dataset. Writes saved_models/<run>/ (see
tfvae/training.py); running the same command again resumes an interrupted run.
"""

import argparse
import sys

from tfvae import flags


def main(argv=None) -> int:
    # --dataset first, so that --help shows that dataset's defaults.
    dataset_only = argparse.ArgumentParser(add_help=False)
    dataset_only.add_argument("--dataset")
    known, _ = dataset_only.parse_known_args(argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    flags.add_arguments(parser, known.dataset)
    args = parser.parse_args(argv)
    try:
        config = flags.from_arguments(args)
    except ValueError as error:  # A value no run can have, e.g. --latent-dim 0.
        print(f"error: {error}", file=sys.stderr)
        return 1
    # Imported after parsing so that --help and flag errors answer at once.
    from tfvae import datasets, training

    try:
        result = training.train(config, verbose=1 if sys.stdout.isatty() else 2)
    except (
        datasets.DataNotFoundError,
        training.RunExists,
        training.TrainingDiverged,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Run the same command again to resume from the last checkpoint.",
            file=sys.stderr,
        )
        return 130
    history = result.history
    # The ELBO whatever the objective minimised; a point mass has none, only its distortion.
    key, meaning = ("elbo", "ELBO") if "elbo" in history else ("loss", "distortion: no bound")
    print(
        f"Wrote {result.run_dir}: final {meaning} {history[key][-1]:.2f}, "
        f"test {meaning} {history['val_' + key][-1]:.2f} nats per datapoint."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
