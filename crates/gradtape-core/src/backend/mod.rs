//! The backend boundary: where elements live and the kernels that compute them.
//!
//! Everything in here works on storage and layouts, never on [`crate::Tensor`]: the host
//! kernels ([`cpu`]), the lazy fusion engine ([`fusion`], generic over the front end's handle
//! through [`fusion::Leaf`]), and the GPU ([`cuda`], with the `cuda` feature), side by side
//! behind one [`Storage`] type. The front end (tensors, primitives, transformations, ops)
//! calls the functions of this module; `#[cfg(feature = "cuda")]` appears here and nowhere
//! above. Nothing in here imports from the front end (`tests/layers.rs` holds that).

pub(crate) mod arena;
pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub(crate) mod fusion;
pub(crate) mod handle;
pub(crate) mod pool;
pub(crate) mod recording;
pub(crate) mod storage;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::{Layout, MatmulDims};
pub use device::Device;
use handle::Handle;
#[cfg(feature = "cuda")]
use storage::Storage;
#[cfg(feature = "cuda")]
use {cuda::ops as gpu, cuda::ops::Side};

/// Checks that the tensor operands of `op` are on one device, ignoring 0-d host arrays (Rust
/// numbers), which a device kernel takes by value.
///
/// # Errors
/// Two operands on different devices (naming both).
#[cfg(feature = "cuda")]
fn one_device<H: Handle>(op: &'static str, xs: &[&H]) -> Result<()> {
    let mut found: Option<Device> = None;
    for x in xs {
        let d = x.device();
        if d == Device::Cpu && x.rank() == 0 {
            continue;
        }
        match found {
            Some(f) if f != d => {
                return Err(Error::device(
                    op,
                    format!(
                        "operands are on different devices ({f} and {d}); move one with to_device first"
                    ),
                ))
            }
            _ => found = Some(d),
        }
    }
    Ok(())
}

/// The GPU elements of `x` (a device array is never pending, so nothing is computed).
#[cfg(feature = "cuda")]
fn gpu_view<'a, H: Handle>(op: &'static str, x: &'a H) -> Result<gpu::View<'a>> {
    match x.storage()? {
        Storage::Cuda(s) => Ok((s, x.layout())),
        Storage::Cpu(_) => Err(Error::device(op, "expected an operand on a GPU")),
    }
}

/// `x` as one side of an elementwise device kernel broadcast to `shape`.
#[cfg(feature = "cuda")]
fn side<'a, H: Handle>(op: &'static str, x: &'a H, shape: &[usize]) -> Result<Side<'a>> {
    match x.storage()? {
        Storage::Cuda(s) => Ok(Side::Gpu(s, x.layout().broadcast_to(shape))),
        Storage::Cpu(c) if x.rank() == 0 => Ok(Side::Host(c, x.layout().offset)),
        Storage::Cpu(_) => Err(Error::device(
            op,
            "expected an operand on a GPU, or a number",
        )),
    }
}

#[cfg(feature = "cuda")]
fn wrap<H: Handle>(s: cuda::CudaStorage, shape: &[usize]) -> H {
    H::from_storage(Storage::Cuda(s), shape)
}

/// One fusion group of a compiled graph (`gradtape::function`) over `n` elements as one
/// device kernel: each instruction `(CUDA expression, arity, operands)`, the registers
/// `outputs` returned as new handles of `shape`. `None` when the group is not for one device
/// kernel: the leaves on the host (the host pass runs in the front end), on two devices, or a
/// leaf not contiguous from the start of its storage.
pub(crate) fn fused_group<H: Handle>(
    insts: &[(&'static str, usize, [fusion::Operand; 2])],
    leaves: &[&H],
    n: usize,
    outputs: &[usize],
    shape: &[usize],
) -> Result<Option<Vec<H>>> {
    #[cfg(feature = "cuda")]
    {
        use cuda::kernels::{c_type, note, LeafKind};
        use cuda::ops::FusedLeaf;
        let kind = |l: &&H| match (l.numel() == 1, l.on_host()) {
            (true, true) => LeafKind::Value,
            (true, false) => LeafKind::Element,
            _ => LeafKind::Array,
        };
        if let Some(l) = leaves.first() {
            note(|| {
                let kinds: Vec<LeafKind> = leaves.iter().map(kind).collect();
                cuda::kernels::fused(&slots(insts), &kinds, outputs, c_type(l.dtype()))
            });
        }
        // one device, the host giving only numbers
        let device = leaves
            .iter()
            .map(|l| l.device())
            .find(|&d| d != Device::Cpu);
        let Some(device) = device else {
            return Ok(None);
        };
        let mut args = Vec::with_capacity(leaves.len());
        for l in leaves {
            let (lay, k) = (l.layout(), kind(l));
            let laid_out = lay.offset == 0
                && (k != LeafKind::Array || (l.numel() == n && lay.is_contiguous()));
            if k != LeafKind::Value && (l.device() != device || !laid_out) {
                return Ok(None);
            }
            args.push(match l.storage()? {
                Storage::Cuda(s) => FusedLeaf::Gpu(s, k),
                Storage::Cpu(c) => FusedLeaf::Host(c, lay.offset),
            });
        }
        let dtype = leaves[0].dtype();
        let ys = gpu::fused(&args, &slots(insts), outputs, dtype, n)?;
        Ok(Some(ys.into_iter().map(|y| wrap(y, shape)).collect()))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (insts, leaves, n, outputs, shape);
        Ok(None)
    }
}

/// A fusion program's instructions as a device kernel's statements.
#[cfg(feature = "cuda")]
fn slots(
    insts: &[(&'static str, usize, [fusion::Operand; 2])],
) -> Vec<(&'static str, usize, [cuda::kernels::Slot; 2])> {
    use cuda::kernels::Slot;
    let slot = |o: fusion::Operand| match o {
        fusion::Operand::Leaf(j) => Slot::Leaf(j),
        fusion::Operand::Reg(r) => Slot::Reg(r),
    };
    insts
        .iter()
        .map(|&(e, arity, [a, b])| (e, arity, [slot(a), slot(b)]))
        .collect()
}

/// Notes the device kernel of a fusion group that runs on the host, while kernel sources are
/// recorded (the NVRTC test compiles every kernel the ops and compiled graphs generate): the
/// kernel it would be with its leaves on a GPU and its numbers passed by value.
pub(crate) fn note_fused_group<H: Handle>(
    insts: &[(&'static str, usize, [fusion::Operand; 2])],
    outputs_and_leaves: impl FnOnce() -> Option<(Vec<usize>, Vec<H>)>,
) {
    #[cfg(feature = "cuda")]
    cuda::kernels::note(|| {
        use cuda::kernels::LeafKind;
        let (outputs, leaves) = outputs_and_leaves().unwrap_or_default();
        let kinds: Vec<LeafKind> = leaves
            .iter()
            .map(|l| match l.numel() {
                1 => LeafKind::Value,
                _ => LeafKind::Array,
            })
            .collect();
        let dtype = leaves.first().map_or(DType::F32, |l| l.dtype());
        cuda::kernels::fused(
            &slots(insts),
            &kinds,
            &outputs,
            cuda::kernels::c_type(dtype),
        )
    });
    #[cfg(not(feature = "cuda"))]
    let _ = (insts, outputs_and_leaves);
}

/// Whether the CUDA C of the kernels is being recorded (`cuda::record_kernel_sources`): a
/// compiled step then takes the path that notes its fused kernels.
pub(crate) fn noting_kernels() -> bool {
    #[cfg(feature = "cuda")]
    return cuda::kernels::recording();
    #[cfg(not(feature = "cuda"))]
    false
}

/// `expr(v)` over `x` on its device, giving `out` elements; `None` on the host (the host
/// kernels run in the front end's op).
#[inline]
pub(crate) fn unary<H: Handle>(
    op: &'static str,
    x: &H,
    expr: &str,
    out: DType,
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        use cuda::kernels::{c_type, note};
        note(|| cuda::kernels::unary(op, expr, c_type(x.dtype()), c_type(out)));
        if !x.on_host() {
            let y = gpu::unary(op, gpu_view(op, x)?, expr, out)?;
            return Ok(Some(wrap(y, x.shape())));
        }
    }
    let _ = (op, x, expr, out);
    Ok(None)
}

/// `expr(p, q)` over two operands of one dtype broadcast together, when either is on a
/// device (a 0-d host array beside it is passed by value); `None` when both are on the host.
///
/// # Errors
/// Operands on two different devices (naming both).
#[inline]
pub(crate) fn binary<H: Handle>(
    op: &'static str,
    a: &H,
    b: &H,
    expr: &str,
    out: DType,
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        use cuda::kernels::{c_type, note};
        note(|| cuda::kernels::binary(op, expr, c_type(a.dtype()), c_type(out)));
        if !(a.on_host() && b.on_host()) {
            one_device(op, &[a, b])?;
            let shape = crate::shape::broadcast_shapes(op, a.shape(), b.shape())?;
            let (sa, sb) = (side(op, a, &shape)?, side(op, b, &shape)?);
            let count = crate::shape::numel(&shape);
            let y = gpu::binary(op, sa, sb, a.dtype(), count, expr, out)?;
            return Ok(Some(wrap(y, &shape)));
        }
    }
    let _ = (op, a, b, expr, out);
    Ok(None)
}

/// `x` reduced over `axes` (sorted, distinct) by `combine(a, b)` from `init`, with result
/// shape `out_shape`, when `x` is on a device.
#[inline]
pub(crate) fn reduce<H: Handle>(
    op: &'static str,
    x: &H,
    axes: &[usize],
    init: f64,
    combine: &str,
    out_shape: &[usize],
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        use cuda::kernels::{c_literal, c_type, note, reduce_rows};
        note(|| reduce_rows(op, &c_literal(init, x.dtype()), combine, c_type(x.dtype())));
        if !x.on_host() {
            let y = gpu::reduce(op, gpu_view(op, x)?, axes, init, combine)?;
            return Ok(Some(wrap(y, out_shape)));
        }
    }
    let _ = (op, x, axes, init, combine, out_shape);
    Ok(None)
}

/// `a · b` (shapes checked, result `shape`), when either is on a device.
#[inline]
pub(crate) fn matmul<H: Handle>(
    a: &H,
    b: &H,
    dims: &MatmulDims,
    shape: &[usize],
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    if !(a.on_host() && b.on_host()) {
        let op = "matmul";
        one_device(op, &[a, b])?;
        let y = gpu::matmul(gpu_view(op, a)?, gpu_view(op, b)?, dims)?;
        return Ok(Some(wrap(y, shape)));
    }
    let _ = (a, b, dims, shape);
    Ok(None)
}

/// `condition ? a : b` broadcast to `shape`, when any operand is on a device; `a` or `b` may
/// be a 0-d host array.
#[inline]
pub(crate) fn select<H: Handle>(c: &H, a: &H, b: &H, shape: &[usize]) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        let op = "select";
        let host_scalar = |t: &H| t.on_host() && t.rank() == 0;
        let (ha, hb) = (host_scalar(a), host_scalar(b));
        cuda::kernels::note(|| cuda::kernels::select(cuda::kernels::c_type(a.dtype()), ha, hb));
        if !(c.on_host() && a.on_host() && b.on_host()) {
            one_device(op, &[c, a, b])?;
            let (sc, lc) = gpu_view(op, c)?;
            let (sa, sb) = (side(op, a, shape)?, side(op, b, shape)?);
            let count = crate::shape::numel(shape);
            let y = gpu::select((sc, lc.broadcast_to(shape)), sa, sb, a.dtype(), count)?;
            return Ok(Some(wrap(y, shape)));
        }
    }
    let _ = (c, a, b, shape);
    Ok(None)
}

/// `[0, 1, ..., len-1]` of `dtype` on `device` (which is not the host).
pub(crate) fn iota<H: Handle>(device: Device, len: usize, dtype: DType) -> Result<H> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(n) = device {
        return Ok(wrap(gpu::iota(n, len, dtype)?, &[len]));
    }
    let _ = (len, dtype);
    Err(Error::device(
        "iota",
        format!("{device} has no device kernel"),
    ))
}

/// `parts` joined along `ax` into `shape`, when they are on a device (all on the same one).
pub(crate) fn concat<H: Handle>(parts: &[&H], ax: usize, shape: &[usize]) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        let op = "concat";
        if let Some(p) = parts.first() {
            cuda::kernels::note(|| cuda::kernels::copy_into(cuda::kernels::c_type(p.dtype())));
        }
        if !parts.iter().all(|p| p.on_host()) {
            one_device(op, parts)?;
            let views = parts
                .iter()
                .map(|p| gpu_view(op, *p))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Some(wrap(gpu::concat(&views, ax, shape)?, shape)));
        }
    }
    let _ = (parts, ax, shape);
    Ok(None)
}

/// Zeros of `shape` with `x` written into their view `target`, when `x` is on a device.
pub(crate) fn unslice<H: Handle>(x: &H, shape: &[usize], target: &Layout) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        let op = "unslice";
        cuda::kernels::note(|| cuda::kernels::copy_into(cuda::kernels::c_type(x.dtype())));
        if !x.on_host() {
            return Ok(Some(wrap(
                gpu::unslice(gpu_view(op, x)?, shape, target)?,
                shape,
            )));
        }
    }
    let _ = (x, shape, target);
    Ok(None)
}

/// `p` gathered along `ax` by `idx` (checked) into `shape`, when `p` is on a device.
pub(crate) fn gather<H: Handle>(
    p: &H,
    idx: &[i64],
    ax: usize,
    shape: &[usize],
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        cuda::kernels::note(|| cuda::kernels::gather(cuda::kernels::c_type(p.dtype())));
        if !p.on_host() {
            let y = gpu::gather(gpu_view("gather", p)?, idx, ax, shape)?;
            return Ok(Some(wrap(y, shape)));
        }
    }
    let _ = (p, idx, ax, shape);
    Ok(None)
}

/// The adjoint of [`gather`]: `u` added into zeros of `shape` at `idx` along `ax` (of size
/// `dim`), when `u` is on a device.
pub(crate) fn scatter_add<H: Handle>(
    u: &H,
    idx: &[i64],
    ax: usize,
    dim: usize,
    shape: &[usize],
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    {
        cuda::kernels::note(|| cuda::kernels::gather(cuda::kernels::c_type(u.dtype())));
        if !u.on_host() {
            let y = gpu::scatter_add(gpu_view("scatter_add", u)?, idx, ax, dim, shape)?;
            return Ok(Some(wrap(y, shape)));
        }
    }
    let _ = (u, idx, ax, dim, shape);
    Ok(None)
}

/// `x` laid out contiguously on its device; `None` on the host.
pub(crate) fn contiguous<H: Handle>(x: &H) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    if !x.on_host() {
        let (s, l) = gpu_view("contiguous", x)?;
        return Ok(Some(wrap(gpu::contiguous(s, l)?, x.shape())));
    }
    let _ = x;
    Ok(None)
}

/// `shape` filled with `value` on `device`, when that is not the host.
pub(crate) fn full<H: Handle>(
    device: Device,
    shape: &[usize],
    value: f64,
    dtype: DType,
) -> Result<Option<H>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(n) = device {
        let count = crate::shape::numel(shape);
        return Ok(Some(wrap(gpu::full(n, count, value, dtype)?, shape)));
    }
    let _ = (shape, value, dtype);
    device.check()?;
    Ok(None)
}

/// The elements of `x` copied to `device` (host↔GPU, or between GPUs through the host).
///
/// # Errors
/// When `device` cannot be used ([`Device::check`]).
pub(crate) fn to_device<H: Handle>(x: &H, device: Device) -> Result<H> {
    device.check()?;
    #[cfg(feature = "cuda")]
    match (x.device(), device) {
        (Device::Cpu, Device::Cpu) => {}
        (a, b) if a == b => {}
        (Device::Cpu, Device::Cuda(n)) => {
            let host = x.storage()?.cpu()?;
            return Ok(wrap(gpu::upload(n, host, x.layout())?, x.shape()));
        }
        (Device::Cuda(_), Device::Cpu) => {
            let (s, l) = gpu_view("to_device", x)?;
            let host = Storage::new(gpu::download(s, l)?);
            return Ok(H::from_storage(host, x.shape()));
        }
        (Device::Cuda(_), Device::Cuda(_)) => {
            // Between two GPUs: through the host for now (peer copies are a later step).
            return to_device(&to_device(x, Device::Cpu)?, device);
        }
    }
    Ok(x.clone())
}

/// What each device can do in this build: the availability checks ask the device backends.
impl Device {
    /// `Ok` when tensors can be made on this device; otherwise the reason, naming what is
    /// missing: a build without the `cuda` feature, no NVIDIA driver (`libcuda`), no GPU of that
    /// ordinal, or no NVRTC or cuBLAS library on the library path.
    ///
    /// ```
    /// use gradtape::Device;
    /// assert!(Device::Cpu.check().is_ok());
    /// if let Err(e) = Device::Cuda(0).check() {
    ///     println!("no GPU here: {e}");
    /// }
    /// ```
    ///
    /// # Errors
    /// [`Error::Device`] with the missing piece.
    pub fn check(&self) -> Result<()> {
        match *self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => cuda::gpu(n).map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::device(
                "device",
                format!(
                    "cuda:{n}: gradtape was built without its `cuda` feature (build with \
                     `--features gradtape/cuda`, or `--features cuda` for the CLI)"
                ),
            )),
        }
    }

    /// Whether [`Device::check`] passes.
    pub fn is_available(&self) -> bool {
        self.check().is_ok()
    }

    /// The number of CUDA GPUs the driver reports; 0 when there is no driver (or no `cuda`
    /// feature).
    ///
    /// ```
    /// use gradtape::Device;
    /// let n = Device::cuda_device_count();
    /// if n == 0 {
    ///     assert!(!Device::Cuda(0).is_available());
    /// }
    /// assert!(!Device::Cuda(n).is_available()); // one past the last GPU
    /// ```
    pub fn cuda_device_count() -> usize {
        #[cfg(feature = "cuda")]
        {
            cuda::device_count().unwrap_or(0)
        }
        #[cfg(not(feature = "cuda"))]
        {
            0
        }
    }

    /// The first GPU when one can be used, the CPU otherwise (PyTorch's
    /// `"cuda" if torch.cuda.is_available() else "cpu"`).
    pub fn cuda_if_available() -> Device {
        if Device::Cuda(0).is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }

    /// The GPU's name (`"NVIDIA H200"`), or a description of the CPU device.
    ///
    /// # Errors
    /// When the device cannot be used ([`Device::check`]).
    pub fn name(&self) -> Result<String> {
        match *self {
            Device::Cpu => Ok(format!(
                "CPU ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => Ok(cuda::gpu(n)?.name.clone()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => self.check().map(|_| String::new()),
        }
    }
}

/// Waits until every device has finished the work queued so far (PyTorch's
/// `torch.cuda.synchronize()`), for timing: GPU ops return when queued, not when done. On the
/// host, and in a build without the `cuda` feature, there is nothing to wait for. Reading a
/// value back waits by itself.
///
/// # Errors
/// When a GPU reports an error from earlier work (a failed kernel shows up here).
pub fn synchronize() -> Result<()> {
    #[cfg(feature = "cuda")]
    cuda::synchronize()?;
    Ok(())
}
