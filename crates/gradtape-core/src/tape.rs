//! The gradient tape: a flat, thread-local record of differentiable operations.
//!
//! The tape knows no op by name. Each primitive call (`ops::apply`), after computing its result,
//! hands it to `record::record`, which turns the primitive's derivative into a backward
//! function and a JVP rule; a tape keeps an entry (`context::tapes::Entry`) when any input is
//! watched by a tape that is recording (TensorFlow's rule), and the running forward
//! accumulators get the JVP rule ([`crate::forward_accumulator`]). Entries are appended in
//! execution order, which is already a topological order, so the backward pass here walks them
//! in reverse with no graph sort and no recursion. This module is that backward pass (with
//! jacobians) and the handles users hold; the recording state is in `context::tapes`.
//!
//! Backward functions are written with the same differentiable ops, so a tape that is recording
//! while another computes a gradient records that computation: nested tapes give higher-order
//! derivatives for free.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::context;
use crate::context::levels;
use crate::context::tapes::{
    active, give_entries, give_map, give_set, next_seq, set_recording, take_entries, take_map,
    take_set, Entry, IdMap, IdSet, TapeState, TracedOp,
};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops;
use crate::ops::batching;
use crate::source::private::Sealed as _;
use crate::source::{Source, SourceKey, Sources, UnconnectedGradients};
use crate::tensor::{Tensor, TensorId};
use crate::variable::Variable;
// ---------------------------------------------------------------------------------------------
// The backward pass

/// Options of [`GradientTape::gradient_with`] and [`PersistentTape::gradient_with`].
///
/// ```
/// let opts = gradtape::GradientOptions::default();
/// assert!(opts.output_gradients.is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct GradientOptions {
    /// One seed per target (the vector of a vector-Jacobian product), each of the target's
    /// shape and dtype; ones when absent.
    pub output_gradients: Option<Vec<Tensor>>,
    /// What to return for sources the targets do not depend on.
    pub unconnected_gradients: UnconnectedGradients,
}

fn accumulate(grads: &mut IdMap<Tensor>, id: TensorId, g: Tensor) -> Result<()> {
    match grads.remove(&id) {
        Some(mut prev) => {
            if !add_in_place(&mut prev, &g) {
                prev = ops::add(&prev, &g)?;
            }
            grads.insert(id, prev)
        }
        None => grads.insert(id, g),
    };
    Ok(())
}

/// `prev += g` in `prev`'s own buffer, when that is sound and nothing watches: `prev` is the
/// one handle to its host buffer (the partial sum only this pass holds), `g` has its shape
/// and dtype, and no tape, accumulator, trace or check sees the op (those would have to
/// record an `add`). The same sum as `ops::add(prev, g)`, element by element in the same
/// order, without a fresh buffer per partial gradient: a loop over 50 time steps adds 50
/// recurrent-kernel gradients into one, and the fresh buffers (allocation, zeroed pages,
/// a third stream of memory) were a third of an LSTM training step.
fn add_in_place(prev: &mut Tensor, g: &Tensor) -> bool {
    fn go<T: crate::dtype::Element + std::ops::AddAssign + Copy>(
        prev: &mut Tensor,
        g: &Tensor,
    ) -> bool {
        let Ok(src) = g.contiguous_data::<T>() else {
            return false;
        };
        let Some(dst) = prev.unique_elems_mut::<T>() else {
            return false;
        };
        if dst.len() != src.len() {
            return false;
        }
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d += *s;
        }
        true
    }
    if !crate::shape::same(prev.shape(), g.shape())
        || prev.dtype() != g.dtype()
        || prev.batch().is_some()
        || g.batch().is_some()
        || !context::with(|c| context::tapes::Watching::of(c).nothing())
    {
        return false;
    }
    match prev.dtype() {
        DType::F32 => go::<f32>(prev, g),
        DType::F64 => go::<f64>(prev, g),
        _ => false,
    }
}

/// Walks `entries` backwards from the targets and returns one gradient per source.
/// `traced` holds the sources that are on the tape; the others get no gradient (but a source
/// that is a target still gets its seed).
fn backprop(
    mut entries: Vec<Entry>,
    targets: &[&Tensor],
    sources: &[SourceKey],
    traced: IdSet,
    options: &GradientOptions,
) -> Result<Vec<Option<Tensor>>> {
    let op = "gradient";
    let mut grads: IdMap<Tensor> = take_map();
    if let Some(og) = &options.output_gradients {
        if og.len() != targets.len() {
            return Err(Error::arg(
                op,
                format!(
                    "{} output_gradients given for {} targets",
                    og.len(),
                    targets.len()
                ),
            ));
        }
    }
    for (i, t) in targets.iter().enumerate() {
        if !t.dtype().is_float() {
            continue;
        }
        let seed = match &options.output_gradients {
            Some(og) => {
                let s = &og[i];
                if !crate::shape::same(s.shape(), t.shape()) || s.dtype() != t.dtype() {
                    return Err(Error::shape(
                        op,
                        format!(
                            "output_gradients[{i}] has shape {:?} and dtype {}, target has shape {:?} and dtype {}",
                            s.shape(),
                            s.dtype(),
                            t.shape(),
                            t.dtype()
                        ),
                    ));
                }
                s.clone()
            }
            None => Tensor::ones_like(t)?,
        };
        accumulate(&mut grads, t.id(), seed)?;
    }

    let mut source_ids = take_set();
    source_ids.extend(sources.iter().map(|s| s.id));
    // Forward sweep: which tensors depend on a traced source. Only those need gradients.
    let mut reach = traced;
    for e in &entries {
        if e.inputs.as_slice().iter().any(|i| reach.contains(i)) {
            reach.insert(e.output);
        }
    }

    let (mut needs, mut input_grads) = (Vec::new(), Vec::new());
    let checking = crate::debugging::checking();
    while let Some(e) = entries.pop() {
        if !reach.contains(&e.output) {
            continue;
        }
        let g = if source_ids.contains(&e.output) {
            grads.get(&e.output).cloned()
        } else {
            grads.remove(&e.output)
        };
        let Some(g) = g else { continue };
        let inputs = e.inputs.as_slice();
        needs.clear();
        needs.extend(inputs.iter().map(|i| reach.contains(i)));
        input_grads.clear();
        if checking {
            crate::debugging::in_gradient_of(e.op, || (e.backward)(&g, &needs, &mut input_grads))?;
        } else {
            (e.backward)(&g, &needs, &mut input_grads)?;
        }
        if checking {
            for ig in input_grads.iter().flatten() {
                crate::debugging::check("gradient", Some(e.op), &[&g], ig)?;
            }
        }
        if input_grads.len() != inputs.len() {
            return Err(Error::tape(
                e.op,
                format!(
                    "gradient rule returned {} gradients for {} inputs",
                    input_grads.len(),
                    inputs.len()
                ),
            ));
        }
        for ((&id, &need), ig) in inputs.iter().zip(&needs).zip(input_grads.drain(..)) {
            if let (true, Some(ig)) = (need, ig) {
                accumulate(&mut grads, id, ig)?;
            }
        }
        // `e` (and what its backward function saved) is dropped here, as soon as it is used.
    }

    let result = sources
        .iter()
        .map(|s| match grads.get(&s.id) {
            Some(g) => Ok(Some(g.clone())),
            None => match options.unconnected_gradients {
                UnconnectedGradients::None => Ok(None),
                UnconnectedGradients::Zero => Tensor::zeros(&s.shape, s.dtype).map(Some),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    give_map(grads);
    give_set(reach);
    give_set(source_ids);
    give_entries(entries);
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Gradients inside a vmap: per-example gradients

/// `backprop`, or, when the targets are one example's tensors inside a vmap (a tape used in
/// the function given to [`crate::vmap()`]), each example's gradients: the tape recorded the
/// whole batch, so the gradient of example `i`'s target is taken with respect to example `i`
/// of a batched source (one backward pass seeded with ones), and with respect to a shared
/// source (a variable, an unbatched tensor) as the jacobian of the batch of targets (one
/// backward pass over a batch of one-hot seeds). Either way the result is one example's
/// gradient, batched like the target.
fn gradients(
    entries: Vec<Entry>,
    targets: &[&Tensor],
    keys: &[SourceKey],
    traced: &dyn Fn(&[SourceKey]) -> IdSet,
    options: &GradientOptions,
) -> Result<Vec<Option<Tensor>>> {
    let op = "gradient";
    let Some(level) = levels::level_of(targets) else {
        return backprop(entries, targets, keys, traced(keys), options);
    };
    let mut whole = vec![];
    for t in targets {
        // (the whole batch may itself be one example of an outer vmap: the passes below
        // take that level apart the same way)
        match t.batch() {
            Some((p, l)) if l == level => whole.push(p.clone()),
            _ => {
                return Err(Error::tape(
                    op,
                    "inside vmap, every target must be one example's tensor of the innermost vmap (a target of an outer vmap only is not supported yet)",
                ))
            }
        }
    }
    let whole: Vec<&Tensor> = whole.iter().collect();
    let b = whole.first().map_or(0, |t| t.shape()[0]);
    // Each example's seed for its own target, as the whole batch: the given output gradients
    // (repeated when they do not depend on the example), or ones.
    let seeds: Vec<Tensor> = match &options.output_gradients {
        Some(og) if og.len() == whole.len() => og
            .iter()
            .map(|s| match batching::whole_at(s, level)? {
                Some(p) => Ok(p),
                None => {
                    let mut full = vec![b];
                    full.extend_from_slice(s.shape());
                    ops::broadcast_to(&ops::expand_dims(s, 0)?, &full)
                }
            })
            .collect::<Result<_>>()?,
        Some(og) => {
            return Err(Error::arg(
                op,
                format!(
                    "{} output_gradients given for {} targets",
                    og.len(),
                    whole.len()
                ),
            ))
        }
        None => whole
            .iter()
            .map(|t| Tensor::ones_like(t))
            .collect::<Result<_>>()?,
    };
    let plain = GradientOptions {
        output_gradients: Some(seeds.clone()),
        unconnected_gradients: options.unconnected_gradients,
    };
    let mut out: Vec<Option<Tensor>> = vec![None; keys.len()];
    // Sources batched at this level, and variables read as per-example copies: their batch is
    // on the tape, so one pass seeded with ones gives each example's gradient.
    let whole_key = |k: &SourceKey| whole_key(k, level);
    let batched: Vec<usize> = (0..keys.len())
        .filter(|&k| whole_key(&keys[k]).is_some())
        .collect();
    if !batched.is_empty() {
        let bkeys: Vec<SourceKey> = batched
            .iter()
            .filter_map(|&k| whole_key(&keys[k]))
            .collect();
        let gs = gradients(entries.clone(), &whole, &bkeys, traced, &plain)?;
        for (&k, g) in batched.iter().zip(gs) {
            out[k] = g.map(|g| batching::batched_below(&g, level)).transpose()?;
        }
    }
    // Shared sources: the jacobian of the batch of targets, one row per example.
    let shared: Vec<usize> = (0..keys.len()).filter(|k| !batched.contains(k)).collect();
    if !shared.is_empty() {
        let skeys: Vec<SourceKey> = shared.iter().map(|&k| keys[k].copy()).collect();
        let gs = levels::with_level(b, |l2| -> Result<Vec<Option<Tensor>>> {
            let seeds = whole
                .iter()
                .zip(&seeds)
                .map(|(t, s)| {
                    // seed[j, i, ...] = s[i, ...] where i == j: example j's target alone
                    let mut unit = vec![b, b];
                    unit.extend(std::iter::repeat_n(1, t.rank() - 1));
                    let eye = ops::reshape_to(&Tensor::eye(b, t.dtype())?, &unit)?;
                    let seed = ops::multiply(&eye, &ops::expand_dims(s, 0)?)?;
                    Ok(Tensor::batched(seed, l2))
                })
                .collect::<Result<Vec<_>>>()?;
            let opts = GradientOptions {
                output_gradients: Some(seeds),
                unconnected_gradients: options.unconnected_gradients,
            };
            let gs = gradients(entries, &whole, &skeys, traced, &opts)?;
            gs.into_iter()
                .map(|g| g.map(|g| batching::physical(&g, l2, b)).transpose())
                .collect()
        })?;
        for (&k, g) in shared.iter().zip(gs) {
            out[k] = g.map(|g| batching::batched_below(&g, level)).transpose()?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Jacobians: one backward pass over a batch of cotangents

/// Options of the tapes' `jacobian_with` and `batch_jacobian_with`.
///
/// ```
/// let opts = gradtape::JacobianOptions { chunk_size: Some(64), ..Default::default() };
/// assert_eq!(opts.unconnected_gradients, gradtape::UnconnectedGradients::None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct JacobianOptions {
    /// What to return for sources the target does not depend on: `None`, or zeros of the
    /// jacobian's shape.
    pub unconnected_gradients: UnconnectedGradients,
    /// At most this many rows of the jacobian per backward pass (TensorFlow's
    /// `parallel_iterations`, PyTorch's `chunk_size`): bounds the memory of a large jacobian.
    /// The result does not depend on it. `None`: as many rows per pass as keep the pass's
    /// one-hot seeds under 4 Mi elements (all rows, for targets up to 2048 elements).
    pub chunk_size: Option<usize>,
}

/// The tapes' `batch_jacobian_with`, from `tape`'s recorded `entries`. The target must have
/// its own batch axis: one example's tensor inside a vmap has none.
fn batch_jacobian_from(
    tape: &Tape,
    entries: &[Entry],
    target: &Tensor,
    source: &dyn Source,
    options: &JacobianOptions,
) -> Result<Option<Tensor>> {
    if target.batch().is_some() {
        return Err(Error::tape(
            "batch_jacobian",
            "the target is one example's tensor inside vmap, which has no batch axis of its own: use jacobian inside the vmap (batch_jacobian there is not supported yet)",
        ));
    }
    let keys = Tape::key_list(&[source]);
    batch_jacobian_of(entries, target, &keys[0], &|k| tape.traced(k), options)
}

/// The rows of an identity matrix of size `n` from `start`, `len` of them, as `[len, n]`.
fn basis_rows(start: usize, len: usize, n: usize, dtype: DType) -> Result<Tensor> {
    let elems = len.saturating_mul(n); // too many: take refuses it
    let mut eye = crate::backend::pool::filled("jacobian", elems, 0.0f64)?;
    for i in 0..len {
        eye[i * n + start + i] = 1.0;
    }
    Tensor::from_vec(eye, &[len, n])?.cast(dtype)
}

/// Without a `chunk_size`, the most cotangent elements one backward pass seeds (4 Mi, 32 MB
/// in float64): a `[65536]` target's seeds all at once were 4 Gi elements, an abort. The
/// result does not depend on the chunking.
const SEED_ELEMENTS: usize = 1 << 22;

/// The jacobian of `target` with respect to each source, from a copy of the recorded
/// `entries`: each chunk of rows is one backward pass whose cotangent is a batch (a vmap
/// level) of one-hot seeds, so every gradient rule runs once per chunk, batched.
/// `seeds(start, len)` gives the chunk's cotangents, batch axis first; `finish(source, g)`
/// turns the stacked result (`[rows, ...source]`) into the jacobian's layout.
#[allow(clippy::too_many_arguments)]
fn jacobians(
    entries: &[Entry],
    target: &Tensor,
    keys: &[SourceKey],
    traced: &dyn Fn(&[SourceKey]) -> IdSet,
    rows: usize,
    options: &JacobianOptions,
    seeds: impl Fn(usize, usize) -> Result<Tensor>,
    finish: impl Fn(&SourceKey, Tensor) -> Result<Tensor>,
    full_shape: impl Fn(&SourceKey) -> Vec<usize>,
) -> Result<Vec<Option<Tensor>>> {
    let op = "jacobian";
    if !target.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!(
                "the target must be float32 or float64, got {}",
                target.dtype()
            ),
        ));
    }
    let chunk = match options.chunk_size {
        Some(0) => return Err(Error::arg(op, "chunk_size must be at least 1")),
        Some(c) => c,
        // each row of a chunk seeds the whole target
        None => (SEED_ELEMENTS / target.numel().max(1)).clamp(1, rows.max(1)),
    };
    // the jacobians themselves must fit before any pass runs
    for key in keys {
        let shape = full_shape(key);
        if crate::shape::checked_numel(&shape).is_none() {
            return Err(Error::resource(
                op,
                format!(
                    "the jacobian of a {:?} target with respect to a {:?} source ({shape:?}) has more elements than memory can hold",
                    target.shape(),
                    key.shape
                ),
            ));
        }
    }
    let once = target.batch().is_none().then(|| traced(keys));
    let mut parts: Vec<Vec<Tensor>> = vec![vec![]; keys.len()];
    let mut connected = vec![false; keys.len()];
    let mut start = 0;
    while start < rows {
        let len = chunk.min(rows - start);
        let seed = seeds(start, len)?;
        let grads = levels::with_level(len, |level| -> Result<Vec<Option<Tensor>>> {
            let opts = GradientOptions {
                output_gradients: Some(vec![Tensor::batched(seed, level)]),
                unconnected_gradients: UnconnectedGradients::None,
            };
            // a target that is one example of a vmap (a jacobian inside nested vmaps):
            // `gradients` takes its level apart
            let gs = match &once {
                Some(traced) => backprop(entries.to_vec(), &[target], keys, traced.clone(), &opts)?,
                None => gradients(entries.to_vec(), &[target], keys, traced, &opts)?,
            };
            gs.into_iter()
                .map(|g| g.map(|g| batching::physical(&g, level, len)).transpose())
                .collect()
        })?;
        for (k, g) in grads.into_iter().enumerate() {
            if let Some(g) = g {
                connected[k] = true;
                parts[k].push(g);
            }
        }
        start += len;
    }
    keys.iter()
        .zip(parts)
        .zip(connected)
        .map(|((key, parts), connected)| {
            if !key.dtype.is_float() {
                return Ok(None);
            }
            if !connected || rows == 0 {
                return match options.unconnected_gradients {
                    UnconnectedGradients::None if rows > 0 => Ok(None),
                    _ => Tensor::zeros(&full_shape(key), key.dtype).map(Some),
                };
            }
            // one chunk needs no copy
            let stacked = match <[Tensor; 1]>::try_from(parts) {
                Ok([only]) => only,
                Err(parts) => ops::concat(&parts, 0)?,
            };
            finish(key, stacked).map(Some)
        })
        .collect()
}

/// `jacobian` for both kinds of tape: rows are the target's elements. `traced` gives the ids
/// of the sources on the tape.
fn full_jacobian(
    entries: &[Entry],
    target: &Tensor,
    keys: &[SourceKey],
    traced: &dyn Fn(&[SourceKey]) -> IdSet,
    options: &JacobianOptions,
) -> Result<Vec<Option<Tensor>>> {
    if let Some((whole, level)) = target.batch() {
        return jacobian_inside_vmap(entries, whole, level, keys, traced, options);
    }
    let n = target.numel();
    let shape_of = |key: &SourceKey| -> Vec<usize> {
        target.shape().iter().chain(&key.shape).copied().collect()
    };
    jacobians(
        entries,
        target,
        keys,
        traced,
        n,
        options,
        |start, len| {
            let mut shape = vec![len];
            shape.extend_from_slice(target.shape());
            ops::reshape_to(&basis_rows(start, len, n, target.dtype())?, &shape)
        },
        |key, g| ops::reshape_to(&g, &shape_of(key)),
        shape_of,
    )
}

/// A jacobian taken inside a vmap (`vmap(jacrev(f))`, JAX's and `torch.func`'s way of
/// per-example jacobians): the tape recorded the whole batch, so the jacobian of example `i`'s
/// target with respect to example `i` of a batched source is the batch jacobian of the whole
/// target, and with respect to a shared source (a variable, an unbatched tensor) one row of
/// the whole target's jacobian. Either way the result is one example's jacobian, batched like
/// the target.
fn jacobian_inside_vmap(
    entries: &[Entry],
    whole: &Tensor,
    level: usize,
    keys: &[SourceKey],
    traced: &dyn Fn(&[SourceKey]) -> IdSet,
    options: &JacobianOptions,
) -> Result<Vec<Option<Tensor>>> {
    keys.iter()
        .map(|k| {
            let j = match whole_key(k, level) {
                Some(wk) => batch_jacobian_of(entries, whole, &wk, traced, options)?,
                None => full_jacobian(entries, whole, &[k.copy()], traced, options)?
                    .into_iter()
                    .next()
                    .flatten(),
            };
            Ok(j.map(|j| Tensor::batched(j, level)))
        })
        .collect()
}

/// The key of a source's whole batch at `level`: its own batch, or the per-example copy of a
/// variable read there; `None` for a source shared by the examples.
fn whole_key(k: &SourceKey, level: usize) -> Option<SourceKey> {
    match &k.batch {
        Some((p, l)) if *l == level => Some(p.copy()),
        Some(_) => None,
        None => levels::copy_of(k.id, level).and_then(|c| {
            c.batch()
                .map(|(p, _)| crate::source::private::Sealed::key(p))
        }),
    }
}

/// `batch_jacobian` for both kinds of tape: rows are the elements of one example of the
/// target, seeded in every example at once.
fn batch_jacobian_of(
    entries: &[Entry],
    target: &Tensor,
    key: &SourceKey,
    traced: &dyn Fn(&[SourceKey]) -> IdSet,
    options: &JacobianOptions,
) -> Result<Option<Tensor>> {
    let op = "batch_jacobian";
    // TensorFlow's rule: a batch axis and at least one axis of the example, on both sides
    // (`batch_jacobian` of a rank-1 tensor raises there; the jacobian's diagonal is what
    // it would mean, which `jacobian` gives)
    if target.rank() < 2 || key.shape.len() < 2 || target.shape()[0] != key.shape[0] {
        return Err(Error::shape(
            op,
            format!(
                "target {:?} and source {:?} must each have rank 2 or more (a batch axis, then \
                 the example's axes), with first (batch) axes of one size",
                target.shape(),
                key.shape
            ),
        ));
    }
    let b = target.shape()[0];
    let rest = &target.shape()[1..];
    let m: usize = rest.iter().product();
    let shape_of = |key: &SourceKey| -> Vec<usize> {
        let mut s = vec![b];
        s.extend_from_slice(rest);
        s.extend_from_slice(&key.shape[1..]);
        s
    };
    let out = jacobians(
        entries,
        target,
        std::slice::from_ref(key),
        traced,
        m,
        options,
        |start, len| {
            // row j of the chunk: one-hot at element start + j of every example
            let rows = ops::reshape_to(&basis_rows(start, len, m, target.dtype())?, &[len, 1, m])?;
            let every = ops::broadcast_to(&rows, &[len, b, m])?;
            let mut shape = vec![len, b];
            shape.extend_from_slice(rest);
            ops::reshape_to(&every, &shape)
        },
        |key, g| {
            // [m, b, ...source_rest] -> [b, m, ...source_rest] -> [b, ...rest, ...source_rest]
            let mut perm: Vec<usize> = (0..g.rank()).collect();
            perm.swap(0, 1);
            ops::reshape_to(&ops::transpose(&g, Some(&perm))?, &shape_of(key))
        },
        shape_of,
    )?;
    Ok(out.into_iter().next().flatten())
}

// ---------------------------------------------------------------------------------------------
// The user's handles

/// What both kinds of tape can do while they live: watch, pause, reset, inspect.
///
/// [`GradientTape`] and [`PersistentTape`] dereference to it.
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(1.0f32);
/// let tape = GradientTape::new(); // derefs to Tape
/// tape.watch(&x);
/// let _ = ops::exp(&x)?;
/// assert_eq!(tape.recorded_ops(), vec!["exp"]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Tape {
    state: Rc<TapeState>,
}

impl Tape {
    fn start(watch_accessed_variables: bool, trace: bool) -> Tape {
        let state = Rc::new(TapeState {
            seq: Cell::new(next_seq()),
            watch_accessed_variables,
            recording: Cell::new(false),
            active: Cell::new(true),
            pauses: Cell::new(0),
            resume_to: Cell::new(false),
            tensors: RefCell::new(take_set()),
            entries: RefCell::new(take_entries()),
            variables: RefCell::default(),
            trace: trace.then(RefCell::default),
            born_in: levels::innermost().map_or(0, |(level, _)| level),
            cuts: RefCell::default(),
            paused_reads: RefCell::default(),
        });
        crate::record::interpret_here();
        active(|a| a.borrow_mut().push(state.clone()));
        set_recording(&state, true);
        Tape { state }
    }

    /// Ensures `source` is traced by this tape, so gradients with respect to it can be taken.
    /// Integer and bool tensors are never watched (they have no gradient).
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(3.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = ops::multiply(&x, &x)?;
    /// let [dy_dx] = tape.gradient(&y, [&x])?;
    /// assert_eq!(dy_dx.unwrap().to_scalar::<f32>()?, 6.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn watch(&self, source: &impl Source) {
        source.watch_on(&self.state);
    }

    /// Runs `f` without this tape recording (TensorFlow's `with tape.stop_recording():`).
    /// Other tapes keep recording.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(2.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = tape.stop_recording(|| ops::square(&x))?;
    /// let [g] = tape.gradient(&y, [&x])?;
    /// assert!(g.is_none());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn stop_recording<R>(&self, f: impl FnOnce() -> R) -> R {
        let _paused = self.stop_recording_guard();
        f()
    }

    /// [`stop_recording`](Self::stop_recording) until the guard is dropped: TensorFlow's
    /// `with tape.stop_recording():` as a block, ended by its end or an early `?`. Guards
    /// dropped in any order keep the tape paused while any is alive.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(2.0f32);
    /// let tape = GradientTape::persistent();
    /// tape.watch(&x);
    /// let y = {
    ///     let _paused = tape.stop_recording_guard();
    ///     ops::square(&x)?
    /// };
    /// assert!(tape.is_recording());
    /// assert!(tape.gradient(&y, &x)?.is_none());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn stop_recording_guard(&self) -> StopRecordingGuard<'_> {
        let s = &self.state;
        if s.pauses.get() == 0 {
            s.resume_to.set(s.recording.get());
        }
        s.pauses.set(s.pauses.get() + 1);
        set_recording(s, false);
        StopRecordingGuard {
            state: s,
            _thread: std::marker::PhantomData,
        }
    }

    /// Why the gradient of `target` with respect to `source` is `None`, in words; `None` when
    /// there is a gradient. The answers: the tensor was never watched; the variable is not
    /// trainable, or the tape does not watch accessed variables, or it was read only inside
    /// `stop_recording`, or never while the tape recorded; the path is cut by `stop_gradient`,
    /// an `assign`, a cast to an integer type or an op with no gradient (named); or the target
    /// does not use it. Ask before taking the gradient of a non-persistent tape.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(2.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = ops::multiply(&ops::stop_gradient(&x)?, &3.0)?;
    /// let why = tape.why_no_gradient(&y, &x).unwrap();
    /// assert!(why.contains("stop_gradient"), "{why}");
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn why_no_gradient(&self, target: &Tensor, source: &dyn Source) -> Option<String> {
        let state = &self.state;
        let key = source.key();
        let tensors = state.tensors.borrow();
        if !key.dtype.is_float() {
            return Some(format!(
                "the source is {}: gradients exist for float sources only",
                key.dtype
            ));
        }
        if !tensors.contains(&key.id) {
            return Some(match source.variable() {
                Some(v) => {
                    let name = v.name().unwrap_or("the variable");
                    if !v.trainable() {
                        format!("{name} is not trainable, so reading it does not watch it (watch it with tape.watch)")
                    } else if !state.watch_accessed_variables {
                        format!("the tape does not watch accessed variables (watch_accessed_variables(false)) and {name} was never watched")
                    } else if state.paused_reads.borrow().contains(&v.handle_id()) {
                        format!("{name} was read only while the tape was paused (inside stop_recording)")
                    } else {
                        format!("{name} was never read while the tape recorded (was it read before the tape started?)")
                    }
                }
                None => "the tensor was never watched (tape.watch) and is not the result of a recorded op".to_string(),
            });
        }
        if !target.dtype().is_float() {
            return Some(format!(
                "the target is {}: gradients flow from float targets only",
                target.dtype()
            ));
        }
        // Everything computed from the source on this tape.
        let mut reach = take_set();
        reach.insert(key.id);
        for e in state.entries.borrow().iter() {
            if e.inputs.as_slice().iter().any(|i| reach.contains(i)) {
                reach.insert(e.output);
            }
        }
        if reach.contains(&target.id()) {
            return None;
        }
        let cut = state
            .cuts
            .borrow()
            .iter()
            .find(|(_, ins)| ins.iter().any(|i| reach.contains(i)))
            .map(|(op, _)| *op);
        Some(match cut {
            Some("stop_gradient") => "its path to the target is cut by stop_gradient".to_string(),
            Some("assign") => "its path to the target is cut by an assign (a variable's new value does not remember what it was computed from)".to_string(),
            Some("cast") => "its path to the target is cut by a cast to an integer or bool type (no gradient flows through it)".to_string(),
            Some(op) => format!("its path to the target is cut by {op}, which has no gradient"),
            None => "the target does not depend on it".to_string(),
        })
    }

    /// Ends recording for good (the end of TensorFlow's `with` block). Gradients can still
    /// be taken from what was recorded.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(1.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// tape.stop();
    /// let _ = ops::exp(&x)?; // not recorded
    /// assert!(tape.recorded_ops().is_empty());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn stop(&self) {
        if self.state.active.replace(false) {
            set_recording(&self.state, false);
            context::try_with(|c| {
                c.tapes
                    .active
                    .borrow_mut()
                    .retain(|t| !Rc::ptr_eq(t, &self.state))
            });
        }
    }

    /// Records again after [`stop`](Self::stop), as the innermost tape or accumulator of the
    /// thread: TensorFlow's `with tape:` entered a second time (a persistent tape kept across
    /// several blocks). What ran while it was stopped is not on the tape.
    ///
    /// # Errors
    /// When it is recording already (TensorFlow's "already recording").
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(3.0f32);
    /// let tape = GradientTape::persistent();
    /// tape.watch(&x);
    /// let y = ops::square(&x)?;
    /// tape.stop();
    /// let unseen = ops::multiply(&y, &2.0)?;
    /// tape.resume()?;
    /// let z = ops::multiply(&y, &10.0)?;
    /// tape.stop();
    /// assert_eq!(tape.gradient(&z, &x)?.unwrap().item()?, 60.0);
    /// assert!(tape.gradient(&unseen, &x)?.is_none());
    /// assert!(tape.resume().is_ok() && tape.resume().is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn resume(&self) -> Result<()> {
        if self.state.active.get() {
            return Err(Error::tape(
                "GradientTape",
                "resume: the tape is already recording",
            ));
        }
        self.state.seq.set(next_seq());
        self.state.active.set(true);
        crate::record::interpret_here();
        active(|a| a.borrow_mut().push(self.state.clone()));
        set_recording(&self.state, true);
        Ok(())
    }

    /// True while the tape records (created, not stopped, not paused).
    ///
    /// ```
    /// let tape = gradtape::GradientTape::new();
    /// assert!(tape.is_recording());
    /// tape.stop_recording(|| assert!(!tape.is_recording()));
    /// ```
    pub fn is_recording(&self) -> bool {
        self.state.recording.get()
    }

    /// Forgets everything recorded and watched; a tape still recording goes on recording.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(2.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let _ = ops::square(&x)?;
    /// tape.reset();
    /// assert!(tape.recorded_ops().is_empty());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reset(&self) {
        if let Some(t) = &self.state.trace {
            t.borrow_mut().clear();
        }
        self.state.tensors.borrow_mut().clear();
        self.state.entries.borrow_mut().clear();
        self.state.variables.borrow_mut().clear();
    }

    /// The variables this tape watches, in the order they were first watched.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Variable};
    /// let v = Variable::new(1.0);
    /// let tape = GradientTape::new();
    /// let _ = ops::square(&v)?;
    /// assert_eq!(tape.watched_variables().len(), 1);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn watched_variables(&self) -> Vec<Variable> {
        self.state.variables.borrow().clone()
    }

    /// What a tape built with [`TapeBuilder::trace`] recorded: each op with the shapes and
    /// dtypes of its inputs and output, in order. Empty for a tape that does not trace.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Variable};
    /// let b = Variable::with_options(2.0, gradtape::VariableOptions { name: Some("b".into()), trainable: true });
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
    /// let tape = GradientTape::builder().trace(true).start();
    /// let _ = ops::multiply(&b, &x)?;
    /// let t = tape.trace();
    /// assert_eq!((t[0].op, t[0].inputs[0].variable.as_deref()), ("ReadVariableOp", Some("b")));
    /// assert_eq!((t[1].op, t[1].output.shape.clone()), ("multiply", vec![3]));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn trace(&self) -> Vec<TracedOp> {
        self.state
            .trace
            .as_ref()
            .map(|t| t.borrow().clone())
            .unwrap_or_default()
    }

    /// The names of the operations recorded so far, in order (for inspection and teaching).
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(1.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let _ = ops::sin(&ops::square(&x)?)?;
    /// assert_eq!(tape.recorded_ops(), vec!["square", "sin"]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn recorded_ops(&self) -> Vec<&'static str> {
        self.state.entries.borrow().iter().map(|e| e.op).collect()
    }

    fn key_list(sources: &[&dyn Source]) -> Vec<SourceKey> {
        sources.iter().map(|s| s.key()).collect()
    }

    /// The sources this tape traces (watched, or computed from watched tensors).
    fn traced(&self, keys: &[SourceKey]) -> IdSet {
        let on_tape = self.state.tensors.borrow();
        keys.iter()
            .map(|k| k.id)
            .filter(|id| on_tape.contains(id))
            .collect()
    }
}

/// See [`Tape::stop_recording_guard`].
#[must_use = "the tape records again when the guard is dropped"]
pub struct StopRecordingGuard<'a> {
    state: &'a TapeState,
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for StopRecordingGuard<'_> {
    fn drop(&mut self) {
        let s = self.state;
        s.pauses.set(s.pauses.get().saturating_sub(1));
        if s.pauses.get() == 0 && s.resume_to.get() && s.active.get() {
            set_recording(s, true);
        }
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builder for tapes with TensorFlow's options.
///
/// ```
/// use gradtape::{ops, GradientTape, Variable};
/// let v = Variable::new(3.0);
/// let tape = GradientTape::builder().watch_accessed_variables(false).start();
/// let y = ops::square(&v)?;
/// let [g] = tape.gradient(&y, [&v])?;
/// assert!(g.is_none()); // not watched
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TapeBuilder {
    watch_accessed_variables: bool,
    trace: bool,
}

impl TapeBuilder {
    /// Whether trainable variables read while recording are watched automatically (default
    /// true).
    ///
    /// ```
    /// let tape = gradtape::GradientTape::builder().watch_accessed_variables(false).start();
    /// let v = gradtape::Variable::new(1.0);
    /// let _ = gradtape::ops::square(&v);
    /// assert!(tape.watched_variables().is_empty());
    /// ```
    pub fn watch_accessed_variables(mut self, yes: bool) -> Self {
        self.watch_accessed_variables = yes;
        self
    }
    /// Whether the tape also keeps the shapes and dtypes of every op's inputs and output, for
    /// [`Tape::trace`] (default false: it costs a little per recorded op).
    ///
    /// ```
    /// let tape = gradtape::GradientTape::builder().trace(true).start();
    /// assert!(tape.trace().is_empty());
    /// ```
    pub fn trace(mut self, yes: bool) -> Self {
        self.trace = yes;
        self
    }
    /// Starts a tape that allows one gradient call.
    ///
    /// ```
    /// let tape = gradtape::GradientTape::builder().start();
    /// assert!(tape.is_recording());
    /// ```
    pub fn start(self) -> GradientTape {
        GradientTape {
            tape: Tape::start(self.watch_accessed_variables, self.trace),
        }
    }
    /// Starts a tape that allows any number of gradient calls.
    ///
    /// ```
    /// let tape = gradtape::GradientTape::builder().start_persistent();
    /// assert!(tape.is_recording());
    /// ```
    pub fn start_persistent(self) -> PersistentTape {
        PersistentTape {
            tape: Tape::start(self.watch_accessed_variables, self.trace),
        }
    }
}

/// TensorFlow's `tf.GradientTape()`: records from creation, allows one gradient call.
///
/// `gradient` consumes the tape, so a second call does not compile:
///
/// ```compile_fail
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(1.0f32);
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = ops::square(&x).unwrap();
/// let _ = tape.gradient(&y, [&x]);
/// let _ = tape.gradient(&y, [&x]); // error: use of moved value `tape`
/// ```
///
/// The seed's training step:
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor, Variable};
/// let (a, b) = (Variable::new(0.0), Variable::new(0.0));
/// let x = Tensor::from_vec(vec![0.0f32, 1.0], &[2])?;
/// let y = Tensor::from_vec(vec![0.3f32, 0.8], &[2])?;
/// let g = GradientTape::new();
/// let y_pred = ops::add(&a, &ops::multiply(&b, &x)?)?;
/// let loss = ops::reduce_sum(&ops::square(&ops::subtract(&y, &y_pred)?)?, gradtape::Axes::All, false)?;
/// let [da, db] = g.gradient(&loss, [&a, &b])?;
/// assert!((da.unwrap().to_scalar::<f32>()? - -2.2).abs() < 1e-6);
/// assert!((db.unwrap().to_scalar::<f32>()? - -1.6).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct GradientTape {
    tape: Tape,
}

impl Default for GradientTape {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for GradientTape {
    type Target = Tape;
    fn deref(&self) -> &Tape {
        &self.tape
    }
}

impl GradientTape {
    /// Starts recording, watching trainable variables as they are read.
    ///
    /// ```
    /// let tape = gradtape::GradientTape::new();
    /// assert!(tape.is_recording());
    /// ```
    pub fn new() -> Self {
        TapeBuilder {
            watch_accessed_variables: true,
            trace: false,
        }
        .start()
    }

    /// A tape that allows many gradient calls (`tf.GradientTape(persistent=True)`).
    ///
    /// ```
    /// let tape = gradtape::GradientTape::persistent();
    /// assert!(tape.is_recording());
    /// ```
    pub fn persistent() -> PersistentTape {
        TapeBuilder {
            watch_accessed_variables: true,
            trace: false,
        }
        .start_persistent()
    }

    /// A builder for the other options.
    ///
    /// ```
    /// let tape = gradtape::GradientTape::builder().watch_accessed_variables(true).start();
    /// assert!(tape.is_recording());
    /// ```
    pub fn builder() -> TapeBuilder {
        TapeBuilder {
            watch_accessed_variables: true,
            trace: false,
        }
    }

    /// Records what `f` does and stops: the closure is the `with` block.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(3.0f64);
    /// let (tape, y) = GradientTape::record(|t| {
    ///     t.watch(&x);
    ///     ops::multiply(&x, &x)
    /// });
    /// let [g] = tape.gradient(&y?, [&x])?;
    /// assert_eq!(g.unwrap().to_scalar::<f64>()?, 6.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn record<R>(f: impl FnOnce(&Tape) -> R) -> (GradientTape, R) {
        let tape = GradientTape::new();
        let r = f(&tape);
        tape.stop();
        (tape, r)
    }

    /// Gradients of `target` (summed over its elements) with respect to each source, in order.
    /// Sources the target does not depend on get `None`; a source that is the target gets ones.
    /// `sources` is one source (answered with one gradient), an array (`[&a, &b]`, answered
    /// with an array), a slice or `Vec` such as a model's `trainable_variables()` (answered
    /// with a `Vec`), or a tuple of these (answered with a tuple); see [`Sources`].
    ///
    /// # Errors
    /// When a gradient rule fails (which would be a bug in gradtape; the message names the op).
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor, Variable};
    /// let w = Variable::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2])?);
    /// let x = Tensor::from_vec(vec![3.0f32, 4.0], &[2])?;
    /// let tape = GradientTape::new();
    /// let y = ops::multiply(&w, &x)?; // not a scalar: the gradient is of its sum
    /// let (dw, dx) = tape.gradient(&y, (&w, &x))?; // mixed kinds: a tuple
    /// assert_eq!(dw.unwrap().to_vec::<f32>()?, vec![3.0, 4.0]);
    /// assert!(dx.is_none()); // x was never watched
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn gradient<S: Sources>(self, target: &Tensor, sources: S) -> Result<S::Gradients> {
        let v = self.gradient_with(&[target], &sources.sources(), &GradientOptions::default())?;
        sources.gradients(v)
    }

    /// The general form: several targets (their gradients are summed), seeds for each
    /// (`output_gradients`), and zeros instead of `None` for unconnected sources. Sources come
    /// in any shape [`GradientTape::gradient`] takes, and the gradients in the same shape.
    ///
    /// # Errors
    /// When `output_gradients` does not match the targets in number, shape or dtype.
    ///
    /// ```
    /// use gradtape::{ops, GradientOptions, GradientTape, Tensor, UnconnectedGradients};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// let z = Tensor::scalar(5.0f32);
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// tape.watch(&z);
    /// let y = ops::square(&x)?;
    /// let opts = GradientOptions {
    ///     output_gradients: Some(vec![Tensor::from_vec(vec![10.0f32, 1.0], &[2])?]),
    ///     unconnected_gradients: UnconnectedGradients::Zero,
    /// };
    /// let g = tape.gradient_with(&[&y], &[&x, &z], &opts)?;
    /// assert_eq!(g[0].as_ref().unwrap().to_vec::<f32>()?, vec![20.0, 4.0]);
    /// assert_eq!(g[1].as_ref().unwrap().to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn gradient_with<S: Sources>(
        self,
        targets: &[&Tensor],
        sources: S,
        options: &GradientOptions,
    ) -> Result<S::Gradients> {
        self.tape.stop();
        let keys = Tape::key_list(&sources.sources());
        let entries = std::mem::take(&mut *self.tape.state.entries.borrow_mut());
        let result = gradients(entries, targets, &keys, &|k| self.tape.traced(k), options);
        give_set(std::mem::take(&mut *self.tape.state.tensors.borrow_mut()));
        sources.gradients(result?)
    }

    /// TensorFlow's `jacobian`: for each source, `d target[i...] / d source[j...]`, of shape
    /// `target.shape + source.shape`. Computed in one backward pass over a batch of one-hot
    /// cotangents (every gradient rule runs batched, see [`crate::vmap()`]), not one pass per
    /// element. Sources the target does not depend on, and integer sources, get `None`.
    /// Consumes the tape, as [`GradientTape::gradient`] does.
    ///
    /// # Errors
    /// When the target is not float, or a gradient rule fails.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = ops::multiply(&x, &x)?; // y_i = x_i², dy_i/dx_j = 2 x_i δ_ij
    /// let [j] = tape.jacobian(&y, [&x])?;
    /// assert_eq!(j.unwrap().to_vec::<f32>()?, vec![2.0, 0.0, 0.0, 4.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jacobian<S: Sources>(self, target: &Tensor, sources: S) -> Result<S::Gradients> {
        self.jacobian_with(target, sources, &JacobianOptions::default())
    }

    /// [`GradientTape::jacobian`] with options: zeros for unconnected sources, and a chunk
    /// size that bounds the memory of a large jacobian. The answer has the sources' shape, as
    /// `jacobian`'s (an array for an array, a `Vec` for a slice).
    ///
    /// # Errors
    /// As [`GradientTape::jacobian`], and a `chunk_size` of 0.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, JacobianOptions, Tensor, UnconnectedGradients};
    /// let (x, z) = (Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])?, Tensor::scalar(1.0f64));
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// tape.watch(&z);
    /// let y = ops::exp(&x)?;
    /// let opts = JacobianOptions { chunk_size: Some(2), unconnected_gradients: UnconnectedGradients::Zero };
    /// let [jx, jz] = tape.jacobian_with(&y, [&x, &z], &opts)?;
    /// assert_eq!(jx.unwrap().shape(), &[3, 3]);
    /// assert_eq!(jz.unwrap().to_vec::<f64>()?, vec![0.0; 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jacobian_with<S: Sources>(
        self,
        target: &Tensor,
        sources: S,
        options: &JacobianOptions,
    ) -> Result<S::Gradients> {
        self.tape.stop();
        let keys = Tape::key_list(&sources.sources());
        let entries = std::mem::take(&mut *self.tape.state.entries.borrow_mut());
        let v = full_jacobian(&entries, target, &keys, &|k| self.tape.traced(k), options)?;
        sources.gradients(v)
    }

    /// TensorFlow's `batch_jacobian`: for a target `[b, ...]` and a source `[b, ...]` where
    /// example `i` of the target depends only on example `i` of the source, the jacobian of
    /// each example, `[b, target_rest..., source_rest...]`. `None` when unconnected.
    ///
    /// # Errors
    /// When target and source lack a batch axis of one size, the target is not float, or a
    /// gradient rule fails.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = ops::reduce_sum(&ops::square(&x)?, 1, true)?; // [2, 1]: y_b = Σ x_b²
    /// let j = tape.batch_jacobian(&y, &x)?.unwrap();
    /// assert_eq!(j.shape(), &[2, 1, 2]);
    /// assert_eq!(j.to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 8.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn batch_jacobian(self, target: &Tensor, source: &dyn Source) -> Result<Option<Tensor>> {
        self.batch_jacobian_with(target, source, &JacobianOptions::default())
    }

    /// [`GradientTape::batch_jacobian`] with options.
    ///
    /// # Errors
    /// As [`GradientTape::batch_jacobian`].
    pub fn batch_jacobian_with(
        self,
        target: &Tensor,
        source: &dyn Source,
        options: &JacobianOptions,
    ) -> Result<Option<Tensor>> {
        self.tape.stop();
        let entries = std::mem::take(&mut *self.tape.state.entries.borrow_mut());
        batch_jacobian_from(&self.tape, &entries, target, source, options)
    }
}

/// TensorFlow's `tf.GradientTape(persistent=True)`: any number of gradient calls.
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(3.0f32);
/// let tape = GradientTape::persistent();
/// tape.watch(&x);
/// let y = ops::square(&x)?;
/// let z = ops::square(&y)?;
/// tape.stop();
/// let [dz] = tape.gradient(&z, [&x])?; // 4x^3
/// let [dy] = tape.gradient(&y, [&x])?; // 2x
/// assert_eq!(dz.unwrap().to_scalar::<f32>()?, 108.0);
/// assert_eq!(dy.unwrap().to_scalar::<f32>()?, 6.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct PersistentTape {
    tape: Tape,
}

impl std::ops::Deref for PersistentTape {
    type Target = Tape;
    fn deref(&self) -> &Tape {
        &self.tape
    }
}

impl PersistentTape {
    /// Records what `f` does and stops (the `with` block as a closure).
    ///
    /// ```
    /// use gradtape::{ops, PersistentTape, Tensor};
    /// let x = Tensor::scalar(3.0f32);
    /// let (tape, (y, z)) = PersistentTape::record(|t| {
    ///     t.watch(&x);
    ///     let y = ops::square(&x).unwrap();
    ///     let z = ops::multiply(&y, &x).unwrap();
    ///     (y, z)
    /// });
    /// let [dy] = tape.gradient(&y, [&x])?;
    /// let [dz] = tape.gradient(&z, [&x])?;
    /// assert_eq!((dy.unwrap().to_scalar::<f32>()?, dz.unwrap().to_scalar::<f32>()?), (6.0, 27.0));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn record<R>(f: impl FnOnce(&Tape) -> R) -> (PersistentTape, R) {
        let tape = GradientTape::persistent();
        let r = f(&tape);
        tape.stop();
        (tape, r)
    }

    /// Gradients of `target` with respect to each source; see [`GradientTape::gradient`].
    /// Called while the tape is still recording, the gradient computation is itself recorded
    /// (as in TensorFlow), which is how a persistent tape differentiates its own gradients.
    ///
    /// # Errors
    /// When a gradient rule fails.
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::scalar(2.0f64);
    /// let tape = GradientTape::persistent();
    /// tape.watch(&x);
    /// let y = ops::exp(&x)?;
    /// tape.stop();
    /// let [a] = tape.gradient(&y, [&x])?;
    /// let [b] = tape.gradient(&y, [&x])?;
    /// assert_eq!(a.unwrap().to_scalar::<f64>()?, b.unwrap().to_scalar::<f64>()?);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn gradient<S: Sources>(&self, target: &Tensor, sources: S) -> Result<S::Gradients> {
        let v = self.gradient_with(&[target], &sources.sources(), &GradientOptions::default())?;
        sources.gradients(v)
    }

    /// The general form; see [`GradientTape::gradient_with`].
    ///
    /// # Errors
    /// When `output_gradients` does not match the targets in number, shape or dtype.
    ///
    /// ```
    /// use gradtape::{ops, GradientOptions, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// let tape = GradientTape::persistent();
    /// tape.watch(&x);
    /// let y = ops::square(&x)?;
    /// let seed = Tensor::from_vec(vec![1.0f32, 0.0], &[2])?;
    /// let opts = GradientOptions { output_gradients: Some(vec![seed]), ..Default::default() };
    /// let g = tape.gradient_with(&[&y], &[&x], &opts)?; // one row of the Jacobian
    /// assert_eq!(g[0].as_ref().unwrap().to_vec::<f32>()?, vec![2.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn gradient_with<S: Sources>(
        &self,
        targets: &[&Tensor],
        sources: S,
        options: &GradientOptions,
    ) -> Result<S::Gradients> {
        let keys = Tape::key_list(&sources.sources());
        let entries = self.tape.state.entries.borrow().clone();
        let v = gradients(entries, targets, &keys, &|k| self.tape.traced(k), options)?;
        sources.gradients(v)
    }

    /// The jacobian of `target` with respect to each source; see [`GradientTape::jacobian`].
    /// Nested tapes give Hessians: `outer.jacobian(&inner_gradient, [&x])`.
    ///
    /// # Errors
    /// As [`GradientTape::jacobian`].
    ///
    /// ```
    /// use gradtape::{ops, GradientTape, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
    /// let outer = GradientTape::persistent();
    /// outer.watch(&x);
    /// let inner = GradientTape::new();
    /// inner.watch(&x);
    /// let y = ops::reduce_sum(&ops::multiply(&ops::square(&x)?, &x)?, gradtape::Axes::All, false)?; // Σ x³
    /// let [g] = inner.gradient(&y, [&x])?; // 3x²
    /// let [h] = outer.jacobian(&g.unwrap(), [&x])?; // diag(6x)
    /// assert_eq!(h.unwrap().to_vec::<f64>()?, vec![6.0, 0.0, 0.0, 12.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn jacobian<S: Sources>(&self, target: &Tensor, sources: S) -> Result<S::Gradients> {
        self.jacobian_with(target, sources, &JacobianOptions::default())
    }

    /// [`PersistentTape::jacobian`] with options; see [`GradientTape::jacobian_with`].
    ///
    /// # Errors
    /// As [`GradientTape::jacobian_with`].
    pub fn jacobian_with<S: Sources>(
        &self,
        target: &Tensor,
        sources: S,
        options: &JacobianOptions,
    ) -> Result<S::Gradients> {
        let keys = Tape::key_list(&sources.sources());
        let entries = self.tape.state.entries.borrow().clone();
        let v = full_jacobian(&entries, target, &keys, &|k| self.tape.traced(k), options)?;
        sources.gradients(v)
    }

    /// See [`GradientTape::batch_jacobian`].
    ///
    /// # Errors
    /// As [`GradientTape::batch_jacobian`].
    pub fn batch_jacobian(&self, target: &Tensor, source: &dyn Source) -> Result<Option<Tensor>> {
        self.batch_jacobian_with(target, source, &JacobianOptions::default())
    }

    /// See [`GradientTape::batch_jacobian_with`].
    ///
    /// # Errors
    /// As [`GradientTape::batch_jacobian`].
    pub fn batch_jacobian_with(
        &self,
        target: &Tensor,
        source: &dyn Source,
        options: &JacobianOptions,
    ) -> Result<Option<Tensor>> {
        let entries = self.tape.state.entries.borrow().clone();
        batch_jacobian_from(&self.tape, &entries, target, source, options)
    }
}
