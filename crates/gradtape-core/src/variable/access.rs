//! Making, reading and assigning a variable: what tapes and accumulators see of it (a read is
//! recorded, an assignment cuts the path), above the ops and the recording; the type itself
//! is below the context, which holds variables a tape watched.

use std::sync::{Arc, RwLock};

use super::{Inner, Variable, VariableOptions};
use crate::context::tapes::{cut, without_recording};
use crate::context::traces;
use crate::error::Result;
use crate::ops;
use crate::tensor::{next_id, AsTensor, Operand, Tensor};

impl Variable {
    /// A trainable variable holding `initial_value`. A bare float becomes float32, as
    /// `tf.Variable(0.0)` does; a bare integer becomes int64 (a step counter), as
    /// `tf.Variable(0)` becomes an integer variable.
    ///
    /// ```
    /// let v = gradtape::Variable::new(0.0);
    /// assert_eq!(v.dtype(), gradtape::DType::F32);
    /// assert_eq!(gradtape::Variable::new(0).dtype(), gradtape::DType::I64);
    /// ```
    pub fn new(initial_value: impl AsTensor) -> Variable {
        Variable::with_options(initial_value, VariableOptions::default())
    }

    /// A variable with a name and a trainable flag.
    ///
    /// ```
    /// use gradtape::{Variable, VariableOptions};
    /// let step = Variable::with_options(0i64, VariableOptions { name: Some("step".into()), trainable: false });
    /// assert_eq!(step.name(), Some("step"));
    /// assert!(!step.trainable());
    /// ```
    pub fn with_options(initial_value: impl AsTensor, options: VariableOptions) -> Variable {
        let operand = initial_value.operand();
        let number = !matches!(operand, crate::Operand::Tensor(_));
        let mut value = operand.into_tensor().with_new_id();
        // A variable made from a Rust number inside `with_device(gpu, ..)` lives on that GPU, as
        // `tf.Variable(0.0)` does inside `tf.device`; a tensor keeps the device it is on. The
        // scope checked the device, so the one-element copy fails only without memory, and then
        // the value stays on the host (where a 0-d value still works beside GPU tensors).
        let device = crate::device::default_device();
        if number && device.is_cuda() {
            if let Ok(v) = value.move_to(device) {
                value = v; // a fresh tensor, with its own id
            }
        }
        Variable {
            inner: Arc::new(Inner {
                handle: next_id(),
                name: options.name,
                trainable: options.trainable,
                dtype: value.dtype(),
                shape: crate::shape::Dims::from_slice(value.shape()),
                device: value.device(),
                value: RwLock::new(value),
            }),
        }
    }

    /// The current value, read as TensorFlow reads it (watched by recording tapes when
    /// trainable).
    ///
    /// ```
    /// let v = gradtape::Variable::new(4.0);
    /// assert_eq!(v.value().to_scalar::<f32>()?, 4.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn value(&self) -> Tensor {
        crate::record::read_variable(self, &self.current())
    }

    /// The same as [`Variable::value`] (TensorFlow's `read_value`).
    ///
    /// ```
    /// let v = gradtape::Variable::new(4.0);
    /// assert_eq!(v.read_value().to_scalar::<f32>()?, 4.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn read_value(&self) -> Tensor {
        self.value()
    }

    /// Replaces the value. Not differentiable: a tape does not see through an assignment.
    ///
    /// # Errors
    /// When the new value's dtype or shape differs from the variable's.
    ///
    /// ```
    /// let v = gradtape::Variable::new(gradtape::Tensor::zeros(&[2], gradtape::DType::F32).unwrap());
    /// assert!(v.assign(&gradtape::Tensor::zeros(&[3], gradtape::DType::F32).unwrap()).is_err());
    /// ```
    pub fn assign(&self, value: &impl AsTensor) -> Result<()> {
        let t = value.operand().into_tensor_of(self.dtype());
        cut("assign", &[&t]);
        self.replace("assign", &t)
    }

    /// The value as an update reads it: not seen by tapes, but by a trace, which reads it at
    /// every call of the compiled function.
    pub(crate) fn read_for_update(&self) -> Tensor {
        self.read_for_update_of(&self.current())
    }

    fn read_for_update_of(&self, stored: &Tensor) -> Tensor {
        if !traces::tracing() {
            return stored.clone();
        }
        // a read of its own (a tensor captured from the variable before is a constant)
        let cur = stored.with_new_id();
        traces::note_read(self, &cur, true);
        cur
    }

    /// `t` as the value from now on (checked), seen by the traces as an assign.
    pub(crate) fn replace(&self, op: &'static str, t: &Tensor) -> Result<()> {
        // The new value does not depend on the old one: no retry, just the swap.
        *self.slot() = self.checked(op, t.clone())?;
        traces::note_assign(self, t);
        Ok(())
    }

    /// Adds to the value in place of `v = v + delta`.
    ///
    /// # Errors
    /// When `delta` has another dtype or does not broadcast to the variable's shape.
    ///
    /// ```
    /// let v = gradtape::Variable::new(1.0);
    /// v.assign_add(&2.0)?;
    /// assert_eq!(v.value().to_scalar::<f32>()?, 3.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn assign_add(&self, delta: &impl AsTensor) -> Result<()> {
        let delta = without_recording(|| delta.operand());
        self.update("assign_add", |cur| ops::add(cur, &delta))
    }

    /// Subtracts from the value (`v = v - delta`), the seed's `model.a.assign_sub(da * lr)`.
    ///
    /// # Errors
    /// When `delta` has another dtype or does not broadcast to the variable's shape.
    ///
    /// ```
    /// let v = gradtape::Variable::new(1.0);
    /// v.assign_sub(&0.25)?;
    /// assert_eq!(v.value().to_scalar::<f32>()?, 0.75);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn assign_sub(&self, delta: &impl AsTensor) -> Result<()> {
        let delta = without_recording(|| delta.operand());
        self.update("assign_sub", |cur| ops::subtract(cur, &delta))
    }

    /// Replaces the value with `new(current value)`, atomically: concurrent updates from
    /// other threads are never lost, as with TensorFlow's resource-variable assigns.
    ///
    /// The new value is computed with no lock held, then swapped in only if the value is still
    /// the one it was computed from; otherwise it is computed again from the newer value.
    /// Holding a lock while computing would be simpler, but a large update runs parallel
    /// kernels, and a pool thread waiting for them can pick up another task that updates the
    /// same variable: that task would wait for a lock its own thread holds.
    fn update(&self, op: &'static str, new: impl Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
        loop {
            let stored = self.current();
            let cur = self.read_for_update_of(&stored);
            let t = without_recording(|| new(&cur))?;
            let checked = self.checked(op, t.clone())?;
            let mut slot = self.slot();
            if slot.id() == stored.id() {
                *slot = checked;
                drop(slot);
                traces::note_assign(self, &t);
                return Ok(());
            }
        }
    }
}

impl AsTensor for Variable {
    fn operand(&self) -> Operand {
        Operand::Tensor(self.value())
    }
}
