"""Small shared pieces of the pipelines: wall-clock timings and the clip-vs-clip metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..evaluation.metrics import per_frame_psnr, psnr, ssim


class Stopwatch:
    """Named wall-clock timings in ms (``with sw("encode"): ...``), synchronising CUDA around each."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.ms: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.ms[name] = self.ms.get(name, 0.0) + 1000 * (time.perf_counter() - t0)


def compare(pred: Tensor, target: Tensor, *, ssim_too: bool = True) -> dict[str, float | list[float]]:
    """PSNR (dB), SSIM and per-frame PSNR of ``pred`` against ``target`` (B, 3, T, H, W), each the
    mean over the B clips (for one clip: its value), by :mod:`larp_lab.evaluation.metrics`."""
    target = target.to(pred.device)
    out: dict[str, float | list[float]] = {"psnr_db": float(psnr(pred, target).mean())}
    if ssim_too:
        out["ssim"] = float(ssim(pred, target).mean())
    out["per_frame_psnr_db"] = [float(v) for v in per_frame_psnr(pred, target).mean(0)]
    return out
