//! Trainable state: TensorFlow's `tf.Variable`.
//!
//! A variable holds a tensor it can replace (`assign`, `assign_add`, `assign_sub`) and has a
//! stable handle the tape differentiates with respect to. Each read while a tape records is an
//! identity op from the handle, so gradients from every read add up, and an assignment cuts the
//! path: the new value does not remember how it was computed.

mod access;

use std::fmt;
use std::sync::{Arc, RwLock};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};

/// Options of [`Variable::with_options`].
///
/// ```
/// use gradtape::{Variable, VariableOptions};
/// let v = Variable::with_options(1.0, VariableOptions { name: Some("bias".into()), ..Default::default() });
/// assert!(v.trainable());
/// ```
#[derive(Clone, Debug)]
pub struct VariableOptions {
    /// A name for reports and checkpoints.
    pub name: Option<String>,
    /// Whether tapes watch it automatically when it is read (default true).
    pub trainable: bool,
}

impl Default for VariableOptions {
    fn default() -> Self {
        VariableOptions {
            name: None,
            trainable: true,
        }
    }
}

/// A mutable, shareable tensor with a fixed dtype and shape (TensorFlow's `tf.Variable`).
///
/// Cloning a `Variable` gives another handle to the same variable. Pass `&variable` wherever an
/// op takes a tensor; reading it under a recording tape is what gets it watched.
///
/// ```
/// use gradtape::{ops, GradientTape, Variable};
/// let b = Variable::new(2.0);
/// let tape = GradientTape::new();
/// let y = ops::multiply(&b, &b)?;
/// let [db] = tape.gradient(&y, [&b])?;
/// b.assign_sub(&ops::multiply(&db.unwrap(), &0.1)?)?;
/// assert!((b.value().to_scalar::<f32>()? - 1.6).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone)]
pub struct Variable {
    inner: Arc<Inner>,
}

struct Inner {
    handle: TensorId,
    name: Option<String>,
    trainable: bool,
    dtype: DType,
    /// Inline, not a `Vec`: an empty `Vec`'s dangling pointer made every comparison of a
    /// scalar variable's shape cost ~150 ns here (glibc's `memcmp` does a masked load from
    /// it, and a masked load from an unmapped page takes a microcode assist on AMD CPUs).
    shape: crate::shape::Dims<usize>,
    /// Fixed as the dtype and shape are: a new value on another device is an error.
    device: crate::Device,
    value: RwLock<Tensor>,
}

impl Variable {
    #[doc(hidden)]
    pub fn handle_id(&self) -> TensorId {
        self.inner.handle
    }

    /// The name given at creation.
    ///
    /// ```
    /// let v = gradtape::Variable::new(0.0);
    /// assert_eq!(v.name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Whether tapes watch it automatically.
    ///
    /// ```
    /// assert!(gradtape::Variable::new(0.0).trainable());
    /// ```
    pub fn trainable(&self) -> bool {
        self.inner.trainable
    }

    /// Where the value lives (TensorFlow's `v.device`): the default device when it was made
    /// from a number, the tensor's device otherwise. Reading it records nothing on a tape.
    ///
    /// ```
    /// assert_eq!(gradtape::Variable::new(1.0).device(), gradtape::Device::Cpu);
    /// ```
    pub fn device(&self) -> crate::Device {
        self.inner.device
    }

    /// The dtype, fixed at creation.
    ///
    /// ```
    /// assert_eq!(gradtape::Variable::new(1.0).dtype(), gradtape::DType::F32); // a bare float is float32
    /// assert_eq!(gradtape::Variable::new(0).dtype(), gradtape::DType::I64); // an integer is int64
    /// ```
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The shape, fixed at creation.
    ///
    /// ```
    /// let v = gradtape::Variable::new(gradtape::Tensor::zeros(&[3, 2], gradtape::DType::F64).unwrap());
    /// assert_eq!(v.shape(), &[3, 2]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// The stored value, as it is (not a read: no tape or trace sees it).
    pub(crate) fn current(&self) -> Tensor {
        match self.inner.value.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// `f` of the stored value, under the read lock (no handle cloned: a compiled step copies
    /// a small value out this way).
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&Tensor) -> R) -> R {
        match self.inner.value.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// The value, locked for writing (held only to swap a computed tensor in).
    fn slot(&self) -> std::sync::RwLockWriteGuard<'_, Tensor> {
        // A tensor is immutable: a panic elsewhere cannot have left it half-written.
        self.inner.value.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value locked for writing, when no other thread holds the lock (a compiled step
    /// overwrites the buffer in place while it holds this; never waiting means two steps that
    /// lock variables in different orders cannot deadlock).
    pub(crate) fn try_slot(&self) -> Option<std::sync::RwLockWriteGuard<'_, Tensor>> {
        self.inner.value.try_write().ok()
    }

    /// `t` as the variable's next value: its dtype and shape checked, computed now (a pending
    /// value would keep its operands, often the old value, alive) and under a fresh id (nothing
    /// recorded about how it was made reaches through the variable).
    pub(crate) fn checked(&self, op: &'static str, t: Tensor) -> Result<Tensor> {
        // A new value on another device is an error, not a silent copy: the variable stays
        // where it was made (`to_device` the value first). A Rust number is made on the host
        // and moved here, as it is in every op.
        let here = self.device();
        if t.device() != here {
            if t.rank() == 0 && t.device() == crate::Device::Cpu {
                return self.checked(op, t.move_to(here)?);
            }
            return Err(crate::Error::Device {
                op,
                msg: format!(
                    "variable {} is on {here}, the new value on {}",
                    self.label(),
                    t.device()
                ),
            });
        }
        if t.dtype() != self.dtype() {
            return Err(Error::dtype(
                op,
                format!(
                    "variable {} has dtype {}, value has dtype {}",
                    self.label(),
                    self.dtype(),
                    t.dtype()
                ),
            ));
        }
        if !crate::shape::same(t.shape(), self.shape()) {
            return Err(Error::shape(
                op,
                format!(
                    "variable {} has shape {:?}, value has shape {:?}",
                    self.label(),
                    self.shape(),
                    t.shape()
                ),
            ));
        }
        t.realize()?;
        Ok(t.with_new_id())
    }

    fn label(&self) -> String {
        match self.name() {
            Some(n) => format!("'{n}'"),
            None => "(unnamed)".into(),
        }
    }
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.current().to_string();
        let numpy = shown
            .strip_prefix("tf.Tensor(")
            .and_then(|s| s.split(", shape=").next())
            .unwrap_or("");
        write!(
            f,
            "<tf.Variable '{}:0' shape={:?} dtype={}, numpy={}>",
            self.name().unwrap_or("Variable"),
            self.shape(),
            self.dtype(),
            numpy
        )
    }
}
