#!/usr/bin/env python3
"""`gradtape bench linalg` in NumPy (LAPACK through its bundled OpenBLAS), JAX jit, PyTorch and
TensorFlow, float64, the same sizes and the same timing as `gradtape bench` (medians of 15
rounds of about 20 ms):
  linalg-cholesky  Cholesky of a 1024 x 1024 SPD matrix (X Xᵀ + n I);
  linalg-gp        an RBF-kernel Gaussian process's negative log marginal likelihood at
                   n = 2,000 and its gradient with respect to the three log hyperparameters;
  linalg-solve3    10,000 batched 3 x 3 solves and the gradient of Σ x² with respect to the
                   matrices and right-hand sides (NumPy: the solve only, it has no gradient);
  linalg-svd       the SVD of a 512 x 512 float32 matrix, values and vectors (thin; square).

    python bench/compare/linalg.py numpy|jax|torch|tensorflow
"""
import sys

import numpy as np

from core import emit, median_us

rng = np.random.default_rng(12)
N_CHOL, N_GP, N_SOLVE = 1024, 2000, 10_000
X = rng.uniform(-1, 1, (N_CHOL, N_CHOL))
SPD = X @ X.T + N_CHOL * np.eye(N_CHOL)
GX = rng.uniform(-4, 4, (N_GP, 1))
GY = np.sin(GX) + rng.normal(0, 0.2, (N_GP, 1))
D2 = (GX - GX.T) ** 2
A3 = rng.uniform(-1, 1, (N_SOLVE, 3, 3)) + 3 * np.eye(3)
B3 = rng.uniform(-1, 1, (N_SOLVE, 3, 1))
SVD_A = rng.uniform(-1, 1, (512, 512)).astype(np.float32)
THETA = np.array([0.0, 0.0, -2.0])


def numpy():
    emit("numpy", "linalg-cholesky", *median_us(lambda: np.linalg.cholesky(SPD)))
    emit("numpy", "linalg-solve3", *median_us(lambda: np.linalg.solve(A3, B3)), note="no gradient")
    emit("numpy", "linalg-svd", *median_us(lambda: np.linalg.svd(SVD_A, full_matrices=False)))


def jax():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    spd, d2, y, a3, b3 = map(jnp.asarray, (SPD, D2, GY, A3, B3))
    chol = jax.jit(jnp.linalg.cholesky)
    emit("jax", "linalg-cholesky", *median_us(lambda: chol(spd).block_until_ready()))

    def nll(theta):
        k = jnp.exp(theta[1]) * jnp.exp(-0.5 * d2 * jnp.exp(-2 * theta[0]))
        k = k + jnp.exp(theta[2]) * jnp.eye(N_GP)
        l = jnp.linalg.cholesky(k)
        alpha = jax.scipy.linalg.cho_solve((l, True), y)
        return 0.5 * jnp.sum(y * alpha) + jnp.sum(jnp.log(jnp.diag(l)))

    gp = jax.jit(jax.value_and_grad(nll))
    theta = jnp.asarray(THETA)
    emit("jax", "linalg-gp", *median_us(lambda: gp(theta)[1].block_until_ready()))

    def solve_loss(a, b):
        return jnp.sum(jnp.linalg.solve(a, b) ** 2)

    solve3 = jax.jit(jax.grad(solve_loss, argnums=(0, 1)))
    emit("jax", "linalg-solve3", *median_us(lambda: solve3(a3, b3)[0].block_until_ready()))
    svd = jax.jit(lambda a: jnp.linalg.svd(a, full_matrices=False))
    sa = jnp.asarray(SVD_A)
    emit("jax", "linalg-svd", *median_us(lambda: svd(sa)[1].block_until_ready()))


def torch():
    import torch

    torch.set_num_threads(2)
    spd = torch.tensor(SPD)
    emit("torch", "linalg-cholesky", *median_us(lambda: torch.linalg.cholesky(spd)))
    d2, y = torch.tensor(D2), torch.tensor(GY)

    def gp():
        theta = torch.tensor(THETA, requires_grad=True)
        k = torch.exp(theta[1]) * torch.exp(-0.5 * d2 * torch.exp(-2 * theta[0]))
        k = k + torch.exp(theta[2]) * torch.eye(N_GP, dtype=torch.float64)
        l = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(y, l)
        loss = 0.5 * (y * alpha).sum() + torch.log(torch.diagonal(l)).sum()
        loss.backward()

    emit("torch", "linalg-gp", *median_us(gp))

    def solve3():
        a = torch.tensor(A3, requires_grad=True)
        b = torch.tensor(B3, requires_grad=True)
        (torch.linalg.solve(a, b) ** 2).sum().backward()

    emit("torch", "linalg-solve3", *median_us(solve3))
    sa = torch.tensor(SVD_A)
    emit("torch", "linalg-svd", *median_us(lambda: torch.linalg.svd(sa, full_matrices=False)))


def tensorflow():
    import tensorflow as tf

    spd = tf.constant(SPD)
    emit("tensorflow", "linalg-cholesky", *median_us(lambda: tf.linalg.cholesky(spd).numpy()))
    d2, y = tf.constant(D2), tf.constant(GY)
    theta = tf.Variable(THETA)

    def gp():
        with tf.GradientTape() as tape:
            k = tf.exp(theta[1]) * tf.exp(-0.5 * d2 * tf.exp(-2 * theta[0]))
            k = k + tf.exp(theta[2]) * tf.eye(N_GP, dtype=tf.float64)
            l = tf.linalg.cholesky(k)
            alpha = tf.linalg.cholesky_solve(l, y)
            loss = 0.5 * tf.reduce_sum(y * alpha) + tf.reduce_sum(tf.math.log(tf.linalg.diag_part(l)))
        return tape.gradient(loss, theta)

    emit("tensorflow", "linalg-gp", *median_us(lambda: gp().numpy()))
    gp_fn = tf.function(gp)
    emit("tensorflow-function", "linalg-gp", *median_us(lambda: gp_fn().numpy()))
    a3, b3 = tf.constant(A3), tf.constant(B3)

    def solve3():
        with tf.GradientTape() as tape:
            tape.watch([a3, b3])
            loss = tf.reduce_sum(tf.linalg.solve(a3, b3) ** 2)
        ga, gb = tape.gradient(loss, [a3, b3])
        return ga.numpy()

    emit("tensorflow", "linalg-solve3", *median_us(solve3))
    sa = tf.constant(SVD_A)
    emit("tensorflow", "linalg-svd", *median_us(lambda: tf.linalg.svd(sa)[1].numpy()))


if __name__ == "__main__":
    {"numpy": numpy, "jax": jax, "torch": torch, "tensorflow": tensorflow}[sys.argv[1]]()
