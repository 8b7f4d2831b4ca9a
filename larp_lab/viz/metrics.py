"""Small metric plots: PSNR per frame."""

from __future__ import annotations

import numpy as np

from .figure import new_figure


def per_frame_psnr_figure(values, *, cond_frames: int | None = None, title: str = "PSNR per frame"):
    """Line plot of per-frame PSNR (T,) in dB; ``cond_frames`` shades the conditioning frames."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    fig, ax = new_figure(1, 1, figsize=(5.0, 2.6), squeeze=True)
    ax.plot(np.arange(len(v)), v, marker="o", ms=3)
    if cond_frames:
        ax.axvspan(-0.5, cond_frames - 0.5, color="0.85", label="conditioning frames")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig
