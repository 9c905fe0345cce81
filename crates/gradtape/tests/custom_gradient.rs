//! `custom_gradient` against TensorFlow's `tf.custom_gradient` (the fixture is made by
//! `tools/tf_custom_gradient_reference.py`), and its rules: variables read inside, wrong
//! gradient counts, stop_recording, several outputs.

use gradtape::{custom_gradient, ops, Axes, DType, GradientTape, Result, Source, Tensor, Variable};
use serde_json::Value;

mod common;
use common::{fixture, numbers as nums};

fn t(v: &Value, dt: DType) -> Tensor {
    let x = nums(v);
    let n = x.len();
    Tensor::from_vec(x, &[n]).unwrap().cast(dt).unwrap()
}

fn close(got: &Tensor, want: &[f64], dt: DType, what: &str) {
    let got = got.to_f64_vec().unwrap();
    let tol = if dt == DType::F32 { 1e-6 } else { 1e-12 };
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g == w || (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

fn log1pexp(x: &Tensor) -> Result<Tensor> {
    let out = custom_gradient(&[x], |xs| {
        let e = ops::exp(&xs[0])?;
        let y = ops::log1p(&e)?;
        let grad = move |dy: &[Tensor], _: &[Variable]| {
            let local = ops::subtract(&1.0, &ops::reciprocal(&ops::add(&e, &1.0)?)?)?;
            Ok(vec![Some(ops::multiply(&dy[0], &local)?)])
        };
        Ok((vec![y], grad))
    })?;
    Ok(out[0].clone())
}

fn clip_grad(x: &Tensor) -> Result<Tensor> {
    Ok(custom_gradient(&[x], |xs| {
        let grad = |dy: &[Tensor], _: &[Variable]| {
            Ok(vec![Some(ops::clip_by_value(&dy[0], &-1.0, &1.0)?)])
        };
        Ok((vec![xs[0].clone()], grad))
    })?[0]
        .clone())
}

fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok(custom_gradient(&[x], |xs| {
        let x = xs[0].clone();
        let y = ops::softplus(&x)?;
        // written in terms of the input, so an outer tape differentiates it
        let grad = move |dy: &[Tensor], _: &[Variable]| {
            Ok(vec![Some(ops::multiply(&dy[0], &ops::sigmoid(&x)?)?)])
        };
        Ok((vec![y], grad))
    })?[0]
        .clone())
}

#[test]
fn custom_gradients_match_tensorflow() {
    let fixture = fixture("tf_custom_gradient.json");
    for (key, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let tf = &fixture[key];

        let x = t(&tf["log1pexp"]["x"], dt);
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = log1pexp(&x).unwrap();
        close(
            &y,
            &nums(&tf["log1pexp"]["y"]),
            dt,
            &format!("{key} log1pexp y"),
        );
        let [g] = tape.gradient(&y, [&x]).unwrap();
        close(
            &g.unwrap(),
            &nums(&tf["log1pexp"]["grad"]),
            dt,
            &format!("{key} log1pexp grad"),
        );

        let (x, c) = (t(&tf["clip"]["x"], dt), t(&tf["clip"]["c"], dt));
        let tape = GradientTape::new();
        tape.watch(&x);
        let loss = ops::reduce_sum(
            &ops::multiply(&clip_grad(&x).unwrap(), &c).unwrap(),
            Axes::All,
            false,
        )
        .unwrap();
        let [g] = tape.gradient(&loss, [&x]).unwrap();
        close(
            &g.unwrap(),
            &nums(&tf["clip"]["grad"]),
            dt,
            &format!("{key} clip"),
        );

        let x = t(&tf["second"]["x"], dt);
        let outer = GradientTape::new();
        outer.watch(&x);
        let inner = GradientTape::new();
        inner.watch(&x);
        let y = ops::reduce_sum(&softplus(&x).unwrap(), Axes::All, false).unwrap();
        let [g] = inner.gradient(&y, [&x]).unwrap();
        let g = g.unwrap();
        close(
            &g,
            &nums(&tf["second"]["grad"]),
            dt,
            &format!("{key} first"),
        );
        let [h] = outer.gradient(&g, [&x]).unwrap();
        close(
            &h.unwrap(),
            &nums(&tf["second"]["second"]),
            dt,
            &format!("{key} second"),
        );

        let x = t(&tf["variable"]["x"], dt);
        let w = Variable::new(t(&tf["variable"]["w"], dt));
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = custom_gradient(&[&x], |xs| {
            let x = xs[0].clone();
            let y = ops::multiply(&x, &w)?;
            let wv = w.value();
            let grad = move |dy: &[Tensor], vars: &[Variable]| {
                assert_eq!(vars.len(), 1, "the forward read one variable");
                Ok(vec![
                    Some(ops::multiply(&dy[0], &wv)?),
                    Some(ops::multiply(&dy[0], &x)?),
                ])
            };
            Ok((vec![y], grad))
        })
        .unwrap();
        let loss = ops::reduce_sum(&ops::square(&y[0]).unwrap(), Axes::All, false).unwrap();
        let [gx, gw] = tape.gradient(&loss, [&x as &dyn Source, &w]).unwrap();
        close(
            &gx.unwrap(),
            &nums(&tf["variable"]["gx"]),
            dt,
            &format!("{key} variable gx"),
        );
        close(
            &gw.unwrap(),
            &nums(&tf["variable"]["gw"]),
            dt,
            &format!("{key} variable gw"),
        );
    }
}

#[test]
fn a_gradient_function_that_forgets_a_variable_read_inside_is_an_error_naming_it() {
    let w = Variable::with_options(
        2.0,
        gradtape::VariableOptions {
            name: Some("scale".into()),
            trainable: true,
        },
    );
    let x = Tensor::scalar(3.0f32);
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = custom_gradient(&[&x], |xs| {
        let y = ops::multiply(&xs[0], &w)?;
        let grad = |dy: &[Tensor], _: &[Variable]| Ok(vec![Some(ops::multiply(&dy[0], &2.0)?)]);
        Ok((vec![y], grad))
    })
    .unwrap();
    let e = tape.gradient(&y[0], [&x]).unwrap_err().to_string();
    assert!(e.contains("custom_gradient") && e.contains("scale"), "{e}");
}

#[test]
fn several_outputs_stop_recording_and_shape_checks() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
    // two outputs: (2x, x²) with their true gradients
    let two = |x: &Tensor| {
        custom_gradient(&[x], |xs| {
            let x = xs[0].clone();
            let outs = vec![ops::multiply(&x, &2.0)?, ops::square(&x)?];
            let grad = move |dy: &[Tensor], _: &[Variable]| {
                let g = ops::add(
                    &ops::multiply(&dy[0], &2.0)?,
                    &ops::multiply(&dy[1], &ops::multiply(&x, &2.0)?)?,
                )?;
                Ok(vec![Some(g)])
            };
            Ok((outs, grad))
        })
    };
    let tape = GradientTape::new();
    tape.watch(&x);
    let o = two(&x).unwrap();
    let loss = ops::add(
        &ops::reduce_sum(&o[0], Axes::All, false).unwrap(),
        &ops::reduce_sum(&o[1], Axes::All, false).unwrap(),
    )
    .unwrap();
    let [g] = tape.gradient(&loss, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), vec![4.0, 6.0]); // 2 + 2x
                                                                     // only the second output used: the first's upstream is zeros
    let tape = GradientTape::new();
    tape.watch(&x);
    let o = two(&x).unwrap();
    let [g] = tape
        .gradient(&ops::reduce_sum(&o[1], Axes::All, false).unwrap(), [&x])
        .unwrap();
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), vec![2.0, 4.0]);
    // under stop_recording nothing is recorded
    let tape = GradientTape::new();
    tape.watch(&x);
    let o = tape.stop_recording(|| two(&x)).unwrap();
    let [g] = tape.gradient(&o[1], [&x]).unwrap();
    assert!(g.is_none());
    // a gradient of the wrong shape is an error
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = custom_gradient(&[&x], |xs| {
        let grad = |_: &[Tensor], _: &[Variable]| Ok(vec![Some(Tensor::zeros(&[3], DType::F64)?)]);
        Ok((vec![ops::exp(&xs[0])?], grad))
    })
    .unwrap();
    let e = tape.gradient(&y[0], [&x]).unwrap_err().to_string();
    assert!(e.contains("[3]") && e.contains("[2]"), "{e}");
    // the forward's own ops are not on the tape: the custom rule alone decides
    let tape = GradientTape::builder().trace(true).start();
    tape.watch(&x);
    let _ = two(&x).unwrap();
    assert_eq!(
        tape.recorded_ops(),
        vec!["custom_gradient", "custom_gradient"]
    );
}

#[test]
fn inside_vmap_with_a_tape_it_is_refused_rather_than_wrong() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let e = gradtape::vmap(|xs: &[Tensor]| {
        let tape = GradientTape::new();
        tape.watch(&xs[0]);
        let y = clip_grad(&xs[0])?;
        let [g] = tape.gradient(&y, [&xs[0]])?;
        Ok(vec![g.unwrap()])
    })
    .call(std::slice::from_ref(&x))
    .unwrap_err()
    .to_string();
    assert!(e.contains("inside vmap"), "{e}");
    // without a tape, the forward works as any function does
    let y = gradtape::vmap(|xs: &[Tensor]| Ok(vec![log1pexp(&xs[0])?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(y[0].shape(), &[2]);
}
