#!/usr/bin/env python3
"""TensorFlow reference numbers for gradtape's `linalg` (tests/suite/linalg.rs).

Run by hand with TensorFlow installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu==2.21.0 numpy
    .venv/bin/python tools/tf_linalg_reference.py

It writes crates/gradtape/tests/fixtures/tf_linalg.json: for each case and for float32 and
float64, the inputs, TensorFlow's result, a random cotangent and the gradients
(`tape.gradient(y, inputs, output_gradients=cotangent)`) with respect to every input. The cases
cover batches, broadcasting batch dimensions, both triangles with and without `adjoint`, and a
near-singular positive-definite matrix (eigenvalues down to 1e-4).
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
    ("band_part", lambda a: tf.linalg.band_part(a, 1, 0), [rng.uniform(-1, 1, (3, 4))]),
    ("matrix_transpose", lambda a: tf.linalg.matrix_transpose(a), [rng.uniform(-1, 1, (2, 3, 4))]),
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
            grads = tape.gradient(y, xs, output_gradients=cot)
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
