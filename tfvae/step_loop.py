"""Several train or test steps in one XLA call: `OwnLossModel`'s step functions.

Keras' TensorFlow trainer runs `steps_per_execution` = K steps as a graph
`tf.while_loop` that fetches each batch from the iterator and launches the
XLA-compiled step once per step. On this project's 2-core CPU that per-step
launch and fetch cost the MLP VAEs 30-50% of their throughput (see
benchmarks/train_throughput.py). Here one call

1. fetches up to K batches from the iterator (a graph function, not compiled:
   iterators cannot be),
2. stacks them into a block `[K, *batch]`,
3. runs all the steps inside one XLA `tf.while_loop`, step i taking batch i
   of the block by a gather on its leading axis (a dynamic slice of a flat
   array in the loop ran 30x slower on this CPU).

Steps whose batches differ in shape (the short last batch of arrays) run one
by one through the compiled single step. The step function, its seeds, metrics
and optimizer updates are the same in both paths, so K changes how often Keras
runs callbacks, never what is computed (up to XLA's rounding).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

Logs = dict


def make_step_function(step: Callable, steps_per_execution: int) -> Callable:
    """Keras' `train_function`/`test_function` protocol for `step`, K steps per call.

    Args:
        step: `train_step` or `test_step`: one batch (a tensor or a tuple of
            them) to a dict of scalar tensors.
        steps_per_execution: K, the most steps one call runs.

    Returns:
        function(iterator) -> logs of the last step run; raises StopIteration
        when the iterator yields nothing. A `tf.data.Iterator` takes the
        compiled loop; any other iterable of batches (Keras' `train_on_batch`)
        runs the compiled single step per batch.
    """
    one_step = tf.function(step, jit_compile=True, reduce_retracing=True)
    several_steps = tf.function(_several_steps(step), jit_compile=True,
                                reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def run(iterator):
        optionals = [iterator.get_next_as_optional() for _ in range(steps_per_execution)]
        present = [optional.has_value() for optional in optionals]
        count = tf.add_n([tf.cast(p, tf.int32) for p in present])
        # A missing slot repeats the first batch: the loop never reaches it, and
        # the block keeps one shape. (No batch at all: empty tensors, count 0.)
        first = tf.cond(present[0], optionals[0].get_value,
                        lambda: _empty(optionals[0].element_spec))
        batches = [first] + [tf.cond(p, optional.get_value, lambda: first)
                             for p, optional in zip(present[1:], optionals[1:])]
        initial = _zeros_like_outputs(one_step, first)
        uniform = tf.reduce_all(tf.stack([_same_shapes(b, first) for b in batches[1:]]
                                         or [tf.constant(True)]))
        logs = tf.cond(
            tf.logical_and(count > 0, uniform),  # No empty block to compile.
            lambda: several_steps(_stack(batches), count, initial),
            lambda: _one_by_one(one_step, batches, present, initial))
        return count, logs

    def function(iterator):
        if not isinstance(iterator, tf.data.Iterator):
            logs = None
            for _, batch in zip(range(steps_per_execution), iterator):
                logs = one_step(batch)
            if logs is None:
                raise StopIteration
            return logs
        count, logs = run(iterator)
        if int(count) == 0:
            raise StopIteration
        return logs

    return function


def _several_steps(step: Callable) -> Callable:
    def several_steps(block, count, initial: Logs) -> Logs:
        """Runs `step` on batches 0..count-1 of `block` `[K, *batch]`; returns the
        last step's logs."""
        def body(i, logs):
            return i + 1, step(tf.nest.map_structure(lambda b: tf.gather(b, i), block))
        return tf.while_loop(lambda i, _: i < count, body, [tf.constant(0), initial])[1]
    return several_steps


def _one_by_one(one_step: Callable, batches: list, present: list, initial: Logs) -> Logs:
    logs = initial
    for batch, p in zip(batches, present):
        logs = tf.cond(p, lambda batch=batch: one_step(batch), lambda logs=logs: logs)
    return logs


def _zeros_like_outputs(one_step: Callable, batch) -> Logs:
    """Zeros in the structure of `one_step(batch)`'s logs (traced, not run)."""
    outputs = one_step.get_concrete_function(batch).structured_outputs
    return tf.nest.map_structure(
        lambda t: tf.zeros([d or 0 for d in t.shape.as_list()], t.dtype), outputs)


def _empty(spec):
    return tf.nest.map_structure(
        lambda s: tf.zeros([d or 0 for d in s.shape.as_list()], s.dtype), spec)


def _stack(batches: list):
    return tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)


def _same_shapes(batch, reference) -> tf.Tensor:
    """Whether every tensor of `batch` has the shape of its peer in `reference`."""
    pairs = zip(tf.nest.flatten(batch), tf.nest.flatten(reference))
    return tf.reduce_all(tf.stack([
        tf.reduce_all(tf.equal(tf.shape(a), tf.shape(b))) for a, b in pairs]))
