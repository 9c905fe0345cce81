//! `linalg` against TensorFlow's own numbers (values and gradients, float32 and float64,
//! batched, broadcasting, near-singular; `tools/tf_linalg_reference.py` wrote the fixture),
//! and its bad inputs: errors that name the op and the shape, never a panic or a NaN matrix
//! returned as success. Finite differences (first and second order), forward mode and `vmap`
//! of every primitive are in the shared tables (`tests/gradcheck.rs`,
//! `suite/forward_mode.rs`, `suite/vmap.rs`).

use gradtape::linalg::{NormAxes, NormOrd};
use gradtape::{linalg, ops, DType, GradientOptions, GradientTape, Result, Tensor};

use crate::common::{fixture, fixture_tensor};

fn run(name: &str, x: &[Tensor]) -> Result<Tensor> {
    match name {
        "cholesky" | "cholesky_batched" | "cholesky_near_singular" => linalg::cholesky(&x[0]),
        "triangular_solve_lower" | "triangular_solve_broadcast" => {
            linalg::triangular_solve(&x[0], &x[1], true, false)
        }
        "triangular_solve_lower_adjoint" => linalg::triangular_solve(&x[0], &x[1], true, true),
        "triangular_solve_upper" => linalg::triangular_solve(&x[0], &x[1], false, false),
        "triangular_solve_upper_adjoint" => linalg::triangular_solve(&x[0], &x[1], false, true),
        "cholesky_solve" => linalg::cholesky_solve(&x[0], &x[1]),
        "logdet" | "logdet_near_singular" => linalg::logdet(&x[0]),
        "solve" | "solve_batched" | "solve_pivoting" => linalg::solve(&x[0], &x[1]),
        "inv" => linalg::inv(&x[0]),
        "det" => linalg::det(&x[0]),
        "slogdet" => Ok(linalg::slogdet(&x[0])?.1),
        "lstsq_tall" | "lstsq_wide" => linalg::lstsq(&x[0], &x[1], 0.0),
        "lstsq_regularized" => linalg::lstsq(&x[0], &x[1], 0.5),
        "diag_part" => linalg::diag_part(&x[0]),
        "diag" => linalg::diag(&x[0]),
        "norm_all" => linalg::norm(&x[0], NormOrd::Euclidean, NormAxes::All, false),
        "norm_vector_1" => linalg::norm(&x[0], NormOrd::One, NormAxes::Vector(-1), false),
        "norm_vector_inf" => linalg::norm(&x[0], NormOrd::Inf, NormAxes::Vector(1), true),
        "norm_vector_3" => linalg::norm(&x[0], NormOrd::P(3.0), NormAxes::Vector(0), false),
        "norm_fro" => linalg::norm(&x[0], NormOrd::Fro, NormAxes::Matrix(-2, -1), false),
        "norm_matrix_1" => linalg::norm(&x[0], NormOrd::One, NormAxes::Matrix(-2, -1), false),
        "norm_matrix_inf" => linalg::norm(&x[0], NormOrd::Inf, NormAxes::Matrix(1, 2), true),
        "set_diag" => linalg::set_diag(&x[0], &x[1]),
        "trace" => linalg::trace(&x[0]),
        "band_part" => linalg::band_part(&x[0], 1, 0),
        "matrix_transpose" => linalg::matrix_transpose(&x[0]),
        other => panic!("no case {other}"),
    }
}

fn close(ours: &Tensor, theirs: &Tensor, rtol: f64, what: &str) {
    assert_eq!(ours.shape(), theirs.shape(), "{what}: shape");
    let (a, b) = (ours.to_f64_vec().unwrap(), theirs.to_f64_vec().unwrap());
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= rtol * scale,
            "{what}: element {i}: ours {x}, TensorFlow {y}\n ours {a:?}\n   tf {b:?}"
        );
    }
}

#[test]
fn linalg_matches_tensorflow() {
    let fixture = fixture("tf_linalg.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 66, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dtype = match case["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            _ => DType::F64,
        };
        // float32 through a near-singular matrix loses digits in TensorFlow as here
        let rtol = match (dtype, name.ends_with("near_singular")) {
            (DType::F64, _) => 1e-9,
            (_, false) => 2e-5,
            (_, true) => 2e-2,
        };
        let what = format!("{name} {dtype}");
        let inputs: Vec<Tensor> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| fixture_tensor(v, dtype))
            .collect();
        let tape = GradientTape::new();
        for x in &inputs {
            tape.watch(x);
        }
        let y = run(name, &inputs).unwrap();
        close(
            &y,
            &fixture_tensor(&case["value"], dtype),
            rtol,
            &format!("{what} value"),
        );
        let options = GradientOptions {
            output_gradients: Some(vec![fixture_tensor(&case["cotangent"], dtype)]),
            ..Default::default()
        };
        let grads = tape.gradient_with(&[&y], &inputs, &options).unwrap();
        for (k, (g, want)) in grads
            .iter()
            .zip(case["grads"].as_array().unwrap())
            .enumerate()
        {
            let g = g
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no gradient {k}"));
            close(
                g,
                &fixture_tensor(want, dtype),
                rtol,
                &format!("{what} gradient {k}"),
            );
        }
    }
}

/// `L Lᵀ = A` for a batch in both float types; an empty batch and 0×0 matrices are fine.
#[test]
fn cholesky_reconstructs_its_input() {
    let mut rng = gradtape::random::Generator::from_seed(24);
    for dtype in [DType::F32, DType::F64] {
        let x = rng.uniform(&[3, 5, 5], -1.0, 1.0, dtype).unwrap();
        let eye = ops::multiply(&Tensor::eye(5, dtype).unwrap(), &5.0).unwrap();
        let a = ops::add(&ops::matmul_transposed(&x, &x, false, true).unwrap(), &eye).unwrap();
        let l = linalg::cholesky(&a).unwrap();
        let back = ops::matmul_transposed(&l, &l, false, true).unwrap();
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
        close(&back, &a, tol, &format!("L Lᵀ {dtype}"));
        // strictly upper triangle is zero
        let upper = linalg::band_part(&l, 0, -1).unwrap();
        let diag = linalg::band_part(&l, 0, 0).unwrap();
        assert_eq!(
            upper.to_f64_vec().unwrap(),
            diag.to_f64_vec().unwrap(),
            "{dtype}"
        );
    }
    for shape in [[0, 3, 3], [2, 0, 0]] {
        let e = Tensor::zeros(&shape, DType::F64).unwrap();
        assert_eq!(linalg::cholesky(&e).unwrap().shape(), &shape);
        assert_eq!(linalg::logdet(&e).unwrap().shape(), &shape[..1]);
    }
}

/// Bad inputs: one error naming the op and what is wrong.
#[test]
fn linalg_bad_inputs_are_errors() {
    let f64s = |v: Vec<f64>, s: &[usize]| Tensor::from_vec(v, s).unwrap();
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    // not square, not a matrix
    let e = err(linalg::cholesky(
        &Tensor::ones(&[2, 3], DType::F64).unwrap(),
    ));
    assert!(e.starts_with("cholesky:") && e.contains("[2, 3]"), "{e}");
    let e = err(linalg::cholesky(&Tensor::ones(&[3], DType::F64).unwrap()));
    assert!(e.contains("square"), "{e}");
    // indefinite: the batch index, the shape and the failing leading minor
    let good = f64s(vec![2.0, 0.0, 0.0, 2.0], &[2, 2]);
    let bad = f64s(vec![1.0, 2.0, 2.0, 1.0], &[2, 2]);
    let batch = ops::stack(&[&good, &bad], 0).unwrap();
    let e = err(linalg::cholesky(&batch));
    assert!(
        e.contains("matrix 1") && e.contains("[2, 2, 2]") && e.contains("order 2"),
        "{e}"
    );
    // NaN: refused, not a NaN factor returned as success
    let e = err(linalg::cholesky(&f64s(
        vec![f64::NAN, 0.0, 0.0, 1.0],
        &[2, 2],
    )));
    assert!(e.contains("order 1"), "{e}");
    // huge values overflow to an infinite pivot: refused as well
    let e = err(linalg::cholesky(&f64s(
        vec![1e300, 0.0, 0.0, -1e300],
        &[2, 2],
    )));
    assert!(e.contains("not positive definite"), "{e}");
    // integers
    let e = err(linalg::cholesky(
        &Tensor::from_vec(vec![1i64, 0, 0, 1], &[2, 2]).unwrap(),
    ));
    assert!(e.contains("int64"), "{e}");
    // rhs of the wrong height, dtypes that differ, batches that do not broadcast
    let e = err(linalg::triangular_solve(
        &good,
        &Tensor::ones(&[3, 1], DType::F64).unwrap(),
        true,
        false,
    ));
    assert!(
        e.starts_with("triangular_solve:") && e.contains("[3, 1]"),
        "{e}"
    );
    let e = err(linalg::triangular_solve(
        &good,
        &Tensor::ones(&[2, 1], DType::F32).unwrap(),
        true,
        false,
    ));
    assert!(e.contains("float32") && e.contains("float64"), "{e}");
    let e = err(linalg::triangular_solve(
        &Tensor::ones(&[3, 2, 2], DType::F64).unwrap(),
        &Tensor::ones(&[4, 2, 1], DType::F64).unwrap(),
        true,
        false,
    ));
    assert!(e.contains("triangular_solve"), "{e}");
    let e = err(linalg::diag_part(
        &Tensor::ones(&[2, 3], DType::F64).unwrap(),
    ));
    assert!(e.starts_with("diag_part:"), "{e}");
    // singular: solve and inv refuse (TensorFlow: "Input matrix is not invertible"), slogdet
    // answers sign 0 and -inf as TensorFlow's does
    let singular = f64s(vec![1.0, 2.0, 2.0, 4.0], &[2, 2]);
    let e = err(linalg::solve(&singular, &good));
    assert!(
        e.starts_with("solve:") && e.contains("singular") && e.contains("pivot 1"),
        "{e}"
    );
    assert!(err(linalg::inv(&singular)).contains("singular"));
    let (sign, logabs) = linalg::slogdet(&singular).unwrap();
    assert_eq!(
        (sign.item().unwrap(), logabs.item().unwrap()),
        (0.0, f64::NEG_INFINITY)
    );
    assert_eq!(linalg::det(&singular).unwrap().item().unwrap(), 0.0);
    let e = err(linalg::solve(
        &good,
        &Tensor::ones(&[3], DType::F64).unwrap(),
    ));
    assert!(e.starts_with("solve:") && e.contains("[3]"), "{e}");
    let e = err(linalg::lstsq(&good, &good, -1.0));
    assert!(e.starts_with("lstsq:") && e.contains("-1"), "{e}");
    let e = err(linalg::lstsq(
        &good,
        &Tensor::ones(&[3, 1], DType::F64).unwrap(),
        0.0,
    ));
    assert!(e.starts_with("lstsq:") && e.contains("[3, 1]"), "{e}");
    let e = err(linalg::set_diag(
        &good,
        &Tensor::ones(&[3], DType::F64).unwrap(),
    ));
    assert!(e.starts_with("set_diag:") && e.contains("[3]"), "{e}");
    let e = err(linalg::diag(&Tensor::scalar(1.0f64)));
    assert!(e.starts_with("diag:"), "{e}");
    let e = err(linalg::norm(
        &good,
        NormOrd::P(2.0),
        NormAxes::Matrix(0, 1),
        false,
    ));
    assert!(e.starts_with("norm:") && e.contains("SVD"), "{e}");
    let e = err(linalg::norm(&good, NormOrd::P(-1.0), NormAxes::All, false));
    assert!(e.contains("-1"), "{e}");
    let e = err(linalg::norm(
        &good,
        NormOrd::One,
        NormAxes::Matrix(1, -1),
        false,
    ));
    assert!(e.contains("differ"), "{e}");
    let e = err(linalg::norm(
        &good,
        NormOrd::One,
        NormAxes::Vector(2),
        false,
    ));
    assert!(e.contains("axis 2"), "{e}");
}
