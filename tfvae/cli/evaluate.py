"""Evaluate a trained run: `tfvae-evaluate saved_models/<run>`.

Writes <run>/evaluation.json and <run>/evaluation.md: ELBO, rate, distortion,
IWAE bounds, the importance-sampled test log-likelihood, active units, the KL
decomposition and the mutual-information bounds (see tfvae/reports.py).
"""

import argparse
import sys

from tfvae.cli import add_verbose, fail, start_up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfvae-evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", help="run folder with config.json and model.keras")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=5000,
        help="importance samples k for log p(x) (default: 5000)",
    )
    parser.add_argument("--split", choices=("test", "train", "valid"), default="test")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only the first LIMIT datapoints of the split",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the importance samples")
    add_verbose(parser)
    args = parser.parse_args(argv)
    start_up(args.verbose)
    # Imported after parsing so that --help and flag errors answer at once.
    from tfvae import reports

    try:
        path = reports.evaluate_run(
            args.run_dir,
            num_samples=args.num_samples,
            split=args.split,
            limit=args.limit,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError) as error:
        return fail(error)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
