"""Pictures for token surgery and patching (:mod:`larp_lab.analysis.surgery`, :mod:`.patching`).

* :func:`token_grid_image` -- a clip's tokens as a grid image of exact cell geometry (code ids in
  the cells, coloured by a value or by id, one cell outlined), with :func:`grid_cell_at` mapping a
  click on it back to a token position (the app's clickable grid);
* :func:`difference_clip` -- |edited - original| as a heat clip (3, T, H, W) to play beside both;
* :func:`energy_figure` -- the edit's difference energy per frame;
* :func:`influence_mosaic` -- every token's influence map (time-summed) tiled in token order, an
  image (the "heatmap per token"); :func:`influence_frames` -- one token's map frame by frame;
* :func:`patching_bars` -- per position, how far patching moved identity / position / motion / colour.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..analysis._util import to_numpy
from .figure import apply_colormap, new_figure, to_image
from .latent import grid_shape

__all__ = [
    "difference_clip",
    "energy_figure",
    "grid_cell_at",
    "influence_frames",
    "influence_mosaic",
    "patching_bars",
    "token_grid_image",
    "upscale_clip",
]


def token_grid_image(indices, values=None, *, selected: int | None = None, cell: int = 36,
                     cmap: str = "viridis", vmax: float | None = None, codebook_size: int | None = None,
                     marks: list[int] | None = None) -> np.ndarray:
    """One clip's tokens (N,) as an RGB uint8 image (rows*cell, cols*cell, 3), token order row-major
    over :func:`~larp_lab.viz.latent.grid_shape`.

    Cells are coloured by ``values`` (N,) (e.g. influence strength, a pixel's control share) on
    ``cmap`` from 0 to ``vmax`` (default the maximum), else by code id / ``codebook_size``; each cell
    shows its code id; ``selected`` gets a thick white frame, ``marks`` a thin red one.
    """
    idx = to_numpy(indices).astype(np.int64).reshape(-1)
    N = idx.size
    rows, cols = grid_shape(N)
    if values is None:
        k = codebook_size or int(idx.max()) + 1
        v = idx / max(k - 1, 1)
        cm = "turbo"
    else:
        val = np.asarray(to_numpy(values), dtype=np.float64).reshape(-1)
        if val.size != N:
            raise ValueError(f"values must have one entry per token ({N}); got {val.size}")
        top = vmax if vmax is not None else float(np.nanmax(val)) if np.isfinite(val).any() else 1.0
        v = val / (top if top > 0 else 1.0)
        cm = cmap
    fig, _ = new_figure(figsize=(cols * cell / 100, rows * cell / 100), layout=None)
    fig.clear()
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(apply_colormap(v.reshape(rows, cols), cm), interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    from matplotlib import patches, patheffects

    fs = max(5.0, cell / 5.0)
    for n in range(N):
        i, j = divmod(n, cols)
        ax.text(j, i, str(idx[n]), ha="center", va="center", fontsize=fs, color="w",
                path_effects=[patheffects.withStroke(linewidth=1.5, foreground="k")])
    for r in range(rows + 1):
        ax.axhline(r - 0.5, color="k", lw=0.5)
    for c in range(cols + 1):
        ax.axvline(c - 0.5, color="k", lw=0.5)
    for n in marks or []:
        i, j = divmod(int(n), cols)
        ax.add_patch(patches.Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, ec="red", lw=1.5))
    if selected is not None:
        if not 0 <= selected < N:
            raise ValueError(f"selected position {selected} is outside the {N} tokens")
        i, j = divmod(int(selected), cols)
        ax.add_patch(patches.Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False, ec="w", lw=3))
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    return img


def grid_cell_at(x: float, y: float, image_shape: tuple[int, ...], num_tokens: int) -> int:
    """The token position under pixel (x, y) of a :func:`token_grid_image` of ``image_shape`` (H, W, ...)."""
    rows, cols = grid_shape(num_tokens)
    H, W = image_shape[:2]
    if not (0 <= x < W and 0 <= y < H):
        raise ValueError(f"({x}, {y}) is outside the {W}x{H} grid image")
    return int(min(rows - 1, y * rows // H)) * cols + int(min(cols - 1, x * cols // W))


def upscale_clip(video: Tensor, factor: int) -> Tensor:
    """(3, T, H, W) -> (3, T, H*f, W*f) by pixel repetition (small clips stay crisp in a browser)."""
    if factor <= 1:
        return video
    return video.repeat_interleave(factor, -1).repeat_interleave(factor, -2)


def difference_clip(difference: Tensor, vmax: float | None = None, cmap: str = "inferno") -> Tensor:
    """|difference| (T, H, W) -> heat clip (3, T, H, W) in [-1, 1]; ``vmax`` maps to the top colour
    (default the clip's maximum; 0.05 at least, so noise does not fill the scale)."""
    d = to_numpy(difference).astype(np.float32)
    top = vmax if vmax is not None else max(float(d.max()), 0.05)
    rgb = apply_colormap(d / top, cmap)  # (T, H, W, 3) in [0, 1]
    return torch.from_numpy(rgb).permute(3, 0, 1, 2) * 2.0 - 1.0


def energy_figure(energy, *, title: str = "what the edit changed, frame by frame"):
    """Mean squared difference per frame (T,) as bars."""
    e = to_numpy(energy).astype(np.float64).reshape(-1)
    fig, axes = new_figure(figsize=(5.0, 2.2))
    ax = axes[0, 0]
    ax.bar(np.arange(len(e)), e, color="#d95f02")
    ax.set_xlabel("frame")
    ax.set_ylabel("mean squared difference")
    ax.set_xticks(np.arange(len(e)))
    ax.set_title(title, fontsize=9)
    return fig


def influence_mosaic(maps, *, gap: int = 1, normalise: str = "each") -> np.ndarray:
    """Token influence maps (N, T, H, W) (or time-summed (N, H, W)) tiled in token order (row-major
    over :func:`grid_shape`) as an RGB float image in [0, 1]: the "heatmap per token". ``normalise``:
    ``"each"`` (every map to its own maximum: where a token acts) or ``"all"`` (one scale: how much)."""
    m = to_numpy(maps).astype(np.float32)
    if m.ndim == 4:
        m = m.sum(1)
    if m.ndim != 3:
        raise ValueError(f"maps must be (N, T, H, W) or (N, H, W); got {m.shape}")
    N, H, W = m.shape
    if normalise == "each":
        m = m / np.maximum(m.reshape(N, -1).max(1), 1e-12)[:, None, None]
    elif normalise == "all":
        m = m / max(float(m.max()), 1e-12)
    else:
        raise ValueError(f"normalise must be 'each' or 'all'; got {normalise!r}")
    rows, cols = grid_shape(N)
    out = np.ones((rows * (H + gap) - gap, cols * (W + gap) - gap, 3), np.float32)
    rgb = apply_colormap(m, "inferno")
    for n in range(N):
        i, j = divmod(n, cols)
        out[i * (H + gap) : i * (H + gap) + H, j * (W + gap) : j * (W + gap) + W] = rgb[n]
    return out


def influence_frames(video: Tensor, token_map: Tensor, *, title: str = ""):
    """One token's influence (T, H, W) over the clip's frames (3, T, H, W): two rows (frames; heat)."""
    v = to_numpy(video)
    h = to_numpy(token_map)
    T = h.shape[0]
    fig, axes = new_figure(2, T, figsize=(1.1 * T, 2.5))
    top = max(float(h.max()), 1e-12)
    for t in range(T):
        axes[0, t].imshow(to_image(v[:, t]), interpolation="nearest")
        axes[1, t].imshow(h[t], cmap="inferno", vmin=0, vmax=top, interpolation="nearest")
        axes[0, t].set_title(f"t={t}", fontsize=7)
        for r in (0, 1):
            axes[r, t].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def patching_bars(means: dict[str, np.ndarray], *, labels=None, what=("identity", "position", "motion", "colour"),
                  title: str = "how far patching one group of positions from B into A moved A towards B"):
    """Per group of positions (G,), one bar row per property: 0 = A unchanged, 1 = became B."""
    fig, axes = new_figure(len(what), 1, figsize=(8.0, 1.3 * len(what) + 0.6), sharex=True)
    G = len(next(iter(means.values())))
    x = np.arange(G)
    colours = {"identity": "#1b9e77", "position": "#d95f02", "motion": "#7570b3", "colour": "#e7298a"}
    for r, k in enumerate(what):
        ax = axes[r, 0]
        v = np.nan_to_num(np.asarray(means[k], dtype=np.float64))
        ax.bar(x, v, color=colours.get(k, "#666666"), width=0.85)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(k, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("token position patched" if labels is None else "group of positions")
    if labels is not None:
        axes[-1, 0].set_xticks(x, labels, rotation=90, fontsize=6)
    fig.suptitle(title, fontsize=9)
    return fig
