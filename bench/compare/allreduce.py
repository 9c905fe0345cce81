#!/usr/bin/env python3
"""`mpirun -np 2 gradtape bench allreduce` in torch.distributed: the MLP 784-256-256-10's float32
gradients (269,322 values, 1.08 MB) averaged over 2 processes on this machine, as DDP does with
one bucket: flattened into one tensor, all_reduce(SUM), divided by the world size, split back.
Backends: gloo, and mpi where this PyTorch build has it. Median of 15 rounds of about 20 ms,
printed by rank 0.

    python bench/compare/allreduce.py
"""
import os
import sys

import numpy as np

from core import emit, median_us

SIZES = [(784, 256), (256,), (256, 256), (256,), (256, 10), (10,)]


def worker(rank, backend):
    import torch
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group(backend, rank=rank, world_size=2)
    torch.set_num_threads(1)
    rng = np.random.default_rng(11)
    grads = [torch.from_numpy(rng.uniform(-1, 1, s).astype(np.float32)) for s in SIZES]

    def step():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= 2
        return [t.reshape(g.shape) for t, g in zip(flat.split([g.numel() for g in grads]), grads)]

    us, n = median_us(step)
    if rank == 0:
        emit("torch.distributed " + backend, "allreduce", us, n)
    dist.destroy_process_group()


def main():
    import torch.distributed as dist
    import torch.multiprocessing as mp

    backends = ["gloo"] + (["mpi"] if dist.is_mpi_available() else [])
    for b in backends:
        mp.spawn(worker, args=(b,), nprocs=2, join=True)
    if "mpi" not in backends:
        print('{"framework": "torch.distributed mpi", "name": "allreduce", "skipped": "this PyTorch build has no MPI backend"}')


if __name__ == "__main__":
    main()
