"""Time a sample in the browser (LiteRT.js) against LiteRT in Python, same files.

    python benchmarks/web_sampling_speed.py [--export-dir saved_models/frey_face-latent2/export]
        [--batch 64] [--repeats 20] [--output docs/results/web_sampling_speed.json]

For each decoder_*.tflite of the export: the page (web/, written beside a copy of
the export by `tfvae.web_page.write_page`) in headless Chromium runs
`sample_from_noise` on `--batch` examples, one run each (LiteRT.js 2.5 cannot
resize inputs; see web/sampler.js), and reports the fastest of `--repeats` grids
in milliseconds a sample; ai_edge_litert does the same (one example a run) and
also one run of the whole batch. Also: the page's load time (navigation to all
drawn) and the files' sizes. Needs Chromium, ChromeDriver, selenium and
web/node_modules (`cd web && npm ci`); run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from ai_edge_litert.interpreter import Interpreter

from tfvae import tflite_sampler, web_page

REPO = Path(__file__).resolve().parents[1]


def python_ms_per_sample(model: Path, batch: int, repeats: int) -> dict[str, float]:
    """Fastest ms a sample in ai_edge_litert: one example a run, and one run of `batch`."""
    runner = Interpreter(model_path=str(model)).get_signature_runner("sample_from_noise")
    inputs = tflite_sampler.noise(runner.get_input_details(), batch, seed=0)
    one, whole = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in range(batch):
            runner(**{name: value[b : b + 1] for name, value in inputs.items()})
        one.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        runner(**inputs)
        whole.append((time.perf_counter() - start) / batch)
    return {"one_per_run": 1000 * min(one), "batch_per_run": 1000 * min(whole)}


def browser_ms_per_sample(export_dir: Path, models: list[str], batch: int, repeats: int) -> dict:
    """Per model: fastest ms a sample in the page, and the page's load time."""
    results = {}
    with web_page.serve(export_dir) as url, web_page.chromium() as driver:
        version = driver.capabilities.get("browserVersion")
        for model in models:
            start = time.perf_counter()
            web_page.open_page(driver, f"{url}/web/index.html?model=../{model}")
            load = time.perf_counter() - start
            ms = web_page.call(driver, "page.timeSampling(args[0], args[1])", batch, repeats)
            results[model] = {"one_per_run": ms, "page_load_seconds": load}
    return {"chromium": version, "models": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--export-dir", type=Path, default=REPO / "saved_models/frey_face-latent2/export"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None, help="JSON of the figures")
    args = parser.parse_args()
    models = sorted(p.name for p in args.export_dir.glob("decoder_*.tflite"))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for name in (*models, "export.json"):
            shutil.copy2(args.export_dir / name, copy / name)
        page = web_page.write_page(copy)
        runtime = {
            name: (copy / "web" / "node_modules" / name).stat().st_size
            for name in web_page.RUNTIME_FILES
            if page["runtime"] == "local"
        }
        browser = browser_ms_per_sample(copy, models, args.batch, args.repeats)
    rows = []
    for model in models:
        python = python_ms_per_sample(args.export_dir / model, args.batch, args.repeats)
        rows.append(
            {
                "model": model,
                "bytes": (args.export_dir / model).stat().st_size,
                "browser_ms_per_sample": browser["models"][model]["one_per_run"],
                "page_load_seconds": browser["models"][model]["page_load_seconds"],
                "python_ms_per_sample_one_per_run": python["one_per_run"],
                "python_ms_per_sample_batched": python["batch_per_run"],
            }
        )
    report = {
        "export_dir": str(
            args.export_dir.relative_to(REPO)
            if args.export_dir.is_relative_to(REPO)
            else args.export_dir
        ),
        "batch": args.batch,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
        "chromium": browser["chromium"],
        "litertjs": web_page.litertjs_versions(),
        "runtime_bytes": runtime,
        "rows": rows,
    }
    print(
        "| decoder | size | browser (LiteRT.js), ms a sample | Python LiteRT, one a run | "
        f"Python LiteRT, {args.batch} a run | page load |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['bytes'] / 1024:.0f} KiB | "
            f"{row['browser_ms_per_sample']:.3f} | {row['python_ms_per_sample_one_per_run']:.3f} | "
            f"{row['python_ms_per_sample_batched']:.4f} | {row['page_load_seconds']:.2f} s |"
        )
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
