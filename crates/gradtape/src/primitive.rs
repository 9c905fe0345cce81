//! Primitives as data: each primitive is one [`Primitive`] value holding everything gradtape
//! knows about it (its kernel, its derivative, its batching rule, its CUDA expression), and
//! every op built on one goes through the one path [`apply`]: batch, compute, record.
//!
//! Before, each op repeated those steps by hand (its `vmap` rule, its kernels, its
//! `tape::record` call) and the list of primitives was a list of strings; now a transformation
//! or a backend reads the table, and a primitive that lacks a rule is a test failure
//! (`tests/gradcheck.rs::every_primitive_has_every_rule`), not an op that silently does not
//! batch. The elementwise families (the unary table, the roundings, the broadcasting binary
//! ops) are primitives of this kind so far; the others (reductions, views, matmul,
//! gather/scatter, patches, concat, select, cast) still record by hand and are listed in
//! [`crate::ops::DIFFERENTIABLE_OPS`] (`ARCHITECTURE.md`, migration step 3).

use crate::error::{Error, Result};
use crate::ops;
use crate::shape::Dims;
use crate::tape;
use crate::tensor::Tensor;
use crate::vmap;

/// One primitive operation: what [`apply`] needs to run it under every transformation.
///
/// ```
/// let exp = gradtape::ops::primitives().find(|p| p.name() == "exp").unwrap();
/// assert!(exp.is_differentiable());
/// assert_eq!(exp.cuda_expression(), Some("exp(v)"));
/// ```
pub struct Primitive {
    pub(crate) name: &'static str,
    /// The kernel on unbatched inputs (it picks the backend: fused, CUDA or the host, and
    /// checks dtypes and shapes).
    pub(crate) forward: fn(&[&Tensor]) -> Result<Tensor>,
    /// How many tensors it takes.
    pub(crate) arity: usize,
    pub(crate) derivative: Derivative,
    pub(crate) batching: Batching,
    /// The element function as CUDA C (of `v`, or of `p` and `q`), compiled by NVRTC.
    pub(crate) cuda: Option<&'static str>,
}

impl Primitive {
    /// Its name, TensorFlow's where TensorFlow has the op (`exp`, `multiply`); tapes and
    /// forward accumulators report ops by it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// True when a tape records a gradient for it (`round` and the comparisons have none:
    /// TensorFlow gives `None` through them).
    pub fn is_differentiable(&self) -> bool {
        !matches!(self.derivative, Derivative::None)
    }

    /// The CUDA C expression its GPU kernel is generated from, for elementwise primitives.
    pub fn cuda_expression(&self) -> Option<&'static str> {
        self.cuda
    }

    /// How many tensors it takes.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// Runs it on `inputs`, under every transformation running (JAX's `bind`): what its op in
    /// [`crate::ops`] does after turning its arguments into tensors.
    ///
    /// ```
    /// use gradtape::{ops, Tensor};
    /// let multiply = ops::primitives().find(|p| p.name() == "multiply").unwrap();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// assert_eq!(multiply.apply(&[&x, &x])?.to_vec::<f32>()?, vec![1.0, 4.0]);
    /// assert!(multiply.apply(&[&x]).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `inputs` has the wrong length, and whatever the op's own checks refuse.
    pub fn apply(&'static self, inputs: &[&Tensor]) -> Result<Tensor> {
        if inputs.len() != self.arity {
            return Err(Error::arg(
                self.name,
                format!("takes {} tensors, got {}", self.arity, inputs.len()),
            ));
        }
        apply(self, inputs)
    }
}

impl std::fmt::Debug for Primitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What a gradient rule reads from the forward pass: a tape keeps only that.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Saves {
    Nothing,
    Input,
    /// The first input only (`select`'s condition).
    FirstInput,
    Output,
    Inputs,
    InputsAndOutput,
}

/// Most inputs of a primitive defined here (`select` has three).
const MAX_INPUTS: usize = 3;

/// The tensors a rule asked to keep.
pub(crate) struct Saved {
    inputs: [Option<Tensor>; MAX_INPUTS],
    out: Option<Tensor>,
}

impl Saved {
    fn keep(inputs: &[&Tensor], out: &Tensor, saves: Saves) -> Saved {
        let inputs_kept = matches!(saves, Saves::Input | Saves::Inputs | Saves::InputsAndOutput);
        Saved {
            inputs: std::array::from_fn(|i| {
                (inputs_kept || (saves == Saves::FirstInput && i == 0))
                    .then(|| inputs.get(i).map(|t| (*t).clone()))
                    .flatten()
            }),
            out: matches!(saves, Saves::Output | Saves::InputsAndOutput).then(|| out.clone()),
        }
    }
    fn get<'t>(t: Option<&'t Tensor>, what: &str) -> Result<&'t Tensor> {
        t.ok_or_else(|| {
            Error::tape(
                "gradient",
                format!("rule used the {what}, which it did not save"),
            )
        })
    }
    /// Input `i`.
    pub(crate) fn input(&self, i: usize) -> Result<&Tensor> {
        Saved::get(
            self.inputs.get(i).and_then(Option::as_ref),
            &format!("input {i}"),
        )
    }
    /// The first input.
    pub(crate) fn a(&self) -> Result<&Tensor> {
        self.input(0)
    }
    /// The second input.
    pub(crate) fn b(&self) -> Result<&Tensor> {
        self.input(1)
    }
    /// The output.
    pub(crate) fn out(&self) -> Result<&Tensor> {
        Saved::get(self.out.as_ref(), "output")
    }
}

/// A primitive's derivative, in the form of its family: each form gives both the gradient
/// (VJP) and the tangent (JVP) rule, written with differentiable ops, so that rules of rules
/// (higher derivatives, forward over reverse) come for free.
pub(crate) enum Derivative {
    /// None: a tape ends the path here and says so (`Tape::why_no_gradient`).
    None,
    /// An elementwise function of one input: `rule(s, g)` is `g` times its derivative, from
    /// `s`, the saved input or output. The Jacobian is diagonal, so the same rule applied to
    /// the tangent is the JVP.
    Diagonal {
        saves: Saves,
        rule: fn(&Tensor, &Tensor) -> Result<Tensor>,
    },
    /// An elementwise function of two or three inputs broadcast together: `partial(saved, g,
    /// i)` is `g` times its partial derivative with respect to input `i` (asked only for float
    /// inputs: `select`'s condition never is). The gradient sums it back to input `i`'s shape;
    /// the JVP is the sum of the partials applied to the tangents.
    Broadcast {
        saves: Saves,
        partial: fn(&Saved, &Tensor, usize) -> Result<Tensor>,
    },
}

/// How a primitive runs under `vmap`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Batching {
    /// One input, elementwise: the whole batch at once.
    Elementwise,
    /// Inputs broadcast together: each batched input gets unit axes after its batch axis.
    Broadcast,
}

/// Runs `p` on `inputs`: its batching rule when an input is one example of a `vmap` (which
/// calls `apply` again on the whole batch), else its kernel, then its derivative recorded on
/// the tapes and forward accumulators that watch an input.
pub(crate) fn apply(p: &'static Primitive, inputs: &[&Tensor]) -> Result<Tensor> {
    let batched = match p.batching {
        Batching::Elementwise => vmap::rule1(inputs[0], |x| apply(p, &[x])),
        Batching::Broadcast => vmap::rule_broadcast(inputs, |xs| {
            let refs: Vec<&Tensor> = xs.iter().collect();
            apply(p, &refs)
        }),
    };
    if let Some(r) = batched {
        return r;
    }
    let out = (p.forward)(inputs)?;
    record(p, inputs, &out)?;
    Ok(out)
}

fn record(p: &'static Primitive, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    match p.derivative {
        Derivative::None => {
            tape::cut(p.name, inputs);
            Ok(())
        }
        Derivative::Diagonal { saves, rule } => {
            let s = if saves == Saves::Output {
                out
            } else {
                inputs[0]
            };
            tape::record(
                p.name,
                inputs,
                out,
                || {
                    let s = s.clone();
                    move |g: &Tensor, _: &[bool]| Ok([Some(rule(&s, g)?)])
                },
                |t| ops::tangent1(t, |t| rule(s, t)),
            )
        }
        Derivative::Broadcast { saves, partial } => {
            let n = inputs.len().min(MAX_INPUTS);
            let backward = || {
                let saved = Saved::keep(inputs, out, saves);
                // Inline up to rank 6: no allocation per recorded op.
                let shapes: [Dims<usize>; MAX_INPUTS] = std::array::from_fn(|i| {
                    inputs
                        .get(i)
                        .map_or_else(|| Dims::from_slice(&[]), |t| Dims::from_slice(t.shape()))
                });
                move |g: &Tensor, needs: &[bool], grads: &mut Vec<Option<Tensor>>| {
                    for (i, shape) in shapes.iter().enumerate().take(n) {
                        grads.push(ops::opt(needs[i], || {
                            ops::sum_to_shape(&partial(&saved, g, i)?, shape)
                        })?);
                    }
                    Ok(())
                }
            };
            let jvp = |t: &[Option<Tensor>]| {
                let saved = Saved::keep(inputs, out, Saves::InputsAndOutput);
                let terms = t
                    .iter()
                    .take(n)
                    .enumerate()
                    .map(|(i, ti)| ti.as_ref().map(|ti| partial(&saved, ti, i)).transpose());
                ops::tangent_sum(terms, out.shape())
            };
            tape::record_dyn(p.name, inputs, out, backward, &jvp)
        }
    }
}
