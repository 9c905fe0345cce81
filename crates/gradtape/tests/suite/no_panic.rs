#![allow(clippy::redundant_closure, clippy::type_complexity)]
//! Random shapes, axes, dtypes, indices and options thrown at the public API: every call must
//! return `Ok` or `Err`, never panic. Errors must name the operation.

use std::panic::{catch_unwind, AssertUnwindSafe};

use gradtape::{ops, Axes, DType, GradientTape, Result, Tensor};
use proptest::prelude::*;

fn dtype_of(i: u8) -> DType {
    [DType::F32, DType::F64, DType::I64, DType::Bool][i as usize % 4]
}

fn make(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let vals: Vec<f64> = (0..n)
        .map(|i| ((seed.wrapping_add(i as u64 * 7919)) % 11) as f64 - 5.0)
        .collect();
    match dtype {
        DType::F32 => Tensor::from_vec(vals.iter().map(|&v| v as f32).collect(), shape).unwrap(),
        DType::F64 => Tensor::from_vec(vals, shape).unwrap(),
        DType::I64 => Tensor::from_vec(vals.iter().map(|&v| v as i64).collect(), shape).unwrap(),
        DType::Bool => Tensor::from_vec(vals.iter().map(|&v| v > 0.0).collect(), shape).unwrap(),
    }
}

/// Runs `f` and fails the property if it panics; an `Err` must carry the op's name.
fn no_panic(
    what: &str,
    f: impl FnOnce() -> Result<Tensor>,
) -> std::result::Result<(), TestCaseError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            prop_assert!(
                !e.op().is_empty() && e.to_string().starts_with(e.op()),
                "{what}: bad message {e}"
            );
            Ok(())
        }
        Err(_) => Err(TestCaseError::fail(format!("{what} panicked"))),
    }
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..4, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_public_api_never_panics(
        sa in shape_strategy(),
        sb in shape_strategy(),
        da in 0u8..4,
        db in 0u8..4,
        axis in -5isize..5,
        axes in proptest::collection::vec(-5isize..5, 0..4),
        keepdims in any::<bool>(),
        ints in proptest::collection::vec(-6isize..6, 0..5),
        seed in any::<u64>(),
        taped in any::<bool>(),
    ) {
        let (ta, tb) = (dtype_of(da), dtype_of(db));
        let a = make(ta, &sa, seed);
        let b = make(tb, &sb, seed ^ 0x5555);
        let idx = Tensor::from_vec(ints.iter().map(|&i| i as i64).collect(), &[ints.len()]).unwrap();
        let uints: Vec<usize> = ints.iter().map(|&i| i.unsigned_abs()).collect();
        let tape = GradientTape::persistent();
        if taped {
            tape.watch(&a);
            tape.watch(&b);
        }
        let ax = Axes::List(axes.clone());
        #[allow(unused_mut)]
        let mut results: Vec<(&str, Box<dyn FnOnce() -> Result<Tensor>>)> = vec![
            ("add", Box::new(|| ops::add(&a, &b))),
            ("subtract", Box::new(|| ops::subtract(&a, &b))),
            ("multiply", Box::new(|| ops::multiply(&a, &b))),
            ("divide", Box::new(|| ops::divide(&a, &b))),
            ("pow", Box::new(|| ops::pow(&a, &b))),
            ("maximum", Box::new(|| ops::maximum(&a, &b))),
            ("less", Box::new(|| ops::less(&a, &b))),
            ("logical_and", Box::new(|| ops::logical_and(&a, &b))),
            ("select", Box::new(|| ops::select(&a, &b, &b))),
            ("matmul", Box::new(|| ops::matmul(&a, &b))),
            ("matmul_t", Box::new(|| ops::matmul_transposed(&a, &b, keepdims, !keepdims))),
            ("exp", Box::new(|| ops::exp(&a))),
            ("sqrt", Box::new(|| ops::sqrt(&a))),
            ("abs", Box::new(|| ops::abs(&a))),
            ("relu", Box::new(|| ops::relu(&a))),
            ("round", Box::new(|| ops::round(&a))),
            ("reduce_sum", Box::new(|| ops::reduce_sum(&a, ax.clone(), keepdims))),
            ("reduce_mean", Box::new(|| ops::reduce_mean(&a, ax.clone(), keepdims))),
            ("reduce_max", Box::new(|| ops::reduce_max(&a, ax.clone(), keepdims))),
            ("reduce_max_first", Box::new(|| ops::reduce_max_first(&a, ax.clone(), keepdims))),
            ("reduce_prod", Box::new(|| ops::reduce_prod(&a, axis, keepdims))),
            ("reduce_any", Box::new(|| ops::reduce_any(&a, ax.clone(), keepdims))),
            ("logsumexp", Box::new(|| ops::reduce_logsumexp(&a, axis, keepdims))),
            ("argmax", Box::new(|| ops::argmax(&a, axis))),
            ("softmax", Box::new(|| ops::softmax(&a, axis))),
            ("transpose", Box::new(|| ops::transpose(&a, Some(&uints)))),
            ("reshape", Box::new(|| ops::reshape(&a, &ints))),
            ("expand_dims", Box::new(|| ops::expand_dims(&a, axis))),
            ("squeeze", Box::new(|| ops::squeeze(&a, &axes))),
            ("broadcast_to", Box::new(|| ops::broadcast_to(&a, &sb))),
            ("concat", Box::new(|| ops::concat(&[&a, &b], axis))),
            ("stack", Box::new(|| ops::stack(&[&a, &b], axis))),
            ("split", Box::new(|| ops::split(&a, uints.first().copied().unwrap_or(0), axis).map(|v| v.into_iter().next().unwrap_or(a.clone())))),
            ("slice", Box::new(|| ops::slice(&a, &uints, &ints))),
            ("strided_slice", Box::new(|| ops::strided_slice(&a, &ints, &axes, &ints))),
            ("reverse", Box::new(|| ops::reverse(&a, &ints))),
            ("pad", Box::new(|| ops::pad(&a, &uints.iter().map(|&u| [u, u % 2]).collect::<Vec<_>>()))),
            ("gather", Box::new(|| ops::gather(&a, &idx, axis))),
            ("gather_nd", Box::new(|| ops::gather_nd(&a, &b))),
            ("segment_sum", Box::new(|| ops::unsorted_segment_sum(&a, &idx, uints.len()))),
            ("one_hot", Box::new(|| ops::one_hot(&idx, uints.len(), 1.0, 0.0, ta))),
            ("cast", Box::new(|| ops::cast(&a, tb))),
            ("clip", Box::new(|| ops::clip_by_value(&a, &b, &b))),
            ("to_string", Box::new(|| { let _ = a.to_string(); Ok(a.clone()) })),
        ];
        #[cfg(feature = "linalg")]
        {
            let linalg: Vec<(&str, Box<dyn FnOnce() -> Result<Tensor>>)> = vec![
                ("cholesky", Box::new(|| gradtape::linalg::cholesky(&a))),
                ("solve", Box::new(|| gradtape::linalg::solve(&a, &b))),
                ("inv", Box::new(|| gradtape::linalg::inv(&a))),
                ("diag", Box::new(|| gradtape::linalg::diag(&a, ints.len() as i64 - 2))),
                ("norm", Box::new(|| gradtape::linalg::norm(&a, gradtape::linalg::NormOrd::Inf, gradtape::linalg::NormAxes::Matrix(axis, -1), keepdims))),
                ("set_diag", Box::new(|| gradtape::linalg::set_diag(&a, &b, ints.len() as i64 - 2))),
                ("lstsq", Box::new(|| gradtape::linalg::lstsq(&a, &b, 0.0, keepdims))),
                ("det", Box::new(|| gradtape::linalg::det(&a))),
                ("triangular_solve", Box::new(|| gradtape::linalg::triangular_solve(&a, &b, keepdims, taped))),
                ("cholesky_solve", Box::new(|| gradtape::linalg::cholesky_solve(&a, &b))),
                ("logdet", Box::new(|| gradtape::linalg::logdet(&a))),
                ("trace", Box::new(|| gradtape::linalg::trace(&a))),
                ("band_part", Box::new(|| gradtape::linalg::band_part(&a, ints.len() as i64 - 2, 1))),
                ("eigh", Box::new(|| gradtape::linalg::eigh(&a).map(|r| r.1))),
                ("eigvalsh", Box::new(|| gradtape::linalg::eigvalsh(&a))),
                ("svd", Box::new(|| gradtape::linalg::svd(&a, keepdims).map(|r| r.1))),
                ("svdvals", Box::new(|| gradtape::linalg::svdvals(&a))),
                ("qr", Box::new(|| gradtape::linalg::qr(&a, keepdims).map(|r| r.0))),
                ("pinv", Box::new(|| gradtape::linalg::pinv(&a, None))),
                ("norm", Box::new(|| gradtape::linalg::norm(&a, gradtape::linalg::NormOrd::P(2.0), gradtape::linalg::NormAxes::Matrix(axis, -1), keepdims))),
            ];
            results.extend(linalg);
        }
        for (name, f) in results {
            no_panic(name, f)?;
        }
        if taped {
            // gradients of whatever got recorded must not panic either
            let y = ops::reduce_sum(&ops::square(&a).unwrap_or(a.clone()), Axes::All, false);
            if let Ok(y) = y {
                let r = catch_unwind(AssertUnwindSafe(|| tape.gradient(&y, [&a, &b])));
                prop_assert!(r.is_ok(), "gradient panicked");
            }
        }
    }

    #[test]
    fn creation_rejects_bad_arguments_without_panicking(
        n in 0usize..20,
        shape in shape_strategy(),
        start in -1e3f64..1e3,
        delta in -3f64..3.0,
    ) {
        let v = vec![1.0f32; n];
        let r = catch_unwind(|| Tensor::from_vec(v, &shape).map(|_| ()));
        prop_assert!(r.is_ok());
        let r = catch_unwind(|| Tensor::arange(start, start + 10.0, delta, DType::F32).map(|_| ()));
        prop_assert!(r.is_ok());
        let r = catch_unwind(|| Tensor::linspace(start, 1.0, n, DType::I64).map(|_| ()));
        prop_assert!(r.is_ok());
    }
}

#[test]
fn extreme_arguments_are_errors() {
    let x = Tensor::zeros(&[3, 4], DType::F32).unwrap();
    assert!(ops::strided_slice(
        &x,
        &[0, isize::MIN],
        &[3, isize::MAX],
        &[isize::MIN, isize::MAX]
    )
    .is_ok());
    assert!(ops::pad(&x, &[[usize::MAX, 1], [0, 0]]).is_err());
    assert!(ops::reshape(&x, &[isize::MAX, isize::MAX, -1]).is_err());
    assert!(Tensor::from_vec(vec![0.0f32; 4], &[usize::MAX, usize::MAX, 2]).is_err());
    assert!(ops::transpose(&x, Some(&[usize::MAX, 0])).is_err());
    let e = ops::matmul(&x, &x).unwrap_err();
    assert_eq!(
        e.to_string(),
        "matmul: inner dimensions differ: [3, 4] x [3, 4]"
    );
    let e = ops::add(&x, &Tensor::zeros(&[3, 4], DType::F64).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("add") && e.contains("float32") && e.contains("float64"),
        "{e}"
    );
    let e = ops::reduce_sum(&x, 2, false).unwrap_err().to_string();
    assert!(
        e.contains("reduce_sum") && e.contains("axis 2") && e.contains("rank 2"),
        "{e}"
    );
    let e = ops::gather(&x, &Tensor::from_vec(vec![5i64], &[1]).unwrap(), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gather") && e.contains("5") && e.contains("[0, 3)"),
        "{e}"
    );
    // ops surface shape errors as Err (the operators panic by design: tests/suite/first_contact.rs)
    assert!(ops::add(&x, &Tensor::zeros(&[5], DType::F32).unwrap()).is_err());
}
