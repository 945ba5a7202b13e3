"""Where the CLI's epoch goes: training steps, validation, logging and checkpoints.

    TFVAE_DATA_DIR=../shared/data python benchmarks/profile_cli.py \
        [--settings kingma frey_face] [--epochs 5]

Runs `tfvae.training.train` (what `scripts/train.py` runs) on a
`train_throughput.py` setting's real dataset, with the same flags as that
benchmark's `cli` path, and times each phase of every epoch after the first
(which compiles) with a callback: the training steps (from the epoch's start,
so the pipeline's start is included), validation on the test split, tfvae's
end-of-epoch callbacks (history.csv, TensorBoard, checkpoints every 10 epochs),
and the gap between epochs. Prints medians in milliseconds (Markdown).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import DESCRIPTIONS, SETTINGS, cli_flags  # noqa: E402

PHASES = ("training steps", "validation", "logging and checkpoints", "between epochs")


class PhaseTimer(keras.callbacks.Callback):
    """Seconds of each of `PHASES` in every epoch; must be the last callback."""

    def __init__(self):
        super().__init__()
        self.seconds = collections.defaultdict(list)
        self.mark = self.epoch_ended = None

    def _lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase].append(now - self.mark)
        self.mark = now

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        if self.epoch_ended is not None:
            self.seconds[PHASES[3]].append(now - self.epoch_ended)
        self.mark = now

    def on_test_begin(self, logs=None):
        self._lap(PHASES[0])

    def on_test_end(self, logs=None):
        self._lap(PHASES[1])

    def on_epoch_end(self, epoch, logs=None):
        self._lap(PHASES[2])  # The callbacks before this one: tfvae's loggers.
        self.epoch_ended = self.mark


def profile(setting: str, epochs: int) -> tuple[dict[str, float], int]:
    """Median milliseconds per phase, after the first epoch; and steps per epoch."""
    from tfvae import flags, training

    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    timer = PhaseTimer()
    with tempfile.TemporaryDirectory() as workdir:
        config = flags.from_arguments(
            parser.parse_args(cli_flags(setting, epochs + 1, Path(workdir)))
        )
        result = training.train(config, verbose=0, callbacks=[timer])
        samples = result.history["samples"][0]
    medians = {
        phase: 1e3 * statistics.median(timer.seconds[phase][1:] or timer.seconds[phase])
        for phase in PHASES
    }
    return medians, int(samples) // SETTINGS[setting][1]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=["kingma", "frey_face"])
    parser.add_argument(
        "--epochs", type=int, default=5, help="Timed epochs (after one that compiles). Default: 5."
    )
    args = parser.parse_args()
    rows = [
        f"| setting | steps per epoch | {' | '.join(PHASES)} (ms, median) |",
        "|---|---:|" + "---:|" * len(PHASES),
    ]
    for setting in args.settings:
        epochs = args.epochs * (10 if SETTINGS[setting][3] == "frey_face" else 1)
        medians, steps = profile(setting, epochs)
        rows.append(
            f"| {DESCRIPTIONS[setting]} | {steps} | "
            + " | ".join(f"{medians[p]:,.1f}" for p in PHASES)
            + " |"
        )
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
