"""Tests for tfvae.pipelines: batches, and epochs that are functions of (seed, epoch)."""

import numpy as np
import pytest

from tfvae import pipelines


def epoch(dataset) -> np.ndarray:
    return np.concatenate([batch.numpy() for batch in dataset])


def test_make_pipeline_keeps_order_and_every_example():
    x = np.random.default_rng(0).random((23, 5, 3), dtype=np.float32)
    every = pipelines.make_pipeline(x, 4)
    assert [len(b) for b in every] == [4] * 5 + [3]
    np.testing.assert_array_equal(epoch(every), x)
    kept = pipelines.make_pipeline(x, 4, drop_remainder=True)
    assert kept.element_spec.shape == (4, 5, 3)


def test_each_epoch_is_a_shuffle_of_whole_batches():
    x = np.arange(46, dtype=np.float32).reshape(23, 2)
    batches = pipelines.EpochBatches(x, 5, seed=1)
    assert batches.steps_per_epoch == 4 and batches.dataset.cardinality() == 4
    first, second = epoch(batches.dataset), epoch(batches.dataset)
    for drawn in (first, second):
        assert drawn.shape == (20, 2)
        rows = drawn[:, 0] / 2  # Each row is a distinct original example.
        assert len(set(rows)) == 20 and set(rows) <= set(range(23))
        np.testing.assert_array_equal(drawn[:, 1], drawn[:, 0] + 1)
    assert not np.array_equal(first, second) and not np.array_equal(first, x[:20])


def test_epoch_e_depends_on_seed_and_e_only():
    x = np.random.default_rng(0).random((60, 4), dtype=np.float32)
    walked = pipelines.EpochBatches(x, 10, binarization="dynamic", seed=3)
    epochs = [epoch(walked.dataset) for _ in range(3)]
    jumped = pipelines.EpochBatches(x, 10, binarization="dynamic", seed=3)
    jumped.epoch.assign(2)  # As a run resumed at epoch 2 starts.
    np.testing.assert_array_equal(epoch(jumped.dataset), epochs[2])
    other_seed = pipelines.EpochBatches(x, 10, binarization="dynamic", seed=4)
    assert not np.array_equal(epoch(other_seed.dataset), epochs[0])


def test_callback_pins_the_epoch_to_keras_epoch_index():
    x = np.random.default_rng(0).random((30, 3), dtype=np.float32)
    reference = pipelines.EpochBatches(x, 10, seed=0)
    epochs = [epoch(reference.dataset) for _ in range(6)]
    batches = pipelines.EpochBatches(x, 10, seed=0)
    callback = batches.callback()
    for e in (5, 1, 1):
        callback.on_epoch_begin(e)
        np.testing.assert_array_equal(epoch(batches.dataset), epochs[e])


def test_dynamic_binarization_draws_bernoulli_pixels_afresh():
    x = np.random.default_rng(0).random((300, 7, 6), dtype=np.float32)
    batches = pipelines.EpochBatches(x, 50, binarization="dynamic", seed=3)
    first, second = epoch(batches.dataset), epoch(batches.dataset)
    assert np.unique(first).tolist() == [0, 1]
    # 12,600 Bernoulli draws: their mean is within 5 standard errors (0.0045 each) of x's.
    assert first.mean() == pytest.approx(x.mean(), abs=5 * 0.5 / np.sqrt(first.size))
    assert not np.array_equal(first, second)
    # The same example gets fresh pixels: compare by the order, recovered without binarization.
    grey = pipelines.EpochBatches(x, 50, seed=3)
    order = [int(np.flatnonzero((x == row).all(axis=(1, 2)))[0]) for row in epoch(grey.dataset)]
    # Bernoulli(x): where x > 0.9 the pixel is on with probability > 0.9.
    assert first[x[order] > 0.9].mean() > 0.85 and first[x[order] < 0.1].mean() < 0.15


def test_bad_sizes_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="fewer than batch_size=8.*--batch-size 7"):
        pipelines.EpochBatches(np.zeros((7, 2), np.float32), 8)
    with pytest.raises(ValueError, match="empty"):
        pipelines.make_pipeline(np.zeros((0, 2), np.float32), 8)
    with pytest.raises(ValueError, match="binarization"):
        pipelines.EpochBatches(np.zeros((9, 2), np.float32), 3, binarization="static")
