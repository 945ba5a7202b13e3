"""The reference trainers that `train_throughput.py` measures tfvae against.

Both train the same MLP VAE as tfvae's MLP preset (tanh hidden layers,
a diagonal Gaussian q(z|x), N(0, I), a Bernoulli or Gaussian p(x|z)) on the
ELBO with the analytic KL, or on the importance-weighted bound with k samples,
with Adam, on batches sliced from arrays already in memory:

- `XLALoop`: raw TensorFlow (matmuls, tanh, the closed-form KL or the
  log-sum-exp of the log weights, Adam written out), `steps_per_call` steps
  inside one `tf.while_loop` compiled by XLA: what the stack allows when
  nothing but the step runs.
- `TorchLoop`: plain PyTorch eager, `torch.optim.Adam`, one Python step per
  batch.

Neither validates, checkpoints or logs: they are the step alone.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Network:
    """An MLP VAE: x `[N, pixels]` -> hidden -> (mean, log variance) of z `[J]` ->
    hidden (reversed) -> p(x|z) parameters (`pixels`, or 2 x for a Gaussian)."""

    pixels: int
    hidden: tuple[int, ...]
    latent: int
    likelihood: str = "bernoulli"  # or "gaussian"
    num_samples: int = 1
    bound: str = "elbo"  # or "iwae"

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(inputs, outputs) of every Dense layer: encoder then decoder."""
        encoder = [self.pixels, *self.hidden]
        decoder = [self.latent, *reversed(self.hidden)]
        outputs = self.pixels * (2 if self.likelihood == "gaussian" else 1)
        return [*zip(encoder[:-1], encoder[1:]), (encoder[-1], 2 * self.latent)] + [
            *zip(decoder[:-1], decoder[1:]),
            (decoder[-1], outputs),
        ]


LOG_2PI = math.log(2 * math.pi)


class XLALoop:
    """`steps_per_call` Adam steps of `network` per call, in one XLA while loop.

    Args:
        network: The model and bound.
        data: `[N, pixels]` float32 training data (in memory, on the device).
        batch_size: M; batch i of an epoch is rows i M .. (i + 1) M - 1.
        steps_per_call: Steps per compiled call.
        learning_rate: Adam's step size.
    """

    def __init__(
        self,
        network: Network,
        data: np.ndarray,
        batch_size: int,
        steps_per_call: int = 50,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ):
        import tensorflow as tf

        self.tf, self.network, self.batch_size = tf, network, batch_size
        self.steps_per_call = steps_per_call
        rng = np.random.default_rng(seed)
        self.weights = []
        for n_in, n_out in network.layer_sizes():
            self.weights += [
                tf.Variable(rng.normal(0, 0.01, (n_in, n_out)).astype(np.float32)),
                tf.Variable(np.zeros(n_out, np.float32)),
            ]
        self.moments = [tf.Variable(tf.zeros_like(w)) for w in self.weights]
        self.second_moments = [tf.Variable(tf.zeros_like(w)) for w in self.weights]
        self.step_count = tf.Variable(0.0)
        self.learning_rate = learning_rate
        self.steps_per_epoch = len(data) // batch_size
        used = self.steps_per_epoch * batch_size
        # [steps, M, pixels]: batch i is a gather on the leading axis. A dynamic
        # slice of [N, pixels] inside the XLA loop was many times slower here.
        self.data = tf.constant(
            np.asarray(data[:used], np.float32).reshape(self.steps_per_epoch, batch_size, -1)
        )
        self.noise_seed = tf.Variable([seed, 0], dtype=tf.int32)
        self.run = tf.function(self._run, jit_compile=True)

    def _mlp(self, h, layers, last_linear=True):
        tf = self.tf
        for i, (w, b) in enumerate(layers):
            h = tf.matmul(h, w) + b
            if not (last_linear and i == len(layers) - 1):
                h = tf.tanh(h)
        return h

    def loss(self, x, seed):
        """Minus the bound, averaged over the batch x `[M, pixels]`."""
        tf, net = self.tf, self.network
        pairs = list(zip(self.weights[::2], self.weights[1::2]))
        depth = len(net.hidden) + 1
        mean, log_var = tf.split(self._mlp(x, pairs[:depth]), 2, axis=-1)
        k = net.num_samples
        # Philox: under XLA the default algorithm is ThreeFry, many times slower here.
        eps = tf.random.stateless_normal([k, tf.shape(x)[0], net.latent], seed=seed, alg="philox")
        z = mean + tf.exp(0.5 * log_var) * eps  # [k, M, J]
        out = self._mlp(tf.reshape(z, [-1, net.latent]), pairs[depth:])
        out = tf.reshape(out, [k, tf.shape(x)[0], -1])
        if net.likelihood == "bernoulli":
            log_lik = -tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(tf.broadcast_to(x, tf.shape(out)), out), -1
            )
        else:
            mu, log_var_x = tf.split(out, 2, axis=-1)
            log_lik = tf.reduce_sum(
                -0.5 * (LOG_2PI + log_var_x)
                - 0.5 * tf.square(x - tf.sigmoid(mu)) * tf.exp(-log_var_x),
                -1,
            )
        if net.bound == "elbo":
            kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(log_var) - 1.0 - log_var, -1)
            return -tf.reduce_mean(tf.reduce_mean(log_lik, 0) - kl)
        log_q = tf.reduce_sum(-0.5 * (LOG_2PI + log_var) - 0.5 * tf.square(eps), -1)
        log_p = tf.reduce_sum(-0.5 * LOG_2PI - 0.5 * tf.square(z), -1)
        log_w = log_lik + log_p - log_q
        return -tf.reduce_mean(tf.reduce_logsumexp(log_w, 0) - math.log(k))

    def _adam(self, gradients, b1=0.9, b2=0.999, eps=1e-7):
        tf = self.tf
        t = self.step_count.assign_add(1.0)
        rate = self.learning_rate * tf.sqrt(1 - b2**t) / (1 - b1**t)
        for w, m, v, g in zip(self.weights, self.moments, self.second_moments, gradients):
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * tf.square(g))
            w.assign_sub(rate * m / (tf.sqrt(v) + eps))

    def _run(self, first_step):
        tf = self.tf

        def body(i, loss):
            step = (first_step + i) % self.steps_per_epoch
            x = tf.gather(self.data, step)
            seed = self.noise_seed + tf.stack([0, first_step + i])
            with tf.GradientTape() as tape:
                loss = self.loss(x, seed)
            self._adam(tape.gradient(loss, self.weights))
            return i + 1, loss

        return tf.while_loop(
            lambda i, _: i < self.steps_per_call, body, [tf.constant(0), tf.constant(0.0)]
        )[1]

    def epoch(self, epoch: int) -> float:
        """Trains one epoch (rounded down to whole calls); returns the last loss."""
        calls = max(1, self.steps_per_epoch // self.steps_per_call)
        loss = None
        for call in range(calls):
            loss = self.run(
                self.tf.constant(epoch * calls * self.steps_per_call + call * self.steps_per_call)
            )
        return float(loss)

    def examples_per_epoch(self) -> int:
        return (
            max(1, self.steps_per_epoch // self.steps_per_call)
            * self.steps_per_call
            * self.batch_size
        )


class TorchLoop:
    """The same model and bound in plain PyTorch eager, one Python step per batch."""

    def __init__(
        self,
        network: Network,
        data: np.ndarray,
        batch_size: int,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ):
        import torch

        self.torch, self.network, self.batch_size = torch, network, batch_size
        torch.manual_seed(seed)
        sizes = network.layer_sizes()
        depth = len(network.hidden) + 1
        self.encoder = self._mlp(sizes[:depth])
        self.decoder = self._mlp(sizes[depth:])
        self.optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.decoder.parameters()], lr=learning_rate
        )
        self.data = torch.from_numpy(np.asarray(data, np.float32).reshape(len(data), -1))
        self.steps_per_epoch = len(data) // batch_size

    def _mlp(self, sizes):
        nn = self.torch.nn
        layers = []
        for i, (n_in, n_out) in enumerate(sizes):
            layer = nn.Linear(n_in, n_out)
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
            layers.append(layer)
            if i < len(sizes) - 1:
                layers.append(nn.Tanh())
        return nn.Sequential(*layers)

    def loss(self, x):
        torch, net = self.torch, self.network
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        k = net.num_samples
        eps = torch.randn(k, x.shape[0], net.latent)
        z = mean + torch.exp(0.5 * log_var) * eps
        out = self.decoder(z.reshape(-1, net.latent)).reshape(k, x.shape[0], -1)
        if net.likelihood == "bernoulli":
            log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
                out, x.expand_as(out), reduction="none"
            ).sum(-1)
        else:
            mu, log_var_x = out.chunk(2, dim=-1)
            log_lik = (
                -0.5 * (LOG_2PI + log_var_x)
                - 0.5 * (x - torch.sigmoid(mu)) ** 2 * torch.exp(-log_var_x)
            ).sum(-1)
        if net.bound == "elbo":
            kl = 0.5 * (mean**2 + torch.exp(log_var) - 1.0 - log_var).sum(-1)
            return -(log_lik.mean(0) - kl).mean()
        log_q = (-0.5 * (LOG_2PI + log_var) - 0.5 * eps**2).sum(-1)
        log_p = (-0.5 * LOG_2PI - 0.5 * z**2).sum(-1)
        return -(torch.logsumexp(log_lik + log_p - log_q, 0) - math.log(k)).mean()

    def epoch(self, epoch: int) -> float:
        loss = None
        for step in range(self.steps_per_epoch):
            x = self.data[step * self.batch_size : (step + 1) * self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(x)
            loss.backward()
            self.optimizer.step()
        return float(loss)

    def examples_per_epoch(self) -> int:
        return self.steps_per_epoch * self.batch_size
