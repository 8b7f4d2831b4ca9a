"""Learning-rate schedules: linear warm-up, then cosine decay, step decay or constant."""

from __future__ import annotations

import math

from .config import OptimConfig


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
