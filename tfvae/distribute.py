"""Training on more than one device: TensorFlow's `tf.distribute` strategies.

`make_strategy` gives the strategy a run names (`TrainConfig.strategy`):

- `default`: one device, no strategy (TensorFlow's default);
- `mirrored`: `tf.distribute.MirroredStrategy` over all local GPUs, or, on a
  machine without one, over `cpu_devices` logical CPU devices (for tests and
  for trying the setup on a laptop: the cores are shared, so nothing is gained);
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, one process per
  host, configured by the `TF_CONFIG` environment variable.

What a custom `train_step` must do itself under a strategy (Keras does it for
its own losses only): the optimizer sums gradients over the replicas, so each
replica's mean loss is divided by `num_replicas_in_sync` (`replica_share`);
a replica's noise must differ from the others' (`replica_seed`); and a step is
applied or skipped by all replicas alike (`all_replicas`), or the collective
all-reduce of the gradients would wait for a replica that skipped it.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfvae.config import STRATEGIES


def make_strategy(name: str = "default", cpu_devices: int | None = None) -> tf.distribute.Strategy:
    """The strategy `name` (one of `STRATEGIES`).

    Call it before anything else runs TensorFlow ops: logical CPU devices and
    the collective ops of `multi_worker` can only be set up before the runtime
    starts.

    Args:
        name: `default`, `mirrored` or `multi_worker`.
        cpu_devices: For `mirrored` on a machine without GPUs: split the CPU
            into this many logical devices, one replica each (`None`: one
            replica on the CPU). Ignored when there are GPUs, and by
            `multi_worker` (a worker's replicas are its GPUs, or its CPU).

    Raises:
        ValueError: An unknown name, `cpu_devices` below 1, or logical devices
            asked for after TensorFlow already started with fewer.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {STRATEGIES}.")
    if cpu_devices is not None and cpu_devices < 1:
        raise ValueError(f"cpu_devices={cpu_devices}: give a positive number of devices.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":  # One replica per local GPU, or the CPU.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    if cpu_devices:
        _split_cpu(cpu_devices)
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices[: cpu_devices or 1])


def _split_cpu(count: int) -> None:
    """Makes the first physical CPU `count` logical devices (before the runtime starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured and len(configured) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:  # The runtime has started: devices are fixed.
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= count:
            return
        raise ValueError(
            f"{count} logical CPU devices were asked for, but TensorFlow has already "
            f"started with {have}. Create the strategy first (a fresh process, or "
            "tfvae.distribute.make_strategy(...) before any other TensorFlow call)."
        ) from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, but under `multi_worker`,
    where only the chief does (`is_chief_task` of `TF_CONFIG`)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return is_chief_task(json.loads(os.environ.get("TF_CONFIG") or "{}"))


def is_chief_task(tf_config: dict) -> bool:
    """Whether the task of a `TF_CONFIG` dict is the chief: the task `chief`, or
    worker 0 of a cluster without one; a config without a task is a single worker."""
    task = tf_config.get("task", {})
    if task.get("type") in (None, "chief"):
        return True
    has_chief = bool(tf_config.get("cluster", {}).get("chief"))
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def num_replicas() -> int:
    """Replicas that train in sync in the current context (1 without a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is not None:
        return context.num_replicas_in_sync
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """`loss / num_replicas_in_sync`: this replica's share of a mean over the global
    batch, since the optimizer sums the replicas' gradients."""
    replicas = num_replicas()
    return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """`seed` `[2]` int32 with the replica's index folded in, so that replicas draw
    different noise; unchanged with one replica (so one device's runs keep their seeds)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    return tf.random.experimental.stateless_fold_in(
        seed, tf.cast(context.replica_id_in_sync_group, tf.int32)
    )


def all_replicas(flag: tf.Tensor) -> tf.Tensor:
    """A scalar bool that is True on every replica iff `flag` is True on all of them."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return flag
    failures = context.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(flag), tf.float32)
    )
    return tf.equal(failures, 0.0)


def apply_if(condition: tf.Tensor, apply, *args) -> None:
    """Runs `apply(*args)` (which applies gradients) where `condition` holds, on every
    replica alike (`condition` must be the same on all, see `all_replicas`).

    Under a strategy whose optimizer step needs a cross-replica merge
    (`MirroredStrategy`), a `tf.cond` around the step inside a replica is not
    allowed; the condition is then taken in the cross-replica context, as Keras'
    `LossScaleOptimizer` does.
    """
    context = tf.distribute.get_replica_context()
    # A MirroredStrategy merges even with one replica; the default strategy never does.
    if (
        context is None
        or not tf.distribute.has_strategy()
        or tf.__internal__.distribute.strategy_supports_no_merge_call()
    ):
        tf.cond(condition, lambda: _applied(apply, *args), lambda: tf.constant(False))
        return

    def cross_replica(distribution, condition, *args):
        first = distribution.experimental_local_results(condition)[0]
        tf.cond(
            first,
            lambda: _applied(distribution.extended.call_for_each_replica, apply, args),
            lambda: tf.constant(False),
        )

    context.merge_call(cross_replica, args=(condition, *args))


def _applied(function, *args) -> tf.Tensor:
    function(*args)
    return tf.constant(True)
