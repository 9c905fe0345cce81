//! NaN hunting (TensorFlow's `tf.debugging.enable_check_numerics`): while it is on for a
//! thread, the first op whose float result holds a NaN or an infinity, in the forward pass or
//! in a gradient rule, returns an error naming the op, the shapes and, for a gradient rule,
//! which forward op's gradient it was, instead of letting the NaN reach the weights hours
//! later. Off by default; when off, each differentiable op pays one thread-local read.
//!
//! Checking reads every result, so pending tensors (see [`crate::fusion`]) are computed at
//! once: use it to find a NaN, not in production.
//!
//! ```
//! use gradtape::{debugging, ops, Tensor};
//! let x = Tensor::from_vec(vec![1.0f32, -1.0], &[2])?;
//! assert!(ops::sqrt(&x).is_ok()); // a NaN, silently
//! debugging::enable_check_numerics();
//! let e = ops::sqrt(&x).unwrap_err().to_string();
//! assert!(e.contains("sqrt") && e.contains("NaN"), "{e}");
//! debugging::disable_check_numerics();
//! # Ok::<(), gradtape::Error>(())
//! ```

use crate::context;
use crate::context::scoped::Entered;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Runs a gradient rule, so that what it computes is reported as part of `op`'s gradient.
pub(crate) fn in_gradient_of<R>(op: &'static str, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<&'static str>);
    impl Drop for Restore {
        fn drop(&mut self) {
            context::try_with(|c| c.gradient_of.set(self.0));
        }
    }
    let _restore = Restore(context::with(|c| c.gradient_of.replace(Some(op))));
    f()
}

/// Turns checking on for this thread (like a tape, it is per thread).
pub fn enable_check_numerics() {
    context::with(|c| c.check_numerics.set(true));
}

/// Turns checking off for this thread.
///
/// ```
/// gradtape::debugging::disable_check_numerics();
/// assert!(!gradtape::debugging::check_numerics_enabled());
/// ```
pub fn disable_check_numerics() {
    context::with(|c| c.check_numerics.set(false));
}

/// Whether checking is on for this thread.
///
/// ```
/// assert!(!gradtape::debugging::check_numerics_enabled());
/// ```
pub fn check_numerics_enabled() -> bool {
    checking()
}

/// Runs `f` with checking on, then restores what was set before.
///
/// ```
/// use gradtape::{debugging, ops, Tensor};
/// let e = debugging::check_numerics(|| ops::log(&Tensor::scalar(0.0f32)));
/// assert!(e.unwrap_err().to_string().contains("-inf"));
/// ```
pub fn check_numerics<R>(f: impl FnOnce() -> R) -> R {
    let _on = check_numerics_guard();
    f()
}

/// Checking on until the guard is dropped: [`check_numerics`] for a block, so that the end of
/// the block (or an early `?` return) ends it, as a Python `with` does.
///
/// ```
/// use gradtape::{debugging, ops, Tensor};
/// fn step() -> gradtape::Result<Tensor> {
///     let _check = debugging::check_numerics_guard();
///     ops::log(&Tensor::scalar(0.0f32)) // -inf: an error here
/// }
/// assert!(step().is_err());
/// assert!(!debugging::check_numerics_enabled()); // the early return ended it
/// ```
pub fn check_numerics_guard() -> CheckNumericsGuard {
    CheckNumericsGuard {
        _scope: Entered::enter(|c| (&c.check_numerics, &c.check_numerics_scopes), true),
    }
}

/// See [`check_numerics_guard`]. Dropped in any order, guards leave the newest live one's
/// setting, and the last restores what the first found.
#[must_use = "checking ends when the guard is dropped"]
pub struct CheckNumericsGuard {
    _scope: Entered<bool>,
}

#[inline(always)]
pub(crate) fn checking() -> bool {
    context::with(|c| c.check_numerics.get())
}

/// An error when `output` holds a NaN or an infinity. `gradient_of`: the forward op whose
/// gradient rule produced it.
#[cold]
#[inline(never)]
pub(crate) fn check(
    op: &'static str,
    gradient_of: Option<&'static str>,
    inputs: &[&Tensor],
    output: &Tensor,
) -> Result<()> {
    if !output.dtype().is_float() || output.batch().is_some() {
        return Ok(());
    }
    let values = output.read_f64_vec()?;
    let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) else {
        return Ok(());
    };
    let what = if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    };
    let shapes: Vec<String> = inputs
        .iter()
        .map(|t| format!("{} {:?}", t.dtype(), t.shape()))
        .collect();
    let place = match (gradient_of, context::with(|c| c.gradient_of.get())) {
        (Some(f), _) => format!(
            "the gradient of {f} (upstream gradient {})",
            shapes.join(", ")
        ),
        (None, Some(f)) => format!("in the gradient of {f}, {op} of {}", shapes.join(", ")),
        (None, None) => format!("{op} of {}", shapes.join(", ")),
    };
    Err(Error::arg(
        "check_numerics",
        format!(
            "{place} produced {what} at element {i} of its {} {:?} result",
            output.dtype(),
            output.shape()
        ),
    ))
}
