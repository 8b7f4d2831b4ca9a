"""Holistic vs patch tokens: the same measurements of several tokenizers on the same clips.

:func:`compare_tokenizers` encodes one batch of clips with each tokenizer and measures, per
tokenizer (issue 19, item 4):

* reconstruction PSNR per clip and the codes used;
* the prior's cost in bits per token, per position (how predictable the token order is);
* the prefix-decoding curve (:func:`~.token_order.prefix_reconstruction_curve`, neutral fill): PSNR
  when only the first k tokens are kept. Holistic tokens should put the clip's coarse content first;
  patch tokens in raster order cover the first frames' top rows first;
* position importance (:func:`~.token_order.position_importance`): the PSNR drop when one token is
  replaced, and how unevenly it is spread (the share of the total drop carried by the top quarter);
* optionally, on a few clips, token influence maps (:func:`~.surgery.token_influence`): how much of
  a token's effect falls in its best 4x4 block (``concentration``) and whether its region stays put
  from clip to clip (:func:`~.surgery.influence_consistency`).

Everything is measured, nothing is assumed about either kind; both run through the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ._util import batches, evaluating, to_numpy
from .likelihood import prior_surprisal, to_bits
from .surgery import influence_consistency, token_influence
from .token_order import (
    PositionImportance,
    PrefixCurve,
    default_ks,
    position_importance,
    prefix_reconstruction_curve,
)

__all__ = ["TokenizerComparison", "TokenizerReport", "compare_tokenizers", "top_share"]


def top_share(values: np.ndarray, fraction: float = 0.25) -> float:
    """Share of the (clipped at 0) total carried by the largest ``fraction`` of ``values`` (1-D):
    ``fraction`` when the values are even, near 1 when a few carry everything."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    s = v.sum()
    if s <= 0:
        return float("nan")
    k = max(1, int(round(fraction * len(v))))
    return float(np.sort(v)[::-1][:k].sum() / s)


def _mean_over_k(ks: np.ndarray, values: np.ndarray) -> float:
    """The curve's mean over k in [ks[0], ks[-1]] (trapezoids): one number for the whole prefix curve."""
    k = np.asarray(ks, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(k) < 2:
        return float(v.mean())
    return float(((v[1:] + v[:-1]) / 2 * np.diff(k)).sum() / (k[-1] - k[0]))


@dataclass
class TokenizerReport:
    """One tokenizer's measurements on the clips of a :func:`compare_tokenizers` call."""

    name: str
    token_mode: str  #: "holistic" or "patch"
    psnr: np.ndarray  #: (B,) reconstruction PSNR (dB)
    prior_bits: np.ndarray | None  #: (B, N-1) bits of tokens 1..N-1 under the tokenizer's prior (None: no prior)
    codes_used: int  #: distinct codes over the clips' tokens
    codebook_size: int
    prefix: PrefixCurve
    importance: PositionImportance
    concentration: np.ndarray | None = None  #: (C, N) share of each token's effect in its best 4x4 block
    consistency: np.ndarray | None = None  #: (N,) region correlation across the influence clips

    def summary(self) -> dict[str, float | int | str]:
        """The numbers of the comparison table."""
        n = self.importance.mean_drop.shape[0]
        ks, mean = self.prefix.ks, self.prefix.mean
        quarter = int(np.argmin(np.abs(ks - n // 4)))
        half = int(np.argmin(np.abs(ks - n // 2)))
        out: dict[str, float | int | str] = {
            "tokenizer": self.name, "token_mode": self.token_mode,
            "psnr_db": float(self.psnr.mean()),
            "prior_bits_per_token": float(self.prior_bits.mean()) if self.prior_bits is not None else float("nan"),
            "uniform_bits_per_token": float(np.log2(self.codebook_size)),
            "codes_used": int(self.codes_used),
            f"prefix_psnr_db_k{int(ks[quarter])}": float(mean[quarter]),
            f"prefix_psnr_db_k{int(ks[half])}": float(mean[half]),
            "prefix_area_db": _mean_over_k(ks, mean),
            "importance_top_quarter_share": top_share(self.importance.mean_drop),
        }
        if self.concentration is not None:
            out["influence_concentration"] = float(self.concentration.mean())
        if self.consistency is not None:
            out["influence_consistency"] = float(np.nanmean(self.consistency))
        return out


@dataclass
class TokenizerComparison:
    """What :func:`compare_tokenizers` returns: one :class:`TokenizerReport` per tokenizer, by name."""

    reports: dict[str, TokenizerReport] = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [r.summary() for r in self.reports.values()]

    def prefix_gap(self, a: str, b: str) -> np.ndarray:
        """(K,) mean prefix PSNR of ``a`` minus that of ``b`` at each k (both curves need the same ks)."""
        pa, pb = self.reports[a].prefix, self.reports[b].prefix
        if not np.array_equal(pa.ks, pb.ks):
            raise ValueError("the two prefix curves were measured at different k")
        return pa.mean - pb.mean


@torch.no_grad()
def _encode(tok, videos: Tensor, batch_size: int) -> Tensor:
    """Token ids (B, N) int64 on the CPU."""
    out = []
    for sl in batches(videos.shape[0], batch_size):
        out.append(tok.encode(videos[sl].to(tok.device)).indices.long().cpu())
    return torch.cat(out)


def _mode(tok) -> str:
    return getattr(tok.config, "token_mode", "holistic")


def compare_tokenizers(
    tokenizers: Mapping[str, object],
    videos: Tensor,
    *,
    ks: list[int] | None = None,
    influence_clips: int = 0,
    influence_codes: int = 2,
    batch_size: int = 16,
    seed: int = 0,
) -> TokenizerComparison:
    """Measure every tokenizer of ``tokenizers`` (name -> :class:`~larp_lab.models.tokenizer.LARPTokenizer`)
    on the same ``videos`` (float (B, 3, T, H, W) in [-1, 1]).

    Args:
        ks: prefix lengths of the prefix curves (default :func:`default_ks` of the first tokenizer's N;
            all tokenizers must then have the same N for the curves to line up).
        influence_clips: on this many of the clips, also token influence maps with
            ``influence_codes`` replacement codes per token (cost: N * codes decodes per clip).
    Returns:
        :class:`TokenizerComparison`.
    """
    if not tokenizers:
        raise ValueError("give at least one tokenizer")
    if videos.ndim != 5:
        raise ValueError(f"videos must be (B, 3, T, H, W); got {tuple(videos.shape)}")
    cmp = TokenizerComparison()
    for name, tok in tokenizers.items():
        c = tok.config
        want = (c.frame_num, c.input_size, c.input_size)
        if tuple(videos.shape[2:]) != want:
            raise ValueError(f"{name} reads clips of {want} (T, H, W); got {tuple(videos.shape[2:])}")
        k_here = ks if ks is not None else default_ks(c.num_tokens)
        with evaluating(tok):
            ids = _encode(tok, videos, batch_size)
            curve = prefix_reconstruction_curve(tok, videos, ids, k_here, batch_size=batch_size)
            imp = position_importance(tok, videos, ids, batch_size=max(batch_size, 64))
            bits = None
            if getattr(tok, "prior_model", None) is not None:
                bits = to_numpy(to_bits(prior_surprisal(tok, ids)))
            conc = cons = None
            if influence_clips > 0:
                maps = [token_influence(tok, ids[i], num_codes=influence_codes, seed=seed + i)
                        for i in range(min(influence_clips, len(ids)))]
                conc = np.stack([m.concentration() for m in maps])
                cons = influence_consistency(maps) if len(maps) > 1 else None
        at_full = curve.psnr[list(curve.ks).index(c.num_tokens)] if c.num_tokens in curve.ks else None
        psnr = at_full if at_full is not None else imp.baseline
        cmp.reports[name] = TokenizerReport(
            name=name, token_mode=_mode(tok), psnr=np.asarray(psnr, dtype=np.float64), prior_bits=bits,
            codes_used=int(ids.unique().numel()), codebook_size=c.codebook_size, prefix=curve, importance=imp,
            concentration=conc, consistency=cons)
    return cmp
