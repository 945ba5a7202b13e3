"""The importance-sampled log-likelihood against its own decoder products, in one run.

    python benchmarks/log_likelihood_speed.py [--num-examples 200] [--num-samples 5000]
        [--jit-compile both|on|off] [--profile /tmp/tfvae-likelihood-profile]

`tfvae.evaluation.log_likelihood` on random binary images with Kingma &
Welling's MNIST network (784-500-20, Bernoulli; untrained: the cost does not
depend on the weights), k = 5000, its default batch and chunk sizes. Its rate
is counted in the FLOPs of the decoder's matrix products (2 x inputs x outputs
per row and layer, k rows per image). "Alone" is the same products, the same
rows in the same chunks, as plain matmuls of the decoder's kernels in a
compiled function (the faster of a graph and XLA): what the step would cost if
nothing but the products ran. The target is log_likelihood at 70% of that.
`--profile DIR` also profiles `log_likelihood` on 20 of the images (graph, as by
default) into DIR and, with `xprof` installed, prints the thread time of its
TensorFlow op types (Markdown).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import time

import numpy as np
import tensorflow as tf

import tfvae
from tfvae import evaluation


def model_and_data(num_examples: int, seed: int = 0):
    config = tfvae.ModelConfig(
        latent_dim=20, hidden_units=(500,), event_shape=(28, 28), weight_decay=0.0
    )
    model = tfvae.build_vae(config, seed=seed)
    x = np.random.default_rng(seed).uniform(size=(num_examples, 28, 28)) > 0.5
    model.build((None, 28, 28))
    return model, x.astype(np.float32)


def decoder_kernels(model) -> list[tf.Variable]:
    return [w for w in model.decoder.trainable_weights if len(w.shape) == 2]


def flops_per_row(kernels) -> int:
    return sum(2 * int(k.shape[0]) * int(k.shape[1]) for k in kernels)


def products_alone(kernels, rows: int, chunk_rows: int, jit_compile: bool) -> float:
    """Seconds for `rows` decoder rows of matmuls alone, `chunk_rows` per call."""

    @tf.function(jit_compile=jit_compile)
    def products(h):
        for kernel in kernels:
            h = tf.matmul(h, kernel)
        return tf.reduce_sum(h)  # One scalar back, as the step returns a small array.

    z = tf.random.normal([chunk_rows, int(kernels[0].shape[0])])
    products(z).numpy()  # Compiles.
    start = time.perf_counter()
    for _ in range(rows // chunk_rows):
        products(z).numpy()
    return time.perf_counter() - start


def timed_log_likelihood(model, x, num_samples: int, jit_compile: bool) -> float:
    evaluation.log_likelihood(model, x[:100], 200, jit_compile=jit_compile)  # Compiles.
    start = time.perf_counter()
    evaluation.log_likelihood(model, x, num_samples, jit_compile=jit_compile)
    return time.perf_counter() - start


def profile_op_types(model, x, num_samples: int, logdir: str) -> dict[str, float]:
    """Thread milliseconds per TensorFlow op type of one `log_likelihood` call."""
    evaluation.log_likelihood(model, x, num_samples)  # Traces.
    tf.profiler.experimental.start(logdir)
    evaluation.log_likelihood(model, x, num_samples)
    tf.profiler.experimental.stop()
    from xprof.convert import raw_to_tool_data

    paths = sorted(glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"))[-1:]
    data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "trace_viewer@", {})
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in json.loads(data)["traceEvents"]
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    total = collections.Counter()
    for event in json.loads(data)["traceEvents"]:
        # Kernels run on the executor's compute threads, named by their op type;
        # the executor's own events there have "::" in their names.
        name = str(event.get("name"))
        if (
            event.get("ph") == "X"
            and "Compute" in threads.get((event["pid"], event["tid"]), "")
            and "::" not in name
            and name not in FRAMEWORK_EVENTS
        ):
            total[name] += event.get("dur", 0) / 1e3
    return dict(total)


FRAMEWORK_EVENTS = {"ParallelFor"}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-examples", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--jit-compile", choices=("both", "on", "off"), default="both")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="Also profile log_likelihood on 20 "
        "images into DIR and print its op types' thread time.",
    )
    args = parser.parse_args()
    model, x = model_and_data(args.num_examples)
    kernels = decoder_kernels(model)
    rows = args.num_examples * args.num_samples
    gflop = rows * flops_per_row(kernels) / 1e9
    chunk_rows = 100 * 100  # log_likelihood's batch_size x sample_chunk.
    alone = min(products_alone(kernels, rows, chunk_rows, jit) for jit in (False, True))
    print(
        f"{args.num_examples} images x k = {args.num_samples}: {gflop:,.0f} GFLOP of "
        f"decoder products"
    )
    print("| what | seconds | decoder GFLOP/s | share of the products alone |\n|---|---|---|---|")
    print(f"| products alone | {alone:.1f} | {gflop / alone:,.0f} | 1.00 |")
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.jit_compile]
    for jit in modes:
        seconds = timed_log_likelihood(model, x, args.num_samples, jit)
        print(
            f"| log_likelihood, jit_compile={jit} | {seconds:.1f} | {gflop / seconds:,.0f} "
            f"| {alone / seconds:.2f} |",
            flush=True,
        )
    if args.profile:
        ops = profile_op_types(model, x[:20], args.num_samples, args.profile)
        whole = sum(ops.values()) or 1.0
        print(
            f"\nprofile written to {args.profile}\n| op type | thread ms | share |\n|---|---|---|"
        )
        for name, ms in sorted(ops.items(), key=lambda item: -item[1])[:12]:
            print(f"| {name} | {ms:,.0f} | {ms / whole:.2f} |")


if __name__ == "__main__":
    main()
