//! `gradtape bench`: the speed workloads, timed the same way every time (warm-up, rounds of
//! about 20 ms, the median of 15), with the peak resident memory of each.

use std::time::Instant;

use gradtape::distributed::Communicator;
use gradtape::layers::{Activation, Dense, Layer, Sequential, GRU, LSTM};
use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::optimizers::{Adam, Optimizer};
use gradtape::random::Generator;
use gradtape::{ops, Axes, DType, GradientTape, Result, Tensor, Variable};
use serde_json::{json, Map, Value};

use crate::CliError;

/// The workloads, in the order they run (the names are part of the contract).
pub const WORKLOADS: &[&str] = &[
    "seed",
    "linreg-10m",
    "mlp",
    "chain",
    "matmul",
    "elementwise",
    "reduce",
    "batch-jacobian",
    "jacobian-w",
    "per-example-grads",
    "hvp",
    "cnn",
    "allreduce",
    "seed-compiled",
    "linreg-10m-compiled",
    "mlp-compiled",
    "cnn-compiled",
    "hvp-compiled",
    "per-example-grads-compiled",
    "lstm-train",
    "gru-infer",
];

/// The linear-algebra workloads (feature `linalg`; `gradtape bench linalg` runs them):
/// Cholesky of a 1024×1024 SPD matrix, a Gaussian process's log marginal likelihood and its
/// gradient at n = 2,000, and 10,000 batched 3×3 solves with their gradient, all float64.
#[cfg(feature = "linalg")]
pub const LINALG_WORKLOADS: &[&str] = &[
    "linalg-cholesky",
    "linalg-gp",
    "linalg-solve3",
    "linalg-svd",
];

/// Every workload this build has.
fn known() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut all = WORKLOADS.to_vec();
    #[cfg(feature = "linalg")]
    all.extend(LINALG_WORKLOADS);
    all
}

/// Options of `gradtape bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run (all when none is named): seed, linreg-10m, mlp, chain, matmul,
    /// elementwise, reduce, batch-jacobian, jacobian-w, per-example-grads, hvp, cnn,
    /// allreduce (the MLP's gradients averaged over the processes of `mpirun -np N gradtape
    /// bench allreduce`, when built with the feature `mpi`; over one process otherwise), and
    /// the same steps run by `gradtape::function`: seed-compiled, linreg-10m-compiled,
    /// mlp-compiled, cnn-compiled, hvp-compiled, per-example-grads-compiled (with the first
    /// call's trace-and-optimize time); lstm-train and gru-infer (`lstm` names both); with
    /// the feature `linalg`, linalg-cholesky,
    /// linalg-gp, linalg-solve3 and linalg-svd (`linalg` names all four).
    names: Vec<String>,
    /// One JSON object per line per workload instead of a table.
    #[arg(long)]
    json: bool,
    /// Tiny sizes and few rounds: checks that every workload runs (the numbers mean nothing).
    #[arg(long)]
    quick: bool,
}

struct Timing {
    iters: usize,
    median_us: f64,
    min_us: f64,
    max_us: f64,
}

fn time(quick: bool, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    let (round_s, rounds) = if quick { (0.0, 3) } else { (0.02, 15) };
    // GPU work is queued, not done, when `f` returns: each round ends by waiting for it, so a
    // round's time is the work's (no-op without a GPU in use).
    let sync = gradtape::device::synchronize;
    f()?;
    sync()?;
    let t = Instant::now();
    let mut iters = 0usize;
    while iters == 0 || t.elapsed().as_secs_f64() < round_s {
        f()?;
        iters += 1;
    }
    sync()?;
    let mut per = vec![];
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        sync()?;
        per.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    per.sort_by(|a, b| a.total_cmp(b));
    Ok(Timing {
        iters: iters * rounds,
        median_us: per[per.len() / 2],
        min_us: per[0],
        max_us: per[per.len() - 1],
    })
}

/// Peak resident memory since the last reset (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The seed's `n` points (`y = 0.5 x + 0.3 + noise`, computed before training starts, as they
/// are for the other frameworks), its variables `a` and `b` at zero, and the learning rate.
fn linreg_setup(n: usize) -> Result<(Tensor, Tensor, Variable, Variable, f64)> {
    let mut rng = Generator::from_seed(0);
    let x = rng.uniform(&[n], 0.0, 1.0, DType::F32)?;
    let noise = rng.normal(&[n], 0.0, 0.3, DType::F32)?;
    let y = ops::add(&ops::add(&ops::multiply(&x, &0.5)?, &0.3)?, &noise)?;
    y.realize()?;
    let (a, b) = (Variable::new(0.0), Variable::new(0.0));
    Ok((x, y, a, b, 1e-3 / (n as f64 / 200.0)))
}

/// One epoch of the seed at `n` points: the cost, then one taped step.
fn linreg_epoch(n: usize, quick: bool) -> Result<Timing> {
    let (x, y, a, b, lr) = linreg_setup(n)?;
    let loss =
        |p: &Tensor| ops::reduce_sum(&ops::square(&ops::subtract(&y, p)?)?, Axes::All, false);
    time(quick, || {
        // The tutorial prints this cost every epoch, so it is computed (`realize`) here; on a
        // GPU it is read back, which is what printing it costs there.
        let cost = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        if cost.device().is_cuda() {
            std::hint::black_box(cost.item()?);
        } else {
            std::hint::black_box(cost.realize()?);
        }
        let g = GradientTape::new();
        let current = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        let [da, db] = g.gradient(&current, [&a, &b])?;
        if let (Some(da), Some(db)) = (da, db) {
            a.assign_sub(&(&da * lr))?;
            b.assign_sub(&(&db * lr))?;
        }
        Ok(())
    })
}

/// Times `step` run by `gradtape::function`: the first call (trace and graph passes) on its
/// own, in `extra` with the graph's size, then the calls that replay the graph. On a GPU,
/// also the same step launched as one CUDA graph (`Function::cuda_graph`), in `extra`: its
/// median, its launches, and why it was not recorded if it was not.
fn compiled(
    quick: bool,
    extra: &mut Map<String, Value>,
    step: impl Fn(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Timing> {
    let step = std::rc::Rc::new(step);
    if gradtape::device::default_device().is_cuda() {
        let s = step.clone();
        let g = gradtape::function(move |a: &[Tensor]| s(a))
            .with_name("step")
            .cuda_graph(true);
        let t = time(quick, || {
            for t in g.call::<Vec<Tensor>>(&[])? {
                sink(t)?;
            }
            Ok(())
        })?;
        extra.insert("cuda_graph_median_us".into(), json!(t.median_us));
        if let Some(run) = g.graphs().first() {
            extra.insert(
                "cuda_graph_launches".into(),
                json!(run.cuda_graph_launches()),
            );
            if let Some(why) = run.cuda_graph_refusal() {
                extra.insert("cuda_graph_refusal".into(), json!(why));
            }
        }
    }
    let f = gradtape::function(move |a: &[Tensor]| step(a)).with_name("step");
    let first = Instant::now();
    for t in f.call::<Vec<Tensor>>(&[])? {
        sink(t)?;
    }
    gradtape::device::synchronize()?;
    extra.insert(
        "first_call_us".into(),
        json!(first.elapsed().as_secs_f64() * 1e6),
    );
    if let (Some(traced), Some(run)) = (f.traced_graphs().first(), f.graphs().first()) {
        extra.insert("traced_nodes".into(), json!(traced.len()));
        extra.insert("graph_nodes".into(), json!(run.len()));
    }
    time(quick, || {
        for t in f.call::<Vec<Tensor>>(&[])? {
            sink(t)?;
        }
        Ok(())
    })
}

/// `step` as written (`name` without `-compiled`) or compiled.
fn eager_or_compiled(
    name: &str,
    quick: bool,
    extra: &mut Map<String, Value>,
    step: impl Fn(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Timing> {
    if name.ends_with("-compiled") {
        return compiled(quick, extra, step);
    }
    time(quick, || {
        for t in step(&[])? {
            sink(t)?;
        }
        Ok(())
    })
}

/// `linreg_epoch`'s step, compiled: the cost (returned, as the tutorial prints it), then one
/// taped step.
fn linreg_compiled(n: usize, quick: bool, extra: &mut Map<String, Value>) -> Result<Timing> {
    let (x, y, a, b, lr) = linreg_setup(n)?;
    let loss =
        |p: &Tensor| ops::reduce_sum(&ops::square(&ops::subtract(&y, p)?)?, Axes::All, false);
    compiled(quick, extra, |_| {
        let cost = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        let g = GradientTape::new();
        let current = loss(&ops::add(&a, &ops::multiply(&b, &x)?)?)?;
        let [da, db] = g.gradient(&current, [&a, &b])?;
        if let (Some(da), Some(db)) = (da, db) {
            a.assign_sub(&(&da * lr))?;
            b.assign_sub(&(&db * lr))?;
        }
        Ok(vec![cost])
    })
}

/// The MLP 784-256-256-10 of `mlp` (tiny with `quick`): its model, inputs and labels.
fn mlp_setup(quick: bool) -> Result<(Sequential, Tensor, Tensor)> {
    let (batch, sizes) = if quick {
        (8, [32, 16, 16, 10])
    } else {
        (128, [784, 256, 256, 10])
    };
    let mut rng = Generator::from_seed(1);
    let mut layers: Vec<Box<dyn Layer>> = vec![];
    for (i, w) in sizes.windows(2).enumerate() {
        let act = if i + 2 < sizes.len() {
            Activation::Relu
        } else {
            Activation::Linear
        };
        layers.push(Box::new(Dense::new(
            &format!("l{i}"),
            w[0],
            w[1],
            act,
            DType::F32,
            &mut rng,
        )?));
    }
    let model = Sequential::new(layers);
    let x = rng.uniform(&[batch, sizes[0]], 0.0, 1.0, DType::F32)?;
    let y = Tensor::from_vec((0..batch as i64).map(|i| i % 10).collect(), &[batch])?;
    Ok((model, x, y))
}

/// The LeNet-style network of `cnn`: conv 3×3 1→32 + ReLU, max-pool 2, conv 3×3 32→64 + ReLU,
/// max-pool 2, flatten, Dense 128 + ReLU, Dense 10 (valid padding, Keras's default), on
/// `[batch, side, side, 1]` images.
fn lenet(side: usize, rng: &mut Generator) -> Result<Sequential> {
    use gradtape::layers::{Conv2D, ConvConfig, Flatten, MaxPooling2D};
    let relu = ConvConfig {
        activation: Activation::Relu,
        ..ConvConfig::default()
    };
    let after = ((side - 2) / 2 - 2) / 2;
    Ok(Sequential::new(vec![
        Box::new(Conv2D::new("conv1", 1, 32, [3, 3], relu, DType::F32, rng)?),
        Box::new(MaxPooling2D::new([2, 2])),
        Box::new(Conv2D::new("conv2", 32, 64, [3, 3], relu, DType::F32, rng)?),
        Box::new(MaxPooling2D::new([2, 2])),
        Box::new(Flatten),
        Box::new(Dense::new(
            "dense",
            after * after * 64,
            128,
            Activation::Relu,
            DType::F32,
            rng,
        )?),
        Box::new(Dense::new(
            "out",
            128,
            10,
            Activation::Linear,
            DType::F32,
            rng,
        )?),
    ]))
}

/// Times one Adam step of `model` on `x` and labels `y` (softmax cross-entropy, mean), as
/// written or compiled (`name` ends with `-compiled`).
fn adam_steps(
    name: &str,
    quick: bool,
    extra: &mut Map<String, Value>,
    model: &Sequential,
    x: &Tensor,
    y: &Tensor,
) -> Result<Timing> {
    let vars = model.trainable_variables();
    let opt = std::cell::RefCell::new(Adam::new(0.001));
    eager_or_compiled(name, quick, extra, |_| {
        let tape = GradientTape::new();
        let loss = sparse_categorical_crossentropy(
            y,
            &model.call(x, true)?,
            true,
            Reduction::SumOverBatchSize,
        )?;
        let grads = tape.gradient(&loss, &vars)?;
        opt.borrow_mut()
            .apply_gradients(grads.into_iter().zip(&vars))?;
        Ok(vec![loss])
    })
}

const CHAIN: usize = 2000;

fn chain(quick: bool) -> Result<Timing> {
    let x = Tensor::scalar(1.0f32);
    time(quick, || {
        let tape = GradientTape::new();
        tape.watch(&x);
        let mut y = x.clone();
        for _ in 0..CHAIN {
            y = ops::multiply(&y, &1.0001)?;
        }
        std::hint::black_box(tape.gradient(&y, [&x])?);
        Ok(())
    })
}

/// Keeps a result from being optimized away, and computes it if it is pending (large
/// elementwise results are computed on demand: see `gradtape::fusion`).
fn sink(t: Tensor) -> Result<()> {
    std::hint::black_box(t.realize()?);
    Ok(())
}

/// The processes to average over: MPI's when started by `mpirun` (feature `mpi`), else one.
fn communicator() -> std::result::Result<Box<dyn Communicator>, CliError> {
    #[cfg(feature = "mpi")]
    if gradtape::distributed::Mpi::launched() {
        return Ok(Box::new(gradtape::distributed::Mpi::init()?));
    }
    Ok(Box::new(gradtape::distributed::SingleProcess))
}

fn run_one(
    name: &str,
    quick: bool,
    comm: &dyn Communicator,
) -> std::result::Result<Map<String, Value>, CliError> {
    let mut extra = Map::new();
    let big = if quick { 10_000 } else { 10_000_000 };
    let t = match name {
        #[cfg(feature = "linalg")]
        n if n.starts_with("linalg-") => linalg_workload(n, quick, &mut extra)?,
        "seed" => linreg_epoch(200, quick)?,
        "linreg-10m" => {
            extra.insert("points".into(), json!(big));
            linreg_epoch(big, quick)?
        }
        "mlp" | "mlp-compiled" => {
            let (model, x, y) = mlp_setup(quick)?;
            adam_steps(name, quick, &mut extra, &model, &x, &y)?
        }
        "seed-compiled" => linreg_compiled(200, quick, &mut extra)?,
        "linreg-10m-compiled" => {
            extra.insert("points".into(), json!(big));
            linreg_compiled(big, quick, &mut extra)?
        }
        "chain" => {
            let t = chain(quick)?;
            extra.insert("us_per_op".into(), json!(t.median_us / CHAIN as f64));
            t
        }
        "matmul" => {
            let sizes: &[usize] = if quick {
                &[16, 32]
            } else {
                &[64, 256, 1024, 2048]
            };
            let mut all = vec![];
            let mut headline = None;
            for dtype in [DType::F32, DType::F64] {
                for &n in sizes {
                    let mut rng = Generator::from_seed(2);
                    let a = rng.uniform(&[n, n], -1.0, 1.0, dtype)?;
                    let b = rng.uniform(&[n, n], -1.0, 1.0, dtype)?;
                    let t = time(quick, || sink(ops::matmul(&a, &b)?))?;
                    let gflops = 2.0 * (n as f64).powi(3) / (t.median_us * 1e3);
                    all.push(json!({"dtype": dtype.name(), "n": n, "median_us": t.median_us, "gflops": gflops}));
                    if dtype == DType::F32 && (n == 1024 || quick) {
                        extra.insert("gflops".into(), json!(gflops));
                        extra.insert("n".into(), json!(n));
                        headline = Some(t);
                    }
                }
            }
            extra.insert("sizes".into(), Value::Array(all));
            headline.ok_or_else(|| CliError("matmul: no headline size".into()))?
        }
        "elementwise" => {
            let mut rng = Generator::from_seed(3);
            let [a, b, c] = [0, 1, 2].map(|_| rng.uniform(&[big], -1.0, 1.0, DType::F32));
            let (a, b, c) = (a?, b?, c?);
            let t = time(quick, || sink(ops::add(&ops::multiply(&a, &b)?, &c)?))?;
            let e = time(quick, || sink(ops::exp(&a)?))?;
            // bytes a fused kernel must move: three inputs and one output; exp: one in, one out
            extra.insert(
                "gbps".into(),
                json!(16.0 * big as f64 / (t.median_us * 1e3)),
            );
            extra.insert("exp_median_us".into(), json!(e.median_us));
            extra.insert(
                "exp_gbps".into(),
                json!(8.0 * big as f64 / (e.median_us * 1e3)),
            );
            t
        }
        "reduce" => {
            let x = Generator::from_seed(4).uniform(&[big], 0.0, 1.0, DType::F32)?;
            let rows = if quick { 100 } else { 10_000 };
            let m = ops::reshape(&x, &[rows as isize, -1])?;
            let t = time(quick, || sink(ops::reduce_sum(&x, Axes::All, false)?))?;
            let r = time(quick, || sink(ops::reduce_sum(&m, 1, false)?))?;
            let r0 = time(quick, || sink(ops::reduce_sum(&m, 0, false)?))?;
            extra.insert("gbps".into(), json!(4.0 * big as f64 / (t.median_us * 1e3)));
            extra.insert("axis1_median_us".into(), json!(r.median_us));
            extra.insert(
                "axis1_gbps".into(),
                json!(4.0 * big as f64 / (r.median_us * 1e3)),
            );
            extra.insert("axis0_median_us".into(), json!(r0.median_us));
            extra.insert(
                "axis0_gbps".into(),
                json!(4.0 * big as f64 / (r0.median_us * 1e3)),
            );
            t
        }
        "batch-jacobian" => {
            // batch_jacobian of tanh(x W + b), x [64, 256], W [256, 256] -> [64, 256, 256]
            let (b, n) = if quick { (4, 8) } else { (64, 256) };
            let mut rng = Generator::from_seed(5);
            let x = rng.uniform(&[b, n], -1.0, 1.0, DType::F32)?;
            let w = rng.uniform(&[n, n], -0.1, 0.1, DType::F32)?;
            let bias = rng.uniform(&[n], -0.1, 0.1, DType::F32)?;
            extra.insert("shape".into(), json!([b, n, n]));
            time(quick, || {
                let tape = GradientTape::new();
                tape.watch(&x);
                let y = ops::tanh(&ops::add(&ops::matmul(&x, &w)?, &bias)?)?;
                let j = tape.batch_jacobian(&y, &x)?;
                sink(j.unwrap_or(y))
            })?
        }
        "jacobian-w" => {
            // jacobian of tanh(x W) with respect to W, x [8, 64], W [64, 64] -> [8, 64, 64, 64]
            let (b, n) = if quick { (2, 4) } else { (8, 64) };
            let mut rng = Generator::from_seed(6);
            let x = rng.uniform(&[b, n], -1.0, 1.0, DType::F32)?;
            let w = Variable::new(rng.uniform(&[n, n], -0.1, 0.1, DType::F32)?);
            extra.insert("shape".into(), json!([b, n, n, n]));
            time(quick, || {
                let tape = GradientTape::new();
                let y = ops::tanh(&ops::matmul(&x, &w)?)?;
                let [j] = tape.jacobian(&y, [&w])?;
                sink(j.unwrap_or(y))
            })?
        }
        "per-example-grads" | "per-example-grads-compiled" => {
            // per-example gradients of an MLP 784-256-10 (ReLU, softmax cross-entropy), batch 128
            let (b, d, h) = if quick { (4, 16, 8) } else { (128, 784, 256) };
            let mut rng = Generator::from_seed(7);
            let model = Sequential::new(vec![
                Box::new(Dense::new(
                    "hidden",
                    d,
                    h,
                    Activation::Relu,
                    DType::F32,
                    &mut rng,
                )?),
                Box::new(Dense::new(
                    "out",
                    h,
                    10,
                    Activation::Linear,
                    DType::F32,
                    &mut rng,
                )?),
            ]);
            let vars = model.trainable_variables();
            let x = rng.uniform(&[b, d], 0.0, 1.0, DType::F32)?;
            let y = Tensor::from_vec((0..b as i64).map(|i| i % 10).collect(), &[b])?;
            extra.insert("batch".into(), json!(b));
            let per_example = |xs: &[Tensor]| -> Result<Vec<Tensor>> {
                let tape = GradientTape::new();
                let logits = model.call(&ops::expand_dims(&xs[0], 0)?, true)?;
                let label = ops::expand_dims(&xs[1], 0)?;
                let loss = sparse_categorical_crossentropy(&label, &logits, true, Reduction::Sum)?;
                Ok(tape.gradient(&loss, &vars)?.into_iter().flatten().collect())
            };
            let step = |_: &[Tensor]| gradtape::vmap(per_example).call(&[x.clone(), y.clone()]);
            eager_or_compiled(name, quick, &mut extra, step)?
        }
        "hvp" | "hvp-compiled" => {
            // the Hessian-vector product of the MLP's loss with respect to all its weights,
            // forward over reverse (one ForwardAccumulator around one tape)
            let (model, x, y) = mlp_setup(quick)?;
            let vars = model.trainable_variables();
            let mut rng = Generator::from_seed(9);
            let tangents = vars
                .iter()
                .map(|v| rng.uniform(v.shape(), -1.0, 1.0, DType::F32))
                .collect::<Result<Vec<_>>>()?;
            let step = |_: &[Tensor]| -> Result<Vec<Tensor>> {
                let acc = gradtape::ForwardAccumulator::new(&vars, &tangents)?;
                let tape = GradientTape::new();
                let loss = sparse_categorical_crossentropy(
                    &y,
                    &model.call(&x, true)?,
                    true,
                    Reduction::SumOverBatchSize,
                )?;
                let grads: Vec<Tensor> =
                    tape.gradient(&loss, &vars)?.into_iter().flatten().collect();
                let refs: Vec<&Tensor> = grads.iter().collect();
                Ok(acc
                    .jvps(&refs, gradtape::UnconnectedGradients::None)?
                    .into_iter()
                    .flatten()
                    .collect())
            };
            eager_or_compiled(name, quick, &mut extra, step)?
        }
        "cnn" | "cnn-compiled" => {
            // one Adam step of the LeNet-style network on 64 images of 28x28x1
            let (b, side) = if quick { (4, 10) } else { (64, 28) };
            let mut rng = Generator::from_seed(10);
            let model = lenet(side, &mut rng)?;
            let x = rng.uniform(&[b, side, side, 1], 0.0, 1.0, DType::F32)?;
            let y = Tensor::from_vec((0..b as i64).map(|i| i % 10).collect(), &[b])?;
            extra.insert("batch".into(), json!(b));
            adam_steps(name, quick, &mut extra, &model, &x, &y)?
        }
        "lstm-train" | "gru-infer" => {
            // an LSTM training step (with a Dense head to one output, mean squared error,
            // Adam) or a GRU's forward pass for inference: batch 32, 50 steps, 64 inputs,
            // 256 units, float32
            let (b, steps, f, u) = if quick {
                (2, 3, 4, 8)
            } else {
                (32, 50, 64, 256)
            };
            for (k, v) in [("batch", b), ("steps", steps), ("inputs", f), ("units", u)] {
                extra.insert(k.into(), json!(v));
            }
            let mut rng = Generator::from_seed(13);
            let x = rng.uniform(&[b, steps, f], -1.0, 1.0, DType::F32)?;
            if name == "gru-infer" {
                let gru = GRU::new("gru", f, u, DType::F32, &mut rng)?;
                time(quick, || sink(gru.call(&x, false)?))?
            } else {
                let lstm = LSTM::new("lstm", f, u, DType::F32, &mut rng)?;
                let head = Dense::new("head", u, 1, Activation::Linear, DType::F32, &mut rng)?;
                let y = rng.uniform(&[b, 1], -1.0, 1.0, DType::F32)?;
                let mut vars = lstm.trainable_variables();
                vars.extend(head.trainable_variables());
                let mut opt = Adam::new(0.001);
                time(quick, || {
                    let tape = GradientTape::new();
                    let pred = head.call(&lstm.call(&x, true)?, true)?;
                    let err = ops::subtract(&pred, &y)?;
                    let loss = ops::reduce_mean(&ops::square(&err)?, Axes::All, false)?;
                    let grads = tape.gradient(&loss, &vars)?;
                    opt.apply_gradients(grads.into_iter().zip(&vars))?;
                    Ok(())
                })?
            }
        }
        "allreduce" => {
            // the MLP 784-256-256-10's gradients (float32), averaged in buckets over the
            // processes: what one data-parallel step adds
            let (model, _, _) = mlp_setup(quick)?;
            let mut rng = Generator::from_seed(11);
            let grads = model
                .trainable_variables()
                .iter()
                .map(|v| rng.uniform(v.shape(), -1.0, 1.0, DType::F32).map(Some))
                .collect::<Result<Vec<_>>>()?;
            let bytes: usize = grads.iter().flatten().map(|g| g.numel() * 4).sum();
            extra.insert("processes".into(), json!(comm.size()));
            extra.insert("bytes".into(), json!(bytes));
            let t = time(quick, || {
                let avg = gradtape::distributed::average_gradients(comm, grads.clone())?;
                std::hint::black_box(avg);
                Ok(())
            })?;
            // the algorithm bandwidth: the gradient bytes over the time
            extra.insert("gbps".into(), json!(bytes as f64 / t.median_us / 1e3));
            t
        }
        other => {
            return Err(CliError(format!(
                "unknown workload {other:?} (known: {})",
                known().join(", ")
            )))
        }
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("iters".into(), json!(t.iters));
    m.insert("median_us".into(), json!(t.median_us));
    m.insert("min_us".into(), json!(t.min_us));
    m.insert("max_us".into(), json!(t.max_us));
    m.extend(extra);
    Ok(m)
}

pub fn run(a: BenchArgs, device: gradtape::Device) -> std::result::Result<(), CliError> {
    let known = known();
    let names: Vec<String> = if a.names.is_empty() {
        known.iter().map(|s| s.to_string()).collect()
    } else {
        a.names
            .iter()
            .flat_map(|n| match n.as_str() {
                "linalg" => known
                    .iter()
                    .filter(|k| k.starts_with("linalg-"))
                    .map(|k| k.to_string())
                    .collect(),
                "lstm" => vec!["lstm-train".into(), "gru-infer".into()],
                _ => vec![n.clone()],
            })
            .collect()
    };
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        let why = match bad.starts_with("linalg") {
            true => " (the linalg workloads need `--features linalg`)",
            false => "",
        };
        return Err(CliError(format!(
            "unknown workload {bad:?}{why} (known: {})",
            known.join(", ")
        )));
    }
    if names.is_empty() {
        return Err(CliError(
            "no linalg workloads in this build: build with `--features linalg`".into(),
        ));
    }
    let device_name = device.name()?;
    if !a.json {
        println!("device: {device} ({device_name})");
        println!(
            "{:<12} {:>8} {:>14} {:>14} {:>14}  figures",
            "workload", "iters", "median µs", "min µs", "max µs"
        );
    }
    let comm = communicator()?;
    for name in &names {
        reset_peak_rss();
        // Workloads with parallel kernels run on the compute pool, as `gradtape train` does;
        // `seed` and `chain` never reach the parallel threshold and run on this thread (on the
        // pool they measured 1-3% slower, see BENCHMARKS.md).
        // `allreduce` runs where MPI was initialized (this thread).
        let on = |f: &dyn Fn() -> std::result::Result<Map<String, Value>, CliError>| {
            gradtape::device::with_device(device, f)?
        };
        let result = if matches!(
            name.as_str(),
            "seed" | "seed-compiled" | "chain" | "allreduce"
        ) {
            on(&|| run_one(name, a.quick, comm.as_ref()))
        } else {
            let alone = gradtape::distributed::SingleProcess;
            gradtape::threading::install(|| on(&|| run_one(name, a.quick, &alone)))
        };
        let mut m = match result {
            Ok(m) => m,
            // On a GPU, a workload that reaches an op with no GPU kernel yet is reported as
            // skipped with the reason, and the others still run.
            Err(CliError(why)) if device.is_cuda() && why.contains("only a CPU kernel") => {
                let mut m = Map::new();
                m.insert("workload".into(), json!(name));
                m.insert("skipped".into(), json!(why));
                m
            }
            Err(e) => return Err(e),
        };
        m.insert("device".into(), json!(device.to_string()));
        m.insert("device_name".into(), json!(device_name));
        if comm.rank() != 0 {
            continue; // under mpirun, rank 0 reports
        }
        if m.contains_key("median_us") {
            m.insert("peak_rss_bytes".into(), json!(peak_rss()));
        }
        if a.json {
            println!("{}", Value::Object(m));
            continue;
        }
        if let Some(s) = m.get("skipped") {
            println!("{name:<12} skipped: {}", s.as_str().unwrap_or(""));
            continue;
        }
        let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let figures: Vec<String> = [
            "us_per_op",
            "gflops",
            "gbps",
            "exp_gbps",
            "axis1_gbps",
            "axis0_gbps",
            "first_call_us",
            "graph_nodes",
        ]
        .iter()
        .filter(|k| m.contains_key(**k))
        .map(|k| format!("{k} {:.3}", f(k)))
        .chain(
            m.get("peak_rss_bytes")
                .and_then(Value::as_u64)
                .map(|b| format!("peak_rss {:.0} MB", b as f64 / 1e6)),
        )
        .collect();
        println!(
            "{name:<12} {:>8} {:>14.2} {:>14.2} {:>14.2}  {}",
            f("iters"),
            f("median_us"),
            f("min_us"),
            f("max_us"),
            figures.join(", ")
        );
    }
    Ok(())
}

/// The linear-algebra workloads, float64 as in the table.
#[cfg(feature = "linalg")]
fn linalg_workload(name: &str, quick: bool, extra: &mut Map<String, Value>) -> Result<Timing> {
    use gradtape::linalg;
    let mut rng = Generator::from_seed(12);
    let dt = DType::F64;
    match name {
        "linalg-cholesky" => {
            let n = if quick { 64 } else { 1024 };
            extra.insert("n".into(), json!(n));
            let x = rng.uniform(&[n, n], -1.0, 1.0, dt)?;
            let eye = ops::multiply(&Tensor::eye(n, dt)?, &(n as f64))?;
            let a = ops::add(&ops::matmul_transposed(&x, &x, false, true)?, &eye)?;
            a.realize()?;
            time(quick, || {
                linalg::cholesky(&a)?.realize()?;
                Ok(())
            })
        }
        "linalg-svd" => {
            // values and vectors (thin; square, so thin is full) of a 512 x 512 float32 matrix
            let n = if quick { 64 } else { 512 };
            extra.insert("n".into(), json!(n));
            let a = rng.uniform(&[n, n], -1.0, 1.0, DType::F32)?;
            a.realize()?;
            time(quick, || {
                let (s, u, v) = linalg::svd(&a, false)?;
                for t in [s, u, v] {
                    t.realize()?;
                }
                Ok(())
            })
        }
        "linalg-solve3" => {
            let b = if quick { 100 } else { 10_000 };
            extra.insert("systems".into(), json!(b));
            let eye = ops::multiply(&Tensor::eye(3, dt)?, &3.0)?;
            let a = ops::add(&rng.uniform(&[b, 3, 3], -1.0, 1.0, dt)?, &eye)?;
            let r = rng.uniform(&[b, 3, 1], -1.0, 1.0, dt)?;
            a.realize()?;
            r.realize()?;
            time(quick, || {
                let tape = GradientTape::new();
                tape.watch(&a);
                tape.watch(&r);
                let x = linalg::solve(&a, &r)?;
                let loss = ops::reduce_sum(&ops::square(&x)?, Axes::All, false)?;
                let (ga, gr) = tape.gradient(&loss, (&a, &r))?;
                for g in [ga, gr].into_iter().flatten() {
                    g.realize()?;
                }
                Ok(())
            })
        }
        "linalg-gp" => {
            // the negative log marginal likelihood of an RBF-kernel GP and its gradient with
            // respect to the three log hyperparameters
            let n = if quick { 100 } else { 2000 };
            extra.insert("n".into(), json!(n));
            let x = rng.uniform(&[n, 1], -4.0, 4.0, dt)?;
            let y = ops::add(&ops::sin(&x)?, &rng.normal(&[n, 1], 0.0, 0.2, dt)?)?;
            let d2 = ops::square(&ops::subtract(&x, &linalg::matrix_transpose(&x)?)?)?;
            let eye = Tensor::eye(n, dt)?;
            d2.realize()?;
            y.realize()?;
            let vars = [
                Variable::new(Tensor::scalar(0.0f64)),
                Variable::new(Tensor::scalar(0.0f64)),
                Variable::new(Tensor::scalar(-2.0f64)),
            ];
            time(quick, || {
                let tape = GradientTape::new();
                let scale = ops::exp(&ops::multiply(&vars[0], &-2.0)?)?; // 1/ℓ²
                let k = ops::multiply(
                    &ops::exp(&vars[1])?,
                    &ops::exp(&ops::multiply(&d2, &ops::multiply(&scale, &-0.5)?)?)?,
                )?;
                let k = ops::add(&k, &ops::multiply(&eye, &ops::exp(&vars[2])?)?)?;
                let l = linalg::cholesky(&k)?;
                let alpha = linalg::cholesky_solve(&l, &y)?;
                let fit = ops::reduce_sum(&ops::multiply(&y, &alpha)?, Axes::All, false)?;
                let logdet =
                    ops::reduce_sum(&ops::log(&linalg::diag_part(&l, 0)?)?, Axes::All, false)?;
                let nll = ops::add(&ops::multiply(&fit, &0.5)?, &logdet)?;
                for g in tape.gradient(&nll, &vars)?.into_iter().flatten() {
                    g.realize()?;
                }
                Ok(())
            })
        }
        other => Err(gradtape::Error::arg(
            "bench",
            format!("unknown linalg workload {other:?}"),
        )),
    }
}
