//! A step's GPU work recorded once as a CUDA graph and launched with one call
//! (`Function::cuda_graph`): PyTorch's `torch.cuda.graph`, done for a traced step.
//!
//! A recording runs on a stream of its own per GPU (the *lane*), so that other threads'
//! kernels, queued on the GPU's main stream meanwhile, never land in the graph; the thread
//! that records sends its work there (see [`super::Gpu::stream`]) in the driver's thread-local
//! capture mode, so a call of this thread that would wait for the GPU fails the recording
//! instead of being recorded. Copies between host and GPU are refused outright while this
//! thread records ([`refuse_host_copy`]): a recorded upload would read a host buffer that is
//! gone by the next launch.
//!
//! Memory allocated while recording comes from `cuMemAllocAsync` on the lane: the driver makes
//! those allocations the graph's own (allocation nodes), and the front end frees all of them
//! before the recording ends, so each launch allocates and frees its intermediate values
//! inside the graph. The graph is launched on the main stream, after the work queued before
//! it and before the work queued after it.
//!
//! Written without a GPU to run it on (the sessions that built it had none): it builds and
//! is linted in CI; `tests/cuda.rs` holds the checks a GPU run makes first.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::{CUgraph, CUgraphExec, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{result, CudaStream, DevicePtr};

use super::{CudaData, CudaStorage, Gpu};
use crate::error::{Error, Result};

/// A GPU's second stream and cuBLAS handle, for recordings only.
pub(crate) struct Lane {
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    /// One recording at a time per GPU.
    busy: AtomicBool,
}

impl Lane {
    pub(super) fn new(g: &Gpu) -> Result<Lane> {
        let stream = g
            ._ctx
            .new_stream()
            .map_err(|e| g.err("cuda_graph", format!("creating the recording stream: {e}")))?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| g.err("cuda_graph", format!("starting cuBLAS for recordings: {e}")))?;
        // cuBLAS sets a handle up on its first product, which a capture could not hold: one
        // 1×1 product now, waited for
        let warm = || -> std::result::Result<(), Box<dyn std::fmt::Display>> {
            let a = stream.clone_htod(&[1.0f32]).map_err(|e| Box::new(e) as _)?;
            let mut c = stream.alloc_zeros::<f32>(1).map_err(|e| Box::new(e) as _)?;
            let cfg = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_N,
                transb: cublasOperation_t::CUBLAS_OP_N,
                m: 1,
                n: 1,
                k: 1,
                alpha: 1.0f32,
                lda: 1,
                ldb: 1,
                beta: 0.0f32,
                ldc: 1,
            };
            // SAFETY: 1×1 matrices, each a one-element buffer on this GPU.
            unsafe { blas.gemm(cfg, &a, &a, &mut c) }.map_err(|e| Box::new(e) as _)?;
            stream.synchronize().map_err(|e| Box::new(e) as _)
        };
        warm().map_err(|e| g.err("cuda_graph", format!("warming cuBLAS for recordings: {e}")))?;
        Ok(Lane {
            stream,
            blas,
            busy: AtomicBool::new(false),
        })
    }
}

thread_local! {
    /// The GPU this thread records on.
    static RECORDING: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Whether this thread records on GPU `ordinal` now.
pub(super) fn recording_on(ordinal: usize) -> bool {
    RECORDING.get() == Some(ordinal)
}

/// Whether this thread is recording a CUDA graph now.
pub(crate) fn recording() -> bool {
    RECORDING.get().is_some()
}

/// The error for a copy between host and GPU while recording (the graph would keep the host
/// address and read freed memory at its next launch).
pub(super) fn refuse_host_copy(op: &'static str) -> Result<()> {
    match recording() {
        true => Err(Error::device(
            op,
            "a copy between host and GPU cannot be part of a CUDA graph; the step runs \
             kernel by kernel",
        )),
        false => Ok(()),
    }
}

/// This thread's recording of its GPU work on one GPU, from [`Recording::begin`] to
/// [`Recording::finish`]; dropped unfinished (an op failed), it ends the capture and keeps
/// nothing.
pub(crate) struct Recording {
    gpu: Arc<Gpu>,
    ended: bool,
}

impl Recording {
    /// Starts recording on GPU `ordinal`; `None` when this thread is already recording or
    /// another thread records on that GPU now.
    pub(crate) fn begin(ordinal: usize) -> Result<Option<Recording>> {
        if recording() {
            return Ok(None);
        }
        let gpu = super::gpu(ordinal)?;
        if gpu.lane()?.busy.swap(true, Ordering::Acquire) {
            return Ok(None);
        }
        let rec = Recording {
            gpu,
            ended: true, // nothing to end until the capture has begun
        };
        let lane = rec.gpu.lane()?;
        rec.gpu
            ._ctx
            .bind_to_thread()
            .map_err(|e| rec.gpu.err("cuda_graph", e))?;
        // SAFETY: the lane's stream is alive (held by `rec`) and not capturing (`busy` was
        // clear, and every recording ends its capture before clearing it).
        unsafe {
            result::stream::begin_capture(
                lane.stream.cu_stream(),
                CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(|e| {
            rec.gpu
                .err("cuda_graph", format!("starting the capture: {e}"))
        })?;
        let mut rec = rec;
        rec.ended = false;
        RECORDING.set(Some(ordinal));
        Ok(Some(rec))
    }

    /// Ends the recording: the graph, instantiated, or why the driver refused it (an
    /// operation that cannot be captured happened on this thread meanwhile).
    pub(crate) fn finish(mut self) -> Result<StepGraph> {
        let graph = self.end();
        let graph = graph.map_err(|e| {
            self.gpu
                .err("cuda_graph", format!("the capture failed: {e}"))
        })?;
        if graph.is_null() {
            return Err(self.gpu.err("cuda_graph", "the capture recorded nothing"));
        }
        // SAFETY: `graph` was just made by the capture and is owned here.
        match unsafe { result::graph::instantiate(graph, CUgraphInstantiate_flags(0)) } {
            Ok(exec) => Ok(StepGraph {
                graph,
                exec,
                gpu: self.gpu.clone(),
            }),
            Err(e) => {
                // SAFETY: as above; nothing else refers to it.
                let _ = unsafe { result::graph::destroy(graph) };
                Err(self
                    .gpu
                    .err("cuda_graph", format!("instantiating the graph: {e}")))
            }
        }
    }

    /// Ends the capture (once): this thread's work goes to the main stream again.
    fn end(&mut self) -> std::result::Result<CUgraph, result::DriverError> {
        RECORDING.set(None);
        if std::mem::replace(&mut self.ended, true) {
            return Ok(std::ptr::null_mut());
        }
        let Some(lane) = self.gpu.lane.get() else {
            return Ok(std::ptr::null_mut()); // never: the capture began on it
        };
        // A failure recorded by a buffer freed during the capture would otherwise come back
        // from the next call that binds the context; the capture's own status reports it.
        let _ = self.gpu._ctx.check_err();
        // SAFETY: this thread began the capture on the lane's stream, which is alive.
        unsafe { result::stream::end_capture(lane.stream.cu_stream()) }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Ok(graph) = self.end() {
            if !graph.is_null() {
                // SAFETY: an unfinished recording's graph is owned here and never launched.
                let _ = unsafe { result::graph::destroy(graph) };
            }
        }
        let _ = self.gpu._ctx.check_err();
        if let Some(lane) = self.gpu.lane.get() {
            lane.busy.store(false, Ordering::Release);
        }
    }
}

/// A recorded, instantiated step: launched on its GPU's main stream.
pub(crate) struct StepGraph {
    graph: CUgraph,
    exec: CUgraphExec,
    gpu: Arc<Gpu>,
}

// SAFETY: the handles are the driver's, usable from any thread with the context bound (each
// call binds it); the front end keeps a step graph behind a mutex, so no two threads use one
// at once (the driver does not synchronize calls on one graph).
unsafe impl Send for StepGraph {}

impl StepGraph {
    /// Queues one run of the graph on the main stream.
    pub(crate) fn launch(&self) -> Result<()> {
        let g = &self.gpu;
        g._ctx
            .bind_to_thread()
            .map_err(|e| g.err("cuda_graph", e))?;
        // SAFETY: `exec` is alive (owned here) and the main stream outlives the GPU's handle.
        unsafe { result::graph::launch(self.exec, g.stream.cu_stream()) }
            .map_err(|e| g.err("cuda_graph", format!("launching the graph: {e}")))
    }
}

impl Drop for StepGraph {
    fn drop(&mut self) {
        let _ = self.gpu._ctx.bind_to_thread();
        // SAFETY: both are owned here; a launch still running finishes first (the driver
        // frees an executable graph in flight when its run completes).
        unsafe {
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
}

/// The device address of the first element, and the bytes, of `s`.
pub(crate) fn address(s: &CudaStorage) -> (u64, usize) {
    let stream = &s.gpu.stream;
    macro_rules! of {
        ($x:expr) => {{
            let (ptr, _sync) = $x.device_ptr(stream);
            (ptr, $x.num_bytes())
        }};
    }
    match &s.data {
        CudaData::F32(x) => of!(x),
        CudaData::F64(x) => of!(x),
        CudaData::I64(x) => of!(x),
        CudaData::Bool(x) => of!(x),
    }
}

/// Copies the first `bytes` of `src` over the first `bytes` of `dst`, on this thread's stream
/// (the lane while recording).
///
/// `dst` is written through a shared handle: the callers use it for buffers whose readers are
/// all ordered on the same streams (a step graph's static buffers, a variable's buffer that
/// only its variable holds), which is what keeps the write unseen by anything that should
/// not see it.
pub(crate) fn copy_bytes(src: &CudaStorage, dst: &CudaStorage, bytes: usize) -> Result<()> {
    let g = &dst.gpu;
    let ((from, have), (to, room)) = (address(src), address(dst));
    if src.gpu.ordinal != g.ordinal || bytes > have || bytes > room {
        return Err(g.err(
            "cuda_graph",
            format!("copy of {bytes} bytes from a buffer of {have} into one of {room}"),
        ));
    }
    let stream = g.stream();
    g._ctx
        .bind_to_thread()
        .map_err(|e| g.err("cuda_graph", e))?;
    // SAFETY: both ranges lie inside live allocations of this GPU (checked above), and the
    // copy is queued on the stream every reader of `dst` is ordered on.
    unsafe { result::memcpy_dtod_async(to, from, bytes, stream.cu_stream()) }
        .map_err(|e| g.err("cuda_graph", format!("copying {bytes} bytes: {e}")))
}
