"""Wall-clock budgets for training: shares of a total, measured throughput, step counts that fit.

A :class:`Budget` is a deadline. Each stage of a run asks for its :meth:`Budget.share` (its weight
among the stages still to come, after a reserve for the work that follows them), measures its
seconds per optimizer step over a few steps (:func:`seconds_per_step`), and gets from
:func:`plan_steps` a number of steps whose warm-up/cosine schedule ends inside the share. A
:class:`Deadline` is the hard stop of a stage, checked every step (:class:`BudgetExceeded`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

__all__ = ["Budget", "BudgetExceeded", "Deadline", "StagePlan", "plan_steps", "seconds_per_step"]


class BudgetExceeded(RuntimeError):
    """A stage ran past its hard deadline (the planned steps took longer than measured)."""


class Budget:
    """``total_s`` seconds of wall clock counted from ``start`` (``time.monotonic()`` by default)."""

    def __init__(self, total_s: float, start: float | None = None, clock: Callable[[], float] = time.monotonic):
        if not (total_s > 0 and math.isfinite(total_s)):
            raise ValueError(f"the budget must be a positive number of seconds, got {total_s}")
        self.total_s = float(total_s)
        self.clock = clock
        self.start = clock() if start is None else float(start)

    @property
    def deadline(self) -> float:
        return self.start + self.total_s

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def share(self, weight: float, weights_after: Sequence[float] = (), reserve_s: float = 0.0) -> float:
        """Seconds for a stage of ``weight`` followed by stages of ``weights_after``, once
        ``reserve_s`` is kept for the work that is not shared out (never negative)."""
        if weight <= 0 or any(w < 0 for w in weights_after):
            raise ValueError("stage weights must be positive")
        free = self.remaining() - reserve_s
        return max(0.0, free * weight / (weight + sum(weights_after)))


class Deadline:
    """``check()`` raises :class:`BudgetExceeded` once ``clock()`` passes ``at``."""

    def __init__(self, at: float, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.at, self.what, self.clock = float(at), what, clock

    def left(self) -> float:
        return self.at - self.clock()

    def check(self) -> None:
        if self.clock() > self.at:
            raise BudgetExceeded(f"{self.what} ran past its share of the wall-clock budget")


@dataclass(frozen=True)
class StagePlan:
    """Optimizer steps of one stage, chosen so that the whole schedule fits ``share_s``."""

    share_s: float  #: seconds the stage may use, calibration included
    calibration_s: float  #: seconds already spent measuring
    sec_per_step: float  #: measured seconds per optimizer step
    steps: int
    warmup_steps: int
    log_every: int
    save_every: int
    overhead: float  #: fraction added to sec_per_step for logging, checkpoints and evaluation

    @property
    def planned_s(self) -> float:
        return self.steps * self.sec_per_step * (1 + self.overhead)

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["planned_s"] = round(self.planned_s, 3)
        return d


def plan_steps(
    share_s: float, sec_per_step: float, *, calibration_s: float = 0.0, overhead: float = 0.12,
    fixed_s: float = 0.0, warmup_fraction: float = 0.05, max_warmup: int | None = None, min_steps: int = 4,
    checkpoints: int = 8, min_checkpoint_interval_s: float = 20.0, logs: int = 50,
) -> StagePlan:
    """The number of steps that ends inside ``share_s``: ``(share - calibration - fixed) /
    (sec_per_step * (1 + overhead))``, with a warm-up of ``warmup_fraction`` of them (at least 1,
    at most ``max_warmup``), about ``logs`` log rows, and about ``checkpoints`` checkpoints but not
    more often than every ``min_checkpoint_interval_s`` seconds (the last step is always saved).

    Raises ValueError when fewer than ``min_steps`` fit (the budget is too small for the stage).
    """
    if not (sec_per_step > 0 and math.isfinite(sec_per_step)):
        raise ValueError(f"sec_per_step must be a positive number, got {sec_per_step}")
    usable = share_s - calibration_s - fixed_s
    steps = int(usable / (sec_per_step * (1 + overhead))) if usable > 0 else 0
    if steps < min_steps:
        raise ValueError(
            f"the budget is too small for this stage: {share_s:.1f} s share, {calibration_s:.1f} s spent measuring, "
            f"{sec_per_step:.3g} s per step -> {steps} steps (at least {min_steps} needed); raise --budget-minutes"
        )
    warmup = max(1, round(steps * warmup_fraction))
    if max_warmup is not None:
        warmup = min(warmup, max_warmup)
    warmup = min(warmup, steps - 1)
    save_every = max(math.ceil(steps / max(1, checkpoints)), math.ceil(min_checkpoint_interval_s / sec_per_step))
    return StagePlan(
        share_s=share_s, calibration_s=calibration_s, sec_per_step=sec_per_step, steps=steps, warmup_steps=warmup,
        log_every=max(1, steps // max(1, logs)), save_every=max(1, min(steps, save_every)), overhead=overhead,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[int], None], device: torch.device, *, warmup: int = 2, steps: int = 3,
                     clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Run ``step(i)`` ``warmup`` times untimed (allocations, autotuning, compilation), then
    ``steps`` times timed one by one; returns (median seconds per step, total seconds spent)."""
    if steps < 1 or warmup < 0:
        raise ValueError("need steps >= 1 and warmup >= 0")
    t0 = clock()
    for i in range(warmup):
        step(i)
    _sync(device)
    times = []
    for i in range(steps):
        t = clock()
        step(warmup + i)
        _sync(device)
        times.append(clock() - t)
    return statistics.median(times), clock() - t0
