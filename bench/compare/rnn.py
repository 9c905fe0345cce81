#!/usr/bin/env python3
"""`gradtape bench lstm` in PyTorch eager, Keras (TensorFlow eager and tf.function) and JAX jit:
  lstm-train  one training step of an LSTM (64 inputs, 256 units) over 50 steps, batch 32,
              float32: a Dense head to one output, mean squared error, Adam;
  gru-infer   the forward pass of a GRU of the same sizes, for inference (PyTorch: under
              no_grad; Keras: training=False).
Same timing as `gradtape bench` (medians of 15 rounds of about 20 ms).

    python bench/compare/rnn.py torch|tensorflow|jax
"""
import sys

import numpy as np

from core import emit, median_us

B, T, F, U = 32, 50, 64, 256
rng = np.random.default_rng(13)
X = rng.uniform(-1, 1, (B, T, F)).astype(np.float32)
Y = rng.uniform(-1, 1, (B, 1)).astype(np.float32)


def torch():
    import torch

    torch.set_num_threads(2)
    x, y = torch.tensor(X), torch.tensor(Y)
    lstm, head = torch.nn.LSTM(F, U, batch_first=True), torch.nn.Linear(U, 1)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)

    def step():
        opt.zero_grad()
        out, _ = lstm(x)
        loss = ((head(out[:, -1]) - y) ** 2).mean()
        loss.backward()
        opt.step()

    emit("torch", "lstm-train", *median_us(step))
    gru = torch.nn.GRU(F, U, batch_first=True)

    def infer():
        with torch.no_grad():
            gru(x)

    emit("torch", "gru-infer", *median_us(infer))


def tensorflow():
    import tensorflow as tf

    x, y = tf.constant(X), tf.constant(Y)
    lstm, head = tf.keras.layers.LSTM(U), tf.keras.layers.Dense(1)
    opt = tf.keras.optimizers.Adam(1e-3)
    lstm(x), head(tf.zeros((B, U)))
    variables = lstm.trainable_variables + head.trainable_variables

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((head(lstm(x, training=True)) - y) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    emit("tensorflow", "lstm-train", *median_us(lambda: step().numpy()))
    compiled = tf.function(step)
    emit("tensorflow-function", "lstm-train", *median_us(lambda: compiled().numpy()))
    gru = tf.keras.layers.GRU(U)
    emit("tensorflow", "gru-infer", *median_us(lambda: gru(x, training=False).numpy()))


def jax():
    import jax
    import jax.numpy as jnp

    k = jax.random.split(jax.random.PRNGKey(0), 8)
    p = {
        "w": jax.random.uniform(k[0], (F, 4 * U), minval=-0.1, maxval=0.1),
        "u": jax.random.uniform(k[1], (U, 4 * U), minval=-0.1, maxval=0.1),
        "b": jnp.zeros(4 * U),
        "hw": jax.random.uniform(k[2], (U, 1), minval=-0.1, maxval=0.1),
        "hb": jnp.zeros(1),
    }
    x, y = jnp.asarray(X), jnp.asarray(Y)

    def loss_fn(p):
        xp = x @ p["w"] + p["b"]

        def cell(carry, xt):
            h, c = carry
            z = xt + h @ p["u"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zeros = jnp.zeros((B, U))
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xp, 0, 1))
        return jnp.mean((h @ p["hw"] + p["hb"] - y) ** 2)

    def adam(p, g, m, v, t):
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        lr = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        p = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-7), p, m, v)
        return p, m, v

    @jax.jit
    def step(p, m, v, t):
        g = jax.grad(loss_fn)(p)
        return adam(p, g, m, v, t)

    state = [p, jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p), 1.0]

    def run():
        state[0], state[1], state[2] = step(state[0], state[1], state[2], state[3])
        state[3] += 1.0
        jax.block_until_ready(state[0])

    emit("jax", "lstm-train", *median_us(run))


if __name__ == "__main__":
    {"torch": torch, "tensorflow": tensorflow, "jax": jax}[sys.argv[1]]()
