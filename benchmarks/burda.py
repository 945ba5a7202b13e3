"""Burda, Grosse & Salakhutdinov (2016), Table 1: VAE and IWAE, one or two stochastic layers.

    TFVAE_DATA_DIR=../shared/data python benchmarks/burda.py \\
        --output-dir /work/runs/burda [--rows vae iwae5] [--epochs 2000] [--batch-size 100] \\
        [--learning-rate 1e-3] [--final-learning-rate 1e-4] [--optimizer-epsilon 1e-4] \\
        [--init-stddev none]

Dynamically binarized MNIST; encoder and decoder with two tanh layers of 200 units,
50 latents; Adam, no weight decay. The rows ending in `_2l` have the paper's two
stochastic layers instead (section 5): 100-100 tanh units between x and z1 (100
latents), 50-50 between z1 and z2 (50 latents); give them `--init-stddev none`, since
from N(0, 0.01^2) they stay at their collapsed start (docs/results.md). The paper's
schedule is batch 20, 3280 epochs and `--lr-schedule burda` from 1e-3 to 1e-4; the
defaults here are a shorter one (batch 100, cosine from 1e-3 to 1e-4, a linear KL
warm-up over 100 epochs) that fits the 2-hour CPU budget. Trains (or resumes, or
reuses) each row, then estimates the test NLL with k = 5000 importance samples
(`scripts/evaluate.py`; reused when evaluation.json has that k) and prints a
Markdown table beside the paper's numbers.
An interrupted run resumes when the same command runs again.
"""

import argparse

import scored_runs

from tfvae.config import LR_SCHEDULES, RunConfig

# Burda et al. (2016), Table 1, test NLL in nats, by (objective, k, stochastic layers).
TARGETS = {
    ("elbo", 1, 1): 86.76,
    ("iwae", 5, 1): 85.54,
    ("iwae", 50, 1): 84.78,
    ("elbo", 1, 2): 85.33,
    ("iwae", 5, 2): 83.89,
    ("iwae", 50, 2): 82.90,
}
DEFAULT_INIT_STDDEV = 0.01  # Kingma & Welling's N(0, 0.01^2), the shipped rows'
DEFAULT_LEARNING_RATE = 1e-3  # Burda et al.'s first step size, the shipped rows'
# --rows key: (name, objective, k, stochastic layers)
ROWS = {
    "vae": ("VAE", "elbo", 1, 1),
    "iwae5": ("IWAE", "iwae", 5, 1),
    "iwae50": ("IWAE", "iwae", 50, 1),
    "vae_2l": ("VAE, 2 layers", "elbo", 1, 2),
    "iwae5_2l": ("IWAE, 2 layers", "iwae", 5, 2),
    "iwae50_2l": ("IWAE, 2 layers", "iwae", 50, 2),
}
# Section 5 of the paper: the networks of one and of two stochastic layers.
NETWORKS = {
    1: {"hidden_units": (200, 200), "latent_dim": 50},
    2: {
        "hidden_units": (100, 100),
        "latent_dim": 100,
        "top_latent_dim": 50,
        "top_hidden_units": (50, 50),
    },
}


def config(objective: str, k: int, args: argparse.Namespace, layers: int = 1) -> RunConfig:
    """The row's run; its folder is named after everything that varies here."""
    warmup = {"warmup": "linear", "warmup_length": args.warmup_epochs} if args.warmup_epochs else {}
    # The suffix only when not the default, so the shipped rows keep their names.
    stddev = args.init_stddev
    init = (
        ""
        if stddev == DEFAULT_INIT_STDDEV
        else f"-init{'none' if stddev is None else f'{stddev:g}'}"
    )
    rates = "" if args.learning_rate == DEFAULT_LEARNING_RATE else f"-lr{args.learning_rate:g}"
    if args.final_learning_rate is not None:
        rates += f"-to{args.final_learning_rate:g}"
    if args.optimizer_epsilon is not None:
        rates += f"-eps{args.optimizer_epsilon:g}"
    name = (
        f"burda-{'vae' if objective == 'elbo' else 'iwae'}{'' if layers == 1 else '-2l'}"
        f"-k{k}-b{args.batch_size}"
        f"-e{args.epochs}-{args.lr_schedule}{rates}-w{args.warmup_epochs}{init}"
    )
    return RunConfig.for_dataset(
        "mnist",
        **NETWORKS[layers],
        batch_size=args.batch_size,
        optimizer="adam",
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        final_learning_rate=args.final_learning_rate,
        optimizer_epsilon=args.optimizer_epsilon,
        weight_decay=0.0,
        epochs=args.epochs,
        objective=objective,
        num_samples=k,
        output_dir=args.output_dir,
        run_name=name,
        init_stddev=args.init_stddev,
        **warmup,
    )


def init_stddev(text: str) -> float | None:
    """argparse type: a positive float, or None for the word none."""
    if text.strip().lower() == "none":
        return None
    if not float(text) > 0:
        raise ValueError(text)
    return float(text)


def row(name, k, target, result, report) -> str:
    history = result.history
    value, stderr = scored_runs.nll(report)
    return (
        f"| {name} | {k} | {len(history['elbo'])} | {scored_runs.training_time(history)} "
        f"| {-history['val_elbo'][-1]:.2f} | {value:.2f} ± {stderr:.2f} | {target} "
        f"| {value - target:+.2f} |"
    )


def main():
    parser = scored_runs.parser(__doc__, output_dir="/work/runs/burda")
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=["vae", "iwae5"])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="cosine",
        help="down to --final-learning-rate",
    )
    parser.add_argument(
        "--final-learning-rate",
        type=float,
        default=None,
        help="the last step size of a decaying schedule (default: a tenth of --learning-rate)",
    )
    parser.add_argument(
        "--optimizer-epsilon",
        type=float,
        default=None,
        help="Adam's epsilon (default: Keras's 1e-7; Burda et al.'s code used 1e-4)",
    )
    parser.add_argument("--warmup-epochs", type=int, default=100, help="0: no warm-up")
    parser.add_argument(
        "--init-stddev",
        type=init_stddev,
        default=DEFAULT_INIT_STDDEV,
        help="of the N(0, s^2) initial weights, or none: variance-preserving (Glorot "
        "uniform for tanh: the heuristic of Glorot & Bengio 2010)",
    )
    args = parser.parse_args()
    print(
        "| model | k | epochs | training time | test -ELBO | test NLL (k = "
        f"{args.num_samples}) | paper | gap |\n|---|---|---|---|---|---|---|---|"
    )
    for key in args.rows:
        name, objective, k, layers = ROWS[key]
        result, report = scored_runs.train_and_score(
            config(objective, k, args, layers), args.num_samples, args.ship_dir
        )
        print(row(name, k, TARGETS[(objective, k, layers)], result, report), flush=True)


if __name__ == "__main__":
    main()
