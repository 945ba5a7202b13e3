"""Shared by the reproduction scripts: train (or resume, or reuse) a run, score its NLL.

Each script names its rows' runs after everything that varies, so running it
again resumes an interrupted run, reuses a finished one and its evaluation,
and prints the table again.
"""

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

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


def train_and_score(
    config: RunConfig, num_samples: int, ship_dir: Path | None = None
) -> tuple[training.TrainResult, dict]:
    """Trains `config` to its last epoch (a line per epoch), scores it on the test
    set and, given `ship_dir`, ships it there (`ship`)."""
    result = training.train(config, verbose=2)
    report = nll_report(result.run_dir, num_samples)
    if ship_dir is not None:
        ship(result.run_dir, ship_dir)
    return result, report


def parser(doc: str, output_dir: str) -> argparse.ArgumentParser:
    """A script's parser with the flags every reproduction has: where its runs go,
    the k of the NLL and where finished runs are shipped."""
    result = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    result.add_argument("--output-dir", default=output_dir)
    result.add_argument("--num-samples", type=int, default=5000)
    result.add_argument(
        "--ship-dir",
        default="saved_models",
        help="where each finished, evaluated run is copied (model.keras, "
        "config.json, history.csv, evaluation.json and .md)",
    )
    return result


SHIPPED_FILES = ("model.keras", "config.json", "history.csv", "evaluation.json", "evaluation.md")
MAX_SHIPPED_BYTES = 5 * 2**20


def ship(run_dir: Path, ship_dir: Path) -> Path:
    """Copies a finished, evaluated run to `ship_dir/<run name>/`, whole or not at all.

    The model is saved again without its optimizer's state (Adam's two moments
    would triple the file); `python scripts/evaluate.py` on that folder then
    reproduces evaluation.json.

    Raises:
        FileNotFoundError: One of `SHIPPED_FILES` is missing (the run is unfinished).
        ValueError: A file would be 5 MiB or more (the limit for a committed model).
    """
    run_dir, ship_dir = Path(run_dir), Path(ship_dir)
    for name in SHIPPED_FILES:
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} not found: the run is not finished and evaluated."
            )
    ship_dir.mkdir(parents=True, exist_ok=True)
    target = ship_dir / run_dir.name
    # Written beside the target, then renamed: a reader never sees half a folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=ship_dir))
    try:
        for name in SHIPPED_FILES[1:]:
            shutil.copy2(run_dir / name, staging / name)
        model = keras.models.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
        model.save(staging / "model.keras")
        for name in SHIPPED_FILES:
            size = (staging / name).stat().st_size
            if size >= MAX_SHIPPED_BYTES:
                raise ValueError(
                    f"{name} of {run_dir} is {size / 2**20:.1f} MiB, over the "
                    f"{MAX_SHIPPED_BYTES // 2**20} MiB a shipped file may have."
                )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def training_time(history: dict) -> str:
    """The run's summed epoch wall times, in minutes (older runs did not record them)."""
    if "seconds" not in history:
        return "not recorded"
    return f"{sum(history['seconds']) / 60:.0f} min"


def nll(report: dict) -> tuple[float, float]:
    """Test NLL in nats per datapoint and its standard error over datapoints."""
    estimate = report["log_likelihood"]
    return -estimate["mean"], estimate["stderr"]
