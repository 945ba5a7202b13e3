"""Benchmark the export of a run: `python benchmarks/export_benchmark.py RUN_DIR`.

Exports RUN_DIR (all four variants, into a temporary folder: the run's own
export/ is left alone), then prints a Markdown table: size of each `.tflite`,
its parity with the Keras model, its conversion time, and the latency per
sample of its `sample_from_noise` signature through the LiteRT signature
runner at batch 1 and batch 64 (median over repeats, after warm-up).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per batch size")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT CPU threads")
    args = parser.parse_args(argv)
    from tfvae import endpoints, export

    with tempfile.TemporaryDirectory() as folder:
        export_dir = Path(folder) / "export"
        start = time.perf_counter()
        description = export.export_run(
            args.run_dir, quantizations=endpoints.QUANTIZATIONS, export_dir=export_dir
        )
        export_seconds = time.perf_counter() - start
        calibration = export.calibration_data(export.load_run(args.run_dir)[0], seed=0)
        rows = [
            benchmark_variant(export_dir, name, description, calibration, args)
            for name in description["tflite"]
        ]
    print(
        f"{args.run_dir}: latent {description['latent_dim']}, image "
        f"{description['image_shape']}, {description['likelihood']} likelihood. "
        f"Export (SavedModel, 4 conversions, parity checks): {export_seconds:.1f} s. "
        f"Latency: sample_from_noise, {args.threads} thread(s), median of "
        f"{args.repeats} calls.\n"
    )
    print(markdown_table(rows))
    return 0


def benchmark_variant(export_dir: Path, name: str, description: dict, calibration, args) -> dict:
    """Size, parity, conversion time and latencies of one `.tflite`."""
    from tfvae import endpoints, export

    info, parity = description["tflite"][name], description["parity"][name]
    start = time.perf_counter()
    export.convert_decoder(
        export_dir / endpoints.SAVED_MODEL_DIR, info["quantization"], calibration
    )
    convert_seconds = time.perf_counter() - start
    return {
        "variant": info["quantization"],
        "KiB": info["bytes"] / 1024,
        # Of E[x|z] from the Keras model's; no "|" in headers: it splits Markdown cells.
        "mean abs diff": parity["mean_abs_diff"],
        "max abs diff": parity["max_abs_diff"],
        "|d log-lik| (nats/pixel)": parity["log_likelihood_abs_change_per_pixel"],
        "convert (s)": convert_seconds,
        **{
            f"us/sample, batch {batch}": latency(export_dir / name, batch, args)
            for batch in (1, 64)
        },
    }


def latency(path: Path, batch: int, args) -> float:
    """Median microseconds per sample of `sample_from_noise` at `batch`."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=args.threads).get_signature_runner(
        "sample_from_noise"
    )
    rng = np.random.default_rng(0)
    inputs = {
        name: rng.random((batch, *detail["shape_signature"][1:]), np.float32)
        for name, detail in runner.get_input_details().items()
    }
    for _ in range(10):  # Warm-up: the first calls allocate and pack weights.
        runner(**inputs)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        runner(**inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch * 1e6


def markdown_table(rows: list[dict]) -> str:
    def cell(value):
        if isinstance(value, str):
            return value
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2g}"

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
