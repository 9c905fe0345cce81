//! Gaussian-process regression whose kernel hyperparameters are fitted by gradient descent on
//! the log marginal likelihood, as GPflow and scikit-learn fit them: `cholesky`,
//! `cholesky_solve` and the log-determinant from the factor's diagonal, differentiated by the
//! tape. Writes `gaussian_process.png` (the data, the posterior mean and its ±2σ band).
//!
//! ```sh
//! cargo run --release -p gradtape --features linalg --example gaussian_process
//! ```

use gradtape::optimizers::{Adam, Optimizer};
use gradtape::random::Generator;
use gradtape::{linalg, ops, Axes, DType, GradientTape, Result, Tensor, Variable};
use gradtape_plot::{save, BandChart, Format};

/// The squared-exponential kernel `σ² exp(-|a - b|² / 2ℓ²)` between column vectors `a`
/// (`[n, 1]`) and `b` (`[m, 1]`).
fn rbf(a: &Tensor, b: &Tensor, log_len: &Variable, log_var: &Variable) -> Result<Tensor> {
    let d = ops::subtract(a, &linalg::matrix_transpose(b)?)?;
    let len2 = ops::exp(&ops::multiply(log_len, &2.0)?)?;
    let scaled = ops::divide(&ops::square(&d)?, &ops::multiply(&len2, &2.0)?)?;
    ops::multiply(&ops::exp(log_var)?, &ops::exp(&ops::negative(&scaled)?)?)
}

fn main() -> Result<()> {
    // 40 noisy samples of sin(x) on [-4, 4]
    let mut rng = Generator::from_seed(7);
    let n = 40;
    let x = rng.uniform(&[n, 1], -4.0, 4.0, DType::F64)?;
    let noise = rng.normal(&[n, 1], 0.0, 0.2, DType::F64)?;
    let y = ops::add(&ops::sin(&x)?, &noise)?;
    let eye = Tensor::eye(n, DType::F64)?;

    // log lengthscale, log signal variance, log noise variance: unconstrained parameters
    let log_len = Variable::new(Tensor::scalar(0.5f64));
    let log_var = Variable::new(Tensor::scalar(0.0f64));
    let log_noise = Variable::new(Tensor::scalar(-1.0f64));
    let vars = vec![log_len.clone(), log_var.clone(), log_noise.clone()];
    let mut opt = Adam::new(0.05);

    // the negative log marginal likelihood: ½ yᵀK⁻¹y + ½ log det K + (n/2) log 2π
    let nll = || -> Result<Tensor> {
        let k = ops::add(
            &rbf(&x, &x, &log_len, &log_var)?,
            &ops::multiply(&eye, &ops::exp(&log_noise)?)?,
        )?;
        let l = linalg::cholesky(&k)?;
        let alpha = linalg::cholesky_solve(&l, &y)?;
        let fit = ops::reduce_sum(&ops::multiply(&y, &alpha)?, Axes::All, false)?;
        let half_logdet =
            ops::reduce_sum(&ops::log(&linalg::diag_part(&l, 0)?)?, Axes::All, false)?;
        let constant = 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        ops::add(
            &ops::add(&ops::multiply(&fit, &0.5)?, &half_logdet)?,
            &constant,
        )
    };
    let first = nll()?.item()?;
    for step in 0..300 {
        let tape = GradientTape::new();
        let loss = nll()?;
        let grads = tape.gradient(&loss, &vars)?;
        opt.apply_gradients(grads.into_iter().zip(&vars))?;
        if step % 50 == 0 {
            println!("step {step:3}: -log p(y) = {:.4}", loss.item()?);
        }
    }
    let last = nll()?.item()?;
    let read = |v: &Variable| -> Result<f64> { Ok(v.value().item()?.exp()) };
    println!(
        "-log p(y): {first:.4} -> {last:.4}; lengthscale {:.3}, signal variance {:.3}, noise \
         variance {:.4} (the data's: 0.04)",
        read(&log_len)?,
        read(&log_var)?,
        read(&log_noise)?
    );

    // the posterior at 200 points: mean K*ᵀ K⁻¹ y, variance σ² - diag(K*ᵀ K⁻¹ K*)
    let grid = Tensor::linspace(-5.0, 5.0, 200, DType::F64)?;
    let grid = ops::reshape(&grid, &[200, 1])?;
    let k = ops::add(
        &rbf(&x, &x, &log_len, &log_var)?,
        &ops::multiply(&eye, &ops::exp(&log_noise)?)?,
    )?;
    let l = linalg::cholesky(&k)?;
    let k_star = rbf(&x, &grid, &log_len, &log_var)?; // [n, 200]
    let mean = ops::matmul(
        &linalg::matrix_transpose(&k_star)?,
        &linalg::cholesky_solve(&l, &y)?,
    )?;
    let v = linalg::triangular_solve(&l, &k_star, true, false)?;
    let explained = ops::reduce_sum(&ops::square(&v)?, 0, false)?;
    let var = ops::subtract(&ops::exp(&log_var)?, &explained)?;
    let std: Vec<f64> = var
        .to_vec::<f64>()?
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .collect();
    let chart = BandChart {
        x: x.to_vec::<f64>()?,
        y: y.to_vec::<f64>()?,
        grid: grid.to_vec::<f64>()?,
        mean: mean.to_vec::<f64>()?,
        std,
        title: "Gaussian process: posterior mean and ±2σ".into(),
    };
    save(
        &chart,
        std::path::Path::new("gaussian_process.png"),
        Format::Png,
    )
    .map_err(|e| gradtape::Error::io("gaussian_process", e.to_string()))?;
    println!("wrote gaussian_process.png");
    Ok(())
}
