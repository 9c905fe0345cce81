//! The tapes' `jacobian` and `batch_jacobian`: against central finite differences, against
//! TensorFlow's numbers (`tools/tf_jacobian_reference.py` writes the fixture), and their
//! options (chunks, unconnected and integer sources, batch-size errors).

use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::random::Generator;
use gradtape::{
    ops, Axes, DType, GradientTape, JacobianOptions, Result, Source, Tensor, UnconnectedGradients,
    Variable,
};
use serde_json::Value;

use crate::common;
use common::{assert_close, fixture, fixture_tensor, parity_tol};

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

/// The jacobian of `f` at `x` by central differences, `[f(x).shape..., x.shape...]` flattened.
fn finite_jacobian(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Vec<f64> {
    let base = vals(x);
    let eps = 1e-6;
    let n_out = f(x).unwrap().numel();
    let mut j = vec![0.0; n_out * base.len()];
    for k in 0..base.len() {
        let at = |d: f64| {
            let mut v = base.clone();
            v[k] += d;
            vals(&f(&Tensor::from_vec(v, x.shape()).unwrap()).unwrap())
        };
        let (hi, lo) = (at(eps), at(-eps));
        for i in 0..n_out {
            j[i * base.len() + k] = (hi[i] - lo[i]) / (2.0 * eps);
        }
    }
    j
}

type Fun = fn(&Tensor) -> Result<Tensor>;

fn functions() -> Vec<(&'static str, Fun)> {
    vec![
        ("tanh(xW + b)", |x| {
            let w = Tensor::from_vec((0..12).map(|v| (v as f64 - 5.0) / 7.0).collect(), &[3, 4])?
                .cast(x.dtype())?;
            ops::tanh(&ops::add(&ops::matmul(x, &w)?, &0.1)?)
        }),
        ("softmax", |x| ops::softmax(x, -1)),
        ("row norms", |x| {
            ops::sqrt(&ops::reduce_sum(&ops::square(x)?, 1, true)?)
        }),
        ("slice and concat", |x| {
            let a = ops::slice(x, &[0, 1], &[2, 2])?;
            ops::concat(&[ops::exp(&a)?, ops::multiply(x, x)?], 1)
        }),
        ("gather and max", |x| {
            let idx = Tensor::from_vec(vec![2i64, 0, 2], &[3])?;
            ops::reduce_max(&ops::gather(x, &idx, 1)?, 0, false)
        }),
        ("transpose, pad, prod", |x| {
            let t = ops::pad(&ops::transpose(x, None)?, &[[1, 0], [0, 1]])?;
            ops::reduce_prod(&ops::add(&t, &1.5)?, 1, false)
        }),
        ("logsumexp over all", |x| {
            ops::reduce_logsumexp(x, Axes::All, false)
        }),
    ]
}

#[test]
fn jacobians_match_finite_differences() {
    let mut rng = Generator::from_seed(3);
    for (name, f) in functions() {
        let x = rng.uniform(&[2, 3], -1.0, 1.0, DType::F64).unwrap();
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = f(&x).unwrap();
        let [j] = tape.jacobian(&y, [&x]).unwrap();
        let j = j.unwrap_or_else(|| panic!("{name}: no jacobian"));
        let mut shape = y.shape().to_vec();
        shape.extend_from_slice(x.shape());
        assert_eq!(j.shape(), &shape[..], "{name}");
        assert_close(&vals(&j), &finite_jacobian(&f, &x), 1e-6, name);
    }
}

#[test]
fn chunked_and_unchunked_jacobians_are_identical() {
    let mut rng = Generator::from_seed(4);
    for (name, f) in functions() {
        let x = rng.uniform(&[2, 3], -1.0, 1.0, DType::F32).unwrap();
        let run = |chunk: Option<usize>| {
            let tape = GradientTape::persistent();
            tape.watch(&x);
            let y = f(&x).unwrap();
            let opts = JacobianOptions {
                chunk_size: chunk,
                ..Default::default()
            };
            let j = tape.jacobian_with(&y, &[&x], &opts).unwrap()[0].clone();
            let b = tape.batch_jacobian_with(&y, &x, &opts);
            (vals(&j.unwrap()), b.ok().flatten().map(|b| vals(&b)))
        };
        let whole = run(None);
        for chunk in [1, 2, 5] {
            assert_eq!(run(Some(chunk)), whole, "{name}, chunk {chunk}");
        }
    }
}

#[test]
fn batch_jacobian_is_the_diagonal_blocks_of_the_jacobian() {
    let mut rng = Generator::from_seed(5);
    let x = rng.uniform(&[4, 3], -1.0, 1.0, DType::F64).unwrap();
    let w = rng.uniform(&[3, 5], -1.0, 1.0, DType::F64).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let y = ops::tanh(&ops::matmul(&x, &w).unwrap()).unwrap();
    let b = vals(&tape.batch_jacobian(&y, &x).unwrap().unwrap());
    let [j] = tape.jacobian(&y, [&x]).unwrap();
    let j = vals(&j.unwrap()); // [4, 5, 4, 3]
    for e in 0..4 {
        for o in 0..5 {
            for i in 0..3 {
                let full = j[((e * 5 + o) * 4 + e) * 3 + i];
                assert_eq!(b[(e * 5 + o) * 3 + i], full, "example {e}, out {o}, in {i}");
            }
        }
    }
    let z = Tensor::zeros(&[3, 3], DType::F64).unwrap();
    let e = tape.batch_jacobian(&y, &z).unwrap_err().to_string();
    assert!(e.contains("[4, 5]") && e.contains("[3, 3]"), "{e}");
    // rank 1 on either side is an error, as TensorFlow's ValueError ("must have rank at
    // least 2"), not a jacobian of a batch of scalars
    let v = ops::reshape(&x, &[12]).unwrap();
    let sq = ops::square(&v).unwrap();
    let e = tape.batch_jacobian(&sq, &v).unwrap_err();
    assert!(e.to_string().contains("rank 2 or more"), "{e}");
    let row_sums = ops::reduce_sum(&y, 1, false).unwrap(); // [4]
    let e = tape.batch_jacobian(&row_sums, &x).unwrap_err();
    assert!(e.to_string().contains("[4] and source [4, 3]"), "{e}");
}

#[test]
fn unconnected_and_integer_sources_and_intermediates() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let v = Variable::new(Tensor::from_vec(vec![3.0f32, 4.0, 5.0], &[3]).unwrap());
    let z = Tensor::scalar(1.0f32);
    let k = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    tape.watch(&z);
    tape.watch(&k);
    let h = ops::exp(&x).unwrap(); // an intermediate
    let y = ops::multiply(&ops::reduce_sum(&h, 0, true).unwrap(), &v).unwrap(); // [3]
    let j = tape
        .jacobian_with(
            &y,
            &[&x as &dyn Source, &v, &z, &k, &h],
            &Default::default(),
        )
        .unwrap();
    assert_eq!(j[0].as_ref().unwrap().shape(), &[3, 2]);
    let e = (1.0f64.exp(), 2.0f64.exp());
    assert_close(
        &vals(j[0].as_ref().unwrap()),
        &[
            3.0 * e.0,
            3.0 * e.1,
            4.0 * e.0,
            4.0 * e.1,
            5.0 * e.0,
            5.0 * e.1,
        ],
        1e-6,
        "d y / d x",
    );
    assert_eq!(j[1].as_ref().unwrap().shape(), &[3, 3]);
    assert!(j[2].is_none(), "unconnected");
    assert!(j[3].is_none(), "integer source");
    assert_eq!(
        vals(j[4].as_ref().unwrap()),
        vec![3.0, 3.0, 4.0, 4.0, 5.0, 5.0]
    );
    let zero = JacobianOptions {
        unconnected_gradients: UnconnectedGradients::Zero,
        ..Default::default()
    };
    let j = tape.jacobian_with(&y, &[&z], &zero).unwrap();
    assert_eq!(j[0].as_ref().unwrap().shape(), &[3]);
    assert_eq!(vals(j[0].as_ref().unwrap()), vec![0.0; 3]);
    let bad = JacobianOptions {
        chunk_size: Some(0),
        ..Default::default()
    };
    assert!(tape.jacobian_with(&y, &[&x], &bad).is_err());
    // the target itself: the identity
    let [i] = tape.jacobian(&y, [&y]).unwrap();
    assert_eq!(
        vals(&i.unwrap()),
        vals(&Tensor::eye(3, DType::F32).unwrap())
    );
}

#[test]
fn a_hessian_through_nested_tapes_matches_finite_differences_of_the_gradient() {
    let x = Tensor::from_vec(vec![0.3f64, -0.7, 1.1], &[3]).unwrap();
    let f = |x: &Tensor| -> Result<Tensor> {
        let e = ops::multiply(&ops::exp(x)?, &ops::square(x)?)?;
        ops::add(
            &ops::reduce_sum(&e, Axes::All, false)?,
            &ops::reduce_prod(x, Axes::All, false)?,
        )
    };
    let grad = |x: &Tensor| -> Result<Tensor> {
        let t = GradientTape::new();
        t.watch(x);
        let y = f(x)?;
        let [g] = t.gradient(&y, [x])?;
        Ok(g.unwrap())
    };
    let outer = GradientTape::new();
    outer.watch(&x);
    let g = grad(&x).unwrap();
    let [h] = outer.jacobian(&g, [&x]).unwrap();
    let h = vals(&h.unwrap());
    assert_close(&h, &finite_jacobian(&grad, &x), 1e-6, "hessian");
    for i in 0..3 {
        for j in 0..3 {
            assert!((h[i * 3 + j] - h[j * 3 + i]).abs() < 1e-12, "symmetric");
        }
    }
}

// ----- TensorFlow's numbers -----

fn check(ours: &Option<Tensor>, theirs: &Value, dt: DType, what: &str) {
    if theirs.is_null() {
        assert!(ours.is_none(), "{what}: TensorFlow gives None");
        return;
    }
    let ours = ours
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no jacobian"));
    let want = fixture_tensor(theirs, DType::F64);
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    assert_close(&vals(ours), &vals(&want), parity_tol(dt), what);
}

#[test]
fn jacobians_match_tensorflow() {
    let fixture = fixture("tf_jacobian.json");
    let inp = &fixture["inputs"];
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let tf = &fixture[key];
        let c = |name: &str| fixture_tensor(&inp[name], dt);
        let var = |name: &str| Variable::new(c(name));

        let x = var("x3");
        let tape = GradientTape::new();
        let y = ops::multiply(&ops::sin(&x).unwrap(), &x).unwrap();
        let [j] = tape.jacobian(&y, [&x]).unwrap();
        check(&j, &tf["vector"], dt, &format!("{key} vector"));

        let (x, w, b, z) = (var("x23"), var("w34"), var("b4"), var("z"));
        let tape = GradientTape::persistent();
        let y = ops::tanh(&ops::add(&ops::matmul(&x, &w).unwrap(), &b).unwrap()).unwrap();
        let [jw, jb, jx, jz] = tape.jacobian(&y, [&w, &b, &x, &z]).unwrap();
        for (ours, name) in [(jw, "w"), (jb, "b"), (jx, "x"), (jz, "z")] {
            check(
                &ours,
                &tf["dense"][name],
                dt,
                &format!("{key} dense {name}"),
            );
        }
        let zero = JacobianOptions {
            unconnected_gradients: UnconnectedGradients::Zero,
            ..Default::default()
        };
        let jz0 = tape.jacobian_with(&y, &[&z], &zero).unwrap();
        check(
            &jz0[0],
            &tf["dense"]["z_zero"],
            dt,
            &format!("{key} dense z zero"),
        );

        let x = var("x43");
        let tape = GradientTape::new();
        let y =
            ops::tanh(&ops::add(&ops::matmul(&x, &c("w35")).unwrap(), &c("b5")).unwrap()).unwrap();
        let j = tape.batch_jacobian(&y, &x).unwrap();
        check(&j, &tf["batch"], dt, &format!("{key} batch"));

        let x = var("x3");
        let outer = GradientTape::new();
        let inner = GradientTape::new();
        let f = ops::reduce_sum(
            &ops::multiply(&ops::multiply(&ops::exp(&x).unwrap(), &x).unwrap(), &x).unwrap(),
            Axes::All,
            false,
        )
        .unwrap();
        let [g] = inner.gradient(&f, [&x]).unwrap();
        let [h] = outer.jacobian(&g.unwrap(), [&x]).unwrap();
        check(&h, &tf["hessian"], dt, &format!("{key} hessian"));

        let (w1, w2) = (var("w35"), var("w52"));
        let labels = fixture_tensor(&inp["labels"], DType::F64)
            .cast(DType::I64)
            .unwrap();
        let tape = GradientTape::new();
        let hidden = ops::tanh(&ops::matmul(&c("x43"), &w1).unwrap()).unwrap();
        let logits = ops::matmul(&hidden, &w2).unwrap();
        let losses =
            sparse_categorical_crossentropy(&labels, &logits, true, Reduction::None).unwrap();
        let [j1, j2] = tape.jacobian(&losses, [&w1, &w2]).unwrap();
        check(
            &j1,
            &tf["per_example"]["w1"],
            dt,
            &format!("{key} per-example w1"),
        );
        check(
            &j2,
            &tf["per_example"]["w2"],
            dt,
            &format!("{key} per-example w2"),
        );
    }
}

/// `vmap` of a function that takes a gradient on its own tape gives per-example gradients:
/// TensorFlow's per-example jacobian for the shared weights, and for each example's input
/// the diagonal blocks of the jacobian of the loss vector.
#[test]
fn per_example_gradients_by_vmap_of_a_tape_match_tensorflow() {
    let fixture = fixture("tf_jacobian.json");
    let inp = &fixture["inputs"];
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let c = |name: &str| fixture_tensor(&inp[name], dt);
        let (w1, w2) = (Variable::new(c("w35")), Variable::new(c("w52")));
        let labels = fixture_tensor(&inp["labels"], DType::F64)
            .cast(DType::I64)
            .unwrap();
        let x = c("x43");
        let per_example = |xs: &[Tensor]| -> Result<Vec<Tensor>> {
            let tape = GradientTape::new();
            tape.watch(&xs[0]);
            let xi = ops::expand_dims(&xs[0], 0)?; // [1, 3]
            let li = ops::expand_dims(&xs[1], 0)?; // [1]
            let logits = ops::matmul(&ops::tanh(&ops::matmul(&xi, &w1)?)?, &w2)?;
            let loss = sparse_categorical_crossentropy(&li, &logits, true, Reduction::Sum)?;
            let [g1, g2, gx] = tape.gradient(&loss, [&w1 as &dyn Source, &w2, &xs[0]])?;
            Ok(vec![g1.unwrap(), g2.unwrap(), gx.unwrap()])
        };
        let g = gradtape::vmap(per_example)
            .call(&[x.clone(), labels.clone()])
            .unwrap();
        let tf = &fixture[key]["per_example"];
        check(
            &Some(g[0].clone()),
            &tf["w1"],
            dt,
            &format!("{key} vmap(grad) w1"),
        );
        check(
            &Some(g[1].clone()),
            &tf["w2"],
            dt,
            &format!("{key} vmap(grad) w2"),
        );
        // d loss_i / d x_i: the diagonal blocks of the jacobian of the loss vector
        let tape = GradientTape::new();
        tape.watch(&x);
        let logits = ops::matmul(&ops::tanh(&ops::matmul(&x, &w1).unwrap()).unwrap(), &w2).unwrap();
        let losses =
            sparse_categorical_crossentropy(&labels, &logits, true, Reduction::None).unwrap();
        let [j] = tape.jacobian(&losses, [&x]).unwrap();
        let j = vals(&j.unwrap()); // [4, 4, 3]
        let diag: Vec<f64> = (0..4)
            .flat_map(|i| (0..3).map(move |k| (i, k)))
            .map(|(i, k)| j[(i * 4 + i) * 3 + k])
            .collect();
        assert_eq!(g[2].shape(), &[4, 3]);
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-12 };
        assert_close(&vals(&g[2]), &diag, tol, &format!("{key} vmap(grad) x"));
    }
}
