//! The GPU side of the ops: each function launches one kernel shape from [`super::kernels`]
//! with an op's expression, or calls cuBLAS. The ops in `crate::ops` call these first and get
//! `None` when their operands are on the host.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::kernels::{self, KLayout};
use super::{alloc, CudaElement, CudaStorage, Gpu};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::shape::Layout;
use crate::tensor::Tensor;

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

/// Runs `f` with the dtype's element type bound to `$T` (every dtype).
macro_rules! with_dtype {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

/// The GPU storage behind `t` and its typed slice, or `None` for a host tensor.
fn slice_of<'a, T: CudaElement>(op: &'static str, s: &'a CudaStorage) -> Result<&'a CudaSlice<T>> {
    T::unwrap(&s.data).ok_or_else(|| {
        Error::dtype(
            op,
            format!("tensor has dtype {}, not {}", s.dtype(), T::DTYPE),
        )
    })
}

fn wrap<T: CudaElement>(g: &Arc<Gpu>, s: CudaSlice<T>, shape: &[usize]) -> Tensor {
    Tensor::from_cuda(CudaStorage::new(T::wrap(s), g.clone()), shape)
}

// ---------------------------------------------------------------------------------------------
// Moving, filling, copying

/// `t` on `device`: a host↔GPU copy, or a copy of the elements on the same device kind.
pub(crate) fn to_device(t: &Tensor, device: Device) -> Result<Tensor> {
    let here = t.device();
    match (here, device) {
        (a, b) if a == b => Ok(t.clone()),
        (Device::Cpu, Device::Cuda(n)) => {
            let g = super::gpu(n)?;
            let host = t.to_contiguous()?;
            with_dtype!(t.dtype(), T => {
                let s = super::upload::<T>(&g, host.data::<T>()?.get(host.layout().offset..host.layout().offset + host.numel()).unwrap_or(&[]))?;
                Ok(Tensor::from_cuda(s, t.shape()))
            })
        }
        (Device::Cuda(_), Device::Cpu) => {
            let c = contiguous(t)?;
            let s = c
                .cuda_storage()
                .ok_or_else(|| Error::device("to_device", "lost the GPU storage"))?;
            with_dtype!(t.dtype(), T => {
                let v = super::download::<T>(s)?;
                // from_elems, not from_vec: this tensor is the host copy whatever the scope says.
                let v: Vec<T> = v.into_iter().take(t.numel()).collect();
                Ok(Tensor::from_elems(v, t.shape()))
            })
        }
        // Between two GPUs: through the host for now (peer copies are a later step).
        (Device::Cuda(_), Device::Cuda(_)) => to_device(&to_device(t, Device::Cpu)?, device),
        (Device::Cpu, Device::Cpu) => Ok(t.clone()),
    }
}

/// A tensor of `shape` with every element `value`, made on GPU `n`.
pub(crate) fn full(n: usize, shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
    let g = super::gpu(n)?;
    let count = crate::shape::numel(shape);
    with_dtype!(dtype, T => {
        let (name, src) = kernels::fill(T::C_TYPE);
        let f = g.function("fill", &src, &name)?;
        let mut y = alloc::<T>(&g, "fill", count)?;
        let (n64, v) = (count as u64, T::from_f64(value));
        let mut b = g.stream.launch_builder(&f);
        b.arg(&mut y).arg(&n64).arg(&v);
        // SAFETY: the kernel writes y[0..count) with `v`; the arguments match its signature.
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(&g, "fill", e))?;
        Ok(wrap(&g, y, shape))
    })
}

/// `t` laid out contiguously on its GPU (a no-op view when it already is).
pub(crate) fn contiguous(t: &Tensor) -> Result<Tensor> {
    let s = t
        .cuda_storage()
        .ok_or_else(|| Error::device("contiguous", "not a GPU tensor"))?;
    if t.layout().is_contiguous() && t.layout().offset == 0 {
        return Ok(t.clone());
    }
    let g = &s.gpu;
    let lx = KLayout::of("contiguous", t.layout())?;
    let count = t.numel();
    with_dtype!(t.dtype(), T => {
        let (name, src) = kernels::copy(T::C_TYPE);
        let f = g.function("contiguous", &src, &name)?;
        let x = slice_of::<T>("contiguous", s)?;
        let mut y = alloc::<T>(g, "contiguous", count)?;
        let n64 = count as u64;
        let mut b = g.stream.launch_builder(&f);
        b.arg(x).arg(&lx).arg(&mut y).arg(&n64);
        // SAFETY: reads x through its own layout (inside its storage), writes y[0..count).
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(g, "contiguous", e))?;
        Ok(wrap(g, y, t.shape()))
    })
}

// ---------------------------------------------------------------------------------------------
// Elementwise

/// `expr(v)` over a tensor on a GPU, giving `out` elements; `None` for a host tensor. The
/// caller has checked the input dtype (the CPU kernel's dispatch does).
pub(crate) fn unary(
    op: &'static str,
    x: &Tensor,
    expr: &str,
    out: DType,
) -> Result<Option<Tensor>> {
    kernels::note(|| kernels::unary(op, expr, kernels::c_type(x.dtype()), kernels::c_type(out)));
    let Some(s) = x.cuda_storage() else {
        return Ok(None);
    };
    let g = &s.gpu;
    let lx = KLayout::of(op, x.layout())?;
    let count = x.numel();
    let n64 = count as u64;
    with_dtype!(x.dtype(), T => with_dtype!(out, U => {
        let (name, src) = kernels::unary(op, expr, T::C_TYPE, U::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let xs = slice_of::<T>(op, s)?;
        let mut y = alloc::<U>(g, op, count)?;
        let mut b = g.stream.launch_builder(&f);
        b.arg(xs).arg(&lx).arg(&mut y).arg(&n64);
        // SAFETY: reads x through its layout (inside its storage), writes y[0..count).
        unsafe { b.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(Some(wrap(g, y, x.shape())))
    }))
}

/// `expr(p, q)` over two operands of one dtype broadcast together, giving `out` elements, when
/// either is on a GPU; `None` when both are on the host. A 0-d host tensor (a Rust number)
/// beside a GPU tensor is passed to the kernel by value, with no copy.
///
/// # Errors
/// Tensors on two different devices (naming both), or shapes that do not broadcast.
pub(crate) fn binary(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    expr: &str,
    out: DType,
) -> Result<Option<Tensor>> {
    kernels::note(|| kernels::binary(op, expr, kernels::c_type(a.dtype()), kernels::c_type(out)));
    let (da, db) = (a.device(), b.device());
    if da == Device::Cpu && db == Device::Cpu {
        return Ok(None);
    }
    let shape = crate::shape::broadcast_shapes(op, a.shape(), b.shape())?;
    let count = crate::shape::numel(&shape);
    let n64 = count as u64;
    let host_scalar = |t: &Tensor, d: Device| d == Device::Cpu && t.rank() == 0;
    if host_scalar(a, da) || host_scalar(b, db) {
        let (t, side, scalar) = if host_scalar(b, db) {
            (a, 0i32, b)
        } else {
            (b, 1i32, a)
        };
        let s = t
            .cuda_storage()
            .ok_or_else(|| Error::device(op, "not a GPU tensor"))?;
        let g = &s.gpu;
        let lt = KLayout::of(op, &t.layout().broadcast_to(&shape))?;
        return with_dtype!(a.dtype(), T => with_dtype!(out, U => {
            let (name, src) = kernels::binary(op, expr, T::C_TYPE, U::C_TYPE);
            let f = g.function(op, &src, &format!("{name}_scalar"))?;
            let v: T = scalar.to_scalar::<T>()?;
            let xs = slice_of::<T>(op, s)?;
            let mut y = alloc::<U>(g, op, count)?;
            let mut l = g.stream.launch_builder(&f);
            l.arg(xs).arg(&lt).arg(&v).arg(&side).arg(&mut y).arg(&n64);
            // SAFETY: reads the tensor through its broadcast layout, writes y[0..count).
            unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
            Ok(Some(wrap(g, y, &shape)))
        }));
    }
    crate::device::common(op, da, db)?;
    let (sa, sb) = match (a.cuda_storage(), b.cuda_storage()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(Error::device(op, "operands are not both on a GPU")),
    };
    let g = &sa.gpu;
    let (la, lb) = (
        KLayout::of(op, &a.layout().broadcast_to(&shape))?,
        KLayout::of(op, &b.layout().broadcast_to(&shape))?,
    );
    with_dtype!(a.dtype(), T => with_dtype!(out, U => {
        let (name, src) = kernels::binary(op, expr, T::C_TYPE, U::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let (xa, xb) = (slice_of::<T>(op, sa)?, slice_of::<T>(op, sb)?);
        let mut y = alloc::<U>(g, op, count)?;
        let mut l = g.stream.launch_builder(&f);
        l.arg(xa).arg(&la).arg(xb).arg(&lb).arg(&mut y).arg(&n64);
        // SAFETY: reads both operands through their broadcast layouts, writes y[0..count).
        unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(Some(wrap(g, y, &shape)))
    }))
}

// ---------------------------------------------------------------------------------------------
// Reductions

/// `x` reduced over `axes` (sorted, distinct) by `combine(a, b)` from `init` (a value of the
/// dtype, as `f64`), result of shape `out_shape` (kept or dropped axes, as the caller decided);
/// `None` for a host tensor. The reduced axes are moved last and made contiguous, then one
/// block reduces each row.
pub(crate) fn reduce(
    op: &'static str,
    x: &Tensor,
    axes: &[usize],
    init: f64,
    combine: &str,
    out_shape: &[usize],
) -> Result<Option<Tensor>> {
    kernels::note(|| {
        let init = kernels::c_literal(init, x.dtype());
        kernels::reduce_rows(op, &init, combine, kernels::c_type(x.dtype()))
    });
    let Some(s) = x.cuda_storage() else {
        return Ok(None);
    };
    let g = s.gpu.clone();
    let rank = x.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    perm.extend_from_slice(axes);
    let m: usize = axes.iter().map(|&d| x.shape()[d]).product();
    let rows: usize = x.numel() / m.max(1);
    let moved = x.view(x.layout().permute(&perm));
    let c = contiguous(&moved)?;
    let cs = c
        .cuda_storage()
        .ok_or_else(|| Error::device(op, "lost the GPU storage"))?;
    if rows == 0 {
        return full(g.ordinal, out_shape, init, x.dtype()).map(Some);
    }
    if m == 0 {
        return full(g.ordinal, out_shape, init, x.dtype()).map(Some);
    }
    if rows > i32::MAX as usize {
        return Err(Error::shape(
            op,
            format!("{rows} rows are more than one launch takes"),
        ));
    }
    with_dtype!(x.dtype(), T => {
        let init = kernels::c_literal(init, x.dtype());
        let (name, src) = kernels::reduce_rows(op, &init, combine, T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let xs = slice_of::<T>(op, cs)?;
        let mut y = alloc::<T>(&g, op, rows)?;
        let m64 = m as u64;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (kernels::REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = g.stream.launch_builder(&f);
        b.arg(xs).arg(&mut y).arg(&m64);
        // SAFETY: block r reads x[r*m .. r*m+m) of the contiguous copy, writes y[r].
        unsafe { b.launch(cfg) }.map_err(|e| launch_err(&g, op, e))?;
        Ok(Some(wrap(&g, y, out_shape)))
    })
}

// ---------------------------------------------------------------------------------------------
// Matrix products

/// How cuBLAS reads one operand: the operand's row-major matrices are column-major matrices
/// of the transpose, so a plain matrix is `N` with ld = columns and a transposed view
/// (strides `[1, rows]`) is `T` with ld = rows.
fn blas_operand(t: &Tensor, rows: usize, cols: usize) -> Option<(cublasOperation_t, i32, i64)> {
    let l = t.layout();
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

/// `a · b` on a GPU through cuBLAS (batch dimensions must already agree after broadcasting:
/// broadcast operands are materialized first); `None` when both are on the host.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    m: usize,
    k: usize,
    n: usize,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    let op = "matmul";
    let (da, db) = (a.device(), b.device());
    if da == Device::Cpu && db == Device::Cpu {
        return Ok(None);
    }
    crate::device::common(op, da, db)?;
    let batches: usize = batch.iter().product();
    // Operands whose batch dimensions are broadcast, or whose matrices are not packed, are
    // copied into packed form first.
    let pack = |t: &Tensor, rows: usize, cols: usize| -> Result<Tensor> {
        let mut full_shape = batch.to_vec();
        full_shape.extend([rows, cols]);
        let t = if t.shape() == full_shape.as_slice() {
            t.clone()
        } else {
            t.view(t.layout().broadcast_to(&full_shape))
        };
        if t.layout().offset == 0 && blas_operand(&t, rows, cols).is_some() {
            Ok(t)
        } else {
            contiguous(&t)
        }
    };
    let (a, b) = (pack(a, m, k)?, pack(b, k, n)?);
    let (sa, sb) = match (a.cuda_storage(), b.cuda_storage()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(Error::device(op, "not GPU tensors")),
    };
    let g = sa.gpu.clone();
    let fail =
        |e: &dyn std::fmt::Display| Error::device(op, format!("cuda:{}: cuBLAS: {e}", g.ordinal));
    let (opa, lda, stride_a) =
        blas_operand(&a, m, k).ok_or_else(|| fail(&"operand a is not packed"))?;
    let (opb, ldb, stride_b) =
        blas_operand(&b, k, n).ok_or_else(|| fail(&"operand b is not packed"))?;
    let dims = |v: usize| {
        i32::try_from(v).map_err(|_| fail(&format!("dimension {v} exceeds cuBLAS's 32-bit sizes")))
    };
    let (mi, ni, ki) = (dims(m)?, dims(n)?, dims(k)?);
    macro_rules! go {
        ($T:ty) => {{
            let (xa, xb) = (slice_of::<$T>(op, sa)?, slice_of::<$T>(op, sb)?);
            let mut y = alloc::<$T>(&g, op, batches * m * n)?;
            if m * n == 0 {
                return Ok(Some(wrap(&g, y, shape)));
            }
            if k == 0 {
                return full(g.ordinal, shape, 0.0, a.dtype()).map(Some);
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
                unsafe { g.blas.gemm(cfg, xb, xa, &mut y) }
            } else {
                let cfg = StridedBatchedConfig {
                    gemm: cfg,
                    batch_size: dims(batches)?,
                    stride_a: stride_b,
                    stride_b: stride_a,
                    stride_c: (m * n) as i64,
                };
                // SAFETY: as above, for `batches` matrices one after another in each.
                unsafe { g.blas.gemm_strided_batched(cfg, xb, xa, &mut y) }
            };
            result.map_err(|e| fail(&e))?;
            Ok(Some(wrap(&g, y, shape)))
        }};
    }
    match a.dtype() {
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

/// `condition ? a : b` broadcast to `shape`, when any operand is on a GPU; `a` or `b` may be
/// a 0-d host tensor (passed by value). `None` when all three are on the host.
pub(crate) fn select(
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    let op = "select";
    let host_scalar = |t: &Tensor| t.device() == Device::Cpu && t.rank() == 0;
    let (sa, sb) = (host_scalar(a), host_scalar(b));
    kernels::note(|| kernels::select(kernels::c_type(a.dtype()), sa, sb));
    let devices = [c.device(), a.device(), b.device()];
    if devices.iter().all(|d| *d == Device::Cpu) {
        return Ok(None);
    }
    crate::device::common(op, c.device(), if sa { c.device() } else { a.device() })?;
    crate::device::common(op, c.device(), if sb { c.device() } else { b.device() })?;
    let cs = c
        .cuda_storage()
        .ok_or_else(|| Error::device(op, "the condition is not on the GPU"))?;
    let g = &cs.gpu;
    let count = crate::shape::numel(shape);
    let n64 = count as u64;
    let lc = KLayout::of(op, &c.layout().broadcast_to(shape))?;
    let cv = slice_of::<bool>(op, cs)?;
    with_dtype!(a.dtype(), T => {
        let (name, src) = kernels::select(T::C_TYPE, sa, sb);
        let f = g.function(op, &src, &name)?;
        let mut y = alloc::<T>(g, op, count)?;
        let (va, vb): (T, T) = (
            if sa { a.to_scalar::<T>()? } else { T::default() },
            if sb { b.to_scalar::<T>()? } else { T::default() },
        );
        let la = KLayout::of(op, &a.layout().broadcast_to(shape))?;
        let lb = KLayout::of(op, &b.layout().broadcast_to(shape))?;
        let xa = if sa { None } else { Some(slice_of::<T>(op, a.cuda_storage().ok_or_else(|| Error::device(op, "lost a"))?)?) };
        let xb = if sb { None } else { Some(slice_of::<T>(op, b.cuda_storage().ok_or_else(|| Error::device(op, "lost b"))?)?) };
        let mut l = g.stream.launch_builder(&f);
        l.arg(cv).arg(&lc);
        match xa {
            Some(x) => l.arg(x).arg(&la),
            None => l.arg(&va),
        };
        match xb {
            Some(x) => l.arg(x).arg(&lb),
            None => l.arg(&vb),
        };
        l.arg(&mut y).arg(&n64);
        // SAFETY: the arguments follow the variant's signature (pointer and layout for a view,
        // a value for a scalar); reads go through the broadcast layouts, writes y[0..count).
        unsafe { l.launch(grid(count)) }.map_err(|e| launch_err(g, op, e))?;
        Ok(Some(wrap(g, y, shape)))
    })
}

/// `[0, 1, ..., len-1]` of `dtype` on GPU `n`.
pub(crate) fn iota(n: usize, len: usize, dtype: DType) -> Result<Tensor> {
    let g = super::gpu(n)?;
    with_dtype!(dtype, T => {
        let (name, src) = kernels::iota(T::C_TYPE);
        let f = g.function("iota", &src, &name)?;
        let mut y = alloc::<T>(&g, "iota", len)?;
        let n64 = len as u64;
        let mut b = g.stream.launch_builder(&f);
        b.arg(&mut y).arg(&n64);
        // SAFETY: writes y[0..len).
        unsafe { b.launch(grid(len)) }.map_err(|e| launch_err(&g, "iota", e))?;
        Ok(wrap(&g, y, &[len]))
    })
}

/// `parts` joined along `ax` into `shape`, when they are on a GPU (all on the same one).
pub(crate) fn concat(parts: &[&Tensor], ax: usize, shape: &[usize]) -> Result<Option<Tensor>> {
    let op = "concat";
    kernels::note(|| kernels::copy_into(kernels::c_type(parts[0].dtype())));
    let d0 = parts[0].device();
    if parts.iter().all(|p| p.device() == Device::Cpu) {
        return Ok(None);
    }
    for p in parts {
        crate::device::common(op, d0, p.device())?;
    }
    let s0 = parts[0]
        .cuda_storage()
        .ok_or_else(|| Error::device(op, "not on the GPU"))?;
    let g = s0.gpu.clone();
    let count = crate::shape::numel(shape);
    with_dtype!(parts[0].dtype(), T => {
        let (name, src) = kernels::copy_into(T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let mut y = alloc::<T>(&g, op, count)?;
        let whole = Layout::contiguous(shape);
        let mut start = 0;
        for p in parts {
            let len = p.shape()[ax];
            // The part's place in the output: the output's layout narrowed on `ax`.
            let mut place = whole.clone();
            place.offset += start * whole.strides[ax] as usize;
            place.shape[ax] = len;
            start += len;
            if p.numel() == 0 {
                continue;
            }
            let (lx, ly) = (KLayout::of(op, p.layout())?, KLayout::of(op, &place)?);
            let xs = slice_of::<T>(op, p.cuda_storage().ok_or_else(|| Error::device(op, "lost a part"))?)?;
            let n64 = p.numel() as u64;
            let mut b = g.stream.launch_builder(&f);
            b.arg(xs).arg(&lx).arg(&mut y).arg(&ly).arg(&n64);
            // SAFETY: reads the part through its layout and writes its own region of y.
            unsafe { b.launch(grid(p.numel())) }.map_err(|e| launch_err(&g, op, e))?;
        }
        Ok(Some(wrap(&g, y, shape)))
    })
}

/// Zeros of `shape` with `g` written into the view `target` of them (the adjoint of a slice),
/// when `g` is on a GPU.
pub(crate) fn unslice(g_: &Tensor, shape: &[usize], target: &Layout) -> Result<Option<Tensor>> {
    let op = "unslice";
    kernels::note(|| kernels::copy_into(kernels::c_type(g_.dtype())));
    let Some(s) = g_.cuda_storage() else {
        return Ok(None);
    };
    let g = s.gpu.clone();
    let count = crate::shape::numel(shape);
    with_dtype!(g_.dtype(), T => {
        let (name, src) = kernels::copy_into(T::C_TYPE);
        let f = g.function(op, &src, &name)?;
        let mut y = g.stream.alloc_zeros::<T>(count.max(1)).map_err(|e| launch_err(&g, op, e))?;
        if g_.numel() > 0 {
            let (lx, ly) = (KLayout::of(op, g_.layout())?, KLayout::of(op, target)?);
            let xs = slice_of::<T>(op, s)?;
            let n64 = g_.numel() as u64;
            let mut b = g.stream.launch_builder(&f);
            b.arg(xs).arg(&lx).arg(&mut y).arg(&ly).arg(&n64);
            // SAFETY: `target` is a view inside `shape`'s elements; reads g through its layout.
            unsafe { b.launch(grid(g_.numel())) }.map_err(|e| launch_err(&g, op, e))?;
        }
        Ok(Some(wrap(&g, y, shape)))
    })
}

/// The indices (checked on the host) as a GPU array on `g` (one copy when they came from the
/// host, as embedding ids usually do).
fn device_indices(g: &Arc<Gpu>, idx: &[i64]) -> Result<CudaSlice<i64>> {
    super::upload_slice::<i64>(g, if idx.is_empty() { &[0] } else { idx })
}

/// `params` gathered along `ax` by `idx` into `shape`, when `params` is on a GPU.
pub(crate) fn gather(
    p: &Tensor,
    idx: &[i64],
    ax: usize,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    gather_or_scatter("gather", p, idx, ax, p.shape()[ax], shape, false)
}

/// The adjoint of [`gather`]: `updates` added into zeros of `shape` at `idx` along `ax`.
pub(crate) fn scatter_add(
    u: &Tensor,
    idx: &[i64],
    ax: usize,
    dim: usize,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    gather_or_scatter("scatter_add", u, idx, ax, dim, shape, true)
}

fn gather_or_scatter(
    op: &'static str,
    x: &Tensor,
    idx: &[i64],
    ax: usize,
    dim: usize,
    shape: &[usize],
    add: bool,
) -> Result<Option<Tensor>> {
    kernels::note(|| kernels::gather(kernels::c_type(x.dtype())));
    if x.device() == Device::Cpu {
        return Ok(None);
    }
    let x = contiguous(x)?;
    let s = x
        .cuda_storage()
        .ok_or_else(|| Error::device(op, "not on the GPU"))?;
    let g = s.gpu.clone();
    // The side with the indexed axis whole (params for gather, the result for scatter-add):
    // what follows that axis is the block each index moves.
    let whole = if add { shape } else { x.shape() };
    let inner: usize = whole[ax + 1..].iter().product();
    let count = crate::shape::numel(shape);
    let n_updates = x.numel();
    macro_rules! go {
        ($T:ty) => {{
            let (name, src) = kernels::gather(<$T>::C_TYPE);
            let f = g.function(op, &src, &if add { format!("{name}_add") } else { name })?;
            let ids = device_indices(&g, idx)?;
            let xs = slice_of::<$T>(op, s)?;
            let mut y = if add {
                g.stream
                    .alloc_zeros::<$T>(count.max(1))
                    .map_err(|e| launch_err(&g, op, e))?
            } else {
                alloc::<$T>(&g, op, count)?
            };
            let (nidx, inner64, dim64) = (idx.len() as u64, inner as u64, dim as u64);
            let n = if add { n_updates } else { count };
            let n64 = n as u64;
            let mut b = g.stream.launch_builder(&f);
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
            Ok(Some(wrap(&g, y, shape)))
        }};
    }
    match (x.dtype(), add) {
        (DType::F32, _) => go!(f32),
        (DType::F64, _) => go!(f64),
        (DType::I64, false) => go!(i64),
        (dt, _) => Err(Error::dtype(
            op,
            format!("{dt} has no GPU kernel for {op} yet"),
        )),
    }
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
        let a = Tensor::from_vec(data(m, k, 0.0), &[m, k]).unwrap();
        let b = Tensor::from_vec(data(k, n, 1.0), &[k, n]).unwrap();
        let want = crate::ops::matmul(&a, &b).unwrap().to_vec::<f64>().unwrap();
        // Each operand as itself, and as the transposed view of its contiguous transpose.
        let t = |x: &Tensor| {
            crate::ops::transpose(
                &crate::ops::transpose(x, None)
                    .unwrap()
                    .to_contiguous()
                    .unwrap(),
                None,
            )
            .unwrap()
        };
        for (a, b) in [
            (a.clone(), b.clone()),
            (t(&a), b.clone()),
            (a.clone(), t(&b)),
            (t(&a), t(&b)),
        ] {
            let (opa, lda, _) = blas_operand(&a, m, k).unwrap();
            let (opb, ldb, _) = blas_operand(&b, k, n).unwrap();
            let (ha, hb) = (a.data::<f64>().unwrap(), b.data::<f64>().unwrap());
            // As `matmul` calls it: B first, then A, giving Cᵀ column-major = C row-major.
            let got = gemm_colmajor(opb, opa, (n, m, k), hb, ldb as usize, ha, lda as usize);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
            }
        }
        // A broadcast batch is not packed: it is copied first.
        let batched = a.view(a.layout().broadcast_to(&[2, m, k]));
        assert!(blas_operand(&batched, m, k).is_none());
    }
}
