"""Training throughput of tfvae against a hand-written XLA step, in one process.

    python benchmarks/train_speed.py [--epochs 3] [--steps-per-execution 1 16]

Random data of the right shape, batch 100, analytic KL, Adagrad, no weight
decay (the settings of ../shared/TARGETS.md). Prints the best epoch's training
examples per second as a Markdown table. Figures move by about 20% between
runs on a shared machine: compare rows of one run only.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import pipelines

SETTINGS = {
    "MNIST 784-500-20, Bernoulli": (tfvae.ModelConfig(
        latent_dim=20, hidden_units=(500,), likelihood="bernoulli", event_shape=(28, 28),
        weight_decay=0.0), 60_000),
    "Frey Face 560-200-2, Gaussian": (tfvae.ModelConfig(
        latent_dim=2, hidden_units=(200,), likelihood="gaussian", event_shape=(28, 20),
        weight_decay=0.0), 1_700 * 20),
}


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def tfvae_speed(config, data, epochs, steps_per_execution, jit_compile):
    vae = tfvae.build_vae(config, seed=0)
    vae.compile(keras.optimizers.Adagrad(0.01), jit_compile=jit_compile,
                steps_per_execution=steps_per_execution)
    timer = EpochTimer()
    vae.fit(data, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return min(timer.seconds[1:])  # The first epoch compiles.


def reference_step(config):
    """The same model as plain Keras layers and TF math: the step with nothing else."""
    pixels, latent, hidden = int(np.prod(config.event_shape)), config.latent_dim, \
        config.hidden_units[0]
    outputs = pixels * (2 if config.likelihood == "gaussian" else 1)
    layers = [keras.layers.Dense(hidden, "tanh"), keras.layers.Dense(2 * latent),
              keras.layers.Dense(hidden, "tanh"), keras.layers.Dense(outputs)]
    for layer, width in zip(layers, (pixels, hidden, latent, hidden)):
        layer.build((None, width))
    variables = [v for layer in layers for v in layer.trainable_variables]
    optimizer = keras.optimizers.Adagrad(0.01)
    optimizer.build(variables)

    def log_likelihood(x, out):
        if config.likelihood == "bernoulli":
            return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(x, out), -1)
        mean, log_var = tf.split(out, 2, -1)
        mean = tf.sigmoid(mean)
        return tf.reduce_sum(-0.5 * (np.log(2 * np.pi) + log_var)
                             - 0.5 * tf.square(x - mean) * tf.exp(-log_var), -1)

    @tf.function(jit_compile=True)
    def step(x):
        x = tf.reshape(x, [-1, pixels])
        with tf.GradientTape() as tape:
            mu, log_var = tf.split(layers[1](layers[0](x)), 2, -1)
            z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
            kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(log_var) - 1 - log_var, -1)
            loss = -tf.reduce_mean(log_likelihood(x, layers[3](layers[2](z))) - kl)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def reference_speed(config, data, epochs):
    step = reference_step(config)
    seconds = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for x in data:
            step(x)
        seconds.append(time.perf_counter() - start)
    return min(seconds[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-execution", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| setting | variant | examples/s |\n|---|---|---|")
    for name, (config, n) in SETTINGS.items():
        x = rng.uniform(size=(n, *config.event_shape)).astype(np.float32)
        if config.likelihood == "bernoulli":
            x = (x > 0.5).astype(np.float32)
        data = pipelines.EpochBatches(x, 100, seed=0).dataset
        examples = n // 100 * 100
        rows = [("hand-written XLA step (reference)", reference_speed(config, data, args.epochs))]
        rows.append(("tfvae, no XLA", tfvae_speed(config, data, args.epochs, 1, False)))
        for spe in args.steps_per_execution:
            rows.append((f"tfvae, XLA, steps_per_execution={spe}",
                         tfvae_speed(config, data, args.epochs, spe, True)))
        for variant, seconds in rows:
            print(f"| {name} | {variant} | {examples / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
