"""Codebook usage statistics: how many codes are used, how evenly, and which are dead.

Definitions (the official trainer, hywang66/LARP ``trainers/larp_tokenizer_trainer.py`` with
``utils`` ``index_usage_percentage`` / ``kl_divergence_from_uniform``, logs the same quantities):

* usage = (number of codes with a non-zero count) / K -- a fraction in [0, 1] (the official
  ``index_usage`` is this fraction too, despite the helper's name);
* perplexity = exp(H(p)) with p the empirical code distribution and H in nats; it equals K when
  every code is used equally and 1 when a single code is used. The official code computes
  ``exp(-sum p log(p + 1e-10))``; here ``0 log 0 = 0`` exactly, which differs by < 1e-8 relative;
* KL(p || uniform) = log K - H(p);
* dead codes = the codes never used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["CodebookStats", "code_counts", "codebook_usage", "perplexity"]


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """int64 (K,) counts of every code in ``indices`` (any shape, integer dtype, values in [0, K))."""
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(f"indices must be integers, got {indices.dtype}")
    flat = indices.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(f"indices must lie in [0, {codebook_size}); got [{int(flat.min())}, {int(flat.max())}]")
    return torch.bincount(flat.cpu(), minlength=codebook_size)


def _entropy(counts: Tensor) -> float:
    total = int(counts.sum())
    if total == 0:
        return 0.0
    p = counts[counts > 0].double() / total
    return float(-(p * p.log()).sum())


def codebook_usage(indices: Tensor, codebook_size: int) -> float:
    """Fraction of the K codes that occur in ``indices``."""
    return float((code_counts(indices, codebook_size) > 0).sum()) / codebook_size


def perplexity(indices: Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code distribution of ``indices``; in [1, K] (1.0 for no indices)."""
    return math.exp(_entropy(code_counts(indices, codebook_size)))


class CodebookStats:
    """Streaming code counts over many batches.

    Example::

        stats = CodebookStats(8192)
        for video in loader:
            stats.update(tok.encode(video).indices)   # (B, N) int64
        stats.summary()   # {"usage": ..., "perplexity": ..., "dead_codes": ..., ...}
    """

    def __init__(self, codebook_size: int) -> None:
        if codebook_size < 1:
            raise ValueError("codebook_size must be >= 1")
        self.codebook_size = int(codebook_size)
        self.counts = torch.zeros(self.codebook_size, dtype=torch.int64)  # (K,)

    def update(self, indices: Tensor) -> CodebookStats:
        """Count the codes of a batch of indices (any shape); returns self."""
        self.counts += code_counts(indices, self.codebook_size)
        return self

    def merge(self, other: CodebookStats) -> CodebookStats:
        if other.codebook_size != self.codebook_size:
            raise ValueError("cannot merge statistics of different codebook sizes")
        self.counts += other.counts
        return self

    def reset(self) -> None:
        self.counts.zero_()

    # -------------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of indices counted."""
        return int(self.counts.sum())

    def probabilities(self) -> Tensor:
        """float64 (K,) empirical distribution (zeros when nothing was counted)."""
        t = self.total
        return self.counts.double() / t if t else torch.zeros(self.codebook_size, dtype=torch.float64)

    def usage(self) -> float:
        """Fraction of codes used at least once."""
        return float((self.counts > 0).sum()) / self.codebook_size

    def entropy(self) -> float:
        """Entropy of the code distribution, in nats."""
        return _entropy(self.counts)

    def perplexity(self) -> float:
        """exp(entropy): the effective number of codes, in [1, K]."""
        return math.exp(self.entropy())

    def kl_from_uniform(self) -> float:
        """KL(p || uniform) = log K - entropy, in nats (0 when nothing was counted)."""
        return math.log(self.codebook_size) - self.entropy() if self.total else 0.0

    def dead_codes(self) -> Tensor:
        """int64 indices of the codes never used, ascending."""
        return torch.nonzero(self.counts == 0).flatten()

    def histogram(self, bins: int = 50) -> tuple[Tensor, Tensor]:
        """Histogram of per-code counts: (frequency (bins,), edges (bins + 1,)), float64.

        ``frequency[i]`` = how many codes have a count in ``[edges[i], edges[i + 1])`` (last bin
        closed); useful to see a long tail of rarely used codes.
        """
        c = self.counts.double()
        hi = float(c.max()) if self.total else 1.0
        freq = torch.histc(c, bins=bins, min=0.0, max=max(hi, 1.0))
        edges = torch.linspace(0.0, max(hi, 1.0), bins + 1, dtype=torch.float64)
        return freq.double(), edges

    def top_codes(self, k: int = 10) -> tuple[Tensor, Tensor]:
        """The k most used codes: (indices (k,), counts (k,)), most used first (ties: lower index)."""
        order = torch.argsort(-self.counts, stable=True)[:k]
        return order, self.counts[order]

    def summary(self) -> dict[str, Any]:
        """Plain-Python summary: total, usage, used/dead code counts, perplexity, entropy, KL."""
        used = int((self.counts > 0).sum())
        return {
            "codebook_size": self.codebook_size,
            "total": self.total,
            "used_codes": used,
            "dead_codes": self.codebook_size - used,
            "usage": self.usage(),
            "perplexity": self.perplexity(),
            "entropy": self.entropy(),
            "kl_from_uniform": self.kl_from_uniform(),
        }

    # -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return {"counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        c = state["counts"]
        if tuple(c.shape) != (self.codebook_size,):
            raise ValueError(f"counts must have shape ({self.codebook_size},), got {tuple(c.shape)}")
        self.counts = c.to("cpu", torch.int64).clone()
