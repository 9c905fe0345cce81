//! Per-example gradients on the digits MLP with `vmap`, and DP-SGD-style training with them:
//! each example's gradient is clipped to a norm bound, the clipped gradients are summed, noise
//! is added, and the optimizer applies their mean (Abadi et al., 2016).
//!
//! The per-example gradients are `vmap` of a function that takes the gradient of one example's
//! loss on its own tape (JAX's `vmap(grad(loss))`): every op runs once on the whole batch.
//!
//! `cargo run --release --example per_example_gradients`

use std::path::Path;

use gradtape::data::{read_csv, take_rows, Target, Task};
use gradtape::layers::{Activation, Dense, Layer, Sequential};
use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::optimizers::{Optimizer, SGD};
use gradtape::random::Generator;
use gradtape::{metrics, ops, vmap, Axes, DType, GradientTape, Result, Tensor};

const BATCH: usize = 64;
const CLIP: f64 = 1.0; // each example's gradient norm is at most this
const NOISE: f64 = 0.5; // noise standard deviation, as a multiple of CLIP
const STEPS: usize = 300;

fn main() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits.csv.gz");
    let data = read_csv(&path)?.dataset("digit", Task::Classification, DType::F32)?;
    let x = ops::divide(&data.features, &16.0)?; // pixels 0..16 -> 0..1
    let Target::Classes { labels, .. } = data.target else {
        unreachable!("classification");
    };
    let n = x.shape()[0];
    let mut rng = Generator::from_seed(0);
    let model = Sequential::new(vec![
        Box::new(Dense::new(
            "hidden",
            64,
            32,
            Activation::Relu,
            DType::F32,
            &mut rng,
        )?),
        Box::new(Dense::new(
            "out",
            32,
            10,
            Activation::Linear,
            DType::F32,
            &mut rng,
        )?),
    ]);
    let vars = model.trainable_variables();

    // One example's loss and its gradient with respect to every weight.
    let per_example = |xs: &[Tensor]| -> Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        let logits = model.call(&ops::expand_dims(&xs[0], 0)?, true)?;
        let label = ops::expand_dims(&xs[1], 0)?;
        let loss = sparse_categorical_crossentropy(&label, &logits, true, Reduction::Sum)?;
        let grads = tape.gradient(&loss, &vars)?;
        Ok(grads.into_iter().flatten().collect())
    };

    // The first batch: per-example gradient norms, and a check against the batch gradient.
    let idx: Vec<i64> = (0..BATCH as i64).collect();
    let (xb, yb) = (take_rows(&x, &idx)?, take_rows(&labels, &idx)?);
    let grads = vmap(per_example).call(&[xb.clone(), yb.clone()])?; // each [BATCH, ...shape]
    let mut sorted = norms(&grads)?.to_vec::<f32>()?;
    sorted.sort_by(f32::total_cmp);
    println!(
        "per-example gradient norms over {BATCH} examples: min {:.3}, median {:.3}, max {:.3}",
        sorted[0],
        sorted[BATCH / 2],
        sorted[BATCH - 1]
    );
    let tape = GradientTape::new();
    let mean_loss = sparse_categorical_crossentropy(
        &yb,
        &model.call(&xb, true)?,
        true,
        Reduction::SumOverBatchSize,
    )?;
    let batch_grads = tape.gradient(&mean_loss, &vars)?;
    let mut gap = 0.0f64;
    for (g, b) in grads.iter().zip(&batch_grads) {
        let mean = ops::reduce_mean(g, 0, false)?;
        let diff = ops::reduce_max(
            &ops::abs(&ops::subtract(&mean, b.as_ref().unwrap())?)?,
            Axes::All,
            false,
        )?;
        gap = gap.max(diff.item()?);
    }
    println!("mean of the per-example gradients vs the batch gradient: max difference {gap:.2e}");

    // DP-SGD: clip each example's gradient, sum, add noise, average, step.
    let mut opt = SGD::new(0.5);
    let mut noise_rng = Generator::from_seed(1);
    let mut order = Generator::from_seed(2);
    for step in 0..STEPS {
        let start = order
            .uniform(&[], 0.0, (n - BATCH) as f64, DType::F64)?
            .item()? as i64;
        let idx: Vec<i64> = (start..start + BATCH as i64).collect();
        let grads = vmap(per_example).call(&[take_rows(&x, &idx)?, take_rows(&labels, &idx)?])?;
        // scale_i = min(1, CLIP / |g_i|)
        let scale = ops::minimum(
            &ops::divide(&CLIP, &ops::maximum(&norms(&grads)?, &1e-12)?)?,
            &1.0,
        )?;
        let mut noisy = vec![];
        for g in &grads {
            let mut shape = vec![BATCH as isize];
            shape.extend(std::iter::repeat_n(1, g.rank() - 1));
            let clipped = ops::multiply(g, &ops::reshape(&scale, &shape)?)?;
            let summed = ops::reduce_sum(&clipped, 0, false)?;
            let noise = noise_rng.normal(summed.shape(), 0.0, NOISE * CLIP, DType::F32)?;
            noisy.push(ops::divide(&ops::add(&summed, &noise)?, &(BATCH as f64))?);
        }
        opt.apply_gradients(noisy.into_iter().zip(&vars))?;
        if step % 100 == 99 || step == 0 {
            let scores = model.call(&x, false)?;
            let acc = metrics::sparse_categorical_accuracy(&labels, &scores)?;
            println!(
                "step {:>3}: accuracy on all {n} digits {:.1}%",
                step + 1,
                acc * 100.0
            );
        }
    }
    Ok(())
}

/// Each example's gradient norm over all the weights: `[BATCH]`.
fn norms(grads: &[Tensor]) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for g in grads {
        let axes: Vec<isize> = (1..g.rank() as isize).collect();
        let sq = ops::reduce_sum(&ops::square(g)?, axes, false)?;
        total = Some(match total {
            Some(t) => ops::add(&t, &sq)?,
            None => sq,
        });
    }
    ops::sqrt(&total.unwrap_or(Tensor::zeros(&[BATCH], DType::F32)?))
}
