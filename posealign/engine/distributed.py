"""Several GPUs or machines with torchrun: process group set-up and the few collective helpers.

``torchrun --nproc_per_node N -m posealign train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; a plain
``posealign train`` is world size 1 and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_choice: str = "auto") -> DistributedContext:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs)."""
    want_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on at least one, so all ranks take the same branch
    (a rank that leaves the step alone would leave the others waiting in a collective)."""
    if not context.enabled:
        return flag
    votes = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item() > 0)


def mean_across_ranks(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average logged scalars over ranks (one all-reduce for all of them)."""
    if not context.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


def average_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Make floating-point buffers (BatchNorm statistics) equal on every rank by averaging them.

    The teacher runs in train mode on each rank's own target batch, so its BatchNorm statistics
    would drift apart; averaging keeps the teacher identical everywhere.
    """
    if not context.enabled:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def cleanup_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
