//! Comparisons, logic, selection, casts and `stop_gradient`: the ops around the differentiable
//! ones. Only `select` and float-to-float `cast` have gradients.

use super::apply;
use crate::backend::cpu;
use crate::dtype::dispatch;
use crate::dtype::{DType, Element, Float};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive, Saves};
use crate::shape::broadcast_shapes;
use crate::tensor::creation::operand_pair;
use crate::tensor::{AsTensor, Tensor};

use super::elementwise::{map_tensor, zip_tensors};
use super::same_dtype;

macro_rules! comparisons {
    ($($(#[$doc:meta])* $name:ident($P:ident): |$p:ident, $q:ident| $body:expr, cuda $cuda:literal;)*) => {
        $(
            #[allow(clippy::bool_comparison)]
            pub(crate) static $P: Primitive = Primitive::elementwise(
                stringify!($name),
                2,
                |xs, _| {
                    dispatch!(xs[0].dtype(), T => {
                        zip_tensors::<T, bool>(stringify!($name), xs[0], xs[1], |$p, $q| $body, $cuda)
                    })
                },
                Derivative::None,
                Some($cuda),
            );

            $(#[$doc])*
            ///
            /// Broadcasts; returns a bool tensor; has no gradient.
            ///
            /// # Errors
            /// When dtypes differ or shapes do not broadcast.
            pub fn $name(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
                let (a, b) = operand_pair(x, y);
                apply(&$P, &[&a, &b], &Params::NONE)
            }
        )*

        /// The comparisons' primitives.
        pub(crate) static COMPARISONS: &[&Primitive] = &[$(&$P),*];
    };
}

comparisons! {
    /// `x == y`.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1i64, 2], &[2])?;
    /// assert_eq!(gradtape::ops::equal(&x, &2)?.to_vec::<bool>()?, vec![false, true]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    equal(EQUAL): |p, q| p == q, cuda "p == q";
    /// `x != y`.
    ///
    /// ```
    /// assert!(gradtape::ops::not_equal(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    not_equal(NOT_EQUAL): |p, q| p != q, cuda "p != q";
    /// `x < y`.
    ///
    /// ```
    /// assert!(gradtape::ops::less(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    less(LESS): |p, q| p < q, cuda "p < q";
    /// `x <= y`.
    ///
    /// ```
    /// assert!(gradtape::ops::less_equal(&2.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    less_equal(LESS_EQUAL): |p, q| p <= q, cuda "p <= q";
    /// `x > y`.
    ///
    /// ```
    /// assert!(!gradtape::ops::greater(&1.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    greater(GREATER): |p, q| p > q, cuda "p > q";
    /// `x >= y`.
    ///
    /// ```
    /// assert!(gradtape::ops::greater_equal(&2.0, &2.0)?.to_scalar::<bool>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    greater_equal(GREATER_EQUAL): |p, q| p >= q, cuda "p >= q";
}

/// The primitives of this file defined one by one.
pub(crate) static PRIMITIVES: &[&Primitive] = &[
    &LOGICAL_NOT,
    &IS_FINITE,
    &IS_NAN,
    &STOP_GRADIENT,
    &SELECT,
    &CAST,
];

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
    ($($(#[$doc:meta])* $name:ident($P:ident): |$p:ident, $q:ident| $body:expr, cuda $cuda:literal;)*) => {
        $(
            pub(crate) static $P: Primitive = Primitive::elementwise(
                stringify!($name),
                2,
                |xs, _| {
                    bools(stringify!($name), xs[0])?;
                    bools(stringify!($name), xs[1])?;
                    zip_tensors::<bool, bool>(stringify!($name), xs[0], xs[1], |$p, $q| $body, $cuda)
                },
                Derivative::None,
                Some($cuda),
            );

            $(#[$doc])*
            ///
            /// # Errors
            /// When an operand is not bool or the shapes do not broadcast.
            pub fn $name(x: &Tensor, y: &Tensor) -> Result<Tensor> {
                apply(&$P, &[x, y], &Params::NONE)
            }
        )*

        /// The logical ops' primitives.
        pub(crate) static LOGICAL: &[&Primitive] = &[$(&$P),*];
    };
}

logical! {
    /// Elementwise AND.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// assert_eq!(gradtape::ops::logical_and(&t, &t)?.to_vec::<bool>()?, vec![true, false]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_and(LOGICAL_AND): |p, q| p & q, cuda "p && q";
    /// Elementwise OR.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// let f = gradtape::Tensor::scalar(false);
    /// assert_eq!(gradtape::ops::logical_or(&t, &f)?.to_vec::<bool>()?, vec![true, false]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_or(LOGICAL_OR): |p, q| p | q, cuda "p || q";
    /// Elementwise exclusive OR.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// let u = gradtape::Tensor::scalar(true);
    /// assert_eq!(gradtape::ops::logical_xor(&t, &u)?.to_vec::<bool>()?, vec![false, true]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    logical_xor(LOGICAL_XOR): |p, q| p ^ q, cuda "p != q";
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
    apply(&LOGICAL_NOT, &[x], &Params::NONE)
}

pub(crate) static LOGICAL_NOT: Primitive = Primitive::elementwise(
    "logical_not",
    1,
    |xs, _| {
        bools("logical_not", xs[0])?;
        map_tensor::<bool, bool>("logical_not", xs[0], |p| !p, "!v")
    },
    Derivative::None,
    Some("!v"),
);

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
    apply(&IS_FINITE, &[&x.operand().into_tensor()], &Params::NONE)
}

pub(crate) static IS_FINITE: Primitive = Primitive::elementwise(
    "is_finite",
    1,
    |xs, _| {
        dispatch!(float "is_finite", xs[0].dtype(), T => {
            map_tensor::<T, bool>("is_finite", xs[0], |v| v.is_finite(), "isfinite(v)")
        })
    },
    Derivative::None,
    Some("isfinite(v)"),
);

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
    apply(&IS_NAN, &[&x.operand().into_tensor()], &Params::NONE)
}

pub(crate) static IS_NAN: Primitive = Primitive::elementwise(
    "is_nan",
    1,
    |xs, _| {
        dispatch!(float "is_nan", xs[0].dtype(), T => {
            map_tensor::<T, bool>("is_nan", xs[0], Float::is_nan, "isnan(v)")
        })
    },
    Derivative::None,
    Some("isnan(v)"),
);

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
    let (a, b) = operand_pair(x, y);
    apply(&SELECT, &[condition, &a, &b], &Params::NONE)
}

/// The gradient goes to `x` where the condition holds and to `y` elsewhere.
pub(crate) static SELECT: Primitive = Primitive::elementwise(
    "select",
    3,
    select_forward,
    Derivative::Broadcast {
        saves: Saves::FirstInput,
        partial: |s, g, i| match i {
            1 => select(s.a()?, g, &0.0),
            2 => select(s.a()?, &0.0, g),
            _ => Err(Error::tape(
                "select",
                "the condition has no gradient (it is bool)",
            )),
        },
    },
    None,
);

fn select_forward(xs: &[&Tensor], _: &Params) -> Result<Tensor> {
    let op = "select";
    let (condition, a, b) = (xs[0], xs[1], xs[2]);
    bools(op, condition)?;
    same_dtype(op, a, b)?;
    let shape = broadcast_shapes(
        op,
        &broadcast_shapes(op, condition.shape(), a.shape())?,
        b.shape(),
    )?;
    if let Some(out) = crate::backend::select(condition, a, b, &shape)? {
        return Ok(out);
    }
    let (lc, la, lb) = (
        condition.layout().broadcast_to(&shape),
        a.layout().broadcast_to(&shape),
        b.layout().broadcast_to(&shape),
    );
    let c = condition.data::<bool>()?;
    Ok(dispatch!(a.dtype(), T => Tensor::from_elems(
        cpu::zip3(c, &lc, a.data::<T>()?, &la, b.data::<T>()?, &lb, |c, p: T, q: T| if c { p } else { q })?,
        &shape,
    )))
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
    if x.dtype() == dtype {
        return Ok(x);
    }
    apply(&CAST, &[&x], &Params::dtype(dtype))
}

/// Float to float is linear (its transpose casts the gradient back); a cast from or to
/// integers or bools ends a tape's path (its result or input is not float).
pub(crate) static CAST: Primitive = Primitive {
    name: "cast",
    forward: |xs, params| {
        let x = xs[0];
        Ok(match params.as_dtype("cast")? {
            DType::F32 => dispatch!(x.dtype(), T => convert::<T, f32>(x)?),
            DType::F64 => dispatch!(x.dtype(), T => convert::<T, f64>(x)?),
            DType::I64 => dispatch!(x.dtype(), T => convert::<T, i64>(x)?),
            DType::Bool => dispatch!(x.dtype(), T => convert::<T, bool>(x)?),
        })
    },
    arity: 1,
    params: ParamsKind::DType,
    derivative: Derivative::Linear {
        transpose: |_, x, g| cast(g, x.dtype),
    },
    batching: Batching::Elementwise,
    cuda: None,
    fused: None,
};

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
/// Only inside [`crate::debugging::check_numerics`], when `x` holds a NaN or an infinity (as
/// for every op).
pub fn stop_gradient(x: &impl AsTensor) -> Result<Tensor> {
    apply(&STOP_GRADIENT, &[&x.operand().into_tensor()], &Params::NONE)
}

pub(crate) static STOP_GRADIENT: Primitive = Primitive::elementwise(
    "stop_gradient",
    1,
    |xs, _| Ok(xs[0].with_new_id()),
    Derivative::None,
    None,
);
