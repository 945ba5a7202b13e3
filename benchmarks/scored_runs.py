"""Shared by the reproduction scripts: train (or resume, or reuse) a run, score its NLL.

Each script names its rows' runs after everything that varies, so running it
again resumes an interrupted run, reuses a finished one and its evaluation,
and prints the table again.
"""

import json
from pathlib import Path

from tfvae import reports, training
from tfvae.config import RunConfig


def nll_report(run_dir: Path, num_samples: int) -> dict:
    """The run's evaluation report, computed unless it exists for `num_samples`."""
    path = run_dir / "evaluation.json"
    if path.exists():
        report = json.loads(path.read_text())
        if report["log_likelihood"]["num_samples"] == num_samples:
            return report
    return json.loads(reports.evaluate_run(run_dir, num_samples=num_samples).read_text())


def train_and_score(config: RunConfig, num_samples: int) -> tuple[training.TrainResult, dict]:
    """Trains `config` to its last epoch (a line per epoch) and scores it on the test set."""
    result = training.train(config, verbose=2)
    return result, nll_report(result.run_dir, num_samples)


def training_time(history: dict) -> str:
    """The run's summed epoch wall times, in minutes (older runs did not record them)."""
    if "seconds" not in history:
        return "not recorded"
    return f"{sum(history['seconds']) / 60:.0f} min"


def nll(report: dict) -> tuple[float, float]:
    """Test NLL in nats per datapoint and its standard error over datapoints."""
    estimate = report["log_likelihood"]
    return -estimate["mean"], estimate["stderr"]
