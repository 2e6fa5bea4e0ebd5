"""Data-parallel fine-tuning with ``torch.distributed`` (DDP): across the GPUs of a machine or across machines.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)::

    torchrun --nproc_per_node 4 -m lesionlab finetune --variant lite0_full          # one machine, 4 GPUs
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 --master_addr HOST --master_port 29500 \\
        -m lesionlab finetune --variant lite0_full                                   # and node_rank 1 elsewhere

Every process builds the same model from the same seed (DDP also broadcasts rank 0's weights) and walks the same
epoch order; each global batch is split between the processes (rank r takes every world-th image), their
gradients are averaged by DDP, so one step equals the single-process step on the whole batch when the slices are
equal and nothing in the model depends on the batch itself (BatchNorm in training mode sees its slice only;
augmentation, mixup and dropout draw their own random numbers per process). Validation runs on every process
(identical weights, identical early-stopping decisions, no extra communication); only rank 0 writes outputs.
Backend: NCCL on CUDA, gloo on CPU (the test runs 2 CPU processes on gloo against the single-process result).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    backend: str

    def shard(self, idx):
        """This process' slice of a global batch of indices."""
        return idx[self.rank :: self.world]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (epoch loss and accuracy counts)."""
        import torch
        import torch.distributed as dist

        device = f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.local_rank] if self.backend == "nccl" else None)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_primary() -> bool:
    """Rank 0, or no torchrun at all: the process that writes outputs."""
    return rank() == 0


def setup(device: str) -> Dist | None:
    """The process group when started by torchrun with more than one process, else None (plain training)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def teardown(d: Dist | None) -> None:
    if d is not None:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
