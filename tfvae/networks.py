"""Networks: MLP trunks and the probabilistic networks built from them.

A probabilistic network is a trunk (tensors in, features out) composed with a
head (features in, a `tfp.distributions.Distribution` out: a likelihood from
`tfvae.likelihoods` or a posterior from `tfvae.posteriors`). Kingma & Welling's
encoder q(z|x) and decoders p(x|z) (appendix C) are all one-hidden-layer tanh
MLPs with different heads, so they are one class here, configured by its trunk
and its head; `tfvae.builders` assembles them from a config.

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

from tfvae.seeds import child_seed  # noqa: F401 (re-exported: heads and builders use it)


def dense(units: int, *, activation=None, init_stddev: float = 0.01,
          weight_decay: float = 0.0, seed: int | None = None,
          name: str | None = None) -> keras.layers.Dense:
    """A Dense layer initialised from N(0, init_stddev^2), as in the paper.

    `weight_decay` is the L2 coefficient of an N(0, I) prior on the weights,
    per datapoint: with N training points it is 1 / (2 N). `seed` seeds the
    kernel's initialiser (`None`: unseeded).
    """
    return keras.layers.Dense(
        units, activation=activation, name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=init_stddev, seed=seed),
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None)


@keras.saving.register_keras_serializable(package="tfvae")
class MLP(keras.layers.Layer):
    """Flattens each example and applies Dense layers with a shared activation.

    Call arguments:
        inputs: `[B, *shape]` float tensor.

    Returns:
        `[B, hidden_units[-1]]` features (`[B, prod(shape)]` with no hidden layer).
    """

    def __init__(self, hidden_units: Sequence[int] = (500,), activation: str = "tanh",
                 init_stddev: float = 0.01, weight_decay: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        self.hidden = [dense(u, activation=activation, init_stddev=init_stddev,
                             weight_decay=weight_decay, seed=child_seed(seed, i),
                             name=f"hidden_{i}")
                       for i, u in enumerate(self.hidden_units)]

    def build(self, input_shape):
        shape = (input_shape[0], math.prod(input_shape[1:]))
        for layer in self.hidden:
            if not layer.built:
                layer.build(shape)
            shape = (shape[0], layer.units)
        self.built = True

    def compute_output_shape(self, input_shape):
        width = self.hidden_units[-1] if self.hidden_units else math.prod(input_shape[1:])
        return (input_shape[0], width)

    def call(self, inputs):
        h = keras.ops.reshape(inputs, (-1, math.prod(inputs.shape[1:])))
        for layer in self.hidden:
            h = layer(h)
        return h

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "activation": self.activation, "init_stddev": self.init_stddev,
                "weight_decay": self.weight_decay, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfvae")
class ProbabilisticNetwork(keras.Model):
    """A trunk (tensors in, features out) followed by a part head (features in,
    a distribution out): an encoder q(z|x) or a decoder p(x|z).

    Args:
        trunk: A layer mapping `[B, *shape]` to features `[B, F]` (`MLP` here;
            convolutional trunks slot in the same way).
        head: A `tfvae.parts.Head` mapping `[B, F]` to a distribution with batch
            shape `[B]` (a likelihood or a posterior).

    Call arguments:
        inputs: `[B, *shape]` float tensor (x for an encoder, z for a decoder).

    Returns:
        The head's `tfd.Distribution` with batch shape `[B]`.
    """

    def __init__(self, trunk: keras.layers.Layer, head: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.head = head

    def build(self, input_shape):
        # Deserialized sublayers arrive built from their own build configs.
        if not self.trunk.built:
            self.trunk.build(input_shape)
        if not self.head.built:
            self.head.build(self.trunk.compute_output_shape(input_shape))
        self.built = True

    def parameters(self, inputs) -> dict:
        """The head's parameters {name: `[B, ...]`} for inputs `[B, *shape]`."""
        return self.head.parameters(self.trunk(inputs))

    def call(self, inputs):
        return self.head(self.trunk(inputs))

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {**super().get_config(), "trunk": serialize(self.trunk),
                "head": serialize(self.head)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        parts = {key: keras.saving.deserialize_keras_object(config.pop(key))
                 for key in ("trunk", "head")}
        return cls(**parts, **config)
