//! The lazy fusion engine (see the public [`crate::fusion`] for what it does and why): pending
//! graphs of elementwise block kernels over the front end's handles ([`Leaf`]), run one block
//! of 1,024 elements at a time, and reductions folded as the blocks are made.

use std::sync::{Mutex, OnceLock};

use crate::backend::cpu::{self, BLOCK, CHUNK};
use crate::backend::handle::Handle;
use crate::backend::storage::{CpuStorage, Storage};
use crate::dtype::{DType, Float, Num};
use crate::error::{Error, Result};
use crate::shape::{broadcast_shapes, numel};

/// The largest graph one pending tensor may stand for, in ops.
pub const MAX_NODES: usize = 16;

/// Elementwise results with at least this many elements are pending unless changed by
/// [`crate::fusion::set_min_elements`]: 2¹⁸ floats (1 MB in float32), about where a tensor
/// stops fitting in a core's cache.
pub const DEFAULT_MIN_ELEMENTS: usize = 1 << 18;

/// What the engine needs of a handle beyond [`Handle`]: the [`Pending`] graph it holds while
/// its elements are not computed, and weak references for this thread's waiting reductions.
/// The engine keeps handles as graph operands and never looks inside them otherwise.
pub(crate) trait Leaf: Handle {
    /// A handle that does not keep the array alive (the waiting reductions).
    type Weak;
    fn is_realized(&self) -> bool;
    /// True for a handle that owns computed storage (neither a view nor pending).
    fn owns_storage(&self) -> bool;
    fn shares_storage_with(&self, other: &Self) -> bool;
    /// The graph that computes this array while it has not run, and the handle that holds it:
    /// its own, or its owner's for a view of all of the owner's elements in order.
    fn pending(&self) -> Option<(&Self, &Pending<Self>)>;
    /// The pending handle whose graph reading this one would compute (itself or, for any
    /// view, its owner), while not computed.
    fn unrealized(&self) -> Option<(&Self, &Pending<Self>)>;
    /// A new handle holding `p`, of `shape` and `dtype`.
    fn from_pending(p: Pending<Self>, shape: &[usize], dtype: DType) -> Self;
    /// Lets go of this handle; when it was the last one, hands what it held to `work`.
    fn dismantle(self, work: &mut Vec<Self>);
    fn downgrade(&self) -> Self::Weak;
    fn upgrade(w: &Self::Weak) -> Option<Self>;
    /// Runs `f` on this thread's list of waiting reductions (the front end keeps it in its
    /// per-thread context).
    fn waiting<R>(f: impl FnOnce(&mut Vec<Self::Weak>) -> R) -> R;
}

// ---------------------------------------------------------------------------------------------
// Kernels: one elementwise function over a block, for each float type

/// One operand of a block kernel: a block of elements, or one value for every element.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a, T> {
    Block(&'a [T]),
    Scalar(T),
}

/// A unary function over a block, made by [`unary_kernel!`] from the op's own element function:
/// for each float type, a baseline build and one for CPUs with AVX2 (see [`wide`]).
pub(crate) struct UnaryKernel {
    pub f32: [UnaryFn<f32>; 2],
    pub f64: [UnaryFn<f64>; 2],
}

pub(crate) type UnaryFn<T> = fn(Arg<T>, &mut [T]);
pub(crate) type BinaryFn<T> = fn(Arg<T>, Arg<T>, &mut [T]);

/// A binary function over a block, made by [`binary_kernel!`] from the op's element function.
pub(crate) struct BinaryKernel {
    pub f32: [BinaryFn<f32>; 2],
    pub f64: [BinaryFn<f64>; 2],
}

/// 1 when this CPU runs the AVX2 builds of the block kernels, 0 otherwise. A fused graph runs
/// a dozen kernels per element where eager code runs one, so its arithmetic is no longer hidden
/// behind memory traffic; the baseline x86-64 build has only 4-lane SSE. Only the width changes:
/// the same IEEE operations give the same bits (no fused multiply-add is enabled).
pub(crate) fn wide() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        usize::from(std::arch::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The baseline and AVX2 builds of one block function `$body` with arguments `$args`.
macro_rules! builds {
    ($body:ident, $T:ident, ($($a:ident: $ty:ty),*)) => {{
        fn plain<$T: $crate::dtype::Float>($($a: $ty),*) {
            $body($($a),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<$T: $crate::dtype::Float>($($a: $ty),*) {
            $body($($a),*)
        }
        #[cfg(target_arch = "x86_64")]
        fn wide<$T: $crate::dtype::Float>($($a: $ty),*) {
            // SAFETY: `fusion::wide()` picks this build only on CPUs that have AVX2.
            unsafe { avx2($($a),*) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        use plain as wide;
        ([plain::<f32>, wide::<f32>], [plain::<f64>, wide::<f64>])
    }};
}

/// The block kernels of a unary element function `fn<T: Float>(T) -> T`.
macro_rules! unary_kernel {
    ($f:ident) => {{
        #[inline(always)]
        fn body<T: $crate::dtype::Float>(x: $crate::backend::fusion::Arg<T>, out: &mut [T]) {
            match x {
                $crate::backend::fusion::Arg::Block(x) => {
                    for (o, &v) in out.iter_mut().zip(x) {
                        *o = $f(v);
                    }
                }
                $crate::backend::fusion::Arg::Scalar(v) => out.fill($f(v)),
            }
        }
        static K: $crate::backend::fusion::UnaryKernel = {
            let (f32, f64) =
            $crate::backend::fusion::builds!(body, T, (x: $crate::backend::fusion::Arg<T>, out: &mut [T]));
            $crate::backend::fusion::UnaryKernel { f32, f64 }
        };
        &K
    }};
}

/// The block kernels of a binary element function written as `|p, q| expr` over `T: Float`.
macro_rules! binary_kernel {
    (|$p:ident, $q:ident| $e:expr) => {{
        #[inline(always)]
        fn body<T: $crate::dtype::Float>(
            a: $crate::backend::fusion::Arg<T>,
            b: $crate::backend::fusion::Arg<T>,
            out: &mut [T],
        ) {
            use $crate::backend::fusion::Arg::{Block, Scalar};
            match (a, b) {
                (Block(a), Block(b)) => {
                    for ((o, &$p), &$q) in out.iter_mut().zip(a).zip(b) {
                        *o = $e;
                    }
                }
                (Block(a), Scalar($q)) => {
                    for (o, &$p) in out.iter_mut().zip(a) {
                        *o = $e;
                    }
                }
                (Scalar($p), Block(b)) => {
                    for (o, &$q) in out.iter_mut().zip(b) {
                        *o = $e;
                    }
                }
                (Scalar($p), Scalar($q)) => out.fill($e),
            }
        }
        static K: $crate::backend::fusion::BinaryKernel = {
            let (f32, f64) = $crate::backend::fusion::builds!(
                body,
                T,
                (a: $crate::backend::fusion::Arg<T>, b: $crate::backend::fusion::Arg<T>, out: &mut [T])
            );
            $crate::backend::fusion::BinaryKernel { f32, f64 }
        };
        &K
    }};
}

pub(crate) use {binary_kernel, builds, unary_kernel};

/// What a primitive is to a fusion group (the lazy engine's graphs, and a compiled graph's
/// groups): an elementwise block kernel, or a reduction of all elements folded as the blocks
/// are made.
#[derive(Clone, Copy)]
pub(crate) enum Fused {
    Unary(&'static UnaryKernel),
    Binary(&'static BinaryKernel),
    Fold(Fold),
}

// ---------------------------------------------------------------------------------------------
// Pending tensors

#[derive(Clone, Copy)]
enum Op {
    Unary(&'static UnaryKernel),
    Binary(&'static BinaryKernel),
    /// A reduction of all of the input's elements to one.
    Fold(Fold),
}

/// One op of a graph and the tensors it reads (pending or computed).
#[derive(Clone)]
struct Node<L: Leaf> {
    op: Op,
    inputs: Vec<L>,
}

/// What a pending tensor holds: its graph until computed, then its elements, or the error
/// that computing them gave (reported on every later read).
pub(crate) struct Pending<L: Leaf> {
    node: Mutex<Option<Node<L>>>,
    value: OnceLock<Result<Storage>>,
    /// Elementwise ops in the graph, counting shared ones once per use (an upper bound).
    size: usize,
    /// A pending reduction: one element, never inlined into another graph.
    fold: bool,
}

impl<L: Leaf> Pending<L> {
    fn new(node: Node<L>, size: usize) -> Self {
        let fold = matches!(node.op, Op::Fold(_));
        Pending {
            node: Mutex::new(Some(node)),
            value: OnceLock::new(),
            size,
            fold,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Node<L>>> {
        // The lock only guards taking or cloning the graph: never held while computing.
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The graph, while the elements are not stored.
    fn node(&self) -> Option<Node<L>> {
        if self.value.get().is_some() {
            return None;
        }
        self.lock().clone()
    }

    /// True once the elements (or the error computing them gave) are stored.
    pub(crate) fn is_realized(&self) -> bool {
        self.value.get().is_some()
    }

    /// The stored elements; call [`realize`] first.
    pub(crate) fn value(&self) -> Result<&Storage> {
        match self.value.get() {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Error::tape(
                "realize",
                "a pending tensor was read before it was computed",
            )),
        }
    }

    /// Stores the elements, or the error, and drops the graph with every operand it kept alive.
    /// When two threads computed the same tensor, the first stores it (the same bits).
    fn set(&self, v: Result<Storage>) {
        let _ = self.value.set(v);
        let node = self.lock().take();
        drop_graph(node);
    }
}

/// Drops a graph without recursion: a chain of 100,000 pending tensors, each holding the
/// previous one, would otherwise overflow the stack one `Drop` frame per link.
fn drop_graph<L: Leaf>(node: Option<Node<L>>) {
    let Some(node) = node else { return };
    let mut work = node.inputs;
    while let Some(t) = work.pop() {
        t.dismantle(&mut work);
    }
}

impl<L: Leaf> Drop for Pending<L> {
    fn drop(&mut self) {
        let node = self
            .node
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop_graph(node);
    }
}

/// Hands over the operands of a pending tensor that is being dropped (see [`drop_graph`]).
pub(crate) fn take_inputs<L: Leaf>(p: &mut Pending<L>, work: &mut Vec<L>) {
    if let Some(node) = p.node.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
        work.extend(node.inputs);
    }
}

/// Computes `root` (a pending tensor or a view of one) and whatever pending tensors its graph
/// reads, deepest first, with an explicit stack: a chain of reductions that each read the
/// previous one is realized without recursion however long it is.
///
/// No thread ever waits for another to finish computing a tensor. A reader that finds the
/// elements missing computes them itself, even if another thread is at it (both get the same
/// bits; the first to finish stores them). Waiting is what deadlocked: a pool thread computing
/// a tensor waits for its parallel chunks, steals a job that reads the same tensor, and that
/// job would wait for the computation below it on its own stack.
pub(crate) fn realize<L: Leaf>(root: &L) {
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.last() {
        let Some((owner, p)) = t.unrealized() else {
            stack.pop();
            continue;
        };
        let Some(node) = p.node() else {
            stack.pop();
            continue;
        };
        let mut program = Program::default();
        let (n, dtype) = (owner.numel(), owner.dtype());
        let root = match node.op {
            Op::Fold(_) => program.operand(&node.inputs[0], node.inputs[0].numel()),
            _ => program.add(node.clone(), n),
        };
        let deps: Vec<L> = program
            .leaves
            .iter()
            .filter(|l| !l.is_realized())
            .cloned()
            .collect();
        if !deps.is_empty() {
            stack.extend(deps);
            continue;
        }
        let owner = owner.clone();
        stack.pop();
        let computed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (node.op, dtype) {
                (Op::Fold(f), DType::F64) => run_folds::<f64, L>(&owner, f, &node.inputs[0]),
                (Op::Fold(f), _) => run_folds::<f32, L>(&owner, f, &node.inputs[0]),
                (_, DType::F64) => Typed::<f64>::new(&program, n)?.collect(root),
                _ => Typed::<f32>::new(&program, n)?.collect(root),
            }));
        let value = match computed {
            Ok(r) => r.map(Storage::new),
            Err(panic) => Err(Error::resource(
                "realize",
                format!(
                    "computing a pending tensor of shape {:?} and dtype {dtype} failed: {}",
                    owner.shape(),
                    panic_message(&panic)
                ),
            )),
        };
        if let Some((_, p)) = owner.unrealized() {
            p.set(value);
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// How an operand of a fusable op enters a graph: `Some(ops it brings)`, or `None` when it
/// cannot (a broadcast of something bigger than one element, or a strided view).
fn fusable<L: Leaf>(t: &L, n: usize) -> Option<usize> {
    if let Some((_, p)) = t.pending() {
        if p.fold {
            return Some(0);
        }
        return (t.numel() == n).then_some(p.size);
    }
    let l = t.layout();
    if is_scalar(t) {
        return Some(0);
    }
    (t.numel() == n && l.is_contiguous()).then_some(0)
}

/// One value for every element: a single element, or a broadcast of one.
fn is_scalar<L: Leaf>(t: &L) -> bool {
    t.numel() == 1 || (t.numel() > 0 && t.layout().strides.iter().all(|&s| s == 0))
}

fn pending<L: Leaf>(op: Op, inputs: &[&L], shape: &[usize], min: usize) -> Option<L> {
    let n = numel(shape);
    let dtype = inputs[0].dtype();
    if n < min || !dtype.is_float() || inputs.iter().any(|t| t.dtype() != dtype) {
        return None;
    }
    // The graphs are host code; GPU tensors run each op as its own kernel (for now).
    if inputs.iter().any(|t| !t.on_host()) {
        return None;
    }
    // A result too large to allocate runs eagerly, whose allocation fails with an error now
    // instead of at the first read.
    if n.saturating_mul(dtype.size_in_bytes()) > isize::MAX as usize {
        return None;
    }
    let mut size = 1;
    for t in inputs {
        size += fusable(*t, n)?;
    }
    if size > MAX_NODES {
        return None;
    }
    let node = Node {
        op,
        inputs: inputs.iter().map(|&t| t.clone()).collect(),
    };
    Some(L::from_pending(Pending::new(node, size), shape, dtype))
}

/// `x` through a unary kernel as a pending tensor, or `None` when the op should run eagerly
/// (too small, not float, or a graph too big).
#[inline]
pub(crate) fn unary<L: Leaf>(x: &L, k: &'static UnaryKernel, min: usize) -> Option<L> {
    // Inlined size check: small tensors, the common case, pay only this comparison.
    if x.numel() < min {
        return None;
    }
    pending(Op::Unary(k), &[x], x.shape(), min)
}

/// `a ∘ b` as a pending tensor (broadcasting only scalars), or `None` to run eagerly.
#[inline]
pub(crate) fn binary<L: Leaf>(a: &L, b: &L, k: &'static BinaryKernel, min: usize) -> Option<L> {
    if a.numel().max(b.numel()) < min {
        return None;
    }
    binary_pending(a, b, k, min)
}

fn binary_pending<L: Leaf>(a: &L, b: &L, k: &'static BinaryKernel, min: usize) -> Option<L> {
    if crate::shape::same(a.shape(), b.shape()) {
        return pending(Op::Binary(k), &[a, b], a.shape(), min);
    }
    let shape = broadcast_shapes("fusion", a.shape(), b.shape()).ok()?;
    pending(Op::Binary(k), &[a, b], &shape, min)
}

// ---------------------------------------------------------------------------------------------
// Reductions

/// A reduction a pending tensor can be folded into.
#[derive(Clone, Copy)]
pub(crate) enum Fold {
    Sum,
    Max,
    Min,
}

impl Fold {
    fn init<T: Num>(self) -> T {
        match self {
            Fold::Sum => T::ZERO,
            Fold::Max => T::LOWEST,
            Fold::Min => T::HIGHEST,
        }
    }
    fn combine<T: Num>(self, p: T, q: T) -> T {
        match self {
            Fold::Sum => p.wadd(q),
            Fold::Max => p.max_(q),
            Fold::Min => p.min_(q),
        }
    }
    /// One block, exactly as `cpu::reduce3` folds it (so fused and eager agree bit for bit).
    fn block<T: Num>(self, v: &[T]) -> T {
        match self {
            Fold::Sum => cpu::fold_block(v, T::ZERO, &|p: T, q: T| p.wadd(q)),
            Fold::Max => cpu::fold_block(v, T::LOWEST, &|p: T, q: T| p.max_(q)),
            Fold::Min => cpu::fold_block(v, T::HIGHEST, &|p: T, q: T| p.min_(q)),
        }
    }
    /// Blocks' results combined as `cpu::reduce3` combines them.
    fn pairwise<T: Num>(self, parts: &[T]) -> T {
        cpu::pairwise(parts, self.init(), &|p, q| self.combine(p, q))
    }
}

/// Sums of `K` blocks of the same length, each exactly as [`Fold::block`] sums it (eight lanes
/// of running sums, combined as a tree, then the tail), computed together: a sum alone waits
/// on its own previous add at every step of its 128, while `K` of them interleave and keep
/// the adder busy (the seed's three sums were 30% of its compiled step at 10M points).
#[inline(always)]
fn sum_blocks<T: Float, const K: usize>(blocks: [&[T]; K]) -> [T; K] {
    let chunks = blocks.map(|b| b.as_chunks::<8>());
    let steps = chunks.iter().map(|(c, _)| c.len()).min().unwrap_or(0);
    let mut acc = [[T::ZERO; 8]; K];
    for c in 0..steps {
        for (acc, (lanes, _)) in acc.iter_mut().zip(&chunks) {
            let lanes = &lanes[c];
            for i in 0..8 {
                acc[i] = acc[i].wadd(lanes[i]);
            }
        }
    }
    let mut sums = [T::ZERO; K];
    for ((sum, a), (_, tail)) in sums.iter_mut().zip(&acc).zip(&chunks) {
        // opaque to the vectorizer, which otherwise arranged the lanes for this tree and
        // shuffled them at every step of the loop above
        let a = std::hint::black_box(*a);
        let mut r =
            (a[0].wadd(a[1]).wadd(a[2].wadd(a[3]))).wadd(a[4].wadd(a[5]).wadd(a[6].wadd(a[7])));
        for &x in *tail {
            r = r.wadd(x);
        }
        *sum = r;
    }
    sums
}

/// [`sum_blocks`] built for the baseline and, where the CPU has it, AVX2 (one register per
/// eight lanes instead of two; the same additions, so the same bits).
fn sum_blocks_built<T: Float, const K: usize>(blocks: [&[T]; K]) -> [T; K] {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<T: Float, const K: usize>(blocks: [&[T]; K]) -> [T; K] {
            sum_blocks(blocks)
        }
        if wide() == 1 {
            // SAFETY: `wide()` is 1 only on CPUs that have AVX2.
            return unsafe { avx2(blocks) };
        }
    }
    sum_blocks(blocks)
}

/// Most reductions waiting on one thread; the oldest is forgotten (not lost: it still runs
/// when read) beyond that.
const MAX_WAITING: usize = 32;
/// Most instructions in one run of several reductions.
const MAX_SHARED_INSTS: usize = 48;

/// The reduction of all of a pending tensor's elements, itself pending; `None` when `x` is not
/// pending or the reduction keeps an axis with more than one element.
///
/// When it runs, every other pending reduction of this thread that reads no tensor this one
/// does not read runs in the same pass: the loss and the gradients of a model are reductions
/// of the same data, and the backward pass asks for them one at a time.
#[inline]
pub(crate) fn fold<L: Leaf>(x: &L, out_shape: &[usize], fold: Fold) -> Option<L> {
    if x.owns_storage() {
        return None;
    }
    fold_pending(x, out_shape, fold)
}

fn fold_pending<L: Leaf>(x: &L, out_shape: &[usize], fold: Fold) -> Option<L> {
    let (_, p) = x.pending()?;
    if p.fold || numel(out_shape) != 1 {
        return None;
    }
    let node = Node {
        op: Op::Fold(fold),
        inputs: vec![x.clone()],
    };
    let t = L::from_pending(Pending::new(node, 0), out_shape, x.dtype());
    L::waiting(|w| {
        w.retain(|w| L::upgrade(w).is_some_and(|t| t.pending().is_some()));
        if w.len() >= MAX_WAITING {
            w.remove(0);
        }
        w.push(t.downgrade());
    });
    Some(t)
}

/// Runs reduction `me` (`f` over `x`) together with the waiting reductions that read nothing
/// more, stores their values, and returns `me`'s.
fn run_folds<T: Fusable, L: Leaf>(me: &L, f: Fold, x: &L) -> Result<CpuStorage> {
    let n = x.numel();
    let mut program = Program::default();
    let mut roots = vec![(program.operand(x, n), f)];
    let mut others = vec![];
    let waiting: Vec<L> = L::waiting(|w| w.iter().filter_map(L::upgrade).collect());
    for t in waiting {
        let Some((_, p)) = t.pending() else { continue };
        if t.id() == me.id() || t.dtype() != T::DTYPE {
            continue;
        }
        let Some(Node {
            op: Op::Fold(g),
            inputs,
        }) = p.node()
        else {
            continue;
        };
        if inputs[0].numel() != n {
            continue;
        }
        let mut trial = program.clone();
        let root = trial.operand(&inputs[0], n);
        // A waiting reduction that reads another pending one (perhaps `me`) runs later.
        let waits = trial.leaves[program.leaves.len()..]
            .iter()
            .any(|t| !t.is_realized());
        if waits || trial.insts.len() > MAX_SHARED_INSTS || trial.reads_more_than(&program, n) {
            continue;
        }
        program = trial;
        roots.push((root, g));
        others.push(t);
    }
    let values = Typed::<T>::new(&program, n)?.fold(&roots);
    for (t, &v) in others.iter().zip(&values[1..]) {
        if let Some((_, p)) = t.pending() {
            p.set(Ok(Storage::new(T::into_storage(vec![v]))));
        }
    }
    Ok(T::into_storage(vec![values[0]]))
}

// ---------------------------------------------------------------------------------------------
// Running a graph

/// Where an instruction's operand comes from: a leaf (a computed array, or one value for
/// every element), or the register of an earlier instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Operand {
    Leaf(usize),
    Reg(usize),
}

/// An instruction's block kernel.
#[derive(Clone, Copy)]
pub(crate) enum Kernel {
    Unary(&'static UnaryKernel),
    Binary(&'static BinaryKernel),
}

/// Graphs flattened in dependency order: each instruction writes its own register. Computed
/// tensors (and pending reductions) are leaves; pending elementwise operands are inlined, once
/// each however many graphs use them.
#[derive(Clone)]
struct Program<L> {
    leaves: Vec<L>,
    insts: Vec<(Kernel, [Operand; 2])>,
    seen: Vec<(u64, Operand)>,
}

impl<L> Default for Program<L> {
    fn default() -> Self {
        Program {
            leaves: Vec::new(),
            insts: Vec::new(),
            seen: Vec::new(),
        }
    }
}

impl<L: Leaf> Program<L> {
    /// Adds an elementwise node and what it reads; returns its register.
    fn add(&mut self, node: Node<L>, n: usize) -> Operand {
        let mut args = [Operand::Leaf(0); 2];
        for (slot, t) in args.iter_mut().zip(&node.inputs) {
            *slot = self.operand(t, n);
        }
        let kernel = match node.op {
            Op::Unary(k) => Kernel::Unary(k),
            Op::Binary(k) => Kernel::Binary(k),
            // Reductions are leaves (see `operand`), never nodes of a graph.
            Op::Fold(_) => return Operand::Leaf(0),
        };
        self.insts.push((kernel, args));
        Operand::Reg(self.insts.len() - 1)
    }

    fn operand(&mut self, t: &L, n: usize) -> Operand {
        let inner = t
            .pending()
            .filter(|(_, p)| !p.fold)
            .and_then(|(owner, p)| Some((owner.id(), p.node()?)));
        let id = inner.as_ref().map_or(t.id(), |(id, _)| *id);
        if let Some(&(_, o)) = self.seen.iter().find(|(s, _)| *s == id) {
            return o;
        }
        let o = match inner {
            Some((_, node)) => self.add(node, n),
            None => {
                self.leaves.push(t.clone());
                Operand::Leaf(self.leaves.len() - 1)
            }
        };
        self.seen.push((id, o));
        o
    }

    /// True when this program reads an array of `n` elements that `before` (a prefix of it)
    /// does not: another trip through memory.
    fn reads_more_than(&self, before: &Program<L>, n: usize) -> bool {
        let block = |t: &&L| !is_scalar(*t) && t.numel() == n;
        self.leaves[before.leaves.len()..]
            .iter()
            .filter(block)
            .any(|t| {
                !before
                    .leaves
                    .iter()
                    .filter(block)
                    .any(|u| u.layout().offset == t.layout().offset && u.shares_storage_with(t))
            })
    }
}

/// The elements of a computed leaf as `T`.
fn host_slice<T: Fusable, L: Leaf>(t: &L) -> Result<&[T]> {
    T::slice(t.storage()?.cpu()?).ok_or_else(|| {
        Error::dtype(
            "realize",
            format!("operand has dtype {}, not {}", t.dtype(), T::DTYPE),
        )
    })
}

/// The float types graphs run on, and how each picks its kernels.
pub(crate) trait Fusable: Float {
    fn unary(k: &UnaryKernel) -> UnaryFn<Self>;
    fn binary(k: &BinaryKernel) -> BinaryFn<Self>;
    /// This thread's registers for passes over elements of this type.
    fn registers() -> &'static std::thread::LocalKey<std::cell::Cell<Vec<Self>>>;
}

thread_local! {
    static REGISTERS_F32: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static REGISTERS_F64: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Fusable for f32 {
    fn unary(k: &UnaryKernel) -> UnaryFn<f32> {
        k.f32[wide()]
    }
    fn binary(k: &BinaryKernel) -> BinaryFn<f32> {
        k.f32[wide()]
    }
    fn registers() -> &'static std::thread::LocalKey<std::cell::Cell<Vec<f32>>> {
        &REGISTERS_F32
    }
}

impl Fusable for f64 {
    fn unary(k: &UnaryKernel) -> UnaryFn<f64> {
        k.f64[wide()]
    }
    fn binary(k: &BinaryKernel) -> BinaryFn<f64> {
        k.f64[wide()]
    }
    fn registers() -> &'static std::thread::LocalKey<std::cell::Cell<Vec<f64>>> {
        &REGISTERS_F64
    }
}

/// A pass's bound leaves: its own, or borrowed from a caller that keeps them on its stack (a
/// small compiled step's groups, which would otherwise allocate a vector per call).
enum Leaves<'a, T> {
    Owned(Vec<Arg<'a, T>>),
    Borrowed(&'a [Arg<'a, T>]),
}

impl<'a, T> std::ops::Deref for Leaves<'a, T> {
    type Target = [Arg<'a, T>];
    fn deref(&self) -> &[Arg<'a, T>] {
        match self {
            Leaves::Owned(v) => v,
            Leaves::Borrowed(s) => s,
        }
    }
}

/// A program bound to its leaves' elements, ready to run on the host.
struct Typed<'a, T> {
    leaves: Leaves<'a, T>,
    /// Leaves read from a buffer the pass overwrites (by index into `leaves`, whose entry is
    /// then unused): see [`InPlace`].
    shared: Vec<(usize, Shared<T>)>,
    insts: &'a [(Kernel, [Operand; 2])],
    /// The register each instruction writes (`None`: its own, `i`), and how many there are:
    /// a compiled graph's groups reuse the registers of values no longer read, so a block's
    /// registers stay in the core's first-level cache.
    outs: Option<&'a [usize]>,
    slots: usize,
    n: usize,
    /// Elements per register: a block, or all of them when fewer (a compiled graph's groups
    /// run at every size, and a group of 200 elements should not clear 4 KB per register).
    stride: usize,
}

impl<'a, T: Fusable> Typed<'a, T> {
    /// Binds the leaves (computed by [`realize`] before; a leaf whose computation failed
    /// fails this graph with the same error).
    fn new<L: Leaf>(p: &'a Program<L>, n: usize) -> Result<Self> {
        let leaves = p
            .leaves
            .iter()
            .map(|t| {
                let l = t.layout();
                let data = host_slice::<T, L>(t)?;
                let arg = if is_scalar(t) {
                    data.get(l.offset).copied().map(Arg::Scalar)
                } else {
                    data.get(l.offset..l.offset + n).map(Arg::Block)
                };
                arg.ok_or_else(|| {
                    Error::shape(
                        "realize",
                        format!(
                            "operand of shape {:?} does not cover {n} elements",
                            t.shape()
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(Typed::bind(&p.insts, Leaves::Owned(leaves), n))
    }

    /// `insts` bound to `leaves`, over `n` elements.
    fn bind(insts: &'a [(Kernel, [Operand; 2])], leaves: Leaves<'a, T>, n: usize) -> Self {
        Typed {
            leaves,
            shared: vec![],
            insts,
            outs: None,
            slots: insts.len(),
            n,
            stride: BLOCK.min(n).max(1),
        }
    }

    /// Runs every instruction over elements `start..start + len`.
    fn run(&self, start: usize, len: usize, regs: &mut [T]) {
        let w = self.stride;
        for (i, (k, args)) in self.insts.iter().enumerate() {
            // the register written, and those below and above it (an instruction never reads
            // the register it writes)
            let o = self.outs.map_or(i, |outs| outs[i]);
            let (below, rest) = regs.split_at_mut(o * w);
            let (out, above) = rest.split_at_mut(w);
            let out = &mut out[..len];
            let arg = |a: Operand| match a {
                Operand::Leaf(j) => self.leaf(j, start, len),
                Operand::Reg(r) if r < o => Arg::Block(&below[r * w..r * w + len]),
                Operand::Reg(r) => {
                    let r = r - o - 1;
                    Arg::Block(&above[r * w..r * w + len])
                }
            };
            match *k {
                Kernel::Unary(k) => T::unary(k)(arg(args[0]), out),
                Kernel::Binary(k) => T::binary(k)(arg(args[0]), arg(args[1]), out),
            }
        }
    }

    /// The block of `o` computed by the last [`Typed::run`].
    fn values<'r>(
        &'r self,
        o: Operand,
        start: usize,
        len: usize,
        regs: &'r [T],
        scratch: &'r mut Vec<T>,
    ) -> &'r [T] {
        match o {
            Operand::Reg(r) => &regs[r * self.stride..r * self.stride + len],
            Operand::Leaf(j) => match self.leaf(j, start, len) {
                Arg::Block(s) => s,
                Arg::Scalar(v) => {
                    scratch.clear();
                    scratch.resize(len, v);
                    scratch
                }
            },
        }
    }

    /// Each of `folds` over the block `start..start + len` computed by the last
    /// [`Typed::run`], as [`Fold::block`] folds it; `put(j, v)` receives fold `j`'s value.
    /// Sums of registers (a loss and its gradients' reductions) go up to four at a time
    /// through [`sum_blocks_built`], the rest one by one.
    fn fold_blocks(
        &self,
        folds: &[(Operand, Fold)],
        (start, len): (usize, usize),
        regs: &[T],
        scratch: &mut Vec<T>,
        mut put: impl FnMut(usize, T),
    ) {
        let w = self.stride;
        let mut sums: [(usize, &[T]); 4] = [(0, &[]); 4];
        let mut waiting = 0;
        let flush = |sums: &[(usize, &[T])], put: &mut dyn FnMut(usize, T)| {
            let values: &[T] = match *sums {
                [a] => &sum_blocks_built([a.1]),
                [a, b] => &sum_blocks_built([a.1, b.1]),
                [a, b, c] => &sum_blocks_built([a.1, b.1, c.1]),
                [a, b, c, d] => &sum_blocks_built([a.1, b.1, c.1, d.1]),
                _ => &[],
            };
            for (&(j, _), &v) in sums.iter().zip(values) {
                put(j, v);
            }
        };
        for (j, &(o, f)) in folds.iter().enumerate() {
            match (o, f) {
                (Operand::Reg(r), Fold::Sum) => {
                    sums[waiting] = (j, &regs[r * w..r * w + len]);
                    waiting += 1;
                    if waiting == sums.len() {
                        flush(&sums, &mut put);
                        waiting = 0;
                    }
                }
                _ => put(j, f.block(self.values(o, start, len, regs, scratch))),
            }
        }
        flush(&sums[..waiting], &mut put);
    }

    /// Leaf `j`'s elements `start..start + len`, or its one value.
    #[inline]
    fn leaf(&self, j: usize, start: usize, len: usize) -> Arg<'_, T> {
        match self.leaves[j] {
            Arg::Block(s) => Arg::Block(&s[start..start + len]),
            scalar if self.shared.is_empty() => scalar,
            scalar => match self.shared.iter().find(|&&(l, _)| l == j) {
                // SAFETY: the buffer has `n` elements and is borrowed mutably by `run_group`
                // for the whole pass; this range is written only after the block's
                // instructions and folds, which are all that read it, have run (see
                // `run_group`), and no other call reads or writes it.
                Some((_, p)) => Arg::Block(unsafe {
                    std::slice::from_raw_parts(p.0.add(start).cast_const(), len)
                }),
                None => scalar,
            },
        }
    }

    /// Runs `f` with the registers of one thread's pass: a buffer kept per thread, so that a
    /// compiled step's groups allocate none per call (taken out while in use: a pass inside
    /// `f`, on the same thread, gets a new one).
    fn with_registers<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let len = self.slots * self.stride;
        let mut regs = T::registers().with(std::cell::Cell::take);
        if regs.len() < len {
            regs.resize(len, T::ZERO);
        }
        let r = f(&mut regs[..len]);
        T::registers().with(|c| c.set(regs));
        r
    }

    /// Every element of `root`, written once into a new buffer.
    fn collect(&self, root: Operand) -> Result<CpuStorage> {
        let v = cpu::fill(self.n, |start, out| {
            self.with_registers(|regs| {
                let mut scratch = vec![];
                for (b, o) in out.chunks_mut(BLOCK).enumerate() {
                    let s = start + b * BLOCK;
                    self.run(s, o.len(), regs);
                    let r = self.values(root, s, o.len(), regs, &mut scratch);
                    for (o, &v) in o.iter_mut().zip(r) {
                        o.write(v);
                    }
                }
            })
        })?;
        Ok(T::into_storage(v))
    }

    /// Each root folded over all elements in exactly the order `cpu::reduce3` folds a
    /// computed tensor (blocks of 1,024 with eight lanes, combined pairwise by
    /// [`cpu::tree_fold`]), so fused and eager reductions give the same bits.
    fn fold(&self, roots: &[(Operand, Fold)]) -> Vec<T> {
        let leaf = |start: usize, len: usize| {
            self.with_registers(|regs| {
                let mut scratch = vec![];
                let mut parts: Vec<Vec<T>> = vec![Vec::with_capacity(CHUNK / BLOCK); roots.len()];
                for s in (start..start + len).step_by(BLOCK) {
                    let len = BLOCK.min(start + len - s);
                    self.run(s, len, regs);
                    self.fold_blocks(roots, (s, len), regs, &mut scratch, |j, v| parts[j].push(v));
                }
                parts
                    .iter()
                    .zip(roots)
                    .map(|(part, &(_, f))| f.pairwise(part))
                    .collect::<Vec<T>>()
            })
        };
        let combine = |mut a: Vec<T>, b: Vec<T>| {
            for ((a, b), &(_, f)) in a.iter_mut().zip(b).zip(roots) {
                *a = f.combine(*a, b);
            }
            a
        };
        cpu::tree_fold(self.n, &leaf, &combine)
    }
}

/// A buffer one [`run_group`] pass reads as a leaf and overwrites with one of its outputs,
/// block by block: a value that dies at the group, or the variable the output is assigned to
/// (a compiled step's in-place updates: no new buffer, and the cache lines just read are the
/// ones written).
pub(crate) struct InPlace<'a, T> {
    /// The index in the pass's leaves (whose own entry is then ignored).
    pub leaf: usize,
    /// The index in the pass's outputs.
    pub output: usize,
    pub buf: &'a mut [T],
}

/// An in-place buffer, read through a raw pointer (see [`Typed::leaf`]).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);

// SAFETY: each range of the buffer is read and then written by one call only (see `run_group`).
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

/// The output buffers of one [`run_group`] pass, written through raw pointers because the
/// leaves of [`cpu::tree_fold`] run on several threads, each on its own range.
struct Outputs<T>(Vec<*mut T>);

// SAFETY: the pointers are only written at disjoint ranges (see `run_group`).
unsafe impl<T: Send> Sync for Outputs<T> {}

impl<T> Outputs<T> {
    /// Buffer `i` (a method, so that closures capture the whole `Sync` wrapper).
    fn get(&self, i: usize) -> *mut T {
        self.0[i]
    }
}

/// What one [`run_group`] pass gives: each output's new buffer (`None` for one written in
/// place), and each fold's value.
pub(crate) type Pass<T> = (Vec<Option<Vec<T>>>, Vec<T>);

/// [`run_group`] when the pass is one block (the seed's 200 points, a scalar update): the
/// instructions and folds once, on this thread, without the parallel split, its closures and
/// its per-fold vectors. A fold's value is its block's (`tree_fold` of one block returns it).
fn one_block<T: Fusable>(
    typed: &Typed<'_, T>,
    outputs: &[usize],
    folds: &[(Operand, Fold)],
) -> Result<Pass<T>> {
    let (n, w) = (typed.n, typed.stride);
    typed.with_registers(|regs| {
        typed.run(0, n, regs);
        let mut folded = vec![T::ZERO; folds.len()];
        typed.fold_blocks(folds, (0, n), regs, &mut vec![], |j, v| folded[j] = v);
        let mut bufs = Vec::with_capacity(outputs.len());
        for &r in outputs {
            let mut b = crate::backend::pool::take::<T>("function", n)?;
            b.extend_from_slice(&regs[r * w..r * w + n]);
            bufs.push(Some(b));
        }
        Ok((bufs, folded))
    })
}

/// [`run_group`] for a pass of one block (`1..=BLOCK` elements), into the caller's buffers:
/// each register of `outputs` into `out` (its first `n` elements), each fold into `folded`.
/// The same computation as [`one_block`], for a compiled step that keeps its values in
/// buffers of its own from call to call (`function/flat.rs`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_block_into<T: Fusable>(
    insts: &[(Kernel, [Operand; 2])],
    out_slots: Option<&[usize]>,
    slots: usize,
    leaves: &[Arg<'_, T>],
    n: usize,
    outputs: &[usize],
    folds: &[(Operand, Fold)],
    out: &mut [Vec<T>],
    folded: &mut [T],
) -> Result<()> {
    if !(1..=BLOCK).contains(&n)
        || out.len() != outputs.len()
        || out.iter().any(|o| o.len() < n)
        || folded.len() != folds.len()
    {
        return Err(Error::shape(
            "function",
            format!(
                "a one-block pass over {n} elements given {} output buffers for {} outputs \
                 and {} fold slots for {} folds",
                out.len(),
                outputs.len(),
                folded.len(),
                folds.len()
            ),
        ));
    }
    let mut typed = Typed::bind(insts, Leaves::Borrowed(leaves), n);
    typed.outs = out_slots;
    typed.slots = slots;
    let w = typed.stride;
    typed.with_registers(|regs| {
        typed.run(0, n, regs);
        typed.fold_blocks(folds, (0, n), regs, &mut vec![], |j, v| folded[j] = v);
        for (o, &r) in out.iter_mut().zip(outputs) {
            o[..n].copy_from_slice(&regs[r * w..r * w + n]);
        }
    });
    Ok(())
}

/// One pass of a compiled graph's fusion group over `n` elements (`gradtape::function`): the
/// instructions `insts` over `leaves` (instruction `i` writing register `out_slots[i]` of
/// `slots`, or register `i` when `None`), each register in `outputs` written into a new buffer
/// or into its [`InPlace`] buffer (then `None` in the result), and each of `folds` reduced
/// over all elements in the order [`cpu::reduce3`] reduces a computed array, so the group
/// gives the bits its ops give one by one. Nothing else of the chain is ever written to
/// memory.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_group<T: Fusable>(
    insts: &[(Kernel, [Operand; 2])],
    out_slots: Option<&[usize]>,
    slots: usize,
    leaves: Vec<Arg<'_, T>>,
    n: usize,
    outputs: &[usize],
    folds: &[(Operand, Fold)],
    in_place: Vec<InPlace<'_, T>>,
) -> Result<Pass<T>> {
    let mut typed = Typed::bind(insts, Leaves::Owned(leaves), n);
    typed.outs = out_slots;
    typed.slots = slots;
    if (1..=BLOCK).contains(&n) && in_place.is_empty() {
        return one_block(&typed, outputs, folds);
    }
    let mut bufs = Vec::with_capacity(outputs.len());
    for i in 0..outputs.len() {
        bufs.push(match in_place.iter().any(|p| p.output == i) {
            true => None,
            false => Some(crate::backend::pool::take::<T>("function", n)?),
        });
    }
    let mut ptrs = Outputs(
        bufs.iter_mut()
            .map(|b| match b {
                Some(b) => b.spare_capacity_mut().as_mut_ptr().cast::<T>(),
                None => std::ptr::null_mut(),
            })
            .collect(),
    );
    for p in in_place {
        if p.buf.len() != n || p.leaf >= typed.leaves.len() || p.output >= outputs.len() {
            return Err(Error::shape(
                "function",
                format!(
                    "in-place buffer of {} elements for a pass over {n}",
                    p.buf.len()
                ),
            ));
        }
        let ptr = p.buf.as_mut_ptr();
        ptrs.0[p.output] = ptr;
        typed.shared.push((p.leaf, Shared(ptr)));
    }
    let w = typed.stride;
    let leaf = |start: usize, len: usize| {
        typed.with_registers(|regs| {
            let mut scratch = vec![];
            // each fold's blocks (a leaf of `tree_fold` has at most CHUNK / BLOCK)
            let mut parts = vec![[T::ZERO; CHUNK / BLOCK]; folds.len()];
            for (b, s) in (start..start + len).step_by(BLOCK).enumerate() {
                let len = BLOCK.min(start + len - s);
                typed.run(s, len, regs);
                // the folds before the outputs are written: a fold may read an in-place leaf
                typed.fold_blocks(folds, (s, len), regs, &mut scratch, |j, v| parts[j][b] = v);
                for (i, &r) in outputs.iter().enumerate() {
                    let (block, p) = (&regs[r * w..r * w + len], ptrs.get(i));
                    // SAFETY: each buffer has room for `n` elements (checked above for the
                    // in-place ones), and `tree_fold` hands each element index in `0..n` to
                    // exactly one call of this closure (its leaves partition the range), so no
                    // two writes overlap; an in-place buffer's range is read only by this
                    // block's instructions and folds, which have run, and the registers are
                    // not in any output buffer.
                    unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), p.add(s), len) };
                }
            }
            let blocks = len.div_ceil(BLOCK);
            parts
                .iter()
                .zip(folds)
                .map(|(part, &(_, f))| f.pairwise(&part[..blocks]))
                .collect::<Vec<T>>()
        })
    };
    let combine = |mut a: Vec<T>, b: Vec<T>| {
        for ((a, b), &(_, f)) in a.iter_mut().zip(b).zip(folds) {
            *a = f.combine(*a, b);
        }
        a
    };
    let folded = cpu::tree_fold(n, &leaf, &combine);
    for b in bufs.iter_mut().flatten() {
        // SAFETY: the pass above wrote every element of `0..n` of every buffer.
        unsafe { b.set_len(n) };
    }
    Ok((bufs, folded))
}
