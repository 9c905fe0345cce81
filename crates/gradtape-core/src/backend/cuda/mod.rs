//! The CUDA backend: GPU memory, the kernels' launches, and cuBLAS.
//!
//! Nothing CUDA is linked at build time: the `cudarc` crate opens the driver (`libcuda`), NVRTC
//! and cuBLAS when a GPU is first asked for, so gradtape builds and runs its CPU path on any
//! machine. Asking for a GPU says which of them is missing when one is.
//!
//! Each GPU gets one context and one stream; every kernel, copy and cuBLAS call of gradtape is
//! queued on that stream with no synchronization, so reading a value back to the host is the
//! only wait. Memory comes from the driver's stream-ordered pool (`cuMemAllocAsync`), which
//! keeps freed blocks for the next allocation of the step, as PyTorch's caching allocator does.
//!
//! The kernels are CUDA C generated from the same per-op tables as the CPU kernels (an op's
//! CUDA expression sits beside its Rust element function), compiled by NVRTC once per source
//! and GPU architecture, and cached in memory and on disk.

pub(crate) mod capture;
pub(crate) mod kernels;
pub(crate) mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr};

use crate::backend::device::{counter, Device, ALL_GPUS};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};

/// One GPU, ready for work: its context, stream, cuBLAS handle and compiled kernels.
pub(crate) struct Gpu {
    pub ordinal: usize,
    pub name: String,
    /// NVRTC's `--gpu-architecture`, from the compute capability (`compute_90` on an H100).
    pub arch: String,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// The stream and cuBLAS handle of CUDA graph recordings, made on the first one.
    lane: OnceLock<capture::Lane>,
    // Kept alive for as long as the stream and allocations are.
    _ctx: Arc<CudaContext>,
}

static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();

fn missing(device: &str, piece: &str, what: &str) -> Error {
    Error::device(
        "device",
        format!(
            "{device}: no {piece} could be loaded ({what}); gradtape looks for it on the \
             library path (LD_LIBRARY_PATH) at run time"
        ),
    )
}

/// The number of GPUs the driver reports.
pub(crate) fn device_count() -> Result<usize> {
    count_for("cuda")
}

fn count_for(device: &str) -> Result<usize> {
    // SAFETY: only tries to open the driver library; nothing is called in it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(missing(
            device,
            "NVIDIA driver",
            "libcuda.so: is this a machine with an NVIDIA GPU and its driver?",
        ));
    }
    let n = CudaContext::device_count()
        .map_err(|e| Error::device("device", format!("the CUDA driver failed to start: {e}")))?;
    Ok(n.max(0) as usize)
}

/// The GPU of ordinal `n`, set up on first use (context, stream, cuBLAS), or why it cannot be.
pub(crate) fn gpu(n: usize) -> Result<Arc<Gpu>> {
    let table = GPUS.get_or_init(Default::default);
    let mut gpus = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = gpus.get(&n) {
        return Ok(g.clone());
    }
    let count = count_for(&format!("cuda:{n}"))?;
    if n >= count {
        return Err(Error::device(
            "device",
            match count {
                0 => format!("cuda:{n}: the NVIDIA driver is there but reports no GPU"),
                c => format!(
                    "cuda:{n}: the driver reports {c} GPU(s), cuda:0 to cuda:{}",
                    c - 1
                ),
            },
        ));
    }
    // SAFETY: as above, only opening the libraries.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(missing(
            &format!("cuda:{n}"),
            "NVRTC",
            "libnvrtc.so, from the CUDA toolkit's lib64 folder; gradtape compiles its kernels with it",
        ));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(missing(
            &format!("cuda:{n}"),
            "cuBLAS",
            "libcublas.so, from the CUDA toolkit's lib64 folder; matrix products use it",
        ));
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::device("device", format!("cuda:{n}: {what} failed: {e}"))
    };
    let ctx = CudaContext::new(n).map_err(|e| fail("creating a context", &e))?;
    // SAFETY: every allocation, kernel, copy and cuBLAS call of gradtape on this GPU goes to
    // the one stream made below, so stream order alone keeps uses apart; the per-slice events
    // cudarc records otherwise (for several streams) would only add work to every launch.
    unsafe { ctx.disable_event_tracking() };
    let name = ctx.name().map_err(|e| fail("reading the name", &e))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| fail("reading the compute capability", &e))?;
    let stream = ctx
        .new_stream()
        .map_err(|e| fail("creating a stream", &e))?;
    let blas = CudaBlas::new(stream.clone()).map_err(|e| fail("starting cuBLAS", &e))?;
    let g = Arc::new(Gpu {
        ordinal: n,
        name,
        arch: format!("compute_{major}{minor}"),
        stream,
        blas,
        functions: Mutex::new(HashMap::new()),
        lane: OnceLock::new(),
        _ctx: ctx,
    });
    apply_tf32(&g);
    gpus.insert(n, g.clone());
    Ok(g)
}

impl Gpu {
    /// The stream this thread queues its work on: the recording lane's while it records a
    /// CUDA graph on this GPU, else the main stream.
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        match self.recording_lane() {
            Some(lane) => &lane.stream,
            None => &self.stream,
        }
    }

    /// The cuBLAS handle of [`Gpu::stream`].
    pub(crate) fn blas(&self) -> &CudaBlas {
        match self.recording_lane() {
            Some(lane) => &lane.blas,
            None => &self.blas,
        }
    }

    fn recording_lane(&self) -> Option<&capture::Lane> {
        self.lane
            .get()
            .filter(|_| capture::recording_on(self.ordinal))
    }

    /// The recording lane, made on first use.
    fn lane(&self) -> Result<&capture::Lane> {
        if let Some(lane) = self.lane.get() {
            return Ok(lane);
        }
        let lane = capture::Lane::new(self)?;
        apply_tf32_to(&lane.blas);
        Ok(self.lane.get_or_init(|| lane))
    }

    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> Error {
        Error::device(op, format!("cuda:{}: {e}", self.ordinal))
    }

    /// The kernel `name` from `source`, compiled on first use (see [`kernels::compile`]).
    pub(crate) fn function(
        &self,
        op: &'static str,
        source: &str,
        name: &str,
    ) -> Result<CudaFunction> {
        let key = format!("{name}\u{0}{source}");
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fns.get(&key) {
            return Ok(f.clone());
        }
        let ptx = kernels::compile(op, source, &self.arch)?;
        let module = self
            ._ctx
            .load_module(ptx)
            .map_err(|e| self.err(op, format!("loading the kernel {name}: {e}")))?;
        let f = module
            .load_function(name)
            .map_err(|e| self.err(op, format!("finding the kernel {name}: {e}")))?;
        fns.insert(key, f.clone());
        Ok(f)
    }
}

/// Waits until every GPU has finished the work queued so far (PyTorch's
/// `torch.cuda.synchronize()`): for timing; reading a value back waits by itself.
///
/// # Errors
/// When a GPU reports an error from earlier work (a failed kernel shows up here).
pub fn synchronize() -> Result<()> {
    let Some(table) = GPUS.get() else {
        return Ok(());
    };
    let gpus: Vec<Arc<Gpu>> = table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    for g in gpus {
        g.stream
            .synchronize()
            .map_err(|e| g.err("synchronize", e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TF32

static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets cuBLAS compute float32 matrix products with TF32 tensor cores (about 8× faster on an
/// H100, with 10-bit mantissas in the products). Off by default, as in PyTorch
/// (`torch.backends.cuda.matmul.allow_tf32`), because it changes the numbers.
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, Ordering::Relaxed);
    if let Some(table) = GPUS.get() {
        for g in table.lock().unwrap_or_else(|e| e.into_inner()).values() {
            apply_tf32(g);
        }
    }
}

/// Whether [`set_allow_tf32`] allowed TF32.
pub fn allow_tf32() -> bool {
    ALLOW_TF32.load(Ordering::Relaxed)
}

fn apply_tf32(g: &Gpu) {
    apply_tf32_to(&g.blas);
    if let Some(lane) = g.lane.get() {
        apply_tf32_to(&lane.blas);
    }
}

fn apply_tf32_to(blas: &CudaBlas) {
    use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode};
    let mode = if allow_tf32() {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is alive (owned by `g`); setting the math mode has no other effect.
    // A failure leaves the previous mode, which is the default unless TF32 was allowed before.
    let _ = unsafe { cublasSetMathMode(*blas.handle(), mode) };
}

// ---------------------------------------------------------------------------------------------
// Memory

static COPIES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of tensor data alive on all GPUs now (one GPU's: `memory::live_bytes_on`).
pub fn live_bytes() -> usize {
    ALL_GPUS.live()
}

/// The most bytes of tensor data alive on the GPUs at once since the start or the last
/// [`reset_peak_bytes`] (PyTorch's `torch.cuda.max_memory_allocated`).
pub fn peak_bytes() -> usize {
    ALL_GPUS.peak()
}

/// Starts [`peak_bytes`] again from the bytes alive now.
pub fn reset_peak_bytes() {
    ALL_GPUS.reset_peak();
}

/// Copies between host and GPU memory made so far, either way (a training step on the GPU
/// should make one: reading the loss).
pub fn host_device_copies() -> usize {
    COPIES.load(Ordering::Relaxed)
}

/// Turns on (or off) the recording of the CUDA C that ops generate, also while they run on
/// the CPU: with [`recorded_kernel_sources`] and [`compile_kernel`], tests compile every
/// kernel the ops would launch on machines that have NVRTC but no GPU.
#[doc(hidden)]
pub fn record_kernel_sources(on: bool) {
    kernels::set_recording(on);
}

/// The kernels recorded so far, as (name, CUDA C source), plus the fixed ones (copy, fill).
#[doc(hidden)]
pub fn recorded_kernel_sources() -> Vec<(String, String)> {
    let mut all = kernels::recorded();
    for dtype in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        let t = kernels::c_type(dtype);
        all.extend([
            kernels::copy(t),
            kernels::fill(t),
            kernels::iota(t),
            kernels::copy_into(t),
        ]);
        for (a, b) in [(false, false), (true, false), (false, true), (true, true)] {
            all.push(kernels::select(t, a, b));
        }
        if dtype != DType::Bool {
            all.push(kernels::gather(t));
        }
    }
    all.sort();
    all.dedup();
    all
}

/// `source` compiled by NVRTC for `arch` (`compute_90`), with no cache: the PTX, or NVRTC's
/// log in the error. Needs libnvrtc only (no driver, no GPU).
///
/// # Errors
/// No NVRTC library, or a source NVRTC rejects.
#[doc(hidden)]
pub fn compile_kernel(source: &str, arch: &str) -> Result<String> {
    Ok(kernels::compile_uncached("compile_kernel", source, arch)?.to_src())
}

/// GPU memory of one dtype (bool as bytes).
#[derive(Debug)]
pub(crate) enum CudaData {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
    I64(CudaSlice<i64>),
    Bool(CudaSlice<bool>),
}

/// A tensor's elements on one GPU.
pub(crate) struct CudaStorage {
    pub data: CudaData,
    pub gpu: Arc<Gpu>,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, {:?})",
            self.gpu.ordinal,
            self.dtype()
        )
    }
}

impl CudaStorage {
    pub(crate) fn new(data: CudaData, gpu: Arc<Gpu>) -> Self {
        let s = CudaStorage { data, gpu };
        counter(Device::Cuda(s.ordinal())).add(s.bytes());
        ALL_GPUS.add(s.bytes());
        s
    }
    pub(crate) fn ordinal(&self) -> usize {
        self.gpu.ordinal
    }
    pub(crate) fn dtype(&self) -> DType {
        match self.data {
            CudaData::F32(_) => DType::F32,
            CudaData::F64(_) => DType::F64,
            CudaData::I64(_) => DType::I64,
            CudaData::Bool(_) => DType::Bool,
        }
    }
    fn bytes(&self) -> usize {
        match &self.data {
            CudaData::F32(s) => s.num_bytes(),
            CudaData::F64(s) => s.num_bytes(),
            CudaData::I64(s) => s.num_bytes(),
            CudaData::Bool(s) => s.num_bytes(),
        }
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        counter(Device::Cuda(self.ordinal())).sub(self.bytes());
        ALL_GPUS.sub(self.bytes());
    }
}

/// The error of a host kernel given GPU memory.
pub(crate) fn no_kernel(s: &CudaStorage) -> Error {
    Error::device(
        "data",
        format!(
            "a {} tensor on cuda:{} reached an op that has only a CPU kernel so far; move it \
             with to_device(Device::Cpu) first (gradtape never copies silently)",
            s.dtype(),
            s.ordinal()
        ),
    )
}

/// Element types the GPU kernels handle, with their CUDA C names.
pub(crate) trait CudaElement: Element + DeviceRepr {
    const C_TYPE: &'static str;
    fn wrap(s: CudaSlice<Self>) -> CudaData;
    fn unwrap(d: &CudaData) -> Option<&CudaSlice<Self>>;
}

macro_rules! cuda_element {
    ($t:ty, $c:literal, $v:ident) => {
        impl CudaElement for $t {
            const C_TYPE: &'static str = $c;
            fn wrap(s: CudaSlice<Self>) -> CudaData {
                CudaData::$v(s)
            }
            fn unwrap(d: &CudaData) -> Option<&CudaSlice<Self>> {
                match d {
                    CudaData::$v(s) => Some(s),
                    _ => None,
                }
            }
        }
    };
}
cuda_element!(f32, "float", F32);
cuda_element!(f64, "double", F64);
cuda_element!(i64, "long long", I64);
cuda_element!(bool, "bool", Bool);

/// Host elements copied to the GPU (one of the counted host↔device copies).
pub(crate) fn upload<T: CudaElement>(g: &Arc<Gpu>, host: &[T]) -> Result<CudaStorage> {
    Ok(CudaStorage::new(T::wrap(upload_slice(g, host)?), g.clone()))
}

/// [`upload`] as a bare slice, for a kernel's own arguments (gather's indices).
pub(crate) fn upload_slice<T: CudaElement>(g: &Arc<Gpu>, host: &[T]) -> Result<CudaSlice<T>> {
    capture::refuse_host_copy("to_device")?;
    if host.is_empty() {
        return alloc::<T>(g, "to_device", 0); // nothing to copy (one unread element)
    }
    COPIES.fetch_add(1, Ordering::Relaxed);
    g.stream.clone_htod(host).map_err(|e| {
        g.err(
            "to_device",
            format!(
                "copying {} bytes to the GPU: {e}",
                std::mem::size_of_val(host)
            ),
        )
    })
}

/// GPU elements copied back to the host; waits for the work queued before it.
pub(crate) fn download<T: CudaElement>(s: &CudaStorage) -> Result<Vec<T>> {
    capture::refuse_host_copy("to_device")?;
    COPIES.fetch_add(1, Ordering::Relaxed);
    let slice = T::unwrap(&s.data).ok_or_else(|| {
        Error::dtype(
            "to_device",
            format!("storage is {}, not {}", s.dtype(), T::DTYPE),
        )
    })?;
    s.gpu.stream.clone_dtoh(slice).map_err(|e| {
        s.gpu
            .err("to_device", format!("copying back to the host: {e}"))
    })
}

/// `n` uninitialized elements on the GPU, for a kernel that writes every one.
pub(crate) fn alloc<T: CudaElement>(
    g: &Arc<Gpu>,
    op: &'static str,
    n: usize,
) -> Result<CudaSlice<T>> {
    // SAFETY: every caller launches a kernel that writes all `n` elements before any read.
    unsafe { g.stream().alloc::<T>(n.max(1)) }.map_err(|e| {
        Error::resource(
            op,
            format!(
                "cuda:{}: cannot allocate {n} elements of {} ({} bytes): {e}",
                g.ordinal,
                T::DTYPE,
                n as u128 * std::mem::size_of::<T>() as u128
            ),
        )
    })
}
