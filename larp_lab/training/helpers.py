"""Small training utilities: LR schedules, EMA, the step-indexed batch sampler, the run logger."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import OptimConfig

# ================================================================================================
#                                          schedules
# ================================================================================================


def lr_multiplier(step: int, max_steps: int, cfg: OptimConfig) -> float:
    """Warm-up (linear from 0) then cosine decay to ``min_lr_ratio``, step decay, or constant."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        mult = 1.0
        for m in cfg.step_milestones:
            if step >= m * max_steps:
                mult *= 0.1
        return mult
    span = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ================================================================================================
#                                            EMA
# ================================================================================================


class EMA:
    """Exponential moving average of a model's floating parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({**model.state_dict(), **self.shadow})


# ================================================================================================
#                                     step-indexed sampling
# ================================================================================================


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches for steps ``start_step .. max_steps - 1``, a pure function of the step.

    Every optimizer step consumes ``grad_accum`` micro-batches of ``global_batch / grad_accum``
    clips, split across processes. Sample number v (counting from the start of training) maps to
    the *epoch-tagged* index ``e * n + perm_e[v % n]`` with ``e = v // n`` and ``perm_e`` a
    permutation seeded by (seed, e) (identity when ``shuffle`` is off); :class:`EpochView` turns it
    back into (epoch, index). Resuming at a step reproduces the data exactly, and a run on k
    processes sees the same global batches as a run on one.
    """

    def __init__(
        self, n: int, global_batch: int, *, rank: int = 0, world: int = 1, grad_accum: int = 1, seed: int = 0,
        start_step: int = 0, max_steps: int, shuffle: bool = True,
    ) -> None:
        if n <= 0:
            raise ValueError("the dataset is empty")
        if global_batch % (world * grad_accum):
            raise ValueError(
                f"batch_size {global_batch} must be divisible by processes x grad_accum = {world} x {grad_accum}"
            )
        self.n, self.rank, self.world, self.accum = n, rank, world, grad_accum
        self.micro_global = global_batch // grad_accum
        self.local = self.micro_global // world
        self.seed, self.start, self.stop, self.shuffle = seed, start_step, max_steps, shuffle
        self._perm_epoch, self._perm = -1, None

    def _index(self, v: int) -> int:
        epoch = v // self.n
        if not self.shuffle:
            return v
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return epoch * self.n + int(self._perm[v % self.n])

    def __iter__(self):
        for step in range(self.start, self.stop):
            for a in range(self.accum):
                base = (step * self.accum + a) * self.micro_global + self.rank * self.local
                yield [self._index(v) for v in range(base, base + self.local)]

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum


class EpochView(torch.utils.data.Dataset):
    """Reads epoch-tagged indices ``e * n + i``: item i of ``dataset`` with its augmentation epoch
    set to e (datasets with ``set_epoch`` draw fresh crops/flips per epoch; works in workers too)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, v: int):
        epoch, i = divmod(int(v), self.n)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


# ================================================================================================
#                                          run logging
# ================================================================================================


class RunLogger:
    """TensorBoard scalars + a JSONL log (one object per logged step), main process only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = run_dir / "log.jsonl"
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # drop entries after the checkpoint we resume from
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            tmp = self.path.with_name(f".{self.path.name}.tmp")  # atomic: a kill here keeps the old log
            tmp.write_text("".join(k + "\n" for k in keep))
            os.replace(tmp, self.path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.writer = None

    def log(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "split": prefix, **{k: round(float(v), 6) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def environment_info(device: torch.device) -> dict[str, Any]:
    """What a run directory records about the machine and code."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        root = Path(__file__).resolve().parents[2]
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info
