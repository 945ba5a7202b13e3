"""The test NLL of two trained runs, and their difference with its paired standard error.

    TFVAE_DATA_DIR=../shared/data python benchmarks/paired_nll.py \\
        saved_models/vamp-frey_face-standard-e2000-es50 saved_models/vamp-frey_face-vamp-e2000-es50

Both runs are scored on the same test images with k importance samples each
(default 5000, the reproductions' k). The standard error of each NLL is over
the images; that of the difference is the spread of the per-image differences
over sqrt(N), which is far smaller when the images vary much more than the
models differ on them (Frey Face: the per-image NLLs spread by about 300 nats).
The two runs must share a dataset and its test split.
"""

import argparse
import math
from pathlib import Path

import numpy as np

from tfvae import datasets, evaluation, training
from tfvae.config import RunConfig


def per_image_nll(run_dir: Path, num_samples: int, seed: int) -> tuple[np.ndarray, RunConfig]:
    """-log p(x) `[N]` on the run's test images, and the run's config."""
    config = RunConfig.from_json((run_dir / "config.json").read_text())
    data = datasets.load(config.data, seed=config.train.seed)
    x = datasets.as_scored(data.arrays.x_test, config.data.binarization)
    model = training.load_model(run_dir / "model.keras")
    estimate = evaluation.log_likelihood(model, x, num_samples, seed=seed)
    return -np.asarray(estimate.per_example), config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    first, first_config = per_image_nll(args.first, args.num_samples, args.seed)
    second, second_config = per_image_nll(args.second, args.num_samples, args.seed)
    if first_config.data.dataset != second_config.data.dataset or first.shape != second.shape:
        parser.error(f"{args.first} and {args.second} are not scored on the same test set.")
    n = len(first)
    difference = second - first
    print(f"| run | test NLL (k = {args.num_samples}) |\n|---|---|")
    for name, values in ((args.first.name, first), (args.second.name, second)):
        print(f"| {name} | {values.mean():.2f} ± {values.std(ddof=1) / math.sqrt(n):.2f} |")
    paired = difference.std(ddof=1) / math.sqrt(n)
    print(
        f"\nsecond - first: {difference.mean():+.2f} ± {paired:.2f} nats per image "
        f"(paired, {n} images; {np.mean(difference < 0):.0%} of the images lower under the second)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
