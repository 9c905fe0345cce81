//! `ForwardAccumulator`: JVPs equal the jacobian times the tangent and finite differences for
//! every differentiable op, match TensorFlow's accumulator (`tools/tf_forward_reference.py`),
//! and give Hessian-vector products forward over reverse.

use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::random::Generator;
use gradtape::{Axes, DType, ForwardAccumulator, GradientTape, Result, Source, Tensor, Variable};
use serde_json::Value;

use crate::common;
use common::{assert_close, fixture, fixture_tensor, numbers, parity_tol};

fn close(got: &Tensor, want: &Value, dt: DType, what: &str) {
    assert_close(&vals(got), &numbers(want), parity_tol(dt), what);
}

type Fun = fn(&Tensor) -> Result<Tensor>;

/// One row per differentiable op (through the public ops that reach it).
fn rows() -> Vec<(&'static str, Fun)> {
    #[allow(unused_mut)]
    let mut rows: Vec<(&'static str, Fun)> = vec![
        ("negative", |x| ops::negative(x)),
        ("square", |x| ops::square(x)),
        ("sqrt", |x| ops::sqrt(x)),
        ("rsqrt", |x| ops::rsqrt(x)),
        ("reciprocal", |x| ops::reciprocal(x)),
        ("exp", |x| ops::exp(x)),
        ("expm1", |x| ops::expm1(x)),
        ("log", |x| ops::log(x)),
        ("log1p", |x| ops::log1p(x)),
        ("abs", |x| ops::abs(x)),
        ("sign", |x| ops::multiply(&ops::sign(x)?, x)),
        ("sin", |x| ops::sin(x)),
        ("cos", |x| ops::cos(x)),
        ("tanh", |x| ops::tanh(x)),
        ("sigmoid", |x| ops::sigmoid(x)),
        ("relu", |x| ops::relu(&ops::subtract(x, &1.2)?)),
        ("softplus", |x| ops::softplus(x)),
        ("add", |x| ops::add(x, &ops::reverse_rows(x)?)),
        ("subtract", |x| ops::subtract(x, &ops::square(x)?)),
        ("multiply", |x| ops::multiply(x, &ops::exp(x)?)),
        ("divide", |x| {
            ops::divide(x, &ops::add(&ops::square(x)?, &1.0)?)
        }),
        ("maximum", |x| ops::maximum(x, &1.3)),
        ("minimum", |x| ops::minimum(x, &1.3)),
        ("pow", |x| ops::pow(x, &ops::multiply(x, &0.5)?)),
        ("select", |x| {
            ops::select(&ops::greater(x, &1.0)?, &ops::square(x)?, x)
        }),
        ("cast", |x| {
            ops::cast(&ops::cast(x, DType::F32)?, DType::F64)
        }),
        ("reduce_sum", |x| ops::reduce_sum(x, 1, false)),
        ("reduce_max", |x| ops::reduce_max(x, 0, true)),
        ("reduce_max_first", |x| ops::reduce_max_first(x, 1, false)),
        ("reduce_min", |x| ops::reduce_min(x, Axes::All, false)),
        ("reduce_prod", |x| ops::reduce_prod(x, 1, false)),
        ("matmul", |x| ops::matmul(x, &ops::transpose(x, None)?)),
        ("reshape", |x| ops::reshape(&ops::square(x)?, &[-1])),
        ("identity", |x| ops::multiply(&ops::identity(x)?, x)),
        ("transpose", |x| ops::transpose(&ops::exp(x)?, None)),
        ("broadcast_to", |x| {
            ops::broadcast_to(&ops::square(x)?, &[2, 2, 3])
        }),
        ("slice", |x| ops::slice(&ops::square(x)?, &[0, 1], &[2, 2])),
        ("unslice", |x| ops::pad(&ops::square(x)?, &[[1, 0], [0, 1]])),
        ("concat", |x| ops::concat(&[ops::square(x)?, x.clone()], 1)),
        ("gather", |x| {
            ops::gather(&ops::exp(x)?, &Tensor::from_vec(vec![2i64, 0, 2], &[3])?, 1)
        }),
        ("scatter_add", |x| {
            ops::unsorted_segment_sum(&ops::square(x)?, &Tensor::from_vec(vec![1i64, 1], &[2])?, 2)
        }),
        ("patches", |x| {
            let img = ops::reshape(&ops::square(x)?, &[1, 2, 3, 1])?;
            let k = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 3.0], &[2, 2, 1, 1])?;
            ops::conv2d(&img, &k, [1, 1], ops::Padding::Same)
        }),
        ("unpatches", |x| {
            let img = ops::reshape(&ops::square(x)?, &[1, 2, 3, 1])?;
            let k = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 3.0], &[2, 2, 1, 1])?;
            ops::conv2d_transpose(&img, &k, [2, 1], ops::Padding::Valid, [1, 1])
        }),
        // the primitive itself: `Tensor::to_device` to the device a tensor is on records nothing
        ("to_device", |x| {
            let to = gradtape::ops::primitives()
                .find(|p| p.name() == "to_device")
                .unwrap();
            to.apply(
                &[&ops::square(x)?],
                &gradtape::ops::Params::device(gradtape::Device::Cpu),
            )
        }),
    ];
    #[cfg(feature = "linalg")]
    rows.extend(linalg_rows());
    rows
}

/// The rows of `linalg`'s primitives (feature `linalg`).
#[cfg(feature = "linalg")]
fn linalg_rows() -> Vec<(&'static str, Fun)> {
    vec![
        ("solve", |x| {
            let eye = ops::multiply(&Tensor::eye(2, DType::F64)?, &3.0)?;
            let a = ops::add(&ops::matmul_transposed(x, x, false, true)?, &eye)?;
            gradtape::linalg::solve(&ops::sin(&a)?, x)
        }),
        ("slogdet", |x| {
            let eye = ops::multiply(&Tensor::eye(2, DType::F64)?, &3.0)?;
            let a = ops::add(&ops::matmul_transposed(x, x, false, true)?, &eye)?;
            Ok(gradtape::linalg::slogdet(&a)?.1)
        }),
        ("cholesky", |x| {
            let eye = Tensor::eye(2, DType::F64)?;
            gradtape::linalg::cholesky(&ops::add(
                &ops::matmul_transposed(x, x, false, true)?,
                &eye,
            )?)
        }),
        ("triangular_solve", |x| {
            let eye = ops::multiply(&Tensor::eye(2, DType::F64)?, &3.0)?;
            let a = ops::add(&ops::matmul_transposed(x, x, false, true)?, &eye)?;
            gradtape::linalg::triangular_solve(&a, x, false, true)
        }),
        // the factorizations' rows compute what does not depend on the factors' signs, of
        // matrices whose eigenvalues and singular values stay apart
        ("eigh", |x| {
            let (e, v) =
                gradtape::linalg::eigh(&apart(&ops::matmul_transposed(x, x, false, true)?)?)?;
            ops::multiply(&ops::square(&v)?, &ops::expand_dims(&e, -2)?)
        }),
        ("eigvalsh", |x| {
            gradtape::linalg::eigvalsh(&apart(&ops::matmul_transposed(x, x, false, true)?)?)
        }),
        ("svd", |x| {
            let (s, u, v) = gradtape::linalg::svd(&apart(x)?, false)?;
            let polar = ops::matmul_transposed(&u, &v, false, true)?;
            let us = ops::multiply(&ops::square(&u)?, &ops::expand_dims(&s, -2)?)?;
            ops::add(
                &polar,
                &ops::matmul_transposed(&us, &ops::square(&v)?, false, true)?,
            )
        }),
        ("svdvals", |x| gradtape::linalg::svdvals(&apart(x)?)),
        ("qr", |x| {
            let (q, r) = gradtape::linalg::qr(&apart(x)?, false)?;
            ops::matmul(&q, &ops::square(&r)?)
        }),
    ]
}

/// `x` (`[2, n]`) plus 4 and 8 on its diagonal: eigenvalues and singular values kept apart.
#[cfg(feature = "linalg")]
fn apart(x: &Tensor) -> Result<Tensor> {
    let n = x.shape()[1];
    let d: Vec<f64> = (0..2 * n)
        .map(|e| match (e / n, e % n) {
            (0, 0) => 4.0,
            (1, 1) => 8.0,
            _ => 0.0,
        })
        .collect();
    ops::add(x, &Tensor::from_vec(d, &[2, n])?)
}

mod ops {
    pub use gradtape::ops::*;
    use gradtape::{Result, Tensor};
    /// The rows in reverse order (a strided view), so `add` sees two different operands.
    pub fn reverse_rows(x: &Tensor) -> Result<Tensor> {
        strided_slice(x, &[-1], &[-3], &[-1])
    }
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

#[test]
fn every_differentiable_op_has_a_jvp_equal_to_the_jacobian_times_the_tangent() {
    let listed: Vec<&str> = rows().iter().map(|r| r.0).collect();
    for p in gradtape::ops::primitives().filter(|p| p.is_differentiable()) {
        assert!(
            listed.contains(&p.name()),
            "{} has no forward-mode row",
            p.name()
        );
    }
    let mut rng = Generator::from_seed(8);
    for (name, f) in rows() {
        let x = rng.uniform(&[2, 3], 0.5, 2.0, DType::F64).unwrap();
        let t = rng.uniform(&[2, 3], -1.0, 1.0, DType::F64).unwrap();
        let acc = ForwardAccumulator::new([&x], std::slice::from_ref(&t)).unwrap();
        let y = f(&x).unwrap();
        let jvp = acc
            .jvp(&y)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no jvp"));
        // by the op's own JVP rule, not a fallback
        assert!(
            acc.recorded_ops().contains(&name),
            "{name}: its JVP rule did not run ({:?})",
            acc.recorded_ops()
        );
        assert_eq!(jvp.shape(), y.shape(), "{name}");
        // the jacobian (reverse mode) times the tangent
        let tape = GradientTape::new();
        tape.watch(&x);
        let y2 = f(&x).unwrap();
        let [j] = tape.jacobian(&y2, [&x]).unwrap();
        let j = vals(&j.unwrap());
        let tv = vals(&t);
        let want: Vec<f64> = (0..y.numel())
            .map(|i| (0..6).map(|k| j[i * 6 + k] * tv[k]).sum())
            .collect();
        let got = vals(&jvp);
        // through a float32 cast the tangent itself is rounded to float32, as forward mode
        // does in TensorFlow (the reverse-mode reference multiplies in float64)
        let tol = if name == "cast" { 1e-6 } else { 1e-9 };
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{name}: {got:?} vs {want:?}"
            );
        }
        // and central finite differences along the tangent (not through a float32 round trip,
        // whose steps are coarser than any useful epsilon)
        if name == "cast" {
            continue;
        }
        let eps = 1e-6;
        let at =
            |s: f64| vals(&f(&ops::add(&x, &ops::multiply(&t, &s).unwrap()).unwrap()).unwrap());
        let (hi, lo) = (at(eps), at(-eps));
        for (i, g) in got.iter().enumerate() {
            let fd = (hi[i] - lo[i]) / (2.0 * eps);
            assert!(
                (g - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                "{name}: element {i}: {g} vs fd {fd}"
            );
        }
    }
}

#[test]
fn forward_mode_matches_tensorflow_including_a_hessian_vector_product() {
    let fixture = fixture("tf_forward.json");
    let inp = &fixture["inputs"];
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let c = |n: &str| fixture_tensor(&inp[n], dt);
        let (x, w) = (c("x"), c("w"));
        let acc = ForwardAccumulator::new([&x, &w], &[c("tx"), c("tw")]).unwrap();
        let xw = ops::matmul(&x, &w).unwrap();
        let y = ops::add(
            &ops::multiply(
                &ops::tanh(&xw).unwrap(),
                &ops::exp(&ops::negative(&xw).unwrap()).unwrap(),
            )
            .unwrap(),
            &ops::reduce_sum(&ops::multiply(&x, &x).unwrap(), Axes::All, false).unwrap(),
        )
        .unwrap();
        close(
            &acc.jvp(&y).unwrap().unwrap(),
            &fixture[key]["ops"],
            dt,
            &format!("{key} ops"),
        );

        let (w1, w2) = (Variable::new(c("w1")), Variable::new(c("w2")));
        let labels = fixture_tensor(&inp["labels"], DType::F64)
            .cast(DType::I64)
            .unwrap();
        let acc = ForwardAccumulator::new([&w1, &w2], &[c("v1"), c("v2")]).unwrap();
        let tape = GradientTape::new();
        let logits = ops::matmul(
            &ops::tanh(&ops::matmul(&c("data"), &w1).unwrap()).unwrap(),
            &w2,
        )
        .unwrap();
        let loss =
            sparse_categorical_crossentropy(&labels, &logits, true, Reduction::SumOverBatchSize)
                .unwrap();
        let [g1, g2] = tape.gradient(&loss, [&w1 as &dyn Source, &w2]).unwrap();
        close(
            &acc.jvp(&g1.unwrap()).unwrap().unwrap(),
            &fixture[key]["hvp"]["w1"],
            dt,
            &format!("{key} hvp w1"),
        );
        close(
            &acc.jvp(&g2.unwrap()).unwrap().unwrap(),
            &fixture[key]["hvp"]["w2"],
            dt,
            &format!("{key} hvp w2"),
        );
    }
}

#[test]
fn accumulators_nest_with_tapes_the_other_way_too() {
    // reverse over forward: d/dx of (d/dt x³ along t = 1) = d/dx 3x² = 6x
    let x = Tensor::scalar(2.0f64);
    let tape = GradientTape::new();
    tape.watch(&x);
    let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f64)]).unwrap();
    let y = ops::multiply(&ops::square(&x).unwrap(), &x).unwrap();
    let d = acc.jvp(&y).unwrap().unwrap();
    assert_eq!(d.to_scalar::<f64>().unwrap(), 12.0);
    let [g] = tape.gradient(&d, [&x]).unwrap();
    assert_eq!(g.unwrap().to_scalar::<f64>().unwrap(), 12.0);
    // an accumulator inside another: second directional derivative
    let outer = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f64)]).unwrap();
    let inner = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f64)]).unwrap();
    let y = ops::multiply(&ops::square(&x).unwrap(), &x).unwrap();
    let d1 = inner.jvp(&y).unwrap().unwrap(); // 3x² = 12
    let d2 = outer.jvp(&d1).unwrap().unwrap(); // 6x = 12
    assert_eq!(
        (
            d1.to_scalar::<f64>().unwrap(),
            d2.to_scalar::<f64>().unwrap()
        ),
        (12.0, 12.0)
    );
}

#[test]
fn accumulators_nest_to_third_order_and_only_earlier_tapes_see_tangents() {
    // x³ at 3: first, second and third directional derivatives 27, 18, 6
    let x = Tensor::scalar(3.0f64);
    let one = || [Tensor::scalar(1.0f64)];
    let a1 = ForwardAccumulator::new([&x], &one()).unwrap();
    let a2 = ForwardAccumulator::new([&x], &one()).unwrap();
    let a3 = ForwardAccumulator::new([&x], &one()).unwrap();
    let y = ops::multiply(&ops::square(&x).unwrap(), &x).unwrap();
    let d1 = a3.jvp(&y).unwrap().unwrap();
    let d2 = a2.jvp(&d1).unwrap().unwrap();
    let d3 = a1.jvp(&d2).unwrap().unwrap();
    let got: Vec<f64> = [&d1, &d2, &d3].iter().map(|t| t.item().unwrap()).collect();
    assert_eq!(got, vec![27.0, 18.0, 6.0]);
    // an inner accumulator does not see the outer one's tangent computations
    assert!(a3.jvp(&d2).unwrap().is_none());
    drop((a1, a2, a3));

    // a tape started before the accumulator records the tangent computations (reverse over
    // forward); one started inside it records only the primal ops
    let outer = GradientTape::new();
    outer.watch(&x);
    let acc = ForwardAccumulator::new([&x], &one()).unwrap();
    let inner = GradientTape::new();
    inner.watch(&x);
    let y = ops::sin(&x).unwrap();
    let dy = acc.jvp(&y).unwrap().unwrap(); // cos x
    assert_eq!(inner.recorded_ops(), vec!["sin"]);
    assert!(outer.recorded_ops().len() > 1, "{:?}", outer.recorded_ops());
    let [g] = outer.gradient(&dy, [&x]).unwrap();
    assert!((g.unwrap().item().unwrap() + 3.0f64.sin()).abs() < 1e-15);
}

#[test]
fn a_custom_gradient_gets_its_tangent_from_its_gradient_function() {
    use gradtape::custom_gradient;
    // log1pexp with its stable gradient: at x = 100 (float32) the plain composition's tangent
    // is NaN (exp overflows), the custom one is exactly the tangent
    // (the same log1pexp the custom-gradient tests use)
    use crate::custom_gradient::log1pexp;
    let x = Tensor::from_vec(vec![100.0f32, 0.0], &[2]).unwrap();
    let t = Tensor::from_vec(vec![2.0f32, 2.0], &[2]).unwrap();
    let acc = ForwardAccumulator::new([&x], std::slice::from_ref(&t)).unwrap();
    let plain = ops::log1p(&ops::exp(&x).unwrap()).unwrap();
    let custom = log1pexp(&x).unwrap();
    assert!(acc.jvp(&plain).unwrap().unwrap().to_vec::<f32>().unwrap()[0].is_nan());
    assert_eq!(
        acc.jvp(&custom).unwrap().unwrap().to_vec::<f32>().unwrap(),
        vec![2.0, 1.0]
    );
    assert_eq!(acc.recorded_ops().last(), Some(&"custom_gradient"));

    // a variable read inside the forward: its tangent comes through the gradient function's
    // variable gradients
    let v = Variable::new(Tensor::scalar(2.0f64));
    let acc = ForwardAccumulator::new([&v], &[Tensor::scalar(0.5f64)]).unwrap();
    let x = Tensor::scalar(3.0f64);
    let v2 = v.clone();
    let y = custom_gradient(&[&x], move |xs| {
        let y = ops::multiply(&xs[0], &v2)?; // y = x v
        let (x, v) = (xs[0].clone(), v2.clone());
        let grad = move |dy: &[Tensor], _: &[Variable]| {
            Ok(vec![
                Some(ops::multiply(&dy[0], &v)?),
                Some(ops::multiply(&dy[0], &x)?),
            ])
        };
        Ok((vec![y], grad))
    })
    .unwrap();
    assert_eq!(acc.jvp(&y[0]).unwrap().unwrap().item().unwrap(), 1.5); // x · dv
}
