"""tf.data pipelines: arrays in memory to minibatches for `fit()`.

`make_pipeline` batches an array in order (test data). `EpochBatches` is the
training pipeline: in epoch e, the order of the examples and the dynamic
binarization x ~ Bernoulli(intensity) are functions of (seed, e) alone, never
of how many epochs this process has iterated. So a run resumed at epoch e sees
exactly the batches the uninterrupted run saw (`tfvae.seeds`).

The pipeline reads its epoch from a variable when an iteration starts, then
advances it: a plain `fit(pipeline.dataset, epochs=...)` walks through epochs
0, 1, 2, ...; `pipeline.callback()` pins the variable to Keras' epoch index,
which a resumed `fit(initial_epoch=e)` starts at e.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfvae import seeds
from tfvae.config import BINARIZATIONS


def make_pipeline(
    x: np.ndarray,
    batch_size: int,
    *,
    drop_remainder: bool = False,
    labels: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches x `[N, *event]` in order into float32 `[batch_size, *event]`, or into
    (x, labels) pairs, labels int32 `[batch_size]`, when `labels` `[N]` are given."""
    _check_batch_size(len(x), batch_size, drop_remainder)
    x = np.asarray(x, np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        x if labels is None else (x, np.asarray(labels, np.int32))
    )
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


class EpochBatches:
    """Shuffled training batches whose epoch e is a function of (seed, e).

    Args:
        x: `[N, *event]` intensities in [0, 1].
        batch_size: Minibatch size M; the last N mod M examples of each
            epoch's order are dropped, so every batch has M examples.
        binarization: `dynamic` draws x ~ Bernoulli(intensity) afresh every
            epoch; `none` keeps the intensities.
        seed: Seeds order and binarization.
        labels: `[N]` int labels: batches are then (x, labels `[batch_size]`)
            pairs, the labels in the same order (a conditional VAE's input).

    Attributes:
        dataset: float32 batches `[batch_size, *event]` (or pairs with labels),
            `steps_per_epoch` per iteration.
        epoch: int64 variable: the epoch the next iteration yields.
        steps_per_epoch: N // M.
    """

    def __init__(
        self,
        x: np.ndarray,
        batch_size: int,
        *,
        binarization: str = "none",
        seed: int = 0,
        labels: np.ndarray | None = None,
    ):
        if binarization not in BINARIZATIONS:
            raise ValueError(f"binarization={binarization!r} is not one of {BINARIZATIONS}.")
        _check_batch_size(len(x), batch_size, drop_remainder=True)
        self.num_examples, self.batch_size = len(x), batch_size
        self.steps_per_epoch = len(x) // batch_size
        self.binarization, self.seed = binarization, seed
        # A variable, not a constant captured by the dataset function: gathers
        # read it in place instead of embedding N images in the graph.
        self.x = tf.Variable(np.asarray(x, np.float32), trainable=False, name="x")
        self.labels = None if labels is None else tf.constant(np.asarray(labels, np.int32))
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # One map call makes a whole epoch, [steps, M, *event], then unbatch
        # yields its batches: about 2x faster per epoch than a dataset of
        # batches built anew for each epoch.
        self.dataset = (
            tf.data.Dataset.range(1)
            .map(self._next_epoch)
            .unbatch()
            # Known length: Keras' progress bar and epoch logic need it.
            .apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch))
            .prefetch(tf.data.AUTOTUNE)
        )

    def _next_epoch(self, _):
        """The batches `[steps, M, *event]` of the epoch in `self.epoch`, which
        advances; with labels, (batches, labels `[steps, M]`)."""
        epoch = self.epoch.assign_add(1) - 1
        if self.labels is None:
            return self.batches_of(epoch)
        return self.batches_of(epoch), tf.gather(self.labels, self._order(epoch))

    def batches_of(self, epoch) -> tf.Tensor:
        """All batches of `epoch` (int64 scalar), `[steps_per_epoch, M, *event]`, in order."""
        x = tf.gather(self.x, self._order(epoch))
        if self.binarization == "none":
            return x
        seed = seeds.stream_seed(self.seed, "binarization", epoch)
        return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) < x, tf.float32)

    def _order(self, epoch) -> tf.Tensor:
        """The example indices of `epoch`'s batches, `[steps_per_epoch, M]`."""
        order = tf.random.experimental.stateless_shuffle(
            tf.range(self.num_examples, dtype=tf.int64),
            seed=seeds.stream_seed(self.seed, "data_order", epoch),
        )
        used = self.steps_per_epoch * self.batch_size
        return tf.reshape(order[:used], [self.steps_per_epoch, self.batch_size])

    def callback(self) -> keras.callbacks.Callback:
        """Sets `epoch` to Keras' epoch index at the start of every epoch of `fit`."""
        return keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs=None: self.epoch.assign(epoch)
        )


def _check_batch_size(num_examples: int, batch_size: int, drop_remainder: bool) -> None:
    if num_examples == 0:
        raise ValueError("The split is empty: there is nothing to batch.")
    if drop_remainder and num_examples < batch_size:
        raise ValueError(
            f"{num_examples} examples are fewer than batch_size={batch_size}: "
            "with drop_remainder the pipeline would yield no batch. Choose "
            f"--batch-size {num_examples} or less."
        )
