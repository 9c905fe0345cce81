//! The eager tensor: an immutable, cheaply cloned handle to shared storage seen through a layout.

pub(crate) mod creation;
mod readback;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::cpu;
use crate::backend::device::Device;
use crate::backend::fusion;
use crate::backend::handle::Handle;
use crate::backend::storage::{CpuStorage, Storage};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::shape::{numel, Layout};

type Pending = fusion::Pending<Tensor>;

/// Identity of a tensor as the tape sees it. Views of the same storage have distinct ids.
pub type TensorId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> TensorId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// An n-dimensional array of one [`DType`], immutable once made.
///
/// Cloning is cheap (a reference count); transposes, broadcasts, slices and reshapes of
/// contiguous data share storage instead of copying it. Every op returns a new tensor, and a
/// [`crate::GradientTape`] that is recording remembers how it was made.
///
/// ```
/// use gradtape::Tensor;
/// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
/// assert_eq!(t.shape(), &[3]);
/// assert_eq!(t.to_string(), "tf.Tensor([1. 2. 3.], shape=(3,), dtype=float32)");
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

struct Inner {
    id: TensorId,
    data: Data,
    layout: Layout,
    dtype: DType,
}

/// A tensor that may have been dropped (a [`Tensor`] without the ownership).
pub(crate) struct WeakTensor(std::sync::Weak<Inner>);

impl WeakTensor {
    pub(crate) fn upgrade(&self) -> Option<Tensor> {
        self.0.upgrade().map(|inner| Tensor { inner })
    }
    /// Whether the tensor is still held somewhere.
    pub(crate) fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// A fresh tensor owns its storage in the same allocation as its handle (one allocation fewer
/// per op than a separately shared storage); a view holds the tensor that owns the storage; a
/// pending tensor holds the graph that computes it (see [`crate::fusion`]).
enum Data {
    Own(Storage),
    View(Tensor),
    Pending(Box<Pending>),
    /// Inside [`crate::vmap()`]: the tensor of one example, standing for `physical`, whose first
    /// axis is the batch of vmap level `level` (the tensor's own shape is `physical`'s without
    /// it). Only batching rules look inside; reading the elements is an error.
    Batched(Tensor, usize),
}

impl Tensor {
    // ----- construction used by the kernels -----

    /// A fresh contiguous tensor of `shape` over `data` (owned storage or a pending graph).
    #[inline]
    fn fresh(data: Data, shape: &[usize], dtype: DType) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                id: next_id(),
                data,
                layout: Layout::contiguous(shape),
                dtype,
            }),
        }
    }

    /// A pending tensor: `p`'s graph, computed when read.
    pub(crate) fn from_graph(p: Pending, shape: &[usize], dtype: DType) -> Tensor {
        Tensor::fresh(Data::Pending(Box::new(p)), shape, dtype)
    }

    pub(crate) fn from_storage(cpu: CpuStorage, shape: &[usize]) -> Tensor {
        let dtype = cpu.dtype();
        Tensor::fresh(Data::Own(Storage::new(cpu)), shape, dtype)
    }

    pub(crate) fn from_elems<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
        Tensor::from_storage(T::into_storage(v), shape)
    }

    /// The tensor of one example of `physical`, whose first axis is vmap level `level`'s batch.
    pub(crate) fn batched(physical: Tensor, level: usize) -> Tensor {
        let dtype = physical.dtype();
        let shape = physical.shape().get(1..).unwrap_or(&[]).to_vec();
        Tensor::fresh(Data::Batched(physical, level), &shape, dtype)
    }

    /// Every example's elements behind this tensor (all vmap levels unwrapped): for checks
    /// that must see every value, such as label bounds.
    pub(crate) fn all_examples(&self) -> Tensor {
        let mut t = self.clone();
        while let Some((p, _)) = t.batch() {
            t = p.clone();
        }
        t
    }

    /// For a tensor batched by [`crate::vmap()`]: the whole batch (batch axis first) and the
    /// level. Cheap: the hot path of every op asks it once per operand.
    #[inline]
    pub(crate) fn batch(&self) -> Option<(&Tensor, usize)> {
        match &self.inner.data {
            Data::Batched(p, level) => Some((p, *level)),
            _ => None,
        }
    }

    /// True for a tensor that owns computed storage (neither a view nor pending): the cheap
    /// test that lets reductions skip fusion.
    #[inline]
    pub(crate) fn owns_storage(&self) -> bool {
        matches!(self.inner.data, Data::Own(_))
    }

    /// The graph that will compute this tensor, while it has not run: the tensor's own, or
    /// its owner's when this is a view of all of the owner's elements in order (a reshape).
    /// Returns the tensor that holds the graph.
    pub(crate) fn pending(&self) -> Option<(&Tensor, &Pending)> {
        let (owner, p) = match &self.inner.data {
            Data::Own(_) | Data::Batched(..) => return None,
            Data::Pending(p) => (self, p),
            Data::View(owner) => match &owner.inner.data {
                Data::Pending(p)
                    if self.layout().offset == 0
                        && self.numel() == owner.numel()
                        && self.layout().is_contiguous() =>
                {
                    (owner, p)
                }
                _ => return None,
            },
        };
        (!p.is_realized()).then_some((owner, &**p))
    }

    /// The pending tensor behind this one (itself or, for any view, its owner) while its
    /// elements are not computed: what reading this tensor would compute.
    pub(crate) fn unrealized(&self) -> Option<(&Tensor, &Pending)> {
        let owner = self.owner();
        match &owner.inner.data {
            Data::Pending(p) if !p.is_realized() => Some((owner, &**p)),
            _ => None,
        }
    }

    /// Lets go of this handle; when it was the last one, hands what the tensor held (a view's
    /// owner, a pending graph's operands) to `work` instead of dropping it recursively.
    pub(crate) fn dismantle(self, work: &mut Vec<Tensor>) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            match inner.data {
                Data::Own(_) => {}
                Data::View(owner) | Data::Batched(owner, _) => work.push(owner),
                Data::Pending(mut p) => fusion::take_inputs(&mut p, work),
            }
        }
    }

    pub(crate) fn downgrade(&self) -> WeakTensor {
        WeakTensor(Arc::downgrade(&self.inner))
    }

    /// A new tensor over the same storage with another layout (and a new id).
    pub(crate) fn view(&self, layout: Layout) -> Tensor {
        let owner = match &self.inner.data {
            Data::Own(_) | Data::Pending(_) | Data::Batched(..) => self.clone(),
            Data::View(owner) => owner.clone(),
        };
        Tensor {
            inner: Arc::new(Inner {
                id: next_id(),
                data: Data::View(owner),
                layout,
                dtype: self.inner.dtype,
            }),
        }
    }

    /// The same elements under a new id, so that no tape connects it to `self`. A tensor
    /// batched by `vmap` stays batched at its level (a plain view of one could not be read:
    /// `stop_gradient` and a custom gradient's outputs inside `vmap` returned such values).
    pub(crate) fn with_new_id(&self) -> Tensor {
        if let Some((physical, level)) = self.batch() {
            return Tensor::batched(physical.with_new_id(), level);
        }
        self.view(self.inner.layout.clone())
    }

    /// The elements' storage, computing a pending tensor first.
    ///
    /// # Errors
    /// When computing it failed (memory that cannot be had): on this read and every later one.
    #[inline]
    fn storage(&self) -> Result<&Storage> {
        match &self.inner.data {
            Data::Own(s) => Ok(s),
            Data::View(owner) => owner.storage(),
            Data::Pending(p) => self.pending_storage(p),
            Data::Batched(..) => Err(read_error(self)),
        }
    }

    /// Out of line, so that reading a computed tensor stays a few instructions.
    #[inline(never)]
    fn pending_storage<'a>(&self, p: &'a Pending) -> Result<&'a Storage> {
        if !p.is_realized() {
            fusion::realize(self);
        }
        p.value()
    }

    /// Computes a pending tensor's elements now (see [`crate::fusion`]); a no-op for every
    /// other tensor. Reading the elements does this anyway: call it to time the work where it
    /// belongs, or to let the graph release the operands it keeps alive.
    ///
    /// # Errors
    /// When the elements cannot be computed (their memory cannot be allocated). The tensor
    /// keeps the error: every later read returns it too.
    ///
    /// ```
    /// use gradtape::{fusion, ops, Tensor};
    /// let x = Tensor::ones(&[fusion::DEFAULT_MIN_ELEMENTS], gradtape::DType::F32)?;
    /// let y = ops::add(&x, &1.0)?;
    /// assert!(!y.is_realized());
    /// assert!(y.realize()?.is_realized());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn realize(&self) -> Result<&Tensor> {
        self.storage()?;
        Ok(self)
    }

    /// False while a tensor is pending: an elementwise result on a large tensor whose elements
    /// have not been needed yet (see [`crate::fusion`]). True once they were computed, or
    /// once computing them failed (reads then return the error).
    ///
    /// ```
    /// assert!(gradtape::Tensor::scalar(1.0f32).is_realized());
    /// ```
    pub fn is_realized(&self) -> bool {
        match &self.inner.data {
            Data::Own(_) => true,
            Data::View(owner) | Data::Batched(owner, _) => owner.is_realized(),
            Data::Pending(p) => p.is_realized(),
        }
    }

    /// A process-wide identity: views and copies get new ones. Tapes key on it, and
    /// [`crate::TracedTensor::id`] reports it, so a trace can be matched to your tensors.
    ///
    /// ```
    /// let x = gradtape::Tensor::scalar(1.0f32);
    /// assert_eq!(x.id(), x.clone().id());
    /// assert_ne!(x.id(), gradtape::ops::stop_gradient(&x)?.id());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The whole backing storage as a slice of `T` (index it through [`Tensor::layout`]).
    #[inline]
    pub(crate) fn data<T: Element>(&self) -> Result<&[T]> {
        T::slice(self.storage()?.cpu()?).ok_or_else(|| {
            Error::dtype(
                "data",
                format!("tensor has dtype {}, not {}", self.dtype(), T::DTYPE),
            )
        })
    }

    /// The elements to overwrite in place (a compiled step's in-place updates): only when this
    /// handle is the one reference to a host buffer that holds exactly its elements in order
    /// (directly, or through one view with no other holder), so no other tensor can see the
    /// write.
    pub(crate) fn unique_elems_mut<T: Element>(&mut self) -> Option<&mut [T]> {
        let n = self.numel();
        let inner = Arc::get_mut(&mut self.inner)?;
        if inner.layout.offset != 0 || !inner.layout.is_contiguous() || inner.dtype != T::DTYPE {
            return None;
        }
        let storage = match &mut inner.data {
            Data::Own(s) => s,
            Data::View(owner) => match &mut Arc::get_mut(&mut owner.inner)?.data {
                Data::Own(s) => s,
                _ => return None,
            },
            Data::Pending(_) | Data::Batched(..) => return None,
        };
        let v = T::slice_mut(storage.cpu_mut()?)?;
        (v.len() == n).then_some(v)
    }

    /// Whether this handle is the only one to its elements (no clone, no view, no weak
    /// reference): a GPU step may then write them in place, as
    /// [`Tensor::unique_elems_mut`] allows on the host.
    pub(crate) fn sole_handle(&mut self) -> bool {
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            return false;
        };
        match &mut inner.data {
            Data::Own(_) => true,
            Data::View(owner) => {
                Arc::get_mut(&mut owner.inner).is_some_and(|o| matches!(o.data, Data::Own(_)))
            }
            Data::Pending(_) | Data::Batched(..) => false,
        }
    }

    /// The elements in row-major order (borrowed when already contiguous).
    pub(crate) fn contiguous_data<T: Element>(&self) -> Result<std::borrow::Cow<'_, [T]>> {
        cpu::contiguous_cow(self.data::<T>()?, self.layout())
    }

    /// The same values in freshly laid-out contiguous storage (a no-op view when contiguous).
    #[doc(hidden)]
    pub fn to_contiguous(&self) -> Result<Tensor> {
        if self.layout().is_contiguous() {
            return Ok(self.clone());
        }
        if let Some(t) = crate::backend::contiguous(self)? {
            return Ok(t);
        }
        let (shape, l) = (self.shape(), self.layout());
        Ok(match self.storage()?.cpu()? {
            CpuStorage::F32(v) => Tensor::from_elems(cpu::to_contiguous(v, l)?, shape),
            CpuStorage::F64(v) => Tensor::from_elems(cpu::to_contiguous(v, l)?, shape),
            CpuStorage::I64(v) => Tensor::from_elems(cpu::to_contiguous(v, l)?, shape),
            CpuStorage::Bool(v) => Tensor::from_elems(cpu::to_contiguous(v, l)?, shape),
        })
    }

    // ----- inspection -----

    /// The dimensions, outermost first; empty for a scalar.
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::zeros(&[2, 3], gradtape::DType::F32).unwrap().shape(), &[2, 3]);
    /// ```
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.inner.layout.shape
    }

    /// Number of dimensions (0 for a scalar).
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::scalar(1.0f32).rank(), 0);
    /// ```
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::zeros(&[2, 3], gradtape::DType::F32).unwrap().numel(), 6);
    /// ```
    #[inline]
    pub fn numel(&self) -> usize {
        numel(self.shape())
    }

    /// The element type.
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::scalar(true).dtype(), gradtape::DType::Bool);
    /// ```
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The device holding the elements ([`Device::Cpu`] unless moved with
    /// [`Tensor::to_device`] or made inside [`crate::device::with_device`]).
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::scalar(1.0f32).device(), gradtape::Device::Cpu);
    /// ```
    pub fn device(&self) -> Device {
        match &self.inner.data {
            Data::Own(s) => s.device(),
            Data::View(owner) | Data::Batched(owner, _) => owner.device(),
            // Pending graphs are host computations (crate::fusion).
            Data::Pending(_) => Device::Cpu,
        }
    }

    /// The copy `to_device` makes, with nothing recorded (for fresh constants and read-backs).
    #[doc(hidden)]
    pub fn move_to(&self, device: Device) -> Result<Tensor> {
        crate::backend::to_device(self, device)
    }

    /// True when two tensors share the same storage (views of one another).
    ///
    /// ```
    /// use gradtape::{ops, Tensor};
    /// let x = Tensor::zeros(&[2, 3], gradtape::DType::F32)?;
    /// let t = ops::transpose(&x, None)?;
    /// assert!(t.shares_storage_with(&x));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.owner().inner, &other.owner().inner)
    }

    /// The address of the first element in host memory, as PyTorch's `Tensor.data_ptr()`: how
    /// to see that two tensors share memory, or that a compiled step updated a variable in
    /// place (its value's address stays the same from call to call).
    ///
    /// # Errors
    /// When the tensor is on a GPU, or batched inside `vmap` (no elements of its own).
    ///
    /// ```
    /// use gradtape::{ops, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
    /// let tail = ops::slice(&x, &[1], &[2])?;
    /// assert_eq!(tail.data_ptr()?, x.data_ptr()? + 4);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn data_ptr(&self) -> Result<usize> {
        let data = self.storage()?.cpu()?;
        let base = match data {
            CpuStorage::F32(v) => v.as_ptr() as usize,
            CpuStorage::F64(v) => v.as_ptr() as usize,
            CpuStorage::I64(v) => v.as_ptr() as usize,
            CpuStorage::Bool(v) => v.as_ptr() as usize,
        };
        Ok(base + self.layout().offset * self.dtype().size_in_bytes())
    }

    /// The tensor that holds the elements this one views (itself unless it is a view).
    fn owner(&self) -> &Tensor {
        match &self.inner.data {
            Data::View(owner) => owner,
            _ => self,
        }
    }

    // ----- creation where the caller says (on the default device: `creation.rs`) -----

    /// A rank-0 tensor.
    ///
    /// ```
    /// let t = gradtape::Tensor::scalar(2.5f32);
    /// assert_eq!(t.to_scalar::<f32>()?, 2.5);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::from_elems(vec![value], &[])
    }

    /// [`Tensor::full`] on a given device (the others follow [`crate::device::default_device`]).
    ///
    /// # Errors
    /// As [`Tensor::full`], and when the device cannot be used ([`Device::check`]).
    ///
    /// ```
    /// use gradtape::{DType, Device, Tensor};
    /// let t = Tensor::full_on(&[2], 1.5, DType::F32, Device::Cpu)?;
    /// assert_eq!(t.device(), Device::Cpu);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn full_on(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let op = "Tensor::full";
        if let Some(t) = crate::backend::full(device, shape, value, dtype)? {
            return Ok(t);
        }
        let n = crate::shape::checked_numel(shape)
            .filter(|n| n.saturating_mul(dtype.size_in_bytes()) <= isize::MAX as usize)
            .ok_or_else(|| {
                Error::resource(
                    op,
                    format!("shape {shape:?} of {dtype} has more elements than memory can hold"),
                )
            })?;
        use crate::backend::pool::filled;
        let cpu = match dtype {
            DType::F32 => CpuStorage::F32(filled(op, n, value as f32)?),
            DType::F64 => CpuStorage::F64(filled(op, n, value)?),
            DType::I64 => CpuStorage::I64(filled(op, n, value as i64)?),
            DType::Bool => CpuStorage::Bool(filled(op, n, value != 0.0)?),
        };
        Ok(Tensor::from_storage(cpu, shape))
    }

    /// Zeros with the shape and dtype of `other`.
    ///
    /// # Errors
    /// When the allocation is refused.
    ///
    /// ```
    /// let x = gradtape::Tensor::ones(&[2], gradtape::DType::F32)?;
    /// assert_eq!(gradtape::Tensor::zeros_like(&x)?.to_vec::<f32>()?, vec![0.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn zeros_like(other: &Tensor) -> Result<Tensor> {
        Tensor::full_on(other.shape(), 0.0, other.dtype(), other.device())
    }

    /// Ones with the shape and dtype of `other`.
    ///
    /// # Errors
    /// When the allocation is refused.
    ///
    /// ```
    /// let x = gradtape::Tensor::zeros(&[2], gradtape::DType::F32)?;
    /// assert_eq!(gradtape::Tensor::ones_like(&x)?.to_vec::<f32>()?, vec![1.0, 1.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn ones_like(other: &Tensor) -> Result<Tensor> {
        Tensor::full_on(other.shape(), 1.0, other.dtype(), other.device())
    }

    /// `value` everywhere, with the shape and dtype of `other`.
    ///
    /// # Errors
    /// When the allocation is refused.
    ///
    /// ```
    /// let x = gradtape::Tensor::zeros(&[1], gradtape::DType::F64)?;
    /// assert_eq!(gradtape::Tensor::full_like(&x, 3.0)?.to_vec::<f64>()?, vec![3.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn full_like(other: &Tensor, value: f64) -> Result<Tensor> {
        Tensor::full_on(other.shape(), value, other.dtype(), other.device())
    }

    /// `start, start + delta, ...` up to but excluding `limit` (TensorFlow's `range`).
    ///
    /// # Errors
    /// When `delta` is zero or points away from `limit`, or a bound is not finite.
    ///
    /// ```
    /// let r = gradtape::Tensor::arange(0.0, 5.0, 2.0, gradtape::DType::I64)?;
    /// assert_eq!(r.to_vec::<i64>()?, vec![0, 2, 4]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn arange(start: f64, limit: f64, delta: f64, dtype: DType) -> Result<Tensor> {
        let op = "arange";
        if !(start.is_finite() && limit.is_finite() && delta.is_finite()) {
            return Err(Error::arg(
                op,
                format!("start {start}, limit {limit} and delta {delta} must be finite"),
            ));
        }
        if delta == 0.0 || (limit - start) * delta < 0.0 {
            return Err(Error::arg(
                op,
                format!("delta {delta} does not lead from start {start} to limit {limit}"),
            ));
        }
        let n = ((limit - start) / delta).ceil() as usize;
        if n > (1 << 40) {
            return Err(Error::arg(op, format!("{n} elements is too many")));
        }
        let v: Vec<f64> = (0..n).map(|i| start + i as f64 * delta).collect();
        Ok(Tensor::from_f64s(&v, &[n], dtype))
    }

    /// `num` evenly spaced values from `start` to `stop`, both included.
    ///
    /// # Errors
    /// When `dtype` is not a float type.
    ///
    /// ```
    /// let l = gradtape::Tensor::linspace(0.0, 1.0, 3, gradtape::DType::F64)?;
    /// assert_eq!(l.to_vec::<f64>()?, vec![0.0, 0.5, 1.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn linspace(start: f64, stop: f64, num: usize, dtype: DType) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::dtype(
                "linspace",
                format!("expected float32 or float64, got {dtype}"),
            ));
        }
        let step = if num > 1 {
            (stop - start) / (num - 1) as f64
        } else {
            0.0
        };
        let v: Vec<f64> = (0..num)
            .map(|i| {
                if i + 1 == num && num > 1 {
                    stop
                } else {
                    start + i as f64 * step
                }
            })
            .collect();
        Ok(Tensor::from_f64s(&v, &[num], dtype))
    }

    pub(crate) fn from_f64s(v: &[f64], shape: &[usize], dtype: DType) -> Tensor {
        let cpu = match dtype {
            DType::F32 => CpuStorage::F32(v.iter().map(|&x| x as f32).collect()),
            DType::F64 => CpuStorage::F64(v.to_vec()),
            DType::I64 => CpuStorage::I64(v.iter().map(|&x| x as i64).collect()),
            DType::Bool => CpuStorage::Bool(v.iter().map(|&x| x != 0.0).collect()),
        };
        Tensor::from_storage(cpu, shape)
    }

    // ----- reading back (the public read-backs, which refuse a traced value, are in
    // `readback.rs`, above the context) -----

    /// The elements in row-major order, for the core's own reads (a kernel's, a check's,
    /// `Display`'s), which run at every call of a compiled function.
    pub(crate) fn read_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::dtype(
                "to_vec",
                format!("tensor has dtype {}, asked for {}", self.dtype(), T::DTYPE),
            ));
        }
        if self.device().is_cuda() {
            return self.move_to(Device::Cpu)?.read_vec();
        }
        Ok(self.contiguous_data::<T>()?.into_owned())
    }

    /// The elements converted to `f64`, for the core's own reads (see [`Tensor::read_vec`]).
    pub(crate) fn read_f64_vec(&self) -> Result<Vec<f64>> {
        fn conv<T: Element>(d: &[T], l: &Layout) -> Result<Vec<f64>> {
            cpu::map(d, l, |x: T| x.to_f64())
        }
        if self.device().is_cuda() {
            return self.move_to(Device::Cpu)?.read_f64_vec();
        }
        let l = self.layout();
        match self.storage()?.cpu()? {
            CpuStorage::F32(v) => conv(v, l),
            CpuStorage::F64(v) => conv(v, l),
            CpuStorage::I64(v) => conv(v, l),
            CpuStorage::Bool(v) => conv(v, l),
        }
    }
}

/// The backends' view of a tensor: the boundary reads a device tensor's storage and wraps the
/// storage a device kernel returns.
impl Handle for Tensor {
    fn id(&self) -> u64 {
        self.inner.id
    }
    fn layout(&self) -> &Layout {
        &self.inner.layout
    }
    fn dtype(&self) -> DType {
        self.inner.dtype
    }
    fn device(&self) -> Device {
        Tensor::device(self)
    }
    fn storage(&self) -> Result<&Storage> {
        Tensor::storage(self)
    }
    fn from_storage(storage: Storage, shape: &[usize]) -> Tensor {
        let dtype = storage.dtype();
        Tensor::fresh(Data::Own(storage), shape, dtype)
    }
}

/// What an op accepts as an operand: a tensor, a variable, or a Rust number.
///
/// A Rust number takes the dtype of the tensor it meets (`x * 2.0` stays float32 when `x` is);
/// on its own it becomes a float32 scalar, as a Python float does in TensorFlow.
///
/// ```
/// use gradtape::{ops, Tensor, Variable};
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
/// let v = Variable::new(Tensor::scalar(10.0f64));
/// // a tensor, a variable and a number, in one expression; 2.0 becomes float64 here
/// let y = ops::add(&ops::multiply(&x, &2.0)?, &v)?;
/// assert_eq!(y.to_vec::<f64>()?, vec![12.0, 14.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub trait AsTensor {
    /// The operand this value stands for.
    fn operand(&self) -> Operand;
}

/// A tensor, or a number still waiting for a dtype. See [`AsTensor`].
///
/// ```
/// use gradtape::{AsTensor, DType, Operand};
/// assert!(matches!(2.0.operand(), Operand::Scalar(v) if v == 2.0));
/// assert_eq!(2.0.operand().into_tensor_of(DType::F64).dtype(), DType::F64);
/// ```
#[derive(Clone, Debug)]
pub enum Operand {
    /// A tensor (a variable's value is read into one).
    Tensor(Tensor),
    /// A Rust float.
    Scalar(f64),
    /// A Rust integer: takes the other operand's dtype like a float, and is int64 on its own
    /// (`Variable::new(0)` is an int64 variable, as `tf.Variable(0)` is an integer one).
    Int(i64),
}

impl Operand {
    /// The tensor, making a scalar float32 when this is a bare number.
    ///
    /// ```
    /// use gradtape::{AsTensor, DType};
    /// assert_eq!(1.5.operand().into_tensor().dtype(), DType::F32);
    /// ```
    pub fn into_tensor(self) -> Tensor {
        match self {
            Operand::Tensor(t) => t,
            Operand::Scalar(v) => Tensor::scalar(v as f32),
            Operand::Int(v) => Tensor::scalar(v),
        }
    }
    /// The tensor, making a scalar of `dtype` when this is a bare number.
    ///
    /// ```
    /// use gradtape::{AsTensor, DType};
    /// assert_eq!(3.operand().into_tensor_of(DType::I64).to_scalar::<i64>().unwrap(), 3);
    /// ```
    pub fn into_tensor_of(self, dtype: DType) -> Tensor {
        match self {
            Operand::Tensor(t) => t,
            Operand::Scalar(v) => Tensor::from_f64s(&[v], &[], dtype),
            Operand::Int(v) if dtype == DType::I64 => Tensor::scalar(v),
            Operand::Int(v) => Tensor::from_f64s(&[v as f64], &[], dtype),
        }
    }
}

impl AsTensor for Operand {
    fn operand(&self) -> Operand {
        self.clone()
    }
}
impl AsTensor for Tensor {
    fn operand(&self) -> Operand {
        Operand::Tensor(self.clone())
    }
}
impl<T: AsTensor + ?Sized> AsTensor for &T {
    fn operand(&self) -> Operand {
        (**self).operand()
    }
}
macro_rules! scalar_operand {
    ($($t:ty),*) => {$(
        impl AsTensor for $t {
            fn operand(&self) -> Operand {
                Operand::Scalar(*self as f64)
            }
        }
    )*};
}
scalar_operand!(f64, f32);
macro_rules! int_operand {
    ($($t:ty),*) => {$(
        impl AsTensor for $t {
            fn operand(&self) -> Operand {
                Operand::Int(*self as i64)
            }
        }
    )*};
}
int_operand!(i64, i32);

/// The error for reading the elements of one example's tensor.
fn read_error(t: &Tensor) -> Error {
    Error::arg(
        "vmap",
        format!(
            "the elements of a batched tensor of shape {:?} cannot be read inside vmap (an op without a batching rule, or to_vec/item/Display inside the function)",
            t.shape()
        ),
    )
}
