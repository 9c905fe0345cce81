#!/usr/bin/env python3
"""TensorFlow reference numbers for gradtape's parity tests.

Run by hand with TensorFlow installed from PyPI:

    python3 -m venv .venv && .venv/bin/pip install tensorflow-cpu numpy
    .venv/bin/python tools/tf_reference.py

It writes, under crates/gradtape/tests/fixtures/:
  tf_ops.json    values, gradients (a vector-Jacobian product with a random seed) and second-order
                 gradients (through nested tapes) of every expression below, in float32 and float64;
  seed_data.csv  the seed tutorial's data (200 points, y = 0.3 + 0.5 x + N(0, 0.3));
  seed_tf.json   the seed's training loop run by TensorFlow on that data: cost per epoch, final a, b;
  keras.json     Keras losses (values and gradients), optimizers (variables after each of several
                 steps from fixed gradients) and learning-rate schedules;
  keras_weights.safetensors  a small checkpoint written by Python's safetensors package.

The Rust test tests/suite/tf_parity.rs evaluates the same expressions by name; the fixtures are
committed so the test suite needs no Python.
"""
import json
import math
import zlib
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(20261126)


def F(*shape, lo=-2.0, hi=2.0):
    return ("float", rng.uniform(lo, hi, shape))


def C(values):
    return ("float", np.array(values, dtype=np.float64))


def I(values):
    return ("int64", np.array(values, dtype=np.int64))


def B(values):
    return ("bool", np.array(values, dtype=bool))


# name -> (function of the inputs, inputs). Every gradtape op appears at least once; the
# convention cases (ties, kinks, boundaries, zeros, infinities, repeated indices) use fixed inputs.
CASES = {
    "add_broadcast": (lambda x, y: tf.add(x, y), [F(3, 1), F(4)]),
    "subtract_broadcast": (lambda x, y: tf.subtract(x, y), [F(2, 3), F(3)]),
    "multiply_broadcast": (lambda x, y: tf.multiply(x, y), [F(2, 1, 3), F(4, 1)]),
    "divide_broadcast": (lambda x, y: tf.divide(x, y), [F(3, 4), F(4, lo=0.5, hi=2.0)]),
    "negative": (lambda x: tf.negative(x), [F(5)]),
    "square": (lambda x: tf.square(x), [F(2, 3)]),
    "sqrt": (lambda x: tf.sqrt(x), [F(4, lo=0.1, hi=3.0)]),
    "sqrt_at_zero": (lambda x: tf.sqrt(x), [C([0.0, 4.0])]),
    "rsqrt": (lambda x: tf.math.rsqrt(x), [F(4, lo=0.1, hi=3.0)]),
    "reciprocal": (lambda x: tf.math.reciprocal(x), [F(4, lo=0.5, hi=3.0)]),
    "exp": (lambda x: tf.exp(x), [F(3, 2)]),
    "expm1": (lambda x: tf.math.expm1(x), [F(5)]),
    "log": (lambda x: tf.math.log(x), [F(5, lo=0.1, hi=4.0)]),
    "log_at_zero": (lambda x: tf.math.log(x), [C([0.0, 1.0])]),
    "log1p": (lambda x: tf.math.log1p(x), [F(5, lo=-0.9, hi=3.0)]),
    "abs_with_zero": (lambda x: tf.abs(x), [C([-2.0, 0.0, 1.5, -0.5])]),
    "sign": (lambda x: tf.sign(x) * x, [C([-2.0, 0.0, 1.5])]),
    "sin": (lambda x: tf.sin(x), [F(4)]),
    "cos": (lambda x: tf.cos(x), [F(4)]),
    "tanh": (lambda x: tf.tanh(x), [F(5)]),
    "sigmoid_extremes": (lambda x: tf.sigmoid(x), [C([-30.0, -1.0, 0.0, 2.0, 30.0])]),
    "relu_with_zero": (lambda x: tf.nn.relu(x), [C([-1.0, 0.0, 0.5, 2.0])]),
    "softplus_extremes": (lambda x: tf.nn.softplus(x), [C([-50.0, -1.0, 0.0, 1.0, 50.0])]),
    "elu_with_zero": (lambda x: tf.nn.elu(x), [C([-2.0, -0.5, 0.0, 1.0])]),
    "selu_with_zero": (lambda x: tf.nn.selu(x), [C([-2.0, -0.5, 0.0, 1.0])]),
    "maximum_ties": (lambda x, y: tf.maximum(x, y), [C([1.0, 2.0, 3.0]), C([1.0, 0.0, 3.0])]),
    "minimum_ties_broadcast": (lambda x, y: tf.minimum(x, y), [C([[0.5, 1.0, 2.0], [1.0, -1.0, 3.0]]), C(1.0)]),
    "maximum_relu_tie": (lambda x: tf.maximum(x, 0.0), [C([-1.0, 0.0, 2.0])]),
    "pow_tensor": (lambda x, y: tf.pow(x, y), [F(4, lo=0.2, hi=2.0), F(4)]),
    "pow_scalar": (lambda x: tf.pow(x, 3.0), [C([-1.5, 0.0, 0.5, 2.0])]),
    "pow_zero_base": (lambda x, y: tf.pow(x, y), [C([0.0, 2.0, 0.0]), C([2.0, 0.5, 3.0])]),
    "clip_by_value_bounds": (lambda x: tf.clip_by_value(x, 0.0, 1.0), [C([-1.0, 0.0, 0.5, 1.0, 2.0])]),
    "reduce_sum_axes_keepdims": (lambda x: tf.reduce_sum(x, axis=[0, -1], keepdims=True), [F(2, 3, 4)]),
    "reduce_sum_all": (lambda x: tf.reduce_sum(x), [F(3, 4)]),
    "reduce_mean_axis": (lambda x: tf.reduce_mean(x, axis=1), [F(3, 4)]),
    "reduce_max_ties": (lambda x: tf.reduce_max(x, axis=1), [C([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])]),
    "reduce_min_all": (lambda x: tf.reduce_min(x), [F(3, 3)]),
    "reduce_prod_zeros": (lambda x: tf.reduce_prod(x, axis=1), [C([[2.0, 0.0, 3.0], [0.0, 0.0, 1.0], [1.0, 2.0, 3.0]])]),
    "reduce_prod_all": (lambda x: tf.reduce_prod(x), [F(2, 3, lo=0.5, hi=1.5)]),
    "matmul": (lambda a, b: tf.matmul(a, b), [F(3, 4), F(4, 2)]),
    "matmul_transposed": (lambda a, b: tf.matmul(a, b, transpose_a=True, transpose_b=True), [F(4, 3), F(2, 4)]),
    "matmul_batched_broadcast": (lambda a, b: tf.matmul(a, b), [F(2, 3, 4), F(4, 5)]),
    "transpose_perm": (lambda x: tf.transpose(x, perm=[2, 0, 1]) * tf.range(1.0, 4.0, dtype=x.dtype)[:, None, None], [F(2, 4, 3)]),
    "reshape_infer": (lambda x: tf.reshape(x, [3, -1]) * tf.range(1.0, 5.0, dtype=x.dtype), [F(2, 6)]),
    "expand_squeeze": (lambda x: tf.squeeze(tf.expand_dims(x, -1) * x[:, None, :], axis=[]), [F(2, 3)]),
    "broadcast_to": (lambda x: tf.broadcast_to(x, [2, 3, 4]), [F(3, 1)]),
    "concat_three": (lambda a, b, c: tf.concat([a, b, c], axis=1), [F(2, 1), F(2, 3), F(2, 2)]),
    "stack_axis1": (lambda a, b: tf.stack([a, b], axis=1), [F(3, 2), F(3, 2)]),
    "split_weighted": (lambda x: sum((i + 1.0) * p for i, p in enumerate(tf.split(x, 3, axis=1))), [F(2, 6)]),
    "slice_begin_size": (lambda x: tf.slice(x, [1, 0], [2, -1]), [F(4, 3)]),
    "strided_slice_negative": (lambda x: tf.strided_slice(x, [-1, 1], [-5, 5], [-1, 2]), [F(4, 5)]),
    "pad": (lambda x: tf.pad(x, [[1, 0], [2, 1]]), [F(2, 2)]),
    "gather_repeated": (lambda p, i: tf.gather(p, i, axis=1), [F(2, 4), I([3, 0, 3, 3])]),
    "gather_nd": (lambda p, i: tf.gather_nd(p, i), [F(3, 4, 2), I([[0, 1], [2, 3], [0, 1]])]),
    "unsorted_segment_sum": (lambda d, s: tf.math.unsorted_segment_sum(d, s, 3), [F(4, 2), I([2, 0, 2, 1])]),
    "select_broadcast": (lambda c, x, y: tf.where(c, x, y), [B([[True], [False]]), F(2, 3), F(3)]),
    "one_hot_mask": (lambda x, i: x * tf.one_hot(i, 4, dtype=x.dtype), [F(3, 4), I([0, 3, 9])]),
    "cast_roundtrip": (lambda x: tf.cast(tf.square(tf.cast(x, tf.float64)), x.dtype), [F(4)]),
    "softmax": (lambda x: tf.nn.softmax(x, axis=-1), [F(2, 5)]),
    "log_softmax": (lambda x: tf.nn.log_softmax(x, axis=0), [F(3, 2)]),
    "logsumexp_large": (lambda x: tf.reduce_logsumexp(x, axis=1), [C([[1000.0, 999.0, 998.0], [-1.0, 0.0, 1.0]])]),
    "logsumexp_neg_inf": (lambda x: tf.reduce_logsumexp(x, axis=1, keepdims=True), [C([[-math.inf, 0.0, 1.0]])]),
    "stop_gradient": (lambda x: x * tf.stop_gradient(x), [F(3)]),
    "argmax_weight": (lambda x: tf.reduce_sum(x, axis=1) * tf.cast(tf.argmax(x, axis=1), x.dtype), [F(3, 4)]),
    "argmin_weight": (lambda x: tf.reduce_sum(x, axis=0) * tf.cast(tf.argmin(x, axis=0), x.dtype), [F(3, 4)]),
    "comparison_mask": (lambda x, y: x * tf.cast(tf.greater_equal(x, y), x.dtype) + y * tf.cast(tf.less(x, y), x.dtype), [F(5), F(5)]),
    "round_floor_ceil": (lambda x: x * tf.round(x) + tf.floor(x) + tf.math.ceil(x), [C([0.5, 1.5, 2.5, -0.5, -1.7])]),
    "linreg_sse": (lambda a, b, x, y: tf.reduce_sum(tf.square(tf.subtract(y, tf.add(a, tf.multiply(b, x))))), [F(), F(), F(6, lo=0, hi=1), F(6)]),
    # products and tf.nn losses (issue 23); appended, so the cases above keep their inputs
    "matvec_batched": (lambda a, b: tf.linalg.matvec(a, b), [F(2, 3, 4), F(4)]),
    "tensordot_last": (lambda a, b: tf.tensordot(a, b, axes=1), [F(3, 4), F(4, 2)]),
    "tensordot_pairs": (lambda a, b: tf.tensordot(a, b, axes=[[0, 2], [1, 0]]), [F(2, 3, 4), F(4, 2, 5)]),
    "einsum_batched_matmul": (lambda a, b: tf.einsum("bij,bjk->bik", a, b), [F(2, 3, 4), F(2, 4, 2)]),
    "einsum_trace": (lambda a: tf.einsum("ii->", a), [F(3, 3)]),
    "einsum_diagonal_outer": (lambda a, b: tf.einsum("ii,j->ij", a, b), [F(3, 3), F(2)]),
    "einsum_ellipsis_broadcast": (lambda a, b: tf.einsum("...ij,...jk->...ik", a, b), [F(2, 1, 2, 3), F(4, 3, 2)]),
    "einsum_chain": (lambda a, b, c: tf.einsum("ij,jk,kl->il", a, b, c), [F(2, 3), F(3, 4), F(4, 2)]),
    "einsum_sum_transpose": (lambda a: tf.einsum("ijk->kj", a), [F(2, 3, 4)]),
    "sigmoid_cross_entropy_with_logits": (lambda z, x: tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x), [F(2, 3, lo=0.0, hi=1.0), C([[-30.0, 0.0, 2.0], [0.5, -1.0, 30.0]])]),
    # labels a distribution along the axis, and constant: for other labels TensorFlow's logits
    # gradient is softmax - labels (its fused kernel assumes a distribution), and its second
    # derivative for the labels drops the labels' part of that gradient (0.41 off TensorFlow's
    # own composed -sum(z * log_softmax(x)), which gradtape matches); gradtape is exact in both
    "softmax_cross_entropy_with_logits": (lambda x: tf.nn.softmax_cross_entropy_with_logits(labels=tf.constant([[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]], x.dtype), logits=x, axis=0), [F(3, 2)]),
    "sparse_softmax_cross_entropy_with_logits": (lambda i, x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=x), [I([2, 0, 1]), F(3, 4)]),
}


def enc(a):
    """Flat list with JSON-safe non-finite values."""
    out = []
    for v in np.asarray(a, dtype=np.float64).ravel().tolist():
        out.append(v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")))
    return out


def arr(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": enc(a) if a.dtype != bool else [bool(v) for v in a.ravel()]}


def run_case(name, fn, inputs, dtype):
    tensors = []
    for kind, data in inputs:
        if kind == "float":
            tensors.append(tf.constant(data, dtype=dtype))
        elif kind == "int64":
            tensors.append(tf.constant(data, dtype=tf.int64))
        else:
            tensors.append(tf.constant(data, dtype=tf.bool))
    floats = [t for (k, _), t in zip(inputs, tensors) if k == "float"]
    local = np.random.default_rng(zlib.crc32(name.encode()))
    with tf.GradientTape(persistent=True) as t2:
        t2.watch(floats)
        with tf.GradientTape() as t1:
            t1.watch(floats)
            y = fn(*tensors)
        w = tf.constant(local.uniform(-1, 1, y.shape), dtype=dtype)
        g = t1.gradient(y, floats, output_gradients=w)
        vs = [tf.constant(local.uniform(-1, 1, f.shape), dtype=dtype) for f in floats]
        s = tf.add_n([tf.reduce_sum(gi * vi) for gi, vi in zip(g, vs) if gi is not None] or [tf.constant(0.0, dtype)])
    g2 = t2.gradient(s, floats)
    return {
        "name": name,
        "dtype": dtype.name,
        "inputs": [dict(kind=k, **arr(t.numpy())) for (k, _), t in zip(inputs, tensors)],
        "output": arr(y.numpy()),
        "seed": arr(w.numpy()),
        "grad": [None if gi is None else arr(gi.numpy()) for gi in g],
        "vector": [arr(v.numpy()) for v in vs],
        "grad2": [None if gi is None else arr(tf.convert_to_tensor(gi).numpy()) for gi in g2],
    }


def ops_fixture():
    cases = []
    for name, (fn, inputs) in CASES.items():
        for dtype in (tf.float32, tf.float64):
            cases.append(run_case(name, fn, inputs, dtype))
    meta = {"tensorflow": tf.__version__, "numpy": np.__version__}
    with open(os.path.join(OUT, "tf_ops.json"), "w") as f:
        json.dump({"meta": meta, "cases": cases}, f, separators=(",", ":"))
    print(f"tf_ops.json: {len(CASES)} expressions x 2 dtypes")


def seed_fixture():
    # The seed tutorial's data, written once so TensorFlow and gradtape read the same numbers.
    data_rng = np.random.default_rng(0)
    x = data_rng.uniform(0.0, 1.0, 200)
    y = 0.3 + 0.5 * x + data_rng.normal(0.0, 0.3, len(x))
    path = os.path.join(OUT, "seed_data.csv")
    with open(path, "w") as f:
        f.write("x,y\n")
        for a, b in zip(x, y):
            f.write(f"{float(a)!r},{float(b)!r}\n")
    xy = np.loadtxt(path, delimiter=",", skiprows=1)
    x, y = xy[:, 0], xy[:, 1]

    # The seed's program, line by line.
    class regression:
        def __init__(self):
            self.a = tf.Variable(initial_value=0, dtype=tf.float32)
            self.b = tf.Variable(initial_value=0, dtype=tf.float32)

        def __call__(self, x):
            x = tf.convert_to_tensor(x, dtype=tf.float32)
            return tf.add(self.a, tf.multiply(self.b, x))

    def loss_func(y_true, y_pred):
        return tf.reduce_sum(tf.square(tf.subtract(y_true, y_pred)))

    def train(model, inputs, outputs, lr):
        y_true = tf.convert_to_tensor(outputs, dtype=tf.float32)
        with tf.GradientTape() as g:
            y_pred = model(inputs)
            current_loss = loss_func(y_true, y_pred)
        da, db = g.gradient(current_loss, [model.a, model.b])
        model.a.assign_sub(da * lr)
        model.b.assign_sub(db * lr)

    model = regression()
    cost_val = []
    epochs, lr = 70, 0.001
    for e in range(epochs):
        y_pred = model(x)
        cost_value = loss_func(y, y_pred)
        cost_val.append(float(cost_value))
        train(model, x, y, lr)
    final = float(loss_func(y, model(x)))
    res = {
        "tensorflow": tf.__version__,
        "epochs": epochs,
        "lr": lr,
        "cost_val": cost_val,
        "final_loss": final,
        "a": float(model.a.numpy()),
        "b": float(model.b.numpy()),
    }
    with open(os.path.join(OUT, "seed_tf.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"seed: a={res['a']:.6f} b={res['b']:.6f} first cost {cost_val[0]:.4f} last {cost_val[-1]:.4f}")


def keras_fixture():
    import keras

    r = np.random.default_rng(7)
    out = {"keras": keras.__version__, "losses": [], "optimizers": [], "schedules": []}

    # Losses: value and gradient with respect to y_pred, float32.
    yt_reg, yp_reg = r.uniform(-2, 2, (4, 3)), r.uniform(-2, 2, (4, 3))
    yt_bin = (r.uniform(0, 1, (4, 3)) > 0.5).astype(np.float64)
    yp_prob = r.uniform(0.05, 0.95, (4, 3))
    logits = r.uniform(-3, 3, (4, 3))
    extreme = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 3.0], [0.0, 0.0, 0.0], [500.0, -500.0, 1.0]])
    onehot = np.eye(3)[[0, 2, 1, 1]]
    labels = np.array([0, 2, 1, 1])
    L = keras.losses
    cases = [
        ("mean_squared_error", {}, yt_reg, yp_reg, L.MeanSquaredError),
        ("mean_absolute_error", {}, yt_reg, yp_reg, L.MeanAbsoluteError),
        ("huber", {"delta": 0.7}, yt_reg, yp_reg, L.Huber),
        ("binary_crossentropy", {"from_logits": False}, yt_bin, yp_prob, L.BinaryCrossentropy),
        ("binary_crossentropy", {"from_logits": True}, yt_bin, logits, L.BinaryCrossentropy),
        ("binary_crossentropy", {"from_logits": True}, yt_bin, extreme, L.BinaryCrossentropy),
        ("categorical_crossentropy", {"from_logits": False}, onehot, yp_prob, L.CategoricalCrossentropy),
        ("categorical_crossentropy", {"from_logits": True}, onehot, logits, L.CategoricalCrossentropy),
        ("categorical_crossentropy", {"from_logits": True}, onehot, extreme, L.CategoricalCrossentropy),
        ("sparse_categorical_crossentropy", {"from_logits": False}, labels, yp_prob, L.SparseCategoricalCrossentropy),
        ("sparse_categorical_crossentropy", {"from_logits": True}, labels, logits, L.SparseCategoricalCrossentropy),
        ("sparse_categorical_crossentropy", {"from_logits": True}, labels, extreme, L.SparseCategoricalCrossentropy),
    ]
    for name, kw, yt, yp, cls in cases:
        for reduction in ("sum_over_batch_size", "sum", "none"):
            p = tf.constant(yp, dtype=tf.float32)
            t = tf.constant(yt, dtype=tf.int64 if name.startswith("sparse") else tf.float32)
            with tf.GradientTape() as g:
                g.watch(p)
                value = cls(reduction=reduction, **kw)(t, p)
            grad = g.gradient(value, p)
            out["losses"].append({"name": name, "kwargs": kw, "reduction": reduction, "y_true": arr(yt),
                                  "y_pred": arr(yp), "value": arr(value.numpy()), "grad": arr(grad.numpy())})

    # Optimizers: two variables, the same gradients every run, the variables after each step.
    init = [r.uniform(-1, 1, (3,)), r.uniform(-1, 1, (2, 2))]
    grads = [[r.uniform(-2, 2, v.shape) for v in init] for _ in range(5)]
    O, S = keras.optimizers, keras.optimizers.schedules
    configs = [
        ("sgd", {"learning_rate": 0.1}, O.SGD(learning_rate=0.1)),
        ("sgd_momentum", {"learning_rate": 0.1, "momentum": 0.9}, O.SGD(learning_rate=0.1, momentum=0.9)),
        ("sgd_nesterov", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, O.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)),
        ("adam", {"learning_rate": 0.01}, O.Adam(learning_rate=0.01)),
        ("adam_amsgrad", {"learning_rate": 0.01, "amsgrad": True}, O.Adam(learning_rate=0.01, amsgrad=True)),
        ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1}, O.AdamW(learning_rate=0.01, weight_decay=0.1)),
        ("rmsprop", {"learning_rate": 0.01}, O.RMSprop(learning_rate=0.01)),
        ("rmsprop_centered_momentum", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}, O.RMSprop(learning_rate=0.01, momentum=0.5, centered=True)),
        ("adagrad", {"learning_rate": 0.1}, O.Adagrad(learning_rate=0.1)),
        ("sgd_clipnorm", {"learning_rate": 0.1, "clipnorm": 0.5}, O.SGD(learning_rate=0.1, clipnorm=0.5)),
        ("sgd_clipvalue", {"learning_rate": 0.1, "clipvalue": 0.3}, O.SGD(learning_rate=0.1, clipvalue=0.3)),
        ("adam_global_clipnorm", {"learning_rate": 0.01, "global_clipnorm": 1.0}, O.Adam(learning_rate=0.01, global_clipnorm=1.0)),
        ("sgd_exponential_decay", {"schedule": "exponential"}, O.SGD(learning_rate=S.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=False))),
        ("sgd_piecewise", {"schedule": "piecewise"}, O.SGD(learning_rate=S.PiecewiseConstantDecay([1, 3], [0.1, 0.05, 0.01]))),
        ("sgd_cosine_warmup", {"schedule": "cosine"}, O.SGD(learning_rate=S.CosineDecay(0.0, decay_steps=4, alpha=0.1, warmup_target=0.2, warmup_steps=2))),
    ]
    for name, kw, opt in configs:
        vs = [tf.Variable(v, dtype=tf.float32) for v in init]
        steps = []
        for gs in grads:
            opt.apply_gradients(zip([tf.constant(g, dtype=tf.float32) for g in gs], vs))
            steps.append([arr(v.numpy()) for v in vs])
        out["optimizers"].append({"name": name, "kwargs": kw, "steps": steps})
    out["optimizer_init"] = [arr(v) for v in init]
    out["optimizer_grads"] = [[arr(g) for g in gs] for gs in grads]

    for name, sched in [
        ("exponential", S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.7, staircase=False)),
        ("exponential_staircase", S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.7, staircase=True)),
        ("piecewise", S.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1])),
        ("cosine", S.CosineDecay(0.5, decay_steps=10, alpha=0.1)),
        ("cosine_warmup", S.CosineDecay(0.0, decay_steps=10, alpha=0.0, warmup_target=1.0, warmup_steps=4)),
    ]:
        out["schedules"].append({"name": name, "values": [float(sched(step)) for step in range(20)]})

    with open(os.path.join(OUT, "keras.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"keras.json: {len(out['losses'])} loss cases, {len(configs)} optimizers, {len(out['schedules'])} schedules")


def safetensors_fixture():
    from safetensors.numpy import save_file

    tensors = {
        "dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 10,
        "dense/bias": np.array([0.5, -0.5, 1.0], dtype=np.float32),
        "step": np.array(7, dtype=np.int64),
        "weights64": np.array([[1.5, -2.25]], dtype=np.float64),
    }
    save_file(tensors, os.path.join(OUT, "keras_weights.safetensors"), metadata={"made_by": "tools/tf_reference.py"})
    print("keras_weights.safetensors written")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    ops_fixture()
    seed_fixture()
    keras_fixture()
    safetensors_fixture()
