"""The shift and log-scale networks of the flows, as Keras 3 layers.

`MaskedDense` multiplies its kernel by a fixed 0/1 mask; a `MADE` (Germain et
al. 2015) stacks them with degrees assigned so that output i depends on inputs
1..i-1 only, which makes the map autoregressive (the IAF's networks);
`ShiftAndLogScaleNetwork` is the unmasked network of a coupling layer. Each
returns (shift, log_scale) with the log-scale softly bounded,
s = c tanh(r / c), and a zero last layer, so that a fresh flow is the identity
(`tfvae.flows`). `tfb.AutoregressiveNetwork` is not used: it is a tf_keras
layer, whose weights a Keras 3 model does not track.

References:
    Germain, Gregor, Murray & Larochelle (2015). MADE: Masked Autoencoder for
        Distribution Estimation. ICML.
    Dinh, Sohl-Dickstein & Bengio (2017). Density Estimation Using Real NVP. ICLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfvae.seeds import child_seed


def _as_list(degrees):
    return None if degrees is None else [int(d) for d in degrees]


@keras.saving.register_keras_serializable(package="tfvae")
class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (Germain et al. 2015).

    The mask comes from degrees: output unit k sees input i if
    `output_degrees[k] >= input_degrees[i]` (hidden layers), or `>` if
    `exclusive` (the output layer of a MADE: output i sees inputs 1..i-1).
    Without degrees the layer is an ordinary dense layer. It computes in its
    input's dtype (float64 in, float64 out).

    Args:
        units: Number of outputs.
        activation: A Keras activation name or None.
        input_degrees: `[n_in]` ints, or None (no mask).
        output_degrees: `[units]` ints, or None (no mask).
        exclusive: Strict inequality in the mask (see above).
        kernel_initializer: A Keras initializer (or its name / config).
        kernel_regularizer: A Keras regularizer (or None).

    Call arguments:
        inputs: `[..., n_in]` float tensor.

    Returns:
        `[..., units]`, of the inputs' dtype.
    """

    def __init__(
        self,
        units: int,
        *,
        activation=None,
        input_degrees=None,
        output_degrees=None,
        exclusive: bool = False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        # Keras casts the inputs of an autocast layer to float32; the flows'
        # densities must stay in float64 when given float64.
        super().__init__(autocast=False, **kwargs)
        if (input_degrees is None) != (output_degrees is None):
            raise ValueError("Give both input_degrees and output_degrees, or neither.")
        if output_degrees is not None and len(output_degrees) != units:
            raise ValueError(f"{len(output_degrees)} output degrees for {units} units.")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.input_degrees = _as_list(input_degrees)
        self.output_degrees = _as_list(output_degrees)
        self.exclusive = bool(exclusive)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def mask(self) -> np.ndarray | None:
        """`[n_in, units]` 0/1 mask, or None."""
        if self.input_degrees is None:
            return None
        inputs = np.asarray(self.input_degrees)[:, None]
        outputs = np.asarray(self.output_degrees)[None, :]
        return (outputs > inputs if self.exclusive else outputs >= inputs).astype(np.float32)

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        if self.input_degrees is not None and len(self.input_degrees) != n_in:
            raise ValueError(f"{len(self.input_degrees)} input degrees for {n_in} inputs.")
        self.kernel = self.add_weight(
            shape=(n_in, self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")
        self.built = True

    def call(self, inputs):
        kernel = tf.cast(self.kernel, inputs.dtype)
        mask = self.mask()
        if mask is not None:
            kernel = kernel * tf.constant(mask, inputs.dtype)
        return self.activation(tf.matmul(inputs, kernel) + tf.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "input_degrees": self.input_degrees,
            "output_degrees": self.output_degrees,
            "exclusive": self.exclusive,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package="tfvae")
class ShiftAndLogScaleNetwork(keras.layers.Layer):
    """x `[..., input_size]` -> (shift, log_scale), each `[..., output_size]`.

    A dense network (the one of an affine coupling layer) whose last layer
    starts at zero, so that shift = log_scale = 0 until training moves it;
    log_scale = c tanh(raw / c) with c = `max_log_scale`.

    Args:
        input_size: Width of x.
        output_size: Width of shift and of log_scale.
        hidden_units: Widths of the hidden layers.
        activation: Of the hidden layers.
        max_log_scale: c above: |log_scale| < c.
        weight_decay: L2 coefficient of the kernels, per datapoint.
        seed: Seeds the hidden layers' Glorot initialisers (`None`: unseeded).

    Call arguments:
        inputs: `[..., input_size]` float tensor.

    Returns:
        (shift, log_scale), each `[..., output_size]`, of the inputs' dtype.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_units: Sequence[int] = (64,),
        *,
        activation: str = "tanh",
        max_log_scale: float = 3.0,
        weight_decay: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        if not max_log_scale > 0:
            raise ValueError(f"max_log_scale must be positive, got {max_log_scale}.")
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.max_log_scale = float(max_log_scale)
        self.weight_decay = weight_decay
        self.seed = seed
        regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
        degrees = self.degrees()
        self.hidden = [
            MaskedDense(
                units,
                activation=activation,
                input_degrees=degrees[i],
                output_degrees=degrees[i + 1],
                kernel_regularizer=regularizer,
                kernel_initializer=keras.initializers.GlorotUniform(child_seed(seed, i)),
                name=f"hidden_{i}",
                dtype=self.dtype_policy,
            )
            for i, units in enumerate(self.hidden_units)
        ]
        # Shift and log-scale of output j share output j's degree.
        output_degrees = None if degrees[-1] is None else np.tile(degrees[-1], 2)
        self.last = MaskedDense(
            2 * self.output_size,
            input_degrees=degrees[-2],
            output_degrees=output_degrees,
            exclusive=True,
            kernel_initializer="zeros",
            kernel_regularizer=regularizer,
            name="shift_and_log_scale",
            dtype=self.dtype_policy,
        )

    def degrees(self) -> list[np.ndarray | None]:
        """Degrees of the inputs, of each hidden layer and of the outputs; None: unmasked."""
        return [None] * (len(self.hidden_units) + 2)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in [*self.hidden, self.last]:
            if not layer.built:
                layer.build(shape)
            shape = (*shape[:-1], layer.units)
        self.built = True

    def call(self, inputs):
        h = inputs
        for layer in self.hidden:
            h = layer(h)
        shift, raw_log_scale = tf.split(self.last(h), 2, axis=-1)
        c = tf.constant(self.max_log_scale, raw_log_scale.dtype)
        return shift, c * tf.tanh(raw_log_scale / c)

    def get_config(self):
        return {
            **super().get_config(),
            "input_size": self.input_size,
            "output_size": self.output_size,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "max_log_scale": self.max_log_scale,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class MADE(ShiftAndLogScaleNetwork):
    """The autoregressive network (Germain et al. 2015): z `[..., J]` -> (shift, log_scale)
    `[..., J]` each, output i a function of z_1..z_{i-1} only.

    Degrees: input i has degree i; hidden units take degrees 1..J-1 in turn
    (evenly, where Germain et al. draw them at random), a unit of degree d
    seeing z_1..z_d; output i has degree i and sees hidden degrees < i. For
    J = 1 the outputs see nothing: constants, learned through the biases.

    Args:
        event_size: J.
        hidden_units, activation, max_log_scale, weight_decay, seed: As
            `ShiftAndLogScaleNetwork`.

    Call arguments:
        inputs: `[..., J]` float tensor.

    Returns:
        (shift, log_scale), each `[..., J]`, of the inputs' dtype: the
        `shift_and_log_scale_fn` of `tfb.MaskedAutoregressiveFlow`.
    """

    def __init__(self, event_size: int, hidden_units: Sequence[int] = (64,), **kwargs):
        super().__init__(event_size, event_size, hidden_units, **kwargs)

    def degrees(self):
        size = self.input_size
        hidden = [
            np.zeros(units, int) if size == 1 else np.arange(units) % (size - 1) + 1
            for units in self.hidden_units
        ]
        return [np.arange(1, size + 1), *hidden, np.arange(1, size + 1)]

    def get_config(self):
        config = super().get_config()
        config["event_size"] = config.pop("input_size")
        del config["output_size"]
        return config
