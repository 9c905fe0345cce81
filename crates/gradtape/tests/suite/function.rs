//! `gradtape::function` (issue 22, slice 1): tracing once per signature, replaying the graph,
//! variables captured by handle, the concretization error, `print`, and a compiled call
//! composed with tapes, accumulators, vmap, custom gradients, other functions and threads.
//! Every compiled answer is compared with the eager one bit for bit (the graph runs the same
//! kernels in the same order), on arguments other than those it was traced with.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use gradtape::layers::{Activation, Dense, Layer, Sequential};
use gradtape::losses::{mean_squared_error, Reduction};
use gradtape::optimizers::{Adam, Optimizer};
use gradtape::random::Generator;
use gradtape::{
    custom_gradient, function, ops, print_with, vmap, Axes, DType, Error, ForwardAccumulator,
    GradientTape, Tensor, Variable,
};

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn vec64(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap()
}

#[test]
fn a_function_traces_once_per_signature_and_replays() {
    let runs = Rc::new(Cell::new(0));
    let f = function({
        let runs = runs.clone();
        move |a: &[Tensor]| {
            runs.set(runs.get() + 1); // Rust code: runs while tracing only
            ops::add(&ops::sin(&a[0])?, &ops::multiply(&a[0], &a[1])?)
        }
    })
    .with_name("f");
    let (x, y) = (vec64(&[0.5, 1.5]), vec64(&[2.0, -1.0]));
    let first: Tensor = f.call(&[&x, &y]).unwrap();
    let eager = ops::add(&ops::sin(&x).unwrap(), &ops::multiply(&x, &y).unwrap()).unwrap();
    assert_eq!(bits(&first), bits(&eager));
    // other values, same signature: replayed, the Rust code does not run
    let (x2, y2) = (vec64(&[-3.0, 0.25]), vec64(&[7.0, 0.5]));
    let second: Tensor = f.call(&[&x2, &y2]).unwrap();
    let eager2 = ops::add(&ops::sin(&x2).unwrap(), &ops::multiply(&x2, &y2).unwrap()).unwrap();
    assert_eq!(bits(&second), bits(&eager2));
    assert_eq!((runs.get(), f.tracing_count()), (1, 1));
    // a new shape, a new dtype: a new trace each
    let _: Tensor = f.call(&[&vec64(&[1.0; 3]), &vec64(&[1.0; 3])]).unwrap();
    let x32 = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let _: Tensor = f.call(&[&x32, &x32]).unwrap();
    assert_eq!((runs.get(), f.tracing_count(), f.graphs().len()), (3, 3, 3));
    // one tensor passed twice is two arguments (the graph does not tie them)
    let g = function(|a: &[Tensor]| ops::multiply(&a[0], &a[1]));
    let _: Tensor = g.call(&[&x, &x]).unwrap();
    let z: Tensor = g.call(&[&x, &y]).unwrap();
    assert_eq!(bits(&z), bits(&ops::multiply(&x, &y).unwrap()));
    // an error while tracing caches nothing
    let bad = function(|a: &[Tensor]| ops::matvec(&a[0], &a[0]));
    assert!(bad.call::<Tensor>(&[&x]).is_err());
    assert_eq!(bad.tracing_count(), 0);
}

#[test]
fn retracing_often_warns_once_as_tensorflow_does() {
    let f = function(|a: &[Tensor]| ops::exp(&a[0])).with_name("step");
    for n in 1..=4 {
        let _: Tensor = f.call(&[&vec64(&vec![0.0; n])]).unwrap();
    }
    assert_eq!(f.retracing_warning(), None);
    let _: Tensor = f.call(&[&vec64(&[0.0; 5])]).unwrap();
    let w = f.retracing_warning().expect("a warning at the fifth trace");
    assert!(w.contains("'step' has traced 5 times"), "{w}");
    let _: Tensor = f.call(&[&vec64(&[0.0; 6])]).unwrap();
    assert_eq!(f.retracing_warning(), Some(w)); // once
    assert_eq!(f.tracing_count(), 6);
}

#[test]
fn reading_a_traced_value_is_an_error_that_says_what_to_do() {
    let x = vec64(&[1.0, -2.0]);
    // a Rust `if` on a tensor's value
    let f = function(|a: &[Tensor]| {
        let s = ops::reduce_sum(&a[0], Axes::All, false)?;
        if s.item()? > 0.0 {
            ops::exp(&a[0])
        } else {
            ops::negative(&a[0])
        }
    });
    let e = f.call::<Tensor>(&[&x]).unwrap_err();
    assert!(matches!(e, Error::Trace { op: "item", .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("reduce_sum_"), "{msg}");
    assert!(
        msg.contains("ops::select") && msg.contains("gradtape::print"),
        "{msg}"
    );
    assert_eq!(f.tracing_count(), 0);
    // every read-back refuses; a variable's value inside is traced too
    let v = Variable::new(vec64(&[3.0]));
    type Read = Box<dyn Fn(&Tensor) -> gradtape::Result<()>>;
    let reads: Vec<(&str, Read)> = vec![
        ("to_vec", Box::new(|t| t.to_vec::<f64>().map(drop))),
        ("to_f64_vec", Box::new(|t| t.to_f64_vec().map(drop))),
        ("to_scalar", Box::new(|t| t.to_scalar::<f64>().map(drop))),
        ("item", Box::new(|t| t.item().map(drop))),
    ];
    for (name, read) in &reads {
        let v = v.clone();
        let g = function(move |a: &[Tensor]| {
            read(&v.value())?;
            Ok(a[0].clone())
        });
        let e = g.call::<Tensor>(&[&x]).unwrap_err();
        assert_eq!(e.op(), *name);
        assert!(e.to_string().contains("read_variable_"), "{e}");
    }
    // a constant made inside is concrete; Display shows a traced value by name
    let shown = Rc::new(RefCell::new(String::new()));
    let h = function({
        let shown = shown.clone();
        move |a: &[Tensor]| {
            let c = Tensor::from_vec(vec![2.0f64, 3.0], &[2])?;
            assert_eq!(c.to_vec::<f64>()?, vec![2.0, 3.0]);
            let y = ops::multiply(&a[0], &c)?;
            *shown.borrow_mut() = y.to_string();
            Ok(y)
        }
    });
    let _: Tensor = h.call(&[&x]).unwrap();
    assert!(
        shown.borrow().starts_with("Tensor(\"multiply_") && shown.borrow().contains("shape=(2,)"),
        "{}",
        shown.borrow()
    );
    // random draws would repeat: refused, with what to do
    let r = function(|a: &[Tensor]| {
        let noise = Generator::from_seed(1).normal(&[2], 0.0, 1.0, DType::F64)?;
        ops::add(&a[0], &noise)
    });
    let e = r.call::<Tensor>(&[&x]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Trace {
                op: "random.normal",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("pass them as an argument"), "{e}");
    // after the call, the result reads as any tensor
    let ok = function(|a: &[Tensor]| ops::exp(&a[0]));
    let y: Tensor = ok.call(&[&x]).unwrap();
    assert_eq!(y.to_vec::<f64>().unwrap().len(), 2);
}

#[test]
fn print_prints_at_every_call_and_println_only_while_tracing() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let traced = Rc::new(Cell::new(0));
    let f = function({
        let (lines, traced) = (lines.clone(), traced.clone());
        move |a: &[Tensor]| {
            traced.set(traced.get() + 1);
            let y = ops::multiply(&a[0], &2.0)?;
            let lines = lines.clone();
            print_with("y:", &[&y], move |l: &str| {
                lines.lock().unwrap().push(l.to_string())
            })?;
            Ok(y)
        }
    });
    for v in [1i64, 2, 3] {
        let _: Tensor = f
            .call(&[&Tensor::from_vec(vec![v, -v], &[2]).unwrap()])
            .unwrap();
    }
    assert_eq!(
        *lines.lock().unwrap(),
        vec!["y: [2 -2]", "y: [4 -4]", "y: [6 -6]"]
    );
    assert_eq!(traced.get(), 1);
    assert_eq!(f.graphs()[0].op_counts().get("print"), Some(&1));
}

fn mlp(seed: u64) -> Sequential {
    let mut rng = Generator::from_seed(seed);
    Sequential::new(vec![
        Box::new(Dense::new("hidden", 3, 8, Activation::Tanh, DType::F32, &mut rng).unwrap()),
        Box::new(Dense::new("out", 8, 1, Activation::Linear, DType::F32, &mut rng).unwrap()),
    ])
}

fn batch(k: u64) -> (Tensor, Tensor) {
    let mut rng = Generator::from_seed(100 + k);
    let x = rng.uniform(&[16, 3], -1.0, 1.0, DType::F32).unwrap();
    let y = ops::reduce_sum(&ops::sin(&x).unwrap(), 1, true).unwrap();
    (x, y)
}

/// One training step: the loss, its gradients by a tape, an Adam update.
fn train_step(
    model: &Sequential,
    opt: &RefCell<Adam>,
    x: &Tensor,
    y: &Tensor,
) -> gradtape::Result<Tensor> {
    let vars = model.trainable_variables();
    let tape = GradientTape::new();
    let loss = mean_squared_error(y, &model.call(x, true)?, Reduction::SumOverBatchSize)?;
    let grads = tape.gradient(&loss, &vars)?;
    opt.borrow_mut()
        .apply_gradients(grads.into_iter().zip(&vars))?;
    Ok(loss)
}

#[test]
fn a_compiled_training_step_leaves_the_variables_as_the_eager_one_bit_for_bit() {
    let (eager_model, eager_opt) = (mlp(3), RefCell::new(Adam::new(0.01).amsgrad(true)));
    let model = Rc::new(mlp(3));
    let opt = Rc::new(RefCell::new(Adam::new(0.01).amsgrad(true)));
    let step = function({
        let (model, opt) = (model.clone(), opt.clone());
        move |a: &[Tensor]| train_step(&model, &opt, &a[0], &a[1])
    });
    for k in 0..6 {
        let (x, y) = batch(k);
        let want = train_step(&eager_model, &eager_opt, &x, &y).unwrap();
        let got: Tensor = step.call(&[&x, &y]).unwrap();
        assert_eq!(bits(&got), bits(&want), "loss at step {k}");
    }
    assert_eq!(step.tracing_count(), 1);
    let (a, b) = (eager_model.variables(), model.variables());
    for (p, q) in a.iter().zip(&b) {
        assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
    }
    let (sa, sb) = (eager_opt.borrow().variables(), opt.borrow().variables());
    assert_eq!(sa.len(), sb.len());
    for (p, q) in sa.iter().zip(&sb) {
        assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
    }
    assert_eq!(
        opt.borrow()
            .iterations_variable()
            .value()
            .to_scalar::<i64>()
            .unwrap(),
        6
    );
    let counts = step.graphs()[0].op_counts();
    // every Adam slot and weight assigned once per call, with the step count
    assert_eq!(counts.get("assign"), Some(&(4 + 3 * 4 + 1)), "{counts:?}");
    // two layers forward, three products back (no gradient for the input is asked)
    assert_eq!(counts.get("matmul"), Some(&5), "{counts:?}");
}

/// `Function::cuda_graph` is about GPU launches: on the host the step runs as it would
/// without it (the same bits), and nothing is recorded or refused.
#[test]
fn cuda_graph_on_the_host_changes_nothing() {
    let (a_model, a_opt) = (mlp(4), Rc::new(RefCell::new(Adam::new(0.01))));
    let (b_model, b_opt) = (mlp(4), Rc::new(RefCell::new(Adam::new(0.01))));
    let (a_model, b_model) = (Rc::new(a_model), Rc::new(b_model));
    let plain = function({
        let (model, opt) = (a_model.clone(), a_opt.clone());
        move |a: &[Tensor]| train_step(&model, &opt, &a[0], &a[1])
    });
    let graphed = function({
        let (model, opt) = (b_model.clone(), b_opt.clone());
        move |a: &[Tensor]| train_step(&model, &opt, &a[0], &a[1])
    })
    .cuda_graph(true);
    for k in 0..4 {
        let (x, y) = batch(k);
        let want: Tensor = plain.call(&[&x, &y]).unwrap();
        let got: Tensor = graphed.call(&[&x, &y]).unwrap();
        assert_eq!(bits(&got), bits(&want), "loss at step {k}");
    }
    for (p, q) in a_model.variables().iter().zip(&b_model.variables()) {
        assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
    }
    let g = &graphed.graphs()[0];
    assert_eq!((g.cuda_graph_launches(), g.cuda_graph_refusal()), (0, None));
}

#[test]
fn tapes_and_accumulators_outside_see_a_compiled_call_as_its_primitives() {
    let w = Variable::new(vec64(&[0.5, -1.0, 2.0]));
    let body = {
        let w = w.clone();
        move |a: &[Tensor]| {
            let h = ops::tanh(&ops::multiply(&a[0], &w)?)?;
            ops::reduce_sum(&ops::multiply(&h, &a[1])?, Axes::All, false)
        }
    };
    let f = function(body.clone());
    let (x, y) = (vec64(&[0.3, 0.1, -0.7]), vec64(&[1.0, 2.0, 3.0]));
    for k in 0..3 {
        // k = 0 traces under the tape, later calls replay under it
        let x = ops::add(&x, &(k as f64)).unwrap();
        let grads = |call: &dyn Fn(&[Tensor]) -> gradtape::Result<Tensor>| {
            let tape = GradientTape::persistent();
            tape.watch(&x);
            let out = call(&[x.clone(), y.clone()]).unwrap();
            let [gx] = tape.gradient(&out, [&x]).unwrap();
            let [gw] = tape.gradient(&out, [&w]).unwrap();
            (bits(&gx.unwrap()), bits(&gw.unwrap()))
        };
        let compiled = grads(&|a| f.call(&[&a[0], &a[1]]));
        assert_eq!(compiled, grads(&|a| body(a)), "call {k}");
        // forward mode: the JVP through the compiled call
        let t = vec64(&[1.0, 0.0, -1.0]);
        let jvp = |call: &dyn Fn(&[Tensor]) -> gradtape::Result<Tensor>| {
            let acc = ForwardAccumulator::new([&x], std::slice::from_ref(&t)).unwrap();
            let out = call(&[x.clone(), y.clone()]).unwrap();
            bits(&acc.jvp(&out).unwrap().unwrap())
        };
        assert_eq!(
            jvp(&|a| f.call(&[&a[0], &a[1]])),
            jvp(&|a| body(a)),
            "call {k}"
        );
    }
    assert_eq!(f.tracing_count(), 1);
}

#[test]
fn tapes_jacobians_vmap_and_custom_gradients_inside_a_function() {
    let body = |a: &[Tensor]| -> gradtape::Result<(Tensor, Tensor, Tensor)> {
        let x = &a[0];
        // a tape inside: second derivative by nested tapes
        let outer = GradientTape::new();
        outer.watch(x);
        let inner = GradientTape::new();
        inner.watch(x);
        let y = ops::reduce_sum(
            &ops::multiply(&ops::sin(x)?, &ops::square(x)?)?,
            Axes::All,
            false,
        )?;
        let [g] = inner.gradient(&y, [x])?;
        let g = g.unwrap();
        let gg = ops::reduce_sum(&g, Axes::All, false)?;
        let [h] = outer.gradient(&gg, [x])?;
        // a jacobian, and vmap of a custom gradient
        let jt = GradientTape::persistent();
        jt.watch(x);
        let z = ops::tanh(&ops::multiply(x, &ops::reduce_sum(x, Axes::All, false)?)?)?;
        let [j] = jt.jacobian(&z, [x])?;
        let clip = |a: &[Tensor]| {
            let out = custom_gradient(&[&a[0]], |xs| {
                let grad = |dy: &[Tensor], _: &[Variable]| {
                    Ok(vec![Some(ops::clip_by_value(&dy[0], &-0.5, &0.5)?)])
                };
                Ok((vec![ops::square(&xs[0])?], grad))
            })?;
            Ok(vec![out[0].clone()])
        };
        let v = vmap(clip).call(&[ops::reshape(x, &[3, 1])?])?;
        Ok((h.unwrap(), j.unwrap(), v[0].clone()))
    };
    let f = function(body);
    for k in 0..3 {
        let x = vec64(&[0.2 + k as f64, -0.4, 1.1 * k as f64]);
        let (a, b, c): (Tensor, Tensor, Tensor) = f.call(&[&x]).unwrap();
        let (a2, b2, c2) = body(std::slice::from_ref(&x)).unwrap();
        assert_eq!(
            (bits(&a), bits(&b), bits(&c)),
            (bits(&a2), bits(&b2), bits(&c2)),
            "call {k}"
        );
    }
    assert_eq!(f.tracing_count(), 1);
}

#[test]
fn a_custom_gradient_inside_a_function_keeps_its_rule_for_a_tape_outside() {
    let body = |a: &[Tensor]| {
        let out = custom_gradient(&[&a[0]], |xs| {
            let grad = |dy: &[Tensor], _: &[Variable]| {
                Ok(vec![Some(ops::clip_by_value(&dy[0], &-1.0, &1.0)?)])
            };
            Ok((vec![ops::multiply(&xs[0], &10.0)?], grad))
        })?;
        Ok(out[0].clone())
    };
    let f = function(body);
    let x = vec64(&[1.0, 2.0]);
    let _: Tensor = f.call(&[&x]).unwrap(); // traced with no tape
    let tape = GradientTape::new();
    tape.watch(&x);
    let y: Tensor = f.call(&[&x]).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), vec![1.0, 1.0]); // clipped, not 10
}

/// A compiled call inside a custom gradient's forward: its variable read is credited to the
/// custom gradient as an eager read would be (the replay reads through the variable while a
/// tape or a custom gradient's forward is there, not straight from its storage as it does
/// when nothing watches).
#[test]
fn a_compiled_call_in_a_custom_gradients_forward_credits_its_variable_reads() {
    let w = Variable::new(vec64(&[2.0]));
    let f = Rc::new(function({
        let w = w.clone();
        move |a: &[Tensor]| ops::multiply(&a[0], &w)
    }));
    let x = vec64(&[3.0]);
    let _: Tensor = f.call(&[&x]).unwrap(); // traced with nothing watching
    let tape = GradientTape::new();
    let y = custom_gradient(&[&x], |xs| {
        let y: Tensor = f.call(&[&xs[0]])?;
        let grad = |dy: &[Tensor], vars: &[Variable]| {
            assert_eq!(vars.len(), 1, "the read of w is credited");
            Ok(vec![
                Some(dy[0].clone()),
                Some(ops::multiply(&dy[0], &7.0)?),
            ])
        };
        Ok((vec![y], grad))
    })
    .unwrap();
    let [gw] = tape.gradient(&y[0], [&w]).unwrap();
    assert_eq!(gw.unwrap().to_vec::<f64>().unwrap(), vec![7.0]);
}

#[test]
fn functions_call_functions() {
    let inner = Rc::new(function(|a: &[Tensor]| ops::exp(&ops::negative(&a[0])?)));
    let outer = function({
        let inner = inner.clone();
        move |a: &[Tensor]| {
            let e: Tensor = inner.call(&[&a[0]])?;
            ops::multiply(&e, &a[0])
        }
    });
    let eager =
        |x: &Tensor| ops::multiply(&ops::exp(&ops::negative(x).unwrap()).unwrap(), x).unwrap();
    // the inner traced inside the outer's trace, then replayed inside it, then on its own
    for k in 0..3 {
        let x = vec64(&[k as f64, 0.5]);
        let y: Tensor = outer.call(&[&x]).unwrap();
        assert_eq!(bits(&y), bits(&eager(&x)));
    }
    let z: Tensor = inner.call(&[&vec64(&[4.0, 5.0])]).unwrap();
    assert_eq!(bits(&z), bits(&ops::exp(&vec64(&[-4.0, -5.0])).unwrap()));
    assert_eq!((outer.tracing_count(), inner.tracing_count()), (1, 1));
    assert_eq!(outer.graphs()[0].op_counts().get("exp"), Some(&1));
}

#[test]
fn two_threads_call_one_function() {
    let w = Variable::new(vec64(&[1.0, 2.0, 3.0]));
    let f = Arc::new(function({
        let w = w.clone();
        move |a: &[Tensor]| ops::reduce_sum(&ops::multiply(&ops::sin(&a[0])?, &w)?, 0, false)
    }));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|k| {
                        let x = vec64(&[t as f64, k as f64, 0.5]);
                        let y: Tensor = f.call(&[&x]).unwrap();
                        (x.to_f64_vec().unwrap(), y.item().unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (x, y) in h.join().unwrap() {
            let want = x
                .iter()
                .zip([1.0, 2.0, 3.0])
                .map(|(x, w)| x.sin() * w)
                .sum::<f64>();
            assert!((y - want).abs() < 1e-12, "{x:?}: {y} vs {want}");
        }
    }
    assert!((1..=2).contains(&f.tracing_count()));
}

/// Inside `vmap`, a graph traced outside for the example's signature replays with each
/// primitive batched (JAX's `vmap(jit(f))`), also under a tape inside the `vmap` (per-example
/// gradients through the compiled call); with no graph yet, the closure runs as written.
#[test]
fn a_function_inside_vmap_replays_its_graph_batched() {
    let w = Variable::new(vec64(&[0.5, -1.0, 2.0]));
    let body = {
        let w = w.clone();
        move |a: &[Tensor]| -> gradtape::Result<Tensor> {
            ops::reduce_sum(&ops::multiply(&ops::tanh(&a[0])?, &w)?, Axes::All, false)
        }
    };
    let f = Rc::new(function(body.clone()));
    let batch = Tensor::from_vec((0..12).map(|v| v as f64 * 0.1 - 0.5).collect(), &[4, 3]).unwrap();
    type Call = Rc<dyn Fn(&Tensor) -> gradtape::Result<Tensor>>;
    let per_example_grads = |call: Call| {
        vmap(move |a: &[Tensor]| {
            let tape = GradientTape::new();
            tape.watch(&a[0]);
            let y = call(&a[0])?;
            let [g] = tape.gradient(&y, [&a[0]])?;
            Ok(vec![y, g.unwrap()])
        })
        .call(std::slice::from_ref(&batch))
        .unwrap()
    };
    let eager = per_example_grads(Rc::new({
        let body = body.clone();
        move |x| body(std::slice::from_ref(x))
    }));
    // no graph yet: inside vmap the closure runs as written, nothing is traced
    let untraced = per_example_grads(Rc::new({
        let f = f.clone();
        move |x| f.call(&[x])
    }));
    assert_eq!(f.tracing_count(), 0);
    let _: Tensor = f.call(&[&vec64(&[0.0; 3])]).unwrap(); // traced outside, for one example
    let replayed = per_example_grads(Rc::new({
        let f = f.clone();
        move |x| f.call(&[x])
    }));
    assert_eq!(f.tracing_count(), 1);
    for (name, got) in [("untraced", untraced), ("replayed", replayed)] {
        for (g, e) in got.iter().zip(&eager) {
            assert_eq!(bits(g), bits(e), "{name}");
        }
    }
}

#[test]
fn a_tensor_of_the_enclosing_vmap_captured_while_tracing_is_an_error() {
    let v = vmap(|a: &[Tensor]| {
        let x = a[0].clone();
        let f = function(move |_: &[Tensor]| ops::sin(&x));
        Ok(vec![f.call::<Tensor>(&[])?])
    });
    let e = v.call(&[vec64(&[1.0, 2.0])]).unwrap_err();
    assert!(matches!(e, Error::Trace { op: "sin", .. }), "{e}");
    assert!(
        e.to_string()
            .contains("Pass the tensor to the function as an argument"),
        "{e}"
    );
    // a vmap inside the function, over a tensor it captured, is its own: traced and replayed
    let data = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let inner = {
        let data = data.clone();
        move |a: &[Tensor]| -> gradtape::Result<Tensor> {
            let rows = vmap(|r: &[Tensor]| Ok(vec![ops::reduce_sum(&ops::sin(&r[0])?, 0, false)?]))
                .call(std::slice::from_ref(&data))?;
            ops::multiply(&rows[0], &a[0])
        }
    };
    let g = function(inner.clone());
    for k in 0..2 {
        let s = vec64(&[k as f64, 1.0]);
        let got: Tensor = g.call(&[&s]).unwrap();
        assert_eq!(bits(&got), bits(&inner(std::slice::from_ref(&s)).unwrap()));
    }
    assert_eq!(g.tracing_count(), 1);
}

#[test]
fn a_graph_prints_as_a_listing_and_as_dot() {
    let w = Variable::with_options(
        vec64(&[1.0, 2.0]),
        gradtape::VariableOptions {
            name: Some("w".into()),
            trainable: true,
        },
    );
    let f = function({
        let w = w.clone();
        move |a: &[Tensor]| {
            let y = ops::add(&ops::multiply(&a[0], &w)?, &1.0)?;
            w.assign_sub(&y)?;
            Ok(y)
        }
    })
    .with_name("step");
    let _: Tensor = f.call(&[&vec64(&[3.0, 4.0])]).unwrap();
    let g = &f.graphs()[0];
    let listing = g.to_string();
    assert!(
        listing.starts_with("graph step(arg0: float64[2]) {"),
        "{listing}"
    );
    for line in [
        "%0 = arg0 : float64[2]",
        "read_variable 'w' : float64[2]",
        "= multiply(%",
        "= constant 1.0 : float64[]",
        "assign 'w'(%",
        "return (%",
    ] {
        assert!(listing.contains(line), "{line:?} not in\n{listing}");
    }
    let counts = g.op_counts();
    assert_eq!(counts.get("read_variable"), Some(&2)); // the read, and the update's
    assert_eq!(
        (counts.get("assign"), counts.get("subtract")),
        (Some(&1), Some(&1))
    );
    let dot = g.to_dot();
    assert!(
        dot.starts_with("digraph \"step\" {") && dot.ends_with("}\n"),
        "{dot}"
    );
    // an edge per input the listing names, and one per output: every `%` in the listing
    // but those that define a value
    let refs = listing.matches('%').count();
    let defined = listing
        .lines()
        .filter(|l| l.trim_start().starts_with('%'))
        .count();
    assert!(
        dot.contains("\"n0\" -> \"n") && dot.contains(" -> \"out0\";"),
        "{dot}"
    );
    assert_eq!(
        dot.matches(" -> ").count(),
        refs - defined,
        "{listing}\n{dot}"
    );
}

/// Every primitive of one or two float64 tensors and no parameters.
fn float_primitives() -> Vec<&'static gradtape::ops::Primitive> {
    gradtape::ops::primitives()
        .filter(|p| matches!(p.arity(), Some(1 | 2)))
        .filter(|p| {
            let x = vec64(&[0.5]);
            let args = vec![&x; p.arity().unwrap()];
            p.apply(&args, &gradtape::ops::Params::NONE)
                .is_ok_and(|y| y.dtype() == DType::F64)
        })
        .collect()
}

/// Random programs from the op table (every float primitive with no parameters), eager
/// against compiled on other arguments: the same bits.
#[test]
fn random_programs_compiled_equal_eager() {
    let prims = float_primitives();
    assert!(prims.len() > 25, "{}", prims.len());
    let mut rng = Generator::from_seed(22);
    for program in 0..40 {
        let steps: Vec<(usize, usize, usize)> = (0..8)
            .map(|_| {
                let r = rng.next_u64() as usize;
                (r % prims.len(), (r >> 16) % 64, (r >> 32) % 64)
            })
            .collect();
        let run = {
            let (prims, steps) = (prims.clone(), steps.clone());
            move |a: &[Tensor]| -> gradtape::Result<Tensor> {
                let mut vals = vec![a[0].clone(), a[1].clone()];
                for &(p, i, j) in &steps {
                    let (x, y) = (&vals[i % vals.len()], &vals[j % vals.len()]);
                    let args: Vec<&Tensor> = [x, y][..prims[p].arity().unwrap()].to_vec();
                    let v = prims[p].apply(&args, &gradtape::ops::Params::NONE)?;
                    vals.push(v);
                }
                Ok(vals.pop().unwrap())
            }
        };
        let f = function(run.clone());
        for call in 0..3 {
            let x = rng.uniform(&[4], -2.0, 2.0, DType::F64).unwrap();
            let y = rng.uniform(&[4], 0.1, 2.0, DType::F64).unwrap();
            let want = run(&[x.clone(), y.clone()]).unwrap();
            let got: Tensor = f.call(&[&x, &y]).unwrap();
            assert_eq!(
                bits(&got),
                bits(&want),
                "program {program} call {call}: {steps:?}"
            );
        }
        assert_eq!(f.tracing_count(), 1);
    }
}

// ---- slice 2: the graph passes, each shown to happen and to keep the bits ----

fn counts(g: &gradtape::Graph, op: &str) -> usize {
    g.op_counts().get(op).copied().unwrap_or(0)
}

fn changed(g: &gradtape::Graph, pass: &str) -> usize {
    g.passes().iter().find(|r| r.pass == pass).unwrap().changed
}

/// Forward over reverse: the HVP along `v` of a loss of `x` and a variable `w`. The tape also
/// differentiates `w`, which the HVP does not use: dead code the passes drop (XLA drops it for
/// JAX too).
#[test]
fn dead_code_goes_and_the_hvp_keeps_its_bits() {
    let w = Variable::new(
        Tensor::from_vec(
            vec![0.5f64, -1.0, 0.25, 1.5, 0.75, -0.5, -0.25, 1.0, 2.0],
            &[3, 3],
        )
        .unwrap(),
    );
    let body = {
        let w = w.clone();
        move |a: &[Tensor]| -> gradtape::Result<Tensor> {
            let (x, v) = (&a[0], &a[1]);
            let acc = ForwardAccumulator::new([x], std::slice::from_ref(v))?;
            let tape = GradientTape::new();
            tape.watch(x);
            let y = ops::tanh(&ops::matmul(&w, &ops::reshape(x, &[3, 1])?)?)?;
            let loss = ops::reduce_sum(&ops::square(&y)?, Axes::All, false)?;
            let [gx, _gw] = tape.gradient(
                &loss,
                [x as &dyn gradtape::Source, &w as &dyn gradtape::Source],
            )?;
            Ok(acc.jvp(&gx.unwrap())?.unwrap())
        }
    };
    let f = function(body.clone());
    let plain = function(body.clone()).optimize(false);
    for k in 0..3 {
        let x = vec64(&[0.3 * k as f64, -0.2, 0.9]);
        let v = vec64(&[1.0, 0.5, -1.0]);
        let want = body(&[x.clone(), v.clone()]).unwrap();
        let got: Tensor = f.call(&[&x, &v]).unwrap();
        let unoptimized: Tensor = plain.call(&[&x, &v]).unwrap();
        assert_eq!(bits(&got), bits(&want), "call {k}");
        assert_eq!(bits(&unoptimized), bits(&want), "call {k}");
    }
    let (traced, run) = (&f.traced_graphs()[0], &f.graphs()[0]);
    assert!(changed(run, "dead code") > 0, "{:?}", run.passes());
    // the products for w's gradient, and their tangents, are gone
    assert!(
        counts(run, "matmul") < counts(traced, "matmul"),
        "{:?} vs {:?}",
        run.op_counts(),
        traced.op_counts()
    );
    assert_eq!(plain.graphs()[0].len(), plain.traced_graphs()[0].len());
}

#[test]
fn common_subexpressions_are_computed_once() {
    let w = Variable::new(vec64(&[2.0, 3.0]));
    let body = {
        let w = w.clone();
        move |a: &[Tensor]| -> gradtape::Result<Tensor> {
            let x = &a[0];
            let p = ops::multiply(&ops::sin(x)?, &ops::exp(x)?)?;
            let q = ops::multiply(&ops::sin(x)?, &ops::exp(x)?)?;
            // two reads of w with no assign between are one; after an assign, a new one
            let r = ops::add(&ops::multiply(&w, &p)?, &ops::multiply(&w, &q)?)?;
            w.assign(&ops::add(&w, &1.0)?)?;
            ops::add(&r, &w)
        }
    };
    let (w0, f) = (w.value(), function(body.clone()));
    let mut eager_w = vec![];
    for k in 0..3 {
        let x = vec64(&[0.1 * k as f64, 1.0]);
        let want = body(std::slice::from_ref(&x)).unwrap();
        eager_w.push(bits(&w.value()));
        w.assign(&w0).unwrap(); // the compiled call starts from the same value
        let got: Tensor = f.call(&[&x]).unwrap();
        assert_eq!(bits(&got), bits(&want), "call {k}");
        assert_eq!(bits(&w.value()), eager_w[k], "call {k}");
        w.assign(&w0).unwrap();
    }
    let (traced, run) = (&f.traced_graphs()[0], &f.graphs()[0]);
    assert_eq!((counts(traced, "sin"), counts(traced, "exp")), (2, 2));
    assert_eq!((counts(run, "sin"), counts(run, "exp")), (1, 1), "{run}");
    // w * p and w * q are one product once p and q are
    assert_eq!(counts(run, "multiply"), 2, "{run}");
    assert_eq!(counts(traced, "read_variable"), 4, "{traced}");
    assert_eq!(counts(run, "read_variable"), 2, "{run}");
    assert!(
        changed(run, "common subexpressions") >= 5,
        "{:?}",
        run.passes()
    );
}

/// A tape's seed of ones, broadcast through `reduce_sum`'s gradient, multiplies the local
/// derivatives: the identities pass drops that product (at 200 points the ones are a folded
/// constant, at 100,000 a broadcast), bit for bit. A product with ones that broadcasts its
/// other operand, and one with ones captured from outside (a tape there may watch them),
/// stay.
#[test]
fn products_with_the_tapes_ones_go_and_the_bits_stay() {
    let captured = Tensor::ones(&[3], DType::F64).unwrap();
    let body = {
        let captured = captured.clone();
        move |a: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
            let tape = GradientTape::new();
            tape.watch(&a[0]);
            let loss = ops::reduce_sum(&ops::square(&ops::sin(&a[0])?)?, Axes::All, false)?;
            let [g] = tape.gradient(&loss, [&a[0]])?;
            let made = Tensor::ones(&[3], DType::F64)?;
            let kept = ops::multiply(&ops::multiply(&a[1], &made)?, &captured)?;
            Ok(vec![g.unwrap(), kept])
        }
    };
    for n in [200, 100_000] {
        let f = function(body.clone());
        for call in 0..3 {
            let x: Vec<f64> = (0..n).map(|i| 0.01 * (i * (call + 1)) as f64).collect();
            let x = Tensor::from_vec(x, &[n]).unwrap();
            let y = vec64(&[call as f64 - 0.5]);
            let got: Vec<Tensor> = f.call(&[&x, &y]).unwrap();
            let want = body(&[x, y]).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(bits(g), bits(w), "n {n} call {call}");
            }
        }
        let (traced, run) = (&f.traced_graphs()[0], &f.graphs()[0]);
        assert_eq!(
            changed(run, "identities"),
            1,
            "n {n}: {:?}\n{run}",
            run.passes()
        );
        assert_eq!(
            counts(traced, "multiply") - counts(run, "multiply"),
            1,
            "n {n}\n{run}"
        );
        assert_eq!(counts(run, "broadcast_to"), 0, "n {n}\n{run}");
    }
}

#[test]
fn constants_made_inside_fold_and_captured_ones_stay_inputs() {
    let k = vec64(&[0.5, 2.0]); // captured: a tape outside may watch it
    let body = {
        let k = k.clone();
        move |a: &[Tensor]| -> gradtape::Result<Tensor> {
            let c = ops::exp(&Tensor::scalar(1.0f64))?; // made inside: folds
            let d = ops::multiply(&c, &2.0)?;
            ops::multiply(&ops::multiply(&a[0], &d)?, &ops::sin(&k)?)
        }
    };
    let f = function(body.clone());
    for call in 0..3 {
        let x = vec64(&[call as f64, -1.5]);
        let tape = GradientTape::persistent();
        tape.watch(&k);
        let got: Tensor = f.call(&[&x]).unwrap();
        let [g] = tape.gradient(&got, [&k]).unwrap();
        let want = body(std::slice::from_ref(&x)).unwrap();
        let [g_want] = tape.gradient(&want, [&k]).unwrap();
        assert_eq!(bits(&got), bits(&want), "call {call}");
        // the gradient with respect to the captured tensor flows through the compiled call
        assert_eq!(bits(&g.unwrap()), bits(&g_want.unwrap()), "call {call}");
    }
    let (traced, run) = (&f.traced_graphs()[0], &f.graphs()[0]);
    assert_eq!(changed(run, "constant folding"), 2, "{:?}", run.passes());
    assert_eq!((counts(traced, "exp"), counts(run, "exp")), (1, 0), "{run}");
    assert_eq!(counts(run, "sin"), 1, "{run}"); // on the captured tensor: kept
    assert_eq!(counts(run, "multiply"), 2, "{run}");
}

/// The library's own checks on values (sparse labels in range, whole-number `Embedding` ids)
/// are check nodes of the graph: they hold at every call, as TensorFlow's assert ops do in a
/// graph (before, a label out of range gave a silently wrong loss once compiled: its one-hot
/// row is zeros).
#[test]
fn value_checks_hold_at_every_call() {
    let logits = Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.0, 1.0, 3.0], &[2, 3]).unwrap();
    let body = {
        let logits = logits.clone();
        move |a: &[Tensor]| {
            gradtape::losses::sparse_categorical_crossentropy(
                &a[0],
                &logits,
                true,
                gradtape::losses::Reduction::Sum,
            )
        }
    };
    let f = function(body.clone());
    for labels in [[0i64, 2], [1, 1]] {
        let l = Tensor::from_vec(labels.to_vec(), &[2]).unwrap();
        let got: Tensor = f.call(&[&l]).unwrap();
        assert_eq!(bits(&got), bits(&body(std::slice::from_ref(&l)).unwrap()));
    }
    assert_eq!(f.graphs()[0].op_counts().get("check"), Some(&1));
    let bad = Tensor::from_vec(vec![0i64, 3], &[2]).unwrap();
    let eager = body(std::slice::from_ref(&bad)).unwrap_err();
    let compiled = f.call::<Tensor>(&[&bad]).unwrap_err();
    assert_eq!(compiled, eager);
    assert!(
        compiled.to_string().contains("label 3 is not in [0, 3)"),
        "{compiled}"
    );
    // Embedding's ids given as floats must be whole numbers, at every call
    let mut rng = Generator::from_seed(0);
    let emb = gradtape::layers::Embedding::new("emb", 5, 2, DType::F64, &mut rng).unwrap();
    let lookup = function(move |a: &[Tensor]| emb.call(&a[0], false));
    let _: Tensor = lookup.call(&[&vec64(&[1.0, 4.0])]).unwrap();
    let e = lookup.call::<Tensor>(&[&vec64(&[1.5, 4.0])]).unwrap_err();
    assert!(e.to_string().contains("fractional"), "{e}");
}

// ---- slice 3: fusion groups, each chain one pass, with the bits kept ----

/// Equal bits, or both NaN (a NaN's payload may depend on which operand a vector unit saw
/// first; every other value must match exactly).
fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
}

/// The seed's step: its elementwise chains, the loss and both gradients' reductions run as
/// one pass over the points, and the scalar updates as another; the listing and the DOT mark
/// the groups, and every call gives the eager bits.
#[test]
fn the_seeds_step_runs_as_fusion_groups_with_the_eager_bits() {
    let mut rng = Generator::from_seed(3);
    let x = rng.uniform(&[200], 0.0, 1.0, DType::F32).unwrap();
    let y = rng.uniform(&[200], 0.0, 1.0, DType::F32).unwrap();
    let step = |a: &Variable, b: &Variable| -> gradtape::Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        let pred = ops::add(a, &ops::multiply(b, &x)?)?;
        let loss = ops::reduce_sum(&ops::square(&ops::subtract(&y, &pred)?)?, Axes::All, false)?;
        let [da, db] = tape.gradient(&loss, [a, b])?;
        a.assign_sub(&ops::multiply(&da.unwrap(), &1e-3)?)?;
        b.assign_sub(&ops::multiply(&db.unwrap(), &1e-3)?)?;
        Ok(vec![loss])
    };
    let (ea, eb) = (Variable::new(0.0), Variable::new(0.0));
    let (ca, cb) = (Variable::new(0.0), Variable::new(0.0));
    let f = {
        let (ca, cb) = (ca.clone(), cb.clone());
        function(move |_: &[Tensor]| step(&ca, &cb))
    };
    for call in 0..4 {
        let want = step(&ea, &eb).unwrap();
        let got: Vec<Tensor> = f.call(&[]).unwrap();
        assert_eq!(bits(&got[0]), bits(&want[0]), "loss, call {call}");
        assert_eq!(bits(&ca.value()), bits(&ea.value()), "a, call {call}");
        assert_eq!(bits(&cb.value()), bits(&eb.value()), "b, call {call}");
    }
    let g = &f.graphs()[0];
    assert!(g.fusion_groups() >= 2, "{g}");
    assert!(changed(g, "fusion") >= 10, "{:?}\n{g}", g.passes());
    // the loss and the two gradient sums: reductions folded into the pass over the points
    let listing = g.to_string();
    let folded = listing
        .lines()
        .filter(|l| l.contains("reduce_sum") && l.contains("[fusion"))
        .count();
    assert_eq!(folded, 3, "{listing}");
    assert!(
        g.to_dot().contains("subgraph \"cluster_fusion_0\""),
        "{}",
        g.to_dot()
    );
    let cluster = g.to_dot_cluster("step_");
    assert!(
        cluster.starts_with("  subgraph \"cluster_step_\" {")
            && cluster.contains("\"step_n3\" -> \"step_n4\"")
            && cluster.contains("subgraph \"cluster_step_fusion_0\""),
        "{cluster}"
    );
    // without the passes, nothing is fused
    let plain = function(|a: &[Tensor]| ops::exp(&ops::multiply(&a[0], &2.0)?)).optimize(false);
    let _: Tensor = plain.call(&[&x]).unwrap();
    assert_eq!(plain.graphs()[0].fusion_groups(), 0);
}

/// Random elementwise programs with whole-tensor sums in between (whose scalars feed later
/// ops: a group may not read its own sum), every value returned: compiled equals eager at
/// sizes from one element to past the parallel threshold, where the sums split across
/// threads exactly as the eager reduction splits them.
#[test]
fn random_fused_programs_equal_eager_at_every_size() {
    let prims = float_primitives();
    let mut rng = Generator::from_seed(33);
    let sizes = [1usize, 5, 1024, 3001, 140_001];
    let mut fused = 0;
    for program in 0..20 {
        let n = sizes[program % sizes.len()];
        let steps: Vec<(usize, usize, usize)> = (0..10)
            .map(|_| {
                let r = rng.next_u64() as usize;
                (r % (prims.len() + 3), (r >> 16) % 64, (r >> 32) % 64)
            })
            .collect();
        let run = {
            let (prims, steps) = (prims.clone(), steps.clone());
            move |a: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
                let mut vals = a.to_vec();
                for &(p, i, j) in &steps {
                    let (x, y) = (&vals[i % vals.len()], &vals[j % vals.len()]);
                    let v = match prims.get(p) {
                        Some(prim) => {
                            let args: Vec<&Tensor> = [x, y][..prim.arity().unwrap()].to_vec();
                            prim.apply(&args, &gradtape::ops::Params::NONE)?
                        }
                        // a sum of all elements, one time in a dozen or so
                        None => ops::reduce_sum(x, Axes::All, false)?,
                    };
                    vals.push(v);
                }
                Ok(vals)
            }
        };
        let f = function(run.clone());
        for call in 0..2 {
            let x = rng.uniform(&[n], -2.0, 2.0, DType::F64).unwrap();
            let y = rng.uniform(&[n], 0.1, 2.0, DType::F64).unwrap();
            let s = rng.uniform(&[], 0.5, 1.5, DType::F64).unwrap();
            let want = run(&[x.clone(), y.clone(), s.clone()]).unwrap();
            let got: Vec<Tensor> = f.call(&[&x, &y, &s]).unwrap();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    same_bits(g, w),
                    "program {program} (n = {n}) call {call} value {k}: {steps:?}\n{}",
                    f.graphs()[0]
                );
            }
        }
        fused += f.graphs()[0].fusion_groups();
    }
    assert!(fused >= 10, "{fused}");
}

/// A group whose operand is laid out with strides (a transposed argument) runs its ops one
/// by one, with the same bits; one traced on the contiguous layout of the same shape is
/// reused.
#[test]
fn a_strided_argument_runs_the_group_op_by_op() {
    let body = |a: &[Tensor]| -> gradtape::Result<Tensor> {
        let t = ops::tanh(&ops::multiply(&a[0], &3.0)?)?;
        ops::reduce_sum(&ops::add(&t, &a[0])?, Axes::All, false)
    };
    let f = function(body);
    let m = Tensor::from_vec((0..12).map(|i| i as f64 * 0.1).collect(), &[4, 3]).unwrap();
    let _: Tensor = f.call(&[&m]).unwrap();
    let strided = ops::transpose(
        &Tensor::from_vec((0..12).map(|i| i as f64 * -0.2).collect(), &[3, 4]).unwrap(),
        None,
    )
    .unwrap();
    let got: Tensor = f.call(&[&strided]).unwrap();
    assert_eq!(
        bits(&got),
        bits(&body(std::slice::from_ref(&strided)).unwrap())
    );
    assert_eq!(f.tracing_count(), 1);
    assert_eq!(f.graphs()[0].fusion_groups(), 1, "{}", f.graphs()[0]);
}

/// A group never moves across a variable's assign: the ops before it read the old value, the
/// ops after it the new one, and a print between them still prints once per call in order.
#[test]
fn fusion_keeps_reads_assigns_and_prints_in_order() {
    let v = Variable::new(Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).unwrap());
    let out = Arc::new(Mutex::new(String::new()));
    let body = {
        let (v, out) = (v.clone(), out.clone());
        move |a: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
            let before = ops::multiply(&ops::add(&v, &a[0])?, &2.0)?;
            v.assign(&ops::exp(&ops::negative(&before)?)?)?;
            let sink = out.clone();
            print_with("after", &[&before], move |s: &str| {
                sink.lock().unwrap().push_str(s)
            })?;
            let after = ops::subtract(&ops::multiply(&v, &a[0])?, &before)?;
            Ok(vec![before, after])
        }
    };
    let f = function(body.clone());
    let w = Variable::new(Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).unwrap());
    let eager = {
        let w = w.clone();
        move |a: &Tensor| -> Vec<Tensor> {
            let before = ops::multiply(&ops::add(&w, a).unwrap(), &2.0).unwrap();
            w.assign(&ops::exp(&ops::negative(&before).unwrap()).unwrap())
                .unwrap();
            let after = ops::subtract(&ops::multiply(&w, a).unwrap(), &before).unwrap();
            vec![before, after]
        }
    };
    for call in 0..3 {
        let x = vec64(&[0.5 * call as f64, -1.0, 0.25]);
        let got: Vec<Tensor> = f.call(std::slice::from_ref(&&x)).unwrap();
        let want = eager(&x);
        assert_eq!(bits(&got[0]), bits(&want[0]), "call {call}");
        assert_eq!(bits(&got[1]), bits(&want[1]), "call {call}");
        assert_eq!(bits(&v.value()), bits(&w.value()), "call {call}");
    }
    assert_eq!(out.lock().unwrap().matches("after").count(), 3);
    assert!(f.graphs()[0].fusion_groups() >= 2, "{}", f.graphs()[0]);
}

/// In-place updates: a compiled Adam step writes a weight and its moments into the buffers the
/// variables already hold (their addresses stay the same from call to call), with the eager
/// bits; a value a user keeps is never overwritten (that call gets a new buffer). Only groups
/// of a block or more (1,024 elements) write in place: the 32 x 64 kernel here, not the biases.
#[test]
fn a_compiled_step_updates_variables_in_place_unless_a_value_is_held() {
    let wide = |seed: u64| {
        let mut rng = Generator::from_seed(seed);
        Sequential::new(vec![
            Box::new(Dense::new("hidden", 32, 64, Activation::Tanh, DType::F32, &mut rng).unwrap()),
            Box::new(Dense::new("out", 64, 1, Activation::Linear, DType::F32, &mut rng).unwrap()),
        ])
    };
    let data = |k: u64| {
        let mut rng = Generator::from_seed(200 + k);
        let x = rng.uniform(&[16, 32], -1.0, 1.0, DType::F32).unwrap();
        let y = ops::reduce_sum(&ops::sin(&x).unwrap(), 1, true).unwrap();
        (x, y)
    };
    let (eager_model, eager_opt) = (wide(5), RefCell::new(Adam::new(0.01)));
    let model = Rc::new(wide(5));
    let opt = Rc::new(RefCell::new(Adam::new(0.01)));
    let step = function({
        let (model, opt) = (model.clone(), opt.clone());
        move |a: &[Tensor]| train_step(&model, &opt, &a[0], &a[1])
    });
    let run = |k: u64| {
        let (x, y) = data(k);
        let want = train_step(&eager_model, &eager_opt, &x, &y).unwrap();
        let got: Tensor = step.call(&[&x, &y]).unwrap();
        assert_eq!(bits(&got), bits(&want), "loss at step {k}");
    };
    // the first calls may find the variables' first values shared (with the initializer's
    // tensors, with the optimizer's slots made as zeros)
    run(0);
    run(1);
    let vars = model.variables();
    let slots = opt.borrow().variables();
    let address = |v: &Variable| v.value().data_ptr().unwrap();
    let big = |v: &&Variable| v.shape().iter().product::<usize>() >= 1024;
    let before: Vec<usize> = vars.iter().chain(&slots).filter(big).map(address).collect();
    run(2);
    let after: Vec<usize> = vars.iter().chain(&slots).filter(big).map(address).collect();
    // the kernel and both of its moments
    assert_eq!(before.len(), 3);
    assert_eq!(before, after);
    let g = &step.graphs()[0];
    // and a value of the backward pass that dies at a group (the hidden layer's 16 x 64)
    assert!(changed(g, "in place") >= 3, "{:?}", g.passes());
    assert!(g.to_string().contains("in place]"), "{g}");
    // a value kept across the call: not overwritten, and the variable moves to a new buffer
    let kernel = &vars[0];
    assert_eq!(kernel.shape(), &[32, 64]);
    let held = kernel.value();
    let held_bits = bits(&held);
    run(3);
    assert_eq!(bits(&held), held_bits);
    assert_ne!(address(kernel), held.data_ptr().unwrap());
    drop(held);
    run(4);
    for (p, q) in eager_model.variables().iter().zip(&vars) {
        assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
    }
    for (p, q) in eager_opt.borrow().variables().iter().zip(&slots) {
        assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
    }
}

/// A value that dies at a group (here a row sum, not fused) lends its buffer to the group's
/// output, and the result keeps the eager bits; a value returned or captured is not lent.
#[test]
fn a_buffer_that_dies_at_a_group_is_written_in_place() {
    let body = |a: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
        let rows = ops::reduce_sum(&a[0], 1, false)?;
        let out = ops::add(&ops::multiply(&ops::exp(&rows)?, &0.5)?, &rows)?;
        let kept = ops::reduce_sum(&a[0], 0, false)?;
        let other = ops::sqrt(&ops::add(&ops::square(&kept)?, &1.0)?)?;
        Ok(vec![out, other, kept])
    };
    let f = function(body);
    for call in 0..3 {
        let x = Generator::from_seed(call)
            .uniform(&[3000, 4], -1.0, 1.0, DType::F32)
            .unwrap();
        let got: Vec<Tensor> = f.call(&[&x]).unwrap();
        let want = body(std::slice::from_ref(&x)).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(bits(g), bits(w), "call {call}");
        }
    }
    let g = &f.graphs()[0];
    let listing = g.to_string();
    // `out` reuses the row sums' buffer; `other` reads `kept`, which is returned
    assert_eq!(changed(g, "in place"), 1, "{listing}");
    assert_eq!(listing.matches("in place]").count(), 1, "{listing}");
}

/// A second read of the variable before its assign (one value with the first, so still read
/// after the pass that computes the next value) sees the old value: that update is not done
/// in place.
#[test]
fn a_read_before_the_assign_keeps_the_update_out_of_place() {
    let step = |v: &Variable| -> gradtape::Result<Vec<Tensor>> {
        let next = ops::multiply(&ops::exp(&ops::negative(&v.value())?)?, &2.0)?;
        let m = ops::reshape(&next, &[2, 500])?;
        // a second read of the old value, by an op that is not fused, then the assign
        let rows = ops::reduce_sum(&ops::reshape(&v.value(), &[2, 500])?, 1, false)?;
        v.assign(&next)?;
        Ok(vec![rows, ops::reduce_sum(&m, 0, false)?])
    };
    let init = || {
        Variable::new(
            Tensor::from_vec((0..1000).map(|i| i as f32 / 1000.0).collect(), &[1000]).unwrap(),
        )
    };
    let (cv, ev) = (init(), init());
    let f = {
        let cv = cv.clone();
        function(move |_: &[Tensor]| step(&cv))
    };
    for call in 0..3 {
        let want = step(&ev).unwrap();
        let got: Vec<Tensor> = f.call(&[]).unwrap();
        assert_eq!(bits(&got[0]), bits(&want[0]), "call {call}");
        assert_eq!(bits(&got[1]), bits(&want[1]), "call {call}");
        assert_eq!(bits(&cv.value()), bits(&ev.value()), "call {call}");
    }
    let g = &f.graphs()[0];
    assert!(g.fusion_groups() >= 1, "{g}");
    assert_eq!(changed(g, "in place"), 0, "{g}");
}

// ---- input_signature: one graph for every batch size ----

/// A training step with a mean loss (its divisor a size of the batch, not a number) under
/// `input_signature([None, 3], [None])`: the second batch size traces again, then every
/// batch size runs the one graph, and the variables follow the eager step bit for bit.
#[test]
fn an_unknown_batch_dimension_runs_one_graph_at_every_batch_size() {
    let make = || {
        let w = Variable::new(
            Tensor::from_vec(vec![0.5f64, -0.25, 1.0, 0.75, -1.5, 0.25], &[3, 2]).unwrap(),
        );
        let opt = RefCell::new(Adam::new(0.1));
        (w, opt)
    };
    let step = |w: &Variable, opt: &RefCell<Adam>, a: &[Tensor]| -> gradtape::Result<Tensor> {
        let tape = GradientTape::new();
        let pred = ops::reshape(&ops::matmul(&a[0], w)?, &[-1])?;
        let target = ops::reshape(&ops::stack(&[&a[1], &a[1]], 1)?, &[-1])?;
        let loss = mean_squared_error(&target, &pred, Reduction::SumOverBatchSize)?;
        let [g] = tape.gradient(&loss, [w])?;
        opt.borrow_mut().apply_gradients([(g, w)])?;
        Ok(loss)
    };
    let (ew, eopt) = make();
    let (cw, copt) = make();
    let f = {
        let cw = cw.clone();
        function(move |a: &[Tensor]| step(&cw, &copt, a)).input_signature(vec![
            gradtape::TensorSpec::new(&[None, Some(3)], DType::F64),
            gradtape::TensorSpec::new(&[None], DType::F64),
        ])
    };
    let mut rng = Generator::from_seed(9);
    for (call, batch) in [4usize, 6, 5, 9, 1, 4, 7].into_iter().enumerate() {
        let x = rng.uniform(&[batch, 3], -1.0, 1.0, DType::F64).unwrap();
        let y = rng.uniform(&[batch], -1.0, 1.0, DType::F64).unwrap();
        let want = step(&ew, &eopt, &[x.clone(), y.clone()]).unwrap();
        let got: Tensor = f.call(&[&x, &y]).unwrap();
        assert_eq!(bits(&got), bits(&want), "call {call}, batch {batch}");
        assert_eq!(
            bits(&cw.value()),
            bits(&ew.value()),
            "call {call}, batch {batch}"
        );
    }
    // two traces decide; the other batch sizes ran the graph with their sizes put in
    assert_eq!(f.tracing_count(), 2);
    let g = f.graphs().last().unwrap().clone();
    // the mean's divisor is read from the batch at every call
    assert!(g.op_counts().get("size").is_some_and(|&n| n >= 1), "{g}");
    assert!(g.to_string().contains("arg0: float64[7, 3]"), "{g}");
}

/// A number computed in Rust from the batch size is frozen into each trace: the two traces
/// differ there, so every batch size traces (with the right answers), never a graph that
/// would divide by the first batch size.
#[test]
fn a_rust_number_from_the_batch_size_makes_each_batch_size_trace() {
    let body = |a: &[Tensor]| -> gradtape::Result<Tensor> {
        let n = a[0].shape()[0] as f64;
        ops::divide(&ops::reduce_sum(&a[0], Axes::All, false)?, &n)
    };
    let f = function(body).input_signature(vec![gradtape::TensorSpec::new(&[None], DType::F64)]);
    for (k, batch) in [2usize, 3, 4, 5].into_iter().enumerate() {
        let x = Tensor::from_vec((0..batch).map(|i| i as f64).collect(), &[batch]).unwrap();
        let got: Tensor = f.call(&[&x]).unwrap();
        assert_eq!(bits(&got), bits(&body(std::slice::from_ref(&x)).unwrap()));
        assert_eq!(f.tracing_count(), k + 1);
    }
}

/// Flattening a batch (`[b, 2, 3]` to `[b·6]`) and slicing it keep sizes affine in the batch
/// size: one graph still serves every batch.
#[test]
fn sizes_affine_in_the_batch_size_are_put_in() {
    let body = |a: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
        let flat = ops::reshape(&ops::exp(&a[0])?, &[-1])?;
        let n = flat.shape()[0];
        let tail = flat.slice(gradtape::s![1..n])?;
        Ok(vec![ops::reduce_mean(&tail, Axes::All, false)?, flat])
    };
    let f = function(body).input_signature(vec![gradtape::TensorSpec::new(
        &[None, Some(2), Some(3)],
        DType::F64,
    )]);
    let mut rng = Generator::from_seed(4);
    for batch in [2usize, 5, 3, 8] {
        let x = rng.uniform(&[batch, 2, 3], -1.0, 1.0, DType::F64).unwrap();
        let got: Vec<Tensor> = f.call(&[&x]).unwrap();
        let want = body(std::slice::from_ref(&x)).unwrap();
        assert_eq!(got[1].shape(), &[batch * 6]);
        assert_eq!(bits(&got[0]), bits(&want[0]), "batch {batch}");
        assert_eq!(bits(&got[1]), bits(&want[1]), "batch {batch}");
    }
    assert_eq!(f.tracing_count(), 2);
}

/// Arguments that do not match the signature are errors that name the argument and the spec
/// (TensorFlow raises); unknown dimensions of different sizes in one call get a graph of
/// their own.
#[test]
fn arguments_are_checked_against_the_input_signature() {
    let f = function(|a: &[Tensor]| {
        ops::add(
            &ops::reduce_sum(&a[0], Axes::All, false)?,
            &ops::reduce_sum(&a[1], Axes::All, false)?,
        )
    })
    .with_name("two")
    .input_signature(vec![
        gradtape::TensorSpec::new(&[None, Some(2)], DType::F32),
        gradtape::TensorSpec::new(&[None], DType::F32),
    ]);
    let x = Tensor::ones(&[3, 2], DType::F32).unwrap();
    let y = Tensor::ones(&[3], DType::F32).unwrap();
    let e = f.call::<Tensor>(&[&x]).unwrap_err();
    assert!(e.to_string().contains("takes 2 tensors"), "{e}");
    let e = f
        .call::<Tensor>(&[&Tensor::ones(&[3, 4], DType::F32).unwrap(), &y])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("argument 0 of shape [3, 4] and dtype float32 does not match its input_signature's TensorSpec(shape=(None, 2), dtype=float32)"),
        "{e}"
    );
    let e = f
        .call::<Tensor>(&[&x, &Tensor::ones(&[3], DType::F64).unwrap()])
        .unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e:?}");
    // 3 and 5 in one call: not one batch size, a graph of its own
    let got: Tensor = f
        .call(&[&x, &Tensor::ones(&[5], DType::F32).unwrap()])
        .unwrap();
    assert_eq!(got.to_scalar::<f32>().unwrap(), 11.0);
    assert_eq!(f.tracing_count(), 1);
}

/// The seed's step: the cost, then one taped gradient-descent step on `a` and `b`.
fn seed_step(x: &Tensor, y: &Tensor, a: &Variable, b: &Variable) -> gradtape::Result<Vec<Tensor>> {
    let loss = |p: &Tensor| ops::reduce_sum(&ops::square(&ops::subtract(y, p)?)?, Axes::All, false);
    let cost = loss(&ops::add(a, &ops::multiply(b, x)?)?)?;
    let tape = GradientTape::new();
    let current = loss(&ops::add(a, &ops::multiply(b, x)?)?)?;
    let [da, db] = tape.gradient(&current, [a, b])?;
    a.assign_sub(&ops::multiply(&da.unwrap(), &1e-3)?)?;
    b.assign_sub(&ops::multiply(&db.unwrap(), &1e-3)?)?;
    // `a` read after its assign: the new value
    Ok(vec![cost, a.value()])
}

/// A small step runs over buffers of the graph's own (`Graph::runs_flat`) and leaves what the
/// eager step leaves, bit for bit: the outputs, a read after an assign, the variables; with a
/// value taken from a variable and kept across calls (the variable then gets a new tensor,
/// and the kept one does not change), an assign from outside between calls, and an argument
/// that is a view (that call runs the usual way).
#[test]
fn a_small_step_runs_flat_with_the_eager_bits() {
    let mut rng = Generator::from_seed(3);
    let x = rng.uniform(&[200], 0.0, 1.0, DType::F32).unwrap();
    let y = ops::add(&ops::multiply(&x, &0.5).unwrap(), &0.3).unwrap();
    let (ea, eb) = (Variable::new(0.0), Variable::new(0.0));
    let (a, b) = (Variable::new(0.0), Variable::new(0.0));
    let f = function({
        let (a, b) = (a.clone(), b.clone());
        move |t: &[Tensor]| seed_step(&t[0], &t[1], &a, &b)
    });
    let mut kept = vec![];
    for call in 0..8 {
        // a strided view (every other element of a wider array) at call 5: not contiguous,
        // so that call runs the usual way
        let xs = match call {
            5 => {
                let wide = ops::stack(&[&x, &x], 1).unwrap();
                let column = ops::slice(&wide, &[0, 0], &[200, 1]).unwrap();
                ops::squeeze(&column, &[1]).unwrap()
            }
            _ => x.clone(),
        };
        assert_eq!(bits(&xs), bits(&x));
        let want = seed_step(&x, &y, &ea, &eb).unwrap();
        let got: Vec<Tensor> = f.call(&[&xs, &y]).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(bits(g), bits(w), "call {call}");
        }
        assert_eq!(bits(&a.value()), bits(&ea.value()), "a after call {call}");
        assert_eq!(bits(&b.value()), bits(&eb.value()), "b after call {call}");
        if call == 2 {
            // kept across the next calls: never written in place
            kept.push((a.value(), bits(&a.value())));
        }
        if call == 4 {
            for v in [&a, &ea] {
                v.assign(&Tensor::scalar(0.25f32)).unwrap();
            }
        }
    }
    for (t, b) in &kept {
        assert_eq!(&bits(t), b, "a value kept from a variable changed");
    }
    assert!(f.graphs()[0].runs_flat(), "{}", f.graphs()[0]);
    // a step with a matrix product runs the usual way
    let w = Variable::new(Tensor::ones(&[3, 3], DType::F32).unwrap());
    let g = function({
        let w = w.clone();
        move |t: &[Tensor]| ops::matmul(&t[0], &w)
    });
    let _: Tensor = g
        .call(&[&Tensor::ones(&[2, 3], DType::F32).unwrap()])
        .unwrap();
    assert!(!g.graphs()[0].runs_flat());
}
