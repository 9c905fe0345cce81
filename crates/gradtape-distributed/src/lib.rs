//! Data-parallel training: every process (or thread) holds the model, takes its shard of each
//! global batch, and the gradients are averaged across all of them before each update
//! (Horovod's `DistributedGradientTape`, PyTorch's DDP). One changed line in a training loop:
//!
//! ```text
//! let grads = distributed::average_gradients(&comm, tape.gradient(&loss, &vars)?)?;
//! ```
//!
//! The transport is a [`Communicator`]: rank, size, all-reduce, broadcast, barrier, and a way to
//! fail that stops every member instead of leaving them waiting. Here: [`SingleProcess`] (the
//! same program without parallelism), [`LocalGroup`] (threads of one process, for tests and for
//! several model replicas on one machine) and, with the cargo feature `mpi`, `Mpi` (processes
//! started by `mpirun` or Slurm's `srun`). NCCL's, once tensors live on GPUs, fits beside them.
//!
//! Gradients travel in buckets of at most [`BUCKET_BYTES`] (as DDP's): one all-reduce per bucket,
//! not per variable.

use std::sync::{Arc, Condvar, Mutex};

use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// The most bytes of gradients one all-reduce carries (PyTorch DDP's default bucket).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The error of a broadcast from a member that does not exist.
fn check_root(root: usize, size: usize) -> Result<()> {
    if root >= size {
        return Err(Error::arg(
            "broadcast",
            format!("root {root} in a group of {size}"),
        ));
    }
    Ok(())
}

/// The collectives data-parallel training needs. Every member must call the same collectives in
/// the same order with buffers of the same length; a member that cannot (a bad file, a NaN)
/// calls [`Communicator::fail`], and every other member's next collective returns an error
/// with its reason instead of waiting forever.
pub trait Communicator {
    /// This member's index, from 0.
    fn rank(&self) -> usize;
    /// How many members there are.
    fn size(&self) -> usize;
    /// Replaces `buf` by the elementwise sum of every member's `buf` (the same on every member).
    ///
    /// # Errors
    /// When a member failed or left, or the lengths differ.
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()>;
    /// [`Communicator::all_reduce_sum`] in float32 (half the bytes on the wire for float32
    /// gradients). By default it goes through float64.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum`].
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let mut wide: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
        self.all_reduce_sum(&mut wide)?;
        for (b, w) in buf.iter_mut().zip(wide) {
            *b = w as f32;
        }
        Ok(())
    }
    /// Replaces `buf` by `root`'s `buf` on every member.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum`].
    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()>;
    /// Waits until every member reaches it.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum`].
    fn barrier(&self) -> Result<()> {
        self.all_reduce_sum(&mut [])
    }
    /// Stops the group with `reason`: every member's next (or current) collective fails with it.
    fn fail(&self, reason: &str);
}

/// One process alone: collectives return their input.
///
/// ```
/// use gradtape::distributed::{Communicator, SingleProcess};
/// let c = SingleProcess;
/// let mut b = [1.0, 2.0];
/// c.all_reduce_sum(&mut b)?;
/// assert_eq!((c.rank(), c.size(), b), (0, 1, [1.0, 2.0]));
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [f64], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn fail(&self, _reason: &str) {}
}

/// What the members of a [`LocalGroup`] share.
struct Shared {
    size: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Completed collectives.
    generation: u64,
    /// Each member's contribution to the collective in progress.
    slots: Vec<Option<Vec<f64>>>,
    arrived: usize,
    /// The kind of the collective in progress (set by the first member to arrive).
    kind: Option<Kind>,
    /// The last completed collective's result.
    result: Arc<Vec<f64>>,
    failed: Option<String>,
}

/// The kinds of collective, so that mismatched calls are caught.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Broadcast(usize),
}

/// Members of one group in one process, one per thread (`LocalGroup::new(n)` gives `n`).
/// Sums are taken in rank order, so every member gets bit-identical results.
///
/// ```
/// use gradtape::distributed::{Communicator, LocalGroup};
/// let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
///     let handles: Vec<_> = LocalGroup::new(3)
///         .into_iter()
///         .map(|c| s.spawn(move || {
///             let mut b = vec![c.rank() as f64, 1.0];
///             c.all_reduce_sum(&mut b).unwrap();
///             b
///         }))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(sums.iter().all(|b| b == &vec![3.0, 3.0]));
/// ```
///
/// A member is `Send` but not `Sync`: each thread must own its member, so that a thread
/// which panics or returns early drops it and the others' collectives fail with "the group
/// stopped: rank 1 left ...". Lent by reference from a thread that keeps it alive, a member
/// that died would have left the others waiting forever; that no longer compiles:
///
/// ```compile_fail
/// use gradtape::distributed::{Communicator, LocalGroup};
/// let comms = LocalGroup::new(2);
/// std::thread::scope(|s| {
///     s.spawn(|| comms[0].all_reduce_sum(&mut [1.0]));
///     s.spawn(|| comms[1].all_reduce_sum(&mut [1.0]));
/// });
/// ```
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// Not `Sync` (see above).
    _owned_by_one_thread: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl LocalGroup {
    /// A group of `size` members (at least 1), to hand one to each thread.
    pub fn new(size: usize) -> Vec<LocalGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State {
                slots: vec![None; size],
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalGroup {
                rank,
                shared: shared.clone(),
                _owned_by_one_thread: std::marker::PhantomData,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Contributes `data` to a collective and waits for its result.
    fn collective(&self, op: &'static str, kind: Kind, data: Vec<f64>) -> Result<Arc<Vec<f64>>> {
        let failed = |why: &str| Error::arg(op, format!("the group stopped: {why}"));
        let mut st = self.lock();
        if let Some(why) = &st.failed {
            return Err(failed(why));
        }
        match st.kind {
            None => st.kind = Some(kind),
            Some(k) if k != kind => {
                let why = format!(
                    "rank {} called {op} while another rank is in a different collective",
                    self.rank
                );
                st.failed = Some(why.clone());
                self.shared.wake.notify_all();
                return Err(failed(&why));
            }
            Some(_) => {}
        }
        let generation = st.generation;
        st.slots[self.rank] = Some(data);
        st.arrived += 1;
        if st.arrived == self.shared.size {
            let contributions: Vec<Vec<f64>> = st
                .slots
                .iter_mut()
                .map(|s| s.take().unwrap_or_default())
                .collect();
            let len = contributions[0].len();
            if let Some(r) = contributions.iter().position(|c| c.len() != len) {
                let why = format!(
                    "{op}: rank {r} sent {} values, rank 0 sent {len} (every rank must call the same collectives with the same sizes)",
                    contributions[r].len()
                );
                st.failed = Some(why.clone());
                self.shared.wake.notify_all();
                return Err(failed(&why));
            }
            let result = match kind {
                Kind::Broadcast(root) => contributions[root].clone(),
                Kind::Sum => {
                    let mut sum = vec![0.0; len];
                    for c in &contributions {
                        for (s, v) in sum.iter_mut().zip(c) {
                            *s += v;
                        }
                    }
                    sum
                }
            };
            st.result = Arc::new(result);
            st.arrived = 0;
            st.kind = None;
            st.generation += 1;
            self.shared.wake.notify_all();
            return Ok(st.result.clone());
        }
        while st.generation == generation && st.failed.is_none() {
            st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        match &st.failed {
            Some(why) if st.generation == generation => Err(failed(why)),
            _ => Ok(st.result.clone()),
        }
    }
}

impl Communicator for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        let r = self.collective("all_reduce_sum", Kind::Sum, buf.to_vec())?;
        buf.copy_from_slice(&r);
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()> {
        check_root(root, self.size())?;
        let r = self.collective("broadcast", Kind::Broadcast(root), buf.to_vec())?;
        buf.copy_from_slice(&r);
        Ok(())
    }
    fn fail(&self, reason: &str) {
        let mut st = self.lock();
        if st.failed.is_none() {
            st.failed = Some(format!("rank {} failed: {reason}", self.rank));
        }
        self.shared.wake.notify_all();
    }
}

impl Drop for LocalGroup {
    /// A member that goes away (its thread ended or panicked) cannot take part any more: the
    /// others' waiting collectives fail instead of hanging.
    fn drop(&mut self) {
        let mut st = self.lock();
        if st.failed.is_none() && st.arrived > 0 {
            st.failed = Some(format!(
                "rank {} left while the others waited in a collective",
                self.rank
            ));
            self.shared.wake.notify_all();
        } else if st.failed.is_none() {
            st.failed = Some(format!("rank {} left the group", self.rank));
        }
    }
}

/// Horovod's averaged gradients: each present gradient summed over the group and divided by
/// its size, in buckets of at most [`BUCKET_BYTES`] (one all-reduce each). Every member must
/// pass gradients of the same shapes, `None` at the same places.
///
/// Every member weighs the same, so this is the gradient of the global batch's mean loss only
/// when every shard has as many rows; a loop over batches that [`shard`] splits unevenly
/// should call [`average_gradients_weighted`] with its row count instead.
///
/// # Errors
/// When the group failed, or a gradient is not float.
///
/// ```
/// use gradtape::distributed::{average_gradients, SingleProcess};
/// let g = vec![Some(gradtape::Tensor::from_vec(vec![2.0f32], &[1])?), None];
/// let avg = average_gradients(&SingleProcess, g)?;
/// assert_eq!(avg[0].as_ref().unwrap().to_vec::<f32>()?, vec![2.0]);
/// assert!(avg[1].is_none());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn average_gradients(
    comm: &dyn Communicator,
    grads: Vec<Option<Tensor>>,
) -> Result<Vec<Option<Tensor>>> {
    if comm.size() == 1 {
        return Ok(grads);
    }
    let present: Vec<usize> = (0..grads.len()).filter(|&i| grads[i].is_some()).collect();
    let mut out = grads.clone();
    let scale = 1.0 / comm.size() as f64;
    let mut start = 0;
    while start < present.len() {
        // fill a bucket
        let mut end = start;
        let mut bytes = 0;
        while end < present.len() {
            let g = grads[present[end]]
                .as_ref()
                .ok_or_else(|| Error::arg("average_gradients", "no gradient"))?;
            let b = g.numel() * 8;
            if end > start && bytes + b > BUCKET_BYTES {
                break;
            }
            bytes += b;
            end += 1;
        }
        let bucket: Vec<(usize, &Tensor)> = present[start..end]
            .iter()
            .map(|&i| {
                grads[i]
                    .as_ref()
                    .map(|g| (i, g))
                    .ok_or_else(|| Error::arg("average_gradients", "no gradient"))
            })
            .collect::<Result<_>>()?;
        if let Some((i, g)) = bucket.iter().find(|(_, g)| !g.dtype().is_float()) {
            return Err(Error::dtype(
                "average_gradients",
                format!("gradient {i} is {} {:?}, not float", g.dtype(), g.shape()),
            ));
        }
        if bucket.iter().all(|(_, g)| g.dtype() == DType::F32) {
            // float32 gradients travel as float32
            let mut buf: Vec<f32> = Vec::with_capacity(bytes / 8);
            for (_, g) in &bucket {
                buf.extend(g.to_vec::<f32>()?);
            }
            comm.all_reduce_sum_f32(&mut buf)?;
            let mut at = 0;
            for (i, g) in &bucket {
                let n = g.numel();
                let avg: Vec<f32> = buf[at..at + n].iter().map(|v| v * scale as f32).collect();
                out[*i] = Some(Tensor::from_vec(avg, g.shape())?);
                at += n;
            }
        } else {
            let mut buf = Vec::with_capacity(bytes / 8);
            for (_, g) in &bucket {
                buf.extend(g.to_f64_vec()?);
            }
            comm.all_reduce_sum(&mut buf)?;
            let mut at = 0;
            for (i, g) in &bucket {
                let n = g.numel();
                let avg: Vec<f64> = buf[at..at + n].iter().map(|v| v * scale).collect();
                out[*i] = Some(Tensor::from_vec(avg, g.shape())?.cast(g.dtype())?);
                at += n;
            }
        }
        start = end;
    }
    Ok(out)
}

/// The gradient of the mean loss over the whole global batch, when each member's loss is the
/// mean over its own `rows` rows (`Reduction::SumOverBatchSize`): each member's gradient
/// weighted by its share of the batch's rows, then summed over the group.
///
/// [`average_gradients`] gives every member the same weight, which is exact only when the
/// shards are the same size. [`shard`] splits a batch that does not divide evenly (the last
/// batch of an epoch, usually) into parts one row apart, and an equal-weight average of those
/// means is not the mean over the batch: a few epochs of such steps drift from what one
/// process computes (2.6e-2 after 3 epochs of 1,437 rows in batches of 64 on two members).
/// Weighted by rows, the group's step equals one process's step to rounding.
///
/// `rows` may be 0 for a member whose shard is empty (its gradients then count for nothing,
/// but it must still pass gradients of the same shapes).
///
/// # Errors
/// When the group failed, a gradient is not float, or no member has any rows.
///
/// ```
/// use gradtape::distributed::{average_gradients_weighted, SingleProcess};
/// let g = vec![Some(gradtape::Tensor::from_vec(vec![2.0f32], &[1])?)];
/// let avg = average_gradients_weighted(&SingleProcess, g, 5)?;
/// assert_eq!(avg[0].as_ref().unwrap().to_vec::<f32>()?, vec![2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn average_gradients_weighted(
    comm: &dyn Communicator,
    grads: Vec<Option<Tensor>>,
    rows: usize,
) -> Result<Vec<Option<Tensor>>> {
    if comm.size() == 1 {
        return Ok(grads);
    }
    let mut total = [rows as f64];
    comm.all_reduce_sum(&mut total)?;
    if total[0] <= 0.0 {
        return Err(Error::arg(
            "average_gradients_weighted",
            "no member has any rows (every shard is empty)",
        ));
    }
    // average_gradients divides by the group's size; this member's share times the size
    // turns that into the row-weighted sum
    let w = rows as f64 * comm.size() as f64 / total[0];
    let weighted = grads
        .into_iter()
        .map(|g| g.map(|g| gradtape_core::ops::multiply(&g, &w)).transpose())
        .collect::<Result<Vec<_>>>()?;
    average_gradients(comm, weighted)
}

/// Horovod's `broadcast_variables`: every member's variables take `root`'s values, so that all
/// replicas start from the same weights.
///
/// # Errors
/// When the group failed or the variables differ in size between members.
///
/// ```
/// use gradtape::distributed::{broadcast_variables, SingleProcess};
/// let v = gradtape::Variable::new(1.5);
/// broadcast_variables(&SingleProcess, &[v.clone()], 0)?;
/// assert_eq!(v.value().item()?, 1.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn broadcast_variables(comm: &dyn Communicator, vars: &[Variable], root: usize) -> Result<()> {
    let mut buf = vec![];
    for v in vars {
        buf.extend(v.value().to_f64_vec()?);
    }
    comm.broadcast(&mut buf, root)?;
    let mut at = 0;
    for v in vars {
        let n: usize = v.shape().iter().product();
        let t = Tensor::from_vec(buf[at..at + n].to_vec(), v.shape())?;
        v.assign(&t.cast(v.dtype())?)?; // a no-op cast for float64 variables
        at += n;
    }
    Ok(())
}

/// This member's rows of a global batch: the `rank`-th of `size` contiguous, near-equal parts
/// (every member shuffles with the same seed, so together they cover the batch once).
///
/// ```
/// use gradtape::distributed::shard;
/// assert_eq!(shard(&[10, 11, 12, 13, 14], 0, 2), vec![10, 11]);
/// assert_eq!(shard(&[10, 11, 12, 13, 14], 1, 2), vec![12, 13, 14]);
/// ```
pub fn shard(batch: &[i64], rank: usize, size: usize) -> Vec<i64> {
    let size = size.max(1);
    let (b, r) = (batch.len(), rank.min(size - 1));
    batch[r * b / size..(r + 1) * b / size].to_vec()
}

/// The MPI communicator (cargo feature `mpi`): the processes of `MPI_COMM_WORLD`, as started by
/// `mpirun -np N program` or Slurm's `srun`. `fail` prints the reason and calls `MPI_Abort`, so
/// every process stops; a panic does the same (a hook is installed by [`Mpi::init`]).
#[cfg(feature = "mpi")]
pub struct Mpi {
    _universe: mpi::environment::Universe,
    world: mpi::topology::SimpleCommunicator,
}

#[cfg(feature = "mpi")]
impl Mpi {
    /// Initializes MPI (once per process).
    ///
    /// # Errors
    /// When MPI was already initialized in this process.
    pub fn init() -> Result<Mpi> {
        use mpi::traits::Communicator as _;
        let universe = mpi::initialize()
            .ok_or_else(|| Error::arg("Mpi::init", "MPI is already initialized in this process"))?;
        let world = universe.world();
        let rank = world.rank();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            eprintln!("gradtape: rank {rank} panicked; stopping every rank");
            mpi::topology::SimpleCommunicator::world().abort(101);
        }));
        Ok(Mpi {
            _universe: universe,
            world,
        })
    }

    /// Whether this process was started by an MPI launcher (`mpirun`, `srun`): the variables
    /// Open MPI, MPICH and Slurm set.
    pub fn launched() -> bool {
        [
            "OMPI_COMM_WORLD_SIZE",
            "PMI_SIZE",
            "PMIX_RANK",
            "SLURM_NTASKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }
}

#[cfg(feature = "mpi")]
impl Communicator for Mpi {
    fn rank(&self) -> usize {
        use mpi::traits::Communicator as _;
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        use mpi::traits::Communicator as _;
        self.world.size() as usize
    }
    fn all_reduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        use mpi::traits::CommunicatorCollectives as _;
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        use mpi::traits::CommunicatorCollectives as _;
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f64], root: usize) -> Result<()> {
        use mpi::traits::{Communicator as _, Root as _};
        check_root(root, self.size())?;
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        use mpi::traits::CommunicatorCollectives as _;
        self.world.barrier();
        Ok(())
    }
    fn fail(&self, reason: &str) {
        use mpi::traits::Communicator as _;
        eprintln!(
            "gradtape: rank {} failed: {reason}; stopping every rank",
            self.rank()
        );
        self.world.abort(2);
    }
}
