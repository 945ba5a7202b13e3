"""Where the training step's time goes: TensorBoard profiles of `VAE.fit` and of the
hand-written XLA loop, one epoch each, and how their XLA ops divide the time.

    python benchmarks/profile_fit.py [--settings kingma burda20 ...] [--paths fit xla]
                                     [--logdir /tmp/tfvae-profile]

For each `train_throughput.py` setting and path, trains one epoch that compiles,
then one under `tf.profiler`, written to `<logdir>/<setting>-<path>` (open it with
TensorBoard's Profile tab). `fit` is `VAE.fit` on random arrays with
`compile()`'s defaults; `xla` is `references.XLALoop`, the same network and bound
in raw TensorFlow. With `xprof` installed (`pip install xprof`) it prints, per
step, the wall time and the thread time of the step's XLA ops in four groups:
matrix products, the non-finite guard's checks and other reductions, fused
elementwise work, the rest (Markdown). Thread time is summed over the threads
XLA runs on, so a group can exceed the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
import time
from pathlib import Path

import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from references import XLALoop  # noqa: E402
from train_throughput import DESCRIPTIONS, SETTINGS, compiled_vae, random_data  # noqa: E402

GROUPS = (
    "matrix products",
    "is-finite checks and reductions",
    "fused elementwise",
    "other (gathers, copies, RNG)",
)


def profile_one_epoch(setting: str, path: str, logdir: str) -> tuple[float, int]:
    """Profiles one epoch of `path` after one that compiles; (wall seconds, steps)."""
    network, batch, _, _, n = SETTINGS[setting]
    x = random_data(setting)
    if path == "fit":
        model = compiled_vae(setting)

        def epoch():
            model.fit(x, batch_size=batch, epochs=1, verbose=0)

        steps = n // batch
    else:
        loop = XLALoop(network, x.reshape(len(x), -1), batch)

        def epoch():
            loop.epoch(0)

        steps = loop.examples_per_epoch() // batch
    epoch()  # Compiles.
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    epoch()
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    return seconds, steps


def step_ops(logdir: str, steps: int) -> dict[str, float]:
    """Microseconds per XLA op of the profiled epoch, from the trace: the events that
    ran a multiple of `steps` times (once or more per step), framework events left out."""
    from xprof.convert import raw_to_tool_data

    paths = sorted(glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"))[-1:]
    data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "trace_viewer@", {})
    events = [e for e in json.loads(data)["traceEvents"] if e.get("ph") == "X"]
    total, count = collections.Counter(), collections.Counter()
    for event in events:
        total[event["name"]] += event.get("dur", 0)
        count[event["name"]] += 1
    return {
        name: time
        for name, time in total.items()
        if count[name] >= steps and count[name] % steps == 0 and not FRAMEWORK.match(str(name))
    }


FRAMEWORK = re.compile(r"(Thread|Thunk|Executor|Eager|Kernel|TFE|Iterator|run$|Cpu|Block)")


def group(name: str) -> str:
    """Which of `GROUPS` an XLA op of the step belongs to."""
    if "MatMul" in name or name.startswith("dot"):
        return GROUPS[0]
    if "finite" in name or "reduce" in name:
        return GROUPS[1]
    if "fusion" in name:
        return GROUPS[2]
    return GROUPS[3]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--paths", nargs="+", choices=("fit", "xla"), default=["fit", "xla"])
    parser.add_argument("--logdir", default="/tmp/tfvae-profile")
    args = parser.parse_args()
    rows = []
    for setting in args.settings:
        for path in args.paths:
            logdir = f"{args.logdir}/{setting}-{path}"
            seconds, steps = profile_one_epoch(setting, path, logdir)
            print(f"profile written to {logdir} (tensorboard --logdir {logdir})", flush=True)
            rows.append((setting, path, seconds, steps, logdir))
    try:
        import xprof  # noqa: F401  (the summary needs it)
    except ImportError:
        print("pip install xprof to print where the step's time went.")
        return
    print(
        "\n| setting | path | wall ms per step | "
        + " | ".join(f"{name}, thread ms" for name in GROUPS)
        + " |"
    )
    print("|---|---|---:|" + "---:|" * len(GROUPS))
    for setting, path, seconds, steps, logdir in rows:
        groups = collections.Counter()
        for name, microseconds in step_ops(logdir, steps).items():
            groups[group(name)] += microseconds / 1e3 / steps
        print(
            f"| {DESCRIPTIONS[setting]} | {path} | {seconds * 1e3 / steps:.2f} | "
            + " | ".join(f"{groups[name]:.2f}" for name in GROUPS)
            + " |"
        )


if __name__ == "__main__":
    main()
