//! `gradtape linreg`: the seed tutorial as a command.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use gradtape::{ops, Axes, DType, GradientTape, Tensor, TracedOp, Variable, VariableOptions};
use gradtape_plot::{save, save_gif, CostChart, FitChart, Format, LandscapeChart, ParamsChart};
use serde_json::{json, Value};

use crate::data::{self, Data};
use crate::output::{self, Names, Staging};
use crate::CliError;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Loss {
    /// Sum of squared errors (the tutorial's).
    Sse,
    /// Mean of squared errors.
    Mse,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Optimizer {
    /// Plain gradient descent: v -= lr · dv (the tutorial's).
    Sgd,
    /// SGD with momentum 0.9 (Keras's update rule).
    Momentum,
    /// Adam with Keras's defaults besides the learning rate.
    Adam,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// 32-bit floats (the tutorial's).
    F32,
    /// 64-bit floats.
    F64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// PNG pictures.
    Png,
    /// SVG pictures.
    Svg,
    /// Both.
    Both,
}

/// Options of `gradtape linreg` (their names are part of the contract).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read the data from this CSV file instead of generating it. A header row is optional (the
    /// first row is a header when one of its cells is not a number).
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Column of x in the CSV file: a header name or a 0-based index [default: the first column].
    #[arg(long = "x", value_name = "COL")]
    x_col: Option<String>,
    /// Column of y in the CSV file: a header name or a 0-based index [default: the second column].
    #[arg(long = "y", value_name = "COL")]
    y_col: Option<String>,
    /// Number of generated points.
    #[arg(long, default_value_t = 200, value_name = "N", value_parser = crate::args::count, allow_negative_numbers = true)]
    points: usize,
    /// Seed of the generated data (same seed, same data, on every machine).
    #[arg(long, default_value_t = 0, value_name = "S", value_parser = crate::args::seed, allow_negative_numbers = true)]
    seed: u64,
    /// Standard deviation of the generated noise.
    #[arg(long, default_value_t = 0.3, value_name = "SIGMA", value_parser = crate::args::non_negative, allow_negative_numbers = true)]
    noise: f64,
    /// True intercept of the generated data.
    #[arg(
        long = "true-a",
        default_value_t = 0.3,
        value_name = "A",
        allow_negative_numbers = true,
        value_parser = crate::args::finite
    )]
    true_a: f64,
    /// True slope of the generated data.
    #[arg(
        long = "true-b",
        default_value_t = 0.5,
        value_name = "B",
        allow_negative_numbers = true,
        value_parser = crate::args::finite
    )]
    true_b: f64,
    /// Number of epochs (each: evaluate the cost, then one taped training step).
    #[arg(long, default_value_t = 70, value_name = "E", value_parser = crate::args::count, allow_negative_numbers = true)]
    epochs: usize,
    /// Learning rate.
    #[arg(
        long,
        default_value_t = 0.001,
        value_name = "LR",
        allow_negative_numbers = true,
        value_parser = crate::args::positive
    )]
    lr: f64,
    /// The loss.
    #[arg(long, value_enum, default_value_t = Loss::Sse)]
    loss: Loss,
    /// The update rule.
    #[arg(long, value_enum, default_value_t = Optimizer::Sgd)]
    optimizer: Optimizer,
    /// Precision of the training.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// Folder for the output files: fit, cost, params and landscape pictures, history.csv
    /// (epoch, a, b, cost; the last row is the state after training) and run.json.
    #[arg(long, default_value = "gradtape-out", value_name = "DIR")]
    out: PathBuf,
    /// Picture format.
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    format: FormatArg,
    /// Train and report only: no pictures (history.csv and run.json are still written).
    #[arg(long)]
    no_plots: bool,
    /// Also write fit.gif, the line converging epoch by epoch.
    #[arg(long)]
    gif: bool,
    /// Print one JSON object to stdout instead of the human report.
    #[arg(long)]
    json: bool,
    /// No per-epoch lines and no progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print what the tape recorded for one training step (the first): each operation with its
    /// input and output shapes, the sources and the gradients returned (on stderr with --json).
    #[arg(long)]
    explain: bool,
    /// Write that training step as a Graphviz graph to FILE: the tape's operations and, unless
    /// --eager, the compiled step's graph beside them (a cluster, its fusion groups dashed).
    #[arg(long, value_name = "FILE")]
    tape_dot: Option<PathBuf>,
    /// Run each epoch's step op by op instead of as one compiled graph
    /// (`gradtape::function`, the default; the numbers are the same bit for bit).
    #[arg(long)]
    eager: bool,
    /// Also write TensorBoard logs to DIR: loss, a, b and the learning rate per epoch, and a
    /// histogram of the weights (`tensorboard --logdir DIR`).
    #[arg(long, value_name = "DIR")]
    logdir: Option<PathBuf>,
}

impl Args {
    fn check(&self) -> Result<(), CliError> {
        let bad = |m: String| Err(CliError(m));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr {:?}: the learning rate must be a positive number",
                self.lr
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs 0: at least one epoch is needed".into());
        }
        if self.data.is_none() {
            if self.points < 2 {
                return bad(format!(
                    "--points {}: at least 2 points are needed",
                    self.points
                ));
            }
            if !(self.noise.is_finite() && self.noise >= 0.0) {
                return bad(format!("--noise {}: must be a number >= 0", self.noise));
            }
            if !(self.true_a.is_finite() && self.true_b.is_finite()) {
                return bad("--true-a and --true-b must be finite numbers".into());
            }
            if self.x_col.is_some() || self.y_col.is_some() {
                return bad("--x and --y choose columns of a CSV file given with --data".into());
            }
        }
        Ok(())
    }
}

/// What training produced.
struct Trained {
    a_hist: Vec<f64>,
    b_hist: Vec<f64>,
    costs: Vec<f64>,
    a: f64,
    b: f64,
    final_loss: f64,
    train_seconds: f64,
    explained: Option<(Vec<TracedOp>, f64, f64)>,
    /// The compiled step's graph (`None` with `--eager`).
    graph: Option<std::sync::Arc<gradtape::Graph>>,
}

fn scalar(t: &Tensor) -> f64 {
    t.to_f64_vec()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// The training loop of the tutorial, on the tape.
fn train(
    x: &Tensor,
    y: &Tensor,
    args: &Args,
    mut progress: impl FnMut(usize, f64),
) -> Result<Trained, CliError> {
    let dtype = x.dtype();
    let var = |name: &str| -> gradtape::Result<Variable> {
        Ok(Variable::with_options(
            Tensor::zeros(&[], dtype)?,
            VariableOptions {
                name: Some(name.into()),
                trainable: true,
            },
        ))
    };
    let (a, b) = (var("a")?, var("b")?);
    // sgd is the tutorial's own update (`assign_sub(da * lr)`); the others are the library's.
    let opt: RefCell<Option<Box<dyn gradtape::optimizers::Optimizer>>> =
        RefCell::new(match args.optimizer {
            Optimizer::Sgd => None,
            Optimizer::Momentum => Some(Box::new(
                gradtape::optimizers::SGD::new(args.lr).momentum(0.9),
            )),
            Optimizer::Adam => Some(Box::new(gradtape::optimizers::Adam::new(args.lr))),
        });
    let loss_kind = args.loss;
    let loss = |y_pred: &Tensor| -> gradtape::Result<Tensor> {
        let sq = ops::square(&ops::subtract(y, y_pred)?)?;
        match loss_kind {
            Loss::Sse => ops::reduce_sum(&sq, Axes::All, false),
            Loss::Mse => ops::reduce_mean(&sq, Axes::All, false),
        }
    };
    let model = || ops::add(&a, &ops::multiply(&b, x)?);
    let diverged = |epoch: usize, v: f64| {
        CliError(format!(
            "the loss became {v} at epoch {epoch}: training diverged; try a smaller learning rate than --lr {:?}",
            args.lr
        ))
    };
    // What the tape recorded in the first step, when asked: Rust code in the step runs at the
    // first call only when it is compiled, as it runs at the first epoch here.
    let explain = args.explain || args.tape_dot.is_some();
    let first = Cell::new(true);
    let recorded: RefCell<Vec<TracedOp>> = RefCell::new(vec![]);
    // One epoch: a and b, the cost at them (the tutorial prints it), the gradients, the update.
    let step = |_: &[Tensor]| -> gradtape::Result<Vec<Tensor>> {
        let (a0, b0) = (a.value(), b.value());
        let cost = loss(&model()?)?;
        let trace = first.replace(false) && explain;
        let g = GradientTape::builder().trace(trace).start();
        let current = loss(&model()?)?;
        if trace {
            *recorded.borrow_mut() = g.trace();
        }
        let [da, db] = g.gradient(&current, [&a, &b])?;
        let (Some(da), Some(db)) = (da, db) else {
            return Err(gradtape::Error::tape(
                "linreg",
                "internal: the tape returned no gradient for a or b",
            ));
        };
        match opt.borrow_mut().as_mut() {
            None => {
                a.assign_sub(&ops::multiply(&da, &args.lr)?)?;
                b.assign_sub(&ops::multiply(&db, &args.lr)?)?;
            }
            Some(o) => gradtape::optimizers::Optimizer::apply_gradients(
                o,
                [(da.clone(), &a), (db.clone(), &b)],
            )?,
        }
        Ok(vec![a0, b0, cost, da, db])
    };
    let compiled = (!args.eager).then(|| gradtape::function(&step).with_name("linreg_step"));
    let mut t = Trained {
        a_hist: vec![],
        b_hist: vec![],
        costs: vec![],
        a: 0.0,
        b: 0.0,
        final_loss: 0.0,
        train_seconds: 0.0,
        explained: None,
        graph: None,
    };
    let start = Instant::now();
    for e in 0..args.epochs {
        let out: Vec<Tensor> = match &compiled {
            Some(f) => f.call(&[])?,
            None => step(&[])?,
        };
        let [a0, b0, cost, da, db] = <[Tensor; 5]>::try_from(out)
            .map_err(|_| CliError("internal: the step returns five tensors".into()))?;
        // the cost is checked before the step's update is used: a diverged run stops here
        let cost = scalar(&cost);
        if !cost.is_finite() {
            return Err(diverged(e, cost));
        }
        t.a_hist.push(scalar(&a0));
        t.b_hist.push(scalar(&b0));
        t.costs.push(cost);
        progress(e, cost);
        if e == 0 && explain {
            t.explained = Some((recorded.take(), scalar(&da), scalar(&db)));
        }
    }
    t.graph = compiled.and_then(|f| f.graphs().into_iter().next());
    t.final_loss = scalar(&loss(&model()?)?);
    t.train_seconds = start.elapsed().as_secs_f64();
    if !t.final_loss.is_finite() {
        return Err(diverged(args.epochs, t.final_loss));
    }
    t.a = scalar(&a.value());
    t.b = scalar(&b.value());
    Ok(t)
}

/// Least squares, R² and the grid of the loss landscape, from gradtape reductions in float64.
struct Stats {
    closed_form: Option<(f64, f64)>,
    r2: f64,
    sums: [f64; 6], // n, Σx, Σy, Σxy, Σx², Σy²
}

fn stats(d: &Data, a: f64, b: f64) -> Result<Stats, CliError> {
    let n = d.x.len();
    let x = Tensor::from_vec(d.x.clone(), &[n])?;
    let y = Tensor::from_vec(d.y.clone(), &[n])?;
    let sum = |t: &Tensor| -> Result<f64, CliError> {
        Ok(ops::reduce_sum(t, Axes::All, false)?.to_scalar::<f64>()?)
    };
    let (sx, sy) = (sum(&x)?, sum(&y)?);
    let (sxy, sxx, syy) = (
        sum(&ops::multiply(&x, &y)?)?,
        sum(&ops::square(&x)?)?,
        sum(&ops::square(&y)?)?,
    );
    let (xm, ym) = (sx / n as f64, sy / n as f64);
    let dx = ops::subtract(&x, &xm)?;
    let dy = ops::subtract(&y, &ym)?;
    let (sdxdy, sdxdx, sdydy) = (
        sum(&ops::multiply(&dx, &dy)?)?,
        sum(&ops::square(&dx)?)?,
        sum(&ops::square(&dy)?)?,
    );
    let closed_form = match sdxdx > 0.0 {
        true => Some(least_squares(&x, &y, (xm, ym), sdxdy / sdxdx)?),
        false => None,
    };
    let resid = ops::subtract(&y, &ops::add(&ops::multiply(&x, &b)?, &a)?)?;
    let ss_res = sum(&ops::square(&resid)?)?;
    let r2 = if sdydy > 0.0 {
        1.0 - ss_res / sdydy
    } else {
        f64::NAN
    };
    Ok(Stats {
        closed_form,
        r2,
        sums: [n as f64, sx, sy, sxy, sxx, syy],
    })
}

/// The least-squares line `(a, b)`: with the `linalg` feature, `linalg::lstsq` of the design
/// matrix `[1, x]` (the SVD path, robust however the x are spread), the seed's closed form
/// as a linear-algebra problem; without it, from the centered sums (`b = Σdxdy / Σdx²`),
/// the same line worked out by hand for two parameters.
#[cfg(feature = "linalg")]
fn least_squares(x: &Tensor, y: &Tensor, _: (f64, f64), _: f64) -> Result<(f64, f64), CliError> {
    let n = x.shape()[0];
    let ones = Tensor::ones(&[n, 1], x.dtype())?;
    let design = ops::concat(&[ones, ops::reshape(x, &[-1, 1])?], 1)?;
    let coef = gradtape::linalg::lstsq(&design, &ops::reshape(y, &[-1, 1])?, 0.0, false)?;
    let c = coef.to_vec::<f64>()?;
    Ok((c[0], c[1]))
}

#[cfg(not(feature = "linalg"))]
fn least_squares(
    _: &Tensor,
    _: &Tensor,
    (xm, ym): (f64, f64),
    slope: f64,
) -> Result<(f64, f64), CliError> {
    Ok((ym - slope * xm, slope))
}

/// The loss at `(a, b)` from the sums (exact for SSE, divided by n for MSE).
fn loss_at(s: &[f64; 6], kind: Loss, a: f64, b: f64) -> f64 {
    let [n, sx, sy, sxy, sxx, syy] = *s;
    let sse = syy - 2.0 * a * sy - 2.0 * b * sxy + n * a * a + 2.0 * a * b * sx + b * b * sxx;
    match kind {
        Loss::Sse => sse.max(0.0),
        Loss::Mse => sse.max(0.0) / n,
    }
}

/// The first epoch whose cost is within 1% of the final cost.
fn saturation_epoch(costs: &[f64], final_loss: f64) -> Option<usize> {
    costs
        .iter()
        .position(|&c| (c - final_loss).abs() <= 0.01 * final_loss.abs())
}

/// The first epoch from which the cost printed with two decimals (`Loss: 20.56`) no longer
/// changes up to the last epoch; `None` when it changes at the last one.
fn two_decimal_saturation(costs: &[f64]) -> Option<usize> {
    let printed: Vec<String> = costs.iter().map(|c| format!("{c:.2}")).collect();
    let last = printed.last()?;
    let from = printed.iter().rposition(|p| p != last).map_or(0, |i| i + 1);
    (from + 1 < printed.len()).then_some(from)
}

/// At most this many frames in fit.gif, at this size: under 1 MB.
const GIF_FRAMES: usize = 30;
const GIF_SIZE: (u32, u32) = (480, 360);

/// The epochs fit.gif shows: each of the first ones, then evenly spaced, then the fitted
/// line (epoch `epochs`).
fn gif_epochs(epochs: usize) -> Vec<usize> {
    let every = GIF_FRAMES / 2;
    let mut v: Vec<usize> = (0..epochs.min(every)).collect();
    if epochs > every {
        let rest = GIF_FRAMES - every - 1;
        v.extend((1..=rest).map(|k| every + (epochs - every) * k / (rest + 1)));
    }
    v.push(epochs);
    v.dedup();
    v
}

/// At most this many points are drawn (every k-th when there are more).
const MAX_DRAWN: usize = 5000;

/// At most this many points in each frame of fit.gif (every point in every frame made it
/// 2 MB for 5,000 points).
const GIF_POINTS: usize = 300;

fn thin(v: &[f64], max: usize) -> Vec<f64> {
    let step = v.len().div_ceil(max).max(1);
    v.iter().step_by(step).copied().collect()
}

fn landscape(t: &Trained, st: &Stats, kind: Loss) -> LandscapeChart {
    let mut path: Vec<(f64, f64)> = t
        .a_hist
        .iter()
        .copied()
        .zip(t.b_hist.iter().copied())
        .collect();
    path.push((t.a, t.b));
    let pts = path.iter().copied().chain(st.closed_form);
    let (mut a0, mut a1, mut b0, mut b1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (a, b) in pts {
        (a0, a1, b0, b1) = (a0.min(a), a1.max(a), b0.min(b), b1.max(b));
    }
    let (pa, pb) = (((a1 - a0) * 0.3).max(0.1), ((b1 - b0) * 0.3).max(0.1));
    let grid = |lo: f64, hi: f64| {
        (0..80)
            .map(|i| lo + (hi - lo) * i as f64 / 79.0)
            .collect::<Vec<_>>()
    };
    let (a_grid, b_grid) = (grid(a0 - pa, a1 + pa), grid(b0 - pb, b1 + pb));
    let loss = a_grid
        .iter()
        .map(|&a| {
            b_grid
                .iter()
                .map(|&b| loss_at(&st.sums, kind, a, b))
                .collect()
        })
        .collect();
    LandscapeChart {
        a_grid,
        b_grid,
        loss,
        path,
        optimum: st.closed_form,
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    args.check()?;
    let formats: Vec<Format> = match (args.no_plots, args.format) {
        (true, _) => vec![],
        (false, FormatArg::Png) => vec![Format::Png],
        (false, FormatArg::Svg) => vec![Format::Svg],
        (false, FormatArg::Both) => vec![Format::Png, Format::Svg],
    };
    let mut names: Vec<String> = vec!["history.csv".into(), "run.json".into()];
    for f in &formats {
        for chart in ["fit", "cost", "params", "landscape"] {
            names.push(format!("{chart}.{}", f.extension()));
        }
    }
    if args.gif && !args.no_plots {
        names.push("fit.gif".into());
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Both output places are checked before the work, so a bad one costs no training.
    let mut stage = Staging::new(&args.out, &names)?;
    let mut dot_stage = match &args.tape_dot {
        Some(path) => {
            let (dir, name) = output::split_file_path(path, "--tape-dot", "tape.dot")?;
            Some((Staging::new(dir, &[name])?, name))
        }
        None => None,
    };
    // the log file is opened before the work too
    let mut log = args
        .logdir
        .as_ref()
        .map(gradtape::summary::SummaryWriter::create)
        .transpose()?;
    let d = match &args.data {
        Some(p) => data::read_csv(p, args.x_col.as_deref(), args.y_col.as_deref())?,
        None => data::generate(args.points, args.seed, args.noise, args.true_a, args.true_b)?,
    };
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F64 => DType::F64,
    };
    let n = d.x.len();
    let x = ops::cast(&Tensor::from_vec(d.x.clone(), &[n])?, dtype)?;
    let y = ops::cast(&Tensor::from_vec(d.y.clone(), &[n])?, dtype)?;

    let human = !args.json;
    let lines = human && !args.quiet;
    let bar = output::progress_bar(args.epochs, lines, "{bar:40} epoch {pos}/{len}  loss {msg}");
    if human {
        println!(
            "gradtape linreg: {} points from {}, {} epochs, lr {:?}, {} loss, {}, {}",
            n,
            d.source,
            args.epochs,
            args.lr,
            format!("{:?}", args.loss).to_uppercase(),
            format!("{:?}", args.optimizer).to_lowercase(),
            dtype
        );
    }
    let mut out = std::io::stdout().lock();
    let trained = train(&x, &y, &args, |e, cost| match &bar {
        Some(pb) => {
            pb.set_position(e as u64 + 1);
            pb.set_message(format!("{cost:.2}"));
        }
        None if lines => {
            let _ = writeln!(out, "Epoch: {e}, Loss: {cost:.2}");
        }
        None => {}
    });
    drop(out);
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let t = trained?;
    if let Some(w) = log.as_mut() {
        // epoch e: the cost evaluated before its step, and the parameters it was evaluated at
        for (e, cost) in t.costs.iter().enumerate() {
            let step = e as i64;
            w.scalar("loss", *cost, step)?;
            w.scalar("a", t.a_hist[e], step)?;
            w.scalar("b", t.b_hist[e], step)?;
            w.scalar("learning_rate", args.lr, step)?;
            let weights = Tensor::from_vec(vec![t.a_hist[e], t.b_hist[e]], &[2])?;
            w.histogram("weights", &weights, step)?;
        }
        w.flush()?;
    }
    let st = stats(&d, t.a, t.b)?;
    let sat = saturation_epoch(&t.costs, t.final_loss);
    let sat2 = two_decimal_saturation(&t.costs);

    // Explanation of one step.
    let mut names = Names::new(&[(x.id(), "x"), (y.id(), "y")]);
    let explanation = t.explained.as_ref().map(|(tr, da, db)| {
        let mut text = output::explain(tr, &mut names, &[("a", *da), ("b", *db)]);
        if let Some(g) = &t.graph {
            text += &output::explain_graph(g);
        }
        text
    });
    let dot = t.explained.as_ref().map(|(tr, _, _)| {
        let tape = output::dot(tr, &mut names);
        match &t.graph {
            // the compiled step beside the tape's operations, as one more cluster
            Some(g) => format!(
                "{}{}}}\n",
                tape.trim_end().trim_end_matches('}'),
                g.to_dot_cluster("compiled_")
            ),
            None => tape,
        }
    });

    // Files, written only once everything is ready (the folders were checked before the work).
    let history: Vec<(f64, f64)> = t
        .a_hist
        .iter()
        .copied()
        .zip(t.b_hist.iter().copied())
        .collect();
    let (xs, ys) = (thin(&d.x, MAX_DRAWN), thin(&d.y, MAX_DRAWN));
    let title = format!(
        "y = a + b·x fitted by gradient descent ({} epochs)",
        args.epochs
    );
    for &f in &formats {
        let ext = f.extension();
        let fit = FitChart {
            x: xs.clone(),
            y: ys.clone(),
            history: history.clone(),
            fitted: (t.a, t.b),
            reference: st.closed_form,
            title: title.clone(),
        };
        save(&fit, &stage.path(&format!("fit.{ext}")), f)?;
        save(
            &CostChart {
                costs: t.costs.clone(),
                saturation_epoch: sat,
                two_decimal_epoch: sat2,
                y_label: match args.loss {
                    Loss::Sse => "sum of squared errors".into(),
                    Loss::Mse => "mean squared error".into(),
                },
            },
            &stage.path(&format!("cost.{ext}")),
            f,
        )?;
        save(
            &ParamsChart {
                a: t.a_hist.clone(),
                b: t.b_hist.clone(),
                reference: st.closed_form,
            },
            &stage.path(&format!("params.{ext}")),
            f,
        )?;
        save(
            &landscape(&t, &st, args.loss),
            &stage.path(&format!("landscape.{ext}")),
            f,
        )?;
    }
    if args.gif && !args.no_plots {
        // Every epoch while the line moves fast, then fewer: at most GIF_FRAMES frames
        // (one per epoch made a 3 MB file).
        let (gx, gy) = (thin(&d.x, GIF_POINTS), thin(&d.y, GIF_POINTS));
        let frames: Vec<FitChart> = gif_epochs(history.len())
            .into_iter()
            .map(|e| FitChart {
                x: gx.clone(),
                y: gy.clone(),
                history: history[..e].to_vec(),
                fitted: history.get(e).copied().unwrap_or((t.a, t.b)),
                reference: None,
                title: match e < history.len() {
                    true => format!("epoch {e}"),
                    false => "fitted".into(),
                },
            })
            .collect();
        save_gif(&frames, &stage.path("fit.gif"), 120, GIF_SIZE)?;
    }
    let mut csv = String::from("epoch,a,b,cost\n");
    for e in 0..t.costs.len() {
        csv += &format!("{e},{},{},{}\n", t.a_hist[e], t.b_hist[e], t.costs[e]);
    }
    csv += &format!("{},{},{},{}\n", t.costs.len(), t.a, t.b, t.final_loss);
    stage.write("history.csv", csv.as_bytes())?;
    let result = json!({
        "a": t.a,
        "b": t.b,
        "loss": t.costs,
        "final_loss": t.final_loss,
        "epochs": args.epochs,
        "lr": args.lr,
        "points": n,
        "closed_form": st.closed_form.map(|(a, b)| json!({"a": a, "b": b})),
        "r2": if st.r2.is_finite() { json!(st.r2) } else { Value::Null },
        "saturation_epoch": sat,
        "saturation_rule": "first epoch whose cost is within 1% of the final cost",
        "saturation_two_decimals_epoch": sat2,
        "saturation_two_decimals_rule": "first epoch from which the cost printed with two decimals no longer changes",
        "train_seconds": t.train_seconds,
        "compiled": t.graph.is_some(),
        "loss_function": format!("{:?}", args.loss).to_lowercase(),
        "optimizer": format!("{:?}", args.optimizer).to_lowercase(),
        "dtype": dtype.name(),
        "data": d.source,
    });
    let mut run_json = result.clone();
    if args.data.is_none() {
        run_json["generated"] = json!({"seed": args.seed, "noise": args.noise, "true_a": args.true_a, "true_b": args.true_b});
    }
    stage.write(
        "run.json",
        serde_json::to_string_pretty(&run_json)?.as_bytes(),
    )?;
    let mut written = stage.commit()?;
    if let (Some((mut s, name)), Some(dot)) = (dot_stage.take(), &dot) {
        s.write(name, dot.as_bytes())?;
        written.extend(s.commit()?);
    }

    if let Some(text) = &explanation {
        if args.json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    if args.json {
        println!("{result}");
        return Ok(());
    }
    println!(
        "Fitted:         a = {:.6}, b = {:.6}   (final loss {:.4})",
        t.a, t.b, t.final_loss
    );
    match st.closed_form {
        Some((ca, cb)) => println!(
            "Least squares:  a = {ca:.6}, b = {cb:.6}   (gap: a {:+.6}, b {:+.6})",
            t.a - ca,
            t.b - cb
        ),
        None => println!("Least squares:  undefined (all x are equal)"),
    }
    println!("R²:             {:.4}", st.r2);
    match sat {
        Some(s) => println!(
            "Saturation:     epoch {s} (the first epoch whose cost is within 1% of the final cost)"
        ),
        None => {
            println!("Saturation:     not reached (no epoch's cost is within 1% of the final cost)")
        }
    }
    // The tutorial's reading ("saturation near epoch 64-65"): where the printed loss settles.
    match sat2 {
        Some(s) => println!(
            "                epoch {s} (from here on the printed two-decimal loss no longer changes)"
        ),
        None => println!(
            "                the printed two-decimal loss still changes at the last epoch ({})",
            t.costs.len().saturating_sub(1)
        ),
    }
    println!("Training:       {:.3} ms", t.train_seconds * 1e3);
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("Wrote:          {}", names.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    /// With `linalg`, the least-squares line comes from `lstsq`: it is the centered sums'
    /// line, to rounding.
    #[cfg(feature = "linalg")]
    #[test]
    fn the_lstsq_line_is_the_closed_form() {
        let d = crate::data::generate(200, 7, 0.5, 2.0, -3.0).unwrap();
        let st = super::stats(&d, 0.0, 0.0).unwrap();
        let (a, b) = st.closed_form.unwrap();
        let [n, sx, sy, sxy, sxx, _] = st.sums;
        let slope = (sxy - sx * sy / n) / (sxx - sx * sx / n);
        let intercept = (sy - slope * sx) / n;
        assert!(
            (b - slope).abs() < 1e-9 && (a - intercept).abs() < 1e-9,
            "{a} {b}"
        );
        assert!((b + 3.0).abs() < 0.2 && (a - 2.0).abs() < 0.3, "{a} {b}");
    }

    use super::*;

    #[test]
    fn loss_from_sums_matches_the_direct_sum() {
        let (x, y): ([f64; 3], [f64; 3]) = ([0.0, 1.0, 2.0], [1.0, 2.0, 2.5]);
        let s = [3.0, 3.0, 5.5, 7.0, 5.0, 11.25];
        let (a, b): (f64, f64) = (0.5, 0.8);
        let direct: f64 = x.iter().zip(&y).map(|(x, y)| (y - a - b * x).powi(2)).sum();
        assert!((loss_at(&s, Loss::Sse, a, b) - direct).abs() < 1e-12);
        assert!((loss_at(&s, Loss::Mse, a, b) - direct / 3.0).abs() < 1e-12);
    }

    #[test]
    fn saturation_is_the_first_epoch_within_one_percent() {
        assert_eq!(
            saturation_epoch(&[100.0, 50.0, 20.5, 20.1, 20.0], 20.0),
            Some(3)
        );
        assert_eq!(saturation_epoch(&[100.0, 50.0], 20.0), None);
    }

    /// The tutorial's reading: where the printed `Loss: %0.2f` stops changing.
    #[test]
    fn two_decimal_saturation_is_where_the_printed_loss_settles() {
        let costs = [30.0, 20.571, 20.5649, 20.5601, 20.5571, 20.5559];
        assert_eq!(two_decimal_saturation(&costs), Some(2)); // 20.56 from epoch 2 on
        assert_eq!(two_decimal_saturation(&[30.0, 20.5, 20.4]), None);
        assert_eq!(two_decimal_saturation(&[5.0, 5.0]), Some(0));
    }

    #[test]
    fn the_gif_shows_the_first_epochs_then_fewer_and_ends_fitted() {
        let e = gif_epochs(70);
        assert!(e.len() <= GIF_FRAMES);
        assert_eq!(e[..15], (0..15).collect::<Vec<_>>()[..]);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(e.last(), Some(&70));
        assert_eq!(gif_epochs(3), vec![0, 1, 2, 3]);
    }
}
