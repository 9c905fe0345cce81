//! Host kernels: a few generic loops over slices and layouts that every op is built from.
//!
//! Contiguous inputs take a straight loop the compiler vectorizes; large ones are split across
//! rayon's threads (above [`PAR_MIN`] elements, below which thread start-up costs more than it
//! saves). Strided inputs are walked row by row with [`for_each_row`].

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::dtype::{Element, Float, Num};
use crate::shape::{for_each_row, Layout};

/// Elements below which a kernel stays on one thread.
pub(crate) const PAR_MIN: usize = 1 << 17;
pub(crate) const CHUNK: usize = 1 << 15;

/// Builds a vector of `n` elements by letting `f(start, chunk)` write each chunk, in parallel
/// when `n` is large. Every caller writes every element of the chunk it is given.
pub(crate) fn fill<U: Element>(
    n: usize,
    f: impl Fn(usize, &mut [MaybeUninit<U>]) + Sync,
) -> Vec<U> {
    let mut v = crate::storage::pool::take::<U>(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        spare
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c));
    } else {
        f(0, spare);
    }
    // SAFETY: `f` initialised every element of `spare[..n]` (each caller zips the chunk with
    // an input of the same length and writes each slot once).
    unsafe { v.set_len(n) };
    v
}

/// The elements of a view in row-major order, as a new vector.
pub(crate) fn to_contiguous<T: Element>(data: &[T], l: &Layout) -> Vec<T> {
    map(data, l, |x| x)
}

/// The elements of a view as a slice when they are contiguous, copied otherwise.
pub(crate) fn contiguous_cow<'a, T: Element>(
    data: &'a [T],
    l: &Layout,
) -> std::borrow::Cow<'a, [T]> {
    if l.is_contiguous() {
        std::borrow::Cow::Borrowed(&data[l.offset..l.offset + l.numel()])
    } else {
        std::borrow::Cow::Owned(to_contiguous(data, l))
    }
}

/// `f` applied to every element of a view; the result is contiguous.
pub(crate) fn map<T: Copy + Sync, U: Element>(
    data: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let n = l.numel();
    if l.is_contiguous() {
        let src = &data[l.offset..l.offset + n];
        return fill(n, |start, out| {
            for (o, &x) in out.iter_mut().zip(&src[start..]) {
                o.write(f(x));
            }
        });
    }
    let mut out = Vec::with_capacity(n);
    let inner = l.shape.last().copied().unwrap_or(1);
    let s = l.strides.last().copied().unwrap_or(0);
    for_each_row(&l.shape, [&l.strides], [l.offset], |_, [o]| {
        for i in 0..inner as isize {
            out.push(f(data[(o + i * s) as usize]));
        }
    });
    out
}

/// `f` applied elementwise to two views already broadcast to the same shape.
pub(crate) fn zip<T: Copy + Sync, U: Element>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(T, T) -> U + Sync,
) -> Vec<U> {
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
    let mut out = Vec::with_capacity(n);
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
    out
}

/// `f` applied elementwise to three views already broadcast to the same shape.
pub(crate) fn zip3<C: Copy, T: Copy, U>(
    c: &[C],
    lc: &Layout,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(C, T, T) -> U,
) -> Vec<U> {
    let mut out = Vec::with_capacity(la.numel());
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
    out
}

/// Folds a contiguous slice in blocks of 1,024 (see [`fold_block`]), which also keeps float
/// sums accurate for long rows.
#[inline]
fn fold_slice<T: Copy>(s: &[T], init: T, f: &impl Fn(T, T) -> T) -> T {
    let mut total = init;
    for block in s.chunks(1024) {
        total = f(total, fold_block(block, init, f));
    }
    total
}

/// Folds one block with eight independent accumulators, so the loop vectorizes. Fused
/// reductions ([`crate::fusion`]) fold their blocks with it too, to sum in the same order.
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

/// Reduces a contiguous `[outer, reduced, inner]` array over its middle axis.
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
    if inner == 1 {
        if outer == 1 && reduced >= PAR_MIN {
            let parts: Vec<T> = src
                .par_chunks(CHUNK)
                .map(|c| fold_slice(c, init, &f))
                .collect();
            return vec![parts.into_iter().fold(init, &f)];
        }
        let row = |o: usize| fold_slice(&src[o * reduced..(o + 1) * reduced], init, &f);
        if outer * reduced >= PAR_MIN && outer > 1 {
            return (0..outer).into_par_iter().map(row).collect();
        }
        return (0..outer).map(row).collect();
    }
    let plane = |o: usize, out: &mut [T]| {
        out.fill(init);
        for k in 0..reduced {
            let base = (o * reduced + k) * inner;
            for (acc, &x) in out.iter_mut().zip(&src[base..base + inner]) {
                *acc = f(*acc, x);
            }
        }
    };
    let mut out = vec![init; outer * inner];
    if outer * reduced * inner >= PAR_MIN && outer > 1 {
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(o, c)| plane(o, c));
    } else {
        for (o, c) in out.chunks_mut(inner).enumerate() {
            plane(o, c);
        }
    }
    out
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

/// `dst (m×n, contiguous) = a (m×k) · b (k×n)` with arbitrary element strides for `a` and `b`.
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
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst.fill(T::ZERO);
        return;
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
        return;
    }
    let par = if m * n * k >= (1 << 18) {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's layouts were checked against the storages: every index
    // a_off + i·a_rs + p·a_cs (i < m, p < k) lies in `a`, likewise for `b`, and `dst` holds m·n
    // contiguous elements. T is f32 or f64, both supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr().add(a_off),
            a_cs,
            a_rs,
            b.as_ptr().add(b_off),
            b_cs,
            b_rs,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}
