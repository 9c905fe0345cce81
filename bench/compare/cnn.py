#!/usr/bin/env python3
"""`gradtape bench cnn` in TensorFlow, PyTorch and JAX: one Adam training step of a LeNet-style
network on 64 images of 28x28x1, float32: conv 3x3 1->32 + ReLU, max-pool 2, conv 3x3 32->64 +
ReLU, max-pool 2, flatten, Dense 128 + ReLU, Dense 10, softmax cross-entropy from logits
(valid padding). TensorFlow: Keras layers under a GradientTape (eager and tf.function);
PyTorch: torch.nn eager (NCHW, its native layout); JAX: lax.conv under jit with a hand-written
Adam. Medians of 15 rounds of about 20 ms.

    python bench/compare/cnn.py tensorflow|torch|jax
"""
import sys

import numpy as np

from core import emit, median_us

rng = np.random.default_rng(0)
X = rng.uniform(0, 1, (64, 28, 28, 1)).astype(np.float32)
Y = (np.arange(64) % 10).astype(np.int64)


def tensorflow():
    import tensorflow as tf
    import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10),
    ])
    opt = keras.optimizers.Adam(0.001)
    x, y = tf.constant(X), tf.constant(Y)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for mode, f in (("eager", step), ("tf.function", tf.function(step))):
        us, n = median_us(lambda: f().numpy())
        emit("tensorflow " + mode, "cnn", us, n)


def torch():
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), 0.001)
    x = torch.from_numpy(X).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(Y)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    us, n = median_us(step)
    emit("torch eager", "cnn", us, n)


def jax():
    import jax
    import jax.numpy as jnp

    def glorot(key, shape, fan_in, fan_out):
        lim = np.sqrt(6 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, jnp.float32, -lim, lim)

    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {
        "c1": (glorot(k[0], (3, 3, 1, 32), 9, 288), jnp.zeros(32)),
        "c2": (glorot(k[1], (3, 3, 32, 64), 288, 576), jnp.zeros(64)),
        "d1": (glorot(k[2], (1600, 128), 1600, 128), jnp.zeros(128)),
        "d2": (glorot(k[3], (128, 10), 128, 10), jnp.zeros(10)),
    }

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y + b)

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss(p, x, y):
        h = pool(conv(x, *p["c1"]))
        h = pool(conv(h, *p["c2"]))
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p["d1"][0] + p["d1"][1])
        logits = h @ p["d2"][0] + p["d2"][1]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])

    @jax.jit
    def step(p, m, v, t, x, y):
        g = jax.grad(loss)(p, x, y)
        t = t + 1
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        lr = 0.001 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        p = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-7), p, m, v)
        return p, m, v, t

    x, y = jnp.asarray(X), jnp.asarray(Y)
    state = [params, jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params), 0.0]

    def run():
        state[:] = step(*state, x, y)
        jax.block_until_ready(state[0])

    us, n = median_us(run)
    emit("jax jit", "cnn", us, n)


{"tensorflow": tensorflow, "torch": torch, "jax": jax}[sys.argv[1]]()
