//! The device side of a compiled step launched as one CUDA graph, as the front end sees it:
//! record this thread's GPU work, launch the recording, and the copies that move values into
//! and out of the buffers a recording has baked in. On the host, and without the `cuda`
//! feature, nothing records ([`begin`] answers `None`).

use crate::backend::device::Device;
use crate::backend::handle::Handle;
use crate::error::Result;
#[cfg(feature = "cuda")]
use crate::{backend::cuda, backend::storage::Storage, error::Error};

/// This thread's GPU work being recorded; dropped before [`Recording::finish`], it keeps
/// nothing.
pub(crate) struct Recording(
    #[cfg(feature = "cuda")] cuda::capture::Recording,
    #[cfg(not(feature = "cuda"))] Never,
);

/// A recorded step, launched whole by [`StepGraph::launch`].
pub(crate) struct StepGraph(
    #[cfg(feature = "cuda")] cuda::capture::StepGraph,
    #[cfg(not(feature = "cuda"))] Never,
);

/// Without the `cuda` feature there is no recording to hold.
#[cfg(not(feature = "cuda"))]
pub(crate) enum Never {}

/// Starts recording this thread's work on `device` (a GPU): `None` on the host, without the
/// `cuda` feature, or while this thread or another records on that GPU.
///
/// # Errors
/// The GPU cannot be used, or the driver refuses to start a capture.
pub(crate) fn begin(device: Device) -> Result<Option<Recording>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(n) = device {
        return Ok(cuda::capture::Recording::begin(n)?.map(Recording));
    }
    let _ = device;
    Ok(None)
}

/// Whether this thread is recording now (a compiled step called while another records runs
/// its kernels into that recording).
pub(crate) fn recording() -> bool {
    #[cfg(feature = "cuda")]
    return cuda::capture::recording();
    #[cfg(not(feature = "cuda"))]
    false
}

impl Recording {
    /// Ends the recording: the step graph, or why the driver refused it.
    pub(crate) fn finish(self) -> Result<StepGraph> {
        #[cfg(feature = "cuda")]
        return Ok(StepGraph(self.0.finish()?));
        #[cfg(not(feature = "cuda"))]
        match self.0 {}
    }
}

impl StepGraph {
    /// Queues one run of the step on its GPU's main stream.
    pub(crate) fn launch(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        return self.0.launch();
        #[cfg(not(feature = "cuda"))]
        match self.0 {}
    }
}

/// The GPU address of `x`'s elements when they are on a GPU and fill their buffer from its
/// start in row-major order (what a recording can read and write in place).
pub(crate) fn address<H: Handle>(x: &H) -> Option<u64> {
    #[cfg(feature = "cuda")]
    {
        let l = x.layout();
        if x.on_host() || l.offset != 0 || !l.is_contiguous() {
            return None;
        }
        let Ok(Storage::Cuda(s)) = x.storage() else {
            return None;
        };
        let (addr, bytes) = cuda::capture::address(s);
        (bytes == x.numel() * x.dtype().size_in_bytes()).then_some(addr)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = x;
        None
    }
}

/// A new GPU buffer holding `x`'s elements in row-major order, copied on this thread's stream.
///
/// # Errors
/// `x` on the host, or the copy failed.
pub(crate) fn copy_of<H: Handle>(x: &H) -> Result<H> {
    #[cfg(feature = "cuda")]
    {
        let Ok(Storage::Cuda(s)) = x.storage() else {
            return Err(Error::device("cuda_graph", "expected a tensor on a GPU"));
        };
        let packed = cuda::ops::contiguous(s, x.layout())?;
        Ok(H::from_storage(Storage::Cuda(packed), x.shape()))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = x;
        Err(crate::error::Error::device(
            "cuda_graph",
            "this build has no GPU support",
        ))
    }
}

/// Writes `x`'s elements over those of `dst`, which must fill its own GPU buffer (a buffer a
/// recording reads or writes in place, see [`address`]): the caller makes sure no tensor that
/// should keep the old values can see `dst`.
///
/// # Errors
/// Different shapes, dtypes or GPUs, or `dst` not a whole buffer.
pub(crate) fn overwrite<H: Handle>(x: &H, dst: &H) -> Result<()> {
    #[cfg(feature = "cuda")]
    {
        let mismatch = || {
            Error::device(
                "cuda_graph",
                format!(
                    "cannot copy {}{:?} on {} over {}{:?} on {}",
                    x.dtype(),
                    x.shape(),
                    x.device(),
                    dst.dtype(),
                    dst.shape(),
                    dst.device()
                ),
            )
        };
        if x.shape() != dst.shape() || x.dtype() != dst.dtype() || x.device() != dst.device() {
            return Err(mismatch());
        }
        address(dst).ok_or_else(mismatch)?;
        let (Ok(Storage::Cuda(to)), Ok(Storage::Cuda(from))) = (dst.storage(), x.storage()) else {
            return Err(mismatch());
        };
        let bytes = x.numel() * x.dtype().size_in_bytes();
        if address(x).is_some() {
            return cuda::capture::copy_bytes(from, to, bytes);
        }
        let packed = cuda::ops::contiguous(from, x.layout())?;
        cuda::capture::copy_bytes(&packed, to, bytes)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, dst);
        Err(crate::error::Error::device(
            "cuda_graph",
            "this build has no GPU support",
        ))
    }
}
