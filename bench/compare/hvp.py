#!/usr/bin/env python3
"""`gradtape bench hvp` in TensorFlow, PyTorch and JAX: the Hessian-vector product of the loss
of an MLP 784-256-256-10 (ReLU, softmax cross-entropy from logits, batch 128, float32) with
respect to all its weights, forward over reverse. TensorFlow: ForwardAccumulator around a
GradientTape (eager and tf.function); PyTorch: torch.func.jvp of torch.func.grad; JAX:
jax.jvp of jax.grad under jit. Medians of 15 rounds of about 20 ms.

    python bench/compare/hvp.py tensorflow|torch|jax
"""
import sys

import numpy as np

from core import emit, median_us

rng = np.random.default_rng(0)
SIZES = [784, 256, 256, 10]
X = rng.uniform(0, 1, (128, 784)).astype(np.float32)
Y = (np.arange(128) % 10).astype(np.int64)
PARAMS = []
TANGENTS = []
for a, b in zip(SIZES, SIZES[1:]):
    lim = np.sqrt(6 / (a + b))
    PARAMS += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    TANGENTS += [rng.uniform(-1, 1, (a, b)).astype(np.float32), rng.uniform(-1, 1, b).astype(np.float32)]


def tensorflow():
    import tensorflow as tf

    x, y = tf.constant(X), tf.constant(Y)
    ps = [tf.Variable(p) for p in PARAMS]
    ts = [tf.constant(t) for t in TANGENTS]

    def hvp():
        with tf.autodiff.ForwardAccumulator(ps, ts) as acc:
            with tf.GradientTape() as tape:
                h = x
                for i in range(0, len(ps), 2):
                    h = tf.matmul(h, ps[i]) + ps[i + 1]
                    if i + 2 < len(ps):
                        h = tf.nn.relu(h)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
            grads = tape.gradient(loss, ps)
        return acc.jvp(grads)

    for mode, f in (("eager", hvp), ("tf.function", tf.function(hvp))):
        us, n = median_us(lambda: [np.asarray(r) for r in f()])
        emit("tensorflow " + mode, "hvp", us, n)


def torch():
    import torch
    from torch.func import grad, jvp

    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    ps = tuple(torch.from_numpy(p) for p in PARAMS)
    ts = tuple(torch.from_numpy(t) for t in TANGENTS)

    def loss(params):
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, y)

    us, n = median_us(lambda: [r.numpy() for r in jvp(grad(loss), (ps,), (ts,))[1]])
    emit("torch.func", "hvp", us, n)


def jax():
    import jax
    import jax.numpy as jnp

    x, y = jnp.asarray(X), jnp.asarray(Y)
    ps = tuple(jnp.asarray(p) for p in PARAMS)
    ts = tuple(jnp.asarray(t) for t in TANGENTS)

    def loss(params):
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = jax.nn.relu(h)
        return -jnp.mean(jax.nn.log_softmax(h)[jnp.arange(128), y])

    f = jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,))[1])
    us, n = median_us(lambda: jax.block_until_ready(f(ps, ts)))
    emit("jax jit", "hvp", us, n)
    # The same, returning the gradients as well, as an eager framework computes them: XLA can
    # no longer drop the products that only the gradients need.
    both = jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,)))
    us, n = median_us(lambda: jax.block_until_ready(both(ps, ts)))
    emit("jax jit (gradients too)", "hvp", us, n)


{"tensorflow": tensorflow, "torch": torch, "jax": jax}[sys.argv[1]]()
