//! `vmap`: run a function written for one example over a whole batch at once, as `jax.vmap`
//! and `torch.func.vmap` do, and the batching machinery the tape's jacobians are built on.
//!
//! Inside a `vmap`, the function sees each batched argument as the tensor of one example (its
//! shape has no batch axis). Such a tensor stands for the whole batch: every op, on meeting
//! one, applies its *batching rule* (written at the top of the op, beside its forward and
//! gradient rule), which runs the op once on the whole batch and says where the batch axis of
//! the result is. The batch axis is always kept first, so each rule only says how the op's
//! arguments (axes, shapes, permutations) shift by one. Levels nest: a `vmap` inside a `vmap`
//! batches over two axes, the inner one handled first.
//!
//! ```
//! use gradtape::{ops, vmap, Tensor};
//! // a dot product written for one pair of vectors...
//! let dot = |xs: &[Tensor]| Ok(vec![ops::reduce_sum(&ops::multiply(&xs[0], &xs[1])?, 0, false)?]);
//! let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = Tensor::from_vec(vec![1.0f32, 1.0], &[2])?;
//! // ...over the rows of `a`, with `b` shared by every row
//! let out = vmap(dot).in_axes([Some(0), None]).call(&[a, b])?;
//! assert_eq!(out[0].to_vec::<f32>()?, vec![3.0, 7.0]);
//! # Ok::<(), gradtape::Error>(())
//! ```
//!
//! What reads elements (`to_vec`, `item`, `Display`) cannot read one example's tensor inside
//! the function: it is an error that says so. Random numbers drawn inside a `vmap` are drawn
//! once, at the example's shape, and shared by every example (JAX's behaviour with an
//! unbatched key, PyTorch's `randomness="same"`): draw `[batch, ...]` outside and pass it in
//! to get different numbers per example.

use crate::context::levels::{at, LevelGuard};
use crate::error::{Error, Result};
use crate::function::Outputs;
use crate::ops;
use crate::ops::batching::{live_or_outer, move_axis, with_batch};
use crate::tensor::Tensor;

/// Every example's elements behind `t` (all vmap levels unwrapped): for checks that must see
/// every value, such as label bounds.
#[doc(hidden)]
pub fn all_examples(t: &Tensor) -> Tensor {
    t.all_examples()
}

/// Builds a vectorized version of `f` (see the [module docs](self)). `f` takes the arguments
/// of one example and returns one tensor (then [`Vmap::call`] returns one, as `jax.vmap(f)(x)`
/// does) or a `Vec` of them.
///
/// ```
/// use gradtape::{ops, vmap, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let norms = vmap(|xs: &[Tensor]| ops::reduce_sum(&ops::square(&xs[0])?, 0, false)).call(&[x])?;
/// assert_eq!(norms.to_vec::<f32>()?, vec![5.0, 25.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// ```
/// use gradtape::{ops, vmap, Tensor};
/// let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
/// // the softmax of each column (in_axes 1), results stacked along axis 1 (out_axes 1)
/// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::softmax(&xs[0], 0)?])).in_axes(1).out_axes(1);
/// let y = f.call(&[x.clone()])?;
/// assert_eq!(y[0].shape(), &[2, 3]);
/// assert_eq!(y[0].to_vec::<f32>()?, ops::softmax(&x, 0)?.to_vec::<f32>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn vmap<F, O>(f: F) -> Vmap<F>
where
    F: Fn(&[Tensor]) -> Result<O>,
    O: Outputs,
{
    Vmap {
        f,
        in_axes: None,
        out_axes: None,
        chunk_size: None,
    }
}

/// A vectorized function: [`vmap`]'s result, configured with the builder methods and run with
/// [`Vmap::call`].
pub struct Vmap<F> {
    f: F,
    in_axes: Option<InAxes>,
    out_axes: Option<OutAxes>,
    chunk_size: Option<usize>,
}

/// `vmap`'s `in_axes` as JAX writes it: one axis for every argument (`in_axes(1)`, JAX's
/// `in_axes=1`), or one entry per argument, `None` for an argument every example shares
/// (`in_axes([None, Some(0)])`, JAX's `(None, 0)`: a Rust array holds one type, so the
/// batched entries are `Some`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InAxes {
    /// The same batch axis in every argument.
    All(isize),
    /// One entry per argument.
    Each(Vec<Option<isize>>),
}

impl From<isize> for InAxes {
    fn from(a: isize) -> Self {
        InAxes::All(a)
    }
}

impl<const N: usize> From<[Option<isize>; N]> for InAxes {
    fn from(a: [Option<isize>; N]) -> Self {
        InAxes::Each(a.to_vec())
    }
}

impl<const N: usize> From<&[Option<isize>; N]> for InAxes {
    fn from(a: &[Option<isize>; N]) -> Self {
        InAxes::Each(a.to_vec())
    }
}

impl From<&[Option<isize>]> for InAxes {
    fn from(a: &[Option<isize>]) -> Self {
        InAxes::Each(a.to_vec())
    }
}

impl From<&Vec<Option<isize>>> for InAxes {
    fn from(a: &Vec<Option<isize>>) -> Self {
        InAxes::Each(a.clone())
    }
}

impl From<Vec<Option<isize>>> for InAxes {
    fn from(a: Vec<Option<isize>>) -> Self {
        InAxes::Each(a)
    }
}

/// `vmap`'s `out_axes`: one axis for every result (`out_axes(-1)`), or one per result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutAxes {
    /// The same axis in every result.
    All(isize),
    /// One entry per result.
    Each(Vec<isize>),
}

impl From<isize> for OutAxes {
    fn from(a: isize) -> Self {
        OutAxes::All(a)
    }
}

impl<const N: usize> From<[isize; N]> for OutAxes {
    fn from(a: [isize; N]) -> Self {
        OutAxes::Each(a.to_vec())
    }
}

impl<const N: usize> From<&[isize; N]> for OutAxes {
    fn from(a: &[isize; N]) -> Self {
        OutAxes::Each(a.to_vec())
    }
}

impl From<&[isize]> for OutAxes {
    fn from(a: &[isize]) -> Self {
        OutAxes::Each(a.to_vec())
    }
}

impl From<&Vec<isize>> for OutAxes {
    fn from(a: &Vec<isize>) -> Self {
        OutAxes::Each(a.clone())
    }
}

impl From<Vec<isize>> for OutAxes {
    fn from(a: Vec<isize>) -> Self {
        OutAxes::Each(a)
    }
}

impl<F, O> Vmap<F>
where
    F: Fn(&[Tensor]) -> Result<O>,
    O: Outputs,
{
    /// The batch axis of each argument, or `None` for an argument every example shares
    /// (default: axis 0 of every argument); one number for the same axis in all (see
    /// [`InAxes`]).
    ///
    /// ```
    /// use gradtape::{ops, vmap, Tensor};
    /// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::add(&xs[0], &xs[1])?])).in_axes([Some(-1), None]);
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let y = f.call(&[x, Tensor::from_vec(vec![10.0f32, 20.0], &[2])?])?;
    /// assert_eq!(y[0].to_vec::<f32>()?, vec![11.0, 23.0, 12.0, 24.0]); // columns + [10, 20]
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn in_axes(mut self, axes: impl Into<InAxes>) -> Self {
        self.in_axes = Some(axes.into());
        self
    }

    /// Where the batch axis goes in each result (default: axis 0 of every result); one number
    /// for all of them.
    ///
    /// ```
    /// use gradtape::{ops, vmap, Tensor};
    /// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::multiply(&xs[0], &2.0)?])).out_axes(-1);
    /// let y = f.call(&[Tensor::zeros(&[4, 3], gradtape::DType::F32)?])?;
    /// assert_eq!(y[0].shape(), &[3, 4]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn out_axes(mut self, axes: impl Into<OutAxes>) -> Self {
        self.out_axes = Some(axes.into());
        self
    }

    /// Runs the batch in chunks of at most `n` examples (the results are the same), so that
    /// the memory the function needs is that of `n` examples at a time, not of all of them.
    ///
    /// ```
    /// use gradtape::{ops, vmap, Tensor};
    /// let x = Tensor::from_vec((0..10).map(|v| v as f64).collect(), &[10])?;
    /// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::square(&xs[0])?]));
    /// let whole = f.call(&[x.clone()])?;
    /// let chunked = f.chunk_size(3).call(&[x])?;
    /// assert_eq!(whole[0].to_vec::<f64>()?, chunked[0].to_vec::<f64>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = Some(n);
        self
    }

    /// Runs `f` over the batch.
    ///
    /// # Errors
    /// When `in_axes` or `out_axes` do not fit the arguments or results (wrong count, axis out
    /// of range), no argument is batched, two arguments have different batch sizes (the
    /// message names both), `chunk_size` is 0, or `f` fails.
    ///
    /// ```
    /// use gradtape::{vmap, Tensor};
    /// let f = vmap(|xs: &[Tensor]| Ok(xs.to_vec()));
    /// let e = f.call(&[Tensor::zeros(&[3], gradtape::DType::F32)?, Tensor::zeros(&[4], gradtape::DType::F32)?]);
    /// assert!(e.unwrap_err().to_string().contains("argument 1 has 4"));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn call(&self, args: &[Tensor]) -> Result<O> {
        O::from_tensors(self.call_all(args)?)
    }

    fn call_all(&self, args: &[Tensor]) -> Result<Vec<Tensor>> {
        let op = "vmap";
        let in_axes = match &self.in_axes {
            Some(InAxes::Each(a)) if a.len() != args.len() => {
                return Err(Error::arg(
                    op,
                    format!(
                        "in_axes has {} entries for {} arguments",
                        a.len(),
                        args.len()
                    ),
                ))
            }
            Some(InAxes::Each(a)) => a.clone(),
            Some(InAxes::All(a)) => vec![Some(*a); args.len()],
            None => vec![Some(0); args.len()],
        };
        // Each batched argument's batch axis, and the one batch size they must agree on.
        let mut axes = Vec::with_capacity(args.len());
        let mut batch: Option<(usize, usize)> = None; // (size, argument)
        for (i, (x, a)) in args.iter().zip(&in_axes).enumerate() {
            let Some(a) = *a else {
                axes.push(None);
                continue;
            };
            let r = x.rank() as isize;
            let ax = if a < 0 { a + r } else { a };
            if !(0..r).contains(&ax) {
                return Err(Error::arg(
                    op,
                    format!(
                        "in_axes[{i}] = {a} is not an axis of argument {i}, of shape {:?}",
                        x.shape()
                    ),
                ));
            }
            let n = x.shape()[ax as usize];
            match batch {
                Some((m, j)) if m != n => {
                    return Err(Error::shape(
                        op,
                        format!("batch sizes differ: argument {j} has {m} along its batch axis, argument {i} has {n}"),
                    ))
                }
                None => batch = Some((n, i)),
                _ => {}
            }
            axes.push(Some(ax as usize));
        }
        let Some((n, _)) = batch else {
            return Err(Error::arg(
                op,
                "no argument is batched (every in_axes entry is None)",
            ));
        };
        let chunk = match self.chunk_size {
            Some(0) => return Err(Error::arg(op, "chunk_size must be at least 1")),
            Some(c) => c.min(n.max(1)),
            None => n.max(1),
        };
        if chunk >= n {
            return self.run(args, &axes, n);
        }
        // Chunks: each argument sliced along its batch axis, results concatenated.
        let mut parts: Vec<Vec<Tensor>> = vec![];
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let sliced = args
                .iter()
                .zip(&axes)
                .map(|(x, ax)| match ax {
                    Some(ax) => {
                        let mut begin = vec![0; x.rank()];
                        let mut size = vec![-1; x.rank()];
                        begin[*ax] = start;
                        size[*ax] = len as isize;
                        ops::slice(x, &begin, &size)
                    }
                    None => Ok(x.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            parts.push(self.run(&sliced, &axes, len)?);
            start += len;
        }
        let outs = parts[0].len();
        (0..outs)
            .map(|k| {
                let pieces: Vec<&Tensor> = parts.iter().map(|p| &p[k]).collect();
                let ax = self.out_axis(k, pieces[0].rank().saturating_sub(1))? as isize;
                ops::concat(&pieces, ax)
            })
            .collect()
    }

    fn out_axis(&self, k: usize, example_rank: usize) -> Result<usize> {
        let a = match &self.out_axes {
            None => Some(0),
            Some(OutAxes::All(a)) => Some(*a),
            Some(OutAxes::Each(o)) => o.get(k).copied(),
        };
        let Some(a) = a else {
            return Err(Error::arg(
                "vmap",
                format!("out_axes has no entry for result {k}"),
            ));
        };
        let r = example_rank as isize + 1;
        let ax = if a < 0 { a + r } else { a };
        if !(0..r).contains(&ax) {
            return Err(Error::arg(
                "vmap",
                format!("out_axes[{k}] = {a} is not an axis of a result of rank {r}"),
            ));
        }
        Ok(ax as usize)
    }

    /// One pass of `f` over a batch of `n` (a chunk or the whole batch).
    fn run(&self, args: &[Tensor], axes: &[Option<usize>], n: usize) -> Result<Vec<Tensor>> {
        let guard = LevelGuard::enter(n);
        let level = guard.0;
        let wrapped = args
            .iter()
            .zip(axes)
            .map(|(x, ax)| match ax {
                Some(ax) => Ok(Tensor::batched(move_axis(x, *ax, 0)?, level)),
                None => Ok(x.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = (self.f)(&wrapped)?.into_tensors();
        if let Some(OutAxes::Each(o)) = &self.out_axes {
            if o.len() != outs.len() {
                return Err(Error::arg(
                    "vmap",
                    format!(
                        "out_axes has {} entries for {} results",
                        o.len(),
                        outs.len()
                    ),
                ));
            }
        }
        outs.iter()
            .enumerate()
            .map(|(k, y)| {
                // A result that does not depend on the batch is the same for every example.
                let p = match at(y, level) {
                    Some(p) => p.clone(),
                    None => {
                        live_or_outer(y, level)?;
                        with_batch(y, n)?
                    }
                };
                let ax = self.out_axis(k, y.rank())?;
                move_axis(&p, 0, ax)
            })
            .collect()
    }
}
