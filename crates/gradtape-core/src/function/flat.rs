//! Small host steps run over buffers of their own, without a tensor between their kernels.
//!
//! A step whose values all fit under a page (the seed's epoch at 200 points: two scalars, two
//! arrays of 200, three fusion groups) spent most of its time on bookkeeping: a tensor object
//! per value, an atomic count per read, about twenty allocations per call. When such a graph is
//! made of fusion groups of one block, variable reads and assigns, constants, arguments and
//! reshapes only, it gets a *flat plan*: one buffer per value it computes or copies, made
//! once and reused by every call. A call copies the variables it reads into their buffers,
//! runs each group into the buffers of its outputs and folds (the same one-block pass as the
//! usual path, [`fusion::run_block_into`](crate::backend::fusion::run_block_into)), writes each
//! assigned value into the variable's own buffer when nothing else holds it (else the
//! variable gets a new tensor, as an assign gives it), and makes tensors for the outputs only.
//! The values are the usual path's bit for bit: the same kernels on the same operands in the
//! same order, a reshape being the same elements under another shape.
//!
//! A graph with anything else (a matmul, a print, a value of another dtype, a group of more
//! than a block) runs the usual way, and so does a call whose arguments are not contiguous
//! host arrays, a call on a second thread while the first runs the plan, and every call while
//! the CUDA C of kernels is being recorded (the usual path notes its groups' kernels).

use super::fused::{Groups, Step};
use crate::backend::cpu::BLOCK;
use crate::backend::fusion::{Arg, Fusable};
use crate::context::traces::{Node, NodeKind};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::variable::Variable;

/// Where a value lives during a call.
#[derive(Clone, Copy)]
enum Src {
    /// One of the plan's buffers.
    Slot(usize),
    /// The call's argument.
    Arg(usize),
}

/// A graph's flat plan, by the dtype of its values.
pub(super) enum Flat {
    F32(Plan<f32>),
    F64(Plan<f64>),
}

/// Each node's value's place, the buffers, and the scratch a group's pass writes into.
pub(super) struct Plan<T> {
    src: Vec<Option<Src>>,
    /// The reads that copy a variable in (a read of a variable read before, with no assign
    /// of it between, shares the first one's buffer).
    copies: Vec<bool>,
    slots: Vec<Vec<T>>,
    /// A group's output buffers while its pass runs (taken out of `slots`, then put back).
    taken: Vec<Vec<T>>,
    folded: Vec<T>,
}

impl Flat {
    /// The plan of a graph, or `None` when something in it needs the usual path.
    pub(super) fn plan(nodes: &[Node], groups: &Groups) -> Option<Flat> {
        let dtype = groups.groups.first()?.size().1;
        match dtype {
            DType::F32 => Plan::new(nodes, groups, dtype).map(Flat::F32),
            DType::F64 => Plan::new(nodes, groups, dtype).map(Flat::F64),
            _ => None,
        }
    }

    /// One call: its outputs, or `None` when this call takes the usual path (an argument
    /// that is not a contiguous host array of the plan's dtype), decided before any effect.
    pub(super) fn run(
        &mut self,
        nodes: &[Node],
        groups: &Groups,
        outputs: &[usize],
        args: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>> {
        match self {
            Flat::F32(p) => p.run(nodes, groups, outputs, args),
            Flat::F64(p) => p.run(nodes, groups, outputs, args),
        }
    }
}

impl<T: Fusable> Plan<T> {
    fn new(nodes: &[Node], groups: &Groups, dtype: DType) -> Option<Plan<T>> {
        let mut plan = Plan {
            src: vec![None; nodes.len()],
            copies: vec![false; nodes.len()],
            slots: vec![],
            taken: vec![],
            folded: vec![],
        };
        let host_var = |v: &Variable| v.device() == crate::Device::Cpu && v.dtype() == dtype;
        // the groups' values read outside them first (a reshape below may read one)
        for group in &groups.groups {
            let (n, d) = group.size();
            if d != dtype || !(1..=BLOCK).contains(&n) {
                return None;
            }
            let (leaves, outs, folds) = group.reads_and_writes();
            for &j in leaves {
                let m: usize = nodes[j].shape.iter().product();
                if m != 1 && m != n {
                    return None;
                }
            }
            for &k in outs {
                plan.src[k] = Some(Src::Slot(plan.slots.len()));
                plan.slots.push(vec![T::ZERO; n]);
            }
            for &k in folds {
                plan.src[k] = Some(Src::Slot(plan.slots.len()));
                plan.slots.push(vec![T::ZERO]);
            }
            plan.folded
                .resize(plan.folded.len().max(folds.len()), T::ZERO);
        }
        for (k, node) in nodes.iter().enumerate() {
            let numel: usize = node.shape.iter().product();
            let in_group = groups.of.get(k).copied().flatten().is_some();
            match &node.kind {
                NodeKind::Assign { variable, .. } if host_var(variable) => {}
                _ if node.dtype != dtype => return None,
                NodeKind::Arg(i) => plan.src[k] = Some(Src::Arg(*i)),
                NodeKind::Constant { tensor, .. } => {
                    if tensor.device() != crate::Device::Cpu || tensor.dtype() != dtype {
                        return None;
                    }
                    let data = tensor.contiguous_data::<T>().ok()?.into_owned();
                    plan.src[k] = Some(Src::Slot(plan.slots.len()));
                    plan.slots.push(data);
                }
                NodeKind::Read { variable, .. } if host_var(variable) => {
                    plan.src[k] = Some(Src::Slot(plan.slots.len()));
                    plan.slots.push(Vec::with_capacity(numel));
                    plan.copies[k] = true;
                }
                // its buffer, if it is read outside its group, is placed above
                NodeKind::Op { .. } if in_group => {}
                NodeKind::Op {
                    primitive, inputs, ..
                } if primitive.name() == "reshape" && inputs.len() == 1 => {
                    // the same row-major elements under another shape (every value here is
                    // contiguous)
                    plan.src[k] = Some(plan.src[inputs[0]]?);
                }
                _ => return None,
            }
        }
        // Reads of one variable with no assign of it between share the first one's buffer,
        // in the order the steps run (effects keep their order there: a read after the
        // assign before it, an assign after the reads before it).
        let mut first: Vec<(crate::tensor::TensorId, usize)> = vec![];
        for step in &groups.order {
            let Step::Node(k) = *step else { continue };
            match &nodes[k].kind {
                NodeKind::Read { variable, .. } => {
                    let id = variable.handle_id();
                    match first.iter().find(|(v, _)| *v == id) {
                        Some(&(_, r)) => {
                            plan.src[k] = plan.src[r];
                            plan.copies[k] = false;
                        }
                        None => first.push((id, k)),
                    }
                }
                NodeKind::Assign { variable, .. } => {
                    let id = variable.handle_id();
                    first.retain(|(v, _)| *v != id);
                }
                _ => {}
            }
        }
        // every value read is placed (a group's leaf, an assign's value, a reshape's input)
        let placed = |j: usize| plan.src[j].is_some();
        let reads_placed = nodes.iter().enumerate().all(|(k, node)| match &node.kind {
            NodeKind::Op { inputs, .. } if groups.of.get(k).copied().flatten().is_none() => {
                inputs.iter().all(|&j| placed(j))
            }
            NodeKind::Assign { value, .. } => placed(*value),
            _ => true,
        });
        let leaves_placed = groups
            .groups
            .iter()
            .all(|g| g.reads_and_writes().0.iter().all(|&j| placed(j)));
        (reads_placed && leaves_placed && !groups.order.is_empty()).then_some(plan)
    }

    fn data<'a>(&'a self, src: Src, args: &[&'a Tensor]) -> Result<&'a [T]> {
        match src {
            Src::Slot(s) => Ok(&self.slots[s]),
            Src::Arg(i) => {
                let t = args[i];
                let o = t.layout().offset;
                Ok(&t.data::<T>()?[o..o + t.numel()])
            }
        }
    }

    fn run(
        &mut self,
        nodes: &[Node],
        groups: &Groups,
        outputs: &[usize],
        args: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>> {
        let fits = |t: &Tensor| {
            t.device() == crate::Device::Cpu
                && t.dtype() == T::DTYPE
                && t.batch().is_none()
                && t.layout().is_contiguous()
                && t.data::<T>()
                    .is_ok_and(|d| d.len() >= t.layout().offset + t.numel())
        };
        if !args.iter().all(|a| fits(a)) {
            return Ok(None);
        }
        for step in &groups.order {
            match *step {
                Step::Node(k) => self.node(nodes, k, args)?,
                Step::Group(g) => self.group(&groups.groups[g], args)?,
            }
        }
        let mut out = Vec::with_capacity(outputs.len());
        for &j in outputs {
            out.push(match &nodes[j].kind {
                NodeKind::Arg(i) => args[*i].clone(),
                NodeKind::Constant { tensor, .. } => tensor.clone(),
                _ => {
                    let src = self.src[j].ok_or_else(|| unplaced(j))?;
                    Tensor::from_elems(self.data(src, args)?.to_vec(), &nodes[j].shape)
                }
            });
        }
        Ok(Some(out))
    }

    /// A node outside the groups: a variable read copied in, an assign written out (the
    /// others have nothing to do at a call).
    fn node(&mut self, nodes: &[Node], k: usize, args: &[&Tensor]) -> Result<()> {
        match &nodes[k].kind {
            NodeKind::Read { variable, .. } if self.copies[k] => {
                let Some(Src::Slot(s)) = self.src[k] else {
                    return Err(unplaced(k));
                };
                let slot = &mut self.slots[s];
                slot.clear();
                variable.with_current(|t| -> Result<()> {
                    slot.extend_from_slice(&t.contiguous_data::<T>()?);
                    Ok(())
                })
            }
            NodeKind::Assign { variable, value } => {
                let src = self.src[*value].ok_or_else(|| unplaced(*value))?;
                let data = self.data(src, args)?;
                // in place when the variable's value is the only handle to its buffer (as
                // the usual path's fused updates write it), else a new tensor as `assign`
                if let Some(mut slot) = variable.try_slot() {
                    if let Some(buf) = slot.unique_elems_mut::<T>() {
                        if buf.len() == data.len() {
                            buf.copy_from_slice(data);
                            return Ok(());
                        }
                    }
                }
                let t = Tensor::from_elems(data.to_vec(), &nodes[*value].shape);
                variable.replace("assign", &t)
            }
            _ => Ok(()),
        }
    }

    /// A group's one-block pass from its leaves' buffers into its outputs' and folds'.
    fn group(&mut self, g: &super::fused::Group, args: &[&Tensor]) -> Result<()> {
        let (leaves, outs, folds) = g.reads_and_writes();
        self.taken.clear();
        for &k in outs {
            let Some(Src::Slot(s)) = self.src[k] else {
                return Err(unplaced(k));
            };
            self.taken.push(std::mem::take(&mut self.slots[s]));
        }
        // the leaves on the stack (a group reads a handful)
        let mut few = [Arg::Scalar(T::ZERO); 8];
        let mut many = vec![];
        let bound: &mut [Arg<T>] = match leaves.len() {
            n if n <= few.len() => &mut few[..n],
            n => {
                many.resize(n, Arg::Scalar(T::ZERO));
                &mut many
            }
        };
        let mut result = Ok(());
        for (b, &j) in bound.iter_mut().zip(leaves) {
            let d = match self.src[j] {
                Some(Src::Slot(s)) => &self.slots[s][..],
                Some(Src::Arg(i)) => {
                    let t = args[i];
                    let o = t.layout().offset;
                    match t.data::<T>() {
                        Ok(d) => &d[o..o + t.numel()],
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                None => {
                    result = Err(unplaced(j));
                    break;
                }
            };
            *b = match d {
                [v] => Arg::Scalar(*v),
                d => Arg::Block(d),
            };
        }
        if result.is_ok() {
            result = g.pass_into(bound, &mut self.taken, &mut self.folded[..folds.len()]);
        }
        // the buffers go back whether or not the pass ran
        for (&k, buf) in outs.iter().zip(self.taken.drain(..)) {
            if let Some(Src::Slot(s)) = self.src[k] {
                self.slots[s] = buf;
            }
        }
        result?;
        for (&k, &v) in folds.iter().zip(&self.folded) {
            if let Some(Src::Slot(s)) = self.src[k] {
                self.slots[s][0] = v;
            }
        }
        Ok(())
    }
}

fn unplaced(k: usize) -> crate::error::Error {
    crate::error::Error::trace(
        "function",
        format!("value %{k} has no place in the graph's flat plan"),
    )
}
