//! `gradtape::func` against JAX's transforms (`tools/jax_func_reference.py` writes the
//! fixture): `value_and_grad` with aux and argnums, `hessian`, `jacfwd`, `hvp`, and per-example
//! Hessian-vector products under `vmap`.

use gradtape::{func, ops, vmap, Axes, DType, Result, Tensor};
use serde_json::Value;

mod common;
use common::{assert_close, fixture, fixture_tensor, numbers, parity_tol};

fn close(got: &[f64], want: &Value, dt: DType, what: &str) {
    assert_close(got, &numbers(want), parity_tol(dt), what);
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

/// f(x, w) = Σ tanh(x w)² + Σ x³
fn f(a: &[Tensor]) -> Result<Tensor> {
    let t = ops::tanh(&ops::matmul(&a[0], &a[1])?)?;
    ops::add(
        &ops::reduce_sum(&ops::square(&t)?, Axes::All, false)?,
        &ops::reduce_sum(
            &ops::multiply(&ops::square(&a[0])?, &a[0])?,
            Axes::All,
            false,
        )?,
    )
}

#[test]
fn transforms_match_jax() {
    let fixture = fixture("jax_func.json");
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let jax = &fixture[key];
        let c = |n: &str| fixture_tensor(&fixture["inputs"][n], dt);
        let (x, w, tx, tw) = (c("x"), c("w"), c("tx"), c("tw"));
        let args = [x.clone(), w.clone()];

        let f_aux = |a: &[Tensor]| -> Result<(Tensor, Tensor)> {
            let aux = ops::reduce_mean(&ops::tanh(&ops::matmul(&a[0], &a[1])?)?, Axes::All, false)?;
            Ok((f(a)?, aux))
        };
        let (v, aux, g) = func::value_and_grad_with_aux(f_aux, &[0, 1])(&args).unwrap();
        close(&vals(&v), &jax["value"], dt, &format!("{key} value"));
        close(&vals(&aux), &jax["aux"], dt, &format!("{key} aux"));
        close(&vals(&g[0]), &jax["gx"], dt, &format!("{key} gx"));
        close(&vals(&g[1]), &jax["gw"], dt, &format!("{key} gw"));

        let h = func::hessian(f, 1)(&args).unwrap();
        assert_eq!(h.shape(), &[3, 2, 3, 2]);
        close(&vals(&h), &jax["hessian"], dt, &format!("{key} hessian"));

        let wc = w.clone();
        let j = func::jacfwd(move |a: &[Tensor]| ops::tanh(&ops::matmul(&a[0], &wc)?), 0)(
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(j.shape(), &[2, 2, 2, 3]);
        close(&vals(&j), &jax["jacfwd"], dt, &format!("{key} jacfwd"));

        let hv = func::hvp(f, &args, &[tx.clone(), tw.clone()]).unwrap();
        close(&vals(&hv[0]), &jax["hvp_x"], dt, &format!("{key} hvp x"));
        close(&vals(&hv[1]), &jax["hvp_w"], dt, &format!("{key} hvp w"));

        // per-example HVPs: each row of x is an example, w shared
        let (wv, twv) = (w.clone(), tw.clone());
        let pe = vmap(move |xs: &[Tensor]| {
            let xi = ops::expand_dims(&xs[0], 0)?;
            let fw = move |a: &[Tensor]| f(&[xi.clone(), a[0].clone()]);
            func::hvp(fw, std::slice::from_ref(&wv), std::slice::from_ref(&twv))
        })
        .call(std::slice::from_ref(&x))
        .unwrap();
        assert_eq!(pe[0].shape(), &[2, 3, 2]);
        close(
            &vals(&pe[0]),
            &jax["per_example_hvp"],
            dt,
            &format!("{key} per-example hvp"),
        );
    }
}

#[test]
fn jacfwd_equals_jacrev_and_vjp_is_reusable() {
    let x = Tensor::from_vec(vec![0.3f64, -0.2, 0.9, 1.4, -1.1, 0.5], &[2, 3]).unwrap();
    let g = |a: &[Tensor]| ops::softmax(&ops::multiply(&a[0], &ops::exp(&a[0])?)?, -1);
    let fwd = func::jacfwd(g, 0)(std::slice::from_ref(&x)).unwrap();
    let rev = func::jacrev(g, 0)(std::slice::from_ref(&x)).unwrap();
    assert_eq!(fwd.shape(), rev.shape());
    for (a, b) in vals(&fwd).iter().zip(vals(&rev)) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let (out, pullback) =
        func::vjp(|a: &[Tensor]| Ok(vec![g(a)?]), std::slice::from_ref(&x)).unwrap();
    let ones = Tensor::ones_like(&out[0]).unwrap();
    let first = vals(&pullback.call(std::slice::from_ref(&ones)).unwrap()[0]);
    let again = vals(&pullback.call(std::slice::from_ref(&ones)).unwrap()[0]);
    assert_eq!(first, again);
    // an argnum out of range is an error
    assert!(func::grad(f, &[2])(&[x.clone(), x]).is_err());
}

/// Issue 21, composition 3: arguments that are one tensor are still separate arguments, as in
/// JAX (`grad(lambda a, b: a * b, (0, 1))(x, x)` at 3 is `(3, 3)`, not `(6, 6)`).
#[test]
fn arguments_that_are_one_tensor_get_their_own_gradients() {
    let x = Tensor::scalar(3.0f64);
    let mul = |a: &[Tensor]| ops::multiply(&a[0], &a[1]);
    let g = func::grad(mul, &[0, 1])(&[x.clone(), x.clone()]).unwrap();
    let g: Vec<f64> = g.iter().map(|t| t.item().unwrap()).collect();
    assert_eq!(g, [3.0, 3.0]);
    let (_, pullback) =
        func::vjp(|a: &[Tensor]| Ok(vec![mul(a)?]), &[x.clone(), x.clone()]).unwrap();
    let g = pullback.call(&[Tensor::scalar(1.0f64)]).unwrap();
    let g: Vec<f64> = g.iter().map(|t| t.item().unwrap()).collect();
    assert_eq!(g, [3.0, 3.0]);
    let j = func::jacrev(mul, 1)(&[x.clone(), x.clone()]).unwrap();
    assert_eq!(j.item().unwrap(), 3.0);
}

/// Issue 21, composition 6: `vmap(vmap(jvp(sin)))`, and `vmap` of `jacfwd`, give the loops'
/// values.
#[test]
fn vmap_of_vmap_of_jvp_and_vmap_of_jacfwd_equal_loops() {
    let x = Tensor::from_vec((0..6).map(|i| 0.3 * i as f64).collect(), &[2, 3]).unwrap();
    let t = Tensor::from_vec((0..6).map(|i| 1.0 + i as f64).collect(), &[2, 3]).unwrap();
    let jvp_sin = |a: &[Tensor]| -> Result<Vec<Tensor>> {
        let (_, dy) = func::jvp(|p: &[Tensor]| Ok(vec![ops::sin(&p[0])?]), &a[..1], &a[1..])?;
        Ok(dy)
    };
    let inner = move |a: &[Tensor]| vmap(jvp_sin).call(a);
    let got = vmap(inner).call(&[x.clone(), t.clone()]).unwrap();
    let want = ops::multiply(&ops::cos(&x).unwrap(), &t).unwrap();
    let v = |t: &Tensor| t.to_f64_vec().unwrap();
    assert_close(&v(&got[0]), &v(&want), 1e-12, "vmap(vmap(jvp(sin)))");
    // per-row jacobians of sin(x) * x by forward mode: diagonal matrices
    let f = |a: &[Tensor]| ops::multiply(&ops::sin(&a[0])?, &a[0]);
    let jac = vmap(move |a: &[Tensor]| Ok(vec![func::jacfwd(f, 0)(a)?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(jac[0].shape(), [2, 3, 3]);
    for r in 0..2 {
        let row = ops::gather(&x, &Tensor::from_vec(vec![r as i64], &[1]).unwrap(), 0).unwrap();
        let one = func::jacfwd(f, 0)(&[ops::reshape(&row, &[3]).unwrap()]).unwrap();
        let got =
            ops::gather(&jac[0], &Tensor::from_vec(vec![r as i64], &[1]).unwrap(), 0).unwrap();
        assert_close(&v(&got), &v(&one), 1e-12, "vmap(jacfwd)");
    }
}

/// Issue 21, compositions 5 and 6: `vmap` of `jacrev` (a jacobian inside `vmap`, refused
/// before) and of a forward-over-reverse HVP whose function reads a `Variable` give the loops'
/// values.
#[test]
fn vmap_of_jacrev_and_of_an_hvp_reading_a_variable_equal_loops() {
    let x = Tensor::from_vec((0..6).map(|i| 0.3 * i as f64 - 0.5).collect(), &[2, 3]).unwrap();
    let row = |r: i64| {
        let g = ops::gather(&x, &Tensor::from_vec(vec![r], &[1]).unwrap(), 0).unwrap();
        ops::reshape(&g, &[3]).unwrap()
    };
    let v = |t: &Tensor| t.to_f64_vec().unwrap();
    let f = |a: &[Tensor]| {
        ops::multiply(
            &ops::sin(&a[0])?,
            &ops::reduce_sum(&a[0], Axes::All, false)?,
        )
    };
    let jac = vmap(move |a: &[Tensor]| Ok(vec![func::jacrev(f, 0)(a)?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(jac[0].shape(), [2, 3, 3]);
    let w = gradtape::Variable::new(Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3]).unwrap());
    let w2 = w.clone();
    let g = move |a: &[Tensor]| {
        let cube = ops::multiply(&ops::square(&a[0])?, &a[0])?;
        ops::reduce_sum(&ops::multiply(&cube, &w2.value())?, Axes::All, false)
    };
    let t = Tensor::from_vec(vec![1.0f64, 2.0, -1.0, 0.5, 0.0, 3.0], &[2, 3]).unwrap();
    let hv = vmap(|a: &[Tensor]| func::hvp(&g, &a[..1], &a[1..]))
        .call(&[x.clone(), t.clone()])
        .unwrap();
    for r in 0..2 {
        let one = func::jacrev(f, 0)(&[row(r)]).unwrap();
        let got = ops::gather(&jac[0], &Tensor::from_vec(vec![r], &[1]).unwrap(), 0).unwrap();
        assert_close(&v(&got), &v(&one), 1e-12, "vmap(jacrev)");
        let tr = ops::reshape(
            &ops::gather(&t, &Tensor::from_vec(vec![r], &[1]).unwrap(), 0).unwrap(),
            &[3],
        )
        .unwrap();
        // the Hessian of sum(x³ w) is diag(6 x w)
        let want = ops::multiply(
            &ops::multiply(&ops::multiply(&row(r), &6.0).unwrap(), &w.value()).unwrap(),
            &tr,
        )
        .unwrap();
        let got = ops::gather(&hv[0], &Tensor::from_vec(vec![r], &[1]).unwrap(), 0).unwrap();
        assert_close(&v(&got), &v(&want), 1e-12, "vmap(hvp) with a variable");
    }
}
