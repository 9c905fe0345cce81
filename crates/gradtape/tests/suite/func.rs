//! `gradtape::func` against JAX's transforms (`tools/jax_func_reference.py` writes the
//! fixture): `value_and_grad` with aux and argnums, `hessian`, `jacfwd`, `hvp`, and per-example
//! Hessian-vector products under `vmap`.

use gradtape::{func, ops, vmap, Axes, DType, Result, Tensor};
use serde_json::Value;

use crate::common;
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

/// A transformation of a function from `[3]` to `[3]`, for the composition test.
#[derive(Clone, Copy, Debug)]
enum Transform {
    /// `x ↦ ∇ Σ c·f(x)` by `func::grad`.
    Grad,
    /// `x ↦ J v` by `func::jvp` (a `ForwardAccumulator`).
    Jvp,
    /// `x ↦ jacfwd(f)(x) · v`.
    JacFwd,
    /// `x ↦ cᵀ · jacrev(f)(x)`.
    JacRev,
    /// `x ↦ Σ vmap(f)([x, 2x])`, over a batch of two.
    Vmap,
    /// `recompute_grad(f)`.
    Recompute,
    /// `custom_gradient` with `f`'s forward and a gradient from `func::vjp`.
    Custom,
}

type Fun = std::rc::Rc<dyn Fn(&Tensor) -> Result<Tensor>>;

fn cvec() -> Tensor {
    Tensor::from_vec(vec![0.3f64, -0.7, 1.1], &[3]).unwrap()
}
fn vvec() -> Tensor {
    Tensor::from_vec(vec![0.5f64, 1.0, -0.25], &[3]).unwrap()
}
fn weighted(y: &Tensor) -> Result<Tensor> {
    ops::reduce_sum(&ops::multiply(y, &cvec())?, Axes::All, false)
}

fn transformed(t: Transform, f: Fun) -> Fun {
    use std::rc::Rc;
    match t {
        Transform::Grad => Rc::new(move |x| {
            let f = f.clone();
            let g = func::grad(move |a: &[Tensor]| weighted(&f(&a[0])?), 0);
            g(std::slice::from_ref(x))
        }),
        Transform::Jvp => Rc::new(move |x| {
            let f = f.clone();
            let (_, mut dy) = func::jvp(
                move |a: &[Tensor]| Ok(vec![f(&a[0])?]),
                std::slice::from_ref(x),
                &[vvec()],
            )?;
            Ok(dy.remove(0))
        }),
        Transform::JacFwd => Rc::new(move |x| {
            let f = f.clone();
            let j = func::jacfwd(move |a: &[Tensor]| f(&a[0]), 0)(std::slice::from_ref(x))?;
            ops::reshape(&ops::matmul(&j, &ops::reshape(&vvec(), &[3, 1])?)?, &[3])
        }),
        Transform::JacRev => Rc::new(move |x| {
            let f = f.clone();
            let j = func::jacrev(move |a: &[Tensor]| f(&a[0]), 0)(std::slice::from_ref(x))?;
            ops::reshape(&ops::matmul(&ops::reshape(&cvec(), &[1, 3])?, &j)?, &[3])
        }),
        Transform::Vmap => Rc::new(move |x| {
            let f = f.clone();
            let xs = ops::stack(&[x, &ops::multiply(x, &2.0)?], 0)?;
            let y = vmap(move |a: &[Tensor]| Ok(vec![f(&a[0])?])).call(&[xs])?;
            ops::reduce_sum(&y[0], 0, false)
        }),
        Transform::Recompute => Rc::new(move |x| {
            let f = f.clone();
            let r = gradtape::recompute_grad(move |a: &[Tensor]| Ok(vec![f(&a[0])?]));
            Ok(r(&[x])?.remove(0))
        }),
        Transform::Custom => Rc::new(move |x| {
            let f = f.clone();
            let out = gradtape::custom_gradient(&[x], move |xs| {
                let y = f(&xs[0])?;
                let (f, x0) = (f.clone(), xs[0].clone());
                let grad = move |dy: &[Tensor], _: &[gradtape::Variable]| {
                    let f = f.clone();
                    let (_, pullback) = func::vjp(
                        move |a: &[Tensor]| Ok(vec![f(&a[0])?]),
                        std::slice::from_ref(&x0),
                    )?;
                    pullback.call(dy)
                };
                Ok((vec![y], grad))
            })?;
            Ok(out.into_iter().next().unwrap())
        }),
    }
}

/// The outermost transformation done by hand on `f` (already checked): central finite
/// differences for the derivatives, a loop for `vmap`, `f` itself for the gradient wrappers.
fn by_hand(t: Transform, f: &Fun, x: &[f64]) -> Result<Vec<f64>> {
    let eval = |x: &[f64]| f(&Tensor::from_vec(x.to_vec(), &[3])?)?.to_f64_vec();
    let h = 1e-5;
    let shifted =
        |d: &[f64], s: f64| -> Vec<f64> { x.iter().zip(d).map(|(a, b)| a + s * b).collect() };
    let c = cvec().to_f64_vec()?;
    let dot = |y: Vec<f64>| -> f64 { y.iter().zip(&c).map(|(a, b)| a * b).sum() };
    Ok(match t {
        Transform::Grad | Transform::JacRev => (0..3)
            .map(|i| {
                let mut e = vec![0.0; 3];
                e[i] = 1.0;
                Ok((dot(eval(&shifted(&e, h))?) - dot(eval(&shifted(&e, -h))?)) / (2.0 * h))
            })
            .collect::<Result<_>>()?,
        Transform::Jvp | Transform::JacFwd => {
            let v = vvec().to_f64_vec()?;
            let (up, down) = (eval(&shifted(&v, h))?, eval(&shifted(&v, -h))?);
            up.iter()
                .zip(&down)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect()
        }
        Transform::Vmap => {
            let twice: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
            eval(x)?
                .iter()
                .zip(eval(&twice)?)
                .map(|(a, b)| a + b)
                .collect()
        }
        Transform::Recompute | Transform::Custom => eval(x)?,
    })
}

/// Issue 21: transformations composed in every order, one to three deep (7 + 49 + 343
/// stacks). Each stack's outermost transformation is checked against the same computation
/// done by hand (finite differences or a loop) on the inner stack, which the shallower
/// stacks checked the same way. A composition that is not supported must say so (an error
/// naming it "not supported yet"), never give a wrong number.
#[test]
fn transformations_compose_in_every_order() {
    use Transform::*;
    let all = [Grad, Jvp, JacFwd, JacRev, Vmap, Recompute, Custom];
    let base: Fun = std::rc::Rc::new(|x: &Tensor| {
        let s = ops::reduce_sum(x, Axes::All, false)?;
        ops::add(
            &ops::multiply(&ops::sin(x)?, &s)?,
            &ops::multiply(&ops::square(x)?, &ops::cos(x)?)?,
        )
    });
    let x = vec![0.4f64, -0.9, 1.3];
    let xt = Tensor::from_vec(x.clone(), &[3]).unwrap();
    let mut stacks: Vec<Vec<Transform>> = all.iter().map(|&t| vec![t]).collect();
    for _ in 1..3 {
        let longer: Vec<Vec<Transform>> = stacks
            .iter()
            .filter(|s| s.len() == stacks.last().unwrap().len())
            .flat_map(|s| all.iter().map(move |&t| [s.clone(), vec![t]].concat()))
            .collect();
        stacks.extend(longer);
    }
    assert_eq!(stacks.len(), 7 + 49 + 343);
    let (mut checked, mut refused) = (0, vec![]);
    for stack in &stacks {
        // stack[0] innermost
        let inner = stack[..stack.len() - 1]
            .iter()
            .fold(base.clone(), |f, &t| transformed(t, f));
        let outer = *stack.last().unwrap();
        let got = match transformed(outer, inner.clone())(&xt) {
            Ok(y) => y.to_f64_vec().unwrap(),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("not supported yet"), "{stack:?}: {e}");
                refused.push(format!("{stack:?}"));
                continue;
            }
        };
        let want = match by_hand(outer, &inner, &x) {
            Ok(w) => w,
            Err(_) => continue, // the inner stack is refused (counted on its own)
        };
        assert_close(&got, &want, 1e-6, &format!("{stack:?}"));
        checked += 1;
    }
    eprintln!(
        "{checked} compositions checked, {} refused: {refused:?}",
        refused.len()
    );
    // Every stack agrees (18 were refused before the batching rule of custom gradients and
    // the nested-vmap gradients).
    assert!(refused.is_empty(), "refused: {refused:?}");
    assert_eq!(checked + refused.len(), stacks.len());
}

/// The bases of the random compositions: smooth functions from `[3]` to `[3]` that mix the
/// elements (so that every jacobian is full), built from different primitives.
fn random_base(k: usize) -> Fun {
    use std::rc::Rc;
    match k {
        0 => Rc::new(|x: &Tensor| {
            let s = ops::reduce_sum(x, Axes::All, false)?;
            ops::add(
                &ops::multiply(&ops::sin(x)?, &s)?,
                &ops::multiply(&ops::square(x)?, &ops::cos(x)?)?,
            )
        }),
        1 => Rc::new(|x: &Tensor| {
            let m = Tensor::from_vec(
                vec![0.5f64, -1.0, 0.25, 1.5, 0.75, -0.5, -0.25, 1.0, 2.0],
                &[3, 3],
            )?;
            let y = ops::reshape(&ops::matmul(&m, &ops::reshape(x, &[3, 1])?)?, &[3])?;
            ops::multiply(&ops::tanh(&y)?, &ops::exp(&ops::multiply(x, &0.5)?)?)
        }),
        _ => Rc::new(|x: &Tensor| {
            let p = ops::reduce_prod(&ops::add(x, &2.0)?, Axes::All, false)?;
            ops::divide(&ops::sigmoid(x)?, &ops::add(&p, &1.0)?)
        }),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Issue 21: transformations composed at random, one to three deep, on random inputs and
    /// one of three base functions, each outermost transformation checked against loops and
    /// finite differences of the inner stack (the exhaustive test above covers every order on
    /// one base and one input).
    #[test]
    fn random_compositions_agree_with_loops_and_finite_differences(
        x in proptest::collection::vec(-1.2f64..1.2, 3),
        base in 0usize..3,
        stack in proptest::collection::vec(0usize..7, 1..4),
    ) {
        use Transform::*;
        let all = [Grad, Jvp, JacFwd, JacRev, Vmap, Recompute, Custom];
        let stack: Vec<Transform> = stack.iter().map(|&i| all[i]).collect();
        let inner = stack[..stack.len() - 1]
            .iter()
            .fold(random_base(base), |f, &t| transformed(t, f));
        let outer = *stack.last().unwrap();
        let xt = Tensor::from_vec(x.clone(), &[3]).unwrap();
        let got = transformed(outer, inner.clone())(&xt)
            .unwrap_or_else(|e| panic!("{stack:?} on base {base} at {x:?}: {e}"))
            .to_f64_vec()
            .unwrap();
        let want = by_hand(outer, &inner, &x).unwrap();
        assert_close(&got, &want, 1e-5, &format!("{stack:?} on base {base} at {x:?}"));
    }
}

/// As JAX's `grad` raises: a non-scalar output (JAX: "Gradient only defined for scalar-output
/// functions. Output had shape: (3,)"), an integer output, an integer argument among argnums
/// ("grad requires real- or complex-valued inputs"). The tape would have summed the vector's
/// elements, and given the integer zeros.
#[test]
fn grad_refuses_what_jax_refuses() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).unwrap();
    let e =
        func::grad(|a: &[Tensor]| ops::square(&a[0]), &[0])(std::slice::from_ref(&x)).unwrap_err();
    assert!(
        matches!(e, gradtape::Error::Shape { .. }) && e.to_string().contains("shape [3]"),
        "{e}"
    );
    let one = ops::reshape(&x, &[3, 1]).unwrap();
    let e = func::value_and_grad(|a: &[Tensor]| ops::reduce_sum(&a[0], 0, false), &[0])(&[one])
        .unwrap_err();
    assert!(e.to_string().contains("shape [1]"), "{e}");
    let i = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    let e = func::grad(
        |a: &[Tensor]| ops::reduce_sum(&a[0], Axes::All, false),
        &[0],
    )(std::slice::from_ref(&i))
    .unwrap_err();
    assert!(matches!(e, gradtape::Error::DType { .. }), "{e:?}");
    // an integer argument not in argnums is fine
    let g = func::grad(
        |a: &[Tensor]| {
            let n = ops::cast(&ops::reduce_sum(&a[1], Axes::All, false)?, DType::F64)?;
            ops::multiply(&ops::reduce_sum(&a[0], Axes::All, false)?, &n)
        },
        &[0],
    )(&[x.clone(), i.clone()])
    .unwrap();
    assert_eq!(vals(&g[0]), vec![3.0, 3.0, 3.0]);
    let e = func::grad(
        |a: &[Tensor]| ops::reduce_sum(&a[0], Axes::All, false),
        &[1],
    )(&[x, i])
    .unwrap_err();
    assert!(e.to_string().contains("argument 1 is int64"), "{e}");
}

/// `custom_jvp` against JAX (`tools/jax_func_reference.py`): g(x, y) = sin(x) · y with a rule
/// that is deliberately not g's derivative (2 cos(x) y tx + sin(x) ty), so every number below
/// shows the rule at work: forward mode, reverse mode by its transpose, `jacfwd`, `jacrev`,
/// `vmap` of `grad`, and the Hessian (the rule differentiated in x).
#[test]
fn custom_jvp_matches_jax() {
    fn g(x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let out = gradtape::custom_jvp(
            &[x, y],
            |p| Ok(vec![ops::multiply(&ops::sin(&p[0])?, &p[1])?]),
            |p, t| {
                let dx = ops::multiply(&ops::multiply(&ops::cos(&p[0])?, &p[1])?, &t[0])?;
                let dy = ops::multiply(&ops::sin(&p[0])?, &t[1])?;
                Ok(vec![ops::add(&ops::multiply(&dx, &2.0)?, &dy)?])
            },
        )?;
        Ok(out[0].clone())
    }
    let fixture = fixture("jax_func.json");
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let jax = &fixture[key];
        let c = |n: &str| fixture_tensor(&fixture["inputs"][n], dt);
        let (x, w, tx, tw) = (c("x"), c("w"), c("tx"), c("tw"));
        let column = |t: &Tensor| t.slice(gradtape::s![.., 0]).unwrap();
        let (y, ty) = (column(&w), column(&tw));
        let what = |n: &str| format!("{key} custom_jvp {n}");

        let (_, t) = func::jvp(
            |a: &[Tensor]| Ok(vec![g(&a[0], &a[1])?]),
            &[x.clone(), y.clone()],
            &[tx.clone(), ty.clone()],
        )
        .unwrap();
        close(&vals(&t[0]), &jax["cjvp_jvp"], dt, &what("jvp"));

        let loss = |a: &[Tensor]| ops::reduce_sum(&ops::tanh(&g(&a[0], &a[1])?)?, Axes::All, false);
        let gr = func::grad(loss, [0, 1])(&[x.clone(), y.clone()]).unwrap();
        close(&vals(&gr[0]), &jax["cjvp_gx"], dt, &what("grad x"));
        close(&vals(&gr[1]), &jax["cjvp_gy"], dt, &what("grad y"));

        let xc = x.clone();
        let jf =
            func::jacfwd(move |a: &[Tensor]| g(&xc, &a[0]), 0)(std::slice::from_ref(&y)).unwrap();
        assert_eq!(jf.shape(), &[2, 3, 3]);
        close(&vals(&jf), &jax["cjvp_jacfwd"], dt, &what("jacfwd"));
        let yc = y.clone();
        let jr =
            func::jacrev(move |a: &[Tensor]| g(&a[0], &yc), 0)(std::slice::from_ref(&x)).unwrap();
        assert_eq!(jr.shape(), &[2, 3, 2, 3]);
        close(&vals(&jr), &jax["cjvp_jacrev"], dt, &what("jacrev"));

        let yv = y.clone();
        let per_row = vmap(move |xs: &[Tensor]| {
            let sq =
                |a: &[Tensor]| ops::reduce_sum(&ops::square(&g(&a[0], &yv)?)?, Axes::All, false);
            Ok(vec![func::grad(sq, 0)(std::slice::from_ref(&xs[0]))?])
        })
        .call(std::slice::from_ref(&x))
        .unwrap();
        close(
            &vals(&per_row[0]),
            &jax["cjvp_vmap_grad"],
            dt,
            &what("vmap grad"),
        );

        let yh = y.clone();
        let h = func::hessian(
            move |a: &[Tensor]| ops::reduce_sum(&g(&a[0], &yh)?, Axes::All, false),
            0,
        )(std::slice::from_ref(&x))
        .unwrap();
        assert_eq!(h.shape(), &[2, 3, 2, 3]);
        close(&vals(&h), &jax["cjvp_hessian"], dt, &what("hessian"));
    }
}
