#!/usr/bin/env python3
"""gradtape's benchmark workloads in TensorFlow (eager and tf.function), PyTorch eager, JAX jit,
and NumPy (by hand), plus the machine's own ceilings (a plain copy's memory bandwidth and NumPy's
BLAS GEMM rate). Prints one JSON object per line, like `gradtape bench --json`:
  seed   one epoch of the seed tutorial at N = 200, float32: evaluate the SSE cost, then one
         gradient-descent step on a and b through each framework's autodiff;
  chain  2,000 recorded scalar multiplications, forward and gradient (not for JAX: jit would
         compile the chain away, which is not what is being measured);
  mlp    one training step of an MLP 784-256-256-10, batch 128, ReLU, softmax cross-entropy
         from logits, Adam, float32;
  linreg-10m  the seed's epoch at N = 10,000,000;
  matmul      a 1024 x 1024 float32 product (GFLOP/s);
  elementwise a*b+c on 10M float32 (GB/s counting 3 reads and 1 write);
  reduce      reduce_sum of 10M float32 (GB/s).
Each figure is the median of 15 rounds; a round runs enough iterations to last about 20 ms.
"""
import json
import os
import sys
import time

import numpy as np

CHAIN = 2000
N = 200


def median_us(f):
    f()
    t = time.perf_counter()
    iters = 0
    while time.perf_counter() - t < 0.02:
        f()
        iters += 1
    rounds = []
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(iters):
            f()
        rounds.append((time.perf_counter() - t) * 1e6 / iters)
    rounds.sort()
    return rounds[len(rounds) // 2], iters * 15


def emit(framework, name, us, iters, **extra):
    print(json.dumps(dict(framework=framework, name=name, iters=iters, median_us=round(us, 3), **extra)), flush=True)


rng = np.random.default_rng(0)
X = rng.uniform(0.0, 1.0, N).astype(np.float32)
Y = (0.3 + 0.5 * X + rng.normal(0.0, 0.3, N)).astype(np.float32)
LR = 0.001
MX = rng.uniform(0.0, 1.0, (128, 784)).astype(np.float32)
MY = (np.arange(128) % 10).astype(np.int64)
SIZES = [784, 256, 256, 10]


BIG = 10_000_000
BX = rng.uniform(0.0, 1.0, BIG).astype(np.float32)
BY = (0.3 + 0.5 * BX + rng.normal(0.0, 0.3, BIG)).astype(np.float32)
BLR = 1e-3 / (BIG / 200.0)
EA, EB, EC = (rng.uniform(-1, 1, BIG).astype(np.float32) for _ in range(3))
MA = rng.uniform(-1, 1, (1024, 1024)).astype(np.float32)
MB = rng.uniform(-1, 1, (1024, 1024)).astype(np.float32)


def emit_big(framework, epoch, matmul, elementwise, reduce):
    us, it = median_us(epoch)
    emit(framework, "linreg-10m", us, it)
    if matmul:
        us, it = median_us(matmul)
        emit(framework, "matmul", us, it, gflops=round(2 * 1024**3 / (us * 1e3), 2))
    us, it = median_us(elementwise)
    emit(framework, "elementwise", us, it, gbps=round(16 * BIG / (us * 1e3), 2))
    us, it = median_us(reduce)
    emit(framework, "reduce", us, it, gbps=round(4 * BIG / (us * 1e3), 2))


def bench_numpy():
    """NumPy by hand (the gradient written out), and the machine's ceilings."""
    state = [np.float32(0.0), np.float32(0.0)]

    def epoch():
        a, b = state
        r = BY - (a + b * BX)
        cost = np.sum(r * r)
        da, db = -2 * np.sum(r), -2 * np.sum(r * BX)
        state[0], state[1] = a - BLR * da, b - BLR * db
        return cost

    emit_big("NumPy by hand", epoch, lambda: MA @ MB, lambda: EA * EB + EC, lambda: np.sum(EA))
    dst = np.empty_like(EA)
    us, it = median_us(lambda: np.copyto(dst, EA))
    emit("machine", "copy-bandwidth", us, it, gbps=round(8 * BIG / (us * 1e3), 2))


def bench_tensorflow():
    import tensorflow as tf

    x, y = tf.constant(X), tf.constant(Y)
    a, b = tf.Variable(0.0), tf.Variable(0.0)

    def loss():
        return tf.reduce_sum(tf.square(tf.subtract(y, tf.add(a, tf.multiply(b, x)))))

    def epoch():
        cost = loss()
        with tf.GradientTape() as g:
            current = loss()
        da, db = g.gradient(current, [a, b])
        a.assign_sub(da * LR)
        b.assign_sub(db * LR)
        return cost

    us, it = median_us(epoch)
    emit("TensorFlow eager", "seed", us, it)
    fn = tf.function(epoch)
    us, it = median_us(lambda: fn().numpy())
    emit("TensorFlow tf.function", "seed", us, it)

    c = tf.constant(1.0)

    def chain():
        with tf.GradientTape() as t:
            t.watch(c)
            v = c
            for _ in range(CHAIN):
                v = v * 1.0001
        return t.gradient(v, c)

    us, it = median_us(chain)
    emit("TensorFlow eager", "chain", us, it, us_per_op=round(us / CHAIN, 4))

    import keras

    layers = [keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    model.build((None, 784))
    opt = keras.optimizers.Adam(0.001)
    lossf = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    mx, my = tf.constant(MX), tf.constant(MY)

    def mlp_step():
        with tf.GradientTape() as t:
            loss = lossf(my, model(mx, training=True))
        grads = t.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    us, it = median_us(mlp_step)
    emit("TensorFlow eager", "mlp", us, it)
    bx, by = tf.constant(BX), tf.constant(BY)
    ba, bb = tf.Variable(0.0), tf.Variable(0.0)

    def big_epoch():
        cost = tf.reduce_sum(tf.square(by - (ba + bb * bx)))
        with tf.GradientTape() as g:
            current = tf.reduce_sum(tf.square(by - (ba + bb * bx)))
        da, db = g.gradient(current, [ba, bb])
        ba.assign_sub(da * BLR)
        bb.assign_sub(db * BLR)
        return cost

    ea, eb, ec, ma, mb = (tf.constant(v) for v in (EA, EB, EC, MA, MB))
    emit_big("TensorFlow eager", big_epoch, lambda: tf.matmul(ma, mb).numpy(), lambda: (ea * eb + ec).numpy(), lambda: tf.reduce_sum(ea).numpy())
    step = tf.function(mlp_step)
    us, it = median_us(lambda: step().numpy())
    emit("TensorFlow tf.function", "mlp", us, it)


def bench_torch():
    import torch

    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)

    def epoch():
        with torch.no_grad():
            cost = ((y - (a + b * x)) ** 2).sum()
        current = ((y - (a + b * x)) ** 2).sum()
        current.backward()
        with torch.no_grad():
            a.sub_(a.grad * LR)
            b.sub_(b.grad * LR)
        a.grad = None
        b.grad = None
        return cost

    us, it = median_us(epoch)
    emit("PyTorch eager", "seed", us, it)

    def chain():
        c = torch.ones((), requires_grad=True)
        v = c
        for _ in range(CHAIN):
            v = v * 1.0001
        v.backward()
        return c.grad

    us, it = median_us(chain)
    emit("PyTorch eager", "chain", us, it, us_per_op=round(us / CHAIN, 4))

    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.001)
    mx, my = torch.from_numpy(MX), torch.from_numpy(MY)

    def mlp_step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(mx), my)
        loss.backward()
        opt.step()
        return loss

    us, it = median_us(mlp_step)
    emit("PyTorch eager", "mlp", us, it)
    bx, by = torch.from_numpy(BX), torch.from_numpy(BY)
    ba = torch.zeros((), requires_grad=True)
    bb = torch.zeros((), requires_grad=True)

    def big_epoch():
        with torch.no_grad():
            cost = ((by - (ba + bb * bx)) ** 2).sum()
        current = ((by - (ba + bb * bx)) ** 2).sum()
        current.backward()
        with torch.no_grad():
            ba.sub_(ba.grad * BLR)
            bb.sub_(bb.grad * BLR)
        ba.grad = None
        bb.grad = None
        return cost

    ea, eb, ec, ma, mb = (torch.from_numpy(v) for v in (EA, EB, EC, MA, MB))
    emit_big("PyTorch eager", big_epoch, lambda: ma @ mb, lambda: ea * eb + ec, lambda: ea.sum())


def bench_jax():
    import jax
    import jax.numpy as jnp

    x, y = jnp.asarray(X), jnp.asarray(Y)

    def loss(a, b):
        return jnp.sum(jnp.square(y - (a + b * x)))

    @jax.jit
    def epoch(a, b):
        cost = loss(a, b)
        da, db = jax.grad(loss, argnums=(0, 1))(a, b)
        return cost, a - da * LR, b - db * LR

    state = [jnp.float32(0.0), jnp.float32(0.0)]

    def run():
        cost, state[0], state[1] = epoch(state[0], state[1])
        cost.block_until_ready()

    us, it = median_us(run)
    emit("JAX jit", "seed", us, it)

    key = jax.random.PRNGKey(0)
    params = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        key, k = jax.random.split(key)
        params.append((jax.random.uniform(k, (a, b), minval=-0.05, maxval=0.05), jnp.zeros(b)))
    mx, my = jnp.asarray(MX), jnp.asarray(MY)

    def mlp_loss(ps):
        h = mx
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            if i < len(ps) - 1:
                h = jax.nn.relu(h)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), my[:, None], axis=1))

    b1, b2, eps = 0.9, 0.999, 1e-7

    @jax.jit
    def mlp_step(ps, m, v, t):
        loss, g = jax.value_and_grad(mlp_loss)(ps)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - b1), m, g)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - b2), v, g)
        lr = 0.001 * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        ps = jax.tree_util.tree_map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + eps), ps, m, v)
        return loss, ps, m, v

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    st = [params, zeros, zeros, 1.0]

    def run_mlp():
        loss, st[0], st[1], st[2] = mlp_step(st[0], st[1], st[2], st[3])
        st[3] += 1.0
        loss.block_until_ready()

    us, it = median_us(run_mlp)
    emit("JAX jit", "mlp", us, it)
    bx, by = jnp.asarray(BX), jnp.asarray(BY)

    def big_loss(a, b):
        return jnp.sum(jnp.square(by - (a + b * bx)))

    @jax.jit
    def big_epoch(a, b):
        cost = big_loss(a, b)
        da, db = jax.grad(big_loss, argnums=(0, 1))(a, b)
        return cost, a - da * BLR, b - db * BLR

    bs = [jnp.float32(0.0), jnp.float32(0.0)]

    def run_big():
        cost, bs[0], bs[1] = big_epoch(bs[0], bs[1])
        cost.block_until_ready()

    ea, eb, ec, ma, mb = (jnp.asarray(v) for v in (EA, EB, EC, MA, MB))
    mm = jax.jit(lambda a, b: a @ b)
    fma = jax.jit(lambda a, b, c: a * b + c)
    red = jax.jit(jnp.sum)
    emit_big("JAX jit", run_big, lambda: mm(ma, mb).block_until_ready(), lambda: fma(ea, eb, ec).block_until_ready(), lambda: red(ea).block_until_ready())


if __name__ == "__main__":
    which = sys.argv[1:] or ["numpy", "tensorflow", "torch", "jax"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for w in which:
        {"numpy": bench_numpy, "tensorflow": bench_tensorflow, "torch": bench_torch, "jax": bench_jax}[w]()
