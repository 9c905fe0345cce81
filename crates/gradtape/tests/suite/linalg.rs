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
        "lstsq_tall" | "lstsq_wide" => linalg::lstsq(&x[0], &x[1], 0.0, true),
        "lstsq_regularized" => linalg::lstsq(&x[0], &x[1], 0.5, true),
        "lstsq_robust_tall" | "lstsq_robust_wide" | "lstsq_robust_rank_deficient" => {
            linalg::lstsq(&x[0], &x[1], 0.0, false)
        }
        "diag_part" => linalg::diag_part(&x[0], 0),
        "diag" => linalg::diag(&x[0], 0),
        "diag_part_above" => linalg::diag_part(&x[0], 1),
        "diag_part_below" => linalg::diag_part(&x[0], -2),
        "diag_below" => linalg::diag(&x[0], -1),
        "set_diag_above" => linalg::set_diag(&x[0], &x[1], 2),
        "trace_not_square" => linalg::trace(&x[0]),
        "norm_all" => linalg::norm(&x[0], NormOrd::Euclidean, NormAxes::All, false),
        "norm_vector_1" => linalg::norm(&x[0], NormOrd::One, NormAxes::Vector(-1), false),
        "norm_vector_inf" => linalg::norm(&x[0], NormOrd::Inf, NormAxes::Vector(1), true),
        "norm_vector_3" => linalg::norm(&x[0], NormOrd::P(3.0), NormAxes::Vector(0), false),
        "norm_fro" => linalg::norm(&x[0], NormOrd::Fro, NormAxes::Matrix(-2, -1), false),
        "norm_matrix_1" => linalg::norm(&x[0], NormOrd::One, NormAxes::Matrix(-2, -1), false),
        "norm_matrix_inf" => linalg::norm(&x[0], NormOrd::Inf, NormAxes::Matrix(1, 2), true),
        "set_diag" => linalg::set_diag(&x[0], &x[1], 0),
        "trace" => linalg::trace(&x[0]),
        "band_part" => linalg::band_part(&x[0], 1, 0),
        "matrix_transpose" => linalg::matrix_transpose(&x[0]),
        "eigh_values" => Ok(linalg::eigh(&x[0])?.0),
        "eigvalsh" => linalg::eigvalsh(&x[0]),
        "eigh_vectors_squared" => ops::square(&linalg::eigh(&x[0])?.1),
        "eigh_function" | "eigh_function_near_degenerate" => {
            let (e, v) = linalg::eigh(&x[0])?;
            let scaled = ops::multiply(&v, &ops::expand_dims(&ops::exp(&e)?, -2)?)?;
            ops::matmul(&scaled, &linalg::matrix_transpose(&v)?)
        }
        "svd_values_tall" | "svd_values_wide" => linalg::svdvals(&x[0]),
        "svd_polar_tall" | "svd_polar_wide" | "svd_polar_square" | "svd_polar_near_degenerate" => {
            let (_, u, v) = linalg::svd(&x[0], false)?;
            ops::matmul(&u, &linalg::matrix_transpose(&v)?)
        }
        "svd_u_squared_tall" => ops::square(&linalg::svd(&x[0], false)?.1),
        "svd_v_squared_wide" => ops::square(&linalg::svd(&x[0], false)?.2),
        "svd_full_u_squared" => ops::square(&linalg::svd(&x[0], true)?.1),
        "qr_q_tall" | "qr_q_wide" | "qr_square" => Ok(qr_positive(&x[0], false)?.0),
        "qr_r_tall" | "qr_r_wide" => Ok(qr_positive(&x[0], false)?.1),
        "qr_complete_wide" => Ok(qr_positive(&x[0], true)?.1),
        "pinv_tall" | "pinv_wide" | "pinv_rank_deficient" => linalg::pinv(&x[0], None),
        "norm_2" => linalg::norm(&x[0], NormOrd::P(2.0), NormAxes::Matrix(-2, -1), false),
        "norm_2_keepdims" => linalg::norm(&x[0], NormOrd::P(2.0), NormAxes::Matrix(0, 2), true),
        other => panic!("no case {other}"),
    }
}

/// Q and R with R's diagonal made positive (the script's `qr_positive`): the factorization
/// without a choice of signs.
fn qr_positive(a: &Tensor, full: bool) -> Result<(Tensor, Tensor)> {
    let (q, r) = linalg::qr(a, full)?;
    let (m, n) = (a.shape()[a.rank() - 2], a.shape()[a.rank() - 1]);
    let k = m.min(n);
    let corner = |x: &Tensor, rows: isize, cols: isize| {
        let mut size = vec![-1isize; x.rank()];
        size[x.rank() - 2] = rows;
        size[x.rank() - 1] = cols;
        ops::slice(x, &vec![0; x.rank()], &size)
    };
    let d = ops::sign(&linalg::diag_part(&r, 0)?)?;
    let mut q_parts = vec![ops::multiply(
        &corner(&q, -1, k as isize)?,
        &ops::expand_dims(&d, -2)?,
    )?];
    let mut r_parts = vec![ops::multiply(
        &corner(&r, k as isize, -1)?,
        &ops::expand_dims(&d, -1)?,
    )?];
    let (mq, rank) = (q.shape()[q.rank() - 1], q.rank());
    if mq > k {
        let mut begin = vec![0; rank];
        begin[rank - 1] = k;
        q_parts.push(ops::slice(&q, &begin, &vec![-1; rank])?);
        let mut begin = vec![0; rank];
        begin[rank - 2] = k;
        r_parts.push(ops::slice(&r, &begin, &vec![-1; rank])?);
    }
    Ok((ops::concat(&q_parts, -1)?, ops::concat(&r_parts, -2)?))
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
    assert!(cases.len() >= 132, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dtype = match case["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            _ => DType::F64,
        };
        // float32 through a near-singular matrix or nearly repeated eigenvalues loses digits in
        // TensorFlow as here
        let near = name.ends_with("near_singular") || name.ends_with("near_degenerate");
        let rtol = match (dtype, near) {
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
        3,
    ));
    assert!(
        e.starts_with("diag_part:") && e.contains("k = 3") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = err(linalg::diag_part(
        &Tensor::ones(&[2, 3], DType::F64).unwrap(),
        -2,
    ));
    assert!(e.contains("k = -2"), "{e}");
    let e = err(linalg::diag_part(
        &Tensor::ones(&[3], DType::F64).unwrap(),
        0,
    ));
    assert!(e.contains("[3]"), "{e}");
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
    let e = err(linalg::lstsq(&good, &good, -1.0, false));
    assert!(e.starts_with("lstsq:") && e.contains("-1"), "{e}");
    let e = err(linalg::lstsq(
        &good,
        &Tensor::ones(&[3, 1], DType::F64).unwrap(),
        0.0,
        true,
    ));
    assert!(e.starts_with("lstsq:") && e.contains("[3, 1]"), "{e}");
    let e = err(linalg::set_diag(
        &good,
        &Tensor::ones(&[3], DType::F64).unwrap(),
        0,
    ));
    assert!(e.starts_with("set_diag:") && e.contains("[3]"), "{e}");
    let e = err(linalg::set_diag(
        &good,
        &Tensor::ones(&[2], DType::F64).unwrap(),
        1,
    ));
    assert!(e.contains("must be [1]") && e.contains("got [2]"), "{e}");
    let e = err(linalg::diag(&Tensor::scalar(1.0f64), 0));
    assert!(e.starts_with("diag:"), "{e}");
    let e = err(linalg::norm(
        &good,
        NormOrd::P(3.0),
        NormAxes::Matrix(0, 1),
        false,
    ));
    assert!(e.starts_with("norm:") && e.contains("vector norm"), "{e}");
    // the factorizations: not square (eigh), not a matrix, integers, NaN and infinities
    let wide = Tensor::ones(&[2, 3], DType::F64).unwrap();
    let e = err(linalg::eigh(&wide).map(|r| r.0));
    assert!(e.starts_with("eigh:") && e.contains("[2, 3]"), "{e}");
    let e = err(linalg::eigvalsh(&wide));
    assert!(e.starts_with("eigvalsh:") && e.contains("square"), "{e}");
    let vector = Tensor::ones(&[3], DType::F64).unwrap();
    let e = err(linalg::svd(&vector, false).map(|r| r.0));
    assert!(e.starts_with("svd:") && e.contains("[3]"), "{e}");
    let e = err(linalg::qr(&vector, false).map(|r| r.0));
    assert!(e.starts_with("qr:") && e.contains("[3]"), "{e}");
    let ints = Tensor::from_vec(vec![1i64, 0, 0, 1], &[2, 2]).unwrap();
    assert!(err(linalg::svdvals(&ints)).contains("int64"));
    assert!(err(linalg::qr(&ints, false).map(|r| r.0)).contains("int64"));
    for bad in [f64::NAN, f64::INFINITY] {
        let x = f64s(vec![1.0, 0.0, 0.0, 1.0, bad, 2.0, 3.0, 4.0], &[2, 2, 2]);
        for e in [
            err(linalg::eigh(&x).map(|r| r.0)),
            err(linalg::eigvalsh(&x)),
            err(linalg::svd(&x, false).map(|r| r.0)),
            err(linalg::svdvals(&x)),
            err(linalg::pinv(&x, None)),
        ] {
            assert!(
                e.contains("matrix 1") && e.contains("NaN or infinite"),
                "{e}"
            );
        }
    }
    // huge but finite: no overflow to a failure
    let huge = f64s(vec![1e300, 0.0, 0.0, -1e300], &[2, 2]);
    assert_eq!(
        linalg::svdvals(&huge).unwrap().to_vec::<f64>().unwrap(),
        vec![1e300, 1e300]
    );
    assert_eq!(
        linalg::eigvalsh(&huge).unwrap().to_vec::<f64>().unwrap(),
        vec![-1e300, 1e300]
    );
    let e = err(linalg::pinv(&good, Some(-1.0)));
    assert!(e.starts_with("pinv:") && e.contains("-1"), "{e}");
    // derivatives that are not defined: an error naming the op, as TensorFlow's and JAX's
    let tall = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 7.0], &[3, 2]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&tall);
    let (q, _) = linalg::qr(&tall, true).unwrap();
    let e = tape.gradient(&q, &tall).unwrap_err().to_string();
    assert!(
        e.contains("qr") && e.contains("full_matrices") && e.contains("3x2"),
        "{e}"
    );
    let very_tall = Tensor::ones(&[4, 1], DType::F64).unwrap();
    tape.watch(&very_tall);
    let (_, u, _) = linalg::svd(&very_tall, true).unwrap();
    let e = tape.gradient(&u, &very_tall).unwrap_err().to_string();
    assert!(
        e.contains("svd") && e.contains("full_matrices") && e.contains("4x1"),
        "{e}"
    );
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

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    a.iter().zip(&b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn eye_like(x: &Tensor, n: usize) -> Tensor {
    Tensor::eye(n, x.dtype()).unwrap()
}

/// The factors put back together give the input, and the orthogonal ones are: batches, both
/// float types, tall, wide and square, reduced and complete, empty matrices.
#[test]
fn factorizations_reconstruct_their_inputs() {
    let mut rng = gradtape::random::Generator::from_seed(25);
    let t = linalg::matrix_transpose;
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for shape in [[2, 5, 3], [2, 3, 5], [1, 4, 4], [3, 1, 2]] {
            let a = rng.uniform(&shape, -1.0, 1.0, dtype).unwrap();
            let (m, n) = (shape[1], shape[2]);
            let k = m.min(n);
            for full in [false, true] {
                let (s, u, v) = linalg::svd(&a, full).unwrap();
                let (mu, nv) = if full { (m, n) } else { (k, k) };
                assert_eq!(
                    (u.shape(), v.shape()),
                    (&[shape[0], m, mu][..], &[shape[0], n, nv][..])
                );
                let uk = ops::slice(&u, &[0, 0, 0], &[-1, -1, k as isize]).unwrap();
                let vk = ops::slice(&v, &[0, 0, 0], &[-1, -1, k as isize]).unwrap();
                let back = ops::matmul(
                    &ops::multiply(&uk, &ops::expand_dims(&s, -2).unwrap()).unwrap(),
                    &t(&vk).unwrap(),
                )
                .unwrap();
                assert!(max_abs_diff(&back, &a) < 10.0 * tol, "svd {shape:?} {full}");
                let utu = ops::matmul(&t(&u).unwrap(), &u).unwrap();
                assert!(
                    max_abs_diff(
                        &utu,
                        &ops::broadcast_to(&eye_like(&a, mu), utu.shape()).unwrap()
                    ) < 10.0 * tol
                );
                let vtv = ops::matmul(&t(&v).unwrap(), &v).unwrap();
                assert!(
                    max_abs_diff(
                        &vtv,
                        &ops::broadcast_to(&eye_like(&a, nv), vtv.shape()).unwrap()
                    ) < 10.0 * tol
                );
                let sv = s.to_f64_vec().unwrap();
                assert!(sv
                    .chunks(k)
                    .all(|c| c.windows(2).all(|w| w[0] >= w[1]) && c.iter().all(|&x| x >= 0.0)));
                assert!(max_abs_diff(&linalg::svdvals(&a).unwrap(), &s) < 10.0 * tol);

                let (q, r) = linalg::qr(&a, full).unwrap();
                let mq = if full { m } else { k };
                assert_eq!((q.shape()[2], r.shape()[1]), (mq, mq));
                assert!(
                    max_abs_diff(&ops::matmul(&q, &r).unwrap(), &a) < 10.0 * tol,
                    "qr {shape:?} {full}"
                );
                let qtq = ops::matmul(&t(&q).unwrap(), &q).unwrap();
                assert!(
                    max_abs_diff(
                        &qtq,
                        &ops::broadcast_to(&eye_like(&a, mq), qtq.shape()).unwrap()
                    ) < 10.0 * tol
                );
                assert_eq!(
                    max_abs_diff(&linalg::band_part(&r, 0, -1).unwrap(), &r),
                    0.0,
                    "R is upper"
                );
            }
            if m == n {
                // eigh reads the lower triangle: it decomposes the symmetric matrix it stands for
                let sym = ops::add(
                    &linalg::band_part(&a, -1, 0).unwrap(),
                    &t(&linalg::band_part(&a, -1, -1).unwrap()).unwrap(),
                )
                .unwrap();
                let sym = ops::subtract(&sym, &t(&linalg::band_part(&a, 0, -1).unwrap()).unwrap())
                    .unwrap();
                let (e, v) = linalg::eigh(&a).unwrap();
                let back = ops::matmul(
                    &ops::multiply(&v, &ops::expand_dims(&e, -2).unwrap()).unwrap(),
                    &t(&v).unwrap(),
                )
                .unwrap();
                assert!(max_abs_diff(&back, &sym) < 10.0 * tol, "eigh {shape:?}");
                assert!(max_abs_diff(&linalg::eigvalsh(&a).unwrap(), &e) < 10.0 * tol);
            }
        }
    }
    // empty batches and empty matrices: empty factors; full vectors of an empty side are I
    let e = Tensor::zeros(&[0, 3, 2], DType::F64).unwrap();
    assert_eq!(linalg::svd(&e, false).unwrap().1.shape(), &[0, 3, 2]);
    let e = Tensor::zeros(&[2, 0], DType::F64).unwrap();
    let (s, u, v) = linalg::svd(&e, true).unwrap();
    assert_eq!(
        (s.shape(), u.to_vec::<f64>().unwrap(), v.shape()),
        (&[0][..], vec![1.0, 0.0, 0.0, 1.0], &[0, 0][..])
    );
    let (q, r) = linalg::qr(&e, true).unwrap();
    assert_eq!(
        (q.to_vec::<f64>().unwrap(), r.shape()),
        (vec![1.0, 0.0, 0.0, 1.0], &[2, 0][..])
    );
    assert_eq!(linalg::pinv(&e, None).unwrap().shape(), &[0, 2]);
    let (w, v) = linalg::eigh(&Tensor::zeros(&[0, 0], DType::F32).unwrap()).unwrap();
    assert_eq!((w.shape(), v.shape()), (&[0][..], &[0, 0][..]));
}

/// Repeated eigenvalues and singular values, and zero singular values: the gradients stay
/// finite (TensorFlow's safe reciprocal), and exact for what does not depend on the choice of
/// vectors: at the identity, `d/dA Σ e = I` and the 2-norm's gradient is the top pair's.
#[test]
fn degenerate_spectra_give_finite_gradients() {
    let eye = Tensor::eye(3, DType::F64).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&eye);
    let (e, v) = linalg::eigh(&eye).unwrap();
    let total = ops::reduce_sum(&e, gradtape::Axes::All, false).unwrap();
    let g = tape.gradient(&total, &eye).unwrap().unwrap();
    assert!(max_abs_diff(&g, &eye) < 1e-12, "{g}");
    let vv = ops::reduce_sum(&ops::square(&v).unwrap(), gradtape::Axes::All, false).unwrap();
    let g = tape.gradient(&vv, &eye).unwrap().unwrap();
    assert!(g.to_f64_vec().unwrap().iter().all(|x| x.is_finite()), "{g}");
    let (_, u, v) = linalg::svd(&eye, false).unwrap();
    let polar = ops::reduce_sum(
        &ops::matmul(&u, &linalg::matrix_transpose(&v).unwrap()).unwrap(),
        gradtape::Axes::All,
        false,
    )
    .unwrap();
    let g = tape.gradient(&polar, &eye).unwrap().unwrap();
    assert!(g.to_f64_vec().unwrap().iter().all(|x| x.is_finite()), "{g}");
    // rank 1: two zero singular values
    let rank1 = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0, 3.0, 6.0], &[3, 2]).unwrap();
    tape.watch(&rank1);
    let (s, u, v) = linalg::svd(&rank1, false).unwrap();
    let y = ops::add(
        &ops::reduce_sum(
            &ops::matmul(&u, &linalg::matrix_transpose(&v).unwrap()).unwrap(),
            gradtape::Axes::All,
            false,
        )
        .unwrap(),
        &ops::reduce_sum(&s, gradtape::Axes::All, false).unwrap(),
    )
    .unwrap();
    let g = tape.gradient(&y, &rank1).unwrap().unwrap();
    assert!(g.to_f64_vec().unwrap().iter().all(|x| x.is_finite()), "{g}");
    let p = linalg::pinv(&rank1, None).unwrap();
    let g = tape.gradient(&p, &rank1).unwrap().unwrap();
    assert!(g.to_f64_vec().unwrap().iter().all(|x| x.is_finite()), "{g}");
    // the 2-norm of diag(3, 1): its gradient is e₁e₁ᵀ
    let d = Tensor::from_vec(vec![3.0f64, 0.0, 0.0, 1.0], &[2, 2]).unwrap();
    tape.watch(&d);
    let two = linalg::norm(&d, NormOrd::P(2.0), NormAxes::Matrix(0, 1), false).unwrap();
    assert_eq!(two.item().unwrap(), 3.0);
    let g = tape.gradient(&two, &d).unwrap().unwrap();
    assert!(
        max_abs_diff(
            &g,
            &Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 0.0], &[2, 2]).unwrap()
        ) < 1e-12,
        "{g}"
    );
}

/// `gradtape::function` traces the factorizations and their gradients like any primitive:
/// the compiled step gives the eager numbers, bit for bit.
#[test]
fn a_compiled_step_through_the_factorizations_equals_eager() {
    let step = |a: &[Tensor]| -> Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        tape.watch(&a[0]);
        let (e, v) = linalg::eigh(&a[0])?;
        let (_, u, w) = linalg::svd(&a[0], false)?;
        let (q, r) = linalg::qr(&a[0], false)?;
        let parts = [
            ops::multiply(&ops::square(&v)?, &ops::expand_dims(&e, -2)?)?,
            ops::matmul(&u, &linalg::matrix_transpose(&w)?)?,
            ops::matmul(&q, &ops::square(&r)?)?,
            linalg::pinv(&a[0], None)?,
        ];
        let mut y = linalg::norm(&a[0], NormOrd::P(2.0), NormAxes::Matrix(-2, -1), false)?;
        for p in &parts {
            y = ops::add(&y, &ops::reduce_sum(p, gradtape::Axes::All, false)?)?;
        }
        let g = tape.gradient(&y, &a[0])?.expect("connected");
        Ok(vec![y, g])
    };
    let a = Tensor::from_vec(
        vec![2.0f64, 0.3, -0.5, 0.1, 3.0, 0.7, 0.4, -0.2, 5.0],
        &[3, 3],
    )
    .unwrap();
    let eager = step(std::slice::from_ref(&a)).unwrap();
    let compiled = gradtape::function(step);
    for _ in 0..2 {
        let got: Vec<Tensor> = compiled.call(&[&a]).unwrap();
        for (g, e) in got.iter().zip(&eager) {
            assert_eq!(g.to_vec::<f64>().unwrap(), e.to_vec::<f64>().unwrap());
        }
    }
    assert_eq!(compiled.tracing_count(), 1);
}

/// A batch of small systems large enough to be spread over threads in groups that share their
/// scratch space: each system's answer is the one it gets alone, and the error names the first
/// singular matrix, wherever the groups split.
#[test]
fn many_small_solves_share_scratch_and_name_the_first_singular_matrix() {
    let mut rng = gradtape::random::Generator::from_seed(26);
    // 144,000 right-hand-side elements: above the threshold for threads; 682 systems a group
    let b = 24_000;
    let eye = ops::multiply(&Tensor::eye(3, DType::F64).unwrap(), &3.0).unwrap();
    let a = ops::add(
        &rng.uniform(&[b, 3, 3], -1.0, 1.0, DType::F64).unwrap(),
        &eye,
    )
    .unwrap();
    let r = rng.uniform(&[b, 3, 2], -1.0, 1.0, DType::F64).unwrap();
    let x = linalg::solve(&a, &r).unwrap().to_vec::<f64>().unwrap();
    let (_, logabs) = linalg::slogdet(&a).unwrap();
    let logabs = logabs.to_vec::<f64>().unwrap();
    for i in [0, 1, 681, 682, 23_999] {
        let one = |t: &Tensor| ops::slice(t, &[i, 0, 0], &[1, -1, -1]).unwrap();
        let alone = linalg::solve(&one(&a), &one(&r))
            .unwrap()
            .to_vec::<f64>()
            .unwrap();
        assert_eq!(&x[i * 6..(i + 1) * 6], &alone[..], "system {i}");
        let (_, l) = linalg::slogdet(&one(&a)).unwrap();
        assert_eq!(logabs[i], l.to_vec::<f64>().unwrap()[0], "slogdet {i}");
    }
    let mut v = a.to_vec::<f64>().unwrap();
    for i in [20_100, 23_900] {
        v[i * 9..(i + 1) * 9].fill(1.0);
    }
    let singular = Tensor::from_vec(v, &[b, 3, 3]).unwrap();
    let e = linalg::solve(&singular, &r).unwrap_err().to_string();
    assert!(e.contains("matrix 20100 ") && e.contains("singular"), "{e}");
}

/// `lstsq` without `fast` (the SVD) solves the same problem as the normal equations where
/// both apply, regularized or not, tall or wide: the same values and the same gradients
/// (TensorFlow has none for its robust path, so its fixture checks only values).
#[test]
fn robust_lstsq_has_the_fast_paths_values_and_gradients() {
    let mut rng = gradtape::random::Generator::from_seed(27);
    for (shape, l2) in [
        (&[2, 6, 3][..], 0.0),
        (&[6, 3][..], 0.7),
        (&[2, 3][..], 0.0),
        (&[3, 5][..], 0.3),
    ] {
        let a = rng.uniform(shape, -1.0, 1.0, DType::F64).unwrap();
        let mut bs = shape.to_vec();
        *bs.last_mut().unwrap() = 2;
        let b = rng.uniform(&bs, -1.0, 1.0, DType::F64).unwrap();
        let run = |fast: bool| {
            let tape = GradientTape::new();
            tape.watch(&a);
            tape.watch(&b);
            let x = linalg::lstsq(&a, &b, l2, fast).unwrap();
            let loss = ops::reduce_sum(&ops::sin(&x).unwrap(), gradtape::Axes::All, false).unwrap();
            let (ga, gb) = tape.gradient(&loss, (&a, &b)).unwrap();
            (x, ga.unwrap(), gb.unwrap())
        };
        let (fast, robust) = (run(true), run(false));
        assert!(max_abs_diff(&fast.0, &robust.0) < 1e-12, "{shape:?} values");
        assert!(max_abs_diff(&fast.1, &robust.1) < 1e-10, "{shape:?} d/dA");
        assert!(max_abs_diff(&fast.2, &robust.2) < 1e-10, "{shape:?} d/dB");
    }
}
