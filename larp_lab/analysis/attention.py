"""Where do LARP's holistic queries look? Query attention maps, attention rollout, query statistics.

The encoder sequence is ``[patches (P) ; queries (N)]`` (see
:class:`~larp_lab.models.capture.SequenceLayout`); patch p of the (t, h, w) grid is row
``t_i*h*w + h_i*w + w_i``. All maps here are over that patch grid: (t, h, w) cells, each covering
``T/t`` frames and ``H/h x W/w`` pixels. :func:`upsample_maps` turns them into frame-resolution
heatmaps for overlays.

Typical use::

    enc, cache = encoder_attention(tok, video)            # video (B, 3, T, H, W)
    maps = query_attention_maps(cache)                     # (B, layers, heads, N, t, h, w)
    last = maps[:, -1].mean(1)                             # (B, N, t, h, w) head-averaged last layer
    roll = rollout_query_maps(attention_rollout(cache), cache.layout)   # (B, N, t, h, w)
    stats = query_statistics(roll, mask=motion_mask(video))
    specialisation_summary(stats)                          # {"temporal_entropy": ..., ...}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.capture import ActivationCache, SequenceLayout
from ._util import evaluating, to_numpy

__all__ = [
    "QueryStats",
    "attention_rollout",
    "encoder_attention",
    "encoder_layers",
    "motion_mask",
    "pool_mask_to_grid",
    "query_attention_maps",
    "query_statistics",
    "rollout_query_maps",
    "specialisation_summary",
    "upsample_maps",
]

_ENC_ATTN = re.compile(r"^encoder\.blocks\.(\d+)\.attn\.hook_attn$")


# ================================================================================================
#                                       Capturing
# ================================================================================================


@torch.no_grad()
def encoder_attention(tok, video: Tensor, *, to_cpu: bool = True):
    """Encode ``video`` (B, 3, T, H, W) in ``eval()`` while recording only the encoder's attention.

    Cheaper than :meth:`~larp_lab.models.tokenizer.LARPTokenizer.run_with_cache` (no decode, no
    other hook points). Returns ``(encoding, cache)``; ``cache.attention("encoder", l)`` is
    (B, heads, P + N, P + N) and ``cache.layout`` tells patches from queries.
    """
    shape = tok.check_video(video)
    wanted = lambda name: bool(_ENC_ATTN.match(name))
    with evaluating(tok), tok.capture(names=wanted, to_cpu=to_cpu, video_shape=shape) as cache:
        enc = tok.encode(video.to(tok.device))
    return enc, cache


def encoder_layers(cache: ActivationCache) -> list[int]:
    """Sorted indices of the encoder layers whose attention ``cache`` holds."""
    out = sorted(int(m.group(1)) for k in cache.keys() if (m := _ENC_ATTN.match(k)))
    if not out:
        raise KeyError("the cache holds no encoder attention; capture it with encoder_attention(tok, video)")
    return out


# ================================================================================================
#                                   Query attention maps
# ================================================================================================


def query_attention_maps(cache: ActivationCache, layers: list[int] | None = None) -> Tensor:
    """Each holistic query's attention over the patches, per layer and head.

    Args:
        cache: from :func:`encoder_attention` or ``tok.run_with_cache``.
        layers: encoder layers to stack (default: all captured, ascending).
    Returns:
        float32 (B, len(layers), heads, N, t, h, w). Entries are >= 0 and each query's map sums to
        <= 1: the mass it gives to the other queries (and itself) is left out.
    """
    layers = encoder_layers(cache) if layers is None else list(layers)
    return torch.stack([cache.query_to_patch_attention(i).float() for i in layers], dim=1)


def attention_rollout(
    cache: ActivationCache,
    *,
    layers: list[int] | None = None,
    head_fusion: str = "mean",
    add_residual: bool = True,
) -> Tensor:
    """Attention rollout over encoder layers (Abnar & Zuidema, 2020, arXiv:2005.00928).

    For each layer l the heads are fused (``"mean"``, as in the paper; ``"max"`` / ``"min"`` as in
    common variants), the residual connection is accounted for by adding the identity, and rows are
    renormalised: ``A_l = (fuse(attn_l) + I) / rowsum``. With mean fusion this is exactly the paper's
    ``0.5 * attn + 0.5 * I``. The rollout is ``R = A_L @ ... @ A_1`` (layer 1 applied first), so
    ``R[i, j]`` estimates how much input token j contributes to output row i after the last layer.
    Computed in float64; every row of ``R`` sums to 1.

    Returns:
        float32 (B, L, L) over the whole encoder sequence ``[patches ; queries]``; use
        :func:`rollout_query_maps` for the query rows x patch columns.
    """
    layers = encoder_layers(cache) if layers is None else list(layers)
    R = None
    for i in layers:
        a = cache.attention("encoder", i).double()  # (B, H, L, L)
        if head_fusion == "mean":
            a = a.mean(1)
        elif head_fusion == "max":
            a = a.amax(1)
        elif head_fusion == "min":
            a = a.amin(1)
        else:
            raise ValueError(f"head_fusion must be 'mean', 'max' or 'min'; got {head_fusion!r}")
        if add_residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-30)  # (B, L, L), rows sum to 1
        R = a if R is None else a @ R
    return R.float()


def rollout_query_maps(rollout: Tensor, layout: SequenceLayout, *, renormalize: bool = False) -> Tensor:
    """Query rows x patch columns of a rollout (B, L, L), on the patch grid: (B, N, t, h, w).

    The part of a query's rollout that lands on the query columns is the contribution of the
    learned (input-independent) query embeddings; it is left out, so each map sums to <= 1 and the
    missing mass says how much of the token is "prior" rather than "read from the clip". With
    ``renormalize=True`` each map is divided by its patch mass and sums to 1.
    """
    m = rollout[:, layout.encoder_queries, layout.encoder_patches]  # (B, N, P)
    if renormalize:
        m = m / m.sum(-1, keepdim=True).clamp_min(1e-12)
    return m.reshape(m.shape[0], m.shape[1], *layout.patch_grid)


# ================================================================================================
#                                     Masks and upsampling
# ================================================================================================


def upsample_maps(maps: Tensor, size: tuple[int, int, int], mode: str = "nearest") -> Tensor:
    """Patch-grid maps (..., t, h, w) -> frame-resolution heatmaps (..., T, H, W).

    ``"nearest"`` repeats each cell over its frames and pixels (exact, mass per pixel is constant in
    a patch); ``"bilinear"`` is bilinear in space and nearest in time (frames of one temporal patch
    share a map, which is what the model sees); ``"trilinear"`` interpolates in time too.
    """
    if maps.ndim < 3:
        raise ValueError(f"maps must end with (t, h, w); got {tuple(maps.shape)}")
    lead, (t, h, w) = maps.shape[:-3], maps.shape[-3:]
    T, H, W = (int(s) for s in size)
    x = maps.float().reshape(-1, 1, t, h, w)  # (M, 1, t, h, w)
    if mode == "nearest":
        if T % t or H % h or W % w:
            x = F.interpolate(x, size=(T, H, W), mode="nearest")
        else:
            x = x.repeat_interleave(T // t, 2).repeat_interleave(H // h, 3).repeat_interleave(W // w, 4)
    elif mode == "bilinear":
        x = F.interpolate(x, size=(t, H, W), mode="trilinear", align_corners=False)  # space only
        x = F.interpolate(x, size=(T, H, W), mode="nearest")
    elif mode == "trilinear":
        x = F.interpolate(x, size=(T, H, W), mode="trilinear", align_corners=False)
    else:
        raise ValueError(f"mode must be 'nearest', 'bilinear' or 'trilinear'; got {mode!r}")
    return x.reshape(*lead, T, H, W)


def pool_mask_to_grid(mask, grid: tuple[int, int, int]) -> Tensor:
    """Boolean (T, H, W) or (B, T, H, W) mask -> float (…, t, h, w): the fraction of each patch's
    pixels inside the mask (in [0, 1])."""
    m = torch.as_tensor(mask).float()
    if m.ndim not in (3, 4):
        raise ValueError(f"mask must be (T, H, W) or (B, T, H, W); got {tuple(m.shape)}")
    lead = m.shape[:-3]
    T, H, W = m.shape[-3:]
    t, h, w = grid
    if T % t or H % h or W % w:
        raise ValueError(f"a {T}x{H}x{W} mask does not divide into a {t}x{h}x{w} patch grid")
    m = m.reshape(-1, t, T // t, h, H // h, w, W // w).mean(dim=(2, 4, 6))
    return m.reshape(*lead, t, h, w)


def motion_mask(video: Tensor, threshold: float = 0.15) -> Tensor:
    """A simple foreground estimate: pixels that differ from the temporal median frame.

    ``video`` (3, T, H, W) or (B, 3, T, H, W) in [-1, 1] -> bool (T, H, W) or (B, T, H, W), True
    where any channel is more than ``threshold`` (on the [-1, 1] scale) away from that pixel's
    median over time. It finds moving objects over a still background (most synthetic classes);
    for a camera pan it marks most of the frame, for a static object nothing.
    """
    v = video.float()
    if v.ndim == 4:
        v = v.unsqueeze(0)
        squeeze = True
    elif v.ndim == 5:
        squeeze = False
    else:
        raise ValueError(f"video must be (3, T, H, W) or (B, 3, T, H, W); got {tuple(video.shape)}")
    med = v.median(dim=2, keepdim=True).values  # (B, 3, 1, H, W)
    m = ((v - med).abs().amax(dim=1) > threshold)  # (B, T, H, W)
    return m[0] if squeeze else m


# ================================================================================================
#                                     Query statistics
# ================================================================================================


@dataclass
class QueryStats:
    """Per-query statistics of patch-attention maps; every field has shape (B, N).

    Coordinates are normalised to [0, 1] over the clip (cell centres ``(i + 0.5) / n``); spreads
    are standard deviations in the same units. Entropies are normalised by the log of the number
    of cells, so 0 = all mass in one cell and 1 = uniform.
    """

    mass: np.ndarray  #: attention mass on patches (<= 1; the rest went to queries)
    centroid_t: np.ndarray
    centroid_y: np.ndarray
    centroid_x: np.ndarray
    spread_t: np.ndarray
    spread_y: np.ndarray
    spread_x: np.ndarray
    temporal_entropy: np.ndarray  #: entropy of the temporal marginal / log t (0 when t == 1)
    spatial_entropy: np.ndarray  #: entropy of the spatial marginal / log (h*w)
    entropy: np.ndarray  #: entropy over all P cells / log P
    peak: np.ndarray  #: largest share of one cell (concentration; 1/P when uniform)
    mask_mass: np.ndarray | None = None  #: share of the attention on the mask (pooled to the grid)
    mask_baseline: np.ndarray | None = None  #: what uniform attention would put on the mask
    mask_lift: np.ndarray | None = None  #: mask_mass / mask_baseline (> 1 = looks at the object)
    mask_correlation: np.ndarray | None = None  #: Pearson r between the map and the pooled mask

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mass.shape)

    def table(self, clip: int = 0) -> list[dict]:
        """One row per query of clip ``clip``: ``{"query": n, "mass": ..., "centroid_t": ...}``."""
        rows = []
        for q in range(self.mass.shape[1]):
            row = {"query": q}
            for f in fields(self):
                v = getattr(self, f.name)
                if v is not None:
                    row[f.name] = float(v[clip, q])
            rows.append(row)
        return rows


def _norm_entropy(p: Tensor, dims: tuple[int, ...], cells: int) -> Tensor:
    """Entropy of distribution ``p`` over ``dims`` normalised by log(cells) (0 where cells == 1)."""
    if cells <= 1:
        return torch.zeros(p.shape[: p.ndim - len(dims)], dtype=p.dtype)
    ent = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=dims)
    return ent / math.log(cells)


def query_statistics(maps: Tensor, mask=None) -> QueryStats:
    """Statistics of attention maps (B, N, t, h, w) or (N, t, h, w) (a batch of one).

    Each map is first divided by its patch mass so that the statistics describe *where* the query
    looks among the patches. ``mask``: optional boolean (T, H, W) (shared by all clips) or
    (B, T, H, W) object mask at frame resolution; it is pooled to the patch grid as the fraction of
    each patch's pixels inside it (:func:`pool_mask_to_grid`).
    """
    m = maps.detach().double().cpu()
    if m.ndim == 4:
        m = m.unsqueeze(0)
    if m.ndim != 5:
        raise ValueError(f"maps must be (B, N, t, h, w) or (N, t, h, w); got {tuple(maps.shape)}")
    B, N, t, h, w = m.shape
    mass = m.sum(dim=(2, 3, 4))  # (B, N)
    p = m / mass.clamp_min(1e-30)[..., None, None, None]  # (B, N, t, h, w), sums to 1
    ct = (torch.arange(t, dtype=p.dtype) + 0.5) / t
    cy = (torch.arange(h, dtype=p.dtype) + 0.5) / h
    cx = (torch.arange(w, dtype=p.dtype) + 0.5) / w
    pt, py, px = p.sum(dim=(3, 4)), p.sum(dim=(2, 4)), p.sum(dim=(2, 3))  # marginals (B, N, .)

    def moments(marg: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        mean = (marg * c).sum(-1)
        var = (marg * (c - mean[..., None]) ** 2).sum(-1)
        return mean, var.clamp_min(0).sqrt()

    (mt, st), (my, sy), (mx, sx) = moments(pt, ct), moments(py, cy), moments(px, cx)
    flat = p.reshape(B, N, -1)
    out = dict(
        mass=mass, centroid_t=mt, centroid_y=my, centroid_x=mx, spread_t=st, spread_y=sy, spread_x=sx,
        temporal_entropy=_norm_entropy(pt, (2,), t),
        spatial_entropy=_norm_entropy(p.sum(2), (2, 3), h * w),
        entropy=_norm_entropy(flat, (2,), t * h * w),
        peak=flat.amax(-1),
    )
    if mask is not None:
        g = pool_mask_to_grid(torch.as_tensor(mask).cpu(), (t, h, w)).double()  # (t, h, w) or (B, t, h, w)
        if g.ndim == 3:
            g = g.unsqueeze(0).expand(B, -1, -1, -1)
        if g.shape[0] != B:
            raise ValueError(f"mask has {g.shape[0]} clips, the maps {B}")
        gf = g.reshape(B, 1, -1)  # (B, 1, P)
        on = (flat * gf).sum(-1)  # (B, N)
        base = gf.mean(-1).expand(B, N)
        pc = flat - flat.mean(-1, keepdim=True)
        gc = gf - gf.mean(-1, keepdim=True)
        denom = (pc.pow(2).sum(-1) * gc.pow(2).sum(-1)).sqrt()
        out.update(
            mask_mass=on,
            mask_baseline=base,
            mask_lift=torch.where(base > 0, on / base.clamp_min(1e-30), torch.full_like(on, float("nan"))),
            mask_correlation=torch.where(denom > 0, (pc * gc).sum(-1) / denom.clamp_min(1e-30),
                                         torch.full_like(on, float("nan"))),
        )
    return QueryStats(**{k: to_numpy(v).astype(np.float64) for k, v in out.items()})


def specialisation_summary(stats: QueryStats) -> dict[str, float]:
    """Numbers that answer "do queries specialise by time, by place, by object?".

    * by time: ``temporal_entropy`` (mean over queries and clips; low = each query reads few
      temporal slices) and ``temporal_coverage`` (std of the temporal centroids across queries,
      averaged over clips; high = different queries cover different times);
    * by place: ``spatial_entropy`` and ``spatial_coverage`` (the same for (y, x) centroids, as the
      root of the summed variances);
    * fixed or content-driven: ``centroid_consistency`` = std of each query's (t, y, x) centroid
      across clips (root of summed variances, averaged over queries; NaN for one clip). Small =
      a query looks at the same place whatever the clip shows (a positional query);
    * by object (with a mask): ``mask_lift`` (mean; > 1 = attention concentrates on the object),
      ``object_queries`` (fraction of queries with lift > 1.5) and ``mask_correlation`` (mean r);
    * ``patch_mass``: mean attention on patches (the rest stays among the queries).
    """
    def cross_query_std(a: np.ndarray) -> np.ndarray:  # (B, N) -> (B,)
        return a.std(axis=1)

    out = {
        "temporal_entropy": float(np.nanmean(stats.temporal_entropy)),
        "spatial_entropy": float(np.nanmean(stats.spatial_entropy)),
        "entropy": float(np.nanmean(stats.entropy)),
        "peak": float(np.nanmean(stats.peak)),
        "patch_mass": float(np.nanmean(stats.mass)),
        "temporal_coverage": float(cross_query_std(stats.centroid_t).mean()),
        "spatial_coverage": float(np.sqrt(cross_query_std(stats.centroid_y) ** 2
                                          + cross_query_std(stats.centroid_x) ** 2).mean()),
    }
    B = stats.mass.shape[0]
    if B > 1:
        var = stats.centroid_t.var(0) + stats.centroid_y.var(0) + stats.centroid_x.var(0)  # (N,)
        out["centroid_consistency"] = float(np.sqrt(var).mean())
    else:
        out["centroid_consistency"] = float("nan")
    if stats.mask_lift is not None:
        out["mask_lift"] = float(np.nanmean(stats.mask_lift))
        out["object_queries"] = float(np.nanmean(stats.mask_lift > 1.5))
        out["mask_correlation"] = float(np.nanmean(stats.mask_correlation))
        out["mask_mass"] = float(np.nanmean(stats.mask_mass))
    return out
