//! The core issue's two speed figures, printed as JSON lines:
//!
//! - `seed`: one epoch of the seed tutorial at N = 200 (evaluate the SSE cost, then one taped
//!   gradient-descent step on a and b), f32;
//! - `chain`: 2,000 recorded scalar multiplications, forward and gradient; also `us_per_op`;
//! - `mlp`: one training step of an MLP 784-256-256-10, batch 128, ReLU, softmax cross-entropy,
//!   Adam, f32.
//!
//! `cargo run --release --example bench_core` (the comparison script in bench/compare runs it
//! beside TensorFlow, PyTorch and JAX). Each figure is the median of 15 rounds; a round times
//! enough iterations to last about 20 ms.

use std::time::Instant;

use gradtape::random::Generator;
use gradtape::{ops, Axes, DType, GradientTape, Result, Tensor, Variable};

fn median_us(mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    // A fixed count (for instruction counting under valgrind) instead of timed rounds.
    if let Some(n) = std::env::var("BENCH_FIXED_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let t = Instant::now();
        for _ in 0..n {
            f()?;
        }
        return Ok((t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64, n));
    }
    // warm-up and calibration
    let t = Instant::now();
    let mut iters = 0usize;
    while t.elapsed().as_secs_f64() < 0.02 {
        f()?;
        iters += 1;
    }
    let mut rounds = vec![];
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        rounds.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    rounds.sort_by(|a, b| a.total_cmp(b));
    Ok((rounds[rounds.len() / 2], iters * 15))
}

fn seed_epoch() -> Result<(f64, usize)> {
    let mut rng = Generator::from_seed(0);
    let x = rng.uniform(&[200], 0.0, 1.0, DType::F32)?;
    let noise = rng.normal(&[200], 0.0, 0.3, DType::F32)?;
    let y = ops::add(&ops::add(&ops::multiply(&x, &0.5)?, &0.3)?, &noise)?;
    let (a, b) = (Variable::new(0.0), Variable::new(0.0));
    let lr = 0.001;
    let loss = |y_pred: &Tensor| {
        ops::reduce_sum(&ops::square(&ops::subtract(&y, y_pred)?)?, Axes::All, false)
    };
    median_us(|| {
        // cost evaluation, as the seed's loop does before each step
        let cost = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        std::hint::black_box(cost);
        // one taped training step
        let g = GradientTape::new();
        let current = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        let [da, db] = g.gradient(&current, [&a, &b])?;
        if let (Some(da), Some(db)) = (da, db) {
            a.assign_sub(&(&da * lr)?)?;
            b.assign_sub(&(&db * lr)?)?;
        }
        Ok(())
    })
}

/// One training step of an MLP 784-256-256-10 on a batch of 128, ReLU, softmax cross-entropy
/// from logits, Adam, float32.
fn mlp_step() -> Result<(f64, usize)> {
    use gradtape::layers::{Activation, Dense, Layer, Sequential};
    use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
    use gradtape::optimizers::{Adam, Optimizer};
    let mut rng = Generator::from_seed(1);
    let model = Sequential::new(vec![
        Box::new(Dense::new(
            "l1",
            784,
            256,
            Activation::Relu,
            DType::F32,
            &mut rng,
        )?),
        Box::new(Dense::new(
            "l2",
            256,
            256,
            Activation::Relu,
            DType::F32,
            &mut rng,
        )?),
        Box::new(Dense::new(
            "l3",
            256,
            10,
            Activation::Linear,
            DType::F32,
            &mut rng,
        )?),
    ]);
    let x = rng.uniform(&[128, 784], 0.0, 1.0, DType::F32)?;
    let y = Tensor::from_vec((0..128).map(|i| i % 10).collect::<Vec<i64>>(), &[128])?;
    let vars = model.trainable_variables();
    let mut opt = Adam::new(0.001);
    median_us(|| {
        let tape = GradientTape::new();
        let logits = model.call(&x, true)?;
        let loss = sparse_categorical_crossentropy(&y, &logits, true, Reduction::SumOverBatchSize)?;
        let sources: Vec<&dyn gradtape::Source> =
            vars.iter().map(|v| v as &dyn gradtape::Source).collect();
        let grads = tape.gradient_with(&[&loss], &sources, &Default::default())?;
        let pairs: Vec<(Option<Tensor>, &Variable)> = grads.into_iter().zip(&vars).collect();
        opt.apply_gradients(&pairs)
    })
}

const CHAIN: usize = 2000;

fn chain() -> Result<(f64, usize)> {
    let x = Tensor::scalar(1.0f32);
    median_us(|| {
        let tape = GradientTape::new();
        tape.watch(&x);
        let mut y = x.clone();
        for _ in 0..CHAIN {
            y = ops::multiply(&y, &1.0001)?;
        }
        let [g] = tape.gradient(&y, [&x])?;
        std::hint::black_box(g);
        Ok(())
    })
}

fn main() -> Result<()> {
    // `bench_core seed` or `bench_core chain` runs one workload (for profiling).
    let only = std::env::args().nth(1);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("seed") {
        let (us, iters) = seed_epoch()?;
        println!("{{\"framework\":\"gradtape\",\"name\":\"seed\",\"iters\":{iters},\"median_us\":{us:.3}}}");
    }
    if run("mlp") {
        let (us, iters) = mlp_step()?;
        println!("{{\"framework\":\"gradtape\",\"name\":\"mlp\",\"iters\":{iters},\"median_us\":{us:.3}}}");
    }
    if !run("chain") {
        return Ok(());
    }
    let (us, iters) = chain()?;
    println!(
        "{{\"framework\":\"gradtape\",\"name\":\"chain\",\"iters\":{iters},\"median_us\":{us:.3},\"us_per_op\":{:.4}}}",
        us / CHAIN as f64
    );
    Ok(())
}
