//! Relative errors of gradtape's float32 sums on the three cases of issue 9, as JSON, for
//! `bench/compare/accuracy.py` to put beside NumPy's and PyTorch's (same data: each value is
//! the fractional part of i·φ, computed in float64 and rounded to float32, on every side).
//!
//! `cargo run --release --example sum_accuracy`

use gradtape::{ops, Axes, Tensor};

const PHI: f64 = 0.618_033_988_749_894_9;

fn data(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| offset + ((i as f64 * PHI) % 1.0) as f32)
        .collect()
}

fn rel(got: f32, want: f64) -> f64 {
    ((got as f64 - want) / want).abs()
}

fn main() -> gradtape::Result<()> {
    let n = 100_000_000;
    let v = data(n, 0.0);
    let want: f64 = v.iter().map(|&x| x as f64).sum();
    let x = Tensor::from_vec(v, &[n])?;
    let all = rel(ops::reduce_sum(&x, Axes::All, false)?.to_scalar()?, want);
    drop(x);

    let half = 50_000_000;
    let v = data(2 * half, 1e4);
    let want: Vec<f64> = v
        .chunks(half)
        .map(|r| r.iter().map(|&x| x as f64).sum())
        .collect();
    let x = Tensor::from_vec(v, &[2, half])?;
    let got = ops::reduce_sum(&x, 1, false)?.to_vec::<f32>()?;
    let rows = rel(got[0], want[0]).max(rel(got[1], want[1]));
    drop(x);

    let v = data(2 * half, 0.0);
    let mut want = [0f64; 2];
    for (i, &x) in v.iter().enumerate() {
        want[i % 2] += x as f64;
    }
    let x = Tensor::from_vec(v, &[half, 2])?;
    let got = ops::reduce_sum(&x, 0, false)?.to_vec::<f32>()?;
    let cols = rel(got[0], want[0]).max(rel(got[1], want[1]));

    println!("{{\"all\": {all:e}, \"rows\": {rows:e}, \"cols\": {cols:e}}}");
    Ok(())
}
