//! Forward mode: TensorFlow's `tf.autodiff.ForwardAccumulator`. Given primals and a tangent
//! for each, `jvp(y)` is the directional derivative of `y` along the tangents (a
//! Jacobian-vector product), for anything computed from the primals while the accumulator was
//! active, gradients included, so that a Hessian-vector product is forward over reverse as
//! TensorFlow documents it.
//!
//! How: every differentiable op hands the tape a JVP rule beside its gradient rule (one
//! place per op, in `gradtape::ops`); while an accumulator runs, each op whose inputs have
//! tangents computes its output's tangent with that rule, as it runs, so a JVP costs about one
//! more forward pass. The rules are written with the same ops, so accumulators nest (forward
//! over forward) and tapes see them (reverse over forward). The order of starting decides who
//! sees whom, as in TensorFlow: the tangent computations of an accumulator are seen by the
//! accumulators and tapes started before it, not by those started after. A custom gradient has
//! no JVP rule of its own: its tangent is derived from its gradient function (the JVP is the
//! gradient of `⟨Jᵀu, t⟩` with respect to `u`, TensorFlow's fallback too). Tangents are kept
//! while their tensors live, so a long loop under an accumulator does not grow without bound.
//!
//! ```
//! use gradtape::{ops, ForwardAccumulator, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
//! let acc = ForwardAccumulator::new([&x], &[Tensor::from_vec(vec![1.0f64, 0.0], &[2])?])?;
//! let y = ops::multiply(&ops::square(&x)?, &3.0)?; // y = 3x², dy = 6x · t
//! assert_eq!(acc.jvp(&y)?.unwrap().to_vec::<f64>()?, vec![6.0, 0.0]);
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::context;
use crate::context::accumulators::{running_count, State, Tangent};
use crate::context::tapes::next_seq;
use crate::error::{Error, Result};
use crate::source::{owned_source, OwnedSource, Sources, UnconnectedGradients};
use crate::tensor::Tensor;
/// TensorFlow's `ForwardAccumulator` (see the [module docs](self)). Active from `new` until
/// dropped or [`ForwardAccumulator::stop`].
pub struct ForwardAccumulator {
    state: Rc<State>,
    /// Kept so that the primals' tangents live as long as the accumulator.
    _primals: Vec<OwnedSource>,
}

impl ForwardAccumulator {
    /// Starts accumulating along `tangents` (one per primal, of its shape and dtype). Primals
    /// are tensors or variables.
    ///
    /// # Errors
    /// When the counts differ, or a tangent's shape or dtype is not its primal's, or a primal
    /// is not float.
    ///
    /// ```
    /// use gradtape::{ForwardAccumulator, Tensor};
    /// let x = Tensor::zeros(&[2], gradtape::DType::F32)?;
    /// assert!(ForwardAccumulator::new([&x], &[Tensor::zeros(&[3], gradtape::DType::F32)?]).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn new<S: Sources>(primals: S, tangents: &[Tensor]) -> Result<ForwardAccumulator> {
        let op = "ForwardAccumulator";
        let sources = primals.sources();
        if sources.len() != tangents.len() {
            return Err(Error::arg(
                op,
                format!("{} primals and {} tangents", sources.len(), tangents.len()),
            ));
        }
        let state = Rc::new(State {
            seq: Cell::new(next_seq()),
            active: Cell::new(true),
            paused: Cell::new(0),
            tangents: RefCell::default(),
            prune_at: Cell::new(1024),
            ops: RefCell::default(),
        });
        crate::record::interpret_here();
        let mut owned = vec![];
        for (i, (p, t)) in sources.iter().zip(tangents).enumerate() {
            let o = owned_source(*p);
            let (shape, dtype) = match &o {
                OwnedSource::Tensor(x) => (x.shape().to_vec(), x.dtype()),
                OwnedSource::Variable(v) => (v.shape().to_vec(), v.dtype()),
            };
            if !dtype.is_float() || !crate::shape::same(t.shape(), &shape[..]) || t.dtype() != dtype
            {
                return Err(Error::shape(
                    op,
                    format!(
                        "tangent {i} is {} {:?}, primal {i} is {dtype} {shape:?} (float primals only)",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            match &o {
                OwnedSource::Tensor(x) => state.register(x, t)?,
                OwnedSource::Variable(v) => {
                    state.tangents.borrow_mut().insert(
                        v.handle_id(),
                        Tangent {
                            of: None,
                            tangent: t.clone(),
                        },
                    );
                }
            }
            owned.push(o);
        }
        context::with(|c| {
            c.forward.list.borrow_mut().push(state.clone());
            c.forward.add_running(1);
        });
        Ok(ForwardAccumulator {
            state,
            _primals: owned,
        })
    }

    /// The directional derivative of `tensor` along the tangents; `None` when it does not
    /// depend on the primals (TensorFlow's default) or is not float.
    ///
    /// # Errors
    /// When a gradient rule fails.
    ///
    /// A Hessian-vector product, forward over reverse:
    ///
    /// ```
    /// use gradtape::{ops, Axes, ForwardAccumulator, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
    /// let v = Tensor::from_vec(vec![1.0f64, 1.0], &[2])?;
    /// let acc = ForwardAccumulator::new([&x], &[v])?;
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let f = ops::reduce_sum(&ops::multiply(&ops::square(&x)?, &x)?, Axes::All, false)?; // Σ x³
    /// let [g] = tape.gradient(&f, [&x])?; // 3x²
    /// let hvp = acc.jvp(&g.unwrap())?.unwrap(); // diag(6x) v
    /// assert_eq!(hvp.to_vec::<f64>()?, vec![6.0, 12.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jvp(&self, tensor: &Tensor) -> Result<Option<Tensor>> {
        self.jvp_with(tensor, UnconnectedGradients::None)
    }

    /// [`ForwardAccumulator::jvp`] with zeros instead of `None` when unconnected.
    ///
    /// # Errors
    /// As [`ForwardAccumulator::jvp`].
    ///
    /// ```
    /// use gradtape::{ForwardAccumulator, Tensor, UnconnectedGradients};
    /// let x = Tensor::scalar(1.0f32);
    /// let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f32)])?;
    /// let other = Tensor::from_vec(vec![5.0f32, 6.0], &[2])?;
    /// assert!(acc.jvp(&other)?.is_none());
    /// let z = acc.jvp_with(&other, UnconnectedGradients::Zero)?.unwrap();
    /// assert_eq!(z.to_vec::<f32>()?, vec![0.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jvp_with(
        &self,
        tensor: &Tensor,
        unconnected: UnconnectedGradients,
    ) -> Result<Option<Tensor>> {
        Ok(self.jvps(&[tensor], unconnected)?.pop().flatten())
    }

    /// The JVPs of several tensors at once, in one pass (the Hessian-vector product of every
    /// weight of a model is one call, not one per weight).
    ///
    /// # Errors
    /// As [`ForwardAccumulator::jvp`].
    ///
    /// ```
    /// use gradtape::{ops, ForwardAccumulator, Tensor, UnconnectedGradients};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// let acc = ForwardAccumulator::new([&x], &[Tensor::from_vec(vec![1.0f32, 1.0], &[2])?])?;
    /// let (a, b) = (ops::square(&x)?, ops::multiply(&x, &3.0)?);
    /// let j = acc.jvps(&[&a, &b], UnconnectedGradients::None)?;
    /// assert_eq!(j[0].as_ref().unwrap().to_vec::<f32>()?, vec![2.0, 4.0]);
    /// assert_eq!(j[1].as_ref().unwrap().to_vec::<f32>()?, vec![3.0, 3.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jvps(
        &self,
        tensors: &[&Tensor],
        unconnected: UnconnectedGradients,
    ) -> Result<Vec<Option<Tensor>>> {
        tensors
            .iter()
            .map(|t| match self.state.lookup(t)? {
                Some(j) if t.dtype().is_float() => Ok(Some(j)),
                _ => match unconnected {
                    UnconnectedGradients::None => Ok(None),
                    UnconnectedGradients::Zero => Tensor::zeros_like(t).map(Some),
                },
            })
            .collect()
    }

    /// The ops whose JVP rule this accumulator ran, in order of first use (what forward mode
    /// went through; tests use it to prove every differentiable op has its own rule).
    ///
    /// ```
    /// use gradtape::{ops, ForwardAccumulator, Tensor};
    /// let x = Tensor::scalar(1.0f32);
    /// let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f32)])?;
    /// let _ = ops::sin(&ops::exp(&x)?)?;
    /// assert_eq!(acc.recorded_ops(), vec!["exp", "sin"]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn recorded_ops(&self) -> Vec<&'static str> {
        self.state.ops.borrow().clone()
    }

    /// Stops accumulating (TensorFlow's end of the `with` block): later ops are not seen.
    ///
    /// ```
    /// use gradtape::{ops, ForwardAccumulator, Tensor};
    /// let x = Tensor::scalar(2.0f32);
    /// let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f32)])?;
    /// acc.stop();
    /// assert!(acc.jvp(&ops::square(&x)?)?.is_none());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn stop(&self) {
        if self.state.active.get() {
            if self.state.running() {
                running_count(-1);
            }
            self.state.active.set(false);
            context::try_with(|c| {
                c.forward
                    .list
                    .borrow_mut()
                    .retain(|s| !Rc::ptr_eq(s, &self.state))
            });
        }
    }
}

impl ForwardAccumulator {
    /// Runs again after [`stop`](Self::stop), as the innermost tape or accumulator of the
    /// thread: TensorFlow's `with acc:` entered a second time. What ran while it was stopped
    /// has no tangent; what was computed before keeps its own.
    ///
    /// # Errors
    /// When it is running already (TensorFlow's "already recording").
    ///
    /// TensorFlow's `testReenter` (forwardprop_test.py):
    ///
    /// ```
    /// use gradtape::{ops, ForwardAccumulator, Tensor};
    /// let x = Tensor::scalar(-2.0f32);
    /// let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.5f32)])?;
    /// let y = ops::multiply(&x, &4.0)?;
    /// assert_eq!(acc.jvp(&y)?.unwrap().item()?, 6.0);
    /// assert!(acc.resume().is_err()); // already recording
    /// acc.stop();
    /// let z = ops::multiply(&x, &4.0)?;
    /// assert!(acc.jvp(&z)?.is_none());
    /// acc.resume()?;
    /// let yy = ops::multiply(&y, &y)?;
    /// acc.stop();
    /// assert_eq!(acc.jvp(&yy)?.unwrap().item()?, 6.0 * -8.0 * 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn resume(&self) -> Result<()> {
        if self.state.active.get() {
            return Err(Error::tape(
                "ForwardAccumulator",
                "resume: the accumulator is already recording",
            ));
        }
        self.state.seq.set(next_seq());
        self.state.active.set(true);
        crate::record::interpret_here();
        context::with(|c| {
            c.forward.list.borrow_mut().push(self.state.clone());
            if self.state.running() {
                c.forward.add_running(1);
            }
        });
        Ok(())
    }
}

impl Drop for ForwardAccumulator {
    fn drop(&mut self) {
        self.stop();
    }
}
