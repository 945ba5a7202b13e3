"""Where `VAE.fit`'s time goes: a TensorBoard profile of one epoch, and its top ops.

    python benchmarks/profile_fit.py [--setting kingma] [--logdir /tmp/tfvae-profile]

Trains one epoch of a `train_throughput.py` setting with `compile()`'s defaults
(after one that compiles), under `tf.profiler`, and writes the profile to
`--logdir` (open it with TensorBoard's Profile tab). With `xprof` installed
(`pip install xprof`) it also prints how the XLA ops of the steps divide
their time: matrix products, the non-finite guard's checks, fused elementwise
work, the rest (Markdown).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
from pathlib import Path

import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import SETTINGS, compiled_vae, random_data  # noqa: E402


def profile_one_epoch(setting: str, logdir: str) -> None:
    batch = SETTINGS[setting][1]
    model = compiled_vae(setting)
    x = random_data(setting)
    model.fit(x, batch_size=batch, epochs=1, verbose=0)  # Compiles.
    tf.profiler.experimental.start(logdir)
    model.fit(x, batch_size=batch, epochs=1, verbose=0)
    tf.profiler.experimental.stop()


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
    return {name: time for name, time in total.items()
            if count[name] >= steps and count[name] % steps == 0
            and not FRAMEWORK.match(str(name))}


FRAMEWORK = re.compile(r"(Thread|Thunk|Executor|Eager|Kernel|TFE|Iterator|run$|Cpu|Block)")


def group(name: str) -> str:
    """What an XLA op of the step is: the matrix products, the non-finite guard's
    checks, or the fused elementwise work (activations, likelihood, Adam's updates)."""
    if "MatMul" in name or name.startswith("dot"):
        return "matrix products"
    if "finite" in name or "reduce" in name:
        return "is-finite checks and reductions"
    if "fusion" in name:
        return "fused elementwise (activations, likelihood, KL, Adam with the guard's selects)"
    return "other (gathers, copies)"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=SETTINGS, default="kingma")
    parser.add_argument("--logdir", default="/tmp/tfvae-profile")
    args = parser.parse_args()
    profile_one_epoch(args.setting, args.logdir)
    print(f"profile written to {args.logdir} (tensorboard --logdir {args.logdir})")
    _, batch, _, _, n = SETTINGS[args.setting]
    try:
        ops = step_ops(args.logdir, n // batch)
    except ImportError:
        print("pip install xprof to print where the step's time went.")
        return
    groups = collections.Counter()
    for name, time in ops.items():
        groups[group(name)] += time
    total = sum(groups.values()) or 1.0
    print(f"| XLA ops of {n // batch} steps | ms | share |\n|---|---|---|")
    for name, time in groups.most_common():
        print(f"| {name} | {time / 1e3:,.0f} | {time / total:.2f} |")

if __name__ == "__main__":
    main()
