"""Networks: trunks (tensors in, features out) and the probabilistic networks built from them.

A probabilistic network is a trunk composed with a head (features in, a
`tfp.distributions.Distribution` out: a likelihood from `tfvae.likelihoods` or
a posterior from `tfvae.posteriors`). Kingma & Welling's encoder q(z|x) and
decoders p(x|z) (appendix C) are all one-hidden-layer tanh MLPs with different
heads, so they are one class here, configured by its trunk and its head;
`tfvae.builders` assembles them from a config.

Trunks:
    MLP                    [B, *shape] -> [B, F]: flatten, Dense layers.
    ConvolutionalEncoder   x [B, H, W(, C)] -> [B, F]: stride-2 convolutions
                           that halve H and W at each layer, flatten, Dense.
    ConvolutionalDecoder   z [B, J] -> [B, H, W, F]: Dense layers to a
                           [ceil(H / 2^n), ceil(W / 2^n)] map, n stride-2
                           transposed convolutions that double it, a crop to
                           H x W; with a spatial head (`Head(spatial=True)`,
                           a 1 x 1 projection per pixel) it is p(x|z).
The convolutional pair is the DCGAN layout (Radford et al. 2016: strided
convolutions in place of pooling, transposed convolutions in place of
upsampling), which convolutional VAEs commonly use for both q(z|x) and p(x|z).

Every trunk takes an optional condition y `[B, K]` (e.g. a one-hot label, for a
conditional VAE q(z|x, y), p(x|z, y); Sohn et al. 2015), concatenated where the
trunk is flat: to the flattened input of an MLP, to the flattened feature map
of the encoder, to z in the decoder. The Dense weights depend on K, so a trunk
is built for one `condition_size`.

Every trunk computes with LiteRT builtins only: converted with a spatial head
and a condition, the two convolutional trunks use CONV_2D, TRANSPOSE_CONV,
FULLY_CONNECTED, CONCATENATION, ADD, RESHAPE, STRIDED_SLICE and the shape
arithmetic of a dynamic batch (SHAPE, GATHER, PACK, REDUCE_PROD).

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR. Appendix C.
    Radford, Metz & Chintala (2016). Unsupervised representation learning with
        deep convolutional generative adversarial networks. ICLR.
    Sohn, Lee & Yan (2015). Learning structured output representation using
        deep conditional generative models. NeurIPS.
    He, Zhang, Ren & Sun (2015). Delving deep into rectifiers. ICCV.
    Glorot & Bengio (2010). Understanding the difficulty of training deep
        feedforward neural networks. AISTATS.
    Odena, Dumoulin & Olah (2016). Deconvolution and checkerboard artifacts. Distill.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from tfvae.seeds import child_seed  # noqa: F401 (re-exported: heads and builders use it)

# Activations whose variance-preserving initialiser is He's (gain 2) rather than Glorot's.
RECTIFIERS = ("relu", "leaky_relu", "elu", "gelu", "silu")


def _l2(weight_decay: float):
    return keras.regularizers.L2(weight_decay) if weight_decay else None


def dense(
    units: int,
    *,
    activation: str | Callable | None = None,
    init_stddev: float | None = 0.01,
    weight_decay: float = 0.0,
    seed: int | None = None,
    name: str | None = None,
    dtype: keras.DTypePolicy | str | None = None,
) -> keras.layers.Dense:
    """A Dense layer initialised from N(0, init_stddev^2), as in the paper
    (`init_stddev=None`: variance-preserving, see `kernel_initializer`).

    `weight_decay` is the L2 coefficient of an N(0, I) prior on the weights,
    per datapoint: with N training points it is 1 / (2 N). `seed` seeds the
    kernel's initialiser (`None`: unseeded). `dtype`: a Keras dtype policy
    (`None`: the global one).
    """
    return keras.layers.Dense(
        units,
        activation=activation,
        name=name,
        dtype=dtype,
        kernel_initializer=kernel_initializer(init_stddev, activation, seed),
        kernel_regularizer=_l2(weight_decay),
    )


def kernel_initializer(
    init_stddev: float | None, activation: str | Callable | None, seed: int | None
) -> keras.initializers.Initializer:
    """N(0, init_stddev^2), the paper's; `None`: `variance_preserving(activation)`."""
    if init_stddev is None:
        return variance_preserving(activation, seed)
    return keras.initializers.RandomNormal(stddev=init_stddev, seed=seed)


def variance_preserving(
    activation: str | Callable | None, seed: int | None
) -> keras.initializers.Initializer:
    """He normal for rectifiers, Glorot uniform otherwise, seeded.

    The MLP's N(0, 0.01^2) scales a layer's output variance by 0.01^2 fan_in:
    for a 4 x 4 x 32 convolution (fan_in 512) its standard deviation shrinks by
    0.23 per layer (and a ReLU halves the variance again), so a few layers deep
    the signal and its gradients vanish. These keep it about constant.
    """
    if activation in RECTIFIERS:
        return keras.initializers.HeNormal(seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def _trunk_dense(
    units: int,
    activation: str,
    init_stddev: float | None,
    weight_decay: float,
    seed: int | None,
    name: str,
) -> keras.layers.Dense:
    """A convolutional trunk's Dense layer: N(0, init_stddev^2) if given, else
    variance-preserving."""
    return dense(
        units,
        activation=activation,
        init_stddev=init_stddev,
        weight_decay=weight_decay,
        seed=seed,
        name=name,
    )


def concatenate_condition(
    h: tf.Tensor, condition: tf.Tensor | None, condition_size: int, trunk: str
) -> tf.Tensor:
    """h `[B, D]` with the condition `[B, K]` appended: `[B, D + K]` (h itself for K = 0).

    Raises:
        ValueError: A condition given to a trunk built without one
            (`condition_size=0`), none given to one built with one, or one whose
            shape is not `[B, condition_size]`.
    """
    if condition is None:
        if condition_size:
            raise ValueError(
                f"{trunk} was built with condition_size={condition_size}: pass "
                f"condition=[B, {condition_size}] (e.g. a one-hot label)."
            )
        return h
    if not condition_size:
        raise ValueError(
            f"{trunk} was built without a condition (condition_size=0), but "
            "got one: build it with condition_size=K for a [B, K] condition."
        )
    condition = keras.ops.cast(condition, h.dtype)
    if len(condition.shape) != 2 or condition.shape[-1] not in (None, condition_size):
        raise ValueError(
            f"{trunk} takes a condition [B, {condition_size}], got {list(condition.shape)}."
        )
    return keras.ops.concatenate([h, condition], axis=-1)


def _output_shape(layers, shape: tuple, *, build: bool = False) -> tuple:
    """The output shape of `layers` applied in order to `shape`; with `build`,
    builds each (unless built: deserialized layers arrive built) on the way."""
    for layer in layers:
        if build and not layer.built:
            layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return tuple(shape)


@keras.saving.register_keras_serializable(package="tfvae")
class MLP(keras.layers.Layer):
    """Flattens each example, appends the condition if any, and applies Dense
    layers with a shared activation.

    Args:
        hidden_units: Widths of the hidden layers (none: the flattened input).
        activation: Their activation.
        init_stddev: Standard deviation of the N(0, s^2) kernel initialisers
            (`None`: variance-preserving, `kernel_initializer`).
        weight_decay: L2 coefficient of the kernels, per datapoint.
        seed: Seeds layer i's initialiser with `child_seed(seed, i)`.
        condition_size: K, the width of the condition (0: none).

    Call arguments:
        inputs: `[B, *shape]` float tensor.
        condition: `[B, K]` float tensor, required iff `condition_size > 0`.

    Returns:
        `[B, hidden_units[-1]]` features (`[B, prod(shape) + K]` with no hidden layer).
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (500,),
        activation: str = "tanh",
        init_stddev: float | None = 0.01,
        weight_decay: float = 0.0,
        seed: int | None = None,
        *,
        condition_size: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        self.condition_size = int(condition_size)
        self.hidden = [
            dense(
                u,
                activation=activation,
                init_stddev=init_stddev,
                weight_decay=weight_decay,
                seed=child_seed(seed, i),
                name=f"hidden_{i}",
            )
            for i, u in enumerate(self.hidden_units)
        ]

    def build(self, input_shape):
        _output_shape(self.hidden, (input_shape[0], self._flat_width(input_shape)), build=True)
        self.built = True

    def _flat_width(self, input_shape) -> int:
        return math.prod(input_shape[1:]) + self.condition_size

    def compute_output_shape(self, input_shape):
        width = self.hidden_units[-1] if self.hidden_units else self._flat_width(input_shape)
        return (input_shape[0], width)

    def call(self, inputs, condition=None):
        h = keras.ops.reshape(inputs, (-1, math.prod(inputs.shape[1:])))
        h = concatenate_condition(h, condition, self.condition_size, self.name)
        for layer in self.hidden:
            h = layer(h)
        return h

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "init_stddev": self.init_stddev,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "condition_size": self.condition_size,
        }


class ConvolutionalTrunk(keras.layers.Layer):
    """Base of the convolutional trunks: their options, layers and config.

    Args:
        filters: Output channels of each stride-2 convolution, in order.
        hidden_units: Widths of the Dense layers.
        kernel_size: Height and width of every kernel. 4, a multiple of the
            stride, gives every output pixel of a transposed convolution the
            same number of inputs: no checkerboard artefacts (Odena et al. 2016).
        activation: Of every layer (a ReLU by default, as in DCGAN).
        init_stddev: `None` (default): every kernel starts variance-preserving
            (`variance_preserving`); a float: the Dense kernels start from
            N(0, init_stddev^2), as the MLP's do. Convolution kernels always
            start variance-preserving.
        weight_decay: L2 coefficient of every kernel, per datapoint.
        seed: Seeds layer i's initialiser (in call order) with `child_seed(seed, i)`.
        condition_size: K, the width of the condition (0: none).
    """

    def __init__(
        self,
        filters: Sequence[int],
        hidden_units: Sequence[int],
        *,
        kernel_size: int,
        activation: str,
        init_stddev: float | None,
        weight_decay: float,
        seed: int | None,
        condition_size: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        if not self.filters:
            raise ValueError(f"{type(self).__name__} needs at least one entry in filters.")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.init_stddev = init_stddev
        self.weight_decay = weight_decay
        self.seed = seed
        self.condition_size = int(condition_size)

    def convolution(self, layer_class, filters: int, index: int, name: str):
        """A stride-2, "same"-padded Conv2D or Conv2DTranspose, seeded `index`:
        it halves (rounding up) or doubles H and W."""
        return layer_class(
            filters,
            self.kernel_size,
            strides=2,
            padding="same",
            activation=self.activation,
            name=name,
            kernel_initializer=variance_preserving(self.activation, child_seed(self.seed, index)),
            kernel_regularizer=_l2(self.weight_decay),
        )

    def dense(self, units: int, index: int, name: str) -> keras.layers.Dense:
        """A Dense layer with the trunk's activation, seeded `index`."""
        return _trunk_dense(
            units,
            self.activation,
            self.init_stddev,
            self.weight_decay,
            child_seed(self.seed, index),
            name,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "hidden_units": self.hidden_units,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "init_stddev": self.init_stddev,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "condition_size": self.condition_size,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class ConvolutionalEncoder(ConvolutionalTrunk):
    """Stride-2 convolutions, a flatten, the condition if any, then Dense layers.

    Each convolution halves H and W (rounding up), so n = len(filters) layers
    leave a `[B, h_n, w_n, filters[-1]]` map, h_n = ceil(H / 2^n) and
    w_n = ceil(W / 2^n): any image size works.

    Args: those of `ConvolutionalTrunk`; filters default to (32, 64).

    Call arguments:
        inputs: x `[B, H, W]` (grey: a channel axis is added) or `[B, H, W, C]`.
        condition: `[B, K]` float tensor, required iff `condition_size > 0`.

    Returns:
        Features `[B, hidden_units[-1]]` (`[B, h_n w_n filters[-1] + K]` with no
        Dense layer).
    """

    def __init__(
        self,
        filters: Sequence[int] = (32, 64),
        hidden_units: Sequence[int] = (256,),
        *,
        kernel_size: int = 4,
        activation: str = "relu",
        init_stddev: float | None = None,
        weight_decay: float = 0.0,
        seed: int | None = None,
        condition_size: int = 0,
        **kwargs,
    ):
        super().__init__(
            filters,
            hidden_units,
            kernel_size=kernel_size,
            activation=activation,
            init_stddev=init_stddev,
            weight_decay=weight_decay,
            seed=seed,
            condition_size=condition_size,
            **kwargs,
        )
        self.convolutions = [
            self.convolution(keras.layers.Conv2D, f, i, f"conv_{i}")
            for i, f in enumerate(self.filters)
        ]
        self.hidden = [
            self.dense(u, len(self.filters) + i, f"hidden_{i}")
            for i, u in enumerate(self.hidden_units)
        ]

    def _image_shape(self, input_shape) -> tuple:
        """`[B, H, W, C]`, with C = 1 for grey images `[B, H, W]`."""
        if len(input_shape) not in (3, 4):
            raise ValueError(
                f"{self.name} takes images [B, H, W] or [B, H, W, C], got {list(input_shape)}."
            )
        return tuple(input_shape) + (1,) * (len(input_shape) == 3)

    def _flat_shape(self, input_shape, build: bool = False) -> tuple:
        """`[B, h_n w_n filters[-1] + K]`, the Dense layers' input; builds the
        convolutions on the way if `build`."""
        shape = _output_shape(self.convolutions, self._image_shape(input_shape), build=build)
        return (shape[0], math.prod(shape[1:]) + self.condition_size)

    def build(self, input_shape):
        _output_shape(self.hidden, self._flat_shape(input_shape, build=True), build=True)
        self.built = True

    def compute_output_shape(self, input_shape):
        return _output_shape(self.hidden, self._flat_shape(input_shape))

    def call(self, inputs, condition=None):
        h = inputs[..., None] if len(inputs.shape) == 3 else inputs
        for layer in self.convolutions:
            h = layer(h)
        h = keras.ops.reshape(h, (-1, math.prod(h.shape[1:])))
        h = concatenate_condition(h, condition, self.condition_size, self.name)
        for layer in self.hidden:
            h = layer(h)
        return h


@keras.saving.register_keras_serializable(package="tfvae")
class ConvolutionalDecoder(ConvolutionalTrunk):
    """Dense layers from z (and the condition if any) to a small feature map,
    stride-2 transposed convolutions that double it, and a centred crop to H x W.

    With n = len(filters), the map starts at h0 x w0 = ceil(H / 2^n) x
    ceil(W / 2^n) with filters[0] channels and grows to 2^n h0 x 2^n w0, then
    is cropped to H x W: 28 x 20 comes from 7 x 5 exactly with n = 2, and from
    4 x 3 through 32 x 24 with n = 3.

    Args:
        event_shape: Shape of one image, `(H, W)` or `(H, W, C)`; only H and W
            shape the trunk (the spatial head's per-pixel projection makes the
            C channels).
        The others: those of `ConvolutionalTrunk`; filters default to (64, 32).

    Call arguments:
        inputs: z `[B, J]`.
        condition: `[B, K]` float tensor, required iff `condition_size > 0`.

    Returns:
        A feature map `[B, H, W, filters[-1]]`, for a head with `spatial=True`.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        filters: Sequence[int] = (64, 32),
        hidden_units: Sequence[int] = (256,),
        *,
        kernel_size: int = 4,
        activation: str = "relu",
        init_stddev: float | None = None,
        weight_decay: float = 0.0,
        seed: int | None = None,
        condition_size: int = 0,
        **kwargs,
    ):
        super().__init__(
            filters,
            hidden_units,
            kernel_size=kernel_size,
            activation=activation,
            init_stddev=init_stddev,
            weight_decay=weight_decay,
            seed=seed,
            condition_size=condition_size,
            **kwargs,
        )
        self.event_shape = tuple(int(d) for d in event_shape)
        if len(self.event_shape) not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} makes images: event_shape must be "
                f"(H, W) or (H, W, C), got {self.event_shape}."
            )
        upsampling = 2 ** len(self.filters)
        self.base_shape = tuple(-(-d // upsampling) for d in self.event_shape[:2])
        self.upsampled_shape = tuple(d * upsampling for d in self.base_shape)
        self.hidden = [self.dense(u, i, f"hidden_{i}") for i, u in enumerate(self.hidden_units)]
        self.to_feature_map = self.dense(
            math.prod(self.base_shape) * self.filters[0], len(self.hidden), "to_feature_map"
        )
        self.transposed_convolutions = [
            self.convolution(
                keras.layers.Conv2DTranspose, f, len(self.hidden) + 1 + i, f"conv_transpose_{i}"
            )
            for i, f in enumerate(self.filters)
        ]

    def build(self, input_shape):
        batch = input_shape[0]
        _output_shape(
            [*self.hidden, self.to_feature_map],
            (batch, input_shape[-1] + self.condition_size),
            build=True,
        )
        _output_shape(
            self.transposed_convolutions, (batch, *self.base_shape, self.filters[0]), build=True
        )
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.event_shape[:2], self.filters[-1])

    def call(self, inputs, condition=None):
        h = concatenate_condition(inputs, condition, self.condition_size, self.name)
        for layer in [*self.hidden, self.to_feature_map]:
            h = layer(h)
        h = keras.ops.reshape(h, (-1, *self.base_shape, self.filters[0]))
        for layer in self.transposed_convolutions:
            h = layer(h)
        return self._crop(h)

    def _crop(self, h):
        """The centre `[B, H, W, F]` of h `[B, 2^n h0, 2^n w0, F]` (a static slice)."""
        height, width = self.event_shape[:2]
        if (height, width) == self.upsampled_shape:
            return h
        top, left = (
            (full - size) // 2 for full, size in zip(self.upsampled_shape, (height, width))
        )
        return h[:, top : top + height, left : left + width, :]

    def get_config(self):
        return {**super().get_config(), "event_shape": self.event_shape}


@keras.saving.register_keras_serializable(package="tfvae")
class ProbabilisticNetwork(keras.Model):
    """A trunk (tensors in, features out) followed by a part head (features in,
    a distribution out): an encoder q(z|x) or a decoder p(x|z), optionally
    conditioned on y: q(z|x, y), p(x|z, y).

    Args:
        trunk: A layer mapping `[B, *shape]` (and a condition `[B, K]`, if it
            was built with `condition_size=K`) to features: `[B, F]` (`MLP`,
            `ConvolutionalEncoder`) or a feature map `[B, H, W, F]`
            (`ConvolutionalDecoder`, for a head with `spatial=True`).
        head: A `tfvae.parts.Head` mapping the features to a distribution with
            batch shape `[B]` (a likelihood or a posterior).

    Call arguments:
        inputs: `[B, *shape]` float tensor (x for an encoder, z for a decoder).
        condition: `[B, K]` float tensor for a conditional trunk, else `None`.

    Returns:
        The head's `tfd.Distribution` with batch shape `[B]`.
    """

    def __init__(self, trunk: keras.layers.Layer, head: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.head = head

    def build(self, input_shape):
        # The trunk builds its Dense layers for inputs and condition alike
        # (it knows condition_size), so the input shape is all it needs.
        # Deserialized sublayers arrive built from their own build configs.
        if not self.trunk.built:
            self.trunk.build(input_shape)
        if not self.head.built:
            self.head.build(self.trunk.compute_output_shape(input_shape))
        self.built = True

    def parameters(self, inputs, condition=None) -> dict:
        """The head's parameters {name: `[B, ...]`} for inputs `[B, *shape]`."""
        return self.head.parameters(self._features(inputs, condition))

    def call(self, inputs, condition=None):
        return self.head(self._features(inputs, condition))

    def _features(self, inputs, condition):
        # Without a condition the trunk is called as before, so trunks whose call
        # takes no condition argument still work.
        if condition is None:
            return self.trunk(inputs)
        return self.trunk(inputs, condition=condition)

    @property
    def _default_save_signature(self):
        # Keras' hook for the serving function it traces, as self(inputs), for
        # every Model a SavedModel holds (also through keras.export.ExportArchive):
        # a conditional trunk cannot run without its condition, so none is traced.
        if getattr(self.trunk, "condition_size", 0):
            return None
        return super()._default_save_signature

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "trunk": serialize(self.trunk),
            "head": serialize(self.head),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        parts = {
            key: keras.saving.deserialize_keras_object(config.pop(key)) for key in ("trunk", "head")
        }
        return cls(**parts, **config)
