//! The GPU kernels of the primitives, on storage and layouts: each function launches one
//! kernel shape from [`super::kernels`] with an op's expression, or calls cuBLAS, and returns
//! the new storage. The boundary (`crate::backend`) decides when they run, checks that the
//! operands share a device, and wraps the result for the front end.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::kernels::{self, KLayout};
use super::{alloc, CudaElement, CudaStorage, Gpu};
use crate::dtype::{dispatch, CpuStorage, DType, Element};
use crate::error::{Error, Result};
use crate::shape::{numel, Layout};

const THREADS: u32 = 256;

/// A grid-stride launch over `n` elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn launch_err(g: &Gpu, op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::device(
        op,
        format!("cuda:{}: launching the kernel failed: {e}", g.ordinal),
    )
}

/// The typed slice of GPU storage `s`.
fn slice_of<'a, T: CudaElement>(op: &'static str, s: &'a CudaStorage) -> Result<&'a CudaSlice<T>> {
    T::unwrap(&s.data).ok_or_else(|| {
        Error::dtype(
            op,
            format!("tensor has dtype {}, not {}", s.dtype(), T::DTYPE),
        )
    })
}

fn wrap<T: CudaElement>(g: &Arc<Gpu>, s: CudaSlice<T>) -> CudaStorage {
    CudaStorage::new(T::wrap(s), g.clone())
}

/// GPU elements seen through a layout.
pub(crate) type View<'a> = (&'a CudaStorage, &'a Layout);

/// One operand of an elementwise kernel: GPU elements through their layout (already broadcast
/// to the result's shape), or the single element of a host array (a Rust number beside a GPU
/// tensor), passed to the kernel by value.
pub(crate) enum Side<'a> {
    Gpu(&'a CudaStorage, Layout),
    Host(&'a CpuStorage, usize),
}

impl Side<'_> {
    /// The value of a host side (`T::default()` for a GPU side, which the kernel reads itself).
    fn value<T: CudaElement>(&self, op: &'static str) -> Result<T> {
        match self {
            Side::Gpu(..) => Ok(T::default()),
            Side::Host(c, offset) => T::slice(c)
                .and_then(|v| v.get(*offset).copied())
                .ok_or_else(|| {
                    Error::dtype(
                        op,
                        format!("host operand is {}, not {}", c.dtype(), T::DTYPE),
                    )
                }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Moving, filling, copying

/// The contiguous host elements of `l` (`numel(l.shape)` of them) copied to GPU `n`.
pub(crate) fn upload(n: usize, host: &CpuStorage, l: &Layout) -> Result<CudaStorage> {
    let g = super::gpu(n)?;
    let count = numel(&l.shape);
    dispatch!(host.dtype(), T => {
        let v = T::slice(host).unwrap_or(&[]);
        let packed = crate::backend::cpu::contiguous_cow(v, l)?;
        super::upload::<T>(&g, packed.get(..count).unwrap_or(&[]))
    })
}

/// The elements of `s` seen through `l`, copied back to the host in row-major order.
pub(crate) fn download(s: &CudaStorage, l: &Layout) -> Result<CpuStorage> {
    let packed;
    let s = if l.is_contiguous() && l.offset == 0 {
        s
    } else {
        packed = contiguous(s, l)?;
        &packed
    };
    let count = numel(&l.shape);
    dispatch!(s.dtype(), T => {
        let v = super::download::<T>(s)?;
        Ok(T::into_storage(v.into_iter().take(count).collect()))
    })
}

/// `count` elements, every one `value`, made on GPU `n`.
pub(crate) fn full(n: usize, count: usize, value: f64, dtype: DType) -> Result<CudaStorage> {
    let g = super::gpu(n)?;
    dispatch!(dtype, T => {
        let (name, src) = kernels::fill(T::C_TYPE);
        let f = g.function("fill", &src, &name)?;
        let mut y = alloc::<T>(&g, "fill", count)?;
        let (n64, v) = (count as u64, T::from_f64(value));
        let mut b = g.stream().launch_builder(&f);
        b.arg(&mut y).arg(&n64).arg(&v);
        // SAFETY: the kernel writes y[0..count) with `v`; the arguments match its signature.
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(&g, "fill", e))?;
        Ok(wrap(&g, y))
    })
}

/// The elements of `s` seen through `l`, copied into packed row-major storage.
pub(crate) fn contiguous(s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
    let g = &s.gpu;
    let lx = KLayout::of("contiguous", l)?;
    let count = numel(&l.shape);
    dispatch!(s.dtype(), T => {
        let (name, src) = kernels::copy(T::C_TYPE);
        let f = g.function("contiguous", &src, &name)?;
        let x = slice_of::<T>("contiguous", s)?;
        let mut y = alloc::<T>(g, "contiguous", count)?;
        let n64 = count as u64;
        let mut b = g.stream().launch_builder(&f);
        b.arg(x).arg(&lx).arg(&mut y).arg(&n64);
        // SAFETY: reads x through its own layout (inside its storage), writes y[0..count).
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(g, "contiguous", e))?;
        Ok(wrap(g, y))
    })
}

/// `s` through `l` when that is packed from the start, or a packed copy of it.
fn packed<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    keep: &'a mut Option<CudaStorage>,
) -> Result<&'a CudaStorage> {
    if l.is_contiguous() && l.offset == 0 {
        return Ok(s);
    }
    Ok(keep.insert(contiguous(s, l)?))
}

// ---------------------------------------------------------------------------------------------
// Elementwise

/// `expr(v)` over `x`, giving `out` elements. The caller has checked the input dtype (the CPU
/// kernel's dispatch does).
pub(crate) fn unary(op: &'static str, (s, l): View, expr: &str, out: DType) -> Result<CudaStorage> {
    let g = &s.gpu;
    let lx = KLayout::of(op, l)?;
    let count = numel(&l.shape);
    let n64 = count as u64;
    dispatch!(s.dtype(), T => dispatch!(out, U => {
        let (name, src) = kernels::unary(op, expr, T::C_TYPE, U::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let xs = slice_of::<T>(op, s)?;
        let mut y = alloc::<U>(g, op, count)?;
        let mut b = g.stream().launch_builder(&f);
        b.arg(xs).arg(&lx).arg(&mut y).arg(&n64);
        // SAFETY: reads x through its layout (inside its storage), writes y[0..count).
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(wrap(g, y))
    }))
}

/// `expr(p, q)` over two operands of dtype `dtype`, each already broadcast to the result's
/// `count` elements, giving `out` elements; at most one of them is a host value.
pub(crate) fn binary(
    op: &'static str,
    a: Side,
    b: Side,
    dtype: DType,
    count: usize,
    expr: &str,
    out: DType,
) -> Result<CudaStorage> {
    let n64 = count as u64;
    match (&a, &b) {
        (Side::Gpu(sa, la), Side::Gpu(sb, lb)) => {
            let g = &sa.gpu;
            let (la, lb) = (KLayout::of(op, la)?, KLayout::of(op, lb)?);
            dispatch!(dtype, T => dispatch!(out, U => {
                let (name, src) = kernels::binary(op, expr, T::C_TYPE, U::C_TYPE);
                let f = g.function(op, &src, &name)?;
                let (xa, xb) = (slice_of::<T>(op, sa)?, slice_of::<T>(op, sb)?);
                let mut y = alloc::<U>(g, op, count)?;
                let mut l = g.stream().launch_builder(&f);
                l.arg(xa).arg(&la).arg(xb).arg(&lb).arg(&mut y).arg(&n64);
                // SAFETY: reads both operands through their broadcast layouts, writes y[0..count).
                unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
                Ok(wrap(g, y))
            }))
        }
        (Side::Gpu(s, lt), Side::Host(..)) | (Side::Host(..), Side::Gpu(s, lt)) => {
            let (side, scalar) = match &b {
                Side::Host(..) => (0i32, &b),
                Side::Gpu(..) => (1i32, &a),
            };
            let g = &s.gpu;
            let lt = KLayout::of(op, lt)?;
            dispatch!(dtype, T => dispatch!(out, U => {
                let (name, src) = kernels::binary(op, expr, T::C_TYPE, U::C_TYPE);
                let f = g.function(op, &src, &format!("{name}_scalar"))?;
                let v: T = scalar.value::<T>(op)?;
                let xs = slice_of::<T>(op, s)?;
                let mut y = alloc::<U>(g, op, count)?;
                let mut l = g.stream().launch_builder(&f);
                l.arg(xs).arg(&lt).arg(&v).arg(&side).arg(&mut y).arg(&n64);
                // SAFETY: reads the tensor through its broadcast layout, writes y[0..count).
                unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
                Ok(wrap(g, y))
            }))
        }
        (Side::Host(..), Side::Host(..)) => Err(Error::device(op, "no operand is on a GPU")),
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions

/// `x` reduced over `axes` (sorted, distinct) by `combine(a, b)` from `init` (a value of the
/// dtype, as `f64`), giving one element per kept position. The reduced axes are moved last
/// and made contiguous, then one block reduces each row.
pub(crate) fn reduce(
    op: &'static str,
    (s, l): View,
    axes: &[usize],
    init: f64,
    combine: &str,
) -> Result<CudaStorage> {
    let g = s.gpu.clone();
    let dtype = s.dtype();
    let rank = l.shape.len();
    let mut perm: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    perm.extend_from_slice(axes);
    let m: usize = axes.iter().map(|&d| l.shape[d]).product();
    let rows: usize = numel(&l.shape) / m.max(1);
    if rows == 0 || m == 0 {
        let kept: usize = (0..rank)
            .filter(|d| !axes.contains(d))
            .map(|d| l.shape[d])
            .product();
        return full(g.ordinal, kept, init, dtype);
    }
    if rows > i32::MAX as usize {
        return Err(Error::shape(
            op,
            format!("{rows} rows are more than one launch takes"),
        ));
    }
    let cs = contiguous(s, &l.permute(&perm))?;
    dispatch!(dtype, T => {
        let init = kernels::c_literal(init, dtype);
        let (name, src) = kernels::reduce_rows(op, &init, combine, T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let xs = slice_of::<T>(op, &cs)?;
        let mut y = alloc::<T>(&g, op, rows)?;
        let m64 = m as u64;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (kernels::REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = g.stream().launch_builder(&f);
        b.arg(xs).arg(&mut y).arg(&m64);
        // SAFETY: block r reads x[r*m .. r*m+m) of the contiguous copy, writes y[r].
        unsafe { b.launch(cfg) }.map_err(|e| launch_err(&g, op, e))?;
        Ok(wrap(&g, y))
    })
}

// ---------------------------------------------------------------------------------------------
// Matrix products

/// How cuBLAS reads one operand: the operand's row-major matrices are column-major matrices
/// of the transpose, so a plain matrix is `N` with ld = columns and a transposed view
/// (strides `[1, rows]`) is `T` with ld = rows.
fn blas_operand(l: &Layout, rows: usize, cols: usize) -> Option<(cublasOperation_t, i32, i64)> {
    let r = l.shape.len();
    let (s0, s1) = (l.strides[r - 2], l.strides[r - 1]);
    let batch_stride = (rows * cols) as i64;
    // Leading dimensions must be packed matrices one after another.
    let mut expect = batch_stride as isize;
    for d in (0..r - 2).rev() {
        if l.shape[d] != 1 && l.strides[d] != expect {
            return None;
        }
        expect *= l.shape[d] as isize;
    }
    if (s1 == 1 || cols == 1) && (s0 == cols as isize || rows == 1) {
        Some((
            cublasOperation_t::CUBLAS_OP_N,
            cols.max(1) as i32,
            batch_stride,
        ))
    } else if (s0 == 1 || rows == 1) && (s1 == rows as isize || cols == 1) {
        Some((
            cublasOperation_t::CUBLAS_OP_T,
            rows.max(1) as i32,
            batch_stride,
        ))
    } else {
        None
    }
}

/// `a · b` through cuBLAS for the sizes of `dims` (the operands' batch dimensions broadcast
/// to `dims.batch`: broadcast or unpacked operands are copied into packed form first).
pub(crate) fn matmul(a: View, b: View, dims: &crate::shape::MatmulDims) -> Result<CudaStorage> {
    let op = "matmul";
    let (batch, m, k, n) = (dims.batch, dims.m, dims.k, dims.n);
    let batches: usize = batch.iter().product();
    let dtype = a.0.dtype();
    // The operand as cuBLAS reads it: its own storage when packed, or a packed copy.
    let pack = |(s, l): View, rows: usize, cols: usize| -> Result<(Option<CudaStorage>, Layout)> {
        let mut full_shape = batch.to_vec();
        full_shape.extend([rows, cols]);
        let l = if l.shape[..] == full_shape[..] {
            l.clone()
        } else {
            l.broadcast_to(&full_shape)
        };
        if l.offset == 0 && blas_operand(&l, rows, cols).is_some() {
            Ok((None, l))
        } else {
            Ok((Some(contiguous(s, &l)?), Layout::contiguous(&full_shape)))
        }
    };
    let ((ca, la), (cb, lb)) = (pack(a, m, k)?, pack(b, k, n)?);
    let (sa, sb) = (ca.as_ref().unwrap_or(a.0), cb.as_ref().unwrap_or(b.0));
    let g = sa.gpu.clone();
    let fail =
        |e: &dyn std::fmt::Display| Error::device(op, format!("cuda:{}: cuBLAS: {e}", g.ordinal));
    let (opa, lda, stride_a) =
        blas_operand(&la, m, k).ok_or_else(|| fail(&"operand a is not packed"))?;
    let (opb, ldb, stride_b) =
        blas_operand(&lb, k, n).ok_or_else(|| fail(&"operand b is not packed"))?;
    let dims = |v: usize| {
        i32::try_from(v).map_err(|_| fail(&format!("dimension {v} exceeds cuBLAS's 32-bit sizes")))
    };
    let (mi, ni, ki) = (dims(m)?, dims(n)?, dims(k)?);
    macro_rules! go {
        ($T:ty) => {{
            let (xa, xb) = (slice_of::<$T>(op, sa)?, slice_of::<$T>(op, sb)?);
            let mut y = alloc::<$T>(&g, op, batches * m * n)?;
            if m * n == 0 {
                return Ok(wrap(&g, y));
            }
            if k == 0 {
                return full(g.ordinal, batches * m * n, 0.0, dtype);
            }
            // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B goes first.
            let cfg = GemmConfig {
                transa: opb,
                transb: opa,
                m: ni,
                n: mi,
                k: ki,
                alpha: 1.0 as $T,
                lda: ldb,
                ldb: lda,
                beta: 0.0 as $T,
                ldc: ni,
            };
            let result = if batches == 1 {
                // SAFETY: the sizes and leading dimensions describe packed matrices inside
                // each operand's storage (checked by `blas_operand`), and y has m·n elements.
                unsafe { g.blas().gemm(cfg, xb, xa, &mut y) }
            } else {
                let cfg = StridedBatchedConfig {
                    gemm: cfg,
                    batch_size: dims(batches)?,
                    stride_a: stride_b,
                    stride_b: stride_a,
                    stride_c: (m * n) as i64,
                };
                // SAFETY: as above, for `batches` matrices one after another in each.
                unsafe { g.blas().gemm_strided_batched(cfg, xb, xa, &mut y) }
            };
            result.map_err(|e| fail(&e))?;
            Ok(wrap(&g, y))
        }};
    }
    match dtype {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        other => Err(Error::dtype(
            op,
            format!("expected a floating-point tensor, got {other}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Selection, one_hot, concatenation, gather

/// `condition ? a : b` over `count` elements, every operand already broadcast to the result;
/// `a` or `b` may be a host value.
pub(crate) fn select(
    (cs, lc): (&CudaStorage, Layout),
    a: Side,
    b: Side,
    dtype: DType,
    count: usize,
) -> Result<CudaStorage> {
    let op = "select";
    let (sa, sb) = (matches!(a, Side::Host(..)), matches!(b, Side::Host(..)));
    let g = &cs.gpu;
    let n64 = count as u64;
    let lc = KLayout::of(op, &lc)?;
    let cv = slice_of::<bool>(op, cs)?;
    fn gpu_side<'a>(op: &'static str, s: &Side<'a>) -> Result<Option<(&'a CudaStorage, KLayout)>> {
        match s {
            Side::Gpu(x, l) => Ok(Some((*x, KLayout::of(op, l)?))),
            Side::Host(..) => Ok(None),
        }
    }
    let (ga, gb) = (gpu_side(op, &a)?, gpu_side(op, &b)?);
    dispatch!(dtype, T => {
        let (name, src) = kernels::select(T::C_TYPE, sa, sb);
        let f = g.function(op, &src, &name)?;
        let mut y = alloc::<T>(g, op, count)?;
        let (va, vb): (T, T) = (a.value::<T>(op)?, b.value::<T>(op)?);
        let xa = match &ga { Some((x, l)) => Some((slice_of::<T>(op, x)?, l)), None => None };
        let xb = match &gb { Some((x, l)) => Some((slice_of::<T>(op, x)?, l)), None => None };
        let mut l = g.stream().launch_builder(&f);
        l.arg(cv).arg(&lc);
        match xa {
            Some((x, la)) => l.arg(x).arg(la),
            None => l.arg(&va),
        };
        match xb {
            Some((x, lb)) => l.arg(x).arg(lb),
            None => l.arg(&vb),
        };
        l.arg(&mut y).arg(&n64);
        // SAFETY: the arguments follow the variant's signature (pointer and layout for a view,
        // a value for a scalar); reads go through the broadcast layouts, writes y[0..count).
        unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(wrap(g, y))
    })
}

/// `[0, 1, ..., len-1]` of `dtype` on GPU `n`.
pub(crate) fn iota(n: usize, len: usize, dtype: DType) -> Result<CudaStorage> {
    let g = super::gpu(n)?;
    dispatch!(dtype, T => {
        let (name, src) = kernels::iota(T::C_TYPE);
        let f = g.function("iota", &src, &name)?;
        let mut y = alloc::<T>(&g, "iota", len)?;
        let n64 = len as u64;
        let mut b = g.stream().launch_builder(&f);
        b.arg(&mut y).arg(&n64);
        // SAFETY: writes y[0..len).
        unsafe { b.launch(grid(len)) }.map_err(|e| launch_err(&g, "iota", e))?;
        Ok(wrap(&g, y))
    })
}

/// `parts` (all on one GPU, of one dtype) joined along `ax` into `shape`.
pub(crate) fn concat(parts: &[View], ax: usize, shape: &[usize]) -> Result<CudaStorage> {
    let op = "concat";
    let s0 = parts
        .first()
        .ok_or_else(|| Error::arg(op, "nothing to join"))?
        .0;
    let g = s0.gpu.clone();
    let count = numel(shape);
    dispatch!(s0.dtype(), T => {
        let (name, src) = kernels::copy_into(T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let mut y = alloc::<T>(&g, op, count)?;
        let whole = Layout::contiguous(shape);
        let mut start = 0;
        for &(s, l) in parts {
            let len = l.shape[ax];
            // The part's place in the output: the output's layout narrowed on `ax`.
            let mut place = whole.clone();
            place.offset += start * whole.strides[ax] as usize;
            place.shape[ax] = len;
            start += len;
            copy_into::<T>(&g, op, &f, (s, l), &mut y, &place)?;
        }
        Ok(wrap(&g, y))
    })
}

/// Launches the `copy_into` kernel `f`: the elements of `s` read through `from`, written into
/// the view `to` of `y` (one part of a concatenation, a gradient into its slice).
fn copy_into<T: CudaElement>(
    g: &Gpu,
    op: &'static str,
    f: &cudarc::driver::CudaFunction,
    (s, from): View,
    y: &mut CudaSlice<T>,
    to: &Layout,
) -> Result<()> {
    let part = numel(&from.shape);
    if part == 0 {
        return Ok(());
    }
    let (lx, ly) = (KLayout::of(op, from)?, KLayout::of(op, to)?);
    let xs = slice_of::<T>(op, s)?;
    let n64 = part as u64;
    let mut b = g.stream().launch_builder(f);
    b.arg(xs).arg(&lx).arg(y).arg(&ly).arg(&n64);
    // SAFETY: the callers make `to` a view inside `y`'s elements with `from`'s shape; the
    // kernel reads `s` through `from` (inside its storage) and writes only that view.
    unsafe { b.launch(grid(part)) }.map_err(|e| launch_err(g, op, e))?;
    Ok(())
}

/// Zeros of `shape` with `x` written into the view `target` of them (the adjoint of a slice).
pub(crate) fn unslice((s, l): View, shape: &[usize], target: &Layout) -> Result<CudaStorage> {
    let op = "unslice";
    let g = s.gpu.clone();
    let count = numel(shape);
    dispatch!(s.dtype(), T => {
        let (name, src) = kernels::copy_into(T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let mut y = g.stream().alloc_zeros::<T>(count.max(1)).map_err(|e| launch_err(&g, op, e))?;
        copy_into::<T>(&g, op, &f, (s, l), &mut y, target)?;
        Ok(wrap(&g, y))
    })
}

/// The indices (checked on the host) as a GPU array on `g` (one copy when they came from the
/// host, as embedding ids usually do).
fn device_indices(g: &Arc<Gpu>, idx: &[i64]) -> Result<CudaSlice<i64>> {
    super::upload_slice::<i64>(g, if idx.is_empty() { &[0] } else { idx })
}

/// `params` gathered along `ax` by `idx` into `shape`.
pub(crate) fn gather(p: View, idx: &[i64], ax: usize, shape: &[usize]) -> Result<CudaStorage> {
    let dim = p.1.shape[ax];
    gather_or_scatter("gather", p, idx, ax, dim, shape, false)
}

/// The adjoint of [`gather`]: `updates` added into zeros of `shape` at `idx` along `ax`.
pub(crate) fn scatter_add(
    u: View,
    idx: &[i64],
    ax: usize,
    dim: usize,
    shape: &[usize],
) -> Result<CudaStorage> {
    gather_or_scatter("scatter_add", u, idx, ax, dim, shape, true)
}

fn gather_or_scatter(
    op: &'static str,
    (s, l): View,
    idx: &[i64],
    ax: usize,
    dim: usize,
    shape: &[usize],
    add: bool,
) -> Result<CudaStorage> {
    let mut keep = None;
    let s = packed(s, l, &mut keep)?;
    let g = s.gpu.clone();
    // The side with the indexed axis whole (params for gather, the result for scatter-add):
    // what follows that axis is the block each index moves.
    let whole = if add { shape } else { &l.shape[..] };
    let inner: usize = whole[ax + 1..].iter().product();
    let count = numel(shape);
    let n_updates = numel(&l.shape);
    macro_rules! go {
        ($T:ty) => {{
            let (name, src) = kernels::gather(<$T>::C_TYPE);
            let f = g.function(op, &src, &if add { format!("{name}_add") } else { name })?;
            let ids = device_indices(&g, idx)?;
            let xs = slice_of::<$T>(op, s)?;
            let mut y = if add {
                g.stream()
                    .alloc_zeros::<$T>(count.max(1))
                    .map_err(|e| launch_err(&g, op, e))?
            } else {
                alloc::<$T>(&g, op, count)?
            };
            let (nidx, inner64, dim64) = (idx.len() as u64, inner as u64, dim as u64);
            let n = if add { n_updates } else { count };
            let n64 = n as u64;
            let mut b = g.stream().launch_builder(&f);
            b.arg(xs)
                .arg(&ids)
                .arg(&mut y)
                .arg(&nidx)
                .arg(&inner64)
                .arg(&dim64)
                .arg(&n64);
            // SAFETY: the indices were checked to lie in [0, dim) on the host; the sizes
            // describe contiguous [outer, nidx|dim, inner] arrays.
            unsafe { b.launch(grid(n)) }.map_err(|e| launch_err(&g, op, e))?;
            Ok(wrap(&g, y))
        }};
    }
    match (s.dtype(), add) {
        (DType::F32, _) => go!(f32),
        (DType::F64, _) => go!(f64),
        (DType::I64, false) => go!(i64),
        (dt, _) => Err(Error::dtype(
            op,
            format!("{dt} has no GPU kernel for {op} yet"),
        )),
    }
}

/// A leaf of a fused kernel: device elements (an array of the group's size from offset 0, or
/// one element at offset 0), or one host element passed by value.
pub(crate) enum FusedLeaf<'a> {
    Gpu(&'a CudaStorage, kernels::LeafKind),
    Host(&'a CpuStorage, usize),
}

/// One fusion group of a compiled graph as one kernel (see [`kernels::fused`]) over `n`
/// elements of `dtype`, every output a new array of `n` elements.
pub(crate) fn fused(
    leaves: &[FusedLeaf],
    insts: &[(&str, usize, [kernels::Slot; 2])],
    outputs: &[usize],
    dtype: DType,
    n: usize,
) -> Result<Vec<CudaStorage>> {
    let op = "function";
    let g = leaves
        .iter()
        .find_map(|l| match l {
            FusedLeaf::Gpu(s, _) => Some(&s.gpu),
            FusedLeaf::Host(..) => None,
        })
        .ok_or_else(|| Error::device(op, "a fused group on a GPU needs an operand there"))?;
    let kinds: Vec<kernels::LeafKind> = leaves
        .iter()
        .map(|l| match l {
            FusedLeaf::Gpu(_, k) => *k,
            FusedLeaf::Host(..) => kernels::LeafKind::Value,
        })
        .collect();
    let n64 = n as u64;
    dispatch!(float op, dtype, T => {
        let (name, src) = kernels::fused(insts, &kinds, outputs, T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let mut arrays = vec![];
        let mut values = vec![];
        for l in leaves {
            match l {
                FusedLeaf::Gpu(s, _) => arrays.push(slice_of::<T>(op, s)?),
                FusedLeaf::Host(c, offset) => values.push(Side::Host(c, *offset).value::<T>(op)?),
            }
        }
        let mut ys = (0..outputs.len())
            .map(|_| alloc::<T>(g, op, n))
            .collect::<Result<Vec<_>>>()?;
        let mut b = g.stream().launch_builder(&f);
        let (mut a, mut v) = (arrays.iter(), values.iter());
        for l in leaves {
            match l {
                FusedLeaf::Gpu(..) => {
                    if let Some(x) = a.next() {
                        b.arg(*x);
                    }
                }
                FusedLeaf::Host(..) => {
                    if let Some(x) = v.next() {
                        b.arg(x);
                    }
                }
            }
        }
        for y in ys.iter_mut() {
            b.arg(y);
        }
        b.arg(&n64);
        // SAFETY: reads each array leaf at 0..n (the caller checked each holds n elements from
        // offset 0) and each one-element leaf at 0, writes each output at 0..n; the arguments
        // are pushed in the order of the kernel's parameters (leaves, outputs, n).
        unsafe { b.launch(grid(n)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(ys.into_iter().map(|y| wrap(g, y)).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS's column-major GEMM, `C = op(A) op(B)` with `C` of `m × n` and leading dimension
    /// `m`, on host slices: what `Gemm::gemm` computes.
    #[allow(clippy::too_many_arguments)]
    fn gemm_colmajor(
        ta: cublasOperation_t,
        tb: cublasOperation_t,
        (m, n, k): (usize, usize, usize),
        a: &[f64],
        lda: usize,
        b: &[f64],
        ldb: usize,
    ) -> Vec<f64> {
        let t = cublasOperation_t::CUBLAS_OP_T;
        let get_a = |i: usize, p: usize| {
            if ta == t {
                a[p + i * lda]
            } else {
                a[i + p * lda]
            }
        };
        let get_b = |p: usize, j: usize| {
            if tb == t {
                b[j + p * ldb]
            } else {
                b[p + j * ldb]
            }
        };
        let mut c = vec![0.0; m * n];
        for j in 0..n {
            for i in 0..m {
                c[i + j * m] = (0..k).map(|p| get_a(i, p) * get_b(p, j)).sum();
            }
        }
        c
    }

    /// The arguments `matmul` gives cuBLAS, checked by running that GEMM on the host: plain
    /// and transposed views of each operand give the row-major product.
    #[test]
    fn the_cublas_arguments_give_the_row_major_product() {
        let (m, k, n) = (3, 4, 5);
        let data = |r: usize, c: usize, s: f64| -> Vec<f64> {
            (0..r * c).map(|i| (i as f64 * 0.37 + s).sin()).collect()
        };
        let (a, b) = (data(m, k, 0.0), data(k, n, 1.0));
        let mut want = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        // Each operand as itself (row-major), and as the transposed view of its contiguous
        // transpose (the same matrix, column-major).
        let plain =
            |x: &[f64], r: usize, _c: usize| (x.to_vec(), Layout::contiguous(&[r, x.len() / r]));
        let transposed = |x: &[f64], r: usize, c: usize| {
            let mut t = vec![0.0; r * c];
            for i in 0..r {
                for j in 0..c {
                    t[j * r + i] = x[i * c + j];
                }
            }
            (t, Layout::contiguous(&[c, r]).permute(&[1, 0]))
        };
        type Make = dyn Fn(&[f64], usize, usize) -> (Vec<f64>, Layout);
        let makes: [&Make; 2] = [&plain, &transposed];
        for fa in makes {
            for fb in makes {
                let ((ha, la), (hb, lb)) = (fa(&a, m, k), fb(&b, k, n));
                let (opa, lda, _) = blas_operand(&la, m, k).unwrap();
                let (opb, ldb, _) = blas_operand(&lb, k, n).unwrap();
                // As `matmul` calls it: B first, then A, giving Cᵀ column-major = C row-major.
                let got = gemm_colmajor(opb, opa, (n, m, k), &hb, ldb as usize, &ha, lda as usize);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
                }
            }
        }
        // A broadcast batch is not packed: it is copied first.
        let batched = Layout::contiguous(&[m, k]).broadcast_to(&[2, m, k]);
        assert!(blas_operand(&batched, m, k).is_none());
    }
}
