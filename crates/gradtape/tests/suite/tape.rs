//! One test per documented GradientTape behaviour, named after it.

use gradtape::{
    ops, Axes, DType, GradientOptions, GradientTape, PersistentTape, Tensor, UnconnectedGradients,
    Variable, VariableOptions,
};

fn scalar(v: f64) -> Tensor {
    Tensor::scalar(v)
}

fn val(t: &Option<Tensor>) -> f64 {
    t.as_ref().expect("gradient is None").to_f64_vec().unwrap()[0]
}

#[test]
fn recording_starts_at_creation_and_ends_at_stop() {
    let x = scalar(3.0);
    let tape = GradientTape::persistent();
    assert!(tape.is_recording());
    tape.watch(&x);
    let y = ops::square(&x).unwrap();
    tape.stop();
    assert!(!tape.is_recording());
    let z = ops::square(&y).unwrap(); // not recorded
    assert_eq!(tape.recorded_ops(), vec!["square"]);
    let [g] = tape.gradient(&z, [&x]).unwrap();
    assert!(g.is_none());
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(val(&g), 6.0);
}

#[test]
fn record_closure_is_the_with_block() {
    let x = scalar(2.0);
    let (tape, y) = GradientTape::record(|t| {
        t.watch(&x);
        ops::pow(&x, &3.0)
    });
    assert!(!tape.is_recording());
    let [g] = tape.gradient(&y.unwrap(), [&x]).unwrap();
    assert_eq!(val(&g), 12.0);
}

#[test]
fn watched_tensor_gets_a_gradient_and_unwatched_gets_none() {
    let (x, z) = (scalar(3.0), scalar(4.0));
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::multiply(&x, &z).unwrap();
    let [gx, gz] = tape.gradient(&y, [&x, &z]).unwrap();
    assert_eq!(val(&gx), 4.0);
    assert!(gz.is_none());
}

#[test]
fn watch_accessed_variables_watches_trainable_variables_on_read() {
    let v = Variable::new(Tensor::scalar(3.0f64));
    let tape = GradientTape::new();
    let y = ops::square(&v).unwrap();
    assert_eq!(tape.watched_variables().len(), 1);
    let [g] = tape.gradient(&y, [&v]).unwrap();
    assert_eq!(val(&g), 6.0);
}

#[test]
fn watch_accessed_variables_false_needs_explicit_watch() {
    let (v, w) = (Variable::new(3.0), Variable::new(5.0));
    let tape = GradientTape::builder()
        .watch_accessed_variables(false)
        .start();
    tape.watch(&w);
    let y = ops::multiply(&v, &w).unwrap();
    let [gv, gw] = tape.gradient(&y, [&v, &w]).unwrap();
    assert!(gv.is_none());
    assert_eq!(val(&gw), 3.0);
}

#[test]
fn non_trainable_variables_are_not_watched_unless_asked() {
    let v = Variable::with_options(
        2.0,
        VariableOptions {
            name: Some("v".into()),
            trainable: false,
        },
    );
    let tape = GradientTape::persistent();
    let y = ops::square(&v).unwrap();
    assert!(tape.watched_variables().is_empty());
    let [g] = tape.gradient(&y, [&v]).unwrap();
    assert!(g.is_none());
    tape.watch(&v);
    let y2 = ops::square(&v).unwrap();
    let [g] = tape.gradient(&y2, [&v]).unwrap();
    assert_eq!(val(&g), 4.0);
}

#[test]
fn gradient_keeps_the_order_of_mixed_sources() {
    let a = Variable::new(Tensor::scalar(2.0f64));
    let x = scalar(5.0);
    let b = Variable::new(Tensor::scalar(7.0f64));
    let tape = GradientTape::new();
    tape.watch(&x);
    // y = a*x + b*b -> dy/db = 2b, dy/dx = a, dy/da = x
    let y = ops::add(&ops::multiply(&a, &x).unwrap(), &ops::square(&b).unwrap()).unwrap();
    let [gb, gx, ga] = tape
        .gradient(&y, [&b as &dyn gradtape::Source, &x, &a])
        .unwrap();
    assert_eq!((val(&gb), val(&gx), val(&ga)), (14.0, 2.0, 5.0));
}

#[test]
fn gradient_with_respect_to_an_intermediate_result() {
    let x = scalar(3.0);
    let tape = GradientTape::new();
    tape.watch(&x);
    let h = ops::square(&x).unwrap();
    let y = ops::multiply(&h, &h).unwrap(); // h², dy/dh = 2h = 18
    let [gh, gx] = tape.gradient(&y, [&h, &x]).unwrap();
    assert_eq!(val(&gh), 18.0);
    assert_eq!(val(&gx), 108.0); // 4x³
}

#[test]
fn non_scalar_target_gives_the_gradient_of_its_sum() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::square(&x).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), vec![2.0, 4.0, 6.0]);
}

#[test]
fn several_targets_give_the_gradient_of_their_sum() {
    let x = scalar(2.0);
    let tape = GradientTape::new();
    tape.watch(&x);
    let y1 = ops::square(&x).unwrap();
    let y2 = ops::multiply(&x, &10.0).unwrap();
    let g = tape
        .gradient_with(&[&y1, &y2], &[&x], &GradientOptions::default())
        .unwrap();
    assert_eq!(val(&g[0]), 14.0);
}

#[test]
fn output_gradients_seed_a_vector_jacobian_product() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let y = ops::square(&x).unwrap();
    let seed = Tensor::from_vec(vec![3.0f64, -1.0], &[2]).unwrap();
    let opts = GradientOptions {
        output_gradients: Some(vec![seed]),
        ..Default::default()
    };
    let g = tape.gradient_with(&[&y], &[&x], &opts).unwrap();
    assert_eq!(
        g[0].as_ref().unwrap().to_vec::<f64>().unwrap(),
        vec![6.0, -4.0]
    );
    // a seed of the wrong shape is an error naming the shapes
    let bad = GradientOptions {
        output_gradients: Some(vec![scalar(1.0)]),
        ..Default::default()
    };
    let e = tape
        .gradient_with(&[&y], &[&x], &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[]") && e.contains("[2]"), "{e}");
}

#[test]
fn unconnected_sources_give_none_or_zeros_on_request() {
    let x = scalar(1.0);
    let u = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    tape.watch(&u);
    let y = ops::square(&x).unwrap();
    let [g] = tape.gradient(&y, [&u]).unwrap();
    assert!(g.is_none());
    let opts = GradientOptions {
        unconnected_gradients: UnconnectedGradients::Zero,
        ..Default::default()
    };
    let g = tape.gradient_with(&[&y], &[&u], &opts).unwrap();
    let z = g[0].as_ref().unwrap();
    assert_eq!((z.shape(), z.dtype()), (&[2usize][..], DType::F32));
    assert_eq!(z.to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
}

#[test]
fn a_source_that_is_the_target_gets_ones() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let [g] = tape.gradient(&x, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
}

#[test]
fn non_persistent_tape_stops_recording_at_its_gradient_call() {
    // The second call is refused at compile time (see the compile_fail doctest on
    // GradientTape); here: the call consumes the tape and nothing records afterwards.
    let x = scalar(2.0);
    let outer = GradientTape::new();
    outer.watch(&x);
    let inner = GradientTape::new();
    inner.watch(&x);
    let y = ops::square(&x).unwrap();
    let [g] = inner.gradient(&y, [&x]).unwrap();
    // the outer tape recorded the inner backward pass; the inner is gone
    let [gg] = outer.gradient(&g.unwrap(), [&x]).unwrap();
    assert_eq!(val(&gg), 2.0);
}

#[test]
fn persistent_tape_allows_many_gradient_calls() {
    let x = scalar(3.0);
    let (tape, (y, z)) = PersistentTape::record(|t| {
        t.watch(&x);
        let y = ops::square(&x).unwrap();
        let z = ops::multiply(&y, &x).unwrap();
        (y, z)
    });
    for _ in 0..3 {
        let [gz] = tape.gradient(&z, [&x]).unwrap();
        let [gy] = tape.gradient(&y, [&x]).unwrap();
        assert_eq!((val(&gz), val(&gy)), (27.0, 6.0));
    }
}

#[test]
fn stop_recording_pauses_only_this_tape() {
    let x = scalar(2.0);
    let outer = GradientTape::new();
    let inner = GradientTape::new();
    outer.watch(&x);
    inner.watch(&x);
    let y = inner.stop_recording(|| ops::square(&x).unwrap());
    assert!(inner.is_recording());
    let z = ops::multiply(&x, &y).unwrap();
    let [gi] = inner.gradient(&z, [&x]).unwrap();
    assert_eq!(val(&gi), 4.0); // y is a constant for the inner tape
    let [go] = outer.gradient(&z, [&x]).unwrap();
    assert_eq!(val(&go), 12.0); // 3x² for the outer tape
}

#[test]
fn reset_forgets_everything_and_keeps_recording() {
    let x = scalar(2.0);
    let tape = GradientTape::new();
    tape.watch(&x);
    let _ = ops::square(&x).unwrap();
    tape.reset();
    assert!(tape.recorded_ops().is_empty());
    assert!(tape.is_recording());
    tape.watch(&x);
    let y = ops::exp(&x).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert!((val(&g) - 2f64.exp()).abs() < 1e-12);
}

#[test]
fn watched_variables_are_listed_in_watch_order() {
    let a = Variable::with_options(
        1.0,
        VariableOptions {
            name: Some("a".into()),
            trainable: true,
        },
    );
    let b = Variable::with_options(
        2.0,
        VariableOptions {
            name: Some("b".into()),
            trainable: true,
        },
    );
    let tape = GradientTape::new();
    let _ = ops::add(&b, &a).unwrap();
    let _ = ops::add(&a, &b).unwrap();
    let names: Vec<String> = tape
        .watched_variables()
        .iter()
        .map(|v| v.name().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["b", "a"]);
}

#[test]
fn nested_tapes_give_the_third_derivative_of_a_cube() {
    let x = scalar(2.0);
    let t3 = GradientTape::new();
    t3.watch(&x);
    let t2 = GradientTape::new();
    t2.watch(&x);
    let t1 = GradientTape::new();
    t1.watch(&x);
    let y = ops::multiply(&ops::multiply(&x, &x).unwrap(), &x).unwrap();
    let [d1] = t1.gradient(&y, [&x]).unwrap();
    let [d2] = t2.gradient(&d1.clone().unwrap(), [&x]).unwrap();
    let [d3] = t3.gradient(&d2.clone().unwrap(), [&x]).unwrap();
    assert_eq!((val(&d1), val(&d2), val(&d3)), (12.0, 12.0, 6.0));
}

#[test]
fn persistent_tape_records_its_own_gradient_inside_its_context() {
    let x = scalar(3.0);
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let y = ops::pow(&x, &3.0).unwrap();
    let [d1] = tape.gradient(&y, [&x]).unwrap(); // recorded: we are still inside
    tape.stop();
    let [d2] = tape.gradient(&d1.unwrap(), [&x]).unwrap();
    assert_eq!(val(&d2), 18.0); // 6x
}

#[test]
fn recording_is_thread_local() {
    let x = scalar(2.0);
    let tape = GradientTape::new();
    tape.watch(&x);
    let x2 = x.clone();
    let from_thread = std::thread::spawn(move || ops::square(&x2).unwrap())
        .join()
        .unwrap();
    let here = ops::square(&x).unwrap();
    let g = tape
        .gradient_with(&[&from_thread, &here], &[&x], &GradientOptions::default())
        .unwrap();
    assert_eq!(val(&g[0]), 4.0); // only the op on this thread was recorded
}

#[test]
fn integer_and_bool_tensors_are_never_recorded() {
    let i = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    let b = Tensor::from_vec(vec![true, false], &[2]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&i);
    tape.watch(&b);
    let j = ops::multiply(&i, &i).unwrap();
    let _ = ops::logical_not(&b).unwrap();
    assert!(tape.recorded_ops().is_empty());
    let [g] = tape
        .gradient(&ops::cast(&j, DType::F32).unwrap(), [&i])
        .unwrap();
    assert!(g.is_none());
}

#[test]
fn ops_without_a_gradient_give_none() {
    let x = Tensor::from_vec(vec![1.5f32, -0.5], &[2]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let r = ops::round(&x).unwrap();
    let am = ops::cast(&ops::argmax(&x, 0).unwrap(), DType::F32).unwrap();
    let cmp = ops::cast(&ops::greater(&x, &0.0).unwrap(), DType::F32).unwrap();
    let fl = ops::floor(&x).unwrap();
    for t in [&r, &am, &cmp, &fl] {
        let [g] = tape.gradient(t, [&x]).unwrap();
        assert!(g.is_none());
    }
}

#[test]
fn assigning_inside_a_tape_cuts_the_path() {
    let x = Tensor::scalar(3.0f32);
    let v = Variable::new(1.0);
    let tape = GradientTape::new();
    tape.watch(&x);
    v.assign(&ops::multiply(&x, &2.0).unwrap()).unwrap();
    let y = ops::multiply(&v, &5.0).unwrap();
    let [gx, gv] = tape
        .gradient(&y, [&x as &dyn gradtape::Source, &v])
        .unwrap();
    assert!(gx.is_none());
    assert_eq!(val(&gv), 5.0);
}

#[test]
fn every_read_of_a_variable_adds_to_its_gradient() {
    let v = Variable::new(Tensor::scalar(3.0f64));
    let tape = GradientTape::new();
    let a = v.value();
    let b = v.value();
    let y = ops::multiply(&a, &b).unwrap();
    let [g] = tape.gradient(&y, [&v]).unwrap();
    assert_eq!(val(&g), 6.0);
}

#[test]
fn variable_assignment_checks_dtype_and_shape() {
    let v = Variable::with_options(
        Tensor::zeros(&[2], DType::F32).unwrap(),
        VariableOptions {
            name: Some("w".into()),
            trainable: true,
        },
    );
    let e = v
        .assign(&Tensor::zeros(&[2], DType::F64).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("assign") && e.contains("float32") && e.contains("float64"),
        "{e}"
    );
    let e = v
        .assign_add(&Tensor::zeros(&[3], DType::F32).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("assign_add") || e.starts_with("add"), "{e}");
    v.assign_add(&1.0).unwrap(); // a Rust number broadcasts and takes the dtype
    assert_eq!(v.value().to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
}

#[test]
fn gradient_of_a_reduction_over_a_variable_matrix() {
    let w = Variable::new(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap());
    let tape = GradientTape::new();
    let y = ops::reduce_sum(&ops::matmul(&w, &w).unwrap(), Axes::All, false).unwrap();
    let [g] = tape.gradient(&y, [&w]).unwrap();
    // d/dW sum(W W) = 1 Wᵀ + Wᵀ 1
    assert_eq!(
        g.unwrap().to_vec::<f64>().unwrap(),
        vec![7.0, 11.0, 9.0, 13.0]
    );
}

#[test]
fn tensors_and_variables_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
    assert_send_sync::<Variable>();
    // and usable from another thread, with a tape of its own there
    let v = Variable::new(Tensor::scalar(3.0f64));
    let v2 = v.clone();
    let g = std::thread::spawn(move || {
        let tape = GradientTape::new();
        let y = ops::square(&v2).unwrap();
        let [g] = tape.gradient(&y, [&v2]).unwrap();
        g.unwrap().to_scalar::<f64>().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(g, 6.0);
    assert_eq!(v.value().to_scalar::<f64>().unwrap(), 3.0);
}

/// The backward pass sums a tensor's partial gradients in place when nothing else can see the
/// partial sum; what the user holds (a seed, a gradient returned earlier) is never written.
#[test]
fn partial_gradients_are_summed_without_touching_what_the_user_holds() {
    let x = Tensor::from_vec(vec![1.0f32, -2.0, 0.5], &[3]).unwrap();
    let tape = GradientTape::persistent();
    tape.watch(&x);
    // x used 30 times: 30 partial gradients of x, summed in the order they arrive
    let mut y = ops::multiply(&x, &0.0f32).unwrap();
    for k in 1..=30 {
        y = ops::add(&y, &ops::multiply(&x, &(k as f32)).unwrap()).unwrap();
    }
    let seed = Tensor::from_vec(vec![1.0f32, 2.0, -1.0], &[3]).unwrap();
    let opts = GradientOptions {
        output_gradients: Some(vec![seed.clone()]),
        ..Default::default()
    };
    let g1 = tape.gradient_with(&[&y], &[&x], &opts).unwrap()[0]
        .clone()
        .unwrap();
    // the sum of every partial (exact in f32 here)
    let mut want = [0.0f32; 3];
    let s = [1.0f32, 2.0, -1.0];
    for k in 0..=30 {
        for i in 0..3 {
            want[i] += s[i] * k as f32;
        }
    }
    assert_eq!(g1.to_vec::<f32>().unwrap(), want.to_vec());
    assert_eq!(seed.to_vec::<f32>().unwrap(), s.to_vec());
    // a second pass gives the same numbers and leaves the first result alone
    let g2 = tape.gradient_with(&[&y], &[&x], &opts).unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(g2.to_vec::<f32>().unwrap(), want.to_vec());
    assert_eq!(g1.to_vec::<f32>().unwrap(), want.to_vec());
    // under an outer tape the sum is recorded: the second derivative of sum(x^2 * 30) counts
    // every partial
    let outer = GradientTape::new();
    outer.watch(&x);
    let inner = GradientTape::new();
    inner.watch(&x);
    let mut z = ops::multiply(&x, &0.0f32).unwrap();
    for _ in 0..30 {
        z = ops::add(&z, &ops::square(&x).unwrap()).unwrap();
    }
    let z = ops::reduce_sum(&z, Axes::All, false).unwrap();
    let dz = inner.gradient(&z, &[&x]).unwrap()[0].clone().unwrap();
    let d2 = outer
        .gradient(&ops::reduce_sum(&dz, Axes::All, false).unwrap(), &[&x])
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(d2.to_vec::<f32>().unwrap(), vec![60.0; 3]);
}

#[test]
fn reverse_is_a_view_whose_gradient_reverses_the_seed() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let r = ops::reverse(&x, &[0, 1]).unwrap();
    let w = Tensor::from_vec(vec![1.0f64, 10.0, 100.0, 1e3, 1e4, 1e5], &[2, 3]).unwrap();
    let y = ops::reduce_sum(&ops::multiply(&r, &w).unwrap(), Axes::All, false).unwrap();
    let g = tape.gradient(&y, &[&x]).unwrap()[0].clone().unwrap();
    assert_eq!(
        g.to_vec::<f64>().unwrap(),
        vec![1e5, 1e4, 1e3, 100.0, 10.0, 1.0]
    );
    // an empty axis and no axis at all are fine
    let e = Tensor::zeros(&[0, 2], DType::F32).unwrap();
    assert_eq!(ops::reverse(&e, &[0]).unwrap().shape(), &[0, 2]);
    assert_eq!(
        ops::reverse(&x, &[]).unwrap().to_vec::<f64>().unwrap(),
        x.to_vec::<f64>().unwrap()
    );
    let err = ops::reverse(&x, &[2]).unwrap_err().to_string();
    assert!(err.contains("reverse") && err.contains("axis 2"), "{err}");
}
