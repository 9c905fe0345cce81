#!/usr/bin/env python3
"""TensorFlow's jacobians, for gradtape's parity test tests/suite/jacobian.rs.

Run by hand with TensorFlow installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu numpy
    .venv/bin/python tools/tf_jacobian_reference.py

It writes crates/gradtape/tests/fixtures/tf_jacobian.json: for each case, the inputs and
TensorFlow's results in float32 and float64 (`null` where TensorFlow returns None):
  vector      jacobian of sin(x) * x, x [3]
  dense       jacobian of tanh(x W + b) with respect to W, b, x and an unconnected z
              (unconnected_gradients NONE and ZERO)
  batch       batch_jacobian of tanh(x W + b) with respect to x, x [4, 3]
  hessian     outer.jacobian(inner.gradient(sum(exp(x) x^2), x), x), x [3]
  per_example jacobian of the per-example loss vector of a 3-5-2 MLP (tanh, softmax
              cross-entropy from logits) with respect to both weight matrices: per-example
              gradients, TensorFlow's way
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(11)


def arr(t):
    return None if t is None else {"shape": list(t.shape), "values": np.asarray(t, np.float64).ravel().tolist()}


inputs = {
    "x3": rng.uniform(-1.5, 1.5, [3]),
    "x23": rng.uniform(-1, 1, [2, 3]),
    "w34": rng.uniform(-1, 1, [3, 4]),
    "b4": rng.uniform(-0.5, 0.5, [4]),
    "z": rng.uniform(-1, 1, [2]),
    "x43": rng.uniform(-1, 1, [4, 3]),
    "w35": rng.uniform(-1, 1, [3, 5]),
    "b5": rng.uniform(-0.5, 0.5, [5]),
    "w52": rng.uniform(-1, 1, [5, 2]),
    "labels": np.array([0, 1, 1, 0], dtype=np.int64),
}


def run(dtype):
    c = {k: tf.constant(v, dtype=dtype) if v.dtype != np.int64 else tf.constant(v) for k, v in inputs.items()}
    out = {}
    x = tf.Variable(c["x3"])
    with tf.GradientTape() as t:
        y = tf.sin(x) * x
    out["vector"] = arr(t.jacobian(y, x))

    x, w, b, z = (tf.Variable(c[k]) for k in ("x23", "w34", "b4", "z"))
    with tf.GradientTape(persistent=True) as t:
        y = tf.tanh(tf.matmul(x, w) + b)
    jw, jb, jx, jz = t.jacobian(y, [w, b, x, z])
    jz0 = t.jacobian(y, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    out["dense"] = {"w": arr(jw), "b": arr(jb), "x": arr(jx), "z": arr(jz), "z_zero": arr(jz0)}

    x = tf.Variable(c["x43"])
    with tf.GradientTape() as t:
        y = tf.tanh(tf.matmul(x, c["w35"]) + c["b5"])
    out["batch"] = arr(t.batch_jacobian(y, x))

    x = tf.Variable(c["x3"])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            f = tf.reduce_sum(tf.exp(x) * x * x)
        g = inner.gradient(f, x)
    out["hessian"] = arr(outer.jacobian(g, x))

    w1, w2 = tf.Variable(c["w35"]), tf.Variable(c["w52"])
    with tf.GradientTape() as t:
        logits = tf.matmul(tf.tanh(tf.matmul(c["x43"], w1)), w2)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=c["labels"], logits=logits)
    j1, j2 = t.jacobian(losses, [w1, w2])
    out["per_example"] = {"w1": arr(j1), "w2": arr(j2)}
    return out


fixture = {
    "tensorflow": tf.__version__,
    "inputs": {k: {"shape": list(v.shape), "values": v.ravel().tolist()} for k, v in inputs.items()},
    "float32": run(tf.float32),
    "float64": run(tf.float64),
}
with open(os.path.join(OUT, "tf_jacobian.json"), "w") as f:
    json.dump(fixture, f)
print("wrote tf_jacobian.json with TensorFlow", tf.__version__)
