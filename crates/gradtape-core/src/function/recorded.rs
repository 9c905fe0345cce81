//! A compiled step on a GPU launched as one CUDA graph ([`super::Function::cuda_graph`]):
//! the graph's kernels recorded once by the driver and replayed with one launch, instead of
//! one launch per kernel (PyTorch's `torch.compile(mode="reduce-overhead")`).
//!
//! A recording bakes in every address the step touches, so what a call hands over must be
//! moved to those addresses, and the results away from them:
//! - each argument is copied into a buffer of the recording's own (skipped when the same
//!   tensor comes again: the recording holds it, so it cannot change);
//! - a variable is read and updated in its own buffer, so its buffer must still be the one
//!   recorded; an update also needs the variable to be the only holder of that buffer (no
//!   tensor taken from it before may see it change: TensorFlow's copy-on-write rule for
//!   in-place updates). When either fails the call runs kernel by kernel, which gives the
//!   variable a new buffer, and the next call records again;
//! - the outputs are copied out of the recording's buffers into new tensors.
//!
//! Steps that cannot be recorded run kernel by kernel as before: a print or a numerics check
//! (they read values on the host), a size read at each call, an argument or variable on the
//! host (its value would be baked into a kernel's arguments), anything that copies between
//! host and GPU (the driver, or `backend::recording`, refuses it and the recording is
//! dropped).
//!
//! Built and checked for types and lints without a GPU; `tests/cuda.rs` holds what a GPU run
//! checks first (a launched step equal to the kernel-by-kernel one bit for bit, variables
//! assigned between calls, two recorded functions interleaved).

use crate::backend::device::Device;
use crate::backend::recording::{self, StepGraph};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::variable::Variable;

/// What a recording needs of the graph it records (the graph implements it; this module sits
/// below the graph's).
pub(super) trait Recordable {
    /// Why a run on `device` with `args` cannot be recorded, if it cannot.
    fn unrecordable(&self, device: Device, args: &[&Tensor]) -> Option<String>;
    /// The shape and dtype of each output.
    fn output_types(&self) -> Vec<(Vec<usize>, DType)>;
    /// The direct run, variables read and assigned through `held`.
    fn run_recorded(&self, args: &[&Tensor], held: &mut Held) -> Result<Vec<Tensor>>;
}

/// Kernel-by-kernel runs before the first recording: the first compiles the kernels and
/// warms cuBLAS, whose first calls cannot be recorded.
const WARM_RUNS: usize = 1;
/// Recordings after which a graph whose variables keep changing buffers stops recording.
const MAX_RECORDINGS: usize = 4;
/// Refused recordings after which a graph stops trying.
const MAX_REFUSALS: usize = 2;

/// One graph's recording and its history.
#[derive(Default)]
pub(super) struct Recorded {
    step: Option<Step>,
    /// Kernel-by-kernel runs since the last recording was dropped.
    runs: usize,
    recordings: usize,
    refusals: usize,
    pub(super) launches: usize,
    /// Why the graph no longer records.
    pub(super) off: Option<String>,
}

/// A recording and the buffers it has baked in.
struct Step {
    graph: StepGraph,
    /// Per argument: the recording's buffer, and the tensor last copied into it.
    args: Vec<(Tensor, Tensor)>,
    /// Each variable the step touches: its buffer's address, and whether the step writes it.
    variables: Vec<(Variable, u64, bool)>,
    /// The recording's buffer of each output.
    outputs: Vec<Tensor>,
}

/// The variables a recording run touched: where each was read (its buffer's address), and
/// the value it was last assigned, which the recording writes into its buffer at the end.
#[derive(Default)]
pub(super) struct Held {
    variables: Vec<(Variable, Option<u64>, Option<Tensor>)>,
}

impl Held {
    fn entry(&mut self, v: &Variable) -> &mut (Variable, Option<u64>, Option<Tensor>) {
        let i = match self
            .variables
            .iter()
            .position(|(w, ..)| w.handle_id() == v.handle_id())
        {
            Some(i) => i,
            None => {
                self.variables.push((v.clone(), None, None));
                self.variables.len() - 1
            }
        };
        &mut self.variables[i]
    }

    /// The value a read sees: the value assigned earlier in the step, else the variable's
    /// buffer, whose address the recording then depends on.
    pub(super) fn read(&mut self, v: &Variable) -> Result<Tensor> {
        let (_, read_at, assigned) = self.entry(v);
        if let Some(t) = assigned {
            return Ok(t.clone());
        }
        let cur = v.current();
        let at = recording::address(&cur)
            .ok_or_else(|| refused("a variable's value is not a whole GPU buffer"))?;
        match *read_at {
            Some(a) if a != at => Err(refused("a variable changed buffers while recording")),
            _ => {
                *read_at = Some(at);
                Ok(cur)
            }
        }
    }

    /// Holds `t` as `v`'s new value (checked as an assign checks it) for the end of the step.
    pub(super) fn assign(&mut self, v: &Variable, t: &Tensor) -> Result<()> {
        let t = v.checked("assign", t.clone())?;
        self.entry(v).2 = Some(t);
        Ok(())
    }
}

fn refused(why: &str) -> Error {
    Error::device("cuda_graph", format!("the step cannot be recorded: {why}"))
}

impl Recorded {
    /// This call's outputs from the recording (recorded first when due), or `None` when this
    /// call runs kernel by kernel.
    pub(super) fn call(
        &mut self,
        graph: &dyn Recordable,
        device: Device,
        args: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>> {
        if self.off.is_some() || recording::recording() {
            return Ok(None);
        }
        if let Some(step) = &mut self.step {
            if let Some(out) = step.launch(args)? {
                self.launches += 1;
                return Ok(Some(out));
            }
            // a variable moved or is shared: kernel by kernel now, recorded again later
            self.step = None;
            self.stale();
            return Ok(None);
        }
        self.runs += 1;
        if self.runs <= WARM_RUNS {
            return Ok(None);
        }
        match record(graph, device, args) {
            Ok(None) => Ok(None), // another recording under way: next time
            Ok(Some(mut step)) => {
                self.recordings += 1;
                let out = step.launch(args)?;
                match out.is_some() {
                    true => {
                        self.launches += 1;
                        self.step = Some(step);
                    }
                    false => self.stale(),
                }
                Ok(out)
            }
            Err(e) => {
                self.refusals += 1;
                self.runs = 0;
                if self.refusals >= MAX_REFUSALS {
                    self.off = Some(e.to_string());
                }
                Ok(None)
            }
        }
    }
}

impl Recorded {
    /// A recording could not be launched (a variable moved or is held elsewhere): record
    /// again after the next kernel-by-kernel run, unless it has happened too often.
    fn stale(&mut self) {
        self.runs = 0;
        if self.recordings >= MAX_RECORDINGS {
            self.off = Some(format!(
                "recorded {MAX_RECORDINGS} times and each time a variable it updates had been \
                 given another buffer or was held elsewhere (a tensor taken from it), so it \
                 runs kernel by kernel"
            ));
        }
    }
}

/// Records one run of `graph` on `device` for `args` (which it does not run: the caller
/// launches the step). `Ok(None)` while another recording is under way there.
fn record(graph: &dyn Recordable, device: Device, args: &[&Tensor]) -> Result<Option<Step>> {
    if let Some(why) = graph.unrecordable(device, args) {
        return Err(refused(&why));
    }
    // the recording's own buffers, made before it starts (outside the graph's memory)
    let statics = args
        .iter()
        .map(|&a| recording::copy_of(a))
        .collect::<Result<Vec<Tensor>>>()?;
    let outputs = graph
        .output_types()
        .into_iter()
        .map(|(shape, dtype)| {
            crate::backend::full::<Tensor>(device, &shape, 0.0, dtype)?
                .ok_or_else(|| refused("an output on the host"))
        })
        .collect::<Result<Vec<Tensor>>>()?;
    let Some(rec) = recording::begin(device)? else {
        return Ok(None);
    };
    // Everything made inside the recording is dropped inside it (the driver frees it in the
    // graph), before `finish` ends it.
    let variables = (|| -> Result<Vec<(Variable, u64, bool)>> {
        let mut held = Held::default();
        let refs: Vec<&Tensor> = statics.iter().collect();
        let values = graph.run_recorded(&refs, &mut held)?;
        for (v, o) in values.iter().zip(&outputs) {
            recording::overwrite(v, o)?;
        }
        // new values last, after every read of the old ones
        let mut variables = vec![];
        for (variable, read_at, assigned) in &held.variables {
            let at = match assigned {
                Some(t) => {
                    let cur = variable.current();
                    let at = recording::address(&cur)
                        .ok_or_else(|| refused("a variable's value is not a whole GPU buffer"))?;
                    if read_at.is_some_and(|a| a != at) {
                        return Err(refused("a variable changed buffers while recording"));
                    }
                    recording::overwrite(t, &cur)?;
                    at
                }
                None => read_at.ok_or_else(|| refused("a variable neither read nor assigned"))?,
            };
            variables.push((variable.clone(), at, assigned.is_some()));
        }
        Ok(variables)
    })()?;
    let graph = rec.finish()?;
    Ok(Some(Step {
        graph,
        args: statics
            .into_iter()
            .zip(args)
            .map(|(s, &a)| (s, a.clone()))
            .collect(),
        variables,
        outputs,
    }))
}

impl Step {
    /// Launches the step on `args`: the outputs, or `None` when a variable's buffer is no
    /// longer the recorded one or may not be written (nothing is queued then).
    fn launch(&mut self, args: &[&Tensor]) -> Result<Option<Vec<Tensor>>> {
        let fits = args.len() == self.args.len()
            && args.iter().zip(&self.args).all(|(a, (s, _))| {
                a.shape() == s.shape() && a.dtype() == s.dtype() && a.device() == s.device()
            });
        if !fits {
            return Ok(None);
        }
        // each variable locked (never waiting: two steps locking in different orders cannot
        // deadlock) while its buffer is checked and the launch is queued
        let mut slots = Vec::with_capacity(self.variables.len());
        for (v, at, writes) in &self.variables {
            let Some(mut slot) = v.try_slot() else {
                return Ok(None);
            };
            if recording::address(&*slot) != Some(*at) || (*writes && !slot.sole_handle()) {
                return Ok(None);
            }
            slots.push(slot);
        }
        for ((buffer, last), &a) in self.args.iter_mut().zip(args) {
            if last.id() != a.id() {
                recording::overwrite(a, buffer)?;
                *last = a.clone();
            }
        }
        self.graph.launch()?;
        let out = self
            .outputs
            .iter()
            .map(recording::copy_of)
            .collect::<Result<Vec<Tensor>>>()?;
        drop(slots);
        Ok(Some(out))
    }
}
