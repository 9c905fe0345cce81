//! Element types: the four dtypes a tensor can hold and the traits kernels are generic over.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The dtype of a tensor. Only `F32` and `F64` are differentiable; `I64` and `Bool` hold labels,
/// indices and masks and are never recorded on a tape.
///
/// ```
/// let t = gradtape::Tensor::scalar(1i64);
/// assert_eq!(t.dtype(), gradtape::DType::I64);
/// assert!(!t.dtype().is_float());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (TensorFlow's `float32`, the default for gradients).
    F32,
    /// 64-bit float (`float64`).
    F64,
    /// 64-bit signed integer (`int64`).
    I64,
    /// Boolean (`bool`).
    Bool,
}

impl DType {
    /// True for the floating-point dtypes, the ones a tape differentiates.
    ///
    /// ```
    /// assert!(gradtape::DType::F32.is_float());
    /// assert!(!gradtape::DType::Bool.is_float());
    /// ```
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
    /// TensorFlow's name for the dtype (`float32`, `float64`, `int64`, `bool`).
    ///
    /// ```
    /// assert_eq!(gradtape::DType::F64.name(), "float64");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }
    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(gradtape::DType::F32.size_in_bytes(), 4);
    /// ```
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Host memory of one dtype.
#[derive(Debug)]
pub enum CpuStorage {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
    /// int64 elements.
    I64(Vec<i64>),
    /// bool elements.
    Bool(Vec<bool>),
}

impl CpuStorage {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }
    pub(crate) fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::Bool(v) => v.len(),
        }
    }
    pub(crate) fn bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }
    /// The bytes allocated, used or not (what a kept buffer holds on to).
    pub(crate) fn capacity_bytes(&self) -> usize {
        let capacity = match self {
            CpuStorage::F32(v) => v.capacity(),
            CpuStorage::F64(v) => v.capacity(),
            CpuStorage::I64(v) => v.capacity(),
            CpuStorage::Bool(v) => v.capacity(),
        };
        capacity * self.dtype().size_in_bytes()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
    impl Sealed for bool {}
}

/// A Rust type that is the element of one [`DType`]: `f32`, `f64`, `i64` or `bool`.
///
/// ```
/// use gradtape::{DType, Element};
/// assert_eq!(<f32 as Element>::DTYPE, DType::F32);
/// assert_eq!(<bool as Element>::from_f64(2.0), true);
/// ```
pub trait Element:
    sealed::Sealed + Copy + Send + Sync + PartialEq + PartialOrd + fmt::Debug + Default + 'static
{
    /// The dtype whose elements are `Self`.
    const DTYPE: DType;
    #[doc(hidden)]
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    #[doc(hidden)]
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    #[doc(hidden)]
    fn into_storage(v: Vec<Self>) -> CpuStorage;
    #[doc(hidden)]
    fn from_storage(s: CpuStorage) -> Option<Vec<Self>>;
    /// Converts from `f64` (truncating toward zero for `i64`, `!= 0` for `bool`).
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` (`1.0`/`0.0` for `bool`).
    fn to_f64(self) -> f64;
}

macro_rules! element {
    ($t:ty, $dt:ident, $from:expr, $to:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn into_storage(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$dt(v)
            }
            fn from_storage(s: CpuStorage) -> Option<Vec<Self>> {
                match s {
                    CpuStorage::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            fn to_f64(self) -> f64 {
                $to(self)
            }
        }
    };
}
element!(f32, F32, |v: f64| v as f32, |v: f32| v as f64);
element!(f64, F64, |v: f64| v, |v: f64| v);
element!(i64, I64, |v: f64| v as i64, |v: i64| v as f64);
element!(bool, Bool, |v: f64| v != 0.0, |v: bool| if v {
    1.0
} else {
    0.0
});

/// Elements with arithmetic: `f32`, `f64`, `i64`.
pub trait Num:
    Element + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Neg<Output = Self>
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Smallest value (negative infinity for floats), the identity of `max`.
    const LOWEST: Self;
    /// Largest value (infinity for floats), the identity of `min`.
    const HIGHEST: Self;
    /// Maximum that propagates NaN.
    fn max_(self, o: Self) -> Self;
    /// Minimum that propagates NaN.
    fn min_(self, o: Self) -> Self;
    /// TensorFlow's `sign`: -1, 0 or 1 (NaN stays NaN).
    fn sign_(self) -> Self;
    /// Absolute value.
    fn abs_(self) -> Self;
    /// Addition that wraps on integer overflow instead of panicking.
    fn wadd(self, o: Self) -> Self;
    /// Subtraction that wraps on integer overflow.
    fn wsub(self, o: Self) -> Self;
    /// Multiplication that wraps on integer overflow.
    fn wmul(self, o: Self) -> Self;
}

macro_rules! num_float {
    ($t:ty) => {
        impl Num for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            #[inline(always)]
            fn max_(self, o: Self) -> Self {
                if self > o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn min_(self, o: Self) -> Self {
                if self < o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn sign_(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self
                }
            }
            #[inline(always)]
            fn abs_(self) -> Self {
                self.abs()
            }
            #[inline(always)]
            fn wadd(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn wsub(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn wmul(self, o: Self) -> Self {
                self * o
            }
        }
    };
}
num_float!(f32);
num_float!(f64);

impl Num for i64 {
    const ZERO: Self = 0;
    const ONE: Self = 1;
    const LOWEST: Self = i64::MIN;
    const HIGHEST: Self = i64::MAX;
    fn max_(self, o: Self) -> Self {
        self.max(o)
    }
    fn min_(self, o: Self) -> Self {
        self.min(o)
    }
    fn sign_(self) -> Self {
        self.signum()
    }
    fn abs_(self) -> Self {
        self.wrapping_abs()
    }
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    fn wmul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
}

/// Floating-point elements: `f32` and `f64`, the differentiable ones.
pub trait Float: Num + Div<Output = Self> {
    /// `e^x`.
    fn exp(self) -> Self;
    /// `e^x - 1`, accurate near 0.
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`, accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// The logistic function `1 / (1 + e⁻ˣ)`, without overflow.
    fn sigmoid(self) -> Self;
    /// `self` to the power `e`.
    fn powf(self, e: Self) -> Self;
    /// Round half to even (TensorFlow's `round`).
    fn round_even(self) -> Self;
    /// NaN.
    fn is_nan(self) -> bool;
}

macro_rules! float {
    ($t:ty, $tanh:path, $sigmoid:path) => {
        impl Float for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                $sigmoid(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
float!(f32, tanh_f32, sigmoid_f32);
float!(f64, f64::tanh, sigmoid_f64);

/// `1 / (1 + e⁻ˣ)` from `e^{−|x|}`, which cannot overflow: `1 / (1 + e)` for `x ≥ 0`,
/// `e / (1 + e)` below (down to the subnormals); the same numbers as before it moved here.
#[inline(always)]
fn sigmoid_f64(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// [`sigmoid_f64`]'s formula with [`exp_f32`], both sides computed and one selected, so the
/// loop vectorizes (glibc's `expf`, one element at a time, was an eighth of a GRU's forward
/// pass); within 2 ulp (`sigmoid_f32_is_within_two_ulp`).
#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// `tanh` in float32 without a libm call, so the elementwise loops vectorize: glibc's `tanhf`
/// (through `expm1f`) was a quarter of a GRU's forward pass, one element at a time, and this
/// is ~5× faster per element. Cephes' `tanhf`: an odd polynomial below 0.625,
/// `1 − 2/(e^{2|x|} + 1)` above, the sign restored last (so `tanh(−0) = −0`); at most 1.2 ulp from the exact
/// value (`tanh_f32_is_within_two_ulp`), as glibc's is within 1 and Eigen's (TensorFlow's CPU
/// kernel) is a rational approximation of similar accuracy. Float64 keeps libm's.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    let p = horner(
        z,
        [
            -5.704_988_7e-3,
            2.063_909e-2,
            -5.373_971_6e-2,
            1.333_144_2e-1,
            -3.333_328e-1,
        ],
    );
    let small = p * z * a + a;
    let large = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    (if a < 0.625 { small } else { large }).copysign(x)
}

/// The polynomial with coefficients `c` (highest power first) at `x`, by Horner's rule: a
/// multiply and an add per coefficient, rounded one at a time (no fused multiply-add, so every
/// build gives the same bits).
#[inline(always)]
fn horner<const N: usize>(x: f32, c: [f32; N]) -> f32 {
    const { assert!(N > 0) };
    c[1..].iter().fold(c[0], |p, &k| p * x + k)
}

/// `e^x` in float32 for [`tanh_f32`], branch-free (Cephes' `expf`): `2^n · e^r` with `n`
/// rounded by the 1.5·2²³ trick and read from the sum's bits, `r` by Cody–Waite, `e^r` a
/// degree-7 polynomial, `2^n` applied in two halves so results down to the subnormals and up
/// to the overflow are right; NaN stays NaN. Within 0.75 ulp over the whole range.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-104.0, 89.0);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = horner(
        r,
        [
            1.987_569_2e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ],
    );
    let e = p * r * r + r + 1.0;
    // n sits in the low bits of t's mantissa
    let n = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let (n1, n2) = (n >> 1, n - (n >> 1));
    let two_to = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let y = e * two_to(n1) * two_to(n2);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Runs `$body` with `$T` bound to the element type of a runtime dtype: the one dtype dispatch
/// of the crate (the host kernels in the ops, the GPU kernels in the backend).
///
/// - `dispatch!(dtype, T => body)`: every dtype.
/// - `dispatch!(numeric op, dtype, T => body)`: `f32`, `f64`, `i64`; for `bool` the function
///   returns the dtype error of `op`.
/// - `dispatch!(float op, dtype, T => body)`: `f32`, `f64`; otherwise the dtype error.
macro_rules! dispatch {
    (numeric $op:expr, $dt:expr, $T:ident => $body:expr) => {
        $crate::dtype::dispatch!(@or_error $op, "a numeric tensor (float32, float64 or int64)",
            $dt, $T => $body, [F32: f32, F64: f64, I64: i64])
    };
    (float $op:expr, $dt:expr, $T:ident => $body:expr) => {
        $crate::dtype::dispatch!(@or_error $op, "a floating-point tensor (float32 or float64)",
            $dt, $T => $body, [F32: f32, F64: f64])
    };
    (@or_error $op:expr, $what:literal, $dt:expr, $T:ident => $body:expr,
        [$($D:ident: $t:ty),*]) => {
        match $dt {
            $($crate::dtype::DType::$D => {
                type $T = $t;
                $body
            })*
            other => {
                return Err($crate::error::Error::dtype(
                    $op,
                    format!(concat!("expected ", $what, ", got {}"), other),
                ))
            }
        }
    };
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::dtype::DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

pub(crate) use dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance from `want` in units of the last place of the float32 nearest to it.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let unit = f64::from(w.abs().max(f32::MIN_POSITIVE)) * f64::from(f32::EPSILON);
        (f64::from(got) - want).abs() / unit
    }

    /// The largest distance in ulps of `f` from `exact` over every `stride`-th float32 from
    /// `lo` to `hi` (walked outwards from ±0 by bit pattern), and where it is.
    fn worst(
        lo: f32,
        hi: f32,
        stride: u32,
        f: fn(f32) -> f32,
        exact: fn(f64) -> f64,
    ) -> (f64, f32) {
        let mut worst = (0.0, 0.0f32);
        for sign in [0x8000_0000u32, 0] {
            let mut bits = sign;
            loop {
                let x = f32::from_bits(bits);
                if x < lo || x > hi {
                    break;
                }
                // (below f32's normal range `ulps`' unit is the subnormal step)
                let e = ulps(f(x), exact(f64::from(x)));
                if e > worst.0 {
                    worst = (e, x);
                }
                bits += stride;
            }
        }
        worst
    }

    #[test]
    fn tanh_f32_is_within_two_ulp() {
        // beyond ±20, tanh is ±1 in float32
        let (e, at) = worst(-20.0, 20.0, 97, tanh_f32, f64::tanh);
        assert!(e <= 2.0, "{e} ulp at {at}");
        for (x, want) in [(0.0f32, 0.0f32), (-0.0, -0.0), (30.0, 1.0), (-30.0, -1.0)] {
            let got = tanh_f32(x);
            assert!(
                got == want && got.is_sign_negative() == want.is_sign_negative(),
                "{x}"
            );
        }
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_f32_is_within_two_ulp() {
        let (e, at) = worst(-87.0, 30.0, 97, sigmoid_f32, |x| 1.0 / (1.0 + (-x).exp()));
        assert!(e <= 2.0, "{e} ulp at {at}");
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert_eq!(sigmoid_f32(f32::INFINITY), 1.0);
        assert_eq!(sigmoid_f32(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid_f32(-100.0) > 0.0); // 3.7e-44, a subnormal, not 0
        assert!(sigmoid_f32(f32::NAN).is_nan());
        assert_eq!(sigmoid_f64(-800.0), 0.0);
        assert_eq!(sigmoid_f64(0.0), 0.5);
    }

    #[test]
    fn exp_f32_is_within_one_ulp_down_to_the_subnormals() {
        let (e, at) = worst(-103.0, 88.7, 101, exp_f32, f64::exp);
        assert!(e <= 1.0, "{e} ulp at {at}");
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}
