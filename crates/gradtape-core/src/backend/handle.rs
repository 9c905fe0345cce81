//! The front end's array handle (a tensor) as the backends see it.
//!
//! Backends work on storage and layouts. What they are given is a handle they can ask for
//! its shape, dtype, layout, device and storage, and what they return is storage that the
//! front end wraps into a new handle: the one trait below is the whole contract, so the
//! backends build (and can be tested) without the front end.

use crate::backend::device::Device;
use crate::backend::storage::Storage;
use crate::dtype::DType;
use crate::error::Result;
use crate::shape::Layout;

/// An array the front end holds: a [`crate::Tensor`] is the one implementation.
pub(crate) trait Handle: Clone + Sized {
    /// A process-wide identity: views get their own.
    fn id(&self) -> u64;
    fn layout(&self) -> &Layout;
    fn dtype(&self) -> DType;
    /// Where the elements are, without computing them (pending arrays are on the host).
    fn device(&self) -> Device;
    /// The elements' storage, computing a pending array first.
    fn storage(&self) -> Result<&Storage>;
    /// A new handle owning `storage`, contiguous, of `shape` (what device kernels return).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn from_storage(storage: Storage, shape: &[usize]) -> Self;

    fn shape(&self) -> &[usize] {
        &self.layout().shape
    }
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn rank(&self) -> usize {
        self.shape().len()
    }
    fn numel(&self) -> usize {
        crate::shape::numel(self.shape())
    }
    fn on_host(&self) -> bool {
        self.device() == Device::Cpu
    }
}
