"""Training throughput: tfvae's CLI and `fit` against a hand-written XLA loop and PyTorch.

    python benchmarks/train_throughput.py [--settings kingma burda20 ...]
        [--paths cli fit xla torch] [--epochs 5] [--levers]
        [--output docs/results/train_throughput.json]

For each setting (the MLP VAEs of Kingma & Welling and Burda et al., Adam with
step size 1e-3, no weight decay), in one run, each path in a process of its own:

- `cli`: `scripts/train.py` on the real dataset (MNIST dynamically binarized,
  or Frey Face), validation every epoch, checkpoints, TensorBoard: the epoch
  times of its history.csv (validation and checkpoint included);
- `fit`: `VAE.fit` on random data of the dataset's shape in memory, with the
  defaults of `compile()`;
- `xla`: `references.XLALoop`, the step alone, 50 steps per XLA call;
- `torch`: `references.TorchLoop`, plain PyTorch eager (if torch is installed).

Training examples per second of every epoch after the first (which compiles):
the best epoch (the ratios that the speed targets are about compare best
epochs), the median and the slowest, and each process's peak resident memory.
`--levers` adds rows for what tfvae's own loop gives over Keras' (`fit` with Keras'
step functions, several steps per call) and for TensorFlow's thread pools (one
inter-op or one intra-op thread), one and two logical CPU devices under
`MirroredStrategy` (`tfvae.distribute`) and mixed bfloat16 (`tfvae.precision`).
Figures move by about 20% between runs on a shared machine: compare rows of one
run only, and run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from references import Network, TorchLoop, XLALoop  # noqa: E402

MNIST = (28, 28)
BURDA = dict(pixels=784, hidden=(200, 200), latent=50)
# name: (network, batch size, event shape, CLI dataset, random examples per epoch of the
# other paths: half of MNIST's 60,000, for a shorter run)
SETTINGS = {
    "kingma": (Network(784, (500,), 20), 100, MNIST, "mnist", 30_000),
    "burda20": (Network(**BURDA), 20, MNIST, "mnist", 30_000),
    "burda20_iwae5": (Network(**BURDA, num_samples=5, bound="iwae"), 20, MNIST, "mnist", 30_000),
    "burda100": (Network(**BURDA), 100, MNIST, "mnist", 30_000),
    "burda100_iwae5": (Network(**BURDA, num_samples=5, bound="iwae"), 100, MNIST, "mnist", 30_000),
    "frey_face": (
        Network(560, (200,), 2, likelihood="gaussian"),
        100,
        (28, 20),
        "frey_face",
        20_000,
    ),
}
DESCRIPTIONS = {
    "kingma": "Kingma MNIST 784-500-20, batch 100, VAE",
    "burda20": "Burda 784-200-200-50, batch 20, VAE",
    "burda20_iwae5": "Burda 784-200-200-50, batch 20, IWAE k = 5",
    "burda100": "Burda net, batch 100, VAE",
    "burda100_iwae5": "Burda net, batch 100, IWAE k = 5",
    "frey_face": "Frey Face 560-200-2 Gaussian, batch 100, VAE",
}
LEARNING_RATE = 1e-3
PATHS = ("cli", "fit", "xla", "torch")
LEVERS = (
    "fit_keras_loop_k1",
    "fit_keras_loop_k64",
    "fit_k16",
    "fit_inter_op_1",
    "fit_intra_op_1",
    "fit_1_logical_cpu",
    "fit_2_logical_cpus",
    "fit_mixed_bfloat16",
)


# Workers: each runs in its own process and prints one JSON line.


def random_data(setting: str, seed: int = 0) -> np.ndarray:
    """Random data of the setting's shape: binary pixels, or intensities for a Gaussian."""
    network, _, shape, _, n = SETTINGS[setting]
    x = np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)
    return x if network.likelihood == "gaussian" else (x > 0.5).astype(np.float32)


def compiled_vae(setting: str, **compile_options):
    """tfvae's VAE of the setting, compiled with Adam and `compile()`'s other defaults."""
    import keras

    import tfvae

    network, _, shape, _, _ = SETTINGS[setting]
    config = tfvae.ModelConfig(
        latent_dim=network.latent,
        hidden_units=network.hidden,
        event_shape=shape,
        likelihood=network.likelihood,
        weight_decay=0.0,
        num_samples=network.num_samples,
        objective=network.bound,
    )
    model = tfvae.build_vae(config, seed=0)
    model.compile(keras.optimizers.Adam(LEARNING_RATE), **compile_options)
    return model


def work_fit(
    setting: str,
    epochs: int,
    steps_per_execution: int | None = None,
    keras_loop: bool = False,
    cpu_devices: int | None = None,
    precision_name: str = "float32",
) -> list[float]:
    """Epoch seconds of `VAE.fit` on arrays; `keras_loop`: Keras' own step functions;
    `cpu_devices`: a MirroredStrategy over that many logical CPUs; `precision_name`:
    a Keras dtype policy (`tfvae.precision`)."""
    import contextlib

    import keras

    from tfvae import distribute, precision

    strategy = distribute.make_strategy("mirrored", cpu_devices) if cpu_devices else None
    batch = SETTINGS[setting][1]
    options = {} if steps_per_execution is None else {"steps_per_execution": steps_per_execution}
    with (
        strategy.scope() if strategy else contextlib.nullcontext(),
        precision.policy(precision_name),
    ):
        model = compiled_vae(setting, **options)
    if keras_loop:  # What Keras' TF trainer does with the same steps_per_execution.
        model._steps_loop_in_xla = lambda: False
    timer = EpochTimer(keras)
    model.fit(
        random_data(setting), batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[timer]
    )
    return timer.seconds


def EpochTimer(keras):
    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return Timer()


def work_reference(setting: str, epochs: int, kind: str) -> tuple[list[float], int]:
    """Epoch seconds and examples per epoch of `XLALoop` or `TorchLoop`."""
    network, batch, _, _, _ = SETTINGS[setting]
    x = random_data(setting)
    loop = (XLALoop if kind == "xla" else TorchLoop)(network, x, batch, learning_rate=LEARNING_RATE)
    seconds = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        loop.epoch(epoch)
        seconds.append(time.perf_counter() - start)
    return seconds, loop.examples_per_epoch()


def cli_flags(setting: str, epochs: int, workdir: Path) -> list[str]:
    """scripts/train.py's flags for the setting on its real dataset, `epochs` epochs."""
    network, batch, _, dataset, _ = SETTINGS[setting]
    return [
        "--dataset",
        dataset,
        "--latent-dim",
        str(network.latent),
        "--hidden-units",
        *map(str, network.hidden),
        "--batch-size",
        str(batch),
        "--optimizer",
        "adam",
        "--learning-rate",
        str(LEARNING_RATE),
        "--weight-decay",
        "0",
        "--objective",
        network.bound,
        "--num-samples",
        str(network.num_samples),
        "--epochs",
        str(epochs),
        "--output-dir",
        str(workdir),
        "--run-name",
        setting,
    ]


def run_cli(setting: str, epochs: int, workdir: Path) -> dict:
    """scripts/train.py on the setting's real dataset; epoch seconds from history.csv."""
    if SETTINGS[setting][3] == "frey_face":
        epochs *= 10  # 16 steps an epoch: more epochs for a steady figure.
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        *cli_flags(setting, epochs + 1, workdir),
    ]
    _, peak_rss_mb = run_measured(command)
    with open(workdir / setting / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "epoch_seconds": [float(row["seconds"]) for row in rows],
        "examples_per_epoch": int(float(rows[0]["samples"])),
        "peak_rss_mb": peak_rss_mb,
    }


def run_worker(setting: str, path: str, epochs: int) -> dict:
    """This script as a worker process for one path: its JSON and its peak memory."""
    out, peak_rss_mb = run_measured(
        [sys.executable, __file__, "--worker", path, "--settings", setting, "--epochs", str(epochs)]
    )
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mb": peak_rss_mb}


def run_measured(command: list[str]) -> tuple[str, float]:
    """Runs `command` to its end; (its stdout, its peak resident memory in MB).

    Raises:
        RuntimeError: The command failed (with the end of its stderr).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # This child's own rusage.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return out.read(), usage.ru_maxrss / 1024  # kB on Linux.


def worker(path: str, setting: str, epochs: int) -> dict:
    """One path's epoch seconds and examples per epoch, in this process."""
    network, batch, _, _, n = SETTINGS[setting]
    if path in ("xla", "torch"):
        seconds, examples = work_reference(setting, epochs, path)
        return {"epoch_seconds": seconds, "examples_per_epoch": examples}
    options = {
        "fit": {},
        "fit_k16": {"steps_per_execution": 16},
        "fit_keras_loop_k1": {"steps_per_execution": 1, "keras_loop": True},
        "fit_keras_loop_k64": {"steps_per_execution": 64, "keras_loop": True},
        "fit_inter_op_1": {},
        "fit_intra_op_1": {},
        # MirroredStrategy: no XLA, one step per call (OwnLossModel.compile).
        "fit_1_logical_cpu": {"cpu_devices": 1},
        "fit_2_logical_cpus": {"cpu_devices": 2},
        "fit_mixed_bfloat16": {"precision_name": "mixed_bfloat16"},
    }[path]
    if path.startswith("fit_inter_op") or path.startswith("fit_intra_op"):
        # Thread pools: TensorFlow's default on this machine is one thread per core for each.
        import tensorflow as tf

        threading = tf.config.threading
        (
            threading.set_inter_op_parallelism_threads
            if "inter" in path
            else threading.set_intra_op_parallelism_threads
        )(1)
    seconds = work_fit(setting, epochs, **options)
    return {"epoch_seconds": seconds, "examples_per_epoch": n // batch * batch}


# The report.


def summary(result: dict) -> dict:
    """Examples per second of the epochs after the first: median, min, max."""
    rates = [result["examples_per_epoch"] / s for s in result["epoch_seconds"][1:]]
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "epochs": len(rates),
        "peak_rss_mb": result["peak_rss_mb"],
    }


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> dict:
    import tensorflow as tf

    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    if torch_available():
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(results: dict) -> str:
    """Markdown: median (min-max) examples/s per path, and the target ratios."""
    rows = [
        "| setting | path | examples/s, best epoch | median (min) | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    ratios = ["| setting | fit / XLA loop | CLI / fit | fit / PyTorch |", "|---|---|---|---|"]
    for setting, paths in results.items():
        for path, s in paths.items():
            rows.append(
                f"| {DESCRIPTIONS[setting]} | {path} | {s['max']:,.0f} | "
                f"{s['median']:,.0f} ({s['min']:,.0f}) | {s['peak_rss_mb']:,.0f} |"
            )
        # The best epoch, as the figures: on this shared machine an epoch's
        # time grows with what else runs on the host, never shrinks below the cost.
        best = {path: s["max"] for path, s in paths.items()}

        def ratio(a, b):
            return f"{best[a] / best[b]:.2f}" if a in best and b in best else "-"

        ratios.append(
            f"| {DESCRIPTIONS[setting]} | {ratio('fit', 'xla')} | "
            f"{ratio('cli', 'fit')} | {ratio('fit', 'torch')} |"
        )
    return "\n".join(rows) + "\n\n" + "\n".join(ratios)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="Timed epochs (after one more that compiles). Default: 5.",
    )
    parser.add_argument(
        "--levers",
        action="store_true",
        help="Also time fit with Keras' own step functions, with 16 steps "
        "per call, with one inter-op or one intra-op thread, on one and on two "
        "logical CPU devices (MirroredStrategy) and in mixed bfloat16.",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs/results/train_throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.settings[0], args.epochs)))
        return
    paths = [p for p in args.paths if p != "torch" or torch_available()]
    if len(paths) < len(args.paths):
        print("torch is not installed: no PyTorch rows (pip install torch==2.13.0).")
    paths += list(LEVERS) if args.levers else []
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for setting in args.settings:
            results[setting] = {}
            for path in paths:
                if path == "cli":
                    raw = run_cli(setting, args.epochs, Path(workdir))
                else:
                    raw = run_worker(setting, path, args.epochs)
                results[setting][path] = {**summary(raw), "raw": raw}
                print(
                    f"{setting} {path}: {results[setting][path]['median']:,.0f} examples/s",
                    flush=True,
                )
    report = {
        "machine": machine(),
        "epochs": args.epochs,
        "learning_rate": LEARNING_RATE,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, args.output)
    print(json.dumps(report["machine"]))
    print(
        table(
            {
                s: {p: {k: v for k, v in r.items() if k != "raw"} for p, r in paths_.items()}
                for s, paths_ in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
