//! `Tape::why_no_gradient`: every reason it can give, each produced here.

use gradtape::{ops, Axes, DType, GradientTape, Tensor, Variable, VariableOptions};

fn named(name: &str, trainable: bool) -> Variable {
    Variable::with_options(
        Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap(),
        VariableOptions {
            name: Some(name.into()),
            trainable,
        },
    )
}

fn sum(t: &Tensor) -> Tensor {
    ops::reduce_sum(t, Axes::All, false).unwrap()
}

#[test]
fn every_reason_for_a_missing_gradient_is_told() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();

    // a gradient exists: no reason
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = sum(&ops::square(&x).unwrap());
    assert_eq!(tape.why_no_gradient(&y, &x), None);

    // never watched
    let tape = GradientTape::new();
    let y = sum(&ops::square(&x).unwrap());
    let why = tape.why_no_gradient(&y, &x).unwrap();
    assert!(why.contains("never watched"), "{why}");

    // a variable that is not trainable
    let frozen = named("frozen", false);
    let tape = GradientTape::new();
    let y = sum(&ops::multiply(&frozen, &x).unwrap());
    let why = tape.why_no_gradient(&y, &frozen).unwrap();
    assert!(why.contains("frozen is not trainable"), "{why}");

    // a tape that does not watch accessed variables
    let w = named("w", true);
    let tape = GradientTape::builder()
        .watch_accessed_variables(false)
        .start();
    let y = sum(&ops::multiply(&w, &x).unwrap());
    let why = tape.why_no_gradient(&y, &w).unwrap();
    assert!(why.contains("watch_accessed_variables(false)"), "{why}");

    // read only inside stop_recording
    let tape = GradientTape::new();
    let y = tape.stop_recording(|| sum(&ops::multiply(&w, &x).unwrap()));
    let why = tape.why_no_gradient(&y, &w).unwrap();
    assert!(why.contains("inside stop_recording"), "{why}");

    // read before the tape started
    let early = w.value();
    let tape = GradientTape::new();
    let y = sum(&ops::multiply(&early, &x).unwrap());
    let why = tape.why_no_gradient(&y, &w).unwrap();
    assert!(why.contains("never read while the tape recorded"), "{why}");

    // cut by stop_gradient
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = sum(&ops::stop_gradient(&ops::square(&x).unwrap()).unwrap());
    let why = tape.why_no_gradient(&y, &x).unwrap();
    assert!(why.contains("stop_gradient"), "{why}");

    // cut by an assign
    let v = named("v", true);
    let tape = GradientTape::new();
    tape.watch(&x);
    v.assign(&ops::multiply(&x, &3.0).unwrap()).unwrap();
    let y = sum(&ops::multiply(&v, &2.0).unwrap());
    let why = tape.why_no_gradient(&y, &x).unwrap();
    assert!(why.contains("assign"), "{why}");

    // cut by an integer cast
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = sum(&ops::cast(&ops::cast(&x, DType::I64).unwrap(), DType::F32).unwrap());
    let why = tape.why_no_gradient(&y, &x).unwrap();
    assert!(why.contains("cast to an integer"), "{why}");

    // cut by an op with no gradient, named
    for (name, f) in [
        (
            "argmax",
            (|x: &Tensor| ops::cast(&ops::argmax(x, 0)?, DType::F32))
                as fn(&Tensor) -> gradtape::Result<Tensor>,
        ),
        ("round", |x: &Tensor| ops::round(x)),
        ("greater", |x: &Tensor| {
            ops::cast(&ops::greater(x, &1.5)?, DType::F32)
        }),
    ] {
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = sum(&f(&x).unwrap());
        let why = tape.why_no_gradient(&y, &x).unwrap();
        assert!(
            why.contains(name) && why.contains("no gradient"),
            "{name}: {why}"
        );
    }

    // simply not used by the target
    let z = Tensor::scalar(1.0f32);
    let tape = GradientTape::new();
    tape.watch(&x);
    tape.watch(&z);
    let y = sum(&ops::square(&x).unwrap());
    let why = tape.why_no_gradient(&y, &z).unwrap();
    assert!(why.contains("does not depend on it"), "{why}");

    // integer sources and targets
    let k = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    let tape = GradientTape::new();
    let why = tape.why_no_gradient(&y, &k).unwrap();
    assert!(
        why.contains("int64") && why.contains("float sources"),
        "{why}"
    );
}
