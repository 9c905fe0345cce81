#!/usr/bin/env python3
"""TensorFlow reference numbers for gradtape's `linalg` (tests/suite/linalg.rs).

Run by hand with TensorFlow installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu==2.21.0 numpy
    .venv/bin/python tools/tf_linalg_reference.py

It writes crates/gradtape/tests/fixtures/tf_linalg.json: for each case and for float32 and
float64, the inputs, TensorFlow's result, a random cotangent and the gradients
(`tape.gradient(y, inputs, output_gradients=cotangent)`) with respect to every input (none for
`lstsq(fast=False)`, which TensorFlow does not differentiate). The cases
cover batches, broadcasting batch dimensions, both triangles with and without `adjoint`, a
near-singular positive-definite matrix (eigenvalues down to 1e-4), and for eigh, svd and qr the
functions of their factors that do not depend on each library's choice of signs.
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(20261203)


def spd(batch, n, smallest=None):
    """Symmetric positive definite: X Xᵀ + n I, or with eigenvalues from `smallest` to 1."""
    if smallest is None:
        x = rng.uniform(-1.0, 1.0, batch + (n, n))
        return x @ np.swapaxes(x, -1, -2) + n * np.eye(n)
    q, _ = np.linalg.qr(rng.uniform(-1.0, 1.0, (n, n)))
    eig = np.geomspace(smallest, 1.0, n)
    return (q * eig) @ q.T


def triangle(batch, n):
    """A well-conditioned matrix whose triangles are both usable: entries in ±0.5, 2.5 on the
    diagonal."""
    return rng.uniform(-0.5, 0.5, batch + (n, n)) + 2.5 * np.eye(n)


def expm_sym(a):
    """exp of the symmetric matrix read from a's lower triangle: V diag(exp e) Vᵀ."""
    e, v = tf.linalg.eigh(a)
    return tf.matmul(v * tf.exp(e)[..., None, :], v, adjoint_b=True)


def polar(a):
    """U Vᵀ of the thin SVD: the same whatever sign each pair of vectors has."""
    _, u, v = tf.linalg.svd(a)
    return tf.matmul(u, v, adjoint_b=True)


def qr_positive(a, full):
    """Q and R with R's diagonal made positive: the factorization without a sign choice."""
    q, r = tf.linalg.qr(a, full_matrices=full)
    k = min(a.shape[-2], a.shape[-1])
    d = tf.sign(tf.linalg.diag_part(r[..., :k, :k]))
    qk = q[..., :, :k] * d[..., None, :]
    return tf.concat([qk, q[..., :, k:]], -1), tf.concat([r[..., :k, :] * d[..., :, None], r[..., k:, :]], -2)


def with_spectrum(shape, values):
    """A matrix with these singular values (eigenvalues, when square: then symmetric)."""
    m, n = shape
    u, _ = np.linalg.qr(rng.uniform(-1, 1, (m, m)))
    if m == n:
        return (u * values) @ u.T
    v, _ = np.linalg.qr(rng.uniform(-1, 1, (n, n)))
    return (u[:, :n] * values) @ v.T


def rank2_3x3():
    """A 3x3 matrix of rank 2: its smallest singular value is below pinv's cutoff."""
    x, y = rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, (2, 3))
    return x @ y


CASES = [
    ("cholesky", lambda a: tf.linalg.cholesky(a), [spd((), 3)]),
    ("cholesky_batched", lambda a: tf.linalg.cholesky(a), [spd((2,), 4)]),
    ("cholesky_near_singular", lambda a: tf.linalg.cholesky(a), [spd((), 4, smallest=1e-4)]),
    ("triangular_solve_lower", lambda a, b: tf.linalg.triangular_solve(a, b, lower=True, adjoint=False),
     [triangle((), 3), rng.uniform(-1, 1, (3, 2))]),
    ("triangular_solve_lower_adjoint", lambda a, b: tf.linalg.triangular_solve(a, b, lower=True, adjoint=True),
     [triangle((), 3), rng.uniform(-1, 1, (3, 2))]),
    ("triangular_solve_upper", lambda a, b: tf.linalg.triangular_solve(a, b, lower=False, adjoint=False),
     [triangle((), 3), rng.uniform(-1, 1, (3, 2))]),
    ("triangular_solve_upper_adjoint", lambda a, b: tf.linalg.triangular_solve(a, b, lower=False, adjoint=True),
     [triangle((), 3), rng.uniform(-1, 1, (3, 2))]),
    ("triangular_solve_broadcast", lambda a, b: tf.linalg.triangular_solve(a, b, lower=True, adjoint=False),
     [triangle((2,), 3), rng.uniform(-1, 1, (3, 4))]),
    ("cholesky_solve", lambda l, b: tf.linalg.cholesky_solve(l, b),
     [np.linalg.cholesky(spd((), 3)), rng.uniform(-1, 1, (3, 2))]),
    ("logdet", lambda a: tf.linalg.logdet(a), [spd((2,), 3)]),
    ("logdet_near_singular", lambda a: tf.linalg.logdet(a), [spd((), 4, smallest=1e-4)]),
    ("solve", lambda a, b: tf.linalg.solve(a, b), [triangle((), 3), rng.uniform(-1, 1, (3, 2))]),
    ("solve_batched", lambda a, b: tf.linalg.solve(a, b),
     [rng.uniform(-1, 1, (2, 3, 3)) + 2.0 * np.eye(3), rng.uniform(-1, 1, (2, 3, 2))]),
    ("solve_pivoting", lambda a, b: tf.linalg.solve(a, b),
     [np.array([[1e-3, 2.0, 0.5], [1.0, 0.1, -0.3], [0.2, -1.0, 2.0]]), rng.uniform(-1, 1, (3, 1))]),
    ("inv", lambda a: tf.linalg.inv(a), [rng.uniform(-1, 1, (2, 3, 3)) + 2.0 * np.eye(3)]),
    ("det", lambda a: tf.linalg.det(a), [rng.uniform(-1, 1, (2, 3, 3)) + np.diag([2.0, -2.0, 2.0])]),
    ("slogdet", lambda a: tf.linalg.slogdet(a)[1],
     [rng.uniform(-1, 1, (2, 3, 3)) + np.diag([2.0, -2.0, 2.0])]),
    ("lstsq_tall", lambda a, b: tf.linalg.lstsq(a, b), [rng.uniform(-1, 1, (5, 2)), rng.uniform(-1, 1, (5, 2))]),
    ("lstsq_wide", lambda a, b: tf.linalg.lstsq(a, b), [rng.uniform(-1, 1, (2, 4)), rng.uniform(-1, 1, (2, 1))]),
    ("lstsq_regularized", lambda a, b: tf.linalg.lstsq(a, b, l2_regularizer=0.5),
     [rng.uniform(-1, 1, (2, 4, 3)), rng.uniform(-1, 1, (2, 4, 2))]),
    ("diag_part", lambda a: tf.linalg.diag_part(a), [rng.uniform(-1, 1, (2, 3, 3))]),
    ("diag", lambda d: tf.linalg.diag(d), [rng.uniform(-1, 1, (2, 3))]),
    ("norm_all", lambda a: tf.norm(a), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_vector_1", lambda a: tf.norm(a, ord=1, axis=-1), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_vector_inf", lambda a: tf.norm(a, ord=np.inf, axis=1, keepdims=True), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_vector_3", lambda a: tf.norm(a, ord=3, axis=0), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_fro", lambda a: tf.norm(a, ord="fro", axis=[-2, -1]), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_matrix_1", lambda a: tf.norm(a, ord=1, axis=[-2, -1]), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_matrix_inf", lambda a: tf.norm(a, ord=np.inf, axis=[1, 2], keepdims=True), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("set_diag", lambda a, d: tf.linalg.set_diag(a, d), [rng.uniform(-1, 1, (2, 3, 3)), rng.uniform(-1, 1, (2, 3))]),
    ("trace", lambda a: tf.linalg.trace(a), [rng.uniform(-1, 1, (2, 3, 3))]),
    ("diag_part_above", lambda a: tf.linalg.diag_part(a, k=1), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("diag_part_below", lambda a: tf.linalg.diag_part(a, k=-2), [rng.uniform(-1, 1, (4, 3))]),
    ("diag_below", lambda d: tf.linalg.diag(d, k=-1), [rng.uniform(-1, 1, (2, 3))]),
    ("set_diag_above", lambda a, d: tf.linalg.set_diag(a, d, k=2),
     [rng.uniform(-1, 1, (2, 3, 4)), rng.uniform(-1, 1, (2, 2))]),
    ("trace_not_square", lambda a: tf.linalg.trace(a), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("band_part", lambda a: tf.linalg.band_part(a, 1, 0), [rng.uniform(-1, 1, (3, 4))]),
    ("matrix_transpose", lambda a: tf.linalg.matrix_transpose(a), [rng.uniform(-1, 1, (2, 3, 4))]),
    # The factors' signs are each library's choice, so these cases compare what does not depend
    # on them: values, products of a vector with itself or with its partner, and QR with R's
    # diagonal made positive. The eigh inputs are not symmetric: both read the lower triangle.
    ("eigh_values", lambda a: tf.linalg.eigh(a)[0], [rng.uniform(-1, 1, (2, 4, 4))]),
    ("eigvalsh", lambda a: tf.linalg.eigvalsh(a), [rng.uniform(-1, 1, (3, 3))]),
    ("eigh_vectors_squared", lambda a: tf.square(tf.linalg.eigh(a)[1]), [rng.uniform(-1, 1, (2, 3, 3))]),
    ("eigh_function", lambda a: expm_sym(a), [rng.uniform(-1, 1, (4, 4))]),
    # eigenvalues and singular values 1e-5 apart: the vectors turn fast, but what does not
    # depend on the choice of vectors in the nearly repeated space stays smooth
    ("eigh_function_near_degenerate", lambda a: expm_sym(a), [with_spectrum((4, 4), [1.0, 1.0 + 1e-5, 2.0, 3.0])]),
    ("svd_polar_near_degenerate", lambda a: polar(a), [with_spectrum((5, 3), [2.0, 1.0 + 1e-5, 1.0])]),
    ("svd_values_tall", lambda a: tf.linalg.svd(a, compute_uv=False), [rng.uniform(-1, 1, (5, 3))]),
    ("svd_values_wide", lambda a: tf.linalg.svd(a, compute_uv=False), [rng.uniform(-1, 1, (2, 3, 5))]),
    ("svd_polar_tall", lambda a: polar(a), [rng.uniform(-1, 1, (5, 3))]),
    ("svd_polar_wide", lambda a: polar(a), [rng.uniform(-1, 1, (3, 5))]),
    ("svd_polar_square", lambda a: polar(a), [rng.uniform(-1, 1, (2, 4, 4))]),
    ("svd_u_squared_tall", lambda a: tf.square(tf.linalg.svd(a)[1]), [rng.uniform(-1, 1, (5, 3))]),
    ("svd_v_squared_wide", lambda a: tf.square(tf.linalg.svd(a)[2]), [rng.uniform(-1, 1, (3, 5))]),
    ("svd_full_u_squared", lambda a: tf.square(tf.linalg.svd(a, full_matrices=True)[1]),
     [rng.uniform(-1, 1, (4, 3))]),
    ("qr_q_tall", lambda a: qr_positive(a, False)[0], [rng.uniform(-1, 1, (5, 3))]),
    ("qr_r_tall", lambda a: qr_positive(a, False)[1], [rng.uniform(-1, 1, (2, 5, 3))]),
    ("qr_q_wide", lambda a: qr_positive(a, False)[0], [rng.uniform(-1, 1, (3, 5))]),
    ("qr_r_wide", lambda a: qr_positive(a, False)[1], [rng.uniform(-1, 1, (2, 3, 5))]),
    ("qr_complete_wide", lambda a: qr_positive(a, True)[1], [rng.uniform(-1, 1, (3, 4))]),
    ("qr_square", lambda a: qr_positive(a, False)[0], [rng.uniform(-1, 1, (4, 4))]),
    ("pinv_tall", lambda a: tf.linalg.pinv(a), [rng.uniform(-1, 1, (4, 3))]),
    ("pinv_wide", lambda a: tf.linalg.pinv(a), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("pinv_rank_deficient", lambda a: tf.linalg.pinv(a), [rank2_3x3()]),
    # fast=False: TensorFlow gives values only ("Gradient not defined for fast=False")
    ("lstsq_robust_tall", lambda a, b: tf.linalg.lstsq(a, b, fast=False),
     [rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (5, 2))]),
    ("lstsq_robust_wide", lambda a, b: tf.linalg.lstsq(a, b, fast=False),
     [rng.uniform(-1, 1, (2, 2, 4)), rng.uniform(-1, 1, (2, 2, 1))]),
    ("lstsq_robust_rank_deficient", lambda a, b: tf.linalg.lstsq(a, b, fast=False),
     [rng.uniform(-1, 1, (5, 2)) @ rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (5, 2))]),
    ("norm_2", lambda a: tf.norm(a, ord=2, axis=[-2, -1]), [rng.uniform(-1, 1, (2, 3, 4))]),
    ("norm_2_keepdims", lambda a: tf.norm(a, ord=2, axis=[0, 2], keepdims=True), [rng.uniform(-1, 1, (3, 2, 4))]),
]


def tensor(x):
    return {"shape": list(x.shape), "values": np.asarray(x, dtype=np.float64).ravel().tolist()}


def main():
    out = []
    for name, fn, inputs in CASES:
        for dtype in (tf.float32, tf.float64):
            xs = [tf.constant(v, dtype=dtype) for v in inputs]
            with tf.GradientTape() as tape:
                for x in xs:
                    tape.watch(x)
                y = fn(*xs)
            cot = tf.constant(rng.uniform(-1.0, 1.0, y.shape), dtype=dtype)
            no_gradient = name.startswith("lstsq_robust")
            grads = [] if no_gradient else tape.gradient(y, xs, output_gradients=cot)
            out.append({
                "name": name,
                "dtype": dtype.name,
                "inputs": [tensor(x.numpy()) for x in xs],
                "value": tensor(y.numpy()),
                "cotangent": tensor(cot.numpy()),
                "grads": [tensor(g.numpy()) for g in grads],
            })
    path = os.path.join(OUT, "tf_linalg.json")
    with open(path, "w") as f:
        json.dump({"tensorflow": tf.__version__, "cases": out}, f)
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
