"""How much noisier the score-function gradient of the ELBO is than the reparameterized one.

    TFVAE_DATA_DIR=../shared/data python benchmarks/gradient_variance.py \\
        [--model saved_models/frey_face-latent10/model.keras] [--dataset frey_face] \\
        [--split test] [--batch-size 100] [--repeats 200] \\
        [--baseline none|leave_one_out] [--num-samples L] [--kl-estimator monte_carlo] \\
        [--output gradient_variance.json]

Seed 003, section 5.1: the score function (REINFORCE) estimator of the ELBO's
gradient is unbiased but "empirically the variance of this estimator is very
high". On one trained model (not retrained) and one batch, the first
--batch-size images of --split, this computes the gradient of the mean loss
for R = --repeats seeds with `tfvae.objectives.ELBO()` (reparameterization) and
`ELBO(gradient_estimator="score_function", baseline=...)`, both with the
model's KL estimator (analytic for a diagonal Gaussian posterior: then only the
expected log-likelihood is estimated by the score function) and the same L
draws of z per image. Per group of parameters (`tfvae.gradient_variance`):
the total variance of each estimator, their ratio, the squared norm of the
mean gradient (the signal) and the largest standardized difference of the
means, which stays near 4-5 if both estimators are unbiased. The decoder's
gradient is the same under both estimators (log p(x|z) at the same z): ratio 1.
"""

import argparse
import json
import sys
from pathlib import Path

DEFAULT_MODEL = "saved_models/frey_face-latent10/model.keras"
NAMES = ("reparameterization", "score_function")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(DEFAULT_MODEL),
        help=f"a tfvae .keras file (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--dataset",
        default="frey_face",
        help="the data the batch is taken from (default: frey_face)",
    )
    parser.add_argument("--data-dir", default=None, help="default: $TFVAE_DATA_DIR")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument(
        "--binarization",
        choices=("none", "dynamic"),
        default="none",
        help="as the model was trained: dynamic for binarized MNIST runs "
        "(the images are then binarized once, as evaluation does)",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=200, help="R seeds per estimator")
    parser.add_argument(
        "--baseline",
        choices=("none", "leave_one_out"),
        default="none",
        help="the score function's control variate",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="L draws of z per image for both estimators (default: 1, "
        "or 2 with --baseline leave_one_out)",
    )
    parser.add_argument(
        "--kl-estimator",
        choices=("auto", "analytic", "monte_carlo"),
        default=None,
        help="default: the model's",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    # Imported after parsing so that --help and flag errors answer at once.
    import keras

    from tfvae import datasets, gradient_variance, objectives
    from tfvae.config import DataConfig
    from tfvae.training import write_text_atomic

    num_samples = args.num_samples or (2 if args.baseline == "leave_one_out" else 1)
    try:
        if not args.model.is_file():
            raise FileNotFoundError(f"{args.model}: no such model file.")
        model = keras.models.load_model(args.model, safe_mode=True)
        if not hasattr(model, "objective"):
            raise ValueError(f"{args.model} holds a {type(model).__name__}, not a tfvae VAE.")
        model.num_samples = num_samples
        if args.kl_estimator:
            model.kl_estimator = args.kl_estimator
        data = datasets.load(
            DataConfig(
                dataset=args.dataset,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                binarization=args.binarization,
            )
        )
        images = getattr(data.arrays, f"x_{args.split}")
        if len(images) < args.batch_size:
            raise ValueError(
                f"{args.dataset} {args.split} has {len(images)} images, fewer "
                f"than --batch-size {args.batch_size}."
            )
        # As the test pipeline of `datasets.load` yields them, also for train.
        x = datasets.as_scored(images[: args.batch_size], args.binarization)
        estimators = {
            NAMES[0]: objectives.ELBO(),
            NAMES[1]: objectives.ELBO(gradient_estimator="score_function", baseline=args.baseline),
        }
        rows = gradient_variance.compare(model, x, estimators, args.repeats)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = {
        "model": str(args.model),
        "dataset": args.dataset,
        "split": args.split,
        "batch_size": len(x),
        "repeats": args.repeats,
        "num_samples": num_samples,
        "kl_estimator": model.kl_estimator,
        "baseline": args.baseline,
    }
    print(", ".join(f"{key} = {value}" for key, value in settings.items()) + "\n")
    print(table(rows))
    if args.output:
        write_text_atomic(args.output, json.dumps({**settings, "groups": rows}, indent=2))
    return 0


def table(rows: list[dict]) -> str:
    """The Markdown table of `gradient_variance.compare`'s rows."""
    rp, sf = NAMES
    lines = [
        "| group | parameters | variance (RP) | variance (SF) | SF / RP "
        "| signal (RP) | signal (SF) | max abs z |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['group']} | {row['num_parameters']:,} "
            f"| {row['variance'][rp]:.4g} "
            f"| {row['variance'][sf]:.4g} | {row['variance_ratio']:.4g} "
            f"| {row['signal'][rp]:.4g} | {row['signal'][sf]:.4g} "
            f"| {row['max_abs_z']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
