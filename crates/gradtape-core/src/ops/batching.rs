//! What batching rules use: an op's tensors inside `vmap` are one example's views of a whole
//! batch (`Tensor::batched`), and these helpers give a rule the batch with its batch axis
//! first and wrap the result back. Written with ops, so a batched computation records on tapes
//! and accumulators like any other.

use crate::context::levels::{at, copies, copy_of, innermost, level_of, live, size_of};
use crate::error::Result;
use crate::tensor::Tensor;

use super::{broadcast_to, expand_dims, slice, squeeze, stack, transpose};

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

/// `x` (the whole batch of a vmap at `level`) as one example's tensor at that level. A vmap
/// that started later (a higher level) stays outermost: `x` batched at such a level `m` (a
/// tangent made inside `vmap(jvp)` under an outer vmap) becomes
/// `batched(batched(swap(p), level), m)`, its two batch axes exchanged. Wrapped the other way,
/// the inner level's batch was hidden under the outer one and `vmap(vmap(jvp))` and
/// `vmap(jacfwd)` returned values of a finished vmap.
pub(crate) fn batched_below(x: &Tensor, level: usize) -> Result<Tensor> {
    match x.batch() {
        Some((p, m)) if m > level => {
            let swapped = transpose(p, Some(&swap_first_two(p.rank())))?;
            Ok(Tensor::batched(batched_below(&swapped, level)?, m))
        }
        _ => Ok(Tensor::batched(x.clone(), level)),
    }
}

pub(crate) fn swap_first_two(rank: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(0, 1);
    perm
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
        Ok(Tensor::batched(stack(&outs, 0)?, level))
    })())
}

/// Example `i` of a batch (batch axis first): a view.
pub(crate) fn example(p: &Tensor, i: usize) -> Result<Tensor> {
    let mut begin = vec![0; p.rank()];
    let mut size = vec![-1; p.rank()];
    begin[0] = i;
    size[0] = 1;
    squeeze(&slice(p, &begin, &size)?, &[0])
}

/// `p` (batch axis first, example rank `logical`) with unit axes after the batch axis up to
/// example rank `rank`: a view.
pub(crate) fn lift(p: &Tensor, logical: usize, rank: usize) -> Result<Tensor> {
    let mut q = p.clone();
    for _ in logical..rank {
        q = expand_dims(&q, 1)?;
    }
    Ok(q)
}

/// `x` repeated over a batch of `b` as a new first axis (a broadcast view, no copy).
pub(crate) fn with_batch(x: &Tensor, b: usize) -> Result<Tensor> {
    let mut shape = vec![b];
    shape.extend_from_slice(x.shape());
    broadcast_to(&expand_dims(x, 0)?, &shape)
}

/// Moves axis `from` of `x` to `to` (a transpose view).
pub(crate) fn move_axis(x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
    if from == to {
        return Ok(x.clone());
    }
    let mut perm: Vec<usize> = (0..x.rank()).filter(|&a| a != from).collect();
    perm.insert(to, from);
    transpose(x, Some(&perm))
}

/// `x`'s whole batch at `level` with the batch axis moved from first to `axis`: for rules
/// whose result has the batch axis elsewhere (`gather` with batched indices).
pub(crate) fn batch_first(t: &Tensor, axis: usize) -> Result<Tensor> {
    move_axis(t, axis, 0)
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
                let swapped = transpose(&inner, Some(&swap_first_two(inner.rank())))?;
                Ok(Some(Tensor::batched(swapped, m)))
            }
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// A result batched at a level inside this one escaped its vmap.
pub(crate) fn live_or_outer(y: &Tensor, level: usize) -> Result<()> {
    match y.batch() {
        Some((_, l)) if l > level => live(l),
        _ => Ok(()),
    }
}
