"""Small helpers shared by the analysis modules (no model logic)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn


@contextlib.contextmanager
def evaluating(*modules: nn.Module | None) -> Iterator[None]:
    """Put ``modules`` in ``eval()`` (deterministic VQ argmax, no dropout) and restore their modes."""
    mods = [m for m in modules if m is not None]
    states = [m.training for m in mods]
    try:
        for m in mods:
            m.eval()
        yield
    finally:
        for m, s in zip(mods, states):
            m.train(s)


def to_numpy(x) -> np.ndarray:
    """Tensor (any device/dtype) or array-like -> numpy array (float tensors keep their precision)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def as_long_indices(indices, num_tokens: int | None = None) -> Tensor:
    """Token ids as an int64 (B, N) tensor (a single (N,) sequence gets a batch dimension)."""
    t = torch.as_tensor(indices)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"token ids must be integers, got {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(f"token ids must have shape (B, N) or (N,); got {tuple(t.shape)}")
    if num_tokens is not None and t.shape[1] != num_tokens:
        raise ValueError(f"expected {num_tokens} tokens per clip; got shape {tuple(t.shape)}")
    return t.long()
