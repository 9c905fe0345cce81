#!/usr/bin/env python3
"""What TensorFlow gives for a NaN input, op by op: the fixture of
crates/gradtape/tests/bad_inputs.rs::nan_propagates_through_every_op_as_in_tensorflow.

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu
    .venv/bin/python tools/tf_nan_reference.py

Each row applies one op to x = [1, NaN, -2, 3] (float32; a [1, 2, 2, 1] image for pooling)
and records the output, NaN written as null (JSON has no NaN), in
crates/gradtape/tests/fixtures/nan_tf.json. The row names are the Rust test's.
"""
import json
import math
import os

import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")

x = tf.constant([1.0, float("nan"), -2.0, 3.0], tf.float32)
img = tf.reshape(x, [1, 2, 2, 1])

ROWS = {
    "relu": lambda: tf.nn.relu(x),
    "Activation::Relu": lambda: tf.keras.activations.relu(x),
    "elu": lambda: tf.nn.elu(x),
    "selu": lambda: tf.nn.selu(x),
    "softplus": lambda: tf.nn.softplus(x),
    "sigmoid": lambda: tf.sigmoid(x),
    "tanh": lambda: tf.tanh(x),
    "abs": lambda: tf.abs(x),
    "sign": lambda: tf.sign(x),
    "maximum(x, 0)": lambda: tf.maximum(x, 0.0),
    "maximum(0, x)": lambda: tf.maximum(0.0, x),
    "minimum(x, 0)": lambda: tf.minimum(x, 0.0),
    "minimum(0, x)": lambda: tf.minimum(0.0, x),
    "clip_by_value": lambda: tf.clip_by_value(x, -1.0, 1.0),
    "round": lambda: tf.round(x),
    "floor": lambda: tf.floor(x),
    "reduce_max": lambda: tf.reduce_max(x),
    "reduce_min": lambda: tf.reduce_min(x),
    "reduce_sum": lambda: tf.reduce_sum(x),
    "reduce_mean": lambda: tf.reduce_mean(x),
    "logsumexp": lambda: tf.reduce_logsumexp(x),
    "softmax": lambda: tf.nn.softmax(x, axis=-1),
    "max_pool2d": lambda: tf.nn.max_pool2d(img, 2, 2, "VALID"),
    "avg_pool2d": lambda: tf.nn.avg_pool2d(img, 2, 2, "VALID"),
    "max_pool2d same": lambda: tf.nn.max_pool2d(img, 2, 1, "SAME"),
    "matmul": lambda: tf.matmul(tf.reshape(x, [1, 4]), tf.ones([4, 1])),
}


def plain(v):
    return None if math.isnan(v) else v


with tf.device("/CPU:0"):
    out = {
        name: [plain(float(v)) for v in tf.reshape(f(), [-1]).numpy()]
        for name, f in ROWS.items()
    }
out["_version"] = tf.__version__
with open(os.path.join(OUT, "nan_tf.json"), "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(json.dumps(out))
