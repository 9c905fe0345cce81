//! A custom training loop that logs to TensorBoard, as `tf.summary` does in TensorFlow:
//!
//!     cargo run --release --example tensorboard -- logs
//!     tensorboard --logdir logs
//!
//! Trains a small MLP on a generated two-class problem (two Gaussian blobs), logging the loss,
//! the accuracy and a histogram of every weight and gradient each step.

use gradtape::layers::{Activation, Dense, Layer, Sequential};
use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::metrics::sparse_categorical_accuracy;
use gradtape::optimizers::{Adam, Optimizer};
use gradtape::random::Generator;
use gradtape::summary::SummaryWriter;
use gradtape::{ops, DType, GradientTape, Tensor};

fn main() -> gradtape::Result<()> {
    let logdir = std::env::args().nth(1).unwrap_or_else(|| "logs".into());
    let mut rng = Generator::from_seed(0);
    // 256 points: class 0 around (-1, -1), class 1 around (1, 1)
    let labels: Vec<i64> = (0..256).map(|i| i % 2).collect();
    let noise = rng.normal(&[256, 2], 0.0, 0.8, DType::F32)?;
    let centers: Vec<f32> = labels
        .iter()
        .flat_map(|&c| if c == 0 { [-1.0, -1.0] } else { [1.0, 1.0] })
        .collect();
    let x = ops::add(&Tensor::from_vec(centers, &[256, 2])?, &noise)?;
    let y = Tensor::from_vec(labels, &[256])?;

    let model = Sequential::new(vec![
        Box::new(Dense::new(
            "hidden",
            2,
            16,
            Activation::Relu,
            DType::F32,
            &mut rng,
        )?),
        Box::new(Dense::new(
            "out",
            16,
            2,
            Activation::Linear,
            DType::F32,
            &mut rng,
        )?),
    ]);
    let vars = model.trainable_variables();
    let mut opt = Adam::new(0.05);
    let mut log = SummaryWriter::create(&logdir)?;
    for step in 0..50 {
        let tape = GradientTape::new();
        let logits = model.call(&x, true)?;
        let loss = sparse_categorical_crossentropy(&y, &logits, true, Reduction::SumOverBatchSize)?;
        let grads = tape.gradient(&loss, &vars)?;
        log.scalar("loss", loss.item()?, step)?;
        log.scalar("accuracy", sparse_categorical_accuracy(&y, &logits)?, step)?;
        for (v, g) in vars.iter().zip(&grads) {
            let name = v.name().unwrap_or("weight");
            log.histogram(name, &v.value(), step)?;
            if let Some(g) = g {
                log.histogram(&format!("{name}/gradient"), g, step)?;
            }
        }
        opt.apply_gradients(grads.into_iter().zip(&vars))?;
    }
    log.flush()?;
    println!("wrote {}", log.path().display());
    Ok(())
}
