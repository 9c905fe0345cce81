#!/usr/bin/env python3
"""The jacobian workloads of `gradtape bench` in TensorFlow (eager and tf.function), PyTorch
(`torch.func`) and JAX (jit), float32, one JSON object per line like `gradtape bench --json`:
  batch-jacobian     batch_jacobian of tanh(x W + b), x [64, 256], W [256, 256] -> [64, 256, 256]
                     (PyTorch: vmap(jacrev) over the examples; JAX: vmap(jacrev), jit)
  jacobian-w         jacobian of tanh(x W) with respect to W, x [8, 64], W [64, 64]
                     -> [8, 64, 64, 64] (PyTorch: jacrev; JAX: jacrev, jit)
  per-example-grads  per-example gradients of an MLP 784-256-10 (ReLU, softmax cross-entropy
                     from logits), batch 128 (TensorFlow: jacobian of the per-example losses;
                     PyTorch: vmap(grad); JAX: vmap(grad), jit)
Each figure is the median of 15 rounds of about 20 ms, forward pass included, results forced.

    python bench/compare/jacobian.py tensorflow|torch|jax
"""
import sys

import numpy as np

from core import emit, median_us

rng = np.random.default_rng(0)
BX = rng.uniform(-1, 1, (64, 256)).astype(np.float32)
BW = rng.uniform(-0.1, 0.1, (256, 256)).astype(np.float32)
BB = rng.uniform(-0.1, 0.1, (256,)).astype(np.float32)
JX = rng.uniform(-1, 1, (8, 64)).astype(np.float32)
JW = rng.uniform(-0.1, 0.1, (64, 64)).astype(np.float32)
PX = rng.uniform(0, 1, (128, 784)).astype(np.float32)
PY = (np.arange(128) % 10).astype(np.int64)
W1 = rng.uniform(-0.05, 0.05, (784, 256)).astype(np.float32)
B1 = np.zeros(256, np.float32)
W2 = rng.uniform(-0.1, 0.1, (256, 10)).astype(np.float32)
B2 = np.zeros(10, np.float32)


def tensorflow():
    import tensorflow as tf

    bx, bw, bb = tf.constant(BX), tf.constant(BW), tf.constant(BB)
    jx, jw = tf.constant(JX), tf.Variable(JW)
    px, py = tf.constant(PX), tf.constant(PY)
    w1, b1, w2, b2 = (tf.Variable(v) for v in (W1, B1, W2, B2))

    def batch_jacobian():
        with tf.GradientTape() as t:
            t.watch(bx)
            y = tf.tanh(tf.matmul(bx, bw) + bb)
        return t.batch_jacobian(y, bx)

    def jacobian_w():
        with tf.GradientTape() as t:
            y = tf.tanh(tf.matmul(jx, jw))
        return t.jacobian(y, jw)

    def per_example():
        with tf.GradientTape() as t:
            h = tf.nn.relu(tf.matmul(px, w1) + b1)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=py, logits=tf.matmul(h, w2) + b2)
        return t.jacobian(losses, [w1, b1, w2, b2])

    for name, f in (("batch-jacobian", batch_jacobian), ("jacobian-w", jacobian_w), ("per-example-grads", per_example)):
        for mode, g in (("eager", f), ("tf.function", tf.function(f))):
            us, n = median_us(lambda: [np.asarray(r) for r in tf.nest.flatten(g())])
            emit("tensorflow " + mode, name, us, n)


def torch():
    import torch
    from torch.func import grad, jacrev, vmap

    torch.set_grad_enabled(True)
    bx, bw, bb = (torch.from_numpy(v) for v in (BX, BW, BB))
    jx, jw = torch.from_numpy(JX), torch.from_numpy(JW)
    px, py = torch.from_numpy(PX), torch.from_numpy(PY)
    params = tuple(torch.from_numpy(v) for v in (W1, B1, W2, B2))

    def layer(x):
        return torch.tanh(x @ bw + bb)

    def loss(p, x, y):
        h = torch.relu(x @ p[0] + p[1])
        return torch.nn.functional.cross_entropy((h @ p[2] + p[3])[None], y[None])

    work = (
        ("batch-jacobian", lambda: vmap(jacrev(layer))(bx)),
        ("jacobian-w", lambda: jacrev(lambda w: torch.tanh(jx @ w))(jw)),
        ("per-example-grads", lambda: vmap(grad(loss), in_dims=(None, 0, 0))(params, px, py)),
    )
    for name, f in work:
        us, n = median_us(lambda: [r.numpy() for r in torch.utils._pytree.tree_leaves(f())])
        emit("torch.func", name, us, n)


def jax():
    import jax
    import jax.numpy as jnp

    bx, bw, bb = jnp.asarray(BX), jnp.asarray(BW), jnp.asarray(BB)
    jx, jw = jnp.asarray(JX), jnp.asarray(JW)
    px, py = jnp.asarray(PX), jnp.asarray(PY)
    params = tuple(jnp.asarray(v) for v in (W1, B1, W2, B2))

    def loss(p, x, y):
        h = jax.nn.relu(x @ p[0] + p[1])
        logits = h @ p[2] + p[3]
        return -jax.nn.log_softmax(logits)[y]

    work = (
        ("batch-jacobian", jax.jit(lambda x: jax.vmap(jax.jacrev(lambda v: jnp.tanh(v @ bw + bb)))(x)), (bx,)),
        ("jacobian-w", jax.jit(jax.jacrev(lambda w: jnp.tanh(jx @ w))), (jw,)),
        ("per-example-grads", jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))), (params, px, py)),
    )
    for name, f, args in work:
        us, n = median_us(lambda: jax.block_until_ready(f(*args)))
        emit("jax jit", name, us, n)


{"tensorflow": tensorflow, "torch": torch, "jax": jax}[sys.argv[1]]()
