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
//! let out = vmap(dot).in_axes(&[Some(0), None]).call(&[a, b])?;
//! assert_eq!(out[0].to_vec::<f32>()?, vec![3.0, 7.0]);
//! # Ok::<(), gradtape::Error>(())
//! ```
//!
//! What reads elements (`to_vec`, `item`, `Display`) cannot read one example's tensor inside
//! the function: it is an error that says so. Random numbers drawn inside a `vmap` are drawn
//! once, at the example's shape, and shared by every example (JAX's behaviour with an
//! unbatched key, PyTorch's `randomness="same"`): draw `[batch, ...]` outside and pass it in
//! to get different numbers per example.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::context;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

static NEXT_LEVEL: AtomicUsize = AtomicUsize::new(1);

/// This thread's vmap levels: vectorization's part of the [`Context`](crate::context::Context).
pub(crate) struct Levels {
    /// The vmap levels running on this thread, innermost last: (level, batch size).
    levels: RefCell<Vec<(usize, usize)>>,
    /// Per-example copies of variables read under a tape started inside a vmap:
    /// (level, variable handle, the copy standing for the batch).
    copies: RefCell<Vec<(usize, u64, Tensor)>>,
}

impl Levels {
    pub(crate) const fn new() -> Levels {
        Levels {
            levels: RefCell::new(Vec::new()),
            copies: RefCell::new(Vec::new()),
        }
    }

    /// The running levels, for a [`Snapshot`](crate::context::Snapshot).
    pub(crate) fn levels(&self) -> Vec<(usize, usize)> {
        self.levels.borrow().clone()
    }

    /// Makes `levels` the running ones (work moved to or back from another thread).
    pub(crate) fn set_levels(&self, levels: &[(usize, usize)]) {
        let mut mine = self.levels.borrow_mut();
        mine.clear();
        mine.extend_from_slice(levels);
    }

    /// Drops the variable copies of levels that do not run here (any more): those made for
    /// the levels a [`Snapshot`](crate::context::Snapshot) brought, once its work is done.
    pub(crate) fn forget_copies_of_other_levels(&self) {
        let levels = self.levels.borrow();
        self.copies
            .borrow_mut()
            .retain(|(lv, _, _)| levels.iter().any(|&(l, _)| l == *lv));
    }
}

fn levels<R>(f: impl FnOnce(&RefCell<Vec<(usize, usize)>>) -> R) -> R {
    context::with(|c| f(&c.vmap.levels))
}

fn copies<R>(f: impl FnOnce(&RefCell<Vec<(usize, u64, Tensor)>>) -> R) -> R {
    context::with(|c| f(&c.vmap.copies))
}

/// The innermost vmap level running on this thread and its batch size.
pub(crate) fn innermost() -> Option<(usize, usize)> {
    levels(|l| l.borrow().last().copied())
}

/// The per-example copy of a variable read inside the innermost vmap (`read` repeated over the
/// batch, a broadcast view, recorded on the tapes), made on the first read in that level.
pub(crate) fn per_example_copy(handle: u64, read: &Tensor) -> Option<Tensor> {
    let (level, b) = innermost()?;
    if let Some(copy) = copy_of(handle, level) {
        return Some(copy);
    }
    let copy = Tensor::batched(with_batch(read, b).ok()?, level);
    copies(|c| c.borrow_mut().push((level, handle, copy.clone())));
    Some(copy)
}

/// The per-example copy of variable `handle` in `level`, if it was read there.
pub(crate) fn copy_of(handle: u64, level: usize) -> Option<Tensor> {
    copies(|c| {
        c.borrow()
            .iter()
            .find(|(l, h, _)| *l == level && *h == handle)
            .map(|(_, _, t)| t.clone())
    })
}

/// A level running on this thread until dropped.
struct LevelGuard(usize);

impl LevelGuard {
    fn enter(batch: usize) -> LevelGuard {
        let level = NEXT_LEVEL.fetch_add(1, Ordering::Relaxed);
        levels(|l| l.borrow_mut().push((level, batch)));
        LevelGuard(level)
    }
}

impl Drop for LevelGuard {
    fn drop(&mut self) {
        context::try_with(|c| {
            c.vmap.levels.borrow_mut().retain(|&(lv, _)| lv != self.0);
            c.vmap
                .copies
                .borrow_mut()
                .retain(|(lv, _, _)| *lv != self.0);
        });
    }
}

fn live(level: usize) -> Result<()> {
    if levels(|l| l.borrow().iter().any(|&(lv, _)| lv == level)) {
        Ok(())
    } else {
        Err(Error::arg(
            "vmap",
            "a tensor of one example escaped the vmap that made it (or moved to another thread); return it from the function instead",
        ))
    }
}

/// `x` (the whole batch of a vmap at `level`) as one example's tensor at that level. A vmap
/// that started later (a higher level) stays outermost: `x` batched at such a level `m` (a
/// tangent made inside `vmap(jvp)` under an outer vmap) becomes
/// `batched(batched(swap(p), level), m)`, its two batch axes exchanged. Wrapped the other way,
/// the inner level's batch was hidden under the outer one and `vmap(vmap(jvp))` and
/// `vmap(jacfwd)` returned values of a finished vmap.
pub(crate) fn batched_below(x: &Tensor, level: usize) -> Result<Tensor> {
    match x.batch() {
        Some((p, m)) if m > level => {
            let swapped = ops::transpose(p, Some(&swap_first_two(p.rank())))?;
            Ok(Tensor::batched(batched_below(&swapped, level)?, m))
        }
        _ => Ok(Tensor::batched(x.clone(), level)),
    }
}

fn swap_first_two(rank: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(0, 1);
    perm
}

/// The error for reading the elements of one example's tensor.
pub(crate) fn read_error(t: &Tensor) -> Error {
    Error::arg(
        "vmap",
        format!(
            "the elements of a batched tensor of shape {:?} cannot be read inside vmap (an op without a batching rule, or to_vec/item/Display inside the function)",
            t.shape()
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// What batching rules use

/// The innermost vmap level among the operands, when any is batched.
#[inline]
pub(crate) fn level_of(xs: &[&Tensor]) -> Option<usize> {
    xs.iter().filter_map(|x| x.batch().map(|(_, l)| l)).max()
}

/// The whole batch behind `x` at `level`, or `None` when `x` is not batched there.
pub(crate) fn at(x: &Tensor, level: usize) -> Option<&Tensor> {
    match x.batch() {
        Some((p, l)) if l == level => Some(p),
        _ => None,
    }
}

/// The batch size of a level.
pub(crate) fn size_of(level: usize) -> Result<usize> {
    live(level)?;
    Ok(levels(|l| {
        l.borrow()
            .iter()
            .find(|&&(lv, _)| lv == level)
            .map_or(0, |&(_, b)| b)
    }))
}

/// The rule of an op with one tensor operand: `f` gets the whole batch (batch axis first)
/// and must keep the batch axis first in its result. `None` when `x` is not batched: the op
/// then runs as usual.
#[inline]
pub(crate) fn rule1(
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Option<Result<Tensor>> {
    let (p, level) = x.batch()?;
    Some(live(level).and_then(|_| Ok(Tensor::batched(f(p)?, level))))
}

/// The rule of ops that broadcast their operands together (elementwise ops, `select`,
/// `matmul`'s batch axes): each batched operand gets unit axes after its batch axis so that
/// NumPy's right-aligned broadcasting keeps the batch axis first; unbatched operands
/// broadcast over the batch as they are.
#[inline]
pub(crate) fn rule_broadcast(
    xs: &[&Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Option<Result<Tensor>> {
    let level = level_of(xs)?;
    Some((|| {
        live(level)?;
        let rank = xs.iter().map(|x| x.rank()).max().unwrap_or(0);
        let ps = xs
            .iter()
            .map(|x| match at(x, level) {
                Some(p) => lift(p, x.rank(), rank),
                None => Ok((*x).clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::batched(f(&ps)?, level))
    })())
}

/// The rule of ops that take a list of operands along an axis (`concat`): every operand gets
/// the batch axis, unbatched ones by broadcasting (a view).
pub(crate) fn rule_list(
    xs: &[&Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Option<Result<Tensor>> {
    let level = level_of(xs)?;
    Some((|| {
        let b = size_of(level)?;
        let ps = xs
            .iter()
            .map(|x| match at(x, level) {
                Some(p) => Ok(p.clone()),
                None => with_batch(x, b),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::batched(f(&ps)?, level))
    })())
}

/// An operand as a rule sees it: the whole batch (`true`) or the tensor as it is (`false`).
pub(crate) type Operand = (Tensor, bool);

/// For rules that look at which operands are batched: `rule(level, operands)` with each
/// operand as the whole batch (`true`, batch axis first) or as it is (`false`); the rule wraps
/// its result with [`wrap`]. `None` when no operand is batched.
pub(crate) fn unbatched(
    xs: &[&Tensor],
    rule: impl FnOnce(usize, &[Operand]) -> Result<Tensor>,
) -> Option<Result<Tensor>> {
    let level = level_of(xs)?;
    Some(live(level).and_then(|_| {
        let args: Vec<Operand> = xs
            .iter()
            .map(|x| match at(x, level) {
                Some(p) => (p.clone(), true),
                None => ((*x).clone(), false),
            })
            .collect();
        rule(level, &args)
    }))
}

/// Every example's elements behind `t` (all vmap levels unwrapped): for checks that must see
/// every value, such as label bounds.
#[doc(hidden)]
pub fn all_examples(t: &Tensor) -> Tensor {
    let mut t = t.clone();
    while let Some((p, _)) = t.batch() {
        t = p.clone();
    }
    t
}

/// The tensor of one example standing for the whole batch `p` (batch axis first).
pub(crate) fn wrap(p: Tensor, level: usize) -> Tensor {
    Tensor::batched(p, level)
}

/// The rule for what has no cheaper one: the op once per example (`f` on each example's
/// tensors), the results stacked. Correct for any op; used where batching would need an
/// op gradtape does not have (gather with batched indices *and* parameters).
pub(crate) fn rule_loop(
    xs: &[&Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Option<Result<Tensor>> {
    let level = level_of(xs)?;
    Some((|| {
        let b = size_of(level)?;
        let mut outs = Vec::with_capacity(b);
        for i in 0..b {
            let args = xs
                .iter()
                .map(|x| match at(x, level) {
                    Some(p) => example(p, i),
                    None => Ok((*x).clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            outs.push(f(&args)?);
        }
        Ok(Tensor::batched(ops::stack(&outs, 0)?, level))
    })())
}

/// Example `i` of a batch (batch axis first): a view.
fn example(p: &Tensor, i: usize) -> Result<Tensor> {
    let mut begin = vec![0; p.rank()];
    let mut size = vec![-1; p.rank()];
    begin[0] = i;
    size[0] = 1;
    ops::squeeze(&ops::slice(p, &begin, &size)?, &[0])
}

/// `p` (batch axis first, example rank `logical`) with unit axes after the batch axis up to
/// example rank `rank`: a view.
fn lift(p: &Tensor, logical: usize, rank: usize) -> Result<Tensor> {
    let mut q = p.clone();
    for _ in logical..rank {
        q = ops::expand_dims(&q, 1)?;
    }
    Ok(q)
}

/// `x` repeated over a batch of `b` as a new first axis (a broadcast view, no copy).
fn with_batch(x: &Tensor, b: usize) -> Result<Tensor> {
    let mut shape = vec![b];
    shape.extend_from_slice(x.shape());
    ops::broadcast_to(&ops::expand_dims(x, 0)?, &shape)
}

/// Moves axis `from` of `x` to `to` (a transpose view).
fn move_axis(x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
    if from == to {
        return Ok(x.clone());
    }
    let mut perm: Vec<usize> = (0..x.rank()).filter(|&a| a != from).collect();
    perm.insert(to, from);
    ops::transpose(x, Some(&perm))
}

/// `x`'s whole batch at `level` with the batch axis moved from first to `axis`: for rules
/// whose result has the batch axis elsewhere (`gather` with batched indices).
pub(crate) fn batch_first(t: &Tensor, axis: usize) -> Result<Tensor> {
    move_axis(t, axis, 0)
}

/// The vmap levels running on this thread now (innermost last), to be brought back by
/// [`with_levels`].
pub(crate) fn running() -> Vec<(usize, usize)> {
    context::with(|c| c.vmap.levels())
}

/// Runs `f` with `saved` levels running again besides the ones running now (each level is a
/// number used once, so bringing one back cannot confuse it with another). For work recorded
/// inside a vmap and run after it ended: a custom gradient's function, called by a tape
/// outside the vmap, computes on the examples' tensors it captured.
pub(crate) fn with_levels<R>(saved: &[(usize, usize)], f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<(usize, usize)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(before) = self.0.take() {
                context::try_with(|c| c.vmap.set_levels(&before));
            }
        }
    }
    let before = running();
    let missing: Vec<(usize, usize)> = saved
        .iter()
        .filter(|(l, _)| !before.iter().any(|(m, _)| m == l))
        .copied()
        .collect();
    if missing.is_empty() {
        return f();
    }
    let mut all = before.clone();
    all.extend(missing);
    // levels are numbered as they start, so by number is the order of nesting
    all.sort_unstable();
    levels(|l| *l.borrow_mut() = all);
    let _restore = Restore(Some(before));
    f()
}

/// Runs `f` inside a new vmap level of batch size `n` (for the tape's jacobians, which batch
/// cotangents rather than arguments).
pub(crate) fn with_level<R>(n: usize, f: impl FnOnce(usize) -> R) -> R {
    let guard = LevelGuard::enter(n);
    f(guard.0)
}

/// The whole batch behind `t` at `level` (batch axis first); a tensor that does not depend on
/// the batch is repeated `n` times (a broadcast view).
pub(crate) fn physical(t: &Tensor, level: usize, n: usize) -> Result<Tensor> {
    match whole_at(t, level)? {
        Some(p) => Ok(p),
        None => {
            live_or_outer(t, level)?;
            with_batch(t, n)
        }
    }
}

/// The whole batch behind `x` at `level` (batch axis first), also when a later vmap's level
/// wraps it (`x` batched at `m > level` around `level`, as [`batched_below`] makes): then the
/// result is still batched at `m`, with the two batch axes exchanged. `None` when `x` does
/// not vary along `level`.
pub(crate) fn whole_at(x: &Tensor, level: usize) -> Result<Option<Tensor>> {
    match x.batch() {
        Some((p, l)) if l == level => Ok(Some(p.clone())),
        Some((p, m)) if m > level => match whole_at(p, level)? {
            Some(inner) => {
                let swapped = ops::transpose(&inner, Some(&swap_first_two(inner.rank())))?;
                Ok(Some(Tensor::batched(swapped, m)))
            }
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// The public transform

/// Builds a vectorized version of `f` (see the [module docs](self)). `f` takes the arguments
/// of one example and returns one or more tensors.
///
/// ```
/// use gradtape::{ops, vmap, Tensor};
/// let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
/// // the softmax of each column (in_axes 1), results stacked along axis 1 (out_axes 1)
/// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::softmax(&xs[0], 0)?])).in_axes(&[Some(1)]).out_axes(&[1]);
/// let y = f.call(&[x.clone()])?;
/// assert_eq!(y[0].shape(), &[2, 3]);
/// assert_eq!(y[0].to_vec::<f32>()?, ops::softmax(&x, 0)?.to_vec::<f32>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn vmap<F>(f: F) -> Vmap<F>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>>,
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
    in_axes: Option<Vec<Option<isize>>>,
    out_axes: Option<Vec<isize>>,
    chunk_size: Option<usize>,
}

impl<F> Vmap<F>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>>,
{
    /// The batch axis of each argument, or `None` for an argument every example shares
    /// (default: axis 0 of every argument).
    ///
    /// ```
    /// use gradtape::{ops, vmap, Tensor};
    /// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::add(&xs[0], &xs[1])?])).in_axes(&[Some(-1), None]);
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let y = f.call(&[x, Tensor::from_vec(vec![10.0f32, 20.0], &[2])?])?;
    /// assert_eq!(y[0].to_vec::<f32>()?, vec![11.0, 23.0, 12.0, 24.0]); // columns + [10, 20]
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn in_axes(mut self, axes: &[Option<isize>]) -> Self {
        self.in_axes = Some(axes.to_vec());
        self
    }

    /// Where the batch axis goes in each result (default: axis 0 of every result).
    ///
    /// ```
    /// use gradtape::{ops, vmap, Tensor};
    /// let f = vmap(|xs: &[Tensor]| Ok(vec![ops::multiply(&xs[0], &2.0)?])).out_axes(&[-1]);
    /// let y = f.call(&[Tensor::zeros(&[4, 3], gradtape::DType::F32)?])?;
    /// assert_eq!(y[0].shape(), &[3, 4]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn out_axes(mut self, axes: &[isize]) -> Self {
        self.out_axes = Some(axes.to_vec());
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
    pub fn call(&self, args: &[Tensor]) -> Result<Vec<Tensor>> {
        let op = "vmap";
        let in_axes = match &self.in_axes {
            Some(a) if a.len() != args.len() => {
                return Err(Error::arg(
                    op,
                    format!(
                        "in_axes has {} entries for {} arguments",
                        a.len(),
                        args.len()
                    ),
                ))
            }
            Some(a) => a.clone(),
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
        let a = self
            .out_axes
            .as_ref()
            .map_or(Some(0), |o| o.get(k).copied());
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
        let outs = (self.f)(&wrapped)?;
        if let Some(o) = &self.out_axes {
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

/// A result batched at a level inside this one escaped its vmap.
fn live_or_outer(y: &Tensor, level: usize) -> Result<()> {
    match y.batch() {
        Some((_, l)) if l > level => live(l),
        _ => Ok(()),
    }
}
