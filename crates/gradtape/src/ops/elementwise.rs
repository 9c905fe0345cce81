//! Elementwise arithmetic: the unary table and the broadcasting binary ops.

use crate::cpu;
use crate::dtype::{Element, Float, Num};
use crate::error::{Error, Result};
use crate::fusion;
use crate::shape::{broadcast_shapes, Dims};
use crate::tape;
use crate::tensor::{operand_pair, AsTensor, Tensor};
use crate::vmap;

use super::{
    cast, dispatch_float, dispatch_num, greater, greater_equal, less_equal, opt, same_dtype,
    select, sum_to_shape, tangent1, tangent_sum,
};

/// `f` over every element; the result is contiguous with `x`'s shape. `cuda` is the same
/// function as a CUDA C expression of `v`, for a tensor on a GPU.
pub(crate) fn map_tensor<T: Element, U: Element>(
    op: &'static str,
    x: &Tensor,
    f: impl Fn(T) -> U + Sync,
    cuda: &str,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(y) = crate::cuda::ops::unary(op, x, cuda, U::DTYPE)? {
        return Ok(y);
    }
    let _ = (op, cuda);
    Ok(Tensor::from_elems(
        cpu::map(x.data::<T>()?, x.layout(), f)?,
        x.shape(),
    ))
}

/// Which tensor a unary gradient rule needs: the input or the output.
#[derive(Clone, Copy)]
enum UnarySaves {
    Input,
    Output,
}

fn unary(
    op: &'static str,
    x: &Tensor,
    saved: UnarySaves,
    grad: fn(&Tensor, &Tensor) -> Result<Tensor>,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let y = forward(x)?;
    let s = match saved {
        UnarySaves::Input => x,
        UnarySaves::Output => &y,
    };
    // The jacobian is diagonal, so the JVP rule is the gradient rule applied to the tangent.
    tape::record(
        op,
        &[x],
        &y,
        || {
            let s = s.clone();
            move |g: &Tensor, _: &[bool]| Ok([Some(grad(&s, g)?)])
        },
        |t| tangent1(t, |t| grad(s, t)),
    )?;
    Ok(y)
}

/// One row per elementwise function: its name, its forward on one element (generic over
/// `f32`/`f64`), and its gradient from the saved input `x` or output `y` and the incoming `g`,
/// written with differentiable ops and following TensorFlow's formula where conventions differ.
macro_rules! unary_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident: |$v:ident| $fwd:expr, cuda $cuda:literal, grad($kind:ident) |$s:ident, $g:ident| $grad:expr;
    )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Errors
            /// When the operand is not float32 or float64.
            pub fn $name(x: &impl AsTensor) -> Result<Tensor> {
                #[inline(always)]
                fn fwd<T: Float>($v: T) -> T {
                    $fwd
                }
                fn grad($s: &Tensor, $g: &Tensor) -> Result<Tensor> {
                    $grad
                }
                let x = x.operand().into_tensor();
                if let Some(r) = vmap::rule1(&x, |p| $name(p)) {
                    return r;
                }
                unary(stringify!($name), &x, UnarySaves::$kind, grad, |x| {
                    if let Some(y) = fusion::unary(x, fusion::unary_kernel!(fwd)) {
                        return Ok(y);
                    }
                    dispatch_float!(stringify!($name), x.dtype(), T => map_tensor::<T, T>(stringify!($name), x, fwd::<T>, $cuda))
                })
            }
        )*
    };
}

unary_ops! {
    /// `-x`.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, -2.0], &[2])?;
    /// assert_eq!(gradtape::ops::negative(&x)?.to_vec::<f32>()?, vec![-1.0, 2.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    negative: |v| -v, cuda "-v", grad(Input) |_x, g| negative(g);
    /// `x²`; gradient `2x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::square(&3.0)?.to_scalar::<f32>()?, 9.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    square: |v| v * v, cuda "v * v", grad(Input) |x, g| multiply(g, &multiply(x, &2.0)?);
    /// `√x`; gradient `0.5 / √x` (infinite at 0, as in TensorFlow).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sqrt(&4.0)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sqrt: |v| v.sqrt(), cuda "sqrt(v)", grad(Output) |y, g| multiply(&divide(g, y)?, &0.5);
    /// `1 / √x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::rsqrt(&4.0)?.to_scalar::<f32>()?, 0.5);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    rsqrt: |v| T::ONE / v.sqrt(), cuda "1 / sqrt(v)", grad(Output) |y, g| multiply(&multiply(g, &-0.5)?, &multiply(&square(y)?, y)?);
    /// `1 / x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::reciprocal(&4.0)?.to_scalar::<f32>()?, 0.25);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reciprocal: |v| T::ONE / v, cuda "1 / v", grad(Output) |y, g| negative(&multiply(g, &square(y)?)?);
    /// `eᕽ`; gradient `eᕽ` (the saved output).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::exp(&0.0)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    exp: |v| v.exp(), cuda "exp(v)", grad(Output) |y, g| multiply(g, y);
    /// `eᕽ - 1`, accurate near 0.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::expm1(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    expm1: |v| v.exp_m1(), cuda "expm1(v)", grad(Input) |x, g| multiply(g, &exp(x)?);
    /// Natural logarithm; gradient `1 / x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::log(&1.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    log: |v| v.ln(), cuda "log(v)", grad(Input) |x, g| multiply(g, &reciprocal(x)?);
    /// `ln(1 + x)`, accurate near 0.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::log1p(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    log1p: |v| v.ln_1p(), cuda "log1p(v)", grad(Input) |x, g| multiply(g, &reciprocal(&add(x, &1.0)?)?);
    /// `|x|`; gradient `sign(x)`, so 0 at 0 (TensorFlow's convention).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::abs(&-2.0)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    abs: |v| v.abs_(), cuda "fabs(v)", grad(Input) |x, g| multiply(g, &sign(x)?);
    /// -1, 0 or 1; its gradient is zero (TensorFlow returns zeros, not `None`).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sign(&-2.0)?.to_scalar::<f32>()?, -1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sign: |v| v.sign_(), cuda "sign_(v)", grad(Input) |x, _g| Tensor::zeros_like(x);
    /// Sine.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sin(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sin: |v| v.sin(), cuda "sin(v)", grad(Input) |x, g| multiply(g, &cos(x)?);
    /// Cosine.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::cos(&0.0)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    cos: |v| v.cos(), cuda "cos(v)", grad(Input) |x, g| negative(&multiply(g, &sin(x)?)?);
    /// Hyperbolic tangent; gradient `1 - y²` from the output.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::tanh(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    tanh: |v| v.tanh(), cuda "tanh(v)", grad(Output) |y, g| multiply(g, &subtract(&1.0, &square(y)?)?);
    /// The logistic function `1 / (1 + e⁻ᕽ)`, computed without overflow.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sigmoid(&0.0)?.to_scalar::<f32>()?, 0.5);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sigmoid: |v| if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }, cuda "v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v))", grad(Output) |y, g| multiply(g, &multiply(y, &subtract(&1.0, y)?)?);
    /// `max(x, 0)`; gradient 0 at 0 (TensorFlow's convention). NaN stays NaN, as in
    /// TensorFlow: a ReLU that turned a NaN input into 0 hid bad data from the loss and from
    /// the non-finite-loss check while the weights filled with NaN.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::relu(&-1.0)?.to_scalar::<f32>()?, 0.0);
    /// assert!(gradtape::ops::relu(&f64::NAN)?.to_scalar::<f32>()?.is_nan());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    relu: |v| if v > T::ZERO || v.is_nan() { v } else { T::ZERO }, cuda "(v > 0 || v != v) ? v : 0", grad(Output) |y, g| multiply(g, &cast(&greater(y, &0.0)?, g.dtype())?);
    /// `ln(1 + eᕽ)`, stable for large |x|. A primitive rather than a composition so that its
    /// gradient is exactly `sigmoid(x)` everywhere, 0.5 at 0 as in TensorFlow (compositions
    /// through `relu` or `abs` get 0 or 1 at that kink).
    ///
    /// ```
    /// assert!((gradtape::ops::softplus(&0.0)?.to_scalar::<f32>()? - 2f32.ln()).abs() < 1e-7);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    softplus: |v| if v > T::ZERO {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }, cuda "v > 0 ? v + log1p(exp(-v)) : log1p(exp(v))", grad(Input) |x, g| multiply(g, &sigmoid(x)?);
}

/// Rounds half to even (TensorFlow's `round`). Not differentiable: a tape gives `None`.
///
/// # Errors
/// When the operand is not a float tensor.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![0.5f32, 1.5, -2.5], &[3])?;
/// assert_eq!(gradtape::ops::round(&x)?.to_vec::<f32>()?, vec![0.0, 2.0, -2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn round(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, round) {
        return r;
    }
    tape::cut("round", &[&x]);
    dispatch_float!("round", x.dtype(), T => map_tensor::<T, T>("round", &x, |v| v.round_even(), "rint(v)"))
}

/// Largest integer not above each element. Not differentiable.
///
/// # Errors
/// When the operand is not a float tensor.
///
/// ```
/// assert_eq!(gradtape::ops::floor(&1.7)?.to_scalar::<f32>()?, 1.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn floor(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, floor) {
        return r;
    }
    tape::cut("floor", &[&x]);
    dispatch_float!("floor", x.dtype(), T => map_tensor::<T, T>("floor", &x, |v| v.floor(), "floor(v)"))
}

/// Smallest integer not below each element. Not differentiable.
///
/// # Errors
/// When the operand is not a float tensor.
///
/// ```
/// assert_eq!(gradtape::ops::ceil(&1.2)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn ceil(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, ceil) {
        return r;
    }
    tape::cut("ceil", &[&x]);
    dispatch_float!("ceil", x.dtype(), T => map_tensor::<T, T>("ceil", &x, |v| v.ceil(), "ceil(v)"))
}

// ---------------------------------------------------------------------------------------------
// Binary ops

/// `f` over two operands of element type `T` broadcast together, giving elements of type `U`.
/// Equal shapes (the common case) skip the broadcast bookkeeping entirely. `cuda` is the same
/// function as a CUDA C expression of `p` and `q`, for operands on a GPU.
pub(crate) fn zip_tensors<T: Element, U: Element>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(T, T) -> U + Sync,
    cuda: &str,
) -> Result<Tensor> {
    same_dtype(op, a, b)?;
    #[cfg(feature = "cuda")]
    if let Some(y) = crate::cuda::ops::binary(op, a, b, cuda, U::DTYPE)? {
        return Ok(y);
    }
    let _ = cuda;
    let (da, db) = (a.data::<T>()?, b.data::<T>()?);
    if a.shape() == b.shape() {
        return Ok(Tensor::from_elems(
            cpu::zip(da, a.layout(), db, b.layout(), f)?,
            a.shape(),
        ));
    }
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let (la, lb) = (
        a.layout().broadcast_to(&shape),
        b.layout().broadcast_to(&shape),
    );
    Ok(Tensor::from_elems(cpu::zip(da, &la, db, &lb, f)?, &shape))
}

/// The forward of a binary op from its one element function: a pending tensor when
/// [`crate::fusion`] takes it (large float operands), the eager kernel otherwise.
macro_rules! forward2 {
    ($op:literal, $dispatch:ident, $a:expr, $b:expr, |$p:ident, $q:ident| $e:expr, cuda $cuda:literal) => {
        match fusion::binary($a, $b, fusion::binary_kernel!(|$p, $q| $e)) {
            Some(t) => t,
            None => $dispatch!($op, $a.dtype(), T => zip_tensors::<T, T>($op, $a, $b, |$p, $q| $e, $cuda)?),
        }
    };
}

/// What a binary gradient rule needs kept from the forward pass (a tape keeps only that).
#[derive(Clone, Copy, PartialEq)]
enum Saves {
    Nothing,
    Inputs,
    InputsAndOutput,
}

/// The tensors a binary rule asked to keep.
struct Saved {
    a: Option<Tensor>,
    b: Option<Tensor>,
    out: Option<Tensor>,
}

impl Saved {
    fn get<'t>(t: &'t Option<Tensor>, what: &str) -> Result<&'t Tensor> {
        t.as_ref().ok_or_else(|| {
            Error::tape(
                "gradient",
                format!("rule used the {what}, which it did not save"),
            )
        })
    }
    fn a(&self) -> Result<&Tensor> {
        Saved::get(&self.a, "first input")
    }
    fn b(&self) -> Result<&Tensor> {
        Saved::get(&self.b, "second input")
    }
    fn out(&self) -> Result<&Tensor> {
        Saved::get(&self.out, "output")
    }
}

/// Records a binary op. `rule(saved, g, i)` is the gradient for input `i` before it is summed
/// back to that input's shape (the one un-broadcast every binary op shares). That is `g` times
/// the elementwise partial derivative with respect to input `i`, so the same rule applied to
/// input `i`'s tangent is that input's term of the JVP.
fn record_binary(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    saves: Saves,
    rule: fn(&Saved, &Tensor, usize) -> Result<Tensor>,
) -> Result<()> {
    let backward = || {
        let keep = |t: &Tensor, yes: bool| yes.then(|| t.clone());
        let saved = Saved {
            a: keep(a, saves != Saves::Nothing),
            b: keep(b, saves != Saves::Nothing),
            out: keep(out, saves == Saves::InputsAndOutput),
        };
        // Inline up to rank 6: no allocation per recorded op.
        let (sa, sb) = (Dims::from_slice(a.shape()), Dims::from_slice(b.shape()));
        move |g: &Tensor, needs: &[bool]| {
            Ok([
                opt(needs[0], || sum_to_shape(&rule(&saved, g, 0)?, &sa))?,
                opt(needs[1], || sum_to_shape(&rule(&saved, g, 1)?, &sb))?,
            ])
        }
    };
    let jvp = |t: &[Option<Tensor>]| {
        let saved = Saved {
            a: Some(a.clone()),
            b: Some(b.clone()),
            out: Some(out.clone()),
        };
        let term = |i: usize| t[i].as_ref().map(|ti| rule(&saved, ti, i)).transpose();
        tangent_sum([term(0), term(1)], out.shape())
    };
    tape::record(op, &[a, b], out, backward, jvp)
}

/// `x + y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// assert_eq!(gradtape::ops::add(&x, &1.0)?.to_vec::<f32>()?, vec![2.0, 3.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn add(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| add(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("add", dispatch_num, &a, &b, |p, q| p.wadd(q), cuda "p + q");
    record_binary("add", &a, &b, &out, Saves::Nothing, |_, g, _| Ok(g.clone()))?;
    Ok(out)
}

/// `x - y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::subtract(&3.0, &1.0)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn subtract(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| subtract(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("subtract", dispatch_num, &a, &b, |p, q| p.wsub(q), cuda "p - q");
    record_binary("subtract", &a, &b, &out, Saves::Nothing, |_, g, i| {
        if i == 0 {
            Ok(g.clone())
        } else {
            negative(g)
        }
    })?;
    Ok(out)
}

/// `x * y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::multiply(&3.0, &2.0)?.to_scalar::<f32>()?, 6.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn multiply(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| multiply(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("multiply", dispatch_num, &a, &b, |p, q| p.wmul(q), cuda "p * q");
    record_binary("multiply", &a, &b, &out, Saves::Inputs, |s, g, i| {
        let (a, b) = (s.a()?, s.b()?);
        if i == 0 {
            multiply(g, b)
        } else {
            multiply(a, g)
        }
    })?;
    Ok(out)
}

/// `x / y` with broadcasting. Integer operands divide as float64 (TensorFlow's `truediv`).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::divide(&3.0, &2.0)?.to_scalar::<f32>()?, 1.5);
/// let i = gradtape::Tensor::scalar(3i64);
/// assert_eq!(gradtape::ops::divide(&i, &2)?.to_scalar::<f64>()?, 1.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn divide(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| divide(&p[0], &p[1])) {
        return r;
    }
    if a.dtype() == crate::DType::I64 && b.dtype() == crate::DType::I64 {
        return divide(&cast(&a, crate::DType::F64)?, &cast(&b, crate::DType::F64)?);
    }
    let out = forward2!("divide", dispatch_float, &a, &b, |p, q| p / q, cuda "p / q");
    record_binary("divide", &a, &b, &out, Saves::Inputs, |s, g, i| {
        let (a, b) = (s.a()?, s.b()?);
        if i == 0 {
            divide(g, b)
        } else {
            multiply(g, &divide(&divide(&negative(a)?, b)?, b)?)
        }
    })?;
    Ok(out)
}

/// Elementwise maximum. On ties the gradient goes to `x` (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::maximum(&3.0, &2.0)?.to_scalar::<f32>()?, 3.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn maximum(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| maximum(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("maximum", dispatch_num, &a, &b, |p, q| p.max_(q), cuda "(p > q || p != p) ? p : q");
    record_binary("maximum", &a, &b, &out, Saves::Inputs, |s, g, i| {
        let (a, b) = (s.a()?, s.b()?);
        let mask = greater_equal(a, b)?;
        if i == 0 {
            select(&mask, g, &0.0)
        } else {
            select(&mask, &0.0, g)
        }
    })?;
    Ok(out)
}

/// Elementwise minimum. On ties the gradient goes to `x` (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::minimum(&3.0, &2.0)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn minimum(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| minimum(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("minimum", dispatch_num, &a, &b, |p, q| p.min_(q), cuda "(p < q || p != p) ? p : q");
    record_binary("minimum", &a, &b, &out, Saves::Inputs, |s, g, i| {
        let (a, b) = (s.a()?, s.b()?);
        let mask = less_equal(a, b)?;
        if i == 0 {
            select(&mask, g, &0.0)
        } else {
            select(&mask, &0.0, g)
        }
    })?;
    Ok(out)
}

/// `xʸ`, with a tensor or a number as exponent. The gradient with respect to `y` is
/// `xʸ·ln x` where `x > 0` and 0 elsewhere (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ, shapes do not broadcast, or the operands are not float.
///
/// ```
/// assert_eq!(gradtape::ops::pow(&2.0, &3.0)?.to_scalar::<f32>()?, 8.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn pow(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| pow(&p[0], &p[1])) {
        return r;
    }
    let out = forward2!("pow", dispatch_float, &a, &b, |p, q| p.powf(q), cuda "pow(p, q)");
    record_binary("pow", &a, &b, &out, Saves::InputsAndOutput, |s, g, i| {
        let (a, b, z) = (s.a()?, s.b()?, s.out()?);
        if i == 0 {
            multiply(g, &multiply(b, &pow(a, &subtract(b, &1.0)?)?)?)
        } else {
            let positive = greater(a, &0.0)?;
            let safe = select(&positive, a, &1.0)?;
            let log_x = select(&positive, &log(&safe)?, &0.0)?;
            multiply(g, &multiply(z, &log_x)?)
        }
    })?;
    Ok(out)
}
