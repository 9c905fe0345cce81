#!/usr/bin/env python3
"""Keras's convolution, pooling, normalization, embedding and attention layers, for gradtape's
test tests/suite/layers_parity.rs.

    .venv/bin/pip install tensorflow-cpu numpy && .venv/bin/python tools/keras_layers_reference.py

Writes crates/gradtape/tests/fixtures/keras_layers.json. For each case and for float32 and
float64: the input, the layer's weights (set from seeded random numbers), the output, and, for
the loss sum(output * r) with a random r, the gradients with respect to the input (float inputs)
and to every trainable weight. BatchNormalization also records its moving statistics and
weights after three SGD steps (lr 0.1) on that loss, and its inference output afterwards.
Tensors are {"shape": [...], "values": [...]}, weights keyed by their last path component
(kernel, bias, gamma, ..., query/kernel for attention).
"""
import json
import os

import numpy as np
import tensorflow as tf
import keras

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")


def t(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "values": a.reshape(-1).tolist()}


def weight_key(w):
    parts = w.path.split("/")
    # attention's sublayers: query/kernel, key/bias, attention_output/kernel
    if len(parts) >= 3 and parts[-2] in ("query", "key", "value", "attention_output"):
        return parts[-2] + "/" + parts[-1]
    return parts[-1]


def case(name, make, x, dtype, rng, training=False, call=None, steps=0):
    layer = make(dtype)
    x = tf.constant(x) if x.dtype.kind in "iu" else tf.constant(x.astype(dtype))
    call = call or (lambda l, x, training: l(x, training=training))
    call(layer, x, training)  # build
    for w in layer.weights:
        if w.trainable:
            w.assign(rng.uniform(-0.5, 0.5, w.shape).astype(dtype))
    before = {weight_key(w): t(w.numpy()) for w in layer.weights}
    with tf.GradientTape() as tape:
        if x.dtype.is_floating:
            tape.watch(x)
        y = call(layer, x, training)
        r = tf.constant(rng.uniform(-1, 1, y.shape).astype(dtype))
        loss = tf.reduce_sum(y * r)
    sources = ([x] if x.dtype.is_floating else []) + list(layer.trainable_weights)
    grads = tape.gradient(loss, sources)
    out = {"x": t(x.numpy()), "weights": before, "y": t(y.numpy()), "r": t(r.numpy())}
    if x.dtype.is_floating:
        out["dx"] = t(grads[0].numpy())
        grads = grads[1:]
    out["dw"] = {weight_key(w): t(tf.convert_to_tensor(g).numpy()) for w, g in zip(layer.trainable_weights, grads)}
    if steps:
        opt = keras.optimizers.SGD(0.1)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(call(layer, x, True) * r)
            opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights))
        out["after"] = {weight_key(w): t(w.numpy()) for w in layer.weights}
        out["inference"] = t(call(layer, x, False).numpy())
    return {name: out}


def run(dtype):
    rng = np.random.default_rng(42)
    u = lambda *s: rng.uniform(-1, 1, s)
    L = keras.layers
    out = {}
    out.update(case("conv2d", lambda d: L.Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="relu", dtype=d), u(2, 5, 4, 2), dtype, rng))
    out.update(case("conv2d_groups", lambda d: L.Conv2D(4, 2, dilation_rate=2, groups=2, dtype=d), u(1, 6, 5, 4), dtype, rng))
    out.update(case("conv1d", lambda d: L.Conv1D(3, 3, strides=2, padding="same", dtype=d), u(2, 7, 2), dtype, rng))
    out.update(case("depthwise", lambda d: L.DepthwiseConv2D(2, depth_multiplier=2, padding="same", dtype=d), u(1, 4, 5, 3), dtype, rng))
    out.update(case("conv2d_transpose_same", lambda d: L.Conv2DTranspose(2, 3, strides=2, padding="same", dtype=d), u(1, 3, 3, 2), dtype, rng))
    out.update(case("conv2d_transpose_valid", lambda d: L.Conv2DTranspose(3, (2, 3), strides=(1, 2), dtype=d), u(2, 2, 3, 2), dtype, rng))
    out.update(case("max_pool2d", lambda d: L.MaxPooling2D(2, strides=2, padding="same", dtype=d), u(2, 5, 5, 2), dtype, rng))
    out.update(case("avg_pool2d", lambda d: L.AveragePooling2D(3, strides=2, padding="same", dtype=d), u(2, 5, 5, 2), dtype, rng))
    out.update(case("max_pool1d", lambda d: L.MaxPooling1D(2, dtype=d), u(2, 7, 3), dtype, rng))
    out.update(case("avg_pool1d", lambda d: L.AveragePooling1D(3, strides=1, padding="same", dtype=d), u(2, 5, 3), dtype, rng))
    out.update(case("global_avg", lambda d: L.GlobalAveragePooling2D(dtype=d), u(2, 3, 4, 2), dtype, rng))
    out.update(case("global_max", lambda d: L.GlobalMaxPooling2D(dtype=d), u(2, 3, 4, 2), dtype, rng))
    out.update(case("batch_norm", lambda d: L.BatchNormalization(dtype=d), u(4, 3, 2) * 3 + 1, dtype, rng, training=True, steps=3))
    out.update(case("layer_norm", lambda d: L.LayerNormalization(dtype=d), u(2, 3, 4) * 2, dtype, rng))
    out.update(case("embedding", lambda d: L.Embedding(6, 3, dtype=d), np.array([[1, 2, 1], [5, 0, 1]], dtype=np.int64), dtype, rng))
    mha = lambda d: L.MultiHeadAttention(num_heads=2, key_dim=3, dtype=d)
    out.update(case("attention", mha, u(2, 4, 5), dtype, rng, call=lambda l, x, training: l(x, x, training=training)))
    out.update(case("attention_causal", mha, u(2, 4, 5), dtype, rng, call=lambda l, x, training: l(x, x, use_causal_mask=True, training=training)))
    return out


def main():
    result = {"tensorflow": tf.__version__, "keras": keras.__version__}
    result["float32"] = run("float32")
    result["float64"] = run("float64")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "keras_layers.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
