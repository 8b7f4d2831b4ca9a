"""Process-level setup: distributed (torchrun), device, precision, seeding.

Single process: ``larp-lab train-tokenizer ...``. Several processes on one or many nodes:
``torchrun --nproc_per_node=8 -m larp_lab train-tokenizer ...`` (or ``--nnodes``/``--rdzv_endpoint``
for multi-node). The backend is NCCL on CUDA and gloo on CPU. Each process computes
``batch_size / world_size`` clips per optimizer step; gradients are averaged by DDP, so a run
agrees with a single process on the same global batch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype | None  #: autocast dtype (None = fp32)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_mean(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world_size


def setup_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Initialise the process group when launched by torchrun and pick device and precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if precision == "auto":
        dtype = torch.bfloat16 if dev.type == "cuda" else None
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        dtype = None
    return Runtime(rank=rank, world_size=world, local_rank=local, device=dev, dtype=dtype)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
