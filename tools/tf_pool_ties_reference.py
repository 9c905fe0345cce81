#!/usr/bin/env python3
"""TensorFlow's max-pooling gradients where windows tie (tests/suite/layers_parity.rs).

Run by hand with TensorFlow installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu==2.21.0 numpy
    .venv/bin/python tools/tf_pool_ties_reference.py

It writes crates/gradtape/tests/fixtures/tf_pool_ties.json: for each case, the input (small
integers, so most windows hold several equal maxima), TensorFlow's pooled values, a cotangent
and the gradient with respect to the input. TensorFlow gives each window's gradient to its
first maximum in row-major order.
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(20261203)

CASES = [
    # name, input shape, ksize, strides, padding
    ("ones_2x2", (1, 2, 2, 1), 2, 2, "VALID"),
    ("same_stride2", (2, 5, 5, 3), 2, 2, "SAME"),
    ("valid_3x3_stride2", (1, 7, 6, 2), 3, 2, "VALID"),
    ("overlapping_stride1", (1, 4, 4, 2), 2, 1, "VALID"),
    ("pool1d_same", (2, 7, 3), 2, 2, "SAME"),
]


def tensor(x):
    return {"shape": list(x.shape), "values": np.asarray(x, dtype=np.float64).ravel().tolist()}


def main():
    out = []
    for name, shape, k, s, padding in CASES:
        if name == "ones_2x2":
            x = np.ones(shape)
        else:
            x = rng.integers(0, 3, shape).astype(np.float64)
        for dtype in (tf.float32, tf.float64):
            xt = tf.constant(x, dtype=dtype)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                if len(shape) == 3:
                    y = tf.nn.max_pool1d(xt, k, s, padding)
                else:
                    y = tf.nn.max_pool2d(xt, k, s, padding)
            cot = tf.constant(rng.integers(1, 5, y.shape), dtype=dtype)
            g = tape.gradient(y, xt, output_gradients=cot)
            out.append({
                "name": name,
                "dtype": dtype.name,
                "ksize": k,
                "strides": s,
                "padding": padding,
                "input": tensor(x),
                "value": tensor(y.numpy()),
                "cotangent": tensor(cot.numpy()),
                "grad": tensor(g.numpy()),
            })
    path = os.path.join(OUT, "tf_pool_ties.json")
    with open(path, "w") as f:
        json.dump({"tensorflow": tf.__version__, "cases": out}, f)
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
