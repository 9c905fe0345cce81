//! Losses, optimizers and learning-rate schedules against Keras's own numbers
//! (`tools/tf_reference.py` writes `fixtures/keras.json`). Tolerance: 1e-5 relative to the
//! larger of the element and the array's largest element, in float32.

use gradtape::losses::{self, Reduction};
use gradtape::optimizers::{
    Adagrad, Adam, AdamW, CosineDecay, ExponentialDecay, LearningRateSchedule, Optimizer,
    PiecewiseConstantDecay, RMSprop, SGD,
};
use gradtape::{DType, GradientTape, Tensor, Variable};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/keras.json")).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| match v.as_str() {
        Some("inf") => f64::INFINITY,
        Some("-inf") => f64::NEG_INFINITY,
        _ => f64::NAN,
    })
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(num).collect();
    Tensor::from_vec(data, &shape).unwrap().cast(dtype).unwrap()
}

fn close(what: &str, ours: &Tensor, want: &Value) {
    let w: Vec<f64> = want["data"].as_array().unwrap().iter().map(num).collect();
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ours.shape(), shape.as_slice(), "{what}: shape");
    let got = ours.to_f64_vec().unwrap();
    let amax = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, t)) in got.iter().zip(&w).enumerate() {
        assert!(
            (g - t).abs() <= 1e-5 * (t.abs().max(amax)) + 1e-7,
            "{what}[{i}]: gradtape {g}, Keras {t}\n{got:?}\n{w:?}"
        );
    }
}

#[test]
fn losses_and_their_gradients_match_keras() {
    let f = fixture();
    let cases = f["losses"].as_array().unwrap();
    assert_eq!(cases.len(), 36);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let reduction = match c["reduction"].as_str().unwrap() {
            "sum" => Reduction::Sum,
            "none" => Reduction::None,
            _ => Reduction::SumOverBatchSize,
        };
        let logits = c["kwargs"]["from_logits"].as_bool().unwrap_or(false);
        let what = format!("{name} {} from_logits={logits}", c["reduction"]);
        let p = tensor(&c["y_pred"], DType::F32);
        let tape = GradientTape::new();
        tape.watch(&p);
        let value = match name {
            "mean_squared_error" => {
                losses::mean_squared_error(&tensor(&c["y_true"], DType::F32), &p, reduction)
            }
            "mean_absolute_error" => {
                losses::mean_absolute_error(&tensor(&c["y_true"], DType::F32), &p, reduction)
            }
            "huber" => losses::huber(
                &tensor(&c["y_true"], DType::F32),
                &p,
                c["kwargs"]["delta"].as_f64().unwrap(),
                reduction,
            ),
            "binary_crossentropy" => losses::binary_crossentropy(
                &tensor(&c["y_true"], DType::F32),
                &p,
                logits,
                reduction,
            ),
            "categorical_crossentropy" => losses::categorical_crossentropy(
                &tensor(&c["y_true"], DType::F32),
                &p,
                logits,
                reduction,
            ),
            "sparse_categorical_crossentropy" => losses::sparse_categorical_crossentropy(
                &tensor(&c["y_true"], DType::I64),
                &p,
                logits,
                reduction,
            ),
            other => panic!("no loss {other}"),
        }
        .unwrap();
        assert!(
            value.to_f64_vec().unwrap().iter().all(|v| v.is_finite()),
            "{what}: not finite"
        );
        close(&format!("{what} value"), &value, &c["value"]);
        let [g] = tape.gradient(&value, [&p]).unwrap();
        close(&format!("{what} gradient"), &g.unwrap(), &c["grad"]);
    }
}

fn optimizer(name: &str) -> Box<dyn Optimizer> {
    match name {
        "sgd" => Box::new(SGD::new(0.1)),
        "sgd_momentum" => Box::new(SGD::new(0.1).momentum(0.9)),
        "sgd_nesterov" => Box::new(SGD::new(0.1).momentum(0.9).nesterov(true)),
        "adam" => Box::new(Adam::new(0.01)),
        "adam_amsgrad" => Box::new(Adam::new(0.01).amsgrad(true)),
        "adamw" => Box::new(AdamW::new(0.01).weight_decay(0.1)),
        "rmsprop" => Box::new(RMSprop::new(0.01)),
        "rmsprop_centered_momentum" => Box::new(RMSprop::new(0.01).momentum(0.5).centered(true)),
        "adagrad" => Box::new(Adagrad::new(0.1)),
        "sgd_clipnorm" => Box::new(SGD::new(0.1).clipnorm(0.5)),
        "sgd_clipvalue" => Box::new(SGD::new(0.1).clipvalue(0.3)),
        "adam_global_clipnorm" => Box::new(Adam::new(0.01).global_clipnorm(1.0)),
        "sgd_exponential_decay" => Box::new(SGD::new(ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 2,
            decay_rate: 0.5,
            staircase: false,
        })),
        "sgd_piecewise" => Box::new(SGD::new(PiecewiseConstantDecay {
            boundaries: vec![1, 3],
            values: vec![0.1, 0.05, 0.01],
        })),
        "sgd_cosine_warmup" => Box::new(SGD::new(CosineDecay {
            initial_learning_rate: 0.0,
            decay_steps: 4,
            alpha: 0.1,
            warmup_target: Some(0.2),
            warmup_steps: 2,
        })),
        other => panic!("no optimizer {other}"),
    }
}

#[test]
fn optimizers_follow_keras_step_by_step() {
    let f = fixture();
    let configs = f["optimizers"].as_array().unwrap();
    assert_eq!(configs.len(), 15);
    for c in configs {
        let name = c["name"].as_str().unwrap();
        let vars: Vec<Variable> = f["optimizer_init"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Variable::new(tensor(v, DType::F32)))
            .collect();
        let mut opt = optimizer(name);
        for (step, (gs, want)) in f["optimizer_grads"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["steps"].as_array().unwrap())
            .enumerate()
        {
            let pairs: Vec<(Option<Tensor>, &Variable)> = gs
                .as_array()
                .unwrap()
                .iter()
                .zip(&vars)
                .map(|(g, v)| (Some(tensor(g, DType::F32)), v))
                .collect();
            opt.apply_gradients(&pairs).unwrap();
            for (k, (v, w)) in vars.iter().zip(want.as_array().unwrap()).enumerate() {
                close(&format!("{name} step {step} variable {k}"), &v.value(), w);
            }
        }
        assert_eq!(opt.iterations(), 5);
    }
}

#[test]
fn schedules_match_keras() {
    let f = fixture();
    for s in f["schedules"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let sched: Box<dyn LearningRateSchedule> = match name {
            "exponential" => Box::new(ExponentialDecay {
                initial_learning_rate: 0.1,
                decay_steps: 3,
                decay_rate: 0.7,
                staircase: false,
            }),
            "exponential_staircase" => Box::new(ExponentialDecay {
                initial_learning_rate: 0.1,
                decay_steps: 3,
                decay_rate: 0.7,
                staircase: true,
            }),
            "piecewise" => Box::new(PiecewiseConstantDecay {
                boundaries: vec![5, 10],
                values: vec![1.0, 0.5, 0.1],
            }),
            "cosine" => Box::new(CosineDecay {
                initial_learning_rate: 0.5,
                decay_steps: 10,
                alpha: 0.1,
                warmup_target: None,
                warmup_steps: 0,
            }),
            "cosine_warmup" => Box::new(CosineDecay {
                initial_learning_rate: 0.0,
                decay_steps: 10,
                alpha: 0.0,
                warmup_target: Some(1.0),
                warmup_steps: 4,
            }),
            other => panic!("no schedule {other}"),
        };
        for (step, want) in s["values"].as_array().unwrap().iter().enumerate() {
            let (g, w) = (sched.at(step as u64), want.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{name} step {step}: gradtape {g}, Keras {w}"
            );
        }
    }
}

#[test]
fn apply_gradients_skips_none_and_refuses_all_none() {
    let (a, b) = (Variable::new(1.0), Variable::new(2.0));
    let mut opt = SGD::new(0.5);
    opt.apply_gradients(&[(Some(Tensor::scalar(1.0f32)), &a), (None, &b)])
        .unwrap();
    assert_eq!(a.value().to_scalar::<f32>().unwrap(), 0.5);
    assert_eq!(b.value().to_scalar::<f32>().unwrap(), 2.0);
    let e = opt.apply_gradients(&[(None, &a)]).unwrap_err().to_string();
    assert!(
        e.contains("apply_gradients") && e.contains("no gradients"),
        "{e}"
    );
    let e = opt
        .apply_gradients(&[(Some(Tensor::zeros(&[2], DType::F32).unwrap()), &a)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]") && e.contains("[]"), "{e}");
}
