"""What a training run shows while it runs: one bar for the run, or one per epoch.

A Frey Face run is 1000 epochs of a fraction of a second each: a line per epoch
buries the figures that matter (how far along, the bound, the time left). An
MNIST run of minutes per epoch wants Keras' per-step bar. `RunProgress`
decides from the second epoch (the first also compiles): both show Keras'
per-step bar, so the user sees at once that something happens; if the second
took less than `long_epoch` seconds, the rest of the run is one tqdm bar of
epochs with the bound and the time left, else every epoch keeps its own bar.
"""

from __future__ import annotations

import sys
import time

import keras
from tqdm import tqdm

# The bound on train and test data; the loss where a model has no bound.
BOUNDS = (("elbo", "ELBO"), ("val_elbo", "test"))
LOSSES = (("loss", "loss"), ("val_loss", "test"))
DECIDING_EPOCHS = 2  # Per-step bars until the first epoch after compiling is timed.


class RunProgress(keras.callbacks.Callback):
    """The progress display of a whole run; pass `verbose=0` to `fit`.

    Args:
        long_epoch: Seconds from which an epoch is long enough for its own bar.
        interval: Seconds between updates of a bar. When the output is not a
            terminal (a log file) every update is a line, so there the
            default is a minute.
        stream: Where the bars go (stdout, like Keras').
    """

    def __init__(self, long_epoch: float = 10.0, interval: float | None = None, stream=None):
        super().__init__()
        self.stream = stream or sys.stdout
        terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.long_epoch = long_epoch
        self.interval = interval if interval is not None else (0.1 if terminal else 60.0)
        self.per_epoch: bool | None = None  # Undecided until DECIDING_EPOCHS have run.
        self._epoch_bar = self._run_bar = None
        self._epochs_seen = 0
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()
        if self.per_epoch is not False:
            print(f"Epoch {epoch + 1}/{self.params['epochs']}", file=self.stream, flush=True)
            self._epoch_bar = keras.utils.Progbar(
                self.params["steps"],
                interval=self.interval,
                stateful_metrics=[name for name, _ in BOUNDS + LOSSES],
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch_bar is not None:
            # With steps_per_execution K, Keras reports the last step of each
            # block of K, which for a short epoch is past its end.
            self._epoch_bar.update(min(batch + 1, self.params["steps"]), values=_values(logs))

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_seen += 1
        if self._epoch_bar is not None:
            self._epoch_bar.update(self.params["steps"], values=_values(logs), finalize=True)
            self._epoch_bar = None
        if self._run_bar is not None:
            self._run_bar.set_postfix_str(_postfix(logs), refresh=False)
            self._run_bar.update(1)
        elif self.per_epoch is None and self._epochs_seen == DECIDING_EPOCHS:
            self.per_epoch = time.perf_counter() - self._epoch_started >= self.long_epoch
            if not self.per_epoch and epoch + 1 < self.params["epochs"]:
                self._run_bar = tqdm(
                    total=self.params["epochs"],
                    initial=epoch + 1,
                    unit="epoch",
                    desc="epochs",
                    mininterval=self.interval,
                    file=self.stream,
                    dynamic_ncols=True,
                )

    def on_train_end(self, logs=None):
        if self._run_bar is not None:
            self._run_bar.close()
            self._run_bar = None


def _values(logs) -> list[tuple[str, float]]:
    """The bounds in the logs (else the losses), as Keras' Progbar takes them."""
    logs = logs or {}
    names = BOUNDS if any(key in logs for key, _ in BOUNDS) else LOSSES
    return [(key, float(logs[key])) for key, _ in names if key in logs]


def _postfix(logs) -> str:
    """`ELBO -92.75, test -92.69` (nats per datapoint) for the run bar."""
    logs = logs or {}
    names = BOUNDS if any(key in logs for key, _ in BOUNDS) else LOSSES
    return ", ".join(f"{label} {float(logs[key]):.2f}" for key, label in names if key in logs)
