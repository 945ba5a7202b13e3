"""The variant table: every part against the paper's model, at one fixed short budget.

    TFVAE_DATA_DIR=../shared/data python benchmarks/variants.py \\
        --output-dir /work/runs/variants [--mnist-epochs 5] [--frey-epochs 300]

Each row changes one part of Kingma & Welling's model (diagonal-Gaussian
posterior, N(0, I) prior; Bernoulli on binarized MNIST, Gaussian on Frey Face)
through its flag, and trains with the paper's settings otherwise (latent 20,
500 tanh units, Adagrad 0.02 on binarized MNIST; latent 2, 200 units, Adagrad
0.01 on Frey Face). Columns: the test NLL on binarized MNIST (k = 1000
importance samples; ± its standard error over the images) and its test ELBO,
both on the first --nll-examples test images; the test ELBO on Frey Face (its 180
test images); each ELBO from one draw of z per image (for the point mass, which has
no ELBO, its distortion); and whether the Frey Face model exports (SavedModel and
float32, dynamic-int8 and float16 `.tflite`) within the parity tolerances. A cell is "refused"
where the config is: a density likelihood on binary pixels is unbounded, a
Bernoulli needs binary pixels.
Runs live in --output-dir; rerunning resumes or reuses them.
"""

import argparse

import numpy as np

from tfvae import evaluation, export, parity, training
from tfvae.config import RunConfig
from tfvae.export import load_test_images

# (part, flag value): the paper's model with that one part changed.
ROWS = [
    ("paper's model", {}),
    ("likelihood", {"likelihood": "discretized_logistic"}),
    ("likelihood", {"likelihood": "continuous_bernoulli"}),
    ("likelihood", {"likelihood": "bernoulli"}),
    ("likelihood", {"likelihood": "gaussian"}),
    *[
        ("posterior", {"posterior": name})
        for name in (
            "full_covariance_gaussian",
            "laplace",
            "logistic",
            "student_t",
            "iaf",
            "affine_coupling",
            "point_mass",
        )
    ],
    ("prior", {"prior": "mixture_of_gaussians"}),
    ("prior", {"prior": "vamp"}),
]


def run(dataset: str, overrides: dict, epochs: int, output_dir: str, nll_examples: int):
    """Trains (or reuses) one variant: {"nll", "elbo", "distortion"},
    or {"refused": why} where the config or the data refuse it."""
    try:
        config = RunConfig.for_dataset(dataset, epochs=epochs, output_dir=output_dir, **overrides)
    except ValueError as error:
        return {"refused": str(error).split(":")[0]}
    try:
        result = training.train(config, verbose=0)
    except ValueError as error:  # Data outside the likelihood's support.
        return {"refused": str(error).split(":")[0]}
    except training.TrainingDiverged:
        return {"refused": "diverged"}
    # MNIST: the NLL and the ELBO on the same first test images, so that they compare.
    x = load_test_images(config, limit=nll_examples if dataset == "binarized_mnist" else None)
    model = result.model
    terms = evaluation.rate_distortion(model, x) if model.has_density else None
    row = {
        "elbo": terms.elbo if terms else None,
        "distortion": (
            terms.distortion if terms else float(np.mean(model.bound_terms(x).distortion))
        ),
    }
    if dataset == "binarized_mnist" and model.has_density:
        estimate = evaluation.log_likelihood(model, x, 1000)
        row["nll"], row["nll_stderr"] = -estimate.mean, estimate.stderr
    if dataset == "frey_face" and model.has_density:
        row["export"] = export_check(model, config, result.run_dir, x)
    return row


def export_check(model, config, run_dir, x) -> str:
    """Exports with the default quantizations; "passed", or the first parity failure."""
    try:
        export.export_model(
            model, run_dir / export.EXPORT_DIR, x[: export.NUM_TEST_EXAMPLES], run_config=config
        )
    except parity.ParityError as error:
        return "failed: " + str(error).splitlines()[1].strip()
    return "passed"


def elbo_cell(row) -> str:
    """The ELBO, or for the point mass (no ELBO) its distortion."""
    if row is not None and "refused" not in row and row.get("elbo") is None:
        return f"distortion {cell(row, 'distortion')}"
    return cell(row, "elbo")


def cell(row, key, digits=1):
    if row is None or "refused" in row:
        return "refused"
    value = row.get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="saved_models/variants")
    parser.add_argument("--mnist-epochs", type=int, default=5)
    parser.add_argument("--frey-epochs", type=int, default=300)
    parser.add_argument("--nll-examples", type=int, default=500)
    args = parser.parse_args()
    print(
        f"Budget: binarized MNIST {args.mnist_epochs} epochs (5e4 x {args.mnist_epochs} "
        f"samples), Frey Face {args.frey_epochs} epochs (1605 x {args.frey_epochs}).\n"
    )
    print(
        f"| part | flag | binarized MNIST test NLL, k = 1000 | binarized MNIST test ELBO "
        f"(the same {args.nll_examples} images) | Frey Face test ELBO | Frey Face export |"
        "\n|---|---|---|---|---|---|"
    )
    for part, overrides in ROWS:
        mnist = run(
            "binarized_mnist", overrides, args.mnist_epochs, args.output_dir, args.nll_examples
        )
        frey = run("frey_face", overrides, args.frey_epochs, args.output_dir, args.nll_examples)
        flag = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()) or "-"
        exported = frey.get("export", "-") if "refused" not in frey else "refused"
        nll = cell(mnist, "nll")
        if "nll_stderr" in (mnist or {}):
            nll += f" ± {mnist['nll_stderr']:.1f}"
        print(
            f"| {part} | `{flag}` | {nll} | {elbo_cell(mnist)} | {elbo_cell(frey)} | {exported} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
