"""Attention figures: query x frame heatmap grids, overlay videos, rollout maps, query centroids.

Inputs are the arrays of :mod:`larp_lab.analysis.attention`: patch-grid maps (N, t, h, w) (one
clip; pass ``maps[clip]`` or use the ``clip`` argument on batched (B, N, t, h, w) maps) and clips
(3, T, H, W) in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..analysis._util import to_numpy
from ..analysis.attention import QueryStats, upsample_maps
from .figure import apply_colormap, new_figure, to_image

__all__ = ["attention_grid", "layer_head_grid", "overlay_video", "query_centroid_scatter", "rollout_figure"]


def _one_clip(maps, clip: int, ndim: int) -> np.ndarray:
    m = to_numpy(maps).astype(np.float64)
    if m.ndim == ndim + 1:
        m = m[clip]
    if m.ndim != ndim:
        raise ValueError(f"expected a {ndim}-d map (or a batch of them); got shape {m.shape}")
    return m


def _frame_slots(t: int, T: int, frames) -> list[tuple[int, int]]:
    """(patch slot, frame) pairs to show: by default the middle frame of every temporal patch."""
    per = max(T // t, 1)
    if frames is None:
        return [(s, min(s * per + per // 2, T - 1)) for s in range(t)]
    return [(min(f // per, t - 1), int(f)) for f in frames]


def attention_grid(
    maps,
    video=None,
    *,
    clip: int = 0,
    queries: list[int] | None = None,
    frames: list[int] | None = None,
    include_mean: bool = True,
    normalize: str = "query",
    cmap: str = "inferno",
    alpha: float = 0.6,
    title: str | None = "query attention over the patches",
):
    """A grid of heatmaps: one row per query, one column per frame.

    Args:
        maps: (N, t, h, w) or (B, N, t, h, w) patch-grid maps (e.g. head-averaged attention or
            rollout); ``clip`` picks the clip of a batch.
        video: optional (3, T, H, W) or (B, 3, T, H, W) clip in [-1, 1]; the maps are drawn over its
            frames (upsampled bilinearly). Without it the bare patch grids are shown.
        queries: rows to show (default: the first 8 queries).
        frames: frame indices (default: the middle frame of each temporal patch; without a video,
            the columns are the t temporal patches).
        include_mean: add a first row with the mean over all queries.
        normalize: ``"query"`` (each row scaled to its own maximum, shows where it looks),
            ``"minmax"`` (each row stretched from its minimum to its maximum: contrast for nearly
            uniform maps such as rollouts) or ``"global"`` (one scale for the figure, shows who
            looks hardest).
    Returns:
        matplotlib Figure.
    """
    m = _one_clip(maps, clip, 4)  # (N, t, h, w)
    N, t, h, w = m.shape
    qs = list(range(min(N, 8))) if queries is None else [int(q) for q in queries]
    rows = ([("all", m.mean(0))] if include_mean else []) + [(f"q{q}", m[q]) for q in qs]
    v = None
    if video is not None:
        v = _one_clip(video, clip, 4)  # (3, T, H, W)
        T, H, W = v.shape[1:]
    else:
        T, H, W = t, h, w
    slots = _frame_slots(t, T, frames)
    fig, axes = new_figure(len(rows), len(slots), figsize=(1.3 * len(slots) + 0.6, 1.3 * len(rows) + 0.5))
    if normalize not in ("query", "minmax", "global"):
        raise ValueError(f"normalize must be 'query', 'minmax' or 'global'; got {normalize!r}")
    gmax = max(float(r[1].max()) for r in rows) or 1.0
    for i, (name, mp) in enumerate(rows):
        if normalize == "minmax":
            mp = mp - mp.min()
        scale = gmax if normalize == "global" else (float(mp.max()) or 1.0)
        if v is not None:
            up = to_numpy(upsample_maps(torch.from_numpy(mp).float(), (T, H, W), "bilinear"))
        for j, (s, f) in enumerate(slots):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if v is not None:
                ax.imshow(to_image(v[:, f]))
                ax.imshow(up[f] / scale, cmap=cmap, vmin=0, vmax=1, alpha=alpha)
            else:
                ax.imshow(mp[s] / scale, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if i == 0:
                ax.set_title(f"frame {f}" if v is not None else f"t-slot {s}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def rollout_figure(rollout_maps, video=None, *, clip: int = 0, queries=None, frames=None, **kwargs):
    """:func:`attention_grid` of attention-rollout maps (B, N, t, h, w), with a fitting title that
    reports the mean share of the rollout reaching the patches."""
    m = _one_clip(rollout_maps, clip, 4)
    kwargs.setdefault("title", f"attention rollout (mean patch share {m.sum((1, 2, 3)).mean():.2f})")
    return attention_grid(m, video if video is None else _one_clip(video, clip, 4), queries=queries,
                          frames=frames, **kwargs)


def layer_head_grid(maps, query: int = 0, *, clip: int = 0, cmap: str = "inferno"):
    """Where one query looks in every layer (rows) and head (columns), averaged over time.

    ``maps``: (B, layers, heads, N, t, h, w) from :func:`~larp_lab.analysis.query_attention_maps`
    (or the same without B).
    """
    m = _one_clip(maps, clip, 6)[:, :, query]  # (layers, heads, t, h, w)
    Lr, Hd = m.shape[:2]
    fig, axes = new_figure(Lr, Hd, figsize=(1.4 * Hd + 0.6, 1.4 * Lr + 0.5))
    for i in range(Lr):
        for j in range(Hd):
            ax = axes[i, j]
            img = m[i, j].mean(0)
            ax.imshow(img, cmap=cmap, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"mass {m[i, j].sum():.2f}", fontsize=7)
            if i == 0:
                ax.set_title(f"head {j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"layer {i}", fontsize=8)
    fig.suptitle(f"query {query}: attention per layer and head (mean over time)", fontsize=10)
    return fig


def overlay_video(
    video,
    heat,
    *,
    alpha: float = 0.5,
    cmap: str = "inferno",
    normalize: str | None = "global",
    mode: str = "bilinear",
) -> Tensor:
    """Blend a heatmap over a clip, frame by frame.

    Args:
        video: (3, T, H, W) in [-1, 1].
        heat: (T, H, W) at frame resolution or (t, h, w) on the patch grid (upsampled with ``mode``,
            see :func:`~larp_lab.analysis.upsample_maps`); values >= 0.
        normalize: ``"global"`` (divide by the clip's maximum), ``"frame"`` (each frame by its own
            maximum) or None (values already in [0, 1]).
        alpha: weight of the heatmap colour (0 = the clip, 1 = only the heatmap).
    Returns:
        float32 (3, T, H, W) in [-1, 1], ready for :func:`larp_lab.data.video.write_video`.
    """
    v = torch.as_tensor(video).detach().float().cpu()
    if v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"video must be (3, T, H, W); got {tuple(v.shape)}")
    T, H, W = v.shape[1:]
    hm = torch.as_tensor(heat).detach().float().cpu()
    if hm.ndim != 3:
        raise ValueError(f"heat must be (T, H, W) or (t, h, w); got {tuple(hm.shape)}")
    if tuple(hm.shape) != (T, H, W):
        hm = upsample_maps(hm, (T, H, W), mode)
    hm = hm.clamp_min(0)
    if normalize == "global":
        hm = hm / hm.max().clamp_min(1e-12)
    elif normalize == "frame":
        hm = hm / hm.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    elif normalize is not None:
        raise ValueError(f"normalize must be 'global', 'frame' or None; got {normalize!r}")
    colour = torch.from_numpy(apply_colormap(hm.numpy(), cmap)).permute(3, 0, 1, 2)  # (3, T, H, W) in [0, 1]
    base = (v.clamp(-1, 1) + 1) * 0.5
    out = (1 - alpha) * base + alpha * colour
    return (out * 2 - 1).clamp(-1, 1)


def query_centroid_scatter(
    stats: QueryStats,
    *,
    clip: int = 0,
    frame=None,
    cmap: str = "viridis",
    annotate: bool = True,
):
    """Where each query looks on average: (x, y) centroid of its patch attention, coloured by the
    temporal centroid, marker size by the attention mass on patches, and a cross of +-1 std
    (spatial spread). ``frame``: optional (3, H, W) image in [-1, 1] drawn underneath."""
    x, y, t = stats.centroid_x[clip], stats.centroid_y[clip], stats.centroid_t[clip]
    sx, sy, mass = stats.spread_x[clip], stats.spread_y[clip], stats.mass[clip]
    fig, axes = new_figure(figsize=(5.2, 4.4))
    ax = axes[0, 0]
    if frame is not None:
        ax.imshow(to_image(to_numpy(frame)), extent=(0, 1, 1, 0), alpha=0.6)
    ax.errorbar(x, y, xerr=sx, yerr=sy, fmt="none", ecolor="0.6", elinewidth=0.6, alpha=0.6, zorder=1)
    sc = ax.scatter(x, y, c=t, cmap=cmap, vmin=0, vmax=1, s=20 + 200 * np.clip(mass, 0, 1),
                    edgecolors="k", linewidths=0.5, zorder=2)
    if annotate and len(x) <= 64:
        for q in range(len(x)):
            ax.annotate(str(q), (x[q], y[q]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)  # image coordinates: y grows downwards
    ax.set_aspect("equal")
    ax.set_xlabel("x (centroid)")
    ax.set_ylabel("y (centroid)")
    fig.colorbar(sc, ax=ax, label="t (centroid, 0 = first frame)")
    ax.set_title("where the queries look (size = patch mass, bars = spread)", fontsize=9)
    return fig
