"""Several train or test steps in one XLA call: `OwnLossModel`'s step functions.

Keras' TensorFlow trainer runs `steps_per_execution` = K steps as a graph
`tf.while_loop` that fetches each batch from the iterator and launches the
XLA-compiled step once per step. On this project's 2-core CPU that per-step
launch and fetch cost the MLP VAEs much of their throughput (the lever rows of
`benchmarks/train_throughput.py --levers`, in the README). Here one call

1. fetches up to K batches from the iterator (a graph function, not compiled:
   iterators cannot be),
2. stacks them into a block `[K, *batch]`,
3. runs all the steps inside one XLA `tf.while_loop`, step i taking batch i
   of the block by a gather on its leading axis (a dynamic slice of a flat
   array in the loop was many times slower on this CPU, in a quick probe).

Steps whose batches differ in shape (the short last batch of arrays) run one
by one through the compiled single step. The step function, its seeds, metrics
and optimizer updates are the same in both paths, so K changes how often Keras
runs callbacks, never what is computed (up to XLA's rounding).
"""

from __future__ import annotations

from collections.abc import Callable

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
    several_steps = tf.function(_several_steps(step), jit_compile=True, reduce_retracing=True)

    # The graph holds loops, not K copies of the fetch: its size, and the time
    # to trace and optimise it, do not grow with K.
    @tf.function(reduce_retracing=True)
    def run(iterator):
        spec = iterator.element_spec
        arrays, count = _fetch(iterator, steps_per_execution)

        def batch(j):
            return tf.nest.pack_sequence_as(spec, [array.read(j) for array in arrays])

        initial = _zeros_like_outputs(one_step, batch(0))

        def as_block():  # [K, *batch]: the slots past `count` repeat batch 0, never run.
            return tf.nest.pack_sequence_as(
                spec, [_padded(array, count, steps_per_execution).stack() for array in arrays]
            )

        logs = tf.cond(
            tf.logical_and(count > 0, _uniform(arrays, count)),  # No empty block to compile.
            lambda: several_steps(as_block(), count, initial),
            lambda: _one_by_one(one_step, batch, count, initial),
        )
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


def _fetch(iterator, steps: int) -> tuple[list[tf.TensorArray], tf.Tensor]:
    """Up to `steps` batches: one TensorArray per tensor of a batch, and their count."""
    specs = tf.nest.flatten(iterator.element_spec)
    arrays = [
        tf.TensorArray(s.dtype, size=steps, infer_shape=False, element_shape=s.shape) for s in specs
    ]

    def body(j, _, arrays):
        optional = iterator.get_next_as_optional()
        present = optional.has_value()
        arrays = tf.cond(
            present,
            lambda: [a.write(j, v) for a, v in zip(arrays, tf.nest.flatten(optional.get_value()))],
            lambda: arrays,
        )
        return j + tf.cast(present, tf.int32), tf.logical_not(present), arrays

    count, _, arrays = tf.while_loop(
        lambda j, exhausted, _: tf.logical_and(j < steps, tf.logical_not(exhausted)),
        body,
        [tf.constant(0), tf.constant(False), arrays],
    )
    return arrays, count


def _uniform(arrays: list[tf.TensorArray], count) -> tf.Tensor:
    """Whether batches 1..count-1 have the shapes of batch 0."""

    def body(j, same):
        return j + 1, tf.logical_and(
            same,
            tf.reduce_all(
                tf.stack(
                    [
                        tf.reduce_all(tf.equal(tf.shape(a.read(j)), tf.shape(a.read(0))))
                        for a in arrays
                    ]
                )
            ),
        )

    return tf.while_loop(lambda j, _: j < count, body, [tf.constant(1), tf.constant(True)])[1]


def _padded(array: tf.TensorArray, count, size: int) -> tf.TensorArray:
    """`array` with slots count..size-1 set to slot 0 (one shape for the block)."""
    return tf.while_loop(
        lambda j, _: j < size, lambda j, a: (j + 1, a.write(j, a.read(0))), [count, array]
    )[1]


def _several_steps(step: Callable) -> Callable:
    def several_steps(block, count, initial: Logs) -> Logs:
        """Runs `step` on batches 0..count-1 of `block` `[K, *batch]`; returns the
        last step's logs."""

        def body(i, logs):
            return i + 1, step(tf.nest.map_structure(lambda b: tf.gather(b, i), block))

        return tf.while_loop(lambda i, _: i < count, body, [tf.constant(0), initial])[1]

    return several_steps


def _one_by_one(one_step: Callable, batch: Callable, count, initial: Logs) -> Logs:
    """Runs the compiled single step on batches 0..count-1 (of any shapes)."""
    return tf.while_loop(
        lambda j, _: j < count, lambda j, _: (j + 1, one_step(batch(j))), [tf.constant(0), initial]
    )[1]


def _zeros_like_outputs(one_step: Callable, batch) -> Logs:
    """Zeros in the structure of `one_step(batch)`'s logs (traced, not run)."""
    outputs = one_step.get_concrete_function(batch).structured_outputs
    return tf.nest.map_structure(
        lambda t: tf.zeros([d or 0 for d in t.shape.as_list()], t.dtype), outputs
    )
