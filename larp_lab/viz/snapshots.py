"""Figures of a tokenizer's training snapshots (:class:`~larp_lab.analysis.snapshots.SnapshotReport`).

* :func:`snapshot_grid`: rows = snapshots (step and PSNR on the left), columns = the middle frame of a
  few held-out clips (first row: the originals; below: each snapshot's reconstruction), then where a few
  queries look on the first clip (their last-layer attention over the frame, summed over time, with
  the query's home cell outlined): reconstructions sharpen and maps localise as you read down;
* :func:`snapshot_curves`: PSNR / SSIM, codebook usage and perplexity, prior bits per token (beside
  the uniform ``log2 K``) and the queries' own-cell share and attention entropy, against the step
  (log axis), the final model starred; ``highlight`` marks one snapshot (the app's scrub position).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.patches import Rectangle

from ..analysis.attention import upsample_maps
from ..analysis.snapshots import SnapshotReport
from .figure import new_figure, to_image

__all__ = ["snapshot_curves", "snapshot_grid"]


def _home_cell(q: int, cells: tuple[int, int, int], H: int, W: int) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) in pixels of query ``q``'s home cell (its spatial extent)."""
    _, gh, gw = cells
    iy, ix = (q // gw) % gh, q % gw
    return ix * W / gw - 0.5, iy * H / gh - 0.5, W / gw, H / gh


def _spatial_heat(m: np.ndarray, H: int, W: int) -> np.ndarray:
    """A query map (t, h, w) summed over time, upsampled bilinearly to (H, W) and scaled to [0, 1]."""
    s = torch.from_numpy(np.asarray(m, dtype=np.float32).sum(0, keepdims=True))  # (1, h, w)
    up = upsample_maps(s, (1, H, W), "bilinear")[0].numpy()
    return up / max(float(up.max()), 1e-12)


def snapshot_grid(report: SnapshotReport, *, rows: list[int] | None = None, clips: int | None = None,
                  queries: list[int] | None = None, frame: int | None = None, cmap: str = "inferno",
                  alpha: float = 0.65, title: str | None = None):
    """Reconstructions and query maps of every snapshot on the same clips.

    Args:
        report: from :func:`~larp_lab.analysis.measure_snapshots`.
        rows: the snapshots to show (indices into the report; default all, in step order).
        clips: how many of the kept clips to show (default all ``report.originals``).
        queries: positions in ``report.queries`` to show maps of (default all kept queries).
        frame: the frame shown (default the middle one).
    Returns:
        matplotlib Figure with ``1 + len(rows)`` rows of ``clips + len(queries)`` panels.
    """
    rows = list(range(len(report))) if rows is None else [int(r) for r in rows]
    if not rows or any(not 0 <= r < len(report) for r in rows):
        raise ValueError(f"rows must be indices into the report's {len(report)} snapshots; got {rows}")
    k = report.originals.shape[0] if clips is None else max(1, min(int(clips), report.originals.shape[0]))
    qpos = list(range(len(report.queries))) if queries is None else [int(q) for q in queries]
    T, H, W = report.originals.shape[2:]
    f = T // 2 if frame is None else int(frame)
    ncols = k + len(qpos)
    fig, axes = new_figure(1 + len(rows), ncols, figsize=(1.25 * ncols + 1.2, 1.25 * (1 + len(rows)) + 0.6))
    base = to_image(report.originals[0][:, f])
    for i in range(-1, len(rows)):  # -1: the originals
        r = rows[i] if i >= 0 else None
        for j in range(ncols):
            ax = axes[i + 1, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < k:  # a clip: original or this snapshot's reconstruction
                img = report.originals[j] if r is None else report.reconstructions[r, j]
                ax.imshow(to_image(img[:, f]), interpolation="nearest")
                if i == -1:
                    ax.set_title(f"clip {j}", fontsize=8)
            else:  # a query's map on clip 0
                qi = qpos[j - k]
                q = report.queries[qi]
                ax.imshow(base, interpolation="nearest")
                if r is not None:
                    ax.imshow(_spatial_heat(report.query_maps[r, 0, qi], H, W), cmap=cmap, vmin=0, vmax=1,
                              alpha=alpha, interpolation="nearest")
                x0, y0, w, h = _home_cell(q, report.cells, H, W)
                ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor="cyan", linewidth=1.0))
                if i == -1:
                    ax.set_title(f"query {q}, clip 0", fontsize=8)
            if j == 0:
                if r is None:
                    ax.set_ylabel("original", fontsize=8)
                else:
                    ax.set_ylabel(f"{report.labels[r]}\n{report.psnr[r]:.1f} dB", fontsize=8)
    fig.suptitle(title if title is not None else
                 f"the same held-out clips through training (frame {f}; reconstructions left, last-layer "
                 "attention of two queries right, home cell in cyan)", fontsize=9)
    return fig


def snapshot_curves(report: SnapshotReport, *, highlight: int | None = None):
    """Four panels against the training step (log axis): reconstruction (PSNR, SSIM), codebook (codes used,
    perplexity, as % of K), prior (bits per token beside log2 K) and queries (own-cell share beside chance,
    normalised attention entropy). ``highlight``: a snapshot index drawn as a vertical line."""
    s = report.steps.astype(np.float64)
    fin = np.flatnonzero(report.final)
    fig, axes = new_figure(2, 2, figsize=(9.0, 5.6))
    K = report.codebook_size

    def mark(ax, y, **kw):
        line = ax.plot(s, y, marker="o", ms=3.5, **kw)[0]
        if fin.size:
            ax.plot(s[fin], np.asarray(y)[fin], marker="*", ms=11, ls="none", color=line.get_color())
        return line

    ax = axes[0, 0]
    mark(ax, report.psnr, label="PSNR (dB)")
    lo, hi = np.percentile(report.psnr_clip, [25, 75], axis=1)
    ax.fill_between(s, lo, hi, alpha=0.2, label="clips 25-75%")
    ax.set_ylabel("PSNR (dB)")
    ax2 = ax.twinx()
    mark(ax2, report.ssim, color="tab:green", label="SSIM")
    ax2.set_ylabel("SSIM", color="tab:green")
    ax2.set_ylim(0, 1)
    ax.set_title("reconstruction of the held-out clips", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)

    ax = axes[0, 1]
    mark(ax, 100 * report.usage, label=f"codes used (of {K})")
    mark(ax, 100 * report.perplexity / K, label="perplexity")
    ax.set_ylabel(f"% of the {K} codes")
    ax.set_title(f"codebook on these {report.num_clips} clips", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)

    ax = axes[1, 0]
    mark(ax, report.prior_bits, label="prior")
    ax.axhline(report.uniform_bits, color="0.5", ls="--", lw=1, label=f"uniform: log2 {K} = {report.uniform_bits:.1f}")
    ax.set_ylabel("bits per token")
    ax.set_title("how predictable the tokens are (lower = more)", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)

    ax = axes[1, 1]
    mark(ax, report.own_cell, label="own-cell share")
    ax.axhline(report.own_cell_chance, color="0.5", ls="--", lw=1, label=f"chance {report.own_cell_chance:.3f}")
    mark(ax, report.attention_entropy, label="attention entropy (1 = uniform)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"where the queries look (encoder layer {report.layer})", fontsize=9)
    ax.legend(loc="center left", fontsize=7)

    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3, which="both")
        if highlight is not None:
            ax.axvline(s[int(highlight)], color="tab:red", lw=1.2, alpha=0.7)
    fig.suptitle("how the latent space forms (the final model starred)", fontsize=10)
    return fig
