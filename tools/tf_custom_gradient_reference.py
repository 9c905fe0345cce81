#!/usr/bin/env python3
"""TensorFlow's tf.custom_gradient, for gradtape's test tests/suite/custom_gradient.rs.

    .venv/bin/pip install tensorflow-cpu numpy && .venv/bin/python tools/tf_custom_gradient_reference.py

Writes crates/gradtape/tests/fixtures/tf_custom_gradient.json, float32 and float64:
  log1pexp   TensorFlow's documented example at x = 0, 10, 100: values and gradients
  clip       an identity whose gradient is clipped to [-1, 1], under loss sum(y * c)
  second     softplus with the custom gradient sigmoid(x) dy: first and second derivatives
             through nested tapes
  variable   y = x * w with w a variable read inside the forward (the `variables=` rule)
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")


def run(dtype):
    out = {}

    @tf.custom_gradient
    def log1pexp(x):
        e = tf.exp(x)

        def grad(dy):
            return dy * (1 - 1 / (1 + e))

        return tf.math.log(1 + e), grad

    x = tf.constant([0.0, 10.0, 100.0], dtype=dtype)
    with tf.GradientTape() as t:
        t.watch(x)
        y = log1pexp(x)
    out["log1pexp"] = {"x": x.numpy().tolist(), "y": y.numpy().tolist(), "grad": t.gradient(y, x).numpy().tolist()}

    @tf.custom_gradient
    def clip_grad(x):
        def grad(dy):
            return tf.clip_by_value(dy, -1.0, 1.0)

        return tf.identity(x), grad

    x = tf.constant([1.0, 2.0, 3.0], dtype=dtype)
    c = tf.constant([5.0, -0.5, -2.0], dtype=dtype)
    with tf.GradientTape() as t:
        t.watch(x)
        loss = tf.reduce_sum(clip_grad(x) * c)
    out["clip"] = {"x": x.numpy().tolist(), "c": c.numpy().tolist(), "grad": t.gradient(loss, x).numpy().tolist()}

    @tf.custom_gradient
    def softplus(x):
        def grad(dy):
            return dy * tf.sigmoid(x)

        return tf.math.softplus(x), grad

    x = tf.constant([-1.5, 0.25, 2.0], dtype=dtype)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(softplus(x))
        g = inner.gradient(y, x)
    h = outer.gradient(g, x)
    out["second"] = {"x": x.numpy().tolist(), "grad": g.numpy().tolist(), "second": h.numpy().tolist()}

    w = tf.Variable([0.5, -2.0], dtype=dtype)

    @tf.custom_gradient
    def scale(x):
        y = x * w

        def grad(dy, variables=None):
            return dy * w, [dy * x]

        return y, grad

    x = tf.constant([3.0, 4.0], dtype=dtype)
    with tf.GradientTape() as t:
        t.watch(x)
        loss = tf.reduce_sum(tf.square(scale(x)))
    gx, gw = t.gradient(loss, [x, w])
    out["variable"] = {"x": x.numpy().tolist(), "w": w.numpy().tolist(), "gx": gx.numpy().tolist(), "gw": gw.numpy().tolist()}
    return out


def clean(v):
    """JSON has no infinities: they are written as the strings "inf" and "-inf"."""
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


fixture = clean({"tensorflow": tf.__version__, "float32": run(tf.float32), "float64": run(tf.float64)})
with open(os.path.join(OUT, "tf_custom_gradient.json"), "w") as f:
    json.dump(fixture, f, allow_nan=False)
print("wrote tf_custom_gradient.json with TensorFlow", tf.__version__)
