//! A seedable random generator that gives the same numbers on every machine.
//!
//! xoshiro256** seeded through SplitMix64; normals by Marsaglia's polar method with a logarithm
//! computed here from `+ - * /` only, so no platform `libm` can change a bit of the output.

use crate::backend::storage::CpuStorage;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::numel;
use crate::tensor::Tensor;

/// An explicit random generator (TensorFlow's `tf.random.Generator.from_seed`).
///
/// ```
/// use gradtape::{random::Generator, DType};
/// let mut g = Generator::from_seed(42);
/// let x = g.uniform(&[200], 0.0, 1.0, DType::F32)?;
/// let again = Generator::from_seed(42).uniform(&[200], 0.0, 1.0, DType::F32)?;
/// assert_eq!(x.to_vec::<f32>()?, again.to_vec::<f32>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Generator {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Natural logarithm from exactly rounded operations only (deterministic everywhere).
fn det_ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

impl Generator {
    /// A generator whose whole stream is fixed by `seed`.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// let mut h = gradtape::random::Generator::from_seed(1);
    /// assert_eq!(g.next_u64(), h.next_u64());
    /// ```
    pub fn from_seed(seed: u64) -> Self {
        let mut x = seed;
        Generator {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// assert_ne!(g.next_u64(), g.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)`.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// let u = g.next_f64();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// assert!(g.next_normal().is_finite());
    /// ```
    pub fn next_normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.next_f64() - 1.0;
            let v = 2.0 * self.next_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * det_ln(s) / s).sqrt();
            }
        }
    }

    /// Uniform values in `[minval, maxval)`; for `int64`, integers in that range.
    ///
    /// # Errors
    /// When `minval >= maxval`, a bound is not finite, or the dtype is `bool`.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(3);
    /// let d = g.uniform(&[100], 1.0, 7.0, gradtape::DType::I64)?;
    /// assert!(d.to_vec::<i64>()?.iter().all(|v| (1..7).contains(v)));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn uniform(
        &mut self,
        shape: &[usize],
        minval: f64,
        maxval: f64,
        dtype: DType,
    ) -> Result<Tensor> {
        let op = "random.uniform";
        if !(minval.is_finite() && maxval.is_finite()) || minval >= maxval {
            return Err(Error::arg(
                op,
                format!("need finite minval < maxval, got [{minval}, {maxval})"),
            ));
        }
        if dtype == DType::Bool {
            return Err(Error::dtype(op, "bool is not a numeric dtype"));
        }
        samples(op, shape, dtype, || {
            let u = minval + (maxval - minval) * self.next_f64();
            if dtype == DType::I64 {
                u.floor()
            } else {
                u
            }
        })
    }

    /// Normal values with the given mean and standard deviation.
    ///
    /// # Errors
    /// When `stddev` is negative or not finite, or the dtype is not a float type.
    ///
    /// ```
    /// let mut g = gradtape::random::Generator::from_seed(0);
    /// let n = g.normal(&[10_000], 0.0, 0.3, gradtape::DType::F64)?;
    /// let mean = n.to_vec::<f64>()?.iter().sum::<f64>() / 10_000.0;
    /// assert!(mean.abs() < 0.02);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn normal(
        &mut self,
        shape: &[usize],
        mean: f64,
        stddev: f64,
        dtype: DType,
    ) -> Result<Tensor> {
        let op = "random.normal";
        if !(stddev.is_finite() && stddev >= 0.0 && mean.is_finite()) {
            return Err(Error::arg(
                op,
                format!("need finite mean and stddev >= 0, got {mean}, {stddev}"),
            ));
        }
        if !dtype.is_float() {
            return Err(Error::dtype(
                op,
                format!("expected float32 or float64, got {dtype}"),
            ));
        }
        samples(op, shape, dtype, || mean + stddev * self.next_normal())
    }
}

/// A tensor of `shape` filled by `draw` in row-major order; the size is the caller's, so a
/// shape memory cannot hold is an error before any drawing, never an abort. Refused inside a
/// function's trace: the draw is made on the host now, so the graph would keep its numbers.
#[doc(hidden)]
pub fn samples(
    op: &'static str,
    shape: &[usize],
    dtype: DType,
    mut draw: impl FnMut() -> f64,
) -> Result<Tensor> {
    fn fill<T: crate::dtype::Element>(
        op: &'static str,
        n: usize,
        draw: &mut dyn FnMut() -> f64,
    ) -> Result<Vec<T>> {
        let mut v = crate::backend::pool::take::<T>(op, n)?;
        v.extend((0..n).map(|_| T::from_f64(draw())));
        Ok(v)
    }
    if crate::context::traces::tracing() {
        return Err(Error::trace(
            op,
            format!(
                "random numbers {shape:?} are drawn on the host when asked for, so inside \
                 gradtape::function they would be the first call's at every call: draw them \
                 outside the function and pass them as an argument"
            ),
        ));
    }
    let n = numel(shape);
    let cpu = match dtype {
        DType::F32 => CpuStorage::F32(fill(op, n, &mut draw)?),
        DType::F64 => CpuStorage::F64(fill(op, n, &mut draw)?),
        DType::I64 => CpuStorage::I64(fill(op, n, &mut draw)?),
        DType::Bool => CpuStorage::Bool(fill(op, n, &mut draw)?),
    };
    Ok(Tensor::from_storage(cpu, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_ln_matches_std() {
        for &x in &[1e-300, 0.001, 0.5, 1.0, 1.5, 2.0, 10.0, 1e10] {
            assert!(
                (det_ln(x) - x.ln()).abs() <= 1e-14 * x.ln().abs().max(1.0),
                "{x}"
            );
        }
    }

    #[test]
    fn stream_is_fixed_by_the_seed() {
        let mut g = Generator::from_seed(7);
        let first: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        let mut h = Generator::from_seed(7);
        assert_eq!(first, (0..3).map(|_| h.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], Generator::from_seed(8).next_u64());
    }
}
