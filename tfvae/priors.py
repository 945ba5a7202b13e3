"""Priors p(z) over the latent code.

The default prior of Kingma & Welling (2014) is the isotropic standard normal
N(0, I). It is built on demand to match the posterior's event shape and dtype,
so a VAE never needs to be told its latent size.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def standard_normal(event_shape: Sequence[int], dtype=tf.float32) -> tfd.Distribution:
    """N(0, I) with batch shape `[]` and event shape `event_shape`."""
    loc = tf.zeros(event_shape, dtype=dtype)
    return tfd.Independent(tfd.Normal(loc=loc, scale=tf.ones_like(loc)),
                           reinterpreted_batch_ndims=len(event_shape))
