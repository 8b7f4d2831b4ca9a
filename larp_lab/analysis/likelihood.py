"""Surprisal of tokens under the tokenizer's prior and the generator, and what it correlates with.

Surprisal is ``-log p(token_i | tokens_<i)``: in nats (natural log) or bits (``to_bits``). The
prior scores tokens 1..N-1 (token 0 has no context), the generator all N tokens given the class.

Typical use::

    data = encode_dataset(tok, dataset, n=96)
    s = prior_surprisal(tok, data.indices)                  # (n, N-1) nats
    clip = s.mean(1)                                        # (n,) mean NLL per token of each clip
    per_position_mean(s)                                    # {"mean": (N-1,), "std": ..., "sem": ...}
    per_class_table(clip, data.labels, CLASS_NAMES)         # rows {"label", "name", "n", "mean", "std"}
    correlation(clip, data.mse)                             # {"pearson": r, "spearman": rho, "n": n}
    extreme_clips(clip, k=5)                                # most and least likely clips
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._util import as_long_indices, batches, evaluating, to_numpy

__all__ = [
    "Extremes",
    "LikelihoodReport",
    "correlation",
    "extreme_clips",
    "generator_surprisal",
    "pearson",
    "per_class_table",
    "per_position_mean",
    "prior_surprisal",
    "rankdata",
    "score_dataset",
    "spearman",
    "to_bits",
]

LN2 = math.log(2.0)


def to_bits(nats):
    """Nats -> bits (divide by ln 2); works on tensors, arrays and floats."""
    return nats / LN2


@torch.no_grad()
def prior_surprisal(tok, indices: Tensor, batch_size: int = 64) -> Tensor:
    """``-log p`` (nats) of tokens 1..N-1 under the tokenizer's prior: float32 (B, N-1), CPU."""
    idx = as_long_indices(indices, tok.config.num_tokens)
    out = []
    with evaluating(tok):
        for sl in batches(idx.shape[0], batch_size):
            out.append(-tok.prior_log_likelihood(idx[sl].to(tok.device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def generator_surprisal(gen, indices: Tensor, cond, batch_size: int = 64) -> Tensor:
    """``-log p`` (nats) of every token given the condition under the generator: float32 (B, N), CPU.

    ``cond``: class labels (B,) for class-conditional models (null = ``num_classes``), or
    conditioning tokens (B, N[+1]) for frame prediction.
    """
    idx = as_long_indices(indices)
    cond = torch.as_tensor(cond)
    if cond.shape[0] != idx.shape[0]:
        raise ValueError(f"{cond.shape[0]} conditions for {idx.shape[0]} token sequences")
    out = []
    with evaluating(gen):
        for sl in batches(idx.shape[0], batch_size):
            ll = gen.token_log_likelihood(idx[sl].to(gen.device), cond[sl].to(gen.device))
            out.append(-ll.float().cpu())
    return torch.cat(out)


# ================================================================================================
#                                         Aggregates
# ================================================================================================


def per_position_mean(values) -> dict[str, np.ndarray]:
    """Per-position mean, std and standard error over clips of (B, L) values: each (L,)."""
    v = to_numpy(values).astype(np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be (B, L); got {v.shape}")
    n = v.shape[0]
    std = v.std(0, ddof=1) if n > 1 else np.zeros(v.shape[1])
    return {"mean": v.mean(0), "std": std, "sem": std / math.sqrt(n)}


def per_class_table(values, labels, class_names=None) -> list[dict]:
    """Per-class mean of per-clip values (B,) (or (B, L), averaged over L first).

    Returns one row per label present, ascending: ``{"label", "name", "n", "mean", "std"}``
    (``name`` is ``class_names[label]`` when given, else ``str(label)``).
    """
    v = to_numpy(values).astype(np.float64)
    if v.ndim == 2:
        v = v.mean(1)
    lab = to_numpy(labels).astype(np.int64).reshape(-1)
    if v.shape != lab.shape:
        raise ValueError(f"{v.shape[0]} values for {lab.shape[0]} labels")
    rows = []
    for c in np.unique(lab):
        sel = v[lab == c]
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(int(c))
        rows.append({"label": int(c), "name": name, "n": int(sel.size), "mean": float(sel.mean()),
                     "std": float(sel.std(ddof=1)) if sel.size > 1 else 0.0})
    return rows


# ================================================================================================
#                                        Correlations
# ================================================================================================


def rankdata(x) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties given their average rank (as ``scipy.stats.rankdata``)."""
    a = np.asarray(to_numpy(x), dtype=np.float64).reshape(-1)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(1, a.size + 1)
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def pearson(x, y) -> float:
    """Pearson correlation of two 1-D samples (NaN when either is constant or n < 2)."""
    a = np.asarray(to_numpy(x), dtype=np.float64).reshape(-1)
    b = np.asarray(to_numpy(y), dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"samples differ in size: {a.size} and {b.size}")
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson of the average ranks (no scipy needed)."""
    return pearson(rankdata(x), rankdata(y))


def correlation(x, y) -> dict[str, float]:
    """``{"pearson": r, "spearman": rho, "n": n}`` of two 1-D samples (NaNs dropped pairwise)."""
    a = np.asarray(to_numpy(x), dtype=np.float64).reshape(-1)
    b = np.asarray(to_numpy(y), dtype=np.float64).reshape(-1)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    return {"pearson": pearson(a, b), "spearman": spearman(a, b), "n": int(a.size)}


# ================================================================================================
#                                     Most / least likely clips
# ================================================================================================


@dataclass
class Extremes:
    """The k most likely (lowest NLL) and least likely (highest NLL) clips."""

    most_likely: np.ndarray  #: (k,) clip indices, most likely first
    most_likely_nll: np.ndarray  #: (k,)
    least_likely: np.ndarray  #: (k,) clip indices, least likely first
    least_likely_nll: np.ndarray  #: (k,)

    def table(self) -> list[dict]:
        rows = [{"kind": "most likely", "rank": r, "index": int(i), "nll": float(v)}
                for r, (i, v) in enumerate(zip(self.most_likely, self.most_likely_nll))]
        rows += [{"kind": "least likely", "rank": r, "index": int(i), "nll": float(v)}
                 for r, (i, v) in enumerate(zip(self.least_likely, self.least_likely_nll))]
        return rows


def extreme_clips(nll, k: int = 5) -> Extremes:
    """Indices and values of the ``k`` lowest-NLL and ``k`` highest-NLL clips of (B,) values
    (ties broken by the lower index)."""
    v = np.asarray(to_numpy(nll), dtype=np.float64).reshape(-1)
    k = min(int(k), v.size)
    lo = np.argsort(v, kind="stable")[:k]
    hi = np.argsort(-v, kind="stable")[:k]
    return Extremes(lo, v[lo], hi, v[hi])


# ================================================================================================
#                                         One call
# ================================================================================================


@dataclass
class LikelihoodReport:
    """What :func:`score_dataset` returns (nats; CPU numpy)."""

    prior: np.ndarray  #: (n, N-1) prior surprisal
    prior_clip: np.ndarray  #: (n,) mean over positions
    generator: np.ndarray | None  #: (n, N) generator surprisal (None without a generator)
    generator_clip: np.ndarray | None  #: (n,)
    labels: np.ndarray  #: (n,)
    error: np.ndarray | None  #: (n,) reconstruction MSE when the dataset had one
    correlations: dict  #: {"prior": {...}, "generator": {...}} of clip NLL vs error


def score_dataset(tok, data, gen=None, *, cond=None, batch_size: int = 64) -> LikelihoodReport:
    """Prior (and generator) surprisal of an :class:`~larp_lab.analysis.dataset.EncodedDataset`,
    per clip, and its correlation with the reconstruction MSE (``data.mse``).

    ``cond`` defaults to ``data.labels`` for a class-conditional generator.
    """
    prior = to_numpy(prior_surprisal(tok, data.indices, batch_size)).astype(np.float64)
    g = gclip = None
    if gen is not None:
        c = data.labels if cond is None else cond
        g = to_numpy(generator_surprisal(gen, data.indices, c, batch_size)).astype(np.float64)
        gclip = g.mean(1)
    err = None if data.mse is None else to_numpy(data.mse).astype(np.float64)
    corr = {}
    if err is not None:
        corr["prior"] = correlation(prior.mean(1), err)
        if gclip is not None:
            corr["generator"] = correlation(gclip, err)
    return LikelihoodReport(prior, prior.mean(1), g, gclip, to_numpy(data.labels), err, corr)
