//! Values, gradients and second-order gradients against TensorFlow's own numbers.
//!
//! The fixture is made by `tools/tf_reference.py` (rerun it with TensorFlow from PyPI); each
//! case names an expression that is written here with gradtape's ops exactly as it is written
//! there with TensorFlow's. Tolerance: |ours - tf| <= rtol * (|tf| + max|tf| over the array),
//! rtol = 1e-5 in float32 and 1e-10 in float64; infinities and NaNs must match exactly.

use gradtape::{ops, Axes, DType, GradientOptions, GradientTape, Result, Source, Tensor};
use serde_json::Value;

fn expr(name: &str, x: &[Tensor]) -> Result<Tensor> {
    let dt = x[0].dtype();
    let range = |a: f64, b: f64| Tensor::arange(a, b, 1.0, dt);
    Ok(match name {
        "add_broadcast" => ops::add(&x[0], &x[1])?,
        "subtract_broadcast" => ops::subtract(&x[0], &x[1])?,
        "multiply_broadcast" => ops::multiply(&x[0], &x[1])?,
        "divide_broadcast" => ops::divide(&x[0], &x[1])?,
        "negative" => ops::negative(&x[0])?,
        "square" => ops::square(&x[0])?,
        "sqrt" | "sqrt_at_zero" => ops::sqrt(&x[0])?,
        "rsqrt" => ops::rsqrt(&x[0])?,
        "reciprocal" => ops::reciprocal(&x[0])?,
        "exp" => ops::exp(&x[0])?,
        "expm1" => ops::expm1(&x[0])?,
        "log" | "log_at_zero" => ops::log(&x[0])?,
        "log1p" => ops::log1p(&x[0])?,
        "abs_with_zero" => ops::abs(&x[0])?,
        "sign" => ops::multiply(&ops::sign(&x[0])?, &x[0])?,
        "sin" => ops::sin(&x[0])?,
        "cos" => ops::cos(&x[0])?,
        "tanh" => ops::tanh(&x[0])?,
        "sigmoid_extremes" => ops::sigmoid(&x[0])?,
        "relu_with_zero" => ops::relu(&x[0])?,
        "softplus_extremes" => ops::softplus(&x[0])?,
        "elu_with_zero" => ops::elu(&x[0])?,
        "selu_with_zero" => ops::selu(&x[0])?,
        "maximum_ties" => ops::maximum(&x[0], &x[1])?,
        "minimum_ties_broadcast" => ops::minimum(&x[0], &x[1])?,
        "maximum_relu_tie" => ops::maximum(&x[0], &0.0)?,
        "pow_tensor" | "pow_zero_base" => ops::pow(&x[0], &x[1])?,
        "pow_scalar" => ops::pow(&x[0], &3.0)?,
        "clip_by_value_bounds" => ops::clip_by_value(&x[0], &0.0, &1.0)?,
        "reduce_sum_axes_keepdims" => ops::reduce_sum(&x[0], [0, -1], true)?,
        "reduce_sum_all" => ops::reduce_sum(&x[0], Axes::All, false)?,
        "reduce_mean_axis" => ops::reduce_mean(&x[0], 1, false)?,
        "reduce_max_ties" => ops::reduce_max(&x[0], 1, false)?,
        "reduce_min_all" => ops::reduce_min(&x[0], Axes::All, false)?,
        "reduce_prod_zeros" => ops::reduce_prod(&x[0], 1, false)?,
        "reduce_prod_all" => ops::reduce_prod(&x[0], Axes::All, false)?,
        "matmul" | "matmul_batched_broadcast" => ops::matmul(&x[0], &x[1])?,
        "matmul_transposed" => ops::matmul_transposed(&x[0], &x[1], true, true)?,
        "transpose_perm" => ops::multiply(
            &ops::transpose(&x[0], Some(&[2, 0, 1]))?,
            &ops::reshape(&range(1.0, 4.0)?, &[3, 1, 1])?,
        )?,
        "reshape_infer" => ops::multiply(&ops::reshape(&x[0], &[3, -1])?, &range(1.0, 5.0)?)?,
        "expand_squeeze" => ops::squeeze(
            &ops::multiply(&ops::expand_dims(&x[0], -1)?, &ops::expand_dims(&x[0], 1)?)?,
            &[],
        )?,
        "broadcast_to" => ops::broadcast_to(&x[0], &[2, 3, 4])?,
        "concat_three" => ops::concat(&[&x[0], &x[1], &x[2]], 1)?,
        "stack_axis1" => ops::stack(&[&x[0], &x[1]], 1)?,
        "split_weighted" => {
            let parts = ops::split(&x[0], 3, 1)?;
            let mut acc = ops::multiply(&parts[0], &1.0)?;
            for (i, p) in parts.iter().enumerate().skip(1) {
                acc = ops::add(&acc, &ops::multiply(p, &(i as f64 + 1.0))?)?;
            }
            acc
        }
        "slice_begin_size" => ops::slice(&x[0], &[1, 0], &[2, -1])?,
        "strided_slice_negative" => ops::strided_slice(&x[0], &[-1, 1], &[-5, 5], &[-1, 2])?,
        "pad" => ops::pad(&x[0], &[[1, 0], [2, 1]])?,
        "gather_repeated" => ops::gather(&x[0], &x[1], 1)?,
        "gather_nd" => ops::gather_nd(&x[0], &x[1])?,
        "unsorted_segment_sum" => ops::unsorted_segment_sum(&x[0], &x[1], 3)?,
        "select_broadcast" => ops::select(&x[0], &x[1], &x[2])?,
        "one_hot_mask" => ops::multiply(&x[0], &ops::one_hot(&x[1], 4, 1.0, 0.0, dt)?)?,
        "cast_roundtrip" => ops::cast(&ops::square(&ops::cast(&x[0], DType::F64)?)?, dt)?,
        "softmax" => ops::softmax(&x[0], -1)?,
        "log_softmax" => ops::log_softmax(&x[0], 0)?,
        "logsumexp_large" => ops::reduce_logsumexp(&x[0], 1, false)?,
        "logsumexp_neg_inf" => ops::reduce_logsumexp(&x[0], 1, true)?,
        "stop_gradient" => ops::multiply(&x[0], &ops::stop_gradient(&x[0])?)?,
        "argmax_weight" => ops::multiply(
            &ops::reduce_sum(&x[0], 1, false)?,
            &ops::cast(&ops::argmax(&x[0], 1)?, dt)?,
        )?,
        "argmin_weight" => ops::multiply(
            &ops::reduce_sum(&x[0], 0, false)?,
            &ops::cast(&ops::argmin(&x[0], 0)?, dt)?,
        )?,
        "comparison_mask" => ops::add(
            &ops::multiply(&x[0], &ops::cast(&ops::greater_equal(&x[0], &x[1])?, dt)?)?,
            &ops::multiply(&x[1], &ops::cast(&ops::less(&x[0], &x[1])?, dt)?)?,
        )?,
        "round_floor_ceil" => ops::add(
            &ops::add(
                &ops::multiply(&x[0], &ops::round(&x[0])?)?,
                &ops::floor(&x[0])?,
            )?,
            &ops::ceil(&x[0])?,
        )?,
        "linreg_sse" => ops::reduce_sum(
            &ops::square(&ops::subtract(
                &x[3],
                &ops::add(&x[0], &ops::multiply(&x[1], &x[2])?)?,
            )?)?,
            Axes::All,
            false,
        )?,
        "matvec_batched" => ops::matvec(&x[0], &x[1])?,
        "tensordot_last" => ops::tensordot(&x[0], &x[1], 1)?,
        "tensordot_pairs" => ops::tensordot(&x[0], &x[1], ([0, 2], [1, 0]))?,
        "einsum_batched_matmul" => ops::einsum("bij,bjk->bik", &[&x[0], &x[1]])?,
        "einsum_trace" => ops::einsum("ii->", &[&x[0]])?,
        "einsum_diagonal_outer" => ops::einsum("ii,j->ij", &[&x[0], &x[1]])?,
        "einsum_ellipsis_broadcast" => ops::einsum("...ij,...jk->...ik", &[&x[0], &x[1]])?,
        "einsum_chain" => ops::einsum("ij,jk,kl->il", &[&x[0], &x[1], &x[2]])?,
        "einsum_sum_transpose" => ops::einsum("ijk->kj", &[&x[0]])?,
        "sigmoid_cross_entropy_with_logits" => {
            ops::sigmoid_cross_entropy_with_logits(&x[0], &x[1])?
        }
        "softmax_cross_entropy_with_logits" => {
            let labels = Tensor::from_vec(vec![0.2, 0.5, 0.3, 0.25, 0.5, 0.25], &[3, 2])?;
            ops::softmax_cross_entropy_with_logits(&ops::cast(&labels, dt)?, &x[0], 0)?
        }
        "sparse_softmax_cross_entropy_with_logits" => {
            ops::sparse_softmax_cross_entropy_with_logits(&x[0], &x[1])?
        }
        other => panic!("no gradtape expression for fixture case {other}"),
    })
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            _ => f64::NEG_INFINITY,
        },
        Value::Bool(b) => *b as u8 as f64,
        other => other.as_f64().expect("number"),
    }
}

fn shape_data(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap().iter().map(num).collect();
    (shape, data)
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let (shape, data) = shape_data(v);
    match dtype {
        DType::F32 => Tensor::from_vec(data.iter().map(|&x| x as f32).collect(), &shape).unwrap(),
        DType::F64 => Tensor::from_vec(data, &shape).unwrap(),
        DType::I64 => Tensor::from_vec(data.iter().map(|&x| x as i64).collect(), &shape).unwrap(),
        DType::Bool => Tensor::from_vec(data.iter().map(|&x| x != 0.0).collect(), &shape).unwrap(),
    }
}

fn close(what: &str, ours: &Tensor, tf: &Value, rtol: f64) -> std::result::Result<(), String> {
    let (shape, want) = shape_data(tf);
    if ours.shape() != shape.as_slice() {
        return Err(format!(
            "{what}: shape {:?}, TensorFlow {:?}",
            ours.shape(),
            shape
        ));
    }
    let got = ours.to_f64_vec().unwrap();
    let amax = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rtol * (w.abs() + amax)
        };
        if !ok {
            return Err(format!(
                "{what}[{i}]: gradtape {g:e}, TensorFlow {w:e}\n  ours {got:?}\n  tf   {want:?}"
            ));
        }
    }
    Ok(())
}

/// A case's dtype, tolerance and inputs.
fn parse(case: &Value) -> (DType, f64, Vec<Tensor>) {
    let dtype = if case["dtype"] == "float32" {
        DType::F32
    } else {
        DType::F64
    };
    let rtol = if dtype == DType::F32 { 1e-5 } else { 1e-10 };
    let inputs = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let kind = match i["kind"].as_str().unwrap() {
                "float" => dtype,
                "int64" => DType::I64,
                _ => DType::Bool,
            };
            tensor(i, kind)
        })
        .collect();
    (dtype, rtol, inputs)
}

/// The `k`-th second derivative against TensorFlow's. A `None` on either side is a zero
/// gradient here: TensorFlow returns `None` or zeros for the second derivative of
/// piecewise-linear ops depending on how they are built.
fn close_grad2(
    k: usize,
    ours: &Tensor,
    want: &Value,
    rtol: f64,
) -> std::result::Result<(), String> {
    let zeros;
    let want = if want.is_null() {
        zeros = serde_json::json!({"shape": ours.shape(), "data": vec![0.0; ours.numel()]});
        &zeros
    } else {
        want
    };
    close(&format!("grad2[{k}]"), ours, want, rtol * 10.0)
}

fn check_case(case: &Value) -> std::result::Result<(), String> {
    let name = case["name"].as_str().unwrap();
    let (dtype, rtol, inputs) = parse(case);
    let floats: Vec<&Tensor> = inputs.iter().filter(|t| t.dtype().is_float()).collect();
    let sources: Vec<&dyn Source> = floats.iter().map(|t| *t as &dyn Source).collect();

    let outer = GradientTape::persistent();
    let inner = GradientTape::new();
    for f in &floats {
        outer.watch(*f);
        inner.watch(*f);
    }
    let y = expr(name, &inputs).map_err(|e| e.to_string())?;
    close("output", &y, &case["output"], rtol)?;
    let seed = tensor(&case["seed"], dtype);
    let opts = GradientOptions {
        output_gradients: Some(vec![seed]),
        ..Default::default()
    };
    let grads = inner
        .gradient_with(&[&y], &sources, &opts)
        .map_err(|e| e.to_string())?;
    let mut s = Tensor::full(&[], 0.0, dtype).unwrap();
    for (k, (g, want)) in grads
        .iter()
        .zip(case["grad"].as_array().unwrap())
        .enumerate()
    {
        match (g, want.is_null()) {
            (None, true) => {}
            (Some(g), false) => {
                close(&format!("grad[{k}]"), g, want, rtol)?;
                let v = tensor(&case["vector"][k], dtype);
                s = ops::add(
                    &s,
                    &ops::reduce_sum(&ops::multiply(g, &v).unwrap(), Axes::All, false).unwrap(),
                )
                .unwrap();
            }
            (g, _) => {
                return Err(format!(
                    "grad[{k}]: gradtape {:?}, TensorFlow {want}",
                    g.is_some()
                ))
            }
        }
    }
    outer.stop();
    let grads2 = outer
        .gradient_with(&[&s], &sources, &GradientOptions::default())
        .map_err(|e| e.to_string())?;
    for (k, (g, want)) in grads2
        .iter()
        .zip(case["grad2"].as_array().unwrap())
        .enumerate()
    {
        let ours = g.clone().unwrap_or(Tensor::zeros_like(floats[k]).unwrap());
        close_grad2(k, &ours, want, rtol)?;
    }
    Ok(())
}

#[test]
fn values_and_gradients_match_tensorflow() {
    check_all_cases();
}

/// The same cases with every elementwise op pending and every full reduction fused
/// (`gradtape::fusion`), which otherwise only starts at 2¹⁸ elements: forward values, tape
/// gradients and nested-tape second derivatives through pending graphs.
#[test]
fn values_and_gradients_match_tensorflow_when_fused() {
    gradtape::fusion::set_min_elements(1);
    check_all_cases();
}

/// The same cases run through `gradtape::function` (issue 22): the value, the gradients and
/// the second derivatives computed inside one compiled function, traced on other inputs (the
/// float inputs times 0.9), then replayed on the fixture's: what TensorFlow gives, so nothing
/// was frozen at the trace's values and the graph passes kept every number.
#[test]
fn values_and_gradients_match_tensorflow_compiled() {
    check_all_cases_with(check_case_compiled);
}

fn check_case_compiled(case: &Value) -> std::result::Result<(), String> {
    let name = case["name"].as_str().unwrap().to_string();
    let (dtype, rtol, inputs) = parse(case);
    let n = inputs.len();
    let floats: Vec<usize> = (0..n).filter(|&i| inputs[i].dtype().is_float()).collect();
    // the vectors the first gradients are dotted with, where TensorFlow has a gradient
    let vectors: Vec<Option<Tensor>> = (0..floats.len())
        .map(|k| (!case["vector"][k].is_null()).then(|| tensor(&case["vector"][k], dtype)))
        .collect();
    let seed = tensor(&case["seed"], dtype);
    // which gradients exist: structure, the same at every call (Rust code runs at the trace)
    let some = std::cell::RefCell::new((vec![], vec![]));
    let f = gradtape::function(|a: &[Tensor]| -> Result<Vec<Tensor>> {
        let (ins, seed, vs) = (&a[..n], &a[n], &a[n + 1..]);
        let sources: Vec<&dyn Source> = floats.iter().map(|&i| &ins[i] as &dyn Source).collect();
        let outer = GradientTape::persistent();
        let inner = GradientTape::new();
        for &i in &floats {
            outer.watch(&ins[i]);
            inner.watch(&ins[i]);
        }
        let y = expr(&name, ins)?;
        let opts = GradientOptions {
            output_gradients: Some(vec![seed.clone()]),
            ..Default::default()
        };
        let grads = inner.gradient_with(&[&y], &sources, &opts)?;
        let mut s = Tensor::full(&[], 0.0, dtype)?;
        let mut vs = vs.iter();
        for (g, v) in grads.iter().zip(&vectors) {
            if let (Some(g), Some(_)) = (g, v) {
                let v = vs.next().unwrap();
                s = ops::add(
                    &s,
                    &ops::reduce_sum(&ops::multiply(g, v)?, Axes::All, false)?,
                )?;
            }
        }
        outer.stop();
        let grads2 = outer.gradient_with(&[&s], &sources, &GradientOptions::default())?;
        *some.borrow_mut() = (
            grads.iter().map(Option::is_some).collect::<Vec<_>>(),
            grads2.iter().map(Option::is_some).collect::<Vec<_>>(),
        );
        Ok(std::iter::once(y)
            .chain(grads.into_iter().flatten())
            .chain(grads2.into_iter().flatten())
            .collect())
    });
    let args_of = |ins: &[Tensor]| -> Vec<Tensor> {
        ins.iter()
            .cloned()
            .chain(std::iter::once(seed.clone()))
            .chain(vectors.iter().flatten().cloned())
            .collect()
    };
    let scaled: Vec<Tensor> = inputs
        .iter()
        .map(|t| match t.dtype().is_float() {
            true => ops::multiply(t, &0.9).unwrap(),
            false => t.clone(),
        })
        .collect();
    let traced = args_of(&scaled);
    let _: Vec<Tensor> = f
        .call(&traced.iter().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    let real = args_of(&inputs);
    let out: Vec<Tensor> = f
        .call(&real.iter().collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    assert_eq!(f.tracing_count(), 1);
    let (has1, has2) = some.borrow().clone();
    let mut out = out.into_iter();
    close("output", &out.next().unwrap(), &case["output"], rtol)?;
    for (k, (has, want)) in has1
        .iter()
        .zip(case["grad"].as_array().unwrap())
        .enumerate()
    {
        match (has, want.is_null()) {
            (false, true) => {}
            (true, false) => close(&format!("grad[{k}]"), &out.next().unwrap(), want, rtol)?,
            _ => return Err(format!("grad[{k}]: gradtape {has}, TensorFlow {want}")),
        }
    }
    for (k, (has, want)) in has2
        .iter()
        .zip(case["grad2"].as_array().unwrap())
        .enumerate()
    {
        let ours = match has {
            true => out.next().unwrap(),
            false => Tensor::zeros_like(&inputs[floats[k]]).unwrap(),
        };
        close_grad2(k, &ours, want, rtol)?;
    }
    Ok(())
}

fn check_all_cases() {
    check_all_cases_with(check_case);
}

fn check_all_cases_with(check_case: fn(&Value) -> std::result::Result<(), String>) {
    let text = include_str!("../fixtures/tf_ops.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 80, "fixture holds {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check_case(c)
                .err()
                .map(|e| format!("{} ({}): {e}", c["name"].as_str().unwrap(), c["dtype"]))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from TensorFlow:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
