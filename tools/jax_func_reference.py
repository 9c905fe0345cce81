#!/usr/bin/env python3
"""JAX's function transforms, for gradtape's test tests/suite/func.rs.

    .venv/bin/pip install "jax[cpu]" numpy && .venv/bin/python tools/jax_func_reference.py

Writes crates/gradtape/tests/fixtures/jax_func.json, float32 and float64, for
f(x, w) = sum(tanh(x @ w) ** 2) + sum(x * x * x) with x [2, 3], w [3, 2]:
  value_and_grad  has_aux=True (aux: the mean of tanh(x @ w)), argnums (0, 1)
  hessian         with respect to w ([3, 2, 3, 2])
  jacfwd          of tanh(x @ w) with respect to x ([2, 2, 2, 3])
  hvp             along (tx, tw), forward over reverse
  per_example_hvp vmap over the rows of x (each row [3] a separate example, w shared) of the
                  HVP with respect to w along tw
and custom_jvp: g(x, y) = sin(x) * y (y = w[:, 0], broadcast over the rows of x) with the rule
2 cos(x) y tx + sin(x) ty (deliberately not g's derivative, so the numbers show the rule is
used): jvp along (tx, tw[:, 0]), grad of sum(tanh(g)), jacfwd in y, jacrev in x, vmap over
the rows of x of grad of sum(g^2), and the hessian of sum(g) in x (the rule differentiated).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures")
rng = np.random.default_rng(21)
inputs = {
    "x": rng.uniform(-1, 1, (2, 3)),
    "w": rng.uniform(-1, 1, (3, 2)),
    "tx": rng.uniform(-1, 1, (2, 3)),
    "tw": rng.uniform(-1, 1, (3, 2)),
}


def flat(a):
    return np.asarray(a, np.float64).ravel().tolist()


def run(dtype):
    x, w, tx, tw = (jnp.asarray(inputs[k], dtype) for k in ("x", "w", "tx", "tw"))

    def f(x, w):
        t = jnp.tanh(x @ w)
        return jnp.sum(t**2) + jnp.sum(x * x * x)

    def f_aux(x, w):
        return f(x, w), jnp.mean(jnp.tanh(x @ w))

    (v, aux), (gx, gw) = jax.value_and_grad(f_aux, argnums=(0, 1), has_aux=True)(x, w)
    h = jax.hessian(f, argnums=1)(x, w)
    jf = jax.jacfwd(lambda x: jnp.tanh(x @ w))(x)
    hx, hw = jax.jvp(jax.grad(f, argnums=(0, 1)), (x, w), (tx, tw))[1]

    def row_hvp(xi):
        g = lambda w: jax.grad(lambda w: f(xi[None], w))(w)
        return jax.jvp(g, (w,), (tw,))[1]

    pe = jax.vmap(row_hvp)(x)

    @jax.custom_jvp
    def g(x, y):
        return jnp.sin(x) * y

    @g.defjvp
    def g_jvp(primals, tangents):
        x, y = primals
        tx, ty = tangents
        return g(x, y), 2.0 * jnp.cos(x) * y * tx + jnp.sin(x) * ty

    y, ty = w[:, 0], tw[:, 0]
    cj = jax.jvp(g, (x, y), (tx, ty))[1]
    cgx, cgy = jax.grad(lambda x, y: jnp.sum(jnp.tanh(g(x, y))), argnums=(0, 1))(x, y)
    cjf = jax.jacfwd(g, argnums=1)(x, y)
    cjr = jax.jacrev(g, argnums=0)(x, y)
    cvg = jax.vmap(jax.grad(lambda xi, y: jnp.sum(g(xi, y) ** 2)), in_axes=(0, None))(x, y)
    ch = jax.hessian(lambda x: jnp.sum(g(x, y)))(x)
    return {
        "cjvp_jvp": flat(cj), "cjvp_gx": flat(cgx), "cjvp_gy": flat(cgy),
        "cjvp_jacfwd": flat(cjf), "cjvp_jacrev": flat(cjr), "cjvp_vmap_grad": flat(cvg),
        "cjvp_hessian": flat(ch),
        "value": float(v), "aux": float(aux), "gx": flat(gx), "gw": flat(gw),
        "hessian": flat(h), "jacfwd": flat(jf), "hvp_x": flat(hx), "hvp_w": flat(hw),
        "per_example_hvp": flat(pe),
    }


fixture = {
    "jax": jax.__version__,
    "inputs": {k: {"shape": list(v.shape), "values": v.ravel().tolist()} for k, v in inputs.items()},
    "float32": run(jnp.float32),
    "float64": run(jnp.float64),
}
with open(os.path.join(OUT, "jax_func.json"), "w") as f:
    json.dump(fixture, f, allow_nan=False)
print("wrote jax_func.json with JAX", jax.__version__)
