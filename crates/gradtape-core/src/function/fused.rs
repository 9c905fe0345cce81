//! The compiled executor's fusion groups: chains of elementwise primitives, and the reductions
//! of all elements that end them, run as one pass over the elements a block at a time
//! (`backend::fusion::run_group`), at every size. Only the values read outside a group are
//! written to memory; the rest live in a block of registers that stays in cache.
//!
//! A group forms as the graph is read in order: an elementwise node (a primitive with a block
//! kernel, float, each input of its own element count or one element) joins a group of one of
//! its inputs, merging the others it reads, and a reduction of all of a member's elements
//! joins as a fold; a join or merge that would make a cycle (a value read from outside that
//! itself needs the group, or a member reading its own group's fold) is refused. The groups
//! and the other nodes then run in a scheduled order: each after what it reads, the effects
//! (reads, assigns, prints, checks) in their traced order.

use crate::backend::device::Device;
use crate::backend::fusion::{self, Arg, Fold, Fusable, InPlace, Kernel, Operand};
use crate::context::traces::{Node, NodeKind};
use crate::dtype::DType;
use crate::error::Result;
use crate::primitive::Fused;
use crate::shape::numel;
use crate::tensor::Tensor;
use crate::variable::Variable;

/// One fusion group of a graph.
pub(super) struct Group {
    /// Elements each member computes.
    n: usize,
    dtype: DType,
    /// Its nodes in order (members and folds).
    pub(super) nodes: Vec<usize>,
    /// The values it reads from outside, in the order the instructions name them.
    leaves: Vec<usize>,
    /// The instructions, each writing its own register `i` (as the device kernel's statement
    /// `i` does).
    insts: Vec<(Kernel, [Operand; 2])>,
    /// The host pass's registers: the instructions, outputs and folds reading register slots
    /// reused once a value is no longer read, the slot each instruction writes, and how many.
    host: HostRegisters,
    /// The members read outside the group, and their registers.
    outputs: Vec<usize>,
    registers: Vec<usize>,
    /// The reductions, and what they fold, how.
    folds: Vec<usize>,
    folded: Vec<(Operand, Fold)>,
    /// Each instruction as a device kernel's statement: its primitive's CUDA expression and
    /// arity, and its operands (empty when a primitive has no CUDA expression).
    cuda: Vec<(&'static str, usize, [Operand; 2])>,
    /// Leaves whose buffers the host pass may overwrite with an output (see [`Donation`]).
    in_place: Vec<Donation>,
}

/// A leaf's buffer that a group's pass may overwrite with one of its outputs, planned once
/// per graph: a value the group is the last reader of (an op's result), or a variable's value
/// when the output is assigned to that variable (an optimizer's update: Adam's moments and
/// weights). Each call writes it only when no one else holds the buffer (a tensor a user kept,
/// another read still to run): otherwise the output gets a new buffer, as without the plan.
struct Donation {
    /// Its index in the group's leaves, and the index of the output written into it.
    leaf: usize,
    output: usize,
    /// The variable read and assigned (its value locked while the pass writes it).
    variable: Option<Variable>,
}

/// The fewest elements a group writes in place: below a block, a new buffer is a small
/// allocation, and the checks an in-place write needs (a lock, two reference counts, a few
/// small vectors) cost about as much.
const IN_PLACE_MIN: usize = crate::backend::cpu::BLOCK;

/// A buffer a pass may overwrite, taken for the pass's length: a value no longer in the
/// graph's values, or a variable's value under its lock.
enum Held<'a> {
    Value(Tensor),
    Variable(std::sync::RwLockWriteGuard<'a, Tensor>),
}

impl Held<'_> {
    fn tensor(&mut self) -> &mut Tensor {
        match self {
            Held::Value(t) => t,
            Held::Variable(slot) => slot,
        }
    }
}

/// A group's instructions on reused register slots (see [`HostRegisters::allocate`]).
#[derive(Default)]
struct HostRegisters {
    insts: Vec<(Kernel, [Operand; 2])>,
    /// `None`: each instruction its own register (a block's registers fit the first-level
    /// cache; the mapping would only cost).
    writes: Option<Vec<usize>>,
    slots: usize,
    outputs: Vec<usize>,
    folded: Vec<(Operand, Fold)>,
}

impl HostRegisters {
    /// Each instruction's register in the fewest slots: a slot is free again after the last
    /// instruction that reads its value (the outputs' and the folds' stay to the block's
    /// end), and an instruction never writes a slot it reads. With a dozen instructions a
    /// block's registers no longer fit the first-level cache; live at once are a few.
    fn allocate(
        insts: &[(Kernel, [Operand; 2])],
        outputs: &[usize],
        folded: &[(Operand, Fold)],
        register_bytes: usize,
    ) -> HostRegisters {
        let n = insts.len();
        // half the first-level data cache of current x86 and Arm cores (32 KB and up)
        if n * register_bytes <= 16 << 10 {
            return HostRegisters {
                insts: insts.to_vec(),
                writes: None,
                slots: n,
                outputs: outputs.to_vec(),
                folded: folded.to_vec(),
            };
        }
        let mut last = vec![None; n];
        for (i, (_, args)) in insts.iter().enumerate() {
            for a in args {
                if let Operand::Reg(r) = *a {
                    last[r] = Some(i);
                }
            }
        }
        let mut pinned = vec![false; n];
        for &r in outputs {
            pinned[r] = true;
        }
        for &(o, _) in folded {
            if let Operand::Reg(r) = o {
                pinned[r] = true;
            }
        }
        let (mut slot, mut free, mut slots) = (vec![0; n], Vec::<usize>::new(), 0);
        let map = |o: Operand, slot: &[usize]| match o {
            Operand::Reg(r) => Operand::Reg(slot[r]),
            leaf => leaf,
        };
        let mut host = HostRegisters::default();
        for (i, &(k, args)) in insts.iter().enumerate() {
            slot[i] = free.pop().unwrap_or_else(|| {
                slots += 1;
                slots - 1
            });
            host.insts
                .push((k, [map(args[0], &slot), map(args[1], &slot)]));
            host.writes.get_or_insert_with(Vec::new).push(slot[i]);
            let mut read: Vec<usize> = args
                .iter()
                .filter_map(|a| match *a {
                    Operand::Reg(r) => Some(r),
                    Operand::Leaf(_) => None,
                })
                .collect();
            read.push(i);
            read.dedup();
            for r in read {
                if !pinned[r] && last[r].is_none_or(|l| l <= i) && !free.contains(&slot[r]) {
                    free.push(slot[r]);
                }
            }
        }
        host.slots = slots;
        host.outputs = outputs.iter().map(|&r| slot[r]).collect();
        host.folded = folded.iter().map(|&(o, f)| (map(o, &slot), f)).collect();
        host
    }
}

/// What runs at one step of a fused replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Step {
    Node(usize),
    Group(usize),
}

/// A graph's fusion groups, for each node the group it runs in, and the order the groups and
/// the other nodes run in.
#[derive(Default)]
pub(super) struct Groups {
    pub(super) of: Vec<Option<usize>>,
    pub(super) groups: Vec<Group>,
    pub(super) order: Vec<Step>,
}

/// What each node must run after besides its inputs: the effects keep their order (each
/// assign, print and check after the one before; a variable's read after its last assign, and
/// its assign after its reads), so that moving a group never moves an effect.
fn effect_edges(nodes: &[Node]) -> Vec<Vec<usize>> {
    let mut edges = vec![vec![]; nodes.len()];
    let mut last_effect: Option<usize> = None;
    // per variable (by handle): its last assign, and the reads since
    let mut vars: Vec<(crate::variable::Variable, Option<usize>, Vec<usize>)> = vec![];
    for (k, node) in nodes.iter().enumerate() {
        match &node.kind {
            NodeKind::Read { variable, .. } => {
                let at = match vars
                    .iter()
                    .position(|(v, ..)| v.handle_id() == variable.handle_id())
                {
                    Some(i) => i,
                    None => {
                        vars.push((variable.clone(), None, vec![]));
                        vars.len() - 1
                    }
                };
                edges[k].extend(vars[at].1);
                vars[at].2.push(k);
            }
            NodeKind::Assign { .. } | NodeKind::Print { .. } | NodeKind::Check { .. } => {
                edges[k].extend(last_effect);
                last_effect = Some(k);
                if let NodeKind::Assign { variable, .. } = &node.kind {
                    match vars
                        .iter_mut()
                        .find(|(v, ..)| v.handle_id() == variable.handle_id())
                    {
                        Some((_, assign, reads)) => {
                            edges[k].extend(assign.iter().copied().chain(reads.drain(..)));
                            *assign = Some(k);
                        }
                        None => vars.push((variable.clone(), Some(k), vec![])),
                    }
                }
            }
            _ => {}
        }
    }
    edges
}

impl Groups {
    /// Plans the buffers each group may overwrite (see [`Donation`]), given the step each
    /// node's reads happen at (`at`) and the values whose last reader each step is (`dies`).
    /// Returns how many.
    pub(super) fn plan_in_place(
        &mut self,
        nodes: &[Node],
        at: &[usize],
        dies: &[Vec<usize>],
    ) -> usize {
        let mut planned = 0;
        for (i, step) in self.order.iter().enumerate() {
            let Step::Group(g) = *step else { continue };
            let group = &mut self.groups[g];
            if group.n < IN_PLACE_MIN {
                continue;
            }
            let (n, dtype) = (group.n, group.dtype);
            let fits = |j: usize| {
                dies[i].contains(&j) && numel(&nodes[j].shape) == n && nodes[j].dtype == dtype
            };
            let mut taken_leaf = vec![false; group.leaves.len()];
            let mut taken_output = vec![false; group.outputs.len()];
            // an update: the output assigned to the variable whose read the group consumes,
            // with no read of that variable between the pass and the assign (it would see the
            // new value early)
            for (a, node) in nodes.iter().enumerate() {
                let NodeKind::Assign { variable, value } = &node.kind else {
                    continue;
                };
                let Some(o) = group.outputs.iter().position(|&k| k == *value) else {
                    continue;
                };
                let same = |v: &Variable| v.handle_id() == variable.handle_id();
                let read = group.leaves.iter().position(|&j| {
                    matches!(&nodes[j].kind, NodeKind::Read { variable: v, .. } if same(v))
                        && fits(j)
                });
                let read_between = nodes.iter().enumerate().any(|(r, n)| {
                    matches!(&n.kind, NodeKind::Read { variable: v, .. } if same(v))
                        && at[r] > i
                        && at[r] < at[a]
                });
                if let Some(l) = read.filter(|&l| !taken_leaf[l] && !taken_output[o]) {
                    if !read_between {
                        taken_leaf[l] = true;
                        taken_output[o] = true;
                        group.in_place.push(Donation {
                            leaf: l,
                            output: o,
                            variable: Some(variable.clone()),
                        });
                    }
                }
            }
            // a value that dies here (an op's result: arguments, constants and reads are held
            // outside too)
            for (l, &j) in group.leaves.iter().enumerate() {
                if taken_leaf[l] || !matches!(nodes[j].kind, NodeKind::Op { .. }) || !fits(j) {
                    continue;
                }
                if let Some(o) = taken_output.iter().position(|&t| !t) {
                    taken_leaf[l] = true;
                    taken_output[o] = true;
                    group.in_place.push(Donation {
                        leaf: l,
                        output: o,
                        variable: None,
                    });
                }
            }
            planned += group.in_place.len();
        }
        planned
    }

    /// Whether node `k` is an output of group `g` written into a buffer it reads (when no one
    /// else holds it).
    pub(super) fn in_place(&self, g: usize, k: usize) -> bool {
        let group = &self.groups[g];
        group.in_place.iter().any(|d| group.outputs[d.output] == k)
    }

    /// The groups of `nodes` whose values `outputs` are returned, and the order to run them
    /// in. Groups of one op run as that op (nothing to fuse).
    pub(super) fn plan(nodes: &[Node], outputs: &[usize]) -> Groups {
        let mut f = Forming {
            nodes,
            effects: effect_edges(nodes),
            of: vec![None; nodes.len()],
            is_fold: vec![false; nodes.len()],
            members: vec![],
            seen: vec![0; nodes.len()],
            stamp: 0,
        };
        for k in 0..nodes.len() {
            let join = match fusable(nodes, k) {
                Some(Fused::Fold(_)) => nodes[k]
                    .inputs()
                    .first()
                    .and_then(|&j| f.of[j].filter(|_| !f.is_fold[j]))
                    .filter(|&g| numel(&nodes[k].shape) == 1 && f.takes(k, g)),
                Some(_) => {
                    let n = numel(&nodes[k].shape);
                    let mut found: Vec<usize> = vec![];
                    for &j in nodes[k].inputs() {
                        if let Some(g) = f.of[j].filter(|_| !f.is_fold[j]) {
                            if !found.contains(&g) && numel(&nodes[f.members[g][0]].shape) == n {
                                found.push(g);
                            }
                        }
                    }
                    match found.iter().position(|&g| f.takes(k, g)) {
                        Some(i) => {
                            // the other groups it reads become one with it where nothing
                            // between them runs outside (Adam's two moments, one pass)
                            let a = found[i];
                            for &b in found.iter().filter(|&&b| b != a) {
                                if f.mergeable(a, b) {
                                    f.merge(a, b);
                                }
                            }
                            Some(a)
                        }
                        None => {
                            f.members.push(vec![]);
                            Some(f.members.len() - 1)
                        }
                    }
                }
                None => None,
            };
            if let Some(g) = join {
                f.members[g].push(k);
                f.of[k] = Some(g);
                f.is_fold[k] = matches!(fusable(nodes, k), Some(Fused::Fold(_)));
            }
        }
        let Forming {
            of,
            members,
            effects,
            ..
        } = f;
        let deps = |k: usize| nodes[k].inputs().iter().chain(&effects[k]).copied();
        // which values are read outside their group
        let mut read_outside = vec![false; nodes.len()];
        for &j in outputs {
            read_outside[j] = true;
        }
        for (k, node) in nodes.iter().enumerate() {
            for &j in node.inputs() {
                if of[j].is_some() && of[j] != of[k] {
                    read_outside[j] = true;
                }
            }
        }
        let mut plan = Groups {
            of: vec![None; nodes.len()],
            groups: vec![],
            order: vec![],
        };
        for m in members.into_iter().filter(|m| m.len() >= 2) {
            let g = plan.groups.len();
            plan.groups.push(Group::new(nodes, m, &read_outside));
            for &k in &plan.groups[g].nodes {
                plan.of[k] = Some(g);
            }
        }
        plan.order = plan.schedule(nodes.len(), deps);
        let steps = plan.groups.len() + plan.of.iter().filter(|g| g.is_none()).count();
        match plan.order.len() == steps {
            true => plan,
            // a cycle the join rule should have refused: run the graph as traced
            false => {
                debug_assert!(false, "fusion left a cycle");
                Groups::default()
            }
        }
    }

    /// The steps in an order where each runs after what it reads and the effects keep theirs:
    /// at each point the ready step that comes first in the trace (a group counts at its
    /// first node). The join rule leaves no cycle, so every step is placed.
    fn schedule<I: Iterator<Item = usize>>(
        &self,
        len: usize,
        deps: impl Fn(usize) -> I,
    ) -> Vec<Step> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let step = |k: usize| match self.of[k] {
            Some(g) => Step::Group(g),
            None => Step::Node(k),
        };
        let first = |s: Step| match s {
            Step::Node(k) => k,
            Step::Group(g) => self.groups[g].nodes[0],
        };
        // steps by their first node; for each, how many steps it waits for and who waits on it
        let mut waiting = vec![0usize; len];
        let mut waiters: Vec<Vec<usize>> = vec![vec![]; len];
        for k in 0..len {
            let me = first(step(k));
            for j in deps(k) {
                let them = first(step(j));
                if them != me && !waiters[them].contains(&me) {
                    waiters[them].push(me);
                    waiting[me] += 1;
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..len)
            .filter(|&k| first(step(k)) == k && waiting[k] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(len);
        while let Some(Reverse(k)) = ready.pop() {
            order.push(step(k));
            for &w in &waiters[k] {
                waiting[w] -= 1;
                if waiting[w] == 0 {
                    ready.push(Reverse(w));
                }
            }
        }
        order
    }
}

/// The groups while they form, read in trace order.
struct Forming<'a> {
    nodes: &'a [Node],
    /// What each node must run after besides its inputs (the effects' order).
    effects: Vec<Vec<usize>>,
    of: Vec<Option<usize>>,
    is_fold: Vec<bool>,
    members: Vec<Vec<usize>>,
    /// The search's marks: `seen[k] == stamp` once visited in the current search.
    seen: Vec<u32>,
    stamp: u32,
}

impl Forming<'_> {
    fn deps(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes[k]
            .inputs()
            .iter()
            .chain(&self.effects[k])
            .copied()
    }

    /// Value `j` (outside group `g`) needs `g` to have run: a path of inputs and effect
    /// edges leads from it to a node of `g`, where a node of another group needs all of that
    /// group (which runs as one).
    fn reaches(&mut self, j: usize, g: usize) -> bool {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
        let mut stack = vec![j];
        while let Some(u) = stack.pop() {
            if self.seen[u] == self.stamp {
                continue;
            }
            self.seen[u] = self.stamp;
            match self.of[u] {
                Some(h) if h == g => return true,
                Some(h) => stack.extend(self.members[h].iter().copied()),
                None => {}
            }
            stack.extend(self.deps(u));
        }
        false
    }

    /// Group `g` can take node `k`: `k` reads none of its folds (known only once the pass is
    /// over) and nothing outside it that needs it (a cycle).
    fn takes(&mut self, k: usize, g: usize) -> bool {
        let deps: Vec<usize> = self.deps(k).collect();
        deps.into_iter().all(|j| match self.of[j] == Some(g) {
            true => !self.is_fold[j],
            false => !self.reaches(j, g),
        })
    }

    /// Groups `a` and `b` can run as one pass: no member of one reads a fold of the other,
    /// and nothing either reads from outside needs either.
    fn mergeable(&mut self, a: usize, b: usize) -> bool {
        let ours = |g: Option<usize>| g == Some(a) || g == Some(b);
        let reads: Vec<usize> = self.members[a]
            .iter()
            .chain(&self.members[b])
            .flat_map(|&m| self.deps(m))
            .collect();
        reads.into_iter().all(|j| match ours(self.of[j]) {
            true => !self.is_fold[j],
            false => !self.reaches(j, a) && !self.reaches(j, b),
        })
    }

    fn merge(&mut self, a: usize, b: usize) {
        let moved = std::mem::take(&mut self.members[b]);
        for &m in &moved {
            self.of[m] = Some(a);
        }
        self.members[a].extend(moved);
        self.members[a].sort_unstable();
    }
}

/// What node `k` is to a fusion group, if it can be in one: its block kernel or fold, when
/// its dtype is float and every input has its dtype and either its element count or one
/// element.
fn fusable(nodes: &[Node], k: usize) -> Option<Fused> {
    let node = &nodes[k];
    let NodeKind::Op {
        primitive, inputs, ..
    } = &node.kind
    else {
        return None;
    };
    let fused = primitive.fused?;
    let n = match fused {
        Fused::Fold(_) => numel(&nodes[*inputs.first()?].shape),
        _ => numel(&node.shape),
    };
    let fits = |&j: &usize| {
        let m = numel(&nodes[j].shape);
        nodes[j].dtype == node.dtype && (m == 1 || m == n)
    };
    (matches!(node.dtype, DType::F32 | DType::F64) && n > 0 && inputs.iter().all(fits))
        .then_some(fused)
}

impl Group {
    fn new(nodes: &[Node], members: Vec<usize>, read_outside: &[bool]) -> Group {
        let first = &nodes[members[0]];
        let mut group = Group {
            n: numel(&first.shape),
            dtype: first.dtype,
            nodes: members,
            leaves: vec![],
            insts: vec![],
            outputs: vec![],
            registers: vec![],
            folds: vec![],
            folded: vec![],
            cuda: vec![],
            in_place: vec![],
            host: HostRegisters::default(),
        };
        // each node's operand once it is an instruction
        let mut reg: Vec<(usize, usize)> = vec![];
        for &k in &group.nodes.clone() {
            let NodeKind::Op {
                primitive, inputs, ..
            } = &nodes[k].kind
            else {
                continue;
            };
            let mut args = [Operand::Leaf(0); 2];
            for (slot, &j) in args.iter_mut().zip(inputs) {
                *slot = match reg.iter().find(|(node, _)| *node == j) {
                    Some(&(_, r)) => Operand::Reg(r),
                    None => Operand::Leaf(match group.leaves.iter().position(|&l| l == j) {
                        Some(i) => i,
                        None => {
                            group.leaves.push(j);
                            group.leaves.len() - 1
                        }
                    }),
                };
            }
            if !matches!(primitive.fused, Some(Fused::Fold(_))) {
                if let Some(expr) = primitive.cuda {
                    group.cuda.push((expr, inputs.len(), args));
                }
            }
            match primitive.fused {
                Some(Fused::Unary(u)) => group.insts.push((Kernel::Unary(u), args)),
                Some(Fused::Binary(b)) => group.insts.push((Kernel::Binary(b), args)),
                Some(Fused::Fold(f)) => {
                    group.folds.push(k);
                    group.folded.push((args[0], f));
                    continue;
                }
                None => continue,
            }
            let r = group.insts.len() - 1;
            reg.push((k, r));
            if read_outside[k] {
                group.outputs.push(k);
                group.registers.push(r);
            }
        }
        let register_bytes = group.n.min(crate::backend::cpu::BLOCK) * group.dtype.size_in_bytes();
        group.host = HostRegisters::allocate(
            &group.insts,
            &group.registers,
            &group.folded,
            register_bytes,
        );
        group
    }

    /// Runs the group on `values` (each node's value, computed or not) and stores the values
    /// read outside it. `Ok(false)`: a leaf is not laid out for a pass (a strided view, a
    /// tensor not on the host), and the caller runs the nodes one by one.
    pub(super) fn run(&self, nodes: &[Node], values: &mut [Option<Tensor>]) -> Result<bool> {
        match self.dtype {
            DType::F64 => self.run_typed::<f64>(nodes, values),
            _ => self.run_typed::<f32>(nodes, values),
        }
    }

    /// The group as one device kernel, when its leaves are on a GPU: the values read outside
    /// it, and each fold run by its own reduction over the folded register (written out).
    /// `Ok(false)` when it cannot be one kernel.
    fn run_on_device(&self, nodes: &[Node], values: &mut [Option<Tensor>]) -> Result<bool> {
        if self.cuda.len() != self.insts.len() {
            return Ok(false);
        }
        let Some(leaves) = self
            .leaves
            .iter()
            .map(|&j| values[j].as_ref())
            .collect::<Option<Vec<&Tensor>>>()
        else {
            return Ok(false);
        };
        let Some(registers) = self.device_registers() else {
            return Ok(false);
        };
        let Some(out) =
            crate::backend::fused_group(&self.cuda, &leaves, self.n, &registers, &[self.n])?
        else {
            return Ok(false);
        };
        let (outputs, folded) = out.split_at(self.outputs.len());
        for (&k, t) in self.outputs.iter().zip(outputs) {
            values[k] = Some(t.view(crate::shape::Layout::contiguous(&nodes[k].shape)));
        }
        for (&k, t) in self.folds.iter().zip(folded) {
            let NodeKind::Op {
                primitive,
                params,
                inputs,
            } = &nodes[k].kind
            else {
                return Ok(false);
            };
            let x = t.view(crate::shape::Layout::contiguous(&nodes[inputs[0]].shape));
            values[k] = Some((primitive.forward)(&[&x], params)?);
        }
        Ok(true)
    }

    /// The registers a device kernel writes out: the outputs', then the folded ones (each
    /// fold then runs as its own reduction).
    fn device_registers(&self) -> Option<Vec<usize>> {
        let folded = self.folded.iter().map(|&(o, _)| match o {
            Operand::Reg(r) => Some(r),
            Operand::Leaf(_) => None,
        });
        self.registers
            .iter()
            .map(|&r| Some(r))
            .chain(folded)
            .collect()
    }

    fn run_typed<T: Fusable>(&self, nodes: &[Node], values: &mut [Option<Tensor>]) -> Result<bool> {
        let on_device = self.leaves.iter().any(|&j| {
            values[j]
                .as_ref()
                .is_some_and(|t| t.device() != Device::Cpu)
        });
        if on_device {
            return self.run_on_device(nodes, values);
        }
        if self.in_place.is_empty() {
            // no buffer to write in place: one look at each leaf (the common, small case)
            // (a loop, not `collect::<Option<Vec<_>>>`, which cannot size the vector first and
            // grows it: the seed's step, a few small groups, measured slower that way)
            let mut leaves = Vec::with_capacity(self.leaves.len());
            for &j in &self.leaves {
                match values[j].as_ref().and_then(|t| self.bind::<T>(t)) {
                    Some(a) => leaves.push(a),
                    None => return Ok(false),
                }
            }
            self.note_device_kernel(values);
            let (bufs, folded) = self.pass(leaves, vec![])?;
            self.store(nodes, values, bufs, folded);
            return Ok(true);
        }
        let laid_out = self.leaves.iter().all(|&j| {
            values[j]
                .as_ref()
                .is_some_and(|t| self.bind::<T>(t).is_some())
        });
        if !laid_out {
            return Ok(false);
        }
        self.note_device_kernel(values);
        // the buffers this pass may overwrite, out of `values` (the group is their last reader)
        let mut held: Vec<(&Donation, Held)> = vec![];
        for d in &self.in_place {
            let Some(t) = values[self.leaves[d.leaf]].take() else {
                continue;
            };
            let h = match &d.variable {
                // the variable's value still the one read (no assign since), locked for the
                // pass; the read's own handle let go
                Some(v) => match v.try_slot() {
                    Some(slot) if slot.id() == t.id() => Held::Variable(slot),
                    _ => Held::Value(t),
                },
                None => Held::Value(t),
            };
            held.push((d, h));
        }
        let unique: Vec<bool> = held
            .iter_mut()
            .map(|(d, h)| {
                (d.variable.is_none() || matches!(h, Held::Variable(_)))
                    && h.tensor().unique_elems_mut::<T>().is_some()
            })
            .collect();
        let taken = held.len();
        let mut in_place = vec![];
        let mut kept: Vec<(usize, &Tensor)> = vec![];
        for ((d, h), &unique) in held.iter_mut().zip(&unique) {
            let t = h.tensor();
            if unique {
                if let Some(buf) = t.unique_elems_mut::<T>() {
                    in_place.push(InPlace {
                        leaf: d.leaf,
                        output: d.output,
                        buf,
                    });
                }
            } else {
                kept.push((d.leaf, t));
            }
        }
        if in_place.len() + kept.len() != taken {
            return Err(crate::error::Error::trace(
                "function",
                "a buffer taken for an in-place pass is neither written nor read".to_string(),
            ));
        }
        let mut leaves = Vec::with_capacity(self.leaves.len());
        for (l, &j) in self.leaves.iter().enumerate() {
            let t = match kept.iter().find(|&&(k, _)| k == l) {
                Some(&(_, t)) => Some(t),
                None => values[j].as_ref(),
            };
            // an in-place leaf is read from its buffer (this entry is not read)
            leaves.push(match t {
                Some(t) => self.bind::<T>(t).unwrap_or(Arg::Scalar(T::ZERO)),
                None => Arg::Scalar(T::ZERO),
            });
        }
        let (bufs, folded) = self.pass(leaves, in_place)?;
        self.store(nodes, values, bufs, folded);
        for ((d, h), unique) in held.into_iter().zip(unique) {
            let k = self.outputs[d.output];
            values[k] = match (unique, h) {
                (false, _) => continue,
                (true, Held::Value(t)) => Some(t),
                (true, Held::Variable(slot)) => Some(slot.clone()),
            }
            .map(|t| match crate::shape::same(t.shape(), &nodes[k].shape) {
                true => t,
                false => t.view(crate::shape::Layout::contiguous(&nodes[k].shape)),
            });
        }
        Ok(true)
    }

    /// Tells the CUDA compile check about this group's kernel (a no-op unless it listens).
    fn note_device_kernel(&self, values: &[Option<Tensor>]) {
        if self.cuda.len() == self.insts.len() {
            crate::backend::note_fused_group(&self.cuda, || {
                let leaves = self.leaves.iter().filter_map(|&j| values[j].clone());
                Some((self.device_registers()?, leaves.collect()))
            });
        }
    }

    /// The elements each member computes, and the dtype.
    pub(super) fn size(&self) -> (usize, DType) {
        (self.n, self.dtype)
    }

    /// The values it reads from outside (in the order its leaves are bound), the members
    /// read outside it, and its folds.
    pub(super) fn reads_and_writes(&self) -> (&[usize], &[usize], &[usize]) {
        (&self.leaves, &self.outputs, &self.folds)
    }

    /// The host pass of one block over bound leaves into the caller's buffers: each output
    /// of [`Group::reads_and_writes`] into `out`, each fold into `folded`.
    pub(super) fn pass_into<T: Fusable>(
        &self,
        leaves: &[Arg<'_, T>],
        out: &mut [Vec<T>],
        folded: &mut [T],
    ) -> Result<()> {
        let h = &self.host;
        fusion::run_block_into::<T>(
            &h.insts,
            h.writes.as_deref(),
            h.slots,
            leaves,
            self.n,
            &h.outputs,
            &h.folded,
            out,
            folded,
        )
    }

    /// The host pass over bound leaves.
    fn pass<T: Fusable>(
        &self,
        leaves: Vec<Arg<'_, T>>,
        in_place: Vec<InPlace<'_, T>>,
    ) -> Result<fusion::Pass<T>> {
        let h = &self.host;
        fusion::run_group::<T>(
            &h.insts,
            h.writes.as_deref(),
            h.slots,
            leaves,
            self.n,
            &h.outputs,
            &h.folded,
            in_place,
        )
    }

    /// The pass's new buffers and folds as the values of their nodes.
    fn store<T: Fusable>(
        &self,
        nodes: &[Node],
        values: &mut [Option<Tensor>],
        bufs: Vec<Option<Vec<T>>>,
        folded: Vec<T>,
    ) {
        for (&k, buf) in self.outputs.iter().zip(bufs) {
            if let Some(buf) = buf {
                values[k] = Some(Tensor::from_elems(buf, &nodes[k].shape));
            }
        }
        for (&k, v) in self.folds.iter().zip(folded) {
            values[k] = Some(Tensor::from_elems(vec![v], &nodes[k].shape));
        }
    }

    /// A leaf as the pass reads it: a contiguous block of the group's element count, or one
    /// value for every element (one element, or a broadcast of one: the ones a gradient starts
    /// from); `None` when it is neither (strided, batched, another dtype or device).
    fn bind<'t, T: Fusable>(&self, t: &'t Tensor) -> Option<Arg<'t, T>> {
        if t.dtype() != self.dtype || t.batch().is_some() || t.device() != Device::Cpu {
            return None;
        }
        let (data, layout) = (t.data::<T>().ok()?, t.layout());
        let one = t.numel() == 1 || layout.strides.iter().all(|&s| s == 0);
        match t.numel() {
            _ if one => data.get(layout.offset).copied().map(Arg::Scalar),
            n if n == self.n && layout.is_contiguous() => {
                data.get(layout.offset..layout.offset + n).map(Arg::Block)
            }
            _ => None,
        }
    }
}
