//! What a primitive call does to the tapes and forward accumulators that watch it: its
//! derivative (the family of [`Derivative`]) turned into a tape entry's backward function and
//! an output tangent, and variable reads. This is the interpreter of reverse and forward mode,
//! above the ops its rules are written with; `apply` (in `ops`, below) reaches it through the
//! context (`Context::recorder`), set when a tape or an accumulator of the thread starts,
//! as a JAX trace is found on its stack rather than imported by `bind`.

use std::rc::Rc;

use crate::context;
use crate::context::accumulators::{nth, JvpRule, Paused, State};
use crate::context::tapes::{
    active, cut, note_custom_read, note_paused_read, pause_tapes_after, record_with,
    recording_count, Entry, Ids, TracedOp, TracedTensor, Watching,
};
use crate::error::{Error, Result};
use crate::ops;
use crate::ops::apply;
use crate::ops::batching;
use crate::primitive::{Derivative, InputMeta, Params, Primitive, Saved, Saves};
use crate::shape::Dims;
use crate::tensor::{Tensor, TensorId};
use crate::variable::Variable;

/// Makes [`record`] what `apply` calls on this thread for calls a tape or an accumulator
/// watches (see [`context::Recorder`]); every tape and accumulator calls it as it starts.
pub(crate) fn interpret_here() {
    context::with(|c| c.recorder.set(Some(record)));
}

/// Records `p`'s call on the tapes and accumulators that watch it (`w`, read by `apply`, says
/// which kinds do): its derivative family turned into a backward function (built only when a
/// tape keeps the entry) and a JVP rule (run only when an accumulator has a tangent).
pub(crate) fn record(
    p: &'static Primitive,
    inputs: &[&Tensor],
    params: &Params,
    out: &Tensor,
    w: Watching,
) -> Result<()> {
    match p.derivative {
        Derivative::None => {
            cut(p.name, inputs);
            Ok(())
        }
        Derivative::Linear { transpose } => record_watched(
            w,
            p.name,
            inputs,
            out,
            || {
                let (params, x) = (params.clone(), InputMeta::of(inputs[0]));
                listing(move |g: &Tensor, _: &[bool]| Ok([Some(transpose(&params, &x, g)?)]))
            },
            &|t: &[Option<Tensor>]| ops::tangent1(t, |t| apply(p, &[t], params)),
        ),
        Derivative::LinearInFirst { transpose } => record_watched(
            w,
            p.name,
            inputs,
            out,
            || {
                let (params, x) = (params.clone(), InputMeta::of(inputs[0]));
                let second = inputs[1].clone();
                listing(move |g: &Tensor, _: &[bool]| {
                    Ok([Some(transpose(&params, &x, &second, g)?), None])
                })
            },
            &|t: &[Option<Tensor>]| ops::tangent1(t, |t| apply(p, &[t, inputs[1]], params)),
        ),
        Derivative::LinearInAll { transpose } => record_watched(
            w,
            p.name,
            inputs,
            out,
            || {
                let params = params.clone();
                let xs: Vec<InputMeta> = inputs.iter().map(|x| InputMeta::of(x)).collect();
                move |g: &Tensor, needs: &[bool], grads: &mut Vec<Option<Tensor>>| {
                    let all = transpose(&params, &xs, g)?;
                    grads.extend(all.into_iter().zip(needs).map(|(g, &n)| n.then_some(g)));
                    Ok(())
                }
            },
            &|t: &[Option<Tensor>]| {
                if t.iter().all(Option::is_none) {
                    return Ok(None);
                }
                let tangents = t
                    .iter()
                    .zip(inputs)
                    .map(|(t, x)| match t {
                        Some(t) => Ok(t.clone()),
                        None => Tensor::zeros_like(x),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&Tensor> = tangents.iter().collect();
                apply(p, &refs, params).map(Some)
            },
        ),
        Derivative::Diagonal { saves, rule } => {
            let s = if saves == Saves::Output {
                out
            } else {
                inputs[0]
            };
            record_watched(
                w,
                p.name,
                inputs,
                out,
                || {
                    let s = s.clone();
                    listing(move |g: &Tensor, _: &[bool]| Ok([Some(rule(&s, g)?)]))
                },
                &|t: &[Option<Tensor>]| ops::tangent1(t, |t| rule(s, t)),
            )
        }
        Derivative::Broadcast { saves, partial } => {
            let jvp = |t: &[Option<Tensor>]| {
                let saved = Saved::keep(inputs, out, Saves::InputsAndOutput);
                let terms = t
                    .iter()
                    .enumerate()
                    .map(|(i, ti)| ti.as_ref().map(|ti| partial(&saved, ti, i)).transpose());
                ops::tangent_sum(terms, out.shape())
            };
            let saved = || Saved::keep(inputs, out, saves);
            if inputs.len() == 2 {
                record_watched(
                    w,
                    p.name,
                    inputs,
                    out,
                    || summed_back([dims(inputs[0]), dims(inputs[1])], saved(), partial),
                    &jvp,
                )
            } else {
                record_watched(
                    w,
                    p.name,
                    inputs,
                    out,
                    || {
                        let shapes = [dims(inputs[0]), dims(inputs[1]), dims(inputs[2])];
                        summed_back(shapes, saved(), partial)
                    },
                    &jvp,
                )
            }
        }
        Derivative::Bilinear { transpose } => {
            let jvp = |t: &[Option<Tensor>]| {
                let terms = t.iter().enumerate().map(|(i, ti)| {
                    ti.as_ref()
                        .map(|ti| {
                            let mut with_tangent = inputs.to_vec();
                            with_tangent[i] = ti;
                            apply(p, &with_tangent, params)
                        })
                        .transpose()
                });
                ops::tangent_sum(terms, out.shape())
            };
            let backward = || {
                let saved = Saved::keep(inputs, out, Saves::Inputs);
                summed_back([dims(inputs[0]), dims(inputs[1])], saved, transpose)
            };
            record_watched(w, p.name, inputs, out, backward, &jvp)
        }
        Derivative::General { vjp, jvp } => record_watched(
            w,
            p.name,
            inputs,
            out,
            || {
                let saved = Saved::keep(inputs, out, Saves::InputsAndOutput);
                let params = params.clone();
                move |g: &Tensor, needs: &[bool], grads: &mut Vec<Option<Tensor>>| {
                    grads.extend(vjp(&saved, &params, g, needs)?);
                    Ok(())
                }
            },
            &|t: &[Option<Tensor>]| {
                if t.iter().all(Option::is_none) {
                    return Ok(None);
                }
                jvp(&Saved::keep(inputs, out, Saves::InputsAndOutput), params, t)
            },
        ),
        Derivative::Reduction { weights } => record_watched(
            w,
            p.name,
            inputs,
            out,
            || {
                let (x, y, params) = (inputs[0].clone(), out.clone(), params.clone());
                listing(move |g: &Tensor, _: &[bool]| {
                    let (axes, _) = params.as_reduce(p.name)?;
                    let kept = ops::reduced_shape(x.shape(), axes, true);
                    let (yk, gk) = (ops::reshape_to(&y, &kept)?, ops::reshape_to(g, &kept)?);
                    Ok([Some(ops::multiply(&weights(&x, &yk, axes)?, &gk)?)])
                })
            },
            &|t: &[Option<Tensor>]| {
                ops::tangent1(t, |t| {
                    let (axes, keepdims) = params.as_reduce(p.name)?;
                    let x = inputs[0];
                    let kept = ops::reduced_shape(x.shape(), axes, true);
                    let w = weights(x, &ops::reshape_to(out, &kept)?, axes)?;
                    let all: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
                    ops::reduce_sum(&ops::multiply(&w, t)?, all, keepdims)
                })
            },
        ),
    }
}

/// A tensor's shape, inline up to rank 6 (no allocation per recorded op).
fn dims(t: &Tensor) -> Dims<usize> {
    Dims::from_slice(t.shape())
}

/// The gradient rule of a broadcasting primitive of `N` inputs of these shapes: `rule(saved,
/// g, i)` for each input that needs one, summed back to that input's shape.
fn summed_back<const N: usize>(
    shapes: [Dims<usize>; N],
    saved: Saved,
    rule: fn(&Saved, &Tensor, usize) -> Result<Tensor>,
) -> impl Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()> + 'static {
    move |g: &Tensor, needs: &[bool], grads: &mut Vec<Option<Tensor>>| {
        grads.reserve(N);
        for (i, shape) in shapes.iter().enumerate() {
            grads.push(ops::opt(needs[i], || {
                ops::sum_to_shape(&rule(&saved, g, i)?, shape)
            })?);
        }
        Ok(())
    }
}

/// A gradient rule that returns an array, as one that fills a list.
pub(crate) fn listing<G: IntoIterator<Item = Option<Tensor>>>(
    rule: impl Fn(&Tensor, &[bool]) -> Result<G> + 'static,
) -> impl Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()> + 'static {
    move |g: &Tensor, needs: &[bool], out: &mut Vec<Option<Tensor>>| {
        out.extend(rule(g, needs)?);
        Ok(())
    }
}

/// Records one primitive call ([`record`] is the one caller) on every recording tape
/// that watches one of its inputs, and gives its output a tangent on every
/// [`ForwardAccumulator`](crate::ForwardAccumulator) that has one for an input. `w` is the
/// context read once by `apply`, which also checked numerics. The builder is only called
/// (once) when some tape keeps the entry, and the JVP rule only when some accumulator needs
/// it. The backward rule pushes one
/// gradient per input; the JVP rule gets one tangent per input (`None`: zero) and returns the
/// output's.
pub(crate) fn record_watched<B>(
    w: Watching,
    op: &'static str,
    inputs: &[&Tensor],
    output: &Tensor,
    backward: impl FnOnce() -> B,
    jvp: &JvpRule<'_>,
) -> Result<()>
where
    B: Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()> + 'static,
{
    if w.recording {
        if output.dtype().is_float() {
            record_with(op, inputs, &[], output, backward);
        } else {
            // an integer or bool result (a cast, an index): the path ends here
            cut(op, inputs);
        }
    }
    // after the tapes: the entry of `output` comes before the ops that compute its tangent
    if w.running {
        propagate(op, inputs, &[], output, jvp)?;
    }
    Ok(())
}

/// Records an op whose inputs are tensors and variables (by handle): a custom gradient whose
/// forward read variables. The rule returns one gradient per tensor, then per variable; the
/// JVP rule gets the tangents in the same order.
pub(crate) fn record_custom<B>(
    inputs: &[&Tensor],
    variables: &[Variable],
    output: &Tensor,
    backward: impl FnOnce() -> B,
    jvp: &JvpRule<'_>,
) -> Result<()>
where
    B: Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()> + 'static,
{
    if crate::debugging::checking() {
        crate::debugging::check("custom_gradient", None, inputs, output)?;
    }
    if !output.dtype().is_float() {
        return Ok(());
    }
    let ids: Vec<TensorId> = variables.iter().map(|v| v.handle_id()).collect();
    if recording_count() != 0 {
        active(|active| {
            for tape in active.borrow().iter().filter(|t| t.recording.get()) {
                for v in variables {
                    if v.trainable() && tape.watch_accessed_variables {
                        tape.watch_variable(v);
                    }
                }
            }
        });
        record_with("custom_gradient", inputs, &ids, output, backward);
    }
    if crate::context::accumulators::any_running() {
        propagate("custom_gradient", inputs, &ids, output, jvp)?;
    }
    Ok(())
}

/// Gives `output` its tangent on every running accumulator that has a tangent for one of
/// `inputs` (or of the variables whose handles are `variables`), by the op's JVP rule. Called by
/// [`record_watched`] after the tapes have recorded the op.
pub(crate) fn propagate(
    op: &'static str,
    inputs: &[&Tensor],
    variables: &[TensorId],
    output: &Tensor,
    rule: &JvpRule<'_>,
) -> Result<()> {
    if !output.dtype().is_float() {
        return Ok(());
    }
    let mut k = 0;
    while let Some(acc) = nth(k) {
        k += 1;
        if !acc.running() {
            continue;
        }
        let tangents: Vec<Option<Tensor>> = inputs
            .iter()
            .map(|t| acc.get(t.id()))
            .chain(variables.iter().map(|&id| acc.get(id)))
            .collect();
        if tangents.iter().all(Option::is_none) {
            continue;
        }
        let tangent = {
            // this accumulator and those started after it do not see their own tangent
            // computations, nor do the tapes started after it
            let _accumulators = Paused::from(k - 1);
            let _tapes = pause_tapes_after(acc.seq.get());
            rule(&tangents)?
        };
        if let Some(t) = tangent {
            if !crate::shape::same(t.shape(), output.shape()) || t.dtype() != output.dtype() {
                return Err(Error::tape(
                    op,
                    format!(
                        "the JVP rule gave a {} {:?} tangent for a {} {:?} output",
                        t.dtype(),
                        t.shape(),
                        output.dtype(),
                        output.shape()
                    ),
                ));
            }
            acc.insert(output, t);
            let mut ops = acc.ops.borrow_mut();
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
    }
    Ok(())
}

impl State {
    /// The tangent of `t`: its own, or for one example's tensor inside a vmap, its batch's
    /// (batched at the vmap's level below any level of a vmap running inside it).
    pub(crate) fn lookup(&self, t: &Tensor) -> Result<Option<Tensor>> {
        if let Some(tangent) = self.get(t.id()) {
            return Ok(Some(tangent));
        }
        let Some((p, level)) = t.batch() else {
            return Ok(None);
        };
        match self.lookup(p)? {
            Some(tangent) => batching::batched_below(&tangent, level).map(Some),
            None => Ok(None),
        }
    }
    /// `tangent` for `primal`, and for one example's tensor inside a vmap, the batch's tangent
    /// for the whole batch the ops see (broadcast when the tangent is shared by the examples).
    pub(crate) fn register(&self, primal: &Tensor, tangent: &Tensor) -> Result<()> {
        self.insert(primal, tangent.clone());
        if let Some((p, level)) = primal.batch() {
            let b = p.shape().first().copied().unwrap_or(1);
            self.register(p, &batching::physical(tangent, level, b)?)?;
        }
        Ok(())
    }
}

/// A variable is read: trainable variables get watched by tapes that watch accessed variables,
/// and each tape that watches the variable records the read as an identity from its handle.
pub(crate) fn read_variable(var: &Variable, value: &Tensor) -> Tensor {
    let traced;
    let value = if context::traces::tracing() {
        // a read of its own (a tensor captured from the variable before is a constant)
        traced = value.with_new_id();
        context::traces::note_read(var, &traced, false);
        &traced
    } else {
        value
    };
    let read = read_on_tapes(var, value);
    if crate::context::accumulators::any_running() {
        return read_variable_forward(var.handle_id(), value, read);
    }
    read
}

fn read_on_tapes(var: &Variable, value: &Tensor) -> Tensor {
    if context::with(|c| c.tapes.in_custom_forward()) {
        note_custom_read(var);
    }
    if recording_count() == 0 || !value.dtype().is_float() {
        if value.dtype().is_float() {
            note_paused_read(var);
        }
        return value.clone();
    }
    active(|active| {
        let active = active.borrow();
        for tape in active
            .iter()
            .filter(|t| t.active.get() && !t.recording.get())
        {
            tape.note_paused_read(var.handle_id());
        }
        let mut read: Option<Tensor> = None;
        for tape in active.iter().filter(|t| t.recording.get()) {
            if var.trainable() && tape.watch_accessed_variables {
                tape.watch_variable(var);
            }
            let mut set = tape.tensors.borrow_mut();
            if !set.contains(&var.handle_id()) {
                continue;
            }
            let r = read.get_or_insert_with(|| {
                let r = value.with_new_id();
                context::traces::alias(&r, value);
                r
            });
            set.insert(r.id());
            if let Some(trace) = &tape.trace {
                let handle = TracedTensor {
                    id: var.handle_id(),
                    shape: var.shape().to_vec(),
                    dtype: var.dtype(),
                    variable: Some(var.name().unwrap_or("Variable").to_string()),
                };
                trace.borrow_mut().push(TracedOp {
                    op: "ReadVariableOp",
                    inputs: vec![handle],
                    output: TracedTensor::of(r),
                });
            }
            tape.entries.borrow_mut().push(Entry {
                op: "ReadVariableOp",
                inputs: Ids::new(std::iter::once(var.handle_id())),
                output: r.id(),
                backward: Rc::new(|g: &Tensor, _: &[bool], out: &mut Vec<Option<Tensor>>| {
                    out.push(Some(g.clone()));
                    Ok(())
                }),
            });
        }
        let inner_tape = active.iter().any(|t| {
            t.recording.get() && t.born_in != 0 && t.tensors.borrow().contains(&var.handle_id())
        });
        drop(active);
        let read = read.unwrap_or_else(|| value.clone());
        if inner_tape {
            // A tape inside a vmap: each example reads its own copy of the variable (a
            // broadcast view), so its gradient is per example instead of summed over them.
            if let Some(copy) = batching::per_example_copy(var.handle_id(), &read) {
                return copy;
            }
        }
        read
    })
}

/// A variable is read while accumulators run: the read gets the variable's tangent on each
/// accumulator that has one. `value` is the variable's storage, `read` what the tapes made of
/// it (a fresh id when a tape watches the variable, a per-example copy inside a vmap).
fn read_variable_forward(handle: TensorId, value: &Tensor, read: Tensor) -> Tensor {
    let mut read = read;
    let mut k = 0;
    while let Some(acc) = nth(k) {
        k += 1;
        let Some(t) = acc.running().then(|| acc.get(handle)).flatten() else {
            continue;
        };
        if read.id() == value.id() {
            // one tangent per read, never on the variable's storage itself
            let fresh = read.with_new_id();
            context::traces::alias(&fresh, &read);
            read = fresh;
        }
        if acc.register(&read, &t).is_err() {
            // a per-example copy whose vmap is gone: no tangent, as for an unread variable
            continue;
        }
    }
    read
}
