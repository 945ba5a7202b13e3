"""Seeds: every random stream of tfvae, derived from one integer.

A run is reproducible, and a resumed run is the same run, only if each draw is
a function of saved state. So no draw depends on how many draws came before in
the process: the noise of training step t is a function of (seed, t), with t
the optimizer's iteration count (saved in every checkpoint); evaluation's noise
is a function of (seed, batch index within the pass), so `evaluate()` gives the
same answer every time and validation never shifts the training noise; the
data order and the dynamic binarization of epoch e are functions of (seed, e).

Each purpose draws from its own stream (`STREAMS`), so e.g. a validation pass
and a training step never share noise. Seeds are stateless `[2]` int32 tensors,
what TFP's samplers and `tf.random.stateless_*` take.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

STREAMS = {"train": 1, "evaluate": 2, "draw": 3, "data_order": 4, "binarization": 5}


def child_seed(seed: int | None, index: int) -> int | None:
    """A distinct, reproducible integer seed for the `index`-th part of a seeded whole.

    Seeds are handed down explicitly instead of through TF's global seed, so
    building a model never changes the randomness of anything else.
    """
    return None if seed is None else (seed * 1_000_003 + index + 1) % 2**31


def fresh_seed() -> int:
    """A random integer seed, for objects created without one (then saved with them)."""
    return int(np.random.default_rng().integers(2**31))


def stateless(seed: int) -> tf.Tensor:
    """The `[2]` int32 stateless seed of a Python int (any size)."""
    return tf.constant([seed // 2**31 % 2**31, seed % 2**31], tf.int32)


def stream_seed(seed: int, stream: str, *counters) -> tf.Tensor:
    """The `[2]` int32 seed of `stream` at `counters` (e.g. a step or an epoch).

    Args:
        seed: The model's or the run's integer seed.
        stream: A key of `STREAMS`.
        *counters: Integers or int scalar tensors (int32/int64), folded in in order.
    """
    pair = tf.constant([STREAMS[stream], seed % 2**31], tf.int32)
    for counter in counters:
        # fold_in takes int32 data: a count beyond 2**31 steps wraps, harmlessly.
        pair = tf.random.experimental.stateless_fold_in(pair, tf.cast(counter, tf.int32))
    return pair
