"""Burda, Grosse & Salakhutdinov (2016), Table 1, one stochastic layer: VAE and IWAE.

    TFVAE_DATA_DIR=../shared/data python benchmarks/burda.py \\
        --output-dir saved_models/reproductions [--epochs 50] [--num-samples 5000]

Dynamically binarized MNIST; encoder and decoder with two tanh layers of 200 units,
50 latents; Adam with lr 1e-3, batches of 20, no weight decay. Trains (or reuses)
the VAE (k = 1) and the IWAE (k = 5), then estimates the test NLL with k = 5000
importance samples (`scripts/evaluate.py`; reused when evaluation.json has that k)
and prints a Markdown table beside the paper's numbers. The paper trained for
3280 epochs with a decaying learning rate; --epochs says how far this run got.
"""

import argparse
import json
from pathlib import Path

from tfvae import reports, training
from tfvae.config import RunConfig

# Burda et al. (2016), Table 1, test NLL in nats.
TARGETS = {("elbo", 1): 86.76, ("iwae", 5): 85.54, ("iwae", 50): 84.78}


def config(objective: str, k: int, epochs: int, output_dir: str) -> RunConfig:
    return RunConfig.for_dataset(
        "mnist", hidden_units=(200, 200), latent_dim=50, batch_size=20, optimizer="adam",
        learning_rate=1e-3, weight_decay=0.0, epochs=epochs, objective=objective,
        num_samples=k, output_dir=output_dir,
        run_name=f"burda-{'vae' if objective == 'elbo' else 'iwae'}-k{k}")


def nll_report(run_dir: Path, num_samples: int) -> dict:
    """The run's evaluation report, computed unless it exists for `num_samples`."""
    path = run_dir / "evaluation.json"
    if path.exists():
        report = json.loads(path.read_text())
        if report["log_likelihood"]["num_samples"] == num_samples:
            return report
    return json.loads(reports.evaluate_run(run_dir, num_samples=num_samples).read_text())


def row(name, k, result, report) -> str:
    history = result.history
    seconds = sum(history["seconds"]) if "seconds" in history else None
    nll = -report["log_likelihood"]["mean"]
    target = TARGETS[(result.model.objective.name, k)]
    wall = f"{seconds / 60:.0f} min" if seconds else "not recorded"
    return (f"| {name} | {k} | {len(history['elbo'])} | {wall} | {-history['val_elbo'][-1]:.2f} "
            f"| {nll:.2f} ± {report['log_likelihood']['stderr']:.2f} | {target} "
            f"| {nll - target:+.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="saved_models/reproductions")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--iwae-k", type=int, nargs="+", default=[5])
    args = parser.parse_args()
    print("| model | k | epochs | training time | test -ELBO | test NLL (k = "
          f"{args.num_samples}) | paper | gap |\n|---|---|---|---|---|---|---|---|")
    for name, objective, ks in (("VAE", "elbo", [1]), ("IWAE", "iwae", args.iwae_k)):
        for k in ks:
            result = training.train(config(objective, k, args.epochs, args.output_dir),
                                    verbose=0)
            print(row(name, k, result, nll_report(result.run_dir, args.num_samples)), flush=True)


if __name__ == "__main__":
    main()
