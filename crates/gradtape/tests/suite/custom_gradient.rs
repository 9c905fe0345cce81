//! `custom_gradient` against TensorFlow's `tf.custom_gradient` (the fixture is made by
//! `tools/tf_custom_gradient_reference.py`), and its rules: variables read inside, wrong
//! gradient counts, stop_recording, several outputs.

use gradtape::{custom_gradient, ops, Axes, DType, GradientTape, Result, Source, Tensor, Variable};
use serde_json::Value;

use crate::common;
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

pub(crate) fn log1pexp(x: &Tensor) -> Result<Tensor> {
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

/// Issue 21: a custom gradient inside `vmap` under a tape (refused before) has each example's
/// custom gradient, with the tape inside the vmap or outside it, and with a shared input
/// (its gradient summed over the examples); the examples are checked one by one. A forward
/// that reads a variable is still refused there, with a message.
#[test]
fn inside_vmap_under_a_tape_each_example_gets_its_custom_gradient() {
    let x = Tensor::from_vec(vec![-3.0f64, 0.5, 2.0, 40.0], &[4]).unwrap();
    let scale = Tensor::from_vec(vec![3.0f64], &[]).unwrap();
    // y = clip_grad(x) * scale + log1pexp(x): d/dx = clip(scale, -1, 1) + sigmoid(x)
    let f = |x: &Tensor, scale: &Tensor| -> Result<Tensor> {
        ops::add(&ops::multiply(&clip_grad(x)?, scale)?, &log1pexp(x)?)
    };
    let each = |i: usize| -> (f64, f64) {
        let xi = x.slice(gradtape::s![i as isize]).unwrap();
        let tape = GradientTape::new();
        tape.watch(&xi);
        tape.watch(&scale);
        let y = f(&xi, &scale).unwrap();
        let [gx, gs] = tape.gradient(&y, [&xi, &scale]).unwrap();
        (gx.unwrap().item().unwrap(), gs.unwrap().item().unwrap())
    };
    let want: Vec<(f64, f64)> = (0..4).map(each).collect();
    // the tape inside the vmap
    let inside = gradtape::vmap(|xs: &[Tensor]| {
        let tape = GradientTape::new();
        tape.watch(&xs[0]);
        let y = f(&xs[0], &scale)?;
        let [g] = tape.gradient(&y, [&xs[0]])?;
        Ok(vec![g.unwrap()])
    })
    .call(std::slice::from_ref(&x))
    .unwrap();
    let gx: Vec<f64> = want.iter().map(|w| w.0).collect();
    assert_eq!(inside[0].to_vec::<f64>().unwrap(), gx);
    // the tape outside: the gradient function runs after the vmap ended
    let tape = GradientTape::new();
    tape.watch(&x);
    tape.watch(&scale);
    let y = gradtape::vmap(|xs: &[Tensor]| Ok(vec![f(&xs[0], &scale)?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    let loss = ops::reduce_sum(&y[0], Axes::All, false).unwrap();
    let [g, gs] = tape.gradient(&loss, [&x, &scale]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), gx);
    let shared: f64 = want.iter().map(|w| w.1).sum();
    assert!((gs.unwrap().item().unwrap() - shared).abs() < 1e-12);
    // a forward that reads a variable: refused, not wrong
    let v = Variable::new(Tensor::scalar(2.0f64));
    let e = gradtape::vmap(|xs: &[Tensor]| {
        let tape = GradientTape::new();
        tape.watch(&xs[0]);
        let y = custom_gradient(&[&xs[0]], |xs| {
            let y = ops::multiply(&xs[0], &v)?;
            Ok((vec![y], |dy: &[Tensor], _: &[Variable]| {
                Ok(vec![Some(dy[0].clone()), None])
            }))
        })?;
        let [g] = tape.gradient(&y[0], [&xs[0]])?;
        Ok(vec![g.unwrap()])
    })
    .call(std::slice::from_ref(&x))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not supported yet"), "{e}");
    // without a tape, the forward works as any function does
    let y = gradtape::vmap(|xs: &[Tensor]| Ok(vec![log1pexp(&xs[0])?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(y[0].shape(), &[4]);
}

/// Issue 21, composition 1: a variable read inside a `recompute_grad` nested in another is
/// credited to the outer one too. TensorFlow gives `[3, 4]` for d/dw of `outer(x)`.
#[test]
fn a_variable_read_in_a_nested_recompute_grad_gets_its_gradient() {
    use gradtape::recompute_grad;
    let x = Tensor::from_vec(vec![3.0f32, 4.0], &[2]).unwrap();
    let w = Variable::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap());
    let w2 = w.clone();
    let inner = std::rc::Rc::new(recompute_grad(move |xs: &[Tensor]| {
        Ok(vec![ops::multiply(&xs[0], &w2.value())?])
    }));
    let outer = recompute_grad(move |xs: &[Tensor]| inner(&[&xs[0]]));
    let tape = GradientTape::new();
    let y = ops::reduce_sum(&outer(&[&x]).unwrap()[0], Axes::All, false).unwrap();
    let [gw] = tape.gradient(&y, [&w]).unwrap();
    assert_eq!(gw.unwrap().to_vec::<f32>().unwrap(), [3.0, 4.0]);
}

/// Issue 21, composition 2: one tensor passed as two arguments is two inputs, each with its
/// own gradient (TensorFlow gives `[2, 4]`; the two were confused into `[4, 8]`).
#[test]
fn one_tensor_as_two_arguments_of_recompute_grad_is_counted_once_per_use() {
    use gradtape::recompute_grad;
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let f = recompute_grad(|xs: &[Tensor]| Ok(vec![ops::multiply(&xs[0], &xs[1])?]));
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::reduce_sum(&f(&[&x, &x]).unwrap()[0], Axes::All, false).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f32>().unwrap(), [2.0, 4.0]);
    // and custom_gradient sees two inputs: its rule's two results are summed once
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = custom_gradient(&[&x, &x], |xs| {
        let y = ops::multiply(&xs[0], &xs[1])?;
        let (a, b) = (xs[0].clone(), xs[1].clone());
        Ok((
            vec![y],
            move |dy: &[Tensor], _: &[Variable]| -> Result<Vec<Option<Tensor>>> {
                Ok(vec![
                    Some(ops::multiply(&dy[0], &b)?),
                    Some(ops::multiply(&dy[0], &a)?),
                ])
            },
        ))
    })
    .unwrap();
    let y = ops::reduce_sum(&y[0], Axes::All, false).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f32>().unwrap(), [2.0, 4.0]);
}

/// Issue 21, composition 4: `vmap` of a function with a custom gradient or `recompute_grad`,
/// no tape anywhere, returned values that could not be read. They are the function's values.
#[test]
fn vmap_of_a_custom_gradient_or_recompute_grad_with_no_tape_gives_the_values() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 0.0], &[3, 2]).unwrap();
    let want = ops::exp(&x).unwrap().to_vec::<f32>().unwrap();
    let custom = gradtape::vmap(|xs: &[Tensor]| {
        custom_gradient(&[&xs[0]], |a| {
            let y = ops::exp(&a[0])?;
            let grad = |dy: &[Tensor], _: &[Variable]| Ok(vec![Some(dy[0].clone())]);
            Ok((vec![y], grad))
        })
    })
    .call(std::slice::from_ref(&x))
    .unwrap();
    assert_eq!(custom[0].to_vec::<f32>().unwrap(), want);
    let recomputed = gradtape::recompute_grad(|xs: &[Tensor]| Ok(vec![ops::exp(&xs[0])?]));
    let out = gradtape::vmap(move |xs: &[Tensor]| recomputed(&[&xs[0]]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), want);
    // and stop_gradient, which makes a new identity the same way
    let out = gradtape::vmap(|xs: &[Tensor]| Ok(vec![ops::stop_gradient(&ops::exp(&xs[0])?)?]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), want);
}
