//! Forward mode: TensorFlow's `tf.autodiff.ForwardAccumulator`. Given primals and a tangent
//! for each, `jvp(y)` is the directional derivative of `y` along the tangents (a
//! Jacobian-vector product), for anything computed from the primals while the accumulator was
//! active, gradients included, so that a Hessian-vector product is forward-over-reverse as
//! TensorFlow documents it.
//!
//! How: the accumulator is a persistent tape started on the primals. `jvp(y)` is derived from
//! the gradient rules, not from a second set of per-op rules: the vector-Jacobian product
//! `g(u) = Jᵀu` is linear in `u`, so `J t` is the gradient of `⟨g(u), t⟩` with respect to `u`
//! (two backward passes, every rule differentiated once more, as nested tapes already do).
//! That costs about three backward passes per `jvp` call instead of one forward pass with
//! per-op JVP rules; per-op rules are not written yet.
//!
//! ```
//! use gradtape::{ops, ForwardAccumulator, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
//! let acc = ForwardAccumulator::new([&x], &[Tensor::from_vec(vec![1.0f64, 0.0], &[2])?])?;
//! let y = ops::multiply(&ops::square(&x)?, &3.0)?; // y = 3x², dy = 6x · t
//! assert_eq!(acc.jvp(&y)?.unwrap().to_vec::<f64>()?, vec![6.0, 0.0]);
//! # Ok::<(), gradtape::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::tape::{GradientOptions, OwnedSource, PersistentTape, Source, Sources};
use crate::tensor::Tensor;
use crate::{GradientTape, UnconnectedGradients};

/// TensorFlow's `ForwardAccumulator` (see the [module docs](self)). Active from `new` until
/// dropped or [`ForwardAccumulator::stop`].
pub struct ForwardAccumulator {
    tape: PersistentTape,
    primals: Vec<OwnedSource>,
    tangents: Vec<Tensor>,
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
        let mut owned = vec![];
        for (i, (p, t)) in sources.iter().zip(tangents).enumerate() {
            let o = crate::tape::owned_source(*p);
            let (shape, dtype) = match &o {
                OwnedSource::Tensor(x) => (x.shape().to_vec(), x.dtype()),
                OwnedSource::Variable(v) => (v.shape().to_vec(), v.dtype()),
            };
            if !dtype.is_float() || t.shape() != &shape[..] || t.dtype() != dtype {
                return Err(Error::shape(
                    op,
                    format!(
                        "tangent {i} is {} {:?}, primal {i} is {dtype} {shape:?} (float primals only)",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            owned.push(o);
        }
        let tape = GradientTape::persistent();
        for o in &owned {
            tape.watch(&o.as_source());
        }
        Ok(ForwardAccumulator {
            tape,
            primals: owned,
            tangents: tangents.to_vec(),
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
        let zero = |t: &Tensor| match unconnected {
            UnconnectedGradients::None => Ok(None),
            UnconnectedGradients::Zero => Tensor::zeros_like(t).map(Some),
        };
        // g(u₁..u_k) = Σ J_kᵀ u_k recorded on a tape watching the u's; J_k t = d⟨g, t⟩ / du_k.
        let float: Vec<&Tensor> = tensors
            .iter()
            .copied()
            .filter(|t| t.dtype().is_float())
            .collect();
        let us = float
            .iter()
            .map(|t| Tensor::zeros_like(t))
            .collect::<Result<Vec<_>>>()?;
        let outer = GradientTape::new();
        for u in &us {
            outer.watch(u);
        }
        let mut inner: Option<Tensor> = None;
        if !float.is_empty() {
            let sources: Vec<&dyn Source> = self.primals.iter().map(|p| p.as_source()).collect();
            let options = GradientOptions {
                output_gradients: Some(us.clone()),
                unconnected_gradients: UnconnectedGradients::None,
            };
            let vjps = self.tape.gradient_with(&float, &sources, &options)?;
            for (g, t) in vjps.iter().zip(&self.tangents) {
                if let Some(g) = g {
                    let term = crate::ops::reduce_sum(
                        &crate::ops::multiply(g, t)?,
                        crate::Axes::All,
                        false,
                    )?;
                    inner = Some(match inner {
                        Some(s) => crate::ops::add(&s, &term)?,
                        None => term,
                    });
                }
            }
        }
        let jvps = match &inner {
            Some(inner) => {
                let sources: Vec<&dyn Source> = us.iter().map(|u| u as &dyn Source).collect();
                outer.gradient_with(&[inner], &sources, &GradientOptions::default())?
            }
            None => vec![None; us.len()],
        };
        let mut by_float = jvps.into_iter();
        tensors
            .iter()
            .map(|t| {
                if !t.dtype().is_float() {
                    return zero(t);
                }
                match by_float.next().flatten() {
                    Some(j) => Ok(Some(j)),
                    None if inner.is_some() && self.depends(t) => Tensor::zeros_like(t).map(Some),
                    None => zero(t),
                }
            })
            .collect()
    }

    /// Whether `t` was computed from the primals on this accumulator's tape.
    fn depends(&self, t: &Tensor) -> bool {
        self.primals
            .iter()
            .any(|p| self.tape.why_no_gradient(t, p.as_source()).is_none())
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
        self.tape.stop();
    }
}
