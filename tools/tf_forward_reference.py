#!/usr/bin/env python3
"""TensorFlow's tf.autodiff.ForwardAccumulator, for gradtape's test tests/suite/forward_mode.rs.

    .venv/bin/pip install tensorflow-cpu numpy && .venv/bin/python tools/tf_forward_reference.py

Writes crates/gradtape/tests/fixtures/tf_forward.json, float32 and float64:
  ops   jvp of y = tanh(x W) * exp(-x W) + sum(x²) with two primals (x, W) and their tangents
  hvp   the Hessian-vector product of a 3-4-2 MLP's softmax cross-entropy loss with respect to
        both weight matrices, forward over reverse (TensorFlow's documented recipe)
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(5)
inputs = {
    "x": rng.uniform(-1, 1, (2, 3)),
    "w": rng.uniform(-1, 1, (3, 3)),
    "tx": rng.uniform(-1, 1, (2, 3)),
    "tw": rng.uniform(-1, 1, (3, 3)),
    "data": rng.uniform(-1, 1, (5, 3)),
    "w1": rng.uniform(-1, 1, (3, 4)),
    "w2": rng.uniform(-1, 1, (4, 2)),
    "v1": rng.uniform(-1, 1, (3, 4)),
    "v2": rng.uniform(-1, 1, (4, 2)),
    "labels": np.array([0, 1, 1, 0, 1]),
}


def run(dtype):
    c = {k: tf.constant(v, dtype=dtype) if k != "labels" else tf.constant(v) for k, v in inputs.items()}
    out = {}
    x, w = c["x"], c["w"]
    with tf.autodiff.ForwardAccumulator([x, w], [c["tx"], c["tw"]]) as acc:
        xw = tf.matmul(x, w)
        y = tf.tanh(xw) * tf.exp(-xw) + tf.reduce_sum(x * x)
    out["ops"] = acc.jvp(y).numpy().ravel().tolist()

    w1, w2 = tf.Variable(c["w1"]), tf.Variable(c["w2"])
    with tf.autodiff.ForwardAccumulator([w1, w2], [c["v1"], c["v2"]]) as acc:
        with tf.GradientTape() as tape:
            logits = tf.matmul(tf.tanh(tf.matmul(c["data"], w1)), w2)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=c["labels"], logits=logits))
        g1, g2 = tape.gradient(loss, [w1, w2])
    out["hvp"] = {"w1": acc.jvp(g1).numpy().ravel().tolist(), "w2": acc.jvp(g2).numpy().ravel().tolist()}
    return out


fixture = {
    "tensorflow": tf.__version__,
    "inputs": {k: {"shape": list(v.shape), "values": v.ravel().tolist()} for k, v in inputs.items()},
    "float32": run(tf.float32),
    "float64": run(tf.float64),
}
with open(os.path.join(OUT, "tf_forward.json"), "w") as f:
    json.dump(fixture, f, allow_nan=False)
print("wrote tf_forward.json with TensorFlow", tf.__version__)
