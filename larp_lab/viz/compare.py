"""Holistic vs patch tokens, side by side (inputs from :mod:`larp_lab.analysis.compare`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis.compare import TokenizerComparison
from .figure import category_colors, new_figure

__all__ = ["clip_rows_figure", "comparison_figure"]


def clip_rows_figure(rows: Sequence[tuple[str, Tensor]], *, frames: int = 8, title: str | None = None,
                     row_height: float = 0.55):
    """Labelled rows of frames: ``rows`` is a list of (label, clip (3, T, H, W) in [-1, 1]), the same
    T, H and W; each row shows ``frames`` evenly spaced frames left to right, its label on the left."""
    if not rows:
        raise ValueError("clip_rows_figure needs at least one row")
    T, H, W = rows[0][1].shape[1:]
    pick = np.unique(np.linspace(0, T - 1, min(frames, T)).round().astype(int))
    gap = max(1, W // 16)
    strips = []
    for label, clip in rows:
        if tuple(clip.shape[1:]) != (T, H, W):
            raise ValueError(f"row {label!r} is {tuple(clip.shape)}; the first row is (3, {T}, {H}, {W})")
        f = ((clip.detach().float().cpu().clamp(-1, 1) + 1) / 2)[:, torch.as_tensor(pick)]  # (3, F, H, W)
        f = torch.nn.functional.pad(f, (0, gap), value=1.0)  # white gap right of each frame
        strips.append(f.permute(2, 1, 3, 0).reshape(H, -1, 3).numpy())
    units = strips[0].shape[1] / H  # the strip's width in frame heights (a frame may be several clips wide)
    fig, axes = new_figure(len(rows), 1, figsize=(1.0 + 0.62 * units, row_height * len(rows) + 0.4))
    for (label, _), strip, ax in zip(rows, strips, axes[:, 0]):
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        for sp in ax.spines.values():
            sp.set_visible(False)
    axes[-1, 0].set_xlabel(f"frames {', '.join(str(int(t)) for t in pick)}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def comparison_figure(cmp: TokenizerComparison, *, title: str | None = None):
    """Three panels, one colour per tokenizer: PSNR vs the first k tokens kept (mean +- 1 std over the
    clips; the rest filled with the neutral code), the PSNR drop when one position is replaced (the
    positions sorted from most to least important: a steep start = a few tokens carry the clip), and
    the prior's cost per position in bits (the uniform cost dashed)."""
    reps = list(cmp.reports.values())
    colors = category_colors(max(2, len(reps)))
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    a0, a1, a2 = axes[0]
    for r, col in zip(reps, colors):
        c = r.prefix
        a0.plot(c.ks, c.mean, marker="o", ms=3, lw=1.6, color=col, label=r.name if r.name == r.token_mode else f"{r.name} ({r.token_mode})")
        a0.fill_between(c.ks, c.mean - c.std, c.mean + c.std, color=col, alpha=0.18, lw=0)
        drop = np.sort(r.importance.mean_drop)[::-1]
        a1.plot(np.arange(1, len(drop) + 1), drop, lw=1.6, color=col, label=r.name)
        if r.prior_bits is not None:
            a2.plot(np.arange(1, r.prior_bits.shape[1] + 1), r.prior_bits.mean(0), lw=1.2, color=col,
                    label=f"{r.name}: {r.prior_bits.mean():.2f} bits/token")
    if reps:
        a2.axhline(np.log2(reps[0].codebook_size), color="k", ls="--", lw=0.8, label="uniform")
    a0.set_xlabel("tokens kept (k, in token order)")
    a0.set_ylabel("PSNR (dB)")
    a0.set_title("decoding from the first k tokens", fontsize=9)
    a0.legend(fontsize=7)
    a1.set_xlabel("positions, most important first")
    a1.set_ylabel("PSNR drop when replaced (dB)")
    a1.set_title("how the clip is spread over the tokens", fontsize=9)
    a1.legend(fontsize=7)
    a2.set_xlabel("position")
    a2.set_ylabel("bits under the prior")
    a2.set_title("how predictable each token is", fontsize=9)
    a2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
