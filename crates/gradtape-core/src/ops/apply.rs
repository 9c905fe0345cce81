//! The one path every op takes: its batching rule when an input is one example of a `vmap`,
//! else its kernel, then, when something watches (a tape records, an accumulator runs,
//! numerics are checked), the check and the recording.

use crate::context;
use crate::context::tapes::Watching;
use crate::error::{Error, Result};
use crate::primitive::{Batching, Params, Primitive};
use crate::tensor::Tensor;

use super::batching;

impl Primitive {
    /// Runs it on `inputs` with `params`, under every transformation running (JAX's `bind`):
    /// what its op in [`crate::ops`] does after turning its arguments into tensors and
    /// parameters.
    ///
    /// ```
    /// use gradtape::ops::{self, Params};
    /// use gradtape::Tensor;
    /// let multiply = ops::primitives().find(|p| p.name() == "multiply").unwrap();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// assert_eq!(multiply.apply(&[&x, &x], &Params::NONE)?.to_vec::<f32>()?, vec![1.0, 4.0]);
    /// assert!(multiply.apply(&[&x], &Params::NONE).is_err());
    /// let sum = ops::primitives().find(|p| p.name() == "reduce_sum").unwrap();
    /// let all = Params::reduce(&[0], false);
    /// assert_eq!(sum.apply(&[&x], &all)?.item()?, 3.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `inputs` has the wrong length, the parameters are not the primitive's kind or do
    /// not fit the inputs, and whatever the op's own checks refuse.
    pub fn apply(&'static self, inputs: &[&Tensor], params: &Params) -> Result<Tensor> {
        if params.kind() != self.params {
            return Err(params.wrong(self.name));
        }
        let fits = match self.arity() {
            Some(n) => inputs.len() == n,
            None => !inputs.is_empty(),
        };
        if !fits {
            let wanted = match self.arity() {
                Some(n) => n.to_string(),
                None => "one or more".into(),
            };
            return Err(Error::arg(
                self.name,
                format!("takes {wanted} tensors, got {}", inputs.len()),
            ));
        }
        apply(self, inputs, params)
    }
}

/// Runs `p` on `inputs`: its batching rule when an input is one example of a `vmap` (which
/// calls `apply` again on the whole batch), else its kernel, then its derivative recorded on
/// the tapes and forward accumulators that watch an input.
///
/// Inlined into each op, where `p` is a constant: the kernel is then a direct call (often
/// inlined itself) and the batching test a field read per input; the rest (batching,
/// recording) stays out of line, shared by every op.
#[inline(always)]
pub(crate) fn apply(p: &'static Primitive, inputs: &[&Tensor], params: &Params) -> Result<Tensor> {
    if inputs.iter().any(|x| x.batch().is_some()) {
        return batch(p, inputs, params);
    }
    let out = (p.forward)(inputs, params)?;
    record(p, inputs, params, &out)?;
    Ok(out)
}

/// `p` on inputs of which one or more are examples of a `vmap`: its batching rule.
#[cold]
#[inline(never)]
fn batch(p: &'static Primitive, inputs: &[&Tensor], params: &Params) -> Result<Tensor> {
    context::traces::check_batched(p.name, inputs)?;
    let batched = match p.batching {
        Batching::Elementwise => batching::rule1(inputs[0], |x| apply(p, &[x], params)),
        Batching::Broadcast => batching::rule_broadcast(inputs, |xs| {
            let refs: Vec<&Tensor> = xs.iter().collect();
            apply(p, &refs, params)
        }),
        Batching::OneInput(rule) => batching::rule1(inputs[0], |x| rule(x, params)),
        Batching::Inputs(rule) => rule(inputs, params),
    };
    match batched {
        Some(r) => r,
        // no rule took it (every rule takes a batched input, and `apply` comes here only with
        // one): computed as unbatched rather than a panic
        None => {
            let out = (p.forward)(inputs, params)?;
            record(p, inputs, params, &out)?;
            Ok(out)
        }
    }
}

/// What watches `p`'s call, with nothing to do (one read of the context) when nothing does:
/// the numerics check (`debugging`, below the ops), the traces of `gradtape::function`, then
/// the tapes and accumulators, through the interpreter the context holds
/// ([`context::Recorder`]).
#[inline(never)]
fn record(p: &'static Primitive, inputs: &[&Tensor], params: &Params, out: &Tensor) -> Result<()> {
    let (w, recorder) = context::with(|c| (Watching::of(c), c.recorder.get()));
    if w.nothing() {
        return Ok(());
    }
    if w.checking {
        crate::debugging::check(p.name, None, inputs, out)?;
    }
    if w.tracing {
        context::traces::note_op(p, inputs, params, out);
    }
    match recorder {
        Some(record) if w.recording || w.running => record(p, inputs, params, out, w),
        // a tape or accumulator sets the recorder before it can record: none has started here
        _ => Ok(()),
    }
}
