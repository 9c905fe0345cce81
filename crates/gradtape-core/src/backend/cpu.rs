//! Host kernels: a few generic loops over slices and layouts that every op is built from.
//!
//! Contiguous inputs take a straight loop the compiler vectorizes; large ones are split across
//! rayon's threads (above [`PAR_MIN`] elements, below which thread start-up costs more than it
//! saves). Strided inputs are walked row by row with [`for_each_row`].

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::dtype::{Element, Float, Num};
use crate::error::{Error, Result};
use crate::shape::{for_each_row, Layout};

/// Elements below which a kernel stays on one thread.
pub(crate) const PAR_MIN: usize = 1 << 17;
pub(crate) const CHUNK: usize = 1 << 15;

/// `f(i, chunk)` for each `chunk`-long piece `i` of `data`, on rayon's threads. With [`join`],
/// the one way kernels enter rayon: both take the kernel as a `dyn` closure, so rayon's generic
/// plumbing is compiled once per element type instead of once per kernel closure (it was 40%
/// of the core's LLVM IR, and about as much of its build time). The `dyn` call is once per
/// piece of [`CHUNK`] elements, too rare to measure.
pub(crate) fn par_chunks_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    data.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// `(a(), b())`, side by side on rayon's threads (see [`par_chunks_mut`]).
pub(crate) fn join<R: Send>(
    a: &mut (dyn FnMut() -> R + Send),
    b: &mut (dyn FnMut() -> R + Send),
) -> (R, R) {
    rayon::join(a, b)
}

/// A buffer for `n` results, or the error that says they do not fit in memory.
fn output<U: Element>(n: usize) -> Result<Vec<U>> {
    crate::backend::pool::take::<U>("allocate", n)
}

/// Builds a vector of `n` elements by letting `f(start, chunk)` write each chunk, in parallel
/// when `n` is large. Every caller writes every element of the chunk it is given.
pub(crate) fn fill<U: Element>(
    n: usize,
    f: impl Fn(usize, &mut [MaybeUninit<U>]) + Sync,
) -> Result<Vec<U>> {
    let mut v = output::<U>(n)?;
    let spare = &mut v.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        par_chunks_mut(spare, CHUNK, &|i, c| f(i * CHUNK, c));
    } else {
        f(0, spare);
    }
    // SAFETY: `f` initialised every element of `spare[..n]` (each caller zips the chunk with
    // an input of the same length and writes each slot once).
    unsafe { v.set_len(n) };
    Ok(v)
}

/// The elements of a view in row-major order, as a new vector.
pub(crate) fn to_contiguous<T: Element>(data: &[T], l: &Layout) -> Result<Vec<T>> {
    map(data, l, |x| x)
}

/// The elements of a view as a slice when they are contiguous, copied otherwise.
pub(crate) fn contiguous_cow<'a, T: Element>(
    data: &'a [T],
    l: &Layout,
) -> Result<std::borrow::Cow<'a, [T]>> {
    Ok(if l.is_contiguous() {
        std::borrow::Cow::Borrowed(&data[l.offset..l.offset + l.numel()])
    } else {
        std::borrow::Cow::Owned(to_contiguous(data, l)?)
    })
}

/// `f` applied to every element of a view; the result is contiguous.
pub(crate) fn map<T: Copy + Sync, U: Element>(
    data: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync,
) -> Result<Vec<U>> {
    let n = l.numel();
    if l.is_contiguous() {
        let src = &data[l.offset..l.offset + n];
        return fill(n, |start, out| {
            for (o, &x) in out.iter_mut().zip(&src[start..]) {
                o.write(f(x));
            }
        });
    }
    let mut out = output(n)?;
    let inner = l.shape.last().copied().unwrap_or(1);
    let s = l.strides.last().copied().unwrap_or(0);
    for_each_row(&l.shape, [&l.strides], [l.offset], |_, [o]| {
        for i in 0..inner as isize {
            out.push(f(data[(o + i * s) as usize]));
        }
    });
    Ok(out)
}

/// `f` applied elementwise to two views already broadcast to the same shape.
pub(crate) fn zip<T: Copy + Sync, U: Element>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(T, T) -> U + Sync,
) -> Result<Vec<U>> {
    let n = la.numel();
    let a_scalar = la.strides.iter().all(|&s| s == 0);
    let b_scalar = lb.strides.iter().all(|&s| s == 0);
    if la.is_contiguous() && lb.is_contiguous() {
        let (sa, sb) = (&a[la.offset..la.offset + n], &b[lb.offset..lb.offset + n]);
        return fill(n, |st, out| {
            for ((o, &x), &y) in out.iter_mut().zip(&sa[st..]).zip(&sb[st..]) {
                o.write(f(x, y));
            }
        });
    }
    if la.is_contiguous() && b_scalar && n > 0 {
        let (sa, y) = (&a[la.offset..la.offset + n], b[lb.offset]);
        return fill(n, |st, out| {
            for (o, &x) in out.iter_mut().zip(&sa[st..]) {
                o.write(f(x, y));
            }
        });
    }
    if a_scalar && lb.is_contiguous() && n > 0 {
        let (x, sb) = (a[la.offset], &b[lb.offset..lb.offset + n]);
        return fill(n, |st, out| {
            for (o, &y) in out.iter_mut().zip(&sb[st..]) {
                o.write(f(x, y));
            }
        });
    }
    let mut out = output(n)?;
    let inner = la.shape.last().copied().unwrap_or(1);
    let (sa, sb) = (
        la.strides.last().copied().unwrap_or(0),
        lb.strides.last().copied().unwrap_or(0),
    );
    for_each_row(
        &la.shape,
        [&la.strides, &lb.strides],
        [la.offset, lb.offset],
        |_, [oa, ob]| {
            let (oa, ob) = (oa as usize, ob as usize);
            match (sa, sb) {
                (1, 1) => out.extend(
                    a[oa..oa + inner]
                        .iter()
                        .zip(&b[ob..ob + inner])
                        .map(|(&x, &y)| f(x, y)),
                ),
                (1, 0) => out.extend(a[oa..oa + inner].iter().map(|&x| f(x, b[ob]))),
                (0, 1) => out.extend(b[ob..ob + inner].iter().map(|&y| f(a[oa], y))),
                _ => {
                    for i in 0..inner as isize {
                        out.push(f(
                            a[(oa as isize + i * sa) as usize],
                            b[(ob as isize + i * sb) as usize],
                        ));
                    }
                }
            }
        },
    );
    Ok(out)
}

/// `f` applied elementwise to three views already broadcast to the same shape.
pub(crate) fn zip3<C: Copy, T: Copy, U: Element>(
    c: &[C],
    lc: &Layout,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(C, T, T) -> U,
) -> Result<Vec<U>> {
    let mut out = output(la.numel())?;
    let inner = la.shape.last().copied().unwrap_or(1) as isize;
    let s = |l: &Layout| l.strides.last().copied().unwrap_or(0);
    let (sc, sa, sb) = (s(lc), s(la), s(lb));
    for_each_row(
        &la.shape,
        [&lc.strides, &la.strides, &lb.strides],
        [lc.offset, la.offset, lb.offset],
        |_, [oc, oa, ob]| {
            for i in 0..inner {
                out.push(f(
                    c[(oc + i * sc) as usize],
                    a[(oa + i * sa) as usize],
                    b[(ob + i * sb) as usize],
                ));
            }
        },
    );
    Ok(out)
}

/// Elements one block folds with eight lanes (see [`fold_block`]).
pub(crate) const BLOCK: usize = 1024;

/// Folds `n` elements block by block and combines the blocks' results in a balanced binary
/// tree (pairwise summation): the rounding error of a float sum then grows with log n instead
/// of n, so a sum of 10⁸ float32s stays within a few units of the last place instead of
/// drifting by parts per million. `leaf(start, len)` folds up to [`CHUNK`] elements from
/// `start` (a multiple of [`BLOCK`]) and must combine its blocks with [`pairwise`]. The tree's
/// shape depends only on `n`, never on the number of threads, so results are the same bits
/// on every machine; subtrees of [`PAR_MIN`] elements and more run in parallel.
pub(crate) fn tree_fold<R: Send>(
    n: usize,
    leaf: &(impl Fn(usize, usize) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    fn go<R: Send>(
        start: usize,
        len: usize,
        leaf: &(impl Fn(usize, usize) -> R + Sync),
        combine: &(impl Fn(R, R) -> R + Sync),
    ) -> R {
        if len <= CHUNK {
            return leaf(start, len);
        }
        let half = len.div_ceil(BLOCK) / 2 * BLOCK;
        let (a, b) = if len >= PAR_MIN {
            join(&mut || go(start, half, leaf, combine), &mut || {
                go(start + half, len - half, leaf, combine)
            })
        } else {
            (
                go(start, half, leaf, combine),
                go(start + half, len - half, leaf, combine),
            )
        };
        combine(a, b)
    }
    go(0, n, leaf, combine)
}

/// The blocks' results of one leaf of [`tree_fold`] combined in the same balanced tree (split
/// at half the count), so that the whole fold is one pairwise tree over all blocks.
pub(crate) fn pairwise<T: Copy>(parts: &[T], init: T, f: &impl Fn(T, T) -> T) -> T {
    match parts.len() {
        0 => init,
        1 => parts[0],
        n => {
            let (a, b) = parts.split_at(n / 2);
            f(pairwise(a, init, f), pairwise(b, init, f))
        }
    }
}

/// Folds a contiguous slice: blocks of 1,024 (see [`fold_block`]) combined pairwise.
fn fold_slice<T: Copy + Send + Sync>(s: &[T], init: T, f: &(impl Fn(T, T) -> T + Sync)) -> T {
    let leaf = |start: usize, len: usize| {
        let mut parts = [init; CHUNK / BLOCK];
        let mut count = 0;
        for (p, block) in parts.iter_mut().zip(s[start..start + len].chunks(BLOCK)) {
            *p = fold_block(block, init, f);
            count += 1;
        }
        pairwise(&parts[..count], init, f)
    };
    tree_fold(s.len(), &leaf, f)
}

/// Folds one block (up to [`BLOCK`] elements) with eight independent accumulators, so the
/// loop vectorizes. Fused reductions ([`crate::fusion`]) fold their blocks with it too, to sum
/// in the same order. Each accumulator adds 128 elements in order; 32 accumulators, and runs
/// of 128 combined pairwise (NumPy's scheme), were measured: no more accurate on the cases of
/// `tests/reliability.rs`, and the runs cost 10-25% of reduction speed (BENCHMARKS.md).
#[inline]
pub(crate) fn fold_block<T: Copy>(block: &[T], init: T, f: &impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 8];
    let chunks = block.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    // opaque to the vectorizer, which otherwise arranged the lanes for the tree below and
    // shuffled them at every step of the loop above (half the loop's instructions)
    let acc = std::hint::black_box(acc);
    let mut r = f(
        f(f(acc[0], acc[1]), f(acc[2], acc[3])),
        f(f(acc[4], acc[5]), f(acc[6], acc[7])),
    );
    for &x in rem {
        r = f(r, x);
    }
    r
}

/// How a contiguous tensor splits around a block of consecutive reduced axes.
pub(crate) struct Split3 {
    pub outer: usize,
    pub reduced: usize,
    pub inner: usize,
}

/// Reduces a contiguous `[outer, reduced, inner]` array over its middle axis, pairwise along
/// the reduced axis in every case (see [`tree_fold`] and [`fold_rows`]).
pub(crate) fn reduce3<T: Copy + Send + Sync>(
    src: &[T],
    sp: &Split3,
    init: T,
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let Split3 {
        outer,
        reduced,
        inner,
    } = *sp;
    if outer * inner == 0 {
        return Vec::new();
    }
    let par = outer > 1 && outer * reduced * inner >= PAR_MIN;
    if inner == 1 {
        let row = |o: usize| fold_slice(&src[o * reduced..(o + 1) * reduced], init, &f);
        if par {
            let mut out = vec![init; outer];
            let per = outer.div_ceil(64);
            par_chunks_mut(&mut out, per, &|i, c| {
                for (j, x) in c.iter_mut().enumerate() {
                    *x = row(i * per + j);
                }
            });
            return out;
        }
        return (0..outer).map(row).collect();
    }
    let plane = |o: usize, out: &mut [T]| {
        let rows = &src[o * reduced * inner..(o + 1) * reduced * inner];
        fold_rows(rows, inner, init, &f, out);
    };
    let mut out = vec![init; outer * inner];
    if par {
        par_chunks_mut(&mut out, inner, &plane);
    } else {
        for (o, c) in out.chunks_mut(inner).enumerate() {
            plane(o, c);
        }
    }
    out
}

/// Folds the rows of a contiguous `[rows, inner]` array into `out` (`inner` elements): a few
/// rows at a time in order, those partial rows combined in a balanced tree, as [`tree_fold`]
/// does for one long row. Column sums of a tall array were the worst case of a sequential
/// fold: a float32 column of 2·10⁷ ones summed to 16,777,216.
fn fold_rows<T: Copy + Send + Sync>(
    src: &[T],
    inner: usize,
    init: T,
    f: &(impl Fn(T, T) -> T + Sync),
    out: &mut [T],
) {
    let leaf_rows = (BLOCK / inner).max(8);
    let rows = src.len() / inner;
    // Below the top parallel levels, each level of the tree needs one row of scratch.
    let levels = (usize::BITS - rows.div_ceil(leaf_rows).leading_zeros()) as usize + 1;
    #[allow(clippy::too_many_arguments)]
    fn go<T: Copy + Send + Sync>(
        src: &[T],
        inner: usize,
        leaf_rows: usize,
        levels: usize,
        init: T,
        f: &(impl Fn(T, T) -> T + Sync),
        out: &mut [T],
        scratch: Option<&mut [T]>,
    ) {
        let rows = src.len() / inner;
        if rows <= leaf_rows {
            out.fill(init);
            for row in src.chunks_exact(inner) {
                for (o, &x) in out.iter_mut().zip(row) {
                    *o = f(*o, x);
                }
            }
            return;
        }
        let half = rows.div_ceil(leaf_rows) / 2 * leaf_rows * inner;
        let (left, right) = src.split_at(half);
        let mut owned;
        let (other, rest) = match scratch {
            Some(s) if src.len() < PAR_MIN => {
                let (other, rest) = s.split_at_mut(inner);
                (other, Some(rest))
            }
            _ => {
                owned = vec![init; inner];
                (&mut owned[..], None)
            }
        };
        if let Some(rest) = rest {
            go(
                left,
                inner,
                leaf_rows,
                levels,
                init,
                f,
                out,
                Some(&mut *rest),
            );
            go(right, inner, leaf_rows, levels, init, f, other, Some(rest));
        } else if src.len() >= PAR_MIN {
            join(
                &mut || go(left, inner, leaf_rows, levels, init, f, out, None),
                &mut || go(right, inner, leaf_rows, levels, init, f, other, None),
            );
        } else {
            let mut s = vec![init; levels * inner];
            go(left, inner, leaf_rows, levels, init, f, out, Some(&mut s));
            go(
                right,
                inner,
                leaf_rows,
                levels,
                init,
                f,
                other,
                Some(&mut s),
            );
        }
        for (o, &x) in out.iter_mut().zip(other.iter()) {
            *o = f(*o, x);
        }
    }
    go(
        &src[..rows * inner],
        inner,
        leaf_rows,
        levels,
        init,
        f,
        out,
        None,
    );
}

/// Index of the first maximum (`greater`) or minimum of each `[outer, ., inner]` fibre.
pub(crate) fn arg_reduce3<T: Num>(
    src: &[T],
    sp: &Split3,
    better: impl Fn(T, T) -> bool,
) -> Vec<i64> {
    let Split3 {
        outer,
        reduced,
        inner,
    } = *sp;
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0usize;
            let mut bv = src[o * reduced * inner + i];
            for k in 1..reduced {
                let v = src[(o * reduced + k) * inner + i];
                if better(v, bv) {
                    best = k;
                    bv = v;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

/// Products below this many multiply-adds run a plain loop (cheaper than gemm's set-up).
const SMALL_GEMM: usize = 4096;

/// True when every element `off + i·rs + j·cs` (`i < rows`, `j < cols`) lies in a slice of
/// `len` elements: the corners of the index range bound it, whatever the strides' signs.
fn covers(len: usize, off: usize, rows: usize, rs: isize, cols: usize, cs: isize) -> bool {
    let (r, c) = (rows as i128 - 1, cols as i128 - 1);
    let (rs, cs) = (rs as i128, cs as i128);
    let off = off as i128;
    [off, off + r * rs, off + c * cs, off + r * rs + c * cs]
        .iter()
        .all(|&i| 0 <= i && i < len as i128)
}

/// `dst (m×n, contiguous) = a (m×k) · b (k×n)` with arbitrary element strides for `a` and `b`.
///
/// # Errors
/// When a layout reaches outside its slice or `dst` is not m·n long: the unsafe gemm call
/// below reads and writes through raw pointers, so these are checked here, whatever the
/// caller checked, and a wrong layout is an error instead of undefined behaviour.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    a: &[T],
    a_off: usize,
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_off: usize,
    b_rs: isize,
    b_cs: isize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if dst.len() != m * n
        || (k > 0 && !covers(a.len(), a_off, m, a_rs, k, a_cs))
        || (k > 0 && !covers(b.len(), b_off, k, b_rs, n, b_cs))
    {
        return Err(Error::shape(
            "matmul",
            format!(
                "[{m}, {k}] x [{k}, {n}] does not fit its storage: a has {} elements \
                 (offset {a_off}, strides [{a_rs}, {a_cs}]), b has {} (offset {b_off}, \
                 strides [{b_rs}, {b_cs}]), the output {}",
                a.len(),
                b.len(),
                dst.len()
            ),
        ));
    }
    if k == 0 {
        dst.fill(T::ZERO);
        return Ok(());
    }
    if m * n * k <= SMALL_GEMM {
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::ZERO;
                for p in 0..k {
                    let x = a[(a_off as isize + i as isize * a_rs + p as isize * a_cs) as usize];
                    let y = b[(b_off as isize + p as isize * b_rs + j as isize * b_cs) as usize];
                    acc = acc + x * y;
                }
                dst[i * n + j] = acc;
            }
        }
        return Ok(());
    }
    let par = if m * n * k >= (1 << 18) {
        gemm_common::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm_common::Parallelism::None
    };
    // SAFETY: checked above: every index a_off + i·a_rs + p·a_cs (i < m, p < k) lies in `a`,
    // likewise for `b`, and `dst` holds m·n contiguous elements.
    unsafe {
        gemm_kernel(
            (m, n, k),
            dst.as_mut_ptr(),
            (a.as_ptr().add(a_off), a_rs, a_cs),
            (b.as_ptr().add(b_off), b_rs, b_cs),
            par,
        );
    }
    Ok(())
}

/// `dst (m×n, row-major, contiguous) = a · b` through the f32 and f64 kernel crates of `gemm`,
/// with the argument normalization `gemm::gemm` does before it picks its kernel. Depending on
/// those two crates instead of the `gemm` facade drops its complex-number kernels (gemm-c32,
/// gemm-c64), which gradtape never calls and which cost a clean release build ~14 s of CPU.
/// `tests/suite/views.rs` checks the normalization on reversed (negative-stride) views.
///
/// # Safety
/// `dst` must hold m·n elements, and every `ptr + i·rs + p·cs` of `a` (i < m, p < k) and of
/// `b` (i < k, p < n) must be readable. `T` must be `f32` or `f64` (anything else is a no-op).
unsafe fn gemm_kernel<T: 'static>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (a, a_rs, a_cs): (*const T, isize, isize),
    (b, b_rs, b_cs): (*const T, isize, isize),
    par: gemm_common::Parallelism,
) {
    use std::any::TypeId;
    // The kernels prefer a column-major destination: compute dstᵀ = bᵀ·aᵀ, whose destination
    // is column-major, when the row-major one is wider than one column (what gemm::gemm does)
    // — unless that makes the kernel copy (pack) a much larger operand: its left operand is
    // packed unless its columns are contiguous, so with a transposed `b` (a · Bᵀ, the matmul
    // gradient `dz · Wᵀ`) swapping packs all of `B` (an LSTM's 1 MB recurrent kernel at every
    // step of the backward pass) where not swapping packs `a` (a batch of 32 rows) and writes
    // a row-major destination a little slower.
    let pack_if_swapped = if b_cs != 1 { n * k } else { 0 };
    let pack_if_not = if a_rs != 1 { m * k } else { 0 };
    let swap = n > 1 && pack_if_swapped <= pack_if_not + m * n;
    let (m, n, dst_cs, dst_rs, mut lhs, mut lhs_cs, lhs_rs, mut rhs, rhs_cs, mut rhs_rs) = if swap {
        (n, m, n as isize, 1, b, b_rs, b_cs, a, a_rs, a_cs)
    } else {
        (m, n, 1, n as isize, a, a_cs, a_rs, b, b_cs, b_rs)
    };
    // A reversed inner axis is walked forward in both operands (the sum is the same).
    if lhs_cs < 0 && k > 0 {
        lhs = lhs.wrapping_offset((k - 1) as isize * lhs_cs);
        lhs_cs = -lhs_cs;
        rhs = rhs.wrapping_offset((k - 1) as isize * rhs_rs);
        rhs_rs = -rhs_rs;
    }
    // One call, two kernels: the literals and pointer casts take the kernel's element type.
    macro_rules! call {
        ($kernel:expr) => {
            $kernel(
                m,
                n,
                k,
                dst.cast(),
                dst_cs,
                dst_rs,
                false,
                lhs.cast(),
                lhs_cs,
                lhs_rs,
                rhs.cast(),
                rhs_cs,
                rhs_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        };
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        call!(gemm_f32::gemm::f32::get_gemm_fn());
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        call!(gemm_f64::gemm::f64::get_gemm_fn());
    }
}
