//! Comparisons, logic, selection, casts and `stop_gradient`: the ops around the differentiable
//! ones. Only `select` and float-to-float `cast` have gradients.

use crate::cpu;
use crate::dtype::{DType, Element, Float};
use crate::error::{Error, Result};
use crate::shape::{broadcast_shapes, Dims};
use crate::tape;
use crate::tensor::{operand_pair, AsTensor, Tensor};
use crate::vmap;

use super::elementwise::{map_tensor, zip_tensors};
use super::{dispatch_all, dispatch_float, opt, same_dtype, sum_to_shape, tangent1, tangent_sum};

macro_rules! comparisons {
    ($($(#[$doc:meta])* $name:ident: |$p:ident, $q:ident| $body:expr, cuda $cuda:literal;)*) => {$(
        $(#[$doc])*
        #[allow(clippy::bool_comparison)]
        ///
        /// Broadcasts; returns a bool tensor; has no gradient.
        ///
        /// # Errors
        /// When dtypes differ or shapes do not broadcast.
        pub fn $name(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
            let (a, b) = operand_pair(x, y);
            if let Some(r) = vmap::rule_broadcast(&[&a, &b], |p| $name(&p[0], &p[1])) {
                return r;
            }
            tape::cut(stringify!($name), &[&a, &b]);
            dispatch_all!(a.dtype(), T => zip_tensors::<T, bool>(stringify!($name), &a, &b, |$p, $q| $body, $cuda))
        }
    )*};
}

comparisons! {
    /// `x == y`.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1i64, 2], &[2])?;
    /// assert_eq!(gradtape::ops::equal(&x, &2)?.to_vec::<bool>()?, vec![false, true]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    equal: |p, q| p == q, cuda "p == q";
    /// `x != y`.
    ///
    /// ```
    /// assert!(gradtape::ops::not_equal(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    not_equal: |p, q| p != q, cuda "p != q";
    /// `x < y`.
    ///
    /// ```
    /// assert!(gradtape::ops::less(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    less: |p, q| p < q, cuda "p < q";
    /// `x <= y`.
    ///
    /// ```
    /// assert!(gradtape::ops::less_equal(&2.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    less_equal: |p, q| p <= q, cuda "p <= q";
    /// `x > y`.
    ///
    /// ```
    /// assert!(!gradtape::ops::greater(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    greater: |p, q| p > q, cuda "p > q";
    /// `x >= y`.
    ///
    /// ```
    /// assert!(gradtape::ops::greater_equal(&2.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    greater_equal: |p, q| p >= q, cuda "p >= q";
}

fn bools(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::Bool {
        return Err(Error::dtype(
            op,
            format!("expected a bool tensor, got {} {:?}", t.dtype(), t.shape()),
        ));
    }
    Ok(())
}

macro_rules! logical {
    ($($(#[$doc:meta])* $name:ident: |$p:ident, $q:ident| $body:expr, cuda $cuda:literal;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// When an operand is not bool or the shapes do not broadcast.
        pub fn $name(x: &Tensor, y: &Tensor) -> Result<Tensor> {
            if let Some(r) = vmap::rule_broadcast(&[x, y], |p| $name(&p[0], &p[1])) {
                return r;
            }
            bools(stringify!($name), x)?;
            bools(stringify!($name), y)?;
            zip_tensors::<bool, bool>(stringify!($name), x, y, |$p, $q| $body, $cuda)
        }
    )*};
}

logical! {
    /// Elementwise AND.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// assert_eq!(gradtape::ops::logical_and(&t, &t)?.to_vec::<bool>()?, vec![true, false]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_and: |p, q| p & q, cuda "p && q";
    /// Elementwise OR.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// let f = gradtape::Tensor::scalar(false);
    /// assert_eq!(gradtape::ops::logical_or(&t, &f)?.to_vec::<bool>()?, vec![true, false]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_or: |p, q| p | q, cuda "p || q";
    /// Elementwise exclusive OR.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// let u = gradtape::Tensor::scalar(true);
    /// assert_eq!(gradtape::ops::logical_xor(&t, &u)?.to_vec::<bool>()?, vec![false, true]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_xor: |p, q| p ^ q, cuda "p != q";
}

/// Elementwise NOT.
///
/// # Errors
/// When the operand is not bool.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
/// assert_eq!(gradtape::ops::logical_not(&t)?.to_vec::<bool>()?, vec![false, true]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn logical_not(x: &Tensor) -> Result<Tensor> {
    if let Some(r) = vmap::rule1(x, logical_not) {
        return r;
    }
    bools("logical_not", x)?;
    map_tensor::<bool, bool>("logical_not", x, |p| !p, "!v")
}

/// True where the element is neither infinite nor NaN.
///
/// # Errors
/// When the operand is not float.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1.0f32, f32::INFINITY, f32::NAN], &[3])?;
/// assert_eq!(gradtape::ops::is_finite(&t)?.to_vec::<bool>()?, vec![true, false, false]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn is_finite(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, is_finite) {
        return r;
    }
    tape::cut("is_finite", &[&x]);
    dispatch_float!("is_finite", x.dtype(), T => map_tensor::<T, bool>("is_finite", &x, |v| v.is_finite(), "isfinite(v)"))
}

/// True where the element is NaN.
///
/// # Errors
/// When the operand is not float.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1.0f32, f32::NAN], &[2])?;
/// assert_eq!(gradtape::ops::is_nan(&t)?.to_vec::<bool>()?, vec![false, true]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn is_nan(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, is_nan) {
        return r;
    }
    tape::cut("is_nan", &[&x]);
    dispatch_float!("is_nan", x.dtype(), T => map_tensor::<T, bool>("is_nan", &x, Float::is_nan, "isnan(v)"))
}

/// `x` where `condition` holds, `y` elsewhere (TensorFlow 2's `tf.where(condition, x, y)`;
/// `where` is a Rust keyword). All three broadcast. The gradient flows to the chosen side only.
///
/// # Errors
/// When `condition` is not bool, `x` and `y` differ in dtype, or the shapes do not broadcast.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let c = Tensor::from_vec(vec![true, false], &[2])?;
/// let r = ops::select(&c, &Tensor::from_vec(vec![1.0f32, 2.0], &[2])?, &0.0)?;
/// assert_eq!(r.to_vec::<f32>()?, vec![1.0, 0.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[doc(alias = "where")]
pub fn select(condition: &Tensor, x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let op = "select";
    let (a, b) = operand_pair(x, y);
    if let Some(r) = vmap::rule_broadcast(&[condition, &a, &b], |p| select(&p[0], &p[1], &p[2])) {
        return r;
    }
    bools(op, condition)?;
    same_dtype(op, &a, &b)?;
    let shape = broadcast_shapes(
        op,
        &broadcast_shapes(op, condition.shape(), a.shape())?,
        b.shape(),
    )?;
    let (lc, la, lb) = (
        condition.layout().broadcast_to(&shape),
        a.layout().broadcast_to(&shape),
        b.layout().broadcast_to(&shape),
    );
    #[cfg(feature = "cuda")]
    let gpu = crate::cuda::ops::select(condition, &a, &b, &shape)?;
    #[cfg(not(feature = "cuda"))]
    let gpu: Option<Tensor> = None;
    if let Some(out) = gpu {
        record_select(condition, &a, &b, &out)?;
        return Ok(out);
    }
    let c = condition.data::<bool>()?;
    let out = dispatch_all!(a.dtype(), T => Tensor::from_elems(
        cpu::zip3(c, &lc, a.data::<T>()?, &la, b.data::<T>()?, &lb, |c, p: T, q: T| if c { p } else { q })?,
        &shape,
    ));
    record_select(condition, &a, &b, &out)?;
    Ok(out)
}

/// The tape's record of `select`: the gradient goes to `a` where the condition holds and to
/// `b` elsewhere (the same rule on the host and on a GPU).
fn record_select(condition: &Tensor, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let shape = out.shape();
    tape::record(
        "select",
        &[a, b],
        out,
        || {
            let (cond, sa, sb) = (
                condition.clone(),
                Dims::from_slice(a.shape()),
                Dims::from_slice(b.shape()),
            );
            move |g: &Tensor, needs: &[bool]| {
                Ok([
                    opt(needs[0], || sum_to_shape(&select(&cond, g, &0.0)?, &sa))?,
                    opt(needs[1], || sum_to_shape(&select(&cond, &0.0, g)?, &sb))?,
                ])
            }
        },
        |t| {
            let terms = [
                t[0].as_ref()
                    .map(|ta| select(condition, ta, &0.0))
                    .transpose(),
                t[1].as_ref()
                    .map(|tb| select(condition, &0.0, tb))
                    .transpose(),
            ];
            tangent_sum(terms, shape)
        },
    )
}

fn convert<T: Element, U: Element>(x: &Tensor) -> Result<Tensor> {
    map_tensor::<T, U>("cast", x, |v| U::from_f64(v.to_f64()), "v")
}

/// Converts to another dtype: float to int truncates toward zero, anything to bool is `!= 0`,
/// bool to numbers is 1 or 0. Only float-to-float casts carry a gradient (cast back).
///
/// # Errors
/// Never for a valid dtype; the `Result` keeps the signature of every other op.
///
/// ```
/// use gradtape::{ops, DType, Tensor};
/// let t = Tensor::from_vec(vec![1.7f32, -1.7], &[2])?;
/// assert_eq!(ops::cast(&t, DType::I64)?.to_vec::<i64>()?, vec![1, -1]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn cast(x: &impl AsTensor, dtype: DType) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, |p| cast(p, dtype)) {
        return r;
    }
    if x.dtype() == dtype {
        return Ok(x);
    }
    let out = match dtype {
        DType::F32 => dispatch_all!(x.dtype(), T => convert::<T, f32>(&x)?),
        DType::F64 => dispatch_all!(x.dtype(), T => convert::<T, f64>(&x)?),
        DType::I64 => dispatch_all!(x.dtype(), T => convert::<T, i64>(&x)?),
        DType::Bool => dispatch_all!(x.dtype(), T => convert::<T, bool>(&x)?),
    };
    tape::record(
        "cast",
        &[&x],
        &out,
        || {
            let from = x.dtype();
            move |g: &Tensor, _: &[bool]| Ok([Some(cast(g, from)?)])
        },
        |t| tangent1(t, |t| cast(t, dtype)),
    )?;
    Ok(out)
}

/// The same values, cut off from every tape: gradients do not flow through it.
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(3.0f32);
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = ops::multiply(&x, &ops::stop_gradient(&x)?)?;
/// let [g] = tape.gradient(&y, [&x])?;
/// assert_eq!(g.unwrap().to_scalar::<f32>()?, 3.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// Never; the `Result` keeps the signature of every other op.
pub fn stop_gradient(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    if let Some(r) = vmap::rule1(&x, stop_gradient) {
        return r;
    }
    tape::cut("stop_gradient", &[&x]);
    Ok(x.with_new_id())
}
