//! NumPy-style slicing with the [`s!`](crate::s) macro: `x.slice(s![.., 1..3])` is
//! `x[:, 1:3]`. The result is a view (no copy) and differentiable: it is
//! [`strided_slice`](super::strided_slice), then [`squeeze`](super::squeeze) for indexed axes.

use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use super::{squeeze, strided_slice};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One axis of a slice: a range with a step (kept) or a single index (dropped, as in NumPy).
/// Negative values count from the end. Made by [`s!`](crate::s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceArg {
    /// `start..end` by `step` (`end` `None`: to the end of the axis, whichever way `step` goes).
    Range {
        /// First index (negative: from the end; `None`: the start for this step's direction).
        start: Option<isize>,
        /// One past the last index (exclusive).
        end: Option<isize>,
        /// Distance between kept indices; negative walks backwards. Not zero.
        step: isize,
    },
    /// One index; the axis is dropped from the result.
    Index(isize),
}

impl SliceArg {
    /// The same range taking every `step`-th element (`s![0..10;2]`). An index is unchanged.
    ///
    /// ```
    /// use gradtape::ops::SliceArg;
    /// assert_eq!(SliceArg::from(..).step(-1), SliceArg::Range { start: None, end: None, step: -1 });
    /// ```
    pub fn step(self, step: isize) -> SliceArg {
        match self {
            SliceArg::Range { start, end, .. } => SliceArg::Range { start, end, step },
            index => index,
        }
    }
}

macro_rules! slice_arg_from {
    ($($t:ty),*) => {$(
        impl From<$t> for SliceArg {
            fn from(i: $t) -> SliceArg {
                SliceArg::Index(i as isize)
            }
        }
        impl From<Range<$t>> for SliceArg {
            fn from(r: Range<$t>) -> SliceArg {
                SliceArg::Range { start: Some(r.start as isize), end: Some(r.end as isize), step: 1 }
            }
        }
        impl From<RangeFrom<$t>> for SliceArg {
            fn from(r: RangeFrom<$t>) -> SliceArg {
                SliceArg::Range { start: Some(r.start as isize), end: None, step: 1 }
            }
        }
        impl From<RangeTo<$t>> for SliceArg {
            fn from(r: RangeTo<$t>) -> SliceArg {
                SliceArg::Range { start: None, end: Some(r.end as isize), step: 1 }
            }
        }
        impl From<RangeInclusive<$t>> for SliceArg {
            fn from(r: RangeInclusive<$t>) -> SliceArg {
                let end = *r.end() as isize;
                // `a..=-1` runs to the end of the axis.
                let end = if end == -1 { None } else { Some(end + 1) };
                SliceArg::Range { start: Some(*r.start() as isize), end, step: 1 }
            }
        }
        impl From<RangeToInclusive<$t>> for SliceArg {
            fn from(r: RangeToInclusive<$t>) -> SliceArg {
                let end = r.end as isize;
                let end = if end == -1 { None } else { Some(end + 1) };
                SliceArg::Range { start: None, end, step: 1 }
            }
        }
    )*};
}
slice_arg_from!(i32, i64, isize, usize);

impl From<RangeFull> for SliceArg {
    fn from(_: RangeFull) -> SliceArg {
        SliceArg::Range {
            start: None,
            end: None,
            step: 1,
        }
    }
}

/// A slice for [`Tensor::slice`], in the spirit of ndarray's `s!`: one entry per leading axis
/// (axes not listed are kept whole), each `..`, `a..b`, `a..`, `..b`, `a..=b` (optionally
/// `;step`, negative walks backwards) or an index `i` (drops the axis). Negative numbers count
/// from the end, as in NumPy.
///
/// ```
/// use gradtape::{s, Tensor};
/// let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[3, 4])?;
/// assert_eq!(x.slice(s![.., 1..3])?.to_vec::<f32>()?, vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
/// assert_eq!(x.slice(s![-1, ..;2])?.to_vec::<f32>()?, vec![8.0, 10.0]); // x[-1, ::2]
/// assert_eq!(x.slice(s![1])?.shape(), &[4]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[macro_export]
macro_rules! s {
    ($($arg:expr $(; $step:expr)?),* $(,)?) => {
        [$($crate::ops::SliceArg::from($arg)$(.step($step))?),*]
    };
}

/// See [`Tensor::slice`].
///
/// # Errors
/// As [`Tensor::slice`].
///
/// ```
/// use gradtape::{ops, s, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
/// assert_eq!(ops::slice_with(&x, &s![1..])?.to_vec::<f32>()?, vec![2.0, 3.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn slice_with(x: &Tensor, args: &[SliceArg]) -> Result<Tensor> {
    let op = "slice";
    if args.len() > x.rank() {
        return Err(Error::shape(
            op,
            format!(
                "{} slice entries for a tensor of shape {:?}",
                args.len(),
                x.shape()
            ),
        ));
    }
    let (mut begin, mut end, mut strides, mut drop) = (vec![], vec![], vec![], vec![]);
    for (axis, a) in args.iter().enumerate() {
        let d = x.shape()[axis] as isize;
        match *a {
            SliceArg::Index(i) => {
                let j = if i < 0 { i + d } else { i };
                if !(0..d).contains(&j) {
                    return Err(Error::index(
                        op,
                        format!(
                            "index {i} is out of range for axis {axis} of size {d} (shape {:?})",
                            x.shape()
                        ),
                    ));
                }
                begin.push(j);
                end.push(j + 1);
                strides.push(1);
                drop.push(axis as isize);
            }
            SliceArg::Range {
                start,
                end: e,
                step,
            } => {
                let forward = step > 0;
                begin.push(start.unwrap_or(if forward { 0 } else { -1 }));
                end.push(e.unwrap_or(if forward { isize::MAX } else { -d - 1 }));
                strides.push(step);
            }
        }
    }
    let view = strided_slice(x, &begin, &end, &strides)?;
    if drop.is_empty() {
        Ok(view)
    } else {
        squeeze(&view, &drop)
    }
}

impl Tensor {
    /// NumPy-style slicing: `x.slice(s![.., 1..3])` is `x[:, 1:3]`. A view of `x`, recorded
    /// on the tape like any op (its gradient scatters back into the sliced positions).
    ///
    /// # Errors
    /// When there are more entries than axes, an index is out of range or a step is zero.
    ///
    /// ```
    /// use gradtape::{s, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let col = x.slice(s![.., 1])?; // [2, 4]
    /// assert!(col.shares_storage_with(&x));
    /// let [g] = tape.gradient(&col, [&x])?;
    /// assert_eq!(g.unwrap().to_vec::<f32>()?, vec![0.0, 1.0, 0.0, 1.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn slice(&self, args: impl AsRef<[SliceArg]>) -> Result<Tensor> {
        slice_with(self, args.as_ref())
    }
}

impl crate::variable::Variable {
    /// The variable's value sliced, NumPy-style, as [`Tensor::slice`]: `v[::-1]` in
    /// TensorFlow is `v.slice(s![..;-1])` (a read of the variable, as any op's, so a tape
    /// watching it gets the gradient).
    ///
    /// # Errors
    /// As [`Tensor::slice`].
    ///
    /// ```
    /// use gradtape::{s, GradientTape, Variable};
    /// let v = Variable::new(gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?);
    /// let tape = GradientTape::new();
    /// let r = v.slice(s![..;-1])?;
    /// assert_eq!(r.to_vec::<f32>()?, vec![3.0, 2.0, 1.0]);
    /// let [g] = tape.gradient(&gradtape::ops::reduce_sum(&(&r * &r), gradtape::Axes::All, false)?, [&v])?;
    /// assert_eq!(g.unwrap().to_vec::<f32>()?, vec![2.0, 4.0, 6.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn slice(&self, args: impl AsRef<[SliceArg]>) -> Result<Tensor> {
        slice_with(&self.value(), args.as_ref())
    }
}
