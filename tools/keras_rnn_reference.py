#!/usr/bin/env python3
"""Keras reference numbers for gradtape's recurrent layers (tests/suite/recurrent.rs).

Run by hand with TensorFlow (Keras 3) installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu==2.21.0 numpy
    .venv/bin/python tools/keras_rnn_reference.py

It writes crates/gradtape/tests/fixtures/keras_rnn.json: for SimpleRNN, LSTM and GRU (both
`reset_after`), with and without `return_sequences`, forwards and backwards, with zero and
given initial states, masked (padding at the end and a step missing inside), wrapped in
`Bidirectional` (each merge mode), in float32 and float64: the input, the weights (random, set with
`set_weights`, so that every gate matters), Keras's outputs (the output, then the final
states), random cotangents for each, and the gradients with respect to the input, every weight
and the initial states.
"""
import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(20261203)
BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4

CASES = [
    # name, layer, options, initial state given
    ("simple_rnn", "SimpleRNN", {}, False),
    ("simple_rnn_sequences_backwards", "SimpleRNN", {"return_sequences": True, "go_backwards": True}, True),
    ("lstm", "LSTM", {}, False),
    ("lstm_sequences", "LSTM", {"return_sequences": True}, True),
    ("lstm_backwards", "LSTM", {"go_backwards": True}, False),
    ("gru", "GRU", {}, False),
    ("gru_sequences_backwards", "GRU", {"return_sequences": True, "go_backwards": True}, True),
    ("gru_reset_before", "GRU", {"reset_after": False}, False),
    ("gru_reset_before_sequences", "GRU", {"reset_after": False, "return_sequences": True}, True),
    # masked: the second sequence padded after 3 steps, the first missing its second step
    ("lstm_masked", "LSTM", {"mask": True}, False),
    ("lstm_masked_sequences_backwards", "LSTM", {"mask": True, "return_sequences": True, "go_backwards": True}, True),
    ("gru_masked_sequences", "GRU", {"mask": True, "return_sequences": True}, False),
    ("simple_rnn_masked", "SimpleRNN", {"mask": True}, True),
    # Bidirectional, merged each way; masked with and without sequences
    ("bidirectional_lstm_concat", "LSTM", {"merge": "concat", "return_sequences": True}, False),
    ("bidirectional_gru_sum", "GRU", {"merge": "sum"}, True),
    ("bidirectional_simple_rnn_mul_masked", "SimpleRNN", {"merge": "mul", "mask": True, "return_sequences": True}, False),
    ("bidirectional_lstm_ave_masked", "LSTM", {"merge": "ave", "mask": True}, True),
]

MASK = np.ones((BATCH, TIME), dtype=bool)
MASK[0, 1] = False
MASK[1, 3:] = False


def tensor(x):
    x = np.asarray(x, dtype=np.float64)
    return {"shape": list(x.shape), "values": x.ravel().tolist()}


def main():
    out = []
    for name, kind, options, with_state in CASES:
        for dtype in ("float32", "float64"):
            layer_options = {k: v for k, v in options.items() if k not in ("mask", "merge")}
            layer = getattr(tf.keras.layers, kind)(UNITS, return_state=True, dtype=dtype, **layer_options)
            if "merge" in options:
                layer = tf.keras.layers.Bidirectional(layer, merge_mode=options["merge"], dtype=dtype)
            x = tf.constant(rng.uniform(-1, 1, (BATCH, TIME, FEATURES)), dtype=dtype)
            layer.build((BATCH, TIME, FEATURES))
            weights = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
            layer.set_weights(weights)
            n_states = (2 if kind == "LSTM" else 1) * (2 if "merge" in options else 1)
            states = [tf.constant(rng.uniform(-0.5, 0.5, (BATCH, UNITS)), dtype=dtype)
                      for _ in range(n_states)] if with_state else []
            mask = tf.constant(MASK) if options.get("mask") else None
            with tf.GradientTape() as tape:
                tape.watch(x)
                for s in states:
                    tape.watch(s)
                ys = layer(x, initial_state=states or None, mask=mask)
            cots = [tf.constant(rng.uniform(-1, 1, y.shape), dtype=dtype) for y in ys]
            sources = [x] + layer.trainable_weights + states
            grads = tape.gradient(ys, sources, output_gradients=cots)
            out.append({
                "name": name,
                "layer": kind,
                "options": options,
                "dtype": dtype,
                "x": tensor(x.numpy()),
                "mask": MASK.astype(np.float64).tolist() if mask is not None else None,
                "weights": [tensor(w) for w in weights],
                "initial_state": [tensor(s.numpy()) for s in states],
                "outputs": [tensor(y.numpy()) for y in ys],
                "cotangents": [tensor(c.numpy()) for c in cots],
                "grads": [tensor(g.numpy()) for g in grads],
            })
    path = os.path.join(OUT, "keras_rnn.json")
    with open(path, "w") as f:
        json.dump({"tensorflow": tf.__version__, "keras": tf.keras.__version__, "cases": out}, f)
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
