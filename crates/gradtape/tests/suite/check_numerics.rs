//! `debugging::enable_check_numerics`: the first NaN or infinity, forward or backward, is an
//! error that names where it came from; off, nothing changes.

use gradtape::{debugging, ops, Axes, GradientTape, Tensor};

#[test]
fn the_first_non_finite_result_is_an_error_naming_the_op_and_shapes() {
    let x = Tensor::from_vec(vec![4.0f32, -1.0], &[2]).unwrap();
    // off: NaN flows silently, as in TensorFlow
    let y = ops::sqrt(&x).unwrap();
    assert!(y.to_vec::<f32>().unwrap()[1].is_nan());
    debugging::check_numerics(|| {
        let e = ops::sqrt(&x).unwrap_err().to_string();
        assert!(
            e.contains("check_numerics")
                && e.contains("sqrt of float32 [2]")
                && e.contains("NaN at element 1"),
            "{e}"
        );
        let e = ops::log(&Tensor::scalar(0.0f64)).unwrap_err().to_string();
        assert!(e.contains("log") && e.contains("-inf"), "{e}");
        let big = Tensor::from_vec(vec![3e38f32, 3e38], &[2]).unwrap();
        let e = ops::reduce_sum(&big, Axes::All, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("reduce_sum") && e.contains("inf"), "{e}");
        // every primitive's float result is checked, one without a gradient too
        let nan = Tensor::from_vec(vec![f32::NAN], &[1]).unwrap();
        for e in [ops::stop_gradient(&nan), ops::reshape(&nan, &[1, 1])] {
            assert!(e.is_err_and(|e| e.to_string().contains("NaN")));
        }
        // finite results pass
        assert!(ops::exp(&x).is_ok());
    });
    assert!(
        !debugging::check_numerics_enabled(),
        "the scope restores the switch"
    );
}

#[test]
fn a_non_finite_gradient_names_the_forward_op_whose_rule_made_it() {
    let x = Tensor::from_vec(vec![0.0f32, 1.0], &[2]).unwrap();
    debugging::enable_check_numerics();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::reduce_sum(&ops::sqrt(&x).unwrap(), Axes::All, false).unwrap(); // finite
    let e = tape.gradient(&y, [&x]).unwrap_err().to_string(); // 0.5 / sqrt(0) = inf
    debugging::disable_check_numerics();
    assert!(
        e.contains("the gradient of sqrt") && e.contains("inf"),
        "{e}"
    );
}

#[test]
fn the_switch_is_per_thread() {
    debugging::enable_check_numerics();
    let other = std::thread::spawn(|| {
        (
            debugging::check_numerics_enabled(),
            ops::sqrt(&Tensor::scalar(-1.0f32)).is_ok(),
        )
    })
    .join()
    .unwrap();
    debugging::disable_check_numerics();
    assert_eq!(other, (false, true));
}

#[test]
fn the_switch_goes_along_with_work_handed_to_the_compute_pool() {
    // Issue 20: `install` ran `f` on a pool thread without the caller's scope: Ok(NaN).
    let minus_one = Tensor::scalar(-1.0f64);
    let e = debugging::check_numerics(|| gradtape::threading::install(|| ops::log(&minus_one)));
    let e = e.unwrap_err().to_string();
    assert!(e.contains("log") && e.contains("NaN"), "{e}");
    // and the pool thread does not keep it afterwards
    for _ in 0..4 {
        let quiet = gradtape::threading::install(|| ops::log(&minus_one)).unwrap();
        assert!(quiet.item().unwrap().is_nan());
    }
}
