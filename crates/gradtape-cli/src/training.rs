//! A custom training loop in the tape style, with defaults that suit small tables: the loop
//! `gradtape train` runs and the one the digits test proves. It is the command line's policy
//! (which model, which optimizer, which defaults), so it lives here and not in the library,
//! whose layers, optimizers and tapes it only combines (it was `gradtape::training`). It is the seed's loop with
//! batteries: mini-batches, an optimizer, a loss, validation after each epoch.
//!
//! ```
//! use gradtape_cli::training::{build_mlp, fit, TrainConfig};
//! use gradtape::data::Target;
//! use gradtape::{DType, Tensor};
//! // XOR-ish toy problem: the class is whether x0 and x1 have the same sign.
//! let x = Tensor::from_vec(vec![1.0f32, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 1.0], &[4, 2])?;
//! let y = Target::Classes { labels: Tensor::from_vec(vec![1i64, 1, 0, 0], &[4])?, names: vec!["no".into(), "yes".into()] };
//! let cfg = TrainConfig { epochs: 200, batch_size: 4, learning_rate: 0.05, ..TrainConfig::default() };
//! let model = build_mlp(2, &[8], 2, &cfg)?;
//! let history = fit(&model, (&x, &y), None, &cfg, |_| {})?;
//! assert!(history.last().unwrap().train_accuracy.unwrap() == 1.0);
//! # Ok::<(), gradtape::Error>(())
//! ```

use gradtape::data::{Batches, Target};
use gradtape::distributed::{
    average_gradients_weighted, broadcast_variables, shard, Communicator, SingleProcess,
};
use std::cell::RefCell;

use gradtape::layers::{Activation, Dense, Initializer, Layer, Sequential};
use gradtape::losses::{mean_squared_error, sparse_categorical_crossentropy, Reduction};
use gradtape::metrics::{sparse_categorical_accuracy, Mean};
use gradtape::ops;
use gradtape::optimizers::{Adam, Optimizer, RMSprop, SGD};
use gradtape::random::Generator;
use gradtape::DType;
use gradtape::GradientTape;
use gradtape::Tensor;
use gradtape::{Error, Result};

/// The optimizer a training run uses.
///
/// ```
/// let cfg = gradtape_cli::training::TrainConfig { optimizer: gradtape_cli::training::OptimizerKind::Sgd, ..Default::default() };
/// assert_eq!(cfg.optimizer, gradtape_cli::training::OptimizerKind::Sgd);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam (the default).
    Adam,
    /// Plain SGD.
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// RMSprop.
    RmsProp,
}

/// Everything a training run needs besides the data. The defaults work on small tables never
/// seen before (a few hundred rows, tens of standardised features).
///
/// ```
/// let cfg = gradtape_cli::training::TrainConfig::default();
/// assert_eq!((cfg.hidden.clone(), cfg.epochs, cfg.batch_size), (vec![64], 40, 32));
/// ```
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Sizes of the hidden layers.
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: Activation,
    /// Passes over the training data.
    pub epochs: usize,
    /// Rows per gradient step.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// Seed of the initial weights and the shuffling.
    pub seed: u64,
    /// Precision.
    pub dtype: DType,
    /// Run each training step as one compiled graph (`gradtape::function`) when training in
    /// one process: the same numbers bit for bit as op by op. A model whose step draws random
    /// numbers (dropout) or reads a value back fails at its first step with a message; set it
    /// to `false` for those.
    pub compiled: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![64],
            activation: Activation::Relu,
            epochs: 40,
            batch_size: 32,
            learning_rate: 0.005,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            dtype: DType::F32,
            compiled: true,
        }
    }
}

/// A multilayer perceptron: He-initialised hidden layers with the configured activation and a
/// linear output layer (logits for classification).
///
/// # Errors
/// When the configured dtype is not a float type.
///
/// ```
/// use gradtape::layers::Layer;
/// let cfg = gradtape_cli::training::TrainConfig::default();
/// let m = gradtape_cli::training::build_mlp(5, &[8, 8], 3, &cfg)?;
/// assert_eq!(m.trainable_variables().len(), 6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn build_mlp(
    inputs: usize,
    hidden: &[usize],
    outputs: usize,
    cfg: &TrainConfig,
) -> Result<Sequential> {
    let mut rng = Generator::from_seed(cfg.seed);
    let mut layers: Vec<Box<dyn Layer>> = vec![];
    dense_head(&mut layers, inputs, hidden, outputs, cfg, &mut rng)?;
    Ok(Sequential::new(layers))
}

/// The `hidden` dense layers (`dense_{i}`; He-uniform for ReLU, Glorot-uniform otherwise) and
/// the linear `output` layer, after layers that give `fan_in` features.
fn dense_head(
    layers: &mut Vec<Box<dyn Layer>>,
    mut fan_in: usize,
    hidden: &[usize],
    outputs: usize,
    cfg: &TrainConfig,
    rng: &mut Generator,
) -> Result<()> {
    for (i, &h) in hidden.iter().enumerate() {
        let init = if cfg.activation == Activation::Relu {
            Initializer::HeUniform
        } else {
            Initializer::GlorotUniform
        };
        layers.push(Box::new(Dense::with_options(
            &format!("dense_{i}"),
            fan_in,
            h,
            cfg.activation,
            init,
            true,
            cfg.dtype,
            rng,
        )?));
        fan_in = h;
    }
    layers.push(Box::new(Dense::new(
        "output",
        fan_in,
        outputs,
        Activation::Linear,
        cfg.dtype,
        rng,
    )?));
    Ok(())
}

/// The CLI's `--model cnn` for rows that are `image = [height, width, channels]` pixels (row
/// major): two 3×3 convolutions of 32 and 64 filters (same padding, ReLU, He-uniform), each
/// followed by 2×2 max pooling while the image is at least 2 pixels across, then the `hidden`
/// dense layers and the output layer, as in [`build_mlp`]. Rows of `h·w·c` features go in as they are.
///
/// # Errors
/// When a size is 0 or `cfg.dtype` is not float.
///
/// ```
/// use gradtape::layers::Layer;
/// use gradtape_cli::training::{build_cnn, TrainConfig};
/// let m = build_cnn([8, 8, 1], 10, &TrainConfig::default())?;
/// let x = gradtape::Tensor::zeros(&[5, 64], gradtape::DType::F32)?;
/// assert_eq!(m.call(&x, false)?.shape(), &[5, 10]);
/// assert!(m.summary(&[64], gradtape::DType::F32)?.contains("(None, 2, 2, 64)"));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn build_cnn(image: [usize; 3], outputs: usize, cfg: &TrainConfig) -> Result<Sequential> {
    use gradtape::layers::{Conv2D, ConvConfig, Flatten, MaxPooling2D, Reshape};
    let mut rng = Generator::from_seed(cfg.seed);
    let [mut h, mut w, mut c] = image;
    let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(Reshape::new(&[
        h as isize, w as isize, c as isize,
    ]))];
    let conv = ConvConfig {
        padding: gradtape::ops::Padding::Same,
        activation: Activation::Relu,
        kernel_initializer: Initializer::HeUniform,
        ..ConvConfig::default()
    };
    for (i, filters) in [32, 64].into_iter().enumerate() {
        layers.push(Box::new(Conv2D::new(
            &format!("conv_{i}"),
            c,
            filters,
            [3, 3],
            conv,
            cfg.dtype,
            &mut rng,
        )?));
        c = filters;
        if h >= 2 && w >= 2 {
            layers.push(Box::new(MaxPooling2D::new([2, 2])));
            (h, w) = (h / 2, w / 2);
        }
    }
    layers.push(Box::new(Flatten));
    dense_head(&mut layers, h * w * c, &cfg.hidden, outputs, cfg, &mut rng)?;
    Ok(Sequential::new(layers))
}

/// The recurrent layer `--model lstm|gru` stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentKind {
    /// Keras's `LSTM`.
    Lstm,
    /// Keras's `GRU` (`reset_after`, TensorFlow 2's default).
    Gru,
}

impl RecurrentKind {
    /// The number of weights of its layers (`hidden` units each, `per_step` inputs to the first)
    /// and the dense output of `outputs`; `None` when it overflows. `predict` checks a file's
    /// metadata against its weights with it before building anything.
    ///
    /// ```
    /// use gradtape_cli::training::RecurrentKind;
    /// assert_eq!(RecurrentKind::Lstm.weights(1, &[4], 1), Some(4 * 4 * (1 + 4 + 1) + 4 + 1));
    /// ```
    pub fn weights(self, per_step: usize, hidden: &[usize], outputs: usize) -> Option<usize> {
        let mut fan_in = per_step;
        let mut total = 0usize;
        for &u in hidden {
            // kernel + recurrent kernel (gates x units each), biases: one row (LSTM), two (GRU)
            let (gates, bias_rows) = match self {
                RecurrentKind::Lstm => (4, 1),
                RecurrentKind::Gru => (3, 2),
            };
            let width = u.checked_mul(gates)?;
            let layer = width.checked_mul(fan_in.checked_add(u)?.checked_add(bias_rows)?)?;
            total = total.checked_add(layer)?;
            fan_in = u;
        }
        total.checked_add(fan_in.checked_mul(outputs)?.checked_add(outputs)?)
    }
}

/// The CLI's `--model lstm|gru` for rows that are sequences of `steps` steps of `per_step`
/// features each (step by step, row major): the rows are reshaped to `[steps, per_step]`, then
/// one recurrent layer per `hidden` size (`rnn_{i}`; every one but the last gives its whole
/// sequence to the next, Keras's stacking), and a linear `output` layer on the last state.
///
/// # Errors
/// When a size is 0 or `cfg.dtype` is not float.
///
/// ```
/// use gradtape::layers::Layer;
/// use gradtape_cli::training::{build_rnn, RecurrentKind, TrainConfig};
/// let m = build_rnn(RecurrentKind::Gru, 6, 2, &[8, 4], 1, &TrainConfig::default())?;
/// let x = gradtape::Tensor::zeros(&[3, 12], gradtape::DType::F32)?;
/// assert_eq!(m.call(&x, false)?.shape(), &[3, 1]);
/// // what `predict` checks a file's weights against
/// let n: usize = m.variables().iter().map(|v| v.value().numel()).sum();
/// assert_eq!(Some(n), RecurrentKind::Gru.weights(2, &[8, 4], 1));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn build_rnn(
    kind: RecurrentKind,
    steps: usize,
    per_step: usize,
    hidden: &[usize],
    outputs: usize,
    cfg: &TrainConfig,
) -> Result<Sequential> {
    use gradtape::layers::{Reshape, GRU, LSTM};
    if steps == 0 || per_step == 0 || hidden.is_empty() {
        return Err(Error::arg(
            "build_rnn",
            format!(
                "needs at least one step ({steps}), one feature per step ({per_step}) and one recurrent layer ({hidden:?})"
            ),
        ));
    }
    let mut rng = Generator::from_seed(cfg.seed);
    let mut layers: Vec<Box<dyn Layer>> =
        vec![Box::new(Reshape::new(&[steps as isize, per_step as isize]))];
    let mut fan_in = per_step;
    for (i, &units) in hidden.iter().enumerate() {
        let name = format!("rnn_{i}");
        let sequences = i + 1 < hidden.len();
        layers.push(match kind {
            RecurrentKind::Lstm => Box::new(
                LSTM::new(&name, fan_in, units, cfg.dtype, &mut rng)?.return_sequences(sequences),
            ),
            RecurrentKind::Gru => Box::new(
                GRU::new(&name, fan_in, units, cfg.dtype, &mut rng)?.return_sequences(sequences),
            ),
        });
        fan_in = units;
    }
    dense_head(&mut layers, fan_in, &[], outputs, cfg, &mut rng)?;
    Ok(Sequential::new(layers))
}

/// One epoch's figures.
///
/// ```
/// use gradtape_cli::training::EpochStats;
/// let s = EpochStats { epoch: 0, train_loss: 1.0, train_accuracy: None, val_loss: None, val_accuracy: None };
/// assert_eq!(s.epoch, 0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (classification only).
    pub train_accuracy: Option<f64>,
    /// Loss on the validation data after the epoch.
    pub val_loss: Option<f64>,
    /// Accuracy on the validation data after the epoch.
    pub val_accuracy: Option<f64>,
}

fn target_tensor(y: &Target) -> &Tensor {
    match y {
        Target::Classes { labels, .. } => labels,
        Target::Values(v) => v,
    }
}

/// The loss of `scores` (logits, or predictions for regression) against `y`.
fn loss_of(scores: &Tensor, y: &Tensor, classification: bool) -> Result<Tensor> {
    if classification {
        sparse_categorical_crossentropy(y, scores, true, Reduction::SumOverBatchSize)
    } else {
        let pred = ops::reshape(scores, &[-1])?;
        mean_squared_error(
            &ops::expand_dims(y, -1)?,
            &ops::expand_dims(&pred, -1)?,
            Reduction::SumOverBatchSize,
        )
    }
}

/// Loss and accuracy (classification) of `model` on `(x, y)`, without a tape.
///
/// # Errors
/// When the model does not fit the data.
///
/// ```
/// use gradtape::data::Target;
/// let cfg = gradtape_cli::training::TrainConfig::default();
/// let m = gradtape_cli::training::build_mlp(2, &[4], 1, &cfg)?;
/// let x = gradtape::Tensor::zeros(&[3, 2], gradtape::DType::F32)?;
/// let (loss, acc) = gradtape_cli::training::evaluate(&m, &x, &Target::Values(gradtape::Tensor::zeros(&[3], gradtape::DType::F32)?))?;
/// assert!(loss >= 0.0 && acc.is_none());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn evaluate(model: &dyn Layer, x: &Tensor, y: &Target) -> Result<(f64, Option<f64>)> {
    let scores = model.call(x, false)?;
    let classification = matches!(y, Target::Classes { .. });
    let loss = loss_of(&scores, target_tensor(y), classification)?.to_f64_vec()?[0];
    let acc = if classification {
        Some(sparse_categorical_accuracy(target_tensor(y), &scores)?)
    } else {
        None
    };
    Ok((loss, acc))
}

/// Trains `model` on `train` for `cfg.epochs`, evaluating on `validation` after each epoch and
/// calling `on_epoch` with the figures. Stops with an error when the loss stops being finite.
///
/// # Errors
/// When the data does not fit the model, or training diverges.
///
/// ```
/// use gradtape::data::Target;
/// let cfg = gradtape_cli::training::TrainConfig { epochs: 3, ..Default::default() };
/// let m = gradtape_cli::training::build_mlp(2, &[4], 1, &cfg)?;
/// let x = gradtape::Tensor::ones(&[4, 2], gradtape::DType::F32)?;
/// let y = Target::Values(gradtape::Tensor::ones(&[4], gradtape::DType::F32)?);
/// let mut seen = 0;
/// gradtape_cli::training::fit(&m, (&x, &y), None, &cfg, |_| seen += 1)?;
/// assert_eq!(seen, 3);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn fit(
    model: &dyn Layer,
    train: (&Tensor, &Target),
    validation: Option<(&Tensor, &Target)>,
    cfg: &TrainConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    fit_distributed(model, train, validation, cfg, &SingleProcess, on_epoch)
}

/// [`fit`] data-parallel over the members of `comm`: every member holds the whole data set
/// and draws the same shuffled global batches (the seed is shared); each trains on its
/// [`shard`] of every batch, the gradients are averaged (weighted by the shard sizes, so an
/// uneven last batch counts each row once) before each update, and the epoch's figures are
/// totalled over the members, so every member returns the same history and weights. Starts by
/// broadcasting member 0's variables. A member whose loss stops being finite stops them all
/// with the reason.
///
/// # Errors
/// As [`fit`], and when a global batch has fewer rows than there are members, or the group
/// fails.
///
/// ```
/// use gradtape::data::Target;
/// use gradtape::distributed::SingleProcess;
/// let cfg = gradtape_cli::training::TrainConfig { epochs: 2, ..Default::default() };
/// let x = gradtape::Tensor::from_vec(vec![0.0f32, 1.0, 2.0, 3.0], &[4, 1])?;
/// let y = Target::Values(gradtape::Tensor::from_vec(vec![0.0f32, 2.0, 4.0, 6.0], &[4])?);
/// let model = gradtape_cli::training::build_mlp(1, &[4], 1, &cfg)?;
/// let h = gradtape_cli::training::fit_distributed(&model, (&x, &y), None, &cfg, &SingleProcess, |_| {})?;
/// assert_eq!(h.len(), 2);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn fit_distributed(
    model: &dyn Layer,
    train: (&Tensor, &Target),
    validation: Option<(&Tensor, &Target)>,
    cfg: &TrainConfig,
    comm: &dyn Communicator,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    let (x, y) = train;
    let classification = matches!(y, Target::Classes { .. });
    let vars = model.trainable_variables();
    let (rank, size) = (comm.rank(), comm.size());
    if size > 1 {
        broadcast_variables(comm, &model.variables(), 0)?;
    }
    let lr = cfg.learning_rate;
    let opt: RefCell<Box<dyn Optimizer>> = RefCell::new(match cfg.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(lr)),
        OptimizerKind::Sgd => Box::new(SGD::new(lr)),
        OptimizerKind::Momentum => Box::new(SGD::new(lr).momentum(0.9)),
        OptimizerKind::RmsProp => Box::new(RMSprop::new(lr)),
    });
    // One step on one process, compiled: the loss, the scores (for the accuracy), the update.
    // Data-parallel steps average the gradients between the tape and the update, over the
    // network: those run op by op.
    let step = |a: &[Tensor]| -> Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        let scores = model.call(&a[0], true)?;
        let loss = loss_of(&scores, &a[1], classification)?;
        let grads = tape.gradient(&loss, &vars)?;
        opt.borrow_mut()
            .apply_gradients(grads.into_iter().zip(&vars))?;
        Ok(vec![loss, scores])
    };
    let compiled =
        (cfg.compiled && size == 1).then(|| gradtape::function(&step).with_name("fit_step"));
    let mut history = vec![];
    for epoch in 0..cfg.epochs {
        let (mut loss_m, mut acc_m) = (Mean::default(), Mean::default());
        let mut rows = 0.0;
        let batches = Batches::new(
            x,
            target_tensor(y),
            cfg.batch_size,
            Some(cfg.seed.wrapping_add(epoch as u64 + 1)),
            false,
        )?;
        for batch in batches {
            let (xb, yb) = batch?;
            let (xb, yb) = if size > 1 {
                let global = xb.shape()[0];
                if global < size {
                    let why = format!(
                        "a batch of {global} rows cannot be shared by {size} processes (use a larger batch)"
                    );
                    comm.fail(&why);
                    return Err(Error::arg("fit", why));
                }
                let all: Vec<i64> = (0..global as i64).collect();
                let mine = shard(&all, rank, size);
                let rows = Tensor::from_vec(mine.clone(), &[mine.len()])?;
                (ops::gather(&xb, &rows, 0)?, ops::gather(&yb, &rows, 0)?)
            } else {
                (xb, yb)
            };
            let (l, scores, grads) = match &compiled {
                Some(f) => {
                    let out: Vec<Tensor> = f.call(&[&xb, &yb])?;
                    let [loss, scores] = <[Tensor; 2]>::try_from(out)
                        .map_err(|_| Error::arg("fit", "internal: the step returns two tensors"))?;
                    (loss.to_f64_vec()?[0], scores, None)
                }
                None => {
                    let tape = GradientTape::new();
                    let scores = model.call(&xb, true)?;
                    let loss = loss_of(&scores, &yb, classification)?;
                    let grads = tape.gradient(&loss, &vars)?;
                    (loss.to_f64_vec()?[0], scores, Some(grads))
                }
            };
            if !l.is_finite() {
                // 1-based as the progress lines; `{:?}` writes 1e30 as 1e30, not 31 digits
                let why = format!(
                    "the loss became {l} in epoch {} of {}: training diverged; try a smaller learning rate than {lr:?}",
                    epoch + 1,
                    cfg.epochs
                );
                comm.fail(&why);
                return Err(Error::arg("fit", why));
            }
            // op by op, the update follows the check (compiled, the step made it)
            if let Some(grads) = grads {
                let grads = if size > 1 {
                    average_gradients_weighted(comm, grads, xb.shape()[0])?
                } else {
                    grads
                };
                opt.borrow_mut()
                    .apply_gradients(grads.into_iter().zip(&vars))?;
            }
            let n = xb.shape()[0] as f64;
            rows += n;
            loss_m.update_weighted(l, n);
            if classification {
                acc_m.update_weighted(sparse_categorical_accuracy(&yb, &scores)?, n);
            }
        }
        let (val_loss, val_accuracy) = match validation {
            Some((vx, vy)) if vx.shape()[0] > 0 => {
                let (l, a) = evaluate(model, vx, vy)?;
                (Some(l), a)
            }
            _ => (None, None),
        };
        let (train_loss, train_accuracy) = if size > 1 {
            // the figures over every member's rows
            let mut sums = [loss_m.result() * rows, acc_m.result() * rows, rows];
            comm.all_reduce_sum(&mut sums)?;
            (sums[0] / sums[2], sums[1] / sums[2])
        } else {
            (loss_m.result(), acc_m.result())
        };
        let stats = EpochStats {
            epoch,
            train_loss,
            train_accuracy: classification.then_some(train_accuracy),
            val_loss,
            val_accuracy,
        };
        on_epoch(&stats);
        history.push(stats);
    }
    Ok(history)
}
