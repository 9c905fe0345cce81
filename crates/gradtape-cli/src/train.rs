//! `gradtape train` and `gradtape predict`: an MLP on any CSV table, saved and loaded back.

use std::path::PathBuf;
use std::time::Instant;

use crate::sequence::{self, Sequence};
use crate::training::{
    build_cnn, build_mlp, build_rnn, evaluate, fit_distributed, EpochStats, OptimizerKind,
    RecurrentKind, TrainConfig,
};
use clap::ValueEnum;
use gradtape::data::{read_csv, split_indices, take_rows, Standardizer, Target, Task};
use gradtape::layers::{Activation, Layer};
use gradtape::{checkpoint, metrics, ops, DType, Tensor};
use gradtape_plot::{save, ConfusionChart, CurvesChart, Format, SeriesChart};
use serde_json::{json, Value};

use crate::output::{self, Staging};
use crate::CliError;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Predict one of the target column's values (numbers or names).
    Classification,
    /// Predict the target column's number.
    Regression,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// max(x, 0).
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// The logistic function.
    Sigmoid,
    /// Exponential linear unit.
    Elu,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Dense layers (`--hidden`).
    Mlp,
    /// Two convolution and pooling blocks, then the `--hidden` dense layers; needs `--image`.
    Cnn,
    /// LSTM layers of the `--hidden` sizes over sequences: each row's columns in time order
    /// (`--sequence`, `--features-per-step`), or windows of a time series (`--window`).
    Lstm,
    /// GRU layers, as `lstm`.
    Gru,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// Adam.
    Adam,
    /// Plain gradient descent.
    Sgd,
    /// Gradient descent with momentum 0.9.
    Momentum,
    /// RMSprop.
    Rmsprop,
}

/// Options of `gradtape train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The table: a CSV file (or .csv.gz) with a header row naming the columns.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// The column to predict; every other column is a numeric feature.
    #[arg(long, value_name = "COLUMN")]
    target: String,
    /// Classification (the target's distinct values are the classes) or regression
    /// [default: classification; regression with `--window`].
    #[arg(long, value_enum)]
    task: Option<TaskArg>,
    /// The network: an MLP, or a CNN reading each row as an image (`--image`).
    #[arg(long, value_enum, default_value_t = ModelArg::Mlp)]
    model: ModelArg,
    /// With `--model cnn`: each row's features are the pixels of an image of this size,
    /// HEIGHTxWIDTH[xCHANNELS], row by row (the digits are 8x8).
    #[arg(long, value_name = "HxW[xC]", value_parser = crate::args::image)]
    image: Option<[usize; 3]>,
    /// With `--model lstm|gru`: the feature columns that make each row's sequence, in time
    /// order, comma separated [default: every column but the target]; with `--window`: the
    /// columns each time step feeds in [default: the target alone].
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    sequence: Vec<String>,
    /// With `--model lstm|gru` on rows that are sequences: how many consecutive sequence
    /// columns make one time step [default: 1] (the digits' 64 pixels are 8 steps of 8).
    #[arg(long, value_name = "F", value_parser = crate::args::count, allow_negative_numbers = true)]
    features_per_step: Option<usize>,
    /// With `--model lstm|gru`: the table is one time series, a row per time step in time
    /// order; each example is N consecutive rows and the target's value in the next row (a
    /// forecast one step ahead). The validation and test examples are the series' end.
    #[arg(long, value_name = "N", value_parser = crate::args::count, allow_negative_numbers = true)]
    window: Option<usize>,
    /// With `--window`: the column holding each row's time, the axis of series.png (not an
    /// input unless `--sequence` names it).
    #[arg(long, value_name = "COLUMN")]
    time: Option<String>,
    /// Sizes of the hidden layers, comma separated (dense layers; with `--model lstm|gru` the
    /// recurrent layers, stacked).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "64",
        value_name = "SIZES",
        value_parser = crate::args::count,
        allow_negative_numbers = true
    )]
    hidden: Vec<usize>,
    /// Activation of the hidden layers.
    #[arg(long, value_enum, default_value_t = ActivationArg::Relu)]
    activation: ActivationArg,
    /// Passes over the training data.
    #[arg(long, default_value_t = TrainConfig::default().epochs, value_name = "E", value_parser = crate::args::count, allow_negative_numbers = true)]
    epochs: usize,
    /// Rows per gradient step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size, value_name = "B", value_parser = crate::args::count, allow_negative_numbers = true)]
    batch: usize,
    /// The update rule.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// Learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, value_name = "LR", allow_negative_numbers = true, value_parser = crate::args::positive)]
    lr: f64,
    /// Seed of the split, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0, value_name = "S", value_parser = crate::args::seed, allow_negative_numbers = true)]
    seed: u64,
    /// Fraction of rows held out for validation after each epoch.
    #[arg(long, default_value_t = 0.15, value_name = "FRACTION", value_parser = crate::args::fraction, allow_negative_numbers = true)]
    validation: f64,
    /// Fraction of rows held out for the final test.
    #[arg(long, default_value_t = 0.15, value_name = "FRACTION", value_parser = crate::args::fraction, allow_negative_numbers = true)]
    test: f64,
    /// Use the features as they are (by default each is standardised with the training rows'
    /// mean and standard deviation).
    #[arg(long)]
    no_standardize: bool,
    /// Folder for curves.png, confusion.png (classes), series.png (`--window`), history.csv,
    /// run.json and model.safetensors.
    #[arg(long, default_value = "gradtape-train", value_name = "DIR")]
    out: PathBuf,
    /// Print one JSON object to stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// No per-epoch lines and no progress bar.
    #[arg(long)]
    quiet: bool,
    /// No pictures.
    #[arg(long)]
    no_plots: bool,
    /// Also write TensorBoard logs to DIR as training goes: loss, accuracy, validation loss
    /// and accuracy, learning rate, and a histogram of every weight, per epoch.
    #[arg(long, value_name = "DIR")]
    logdir: Option<PathBuf>,
    /// Train data-parallel over the processes of `mpirun -np N gradtape train ...` (on by
    /// itself under mpirun or srun): each takes its share of every batch, the gradients are
    /// averaged, and only rank 0 prints and writes. Needs a gradtape built with
    /// `--features mpi`.
    #[arg(long)]
    distributed: bool,
    /// Run each training step op by op instead of as one compiled graph
    /// (`gradtape::function`, the default in one process; the numbers are the same bit for
    /// bit).
    #[arg(long)]
    eager: bool,
}

/// The processes to train over: MPI's under `mpirun` (or when asked), one otherwise.
fn communicator(asked: bool) -> Result<Box<dyn gradtape::distributed::Communicator>, CliError> {
    #[cfg(feature = "mpi")]
    if asked || gradtape::distributed::Mpi::launched() {
        return Ok(Box::new(gradtape::distributed::Mpi::init()?));
    }
    if asked {
        return Err(CliError(
            "--distributed needs a gradtape built with MPI: cargo build --release -p gradtape-cli --features mpi (and Open MPI installed)".into(),
        ));
    }
    Ok(Box::new(gradtape::distributed::SingleProcess))
}

/// Options of `gradtape predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The folder `gradtape train` wrote (it holds model.safetensors).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// A CSV file with the feature columns the model was trained on (and, optionally, the target).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Where the predictions go [default: predictions.csv in the model folder].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print one JSON object to stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors (the predictions are still written).
    #[arg(long)]
    quiet: bool,
}

fn activation(a: ActivationArg) -> Activation {
    match a {
        ActivationArg::Relu => Activation::Relu,
        ActivationArg::Tanh => Activation::Tanh,
        ActivationArg::Sigmoid => Activation::Sigmoid,
        ActivationArg::Elu => Activation::Elu,
    }
}

fn subset(t: &Target, idx: &[i64]) -> Result<Target, CliError> {
    Ok(match t {
        Target::Classes { labels, names } => Target::Classes {
            labels: take_rows(labels, idx)?,
            names: names.clone(),
        },
        Target::Values(v) => Target::Values(take_rows(v, idx)?),
    })
}

/// A 64-bit FNV-1a hash of a file's bytes, in hex: how `predict` knows the training file.
fn file_fingerprint(path: &std::path::Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError(format!("{}: cannot read: {e}", path.display())))?;
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Ok(format!("{h:016x}"))
}

/// The training rows' mean and standard deviation of a regression target.
struct TargetScale {
    mean: f64,
    /// 0 for a constant target: then every standardized value is 0 and every prediction the mean.
    std: f64,
}

impl TargetScale {
    fn divisor(&self) -> f64 {
        if self.std > 0.0 {
            self.std
        } else {
            1.0
        }
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor, CliError> {
        let z: Vec<f64> = v
            .to_f64_vec()?
            .iter()
            .map(|y| (y - self.mean) / self.divisor())
            .collect();
        Ok(Tensor::from_vec(z, v.shape())?.cast(v.dtype())?)
    }
    fn undo(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
    fn variance(&self) -> f64 {
        self.divisor().powi(2)
    }
}

/// Epoch figures with the mean squared error in the target's units (`units` = its variance
/// when the target was standardized, else 1).
fn in_units(s: &EpochStats, units: f64) -> EpochStats {
    EpochStats {
        train_loss: s.train_loss * units,
        val_loss: s.val_loss.map(|l| l * units),
        ..s.clone()
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// One epoch in the TensorBoard log (step = the 0-based epoch, as Keras's callback).
fn log_epoch(
    w: &mut gradtape::summary::SummaryWriter,
    s: &EpochStats,
    model: &dyn Layer,
    lr: f64,
) -> gradtape::Result<()> {
    let step = s.epoch as i64;
    w.scalar("loss", s.train_loss, step)?;
    let optional = [
        ("accuracy", s.train_accuracy),
        ("val_loss", s.val_loss),
        ("val_accuracy", s.val_accuracy),
    ];
    for (tag, v) in optional {
        if let Some(v) = v {
            w.scalar(tag, v, step)?;
        }
    }
    w.scalar("learning_rate", lr, step)?;
    for v in model.variables() {
        let name = v.name().unwrap_or("variable").to_string();
        w.histogram(&name, &v.value(), step)?;
    }
    Ok(())
}

pub fn run_train(a: TrainArgs) -> Result<(), CliError> {
    let comm = communicator(a.distributed)?;
    let result = train_on(a, comm.as_ref());
    if let Err(e) = &result {
        if comm.size() > 1 {
            // one rank's failure (a file it cannot read, a diverging loss) stops every rank
            // with the reason, instead of leaving the others waiting in a collective
            comm.fail(&e.0);
        }
    }
    result
}

fn train_on(a: TrainArgs, comm: &dyn gradtape::distributed::Communicator) -> Result<(), CliError> {
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(CliError(format!(
            "--lr {:?}: the learning rate must be a positive number",
            a.lr
        )));
    }
    if a.epochs == 0 || a.batch == 0 {
        return Err(CliError(format!(
            "--epochs {} and --batch {} must be at least 1",
            a.epochs, a.batch
        )));
    }
    if a.hidden.contains(&0) {
        return Err(CliError(format!(
            "--hidden {:?}: layer sizes must be at least 1",
            a.hidden
        )));
    }
    let rank0 = comm.rank() == 0;
    let image = match (a.model, a.image) {
        (ModelArg::Cnn, None) => {
            return Err(CliError(
                "--model cnn needs --image HxW[xC]: the size of the image each row holds".into(),
            ))
        }
        (ModelArg::Cnn, image) => image,
        (_, Some(_)) => {
            return Err(CliError(
                "--image is for --model cnn (the other models read the features as they are)"
                    .into(),
            ))
        }
        (_, None) => None,
    };
    let recurrent = match a.model {
        ModelArg::Lstm => Some(RecurrentKind::Lstm),
        ModelArg::Gru => Some(RecurrentKind::Gru),
        ModelArg::Mlp | ModelArg::Cnn => None,
    };
    let sequence_options = [
        ("--sequence", !a.sequence.is_empty()),
        ("--features-per-step", a.features_per_step.is_some()),
        ("--window", a.window.is_some()),
        ("--time", a.time.is_some()),
    ];
    if let (None, Some((name, _))) = (recurrent, sequence_options.iter().find(|o| o.1)) {
        return Err(CliError(format!(
            "{name} is for the sequence models (--model lstm or gru)"
        )));
    }
    if a.window.is_some() && a.features_per_step.is_some() {
        return Err(CliError(
            "--features-per-step is for rows that are sequences; with --window each step is one row and its features are the --sequence columns".into(),
        ));
    }
    if a.time.is_some() && a.window.is_none() {
        return Err(CliError(
            "--time names the time column of a series: it goes with --window N".into(),
        ));
    }
    let task = match (a.task, a.window) {
        (Some(TaskArg::Classification), Some(_)) => {
            return Err(CliError(
                "--window forecasts the series' next value, a regression: leave --task out or give --task regression".into(),
            ))
        }
        (Some(TaskArg::Classification), None) | (None, None) => Task::Classification,
        (Some(TaskArg::Regression), _) | (None, Some(_)) => Task::Regression,
    };
    // The output folder is checked before the work, so a bad --out costs no training.
    // Under mpirun only rank 0 writes, so only rank 0 checks and stages the folder (ranks
    // staging one folder at once raced).
    let outputs = [
        "curves.png",
        "confusion.png",
        "series.png",
        "history.csv",
        "run.json",
        "model.safetensors",
    ];
    let staged = rank0.then(|| Staging::new(&a.out, &outputs)).transpose()?;
    let mut log = a
        .logdir
        .as_ref()
        .filter(|_| rank0)
        .map(gradtape::summary::SummaryWriter::create)
        .transpose()?;
    let table = read_csv(&a.data)?;
    let fingerprint = file_fingerprint(&a.data)?;
    let (d, seq) = match (recurrent, a.window) {
        (_, Some(w)) => {
            let (d, s) =
                sequence::window_dataset(&table, &a.target, &a.sequence, w, a.time.as_deref())?;
            (d, Some(s))
        }
        (Some(_), None) => {
            let per_step = a.features_per_step.unwrap_or(1);
            let (d, s) = sequence::row_sequences(&table, &a.target, task, &a.sequence, per_step)?;
            (d, Some(s))
        }
        (None, None) => (table.dataset(&a.target, task, DType::F32)?, None),
    };
    let n = d.features.shape()[0];
    let (tr, va, te) = match &seq {
        Some(s) if s.window.is_some() => sequence::chronological_split(n, a.validation, a.test)?,
        _ => split_indices(n, a.validation, a.test, a.seed)?,
    };
    if tr.len() < 2 {
        return Err(CliError(format!(
            "{}: {n} rows leave fewer than 2 to train on",
            a.data.display()
        )));
    }
    let raw_train = take_rows(&d.features, &tr)?;
    // an image's pixels are standardized together, a sequence's features one by one over all
    // steps, other features one by one
    let standardizer = match (a.no_standardize, image, &seq) {
        (true, ..) => None,
        (false, Some(_), _) => Some(Standardizer::fit_global(&raw_train)?),
        (false, None, Some(s)) => Some(sequence::per_step_standardizer(&raw_train, s.per_step)?),
        (false, None, None) => Some(Standardizer::fit(&raw_train)?),
    };
    let prep = |idx: &[i64]| -> Result<Tensor, CliError> {
        let x = take_rows(&d.features, idx)?;
        Ok(match &standardizer {
            Some(s) => s.transform(&x)?,
            None => x,
        })
    };
    let (x_tr, x_va, x_te) = (prep(&tr)?, prep(&va)?, prep(&te)?);
    // A regression target is standardized too, with the training rows' mean and standard
    // deviation: a target in the hundreds left the output bias thousands of small steps away
    // from it (test MSE 10,422 against 60 on a house-price table, defaults). Losses are
    // reported in the target's own units, and predict undoes the scaling.
    let target_scale = match (&d.target, a.no_standardize) {
        (Target::Values(v), false) => {
            let y = take_rows(v, &tr)?;
            let s = Standardizer::fit(&y.reshape(&[-1, 1])?)?;
            Some(TargetScale {
                mean: s.mean[0],
                std: s.std[0],
            })
        }
        _ => None,
    };
    let scaled = |idx: &[i64]| -> Result<Target, CliError> {
        let t = subset(&d.target, idx)?;
        match (&target_scale, t) {
            (Some(sc), Target::Values(v)) => Ok(Target::Values(sc.apply(&v)?)),
            (_, t) => Ok(t),
        }
    };
    let (y_tr, y_va, y_te) = (scaled(&tr)?, scaled(&va)?, scaled(&te)?);
    // the mean squared error in the target's units is the standardized one times this
    let units = target_scale.as_ref().map_or(1.0, TargetScale::variance);
    let classes: Option<Vec<String>> = match &d.target {
        Target::Classes { names, .. } => Some(names.clone()),
        Target::Values(_) => None,
    };
    let outputs = classes.as_ref().map_or(1, |c| c.len());
    let cfg = TrainConfig {
        hidden: a.hidden.clone(),
        activation: activation(a.activation),
        epochs: a.epochs,
        batch_size: a.batch,
        learning_rate: a.lr,
        optimizer: match a.optimizer {
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Momentum => OptimizerKind::Momentum,
            OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
        },
        seed: a.seed,
        dtype: DType::F32,
        compiled: !a.eager,
    };
    let model = match (image, recurrent, &seq) {
        (None, Some(kind), Some(s)) => {
            build_rnn(kind, s.steps, s.per_step, &a.hidden, outputs, &cfg)?
        }
        (Some(img), ..) => {
            let pixels: usize = img.iter().product();
            if pixels != d.feature_names.len() {
                return Err(CliError(format!(
                    "--image {}x{}x{} is {pixels} pixels, but {} has {} feature columns",
                    img[0],
                    img[1],
                    img[2],
                    a.data.display(),
                    d.feature_names.len()
                )));
            }
            build_cnn(img, outputs, &cfg)?
        }
        _ => build_mlp(d.feature_names.len(), &cfg.hidden, outputs, &cfg)?,
    };
    let model_name = match (image, &seq) {
        (Some([h, w, c]), _) => format!("CNN on {h}x{w}x{c} images, dense {:?}", a.hidden),
        (None, Some(s)) => format!(
            "{} {:?} over {} steps of {} feature{}",
            format!("{:?}", a.model).to_uppercase(),
            a.hidden,
            s.steps,
            s.per_step,
            if s.per_step == 1 { "" } else { "s" }
        ),
        (None, None) => format!("MLP {:?}", a.hidden),
    };
    // what a row of the model is: a table's row, or a window of the series
    let examples = match seq.as_ref().and_then(|s| s.window) {
        Some(w) => format!("{} rows as {n} windows of {w}", table.rows.len()),
        None => format!("{n} rows"),
    };
    let human = !a.json && rank0;
    if human {
        println!(
            "gradtape train: {} ({} train, {} validation, {} test), {} features, {} ({}), {}",
            examples,
            tr.len(),
            va.len(),
            te.len(),
            d.features.shape()[1],
            a.target,
            classes
                .as_ref()
                .map_or("regression".to_string(), |c| format!("{} classes", c.len())),
            model_name
        );
    }
    let lines = human && !a.quiet;
    let bar = output::progress_bar(a.epochs, lines, "{bar:40} epoch {pos}/{len}  {msg}");
    let start = Instant::now();
    let validation = (!va.is_empty()).then_some((&x_va, &y_va));
    let mut log_error: Option<gradtape::Error> = None;
    let history = fit_distributed(
        &model,
        (&x_tr, &y_tr),
        validation,
        &cfg,
        comm,
        |s: &EpochStats| {
            let s = &in_units(s, units);
            if let (Some(w), None) = (log.as_mut(), &log_error) {
                log_error = log_epoch(w, s, &model, cfg.learning_rate).err();
            }
            let msg = format!(
                "loss {:.4}{}{}{}",
                s.train_loss,
                s.train_accuracy
                    .map(|v| format!(", accuracy {v:.4}"))
                    .unwrap_or_default(),
                s.val_loss
                    .map(|v| format!(", val_loss {v:.4}"))
                    .unwrap_or_default(),
                s.val_accuracy
                    .map(|v| format!(", val_accuracy {v:.4}"))
                    .unwrap_or_default()
            );
            match &bar {
                Some(pb) => {
                    pb.set_position(s.epoch as u64 + 1);
                    pb.set_message(msg);
                }
                None if lines => println!("Epoch {}/{}: {msg}", s.epoch + 1, a.epochs),
                None => {}
            }
        },
    );
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let history: Vec<EpochStats> = history
        .map_err(|e| CliError(e.to_string()))?
        .iter()
        .map(|s| in_units(s, units))
        .collect();
    if let Some(e) = log_error {
        return Err(e.into());
    }
    if let Some(w) = log.as_mut() {
        w.flush()?;
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let Some(mut stage) = staged else {
        return Ok(()); // every rank holds the same model; rank 0 reports and writes
    };

    // The held-out figures: the test rows, or the validation rows when there is no test split.
    let (held, hx, hy) = if !te.is_empty() {
        ("test", &x_te, &y_te)
    } else {
        ("validation", &x_va, &y_va)
    };
    let (held_loss, held_acc) = if hx.shape()[0] > 0 {
        evaluate(&model, hx, hy).map(|(l, a)| (Some(l * units), a))?
    } else {
        (None, None)
    };
    // For regression: how much of the held-out rows' variance the model explains (R^2), and
    // the error of always predicting the training rows' mean, so a useless model shows.
    let (held_r2, baseline) = match (&d.target, held_loss) {
        (Target::Values(v), Some(mse)) => {
            let held_idx = if !te.is_empty() { &te } else { &va };
            let held_y = take_rows(v, held_idx)?.to_f64_vec()?;
            let train_y = take_rows(v, &tr)?.to_f64_vec()?;
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let spread = |c: f64| mean(&held_y.iter().map(|y| (y - c).powi(2)).collect::<Vec<_>>());
            let var = spread(mean(&held_y));
            let r2 = (var > 0.0).then(|| 1.0 - mse / var);
            (r2, Some(spread(mean(&train_y))))
        }
        _ => (None, None),
    };
    // A forecast's honest yardstick: saying the series' last value again (persistence).
    let persistence = match (seq.as_ref().and_then(|s| s.window), held_loss) {
        (Some(w), Some(_)) => {
            let y = sequence::numbers(&table, table.column(&a.target)?)?;
            let held_idx = if !te.is_empty() { &te } else { &va };
            let sq: f64 = held_idx
                .iter()
                .map(|&i| (y[i as usize + w] - y[i as usize + w - 1]).powi(2))
                .sum();
            Some(sq / held_idx.len() as f64)
        }
        _ => None,
    };
    let confusion = match (&classes, hy) {
        (Some(names), Target::Classes { labels, .. }) if hx.shape()[0] > 0 => {
            let pred = ops::argmax(&model.call(hx, false)?, -1)?;
            Some(metrics::confusion_matrix(labels, &pred, names.len())?)
        }
        _ => None,
    };

    if !a.no_plots {
        let col = |f: fn(&EpochStats) -> Option<f64>| -> Option<Vec<f64>> {
            history.iter().map(f).collect()
        };
        let curves = CurvesChart {
            train_loss: history.iter().map(|s| s.train_loss).collect(),
            val_loss: col(|s| s.val_loss),
            train_accuracy: col(|s| s.train_accuracy),
            val_accuracy: col(|s| s.val_accuracy),
            loss_name: match classes {
                Some(_) => "cross-entropy".into(),
                None => "mean squared error".into(),
            },
        };
        save(&curves, &stage.path("curves.png"), Format::Png)?;
        if let (Some(m), Some(names)) = (&confusion, &classes) {
            let chart = ConfusionChart {
                matrix: m.clone(),
                names: names.clone(),
                title: format!("Confusion matrix ({held} rows)"),
            };
            save(&chart, &stage.path("confusion.png"), Format::Png)?;
        }
        if let Some(Sequence {
            window: Some(w),
            time,
            ..
        }) = &seq
        {
            let all: Vec<i64> = (0..n as i64).collect();
            let mut predicted = model.call(&prep(&all)?, false)?.to_f64_vec()?;
            if let Some(sc) = &target_scale {
                predicted.iter_mut().for_each(|p| *p = sc.undo(*p));
            }
            let time_values = match time {
                Some(c) => sequence::numbers(&table, table.column(c)?)?,
                None => (1..=table.rows.len()).map(|r| r as f64).collect(),
            };
            let held_out = va.len() + te.len();
            let chart = SeriesChart {
                truth: sequence::numbers(&table, table.column(&a.target)?)?,
                predicted_time: time_values[*w..].to_vec(),
                predicted,
                held_out_from: (held_out > 0).then(|| time_values[w + tr.len()]),
                time_name: time.clone().unwrap_or_else(|| "row".into()),
                value_name: a.target.clone(),
                title: format!("{} one step ahead from the last {w} rows", a.target),
                time: time_values,
            };
            save(&chart, &stage.path("series.png"), Format::Png)?;
        }
    }
    let mut csv = String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy\n");
    for s in &history {
        csv += &format!(
            "{},{},{},{},{}\n",
            s.epoch + 1,
            s.train_loss,
            fmt_opt(s.train_accuracy),
            fmt_opt(s.val_loss),
            fmt_opt(s.val_accuracy)
        );
    }
    stage.write("history.csv", csv.as_bytes())?;
    let model_meta = json!({
        "format": "gradtape-mlp-1",
        "task": if classes.is_some() { "classification" } else { "regression" },
        "target": a.target,
        "features": d.feature_names,
        "classes": classes,
        "model": format!("{:?}", a.model).to_lowercase(),
        "image": image,
        "hidden": a.hidden,
        "sequence": seq.as_ref().map(Sequence::to_json),
        "activation": format!("{:?}", a.activation).to_lowercase(),
        "standardizer": standardizer.as_ref().map(|s| json!({"mean": s.mean, "std": s.std})),
        "target_standardizer": target_scale.as_ref().map(|s| json!({"mean": s.mean, "std": s.std})),
        // Enough for `predict` to know the training file again and score its splits apart.
        "split": {
            "rows": n,
            "seed": a.seed,
            "validation": a.validation,
            "test": a.test,
            "order": if seq.as_ref().is_some_and(|s| s.window.is_some()) { "time" } else { "shuffled" },
            "data_fingerprint": fingerprint,
        },
    });
    let meta = [("gradtape".to_string(), model_meta.to_string())]
        .into_iter()
        .collect();
    checkpoint::save(&stage.path("model.safetensors"), &model.variables(), &meta)?;
    let last = history.last();
    let result = json!({
        "task": model_meta["task"],
        "target": a.target,
        "rows": {"train": tr.len(), "validation": va.len(), "test": te.len()},
        "features": d.feature_names.len(),
        "classes": classes,
        "held_out": held,
        "held_out_loss": held_loss,
        "held_out_accuracy": held_acc,
        "held_out_r2": held_r2,
        "held_out_mean_predictor_loss": baseline,
        "held_out_last_value_loss": persistence,
        "train_loss": last.map(|s| s.train_loss),
        "train_accuracy": last.and_then(|s| s.train_accuracy),
        "epochs": a.epochs,
        "batch": a.batch,
        "lr": a.lr,
        "optimizer": format!("{:?}", a.optimizer).to_lowercase(),
        "model": format!("{:?}", a.model).to_lowercase(),
        "image": image,
        "hidden": a.hidden,
        "sequence": seq.as_ref().map(Sequence::to_json),
        "seed": a.seed,
        "train_seconds": train_seconds,
        "confusion_matrix": confusion,
    });
    stage.write(
        "run.json",
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    let written = stage.commit()?;
    if a.json {
        println!("{result}");
        return Ok(());
    }
    match (held_loss, held_acc) {
        (Some(l), Some(acc)) => println!(
            "Held-out ({held}) accuracy {:.2}%, loss {l:.4}",
            acc * 100.0
        ),
        (Some(l), None) => {
            let r2 = held_r2.map_or("undefined (the rows' target is constant)".into(), |r| {
                format!("{r:.4}")
            });
            println!("Held-out ({held}) mean squared error {l:.4}, R\u{b2} {r2}");
            let yardsticks = [
                ("the training mean", baseline),
                ("the previous value", persistence),
            ];
            for (what, b) in yardsticks {
                if let Some(b) = b {
                    let verdict = if l >= b {
                        "; the model is no better"
                    } else {
                        ""
                    };
                    println!("  (always predicting {what}: mean squared error {b:.4}{verdict})");
                }
            }
        }
        _ => println!("No held-out rows (--validation and --test are 0)"),
    }
    println!("Training took {train_seconds:.2} s");
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("Wrote: {}", names.join(", "));
    Ok(())
}

pub fn run_predict(a: PredictArgs) -> Result<(), CliError> {
    if !a.model.is_dir() {
        let what = if a.model.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(CliError(format!(
            "--model {}: {what}; give the folder gradtape train wrote (it holds model.safetensors)",
            a.model.display()
        )));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.model.join("predictions.csv"));
    let (dir, name) = output::split_file_path(&out, "--out", "predictions.csv")?;
    let mut stage = Staging::new(dir, &[name])?;
    let path = a.model.join("model.safetensors");
    let ck = checkpoint::load(&path)?;
    let bad = |m: &str| CliError(format!("{}: {m}", path.display()));
    let meta: Value = ck
        .metadata
        .get("gradtape")
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or_else(|| bad("not a model written by gradtape train (no gradtape metadata)"))?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(String::from))
            .collect()
    };
    let features = strings(&meta["features"]).ok_or_else(|| bad("metadata has no feature list"))?;
    // A list of sizes in the metadata (empty when absent).
    // (a number that is not a whole size is an error, not skipped: `1e12` skipped made
    // hidden=[1e12] a model with no hidden layer)
    let sizes = |key: &str| -> Result<Vec<usize>, CliError> {
        let Some(list) = meta[key].as_array() else {
            return Ok(vec![]);
        };
        list.iter()
            .map(|v| {
                v.as_u64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                            .map(|f| f as u64)
                    })
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| bad(&format!("the metadata's {key} holds {v}, not a size")))
            })
            .collect()
    };
    let hidden = sizes("hidden")?;
    let seq = Sequence::from_json(&meta["sequence"]).map_err(|m| bad(&m))?;
    let recurrent = match meta["model"].as_str() {
        Some("lstm") => Some(RecurrentKind::Lstm),
        Some("gru") => Some(RecurrentKind::Gru),
        _ => None,
    };
    let classes = strings(&meta["classes"]);
    let act = match meta["activation"].as_str().unwrap_or("relu") {
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "elu" => Activation::Elu,
        other => {
            return Err(bad(&format!(
                "unknown activation {other:?} in the metadata (relu, tanh, sigmoid, elu)"
            )))
        }
    };
    // The metadata is input like any other: sizes it gives must describe the weights the file
    // holds before anything is built from them (hidden=[1e12] aborted allocating).
    let weights: usize = ck.tensors.values().map(Tensor::numel).sum();
    let outputs = classes.as_ref().map_or(1, |c| c.len());
    let dense_params = |inputs: usize| -> Option<usize> {
        let widths: Vec<usize> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(outputs))
            .collect();
        widths.windows(2).try_fold(0usize, |acc, w| {
            acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?)
        })
    };
    let too_many = match (meta["model"].as_str(), recurrent, &seq) {
        (Some("cnn"), ..) => hidden.iter().any(|&h| h > weights), // a layer of h units has h biases
        (_, Some(kind), Some(s)) => kind
            .weights(s.per_step, &hidden, outputs)
            .is_none_or(|p| p > weights),
        _ => dense_params(features.len()).is_none_or(|p| p > weights),
    };
    if too_many {
        return Err(bad(&format!(
            "the metadata's layers ({} features, hidden {hidden:?}) need more weights than the file's {weights}",
            features.len()
        )));
    }
    let cfg = TrainConfig {
        hidden: hidden.clone(),
        activation: act,
        ..TrainConfig::default()
    };
    let model = match meta["model"].as_str().unwrap_or("mlp") {
        "mlp" => build_mlp(features.len(), &hidden, outputs, &cfg)?,
        "cnn" => {
            let image = sizes("image")?;
            let [h, w, c] = image[..] else {
                return Err(bad("a cnn model without its image size in the metadata"));
            };
            let pixels = h.checked_mul(w).and_then(|p| p.checked_mul(c));
            if pixels != Some(features.len()) {
                return Err(bad(&format!(
                    "the metadata's image {h}x{w}x{c} does not hold its {} features",
                    features.len()
                )));
            }
            build_cnn([h, w, c], outputs, &cfg)?
        }
        "lstm" | "gru" => {
            let (Some(kind), Some(s)) = (recurrent, &seq) else {
                return Err(bad("a sequence model without its sequence in the metadata"));
            };
            // a window's steps read the feature columns; a row's steps are them
            let columns = match s.window {
                Some(_) => s.per_step,
                None => s.steps.saturating_mul(s.per_step),
            };
            if columns != features.len() {
                return Err(bad(&format!(
                    "the metadata's sequence ({} steps of {}) does not fit its {} features",
                    s.steps,
                    s.per_step,
                    features.len()
                )));
            }
            build_rnn(kind, s.steps, s.per_step, &hidden, outputs, &cfg)?
        }
        other => {
            return Err(bad(&format!(
                "unknown model kind {other:?} in the metadata"
            )))
        }
    };
    checkpoint::restore(&path, &model.variables())?;
    // every weight in the file must belong to the model the metadata describes: a model built
    // from wrong metadata can find tensors of the shapes it asks for and ignore the rest
    let vars = model.variables();
    let names: std::collections::BTreeSet<&str> = vars.iter().filter_map(|v| v.name()).collect();
    let unused: Vec<&str> = ck
        .tensors
        .keys()
        .map(String::as_str)
        .filter(|k| !names.contains(k))
        .collect();
    if !unused.is_empty() {
        return Err(bad(&format!(
            "holds weights the metadata's model does not have ({}): the metadata does not describe these weights",
            unused.join(", ")
        )));
    }

    let table = read_csv(&a.data)?;
    if table.rows.is_empty() {
        return Err(CliError(format!(
            "{}: the file has a header row but no data rows",
            a.data.display()
        )));
    }
    let cols: Vec<usize> = features
        .iter()
        .map(|f| table.column(f))
        .collect::<Result<_, _>>()?;
    let window = seq.as_ref().and_then(|s| s.window);
    // the file's row each example predicts: its own, or the one after its window
    let targets_rows: Vec<usize> = (window.unwrap_or(0)..table.rows.len()).collect();
    let n = targets_rows.len();
    let mut x = Vec::with_capacity(table.rows.len() * cols.len());
    // (a window model's rows are read by `sequence::windows` below)
    let table_rows = if window.is_none() {
        table.rows.len()
    } else {
        0
    };
    for r in 0..table_rows {
        for &c in &cols {
            x.push(table.number("predict", r, c)?);
        }
    }
    let rows_read = table.rows.len();
    let mut xt = match window {
        Some(w) => sequence::windows(&table, &cols, w)?,
        None => Tensor::from_vec(x, &[rows_read, cols.len()])?.cast(DType::F32)?,
    };
    if let Some(s) = meta.get("standardizer").filter(|s| !s.is_null()) {
        let nums = |v: &Value| -> Vec<f64> {
            v.as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        };
        let st = Standardizer {
            mean: nums(&s["mean"]),
            std: nums(&s["std"]),
        };
        xt = st.transform(&xt)?;
    }
    let scores = model.call(&xt, false)?;
    let target = meta["target"].as_str().unwrap_or("");
    let truth = table.column(target).ok();
    // Which split each row was in, when this is the very file the model was trained on (same
    // bytes, same row count): the split is recomputed from the seed and fractions it used.
    let splits: Option<Vec<&str>> = (|| {
        let sp = meta.get("split")?;
        let same = sp["data_fingerprint"].as_str()? == file_fingerprint(&a.data).ok()?
            && sp["rows"].as_u64()? == n as u64;
        if !same {
            return None;
        }
        let (validation, test) = (sp["validation"].as_f64()?, sp["test"].as_f64()?);
        let (_, va, te) = match sp["order"].as_str() {
            Some("time") => sequence::chronological_split(n, validation, test).ok()?,
            _ => split_indices(n, validation, test, sp["seed"].as_u64()?).ok()?,
        };
        let mut which = vec!["train"; n];
        for (idx, name) in [(&va, "validation"), (&te, "test")] {
            for &i in idx.iter() {
                which[i as usize] = name;
            }
        }
        Some(which)
    })();
    let split_col = |r: usize| {
        splits
            .as_ref()
            .map(|s| format!(",{}", s[r]))
            .unwrap_or_default()
    };
    let split_head = if splits.is_some() { ",split" } else { "" };
    // A forecast's line says which row it predicts: that row's time, or its 1-based number.
    let time_col = seq
        .as_ref()
        .and_then(|s| s.time.as_deref())
        .and_then(|c| table.column(c).ok());
    let (lead_head, leads): (String, Vec<String>) = match (window, time_col) {
        (None, _) => (String::new(), vec![String::new(); n]),
        (Some(_), Some(c)) => (
            format!("{},", table.columns[c]),
            targets_rows
                .iter()
                .map(|&r| format!("{},", table.rows[r][c]))
                .collect(),
        ),
        (Some(_), None) => (
            "row,".into(),
            targets_rows.iter().map(|r| format!("{},", r + 1)).collect(),
        ),
    };
    let lead = |r: usize| &leads[r];
    let truth_rows = || targets_rows.iter().map(|&r| &table.rows[r]);
    let mut csv = String::new();
    let mut report = json!({"rows": n, "rows_scored": "all"});
    // Per-row score against the target: 1/0 for a class, the squared error for a number.
    let mut per_row: Option<Vec<f64>> = None;
    let metric = if classes.is_some() {
        "accuracy"
    } else {
        "mean_squared_error"
    };
    match &classes {
        Some(names) => {
            let probs = ops::softmax(&scores, -1)?.to_f64_vec()?;
            let pred = ops::argmax(&scores, -1)?.to_vec::<i64>()?;
            csv += &format!(
                "{lead_head}predicted,{}{split_head}\n",
                names
                    .iter()
                    .map(|c| format!("p_{c}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for (r, &p) in pred.iter().enumerate() {
                let ps: Vec<String> = probs[r * names.len()..(r + 1) * names.len()]
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect();
                csv += &format!(
                    "{}{},{}{}\n",
                    lead(r),
                    names[p as usize],
                    ps.join(","),
                    split_col(r)
                );
            }
            if let Some(t) = truth {
                per_row = Some(
                    pred.iter()
                        .zip(truth_rows())
                        .map(|(p, row)| f64::from(u8::from(names[*p as usize] == row[t])))
                        .collect(),
                );
            }
        }
        None => {
            let mut v = scores.to_f64_vec()?;
            if let Some(t) = meta.get("target_standardizer").filter(|t| !t.is_null()) {
                let sc = TargetScale {
                    mean: t["mean"]
                        .as_f64()
                        .ok_or_else(|| bad("the target standardizer has no mean"))?,
                    std: t["std"]
                        .as_f64()
                        .ok_or_else(|| bad("the target standardizer has no std"))?,
                };
                v.iter_mut().for_each(|p| *p = sc.undo(*p));
            }
            csv += &format!("{lead_head}predicted{split_head}\n");
            for (r, p) in v.iter().enumerate() {
                csv += &format!("{}{p}{}\n", lead(r), split_col(r));
            }
            if let Some(t) = truth {
                per_row = Some(
                    v.iter()
                        .zip(truth_rows())
                        .map(|(p, r)| (p - r[t].parse().unwrap_or(f64::NAN)).powi(2))
                        .collect(),
                );
            }
        }
    }
    let mean_over = |rows: &mut dyn Iterator<Item = f64>| {
        let (sum, count) = rows.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
        (count > 0).then(|| sum / count as f64)
    };
    if let Some(scores) = &per_row {
        report[metric] = json!(mean_over(&mut scores.iter().copied()));
        if let Some(which) = &splits {
            let mut by = serde_json::Map::new();
            for split in ["train", "validation", "test"] {
                let mut rows = scores.iter().zip(which).filter(|(_, w)| **w == split);
                let count = which.iter().filter(|w| **w == split).count();
                by.insert(
                    split.into(),
                    json!({"rows": count, metric: mean_over(&mut rows.by_ref().map(|(v, _)| *v))}),
                );
            }
            report["by_split"] = Value::Object(by);
        }
    }
    report["training_file"] = json!(splits.is_some());
    stage.write(name, csv.as_bytes())?;
    stage.commit()?;
    report["predictions"] = json!(out.display().to_string());
    if a.json {
        println!("{report}");
        return Ok(());
    }
    if a.quiet {
        return Ok(());
    }
    match window {
        Some(w) => println!(
            "Predicted rows {} to {rows_read} of {} (each from the {w} before it) into {}",
            w + 1,
            a.data.display(),
            out.display()
        ),
        None => println!(
            "Predicted all {n} rows of {} into {}",
            a.data.display(),
            out.display()
        ),
    }
    let shown = |v: f64| match metric {
        "accuracy" => format!("{:.2}%", v * 100.0),
        _ => format!("{v:.4}"),
    };
    let what = match metric {
        "accuracy" => "Accuracy",
        _ => "Mean squared error",
    };
    if let Some(all) = report[metric].as_f64() {
        match report.get("by_split") {
            Some(by) => {
                println!(
                    "{what} against the {target:?} column (this is the file the model was trained on, so its splits are scored apart):"
                );
                for split in ["test", "validation", "train"] {
                    let rows = by[split]["rows"].as_u64().unwrap_or(0);
                    let label = match split {
                        "train" => "seen in training",
                        _ => "held out",
                    };
                    if let Some(v) = by[split][metric].as_f64() {
                        println!("  {split} rows ({label}, {rows}): {}", shown(v));
                    }
                }
                println!("  all {n} rows: {}", shown(all));
            }
            None => println!(
                "{what} against the {target:?} column, over all {n} rows: {}",
                shown(all)
            ),
        }
    }
    Ok(())
}
