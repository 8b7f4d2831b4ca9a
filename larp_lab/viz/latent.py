"""Latent-space figures: codebook usage histogram, 2-D embedding scatters (plotly with hover, or
matplotlib), token-id grid images (inputs from :mod:`larp_lab.analysis.latent`)."""

from __future__ import annotations

import math

import numpy as np

from ..analysis._util import to_numpy
from .figure import category_colors, new_figure, plotly_go

__all__ = [
    "codebook_usage_histogram",
    "embedding_scatter",
    "embedding_scatter_static",
    "grid_shape",
    "token_id_grid",
    "token_id_heatmap",
]

#: token-id grids write the ids into their cells up to this many cells (more are unreadable)
ANNOTATE_MAX_CELLS = 64


def codebook_usage_histogram(counts, *, log: bool = True):
    """Two panels from per-code counts (K,): the counts sorted by rank (how usage decays; dead codes
    at the tail) and the histogram of counts (how many codes are used how often). The title gives
    usage, perplexity and the number of dead codes."""
    c = to_numpy(counts).astype(np.float64).reshape(-1)
    K, total = c.size, c.sum()
    p = c[c > 0] / max(total, 1)
    ppl = float(np.exp(-(p * np.log(p)).sum())) if total else 1.0
    dead = int((c == 0).sum())
    fig, axes = new_figure(1, 2, figsize=(9, 3.4))
    ax = axes[0, 0]
    srt = np.sort(c)[::-1]
    ax.bar(np.arange(K), srt, width=1.0, color="tab:blue")
    if log and srt.max() > 0:
        ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("code rank")
    ax.set_ylabel("count")
    ax2 = axes[0, 1]
    ax2.hist(c, bins=min(50, max(5, K // 4)), color="tab:green")
    ax2.set_xlabel("uses per code")
    ax2.set_ylabel("codes")
    fig.suptitle(
        f"codebook usage: {K - dead}/{K} codes used ({(K - dead) / K:.1%}), perplexity {ppl:.1f}, {dead} dead",
        fontsize=10,
    )
    return fig


def _colour_groups(color, categorical, class_names) -> tuple[np.ndarray, list[tuple[np.ndarray, str, str]] | None]:
    """``color`` flattened to (n,), and, when it is categorical (``categorical``, or else integer
    values), one ``(point indices, name, colour)`` per distinct value; ``None`` for a colour scale."""
    col = to_numpy(color).reshape(-1)
    cat = categorical if categorical is not None else np.issubdtype(col.dtype, np.integer)
    if not cat:
        return col, None
    cats = np.unique(col)
    groups = []
    for v, colour in zip(cats, category_colors(len(cats))):
        k = int(v)
        name = class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)
        groups.append((np.flatnonzero(col == v), name, colour))
    return col, groups


def embedding_scatter(
    coords,
    color=None,
    *,
    hover=None,
    categorical: bool | None = None,
    class_names=None,
    title: str = "",
    color_title: str = "",
    marker_size: int = 6,
):
    """Interactive plotly scatter of 2-D coordinates (n, 2) (UMAP / PCA output).

    Args:
        color: (n,) values: integers are drawn as categories (one trace per value, named by
            ``class_names`` when given; e.g. class labels), floats on a colour scale (e.g. motion,
            position, count). ``categorical`` overrides the guess.
        hover: (n,) strings shown on hover (default: the point index).
    Returns:
        ``plotly.graph_objects.Figure``.
    """
    go = plotly_go()
    xy = to_numpy(coords).astype(np.float64)
    n = xy.shape[0]
    text = [str(h) for h in hover] if hover is not None else [f"#{i}" for i in range(n)]
    fig = go.Figure()
    if color is None:
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", text=text, hoverinfo="text",
                                   marker={"size": marker_size}))
    else:
        col, groups = _colour_groups(color, categorical, class_names)
        if groups is not None:
            for sel, name, colour in groups:
                fig.add_trace(go.Scattergl(
                    x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=name,
                    text=[text[i] for i in sel], hoverinfo="text+name",
                    marker={"size": marker_size, "color": colour},
                ))
        else:
            fig.add_trace(go.Scattergl(
                x=xy[:, 0], y=xy[:, 1], mode="markers", text=text, hoverinfo="text",
                marker={"size": marker_size, "color": col.astype(np.float64), "colorscale": "Viridis",
                        "showscale": True, "colorbar": {"title": {"text": color_title}}},
            ))
    fig.update_layout(title=title, template="plotly_white", xaxis_title="dim 1", yaxis_title="dim 2",
                      legend_title_text=color_title)
    return fig


def embedding_scatter_static(coords, color=None, *, class_names=None, title: str = "", color_title: str = "",
                             categorical: bool | None = None, s: float = 10):
    """The matplotlib version of :func:`embedding_scatter` (legend for categories, colour bar else)."""
    xy = to_numpy(coords).astype(np.float64)
    fig, axes = new_figure(figsize=(5.5, 4.5))
    ax = axes[0, 0]
    if color is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=s, alpha=0.8)
    else:
        col, groups = _colour_groups(color, categorical, class_names)
        if groups is not None:
            for sel, name, colour in groups:
                ax.scatter(xy[sel, 0], xy[sel, 1], s=s, alpha=0.8, color=colour, label=name)
            if len(groups) <= 20:
                ax.legend(fontsize=6, ncol=2, title=color_title or None, title_fontsize=7)
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=s, c=col.astype(np.float64), cmap="viridis", alpha=0.85)
            fig.colorbar(sc, ax=ax, label=color_title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid holding exactly ``n`` cells (rows <= cols)."""
    r = int(math.isqrt(n))
    while r > 1 and n % r:
        r -= 1
    return r, n // r


def _id_image(indices, shape: tuple[int, int] | None) -> tuple[np.ndarray, str, str]:
    """Token ids (N,) -> a (rows, cols) grid in row-major token order, or (B, N) as it is; with axis labels."""
    idx = to_numpy(indices).astype(np.int64)
    if idx.ndim == 1:
        rows, cols = shape or grid_shape(idx.size)
        if rows * cols != idx.size:
            raise ValueError(f"shape {shape} does not hold {idx.size} tokens")
        return idx.reshape(rows, cols), "token (row-major order)", ""
    if idx.ndim == 2:
        return idx, "token position", "clip"
    raise ValueError(f"indices must be (N,) or (B, N); got {idx.shape}")


def token_id_grid(indices, codebook_size: int, *, shape: tuple[int, int] | None = None, annotate: bool | None = None,
                  cmap: str = "turbo", title: str = "token ids"):
    """Token ids as an image: one clip (N,) as a near-square grid (``shape`` or :func:`grid_shape`,
    row-major in token order), or a batch (B, N) as one row per clip. Colours map id / K;
    ``annotate`` writes the ids in the cells (default: at most ``ANNOTATE_MAX_CELLS`` cells; for
    more, :func:`token_id_heatmap` shows each id on hover)."""
    img, xlabel, ylabel = _id_image(indices, shape)
    R, C = img.shape
    fig, axes = new_figure(figsize=(min(1.5 + 0.35 * C, 12), min(1.0 + 0.35 * R, 10)))
    ax = axes[0, 0]
    im = ax.imshow(img, cmap=cmap, vmin=0, vmax=max(codebook_size - 1, 1), interpolation="nearest", aspect="auto")
    if annotate if annotate is not None else img.size <= ANNOTATE_MAX_CELLS:
        for (i, j), v in np.ndenumerate(img):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="w",
                    path_effects=_outline())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="code id")
    return fig


def token_id_heatmap(indices, codebook_size: int, *, shape: tuple[int, int] | None = None,
                     annotate: bool | None = None, title: str = "token ids"):
    """The interactive (plotly) version of :func:`token_id_grid`: hovering a cell shows its token
    position, grid cell and code id; ids are written into the cells only for small grids
    (``annotate``, default at most ``ANNOTATE_MAX_CELLS`` cells). ``title=""``: no title.

    Returns:
        ``plotly.graph_objects.Figure``; the cells keep the grid's aspect (square cells).
    """
    go = plotly_go()
    img, xlabel, ylabel = _id_image(indices, shape)
    R, C = img.shape
    one_clip = to_numpy(indices).ndim == 1
    if one_clip:
        hover = [[f"token {i * C + j} (row {i}, column {j})<br>code {img[i, j]}" for j in range(C)] for i in range(R)]
    else:
        hover = [[f"clip {i}, token {j}<br>code {img[i, j]}" for j in range(C)] for i in range(R)]
    show = annotate if annotate is not None else img.size <= ANNOTATE_MAX_CELLS
    fig = go.Figure(go.Heatmap(
        z=img, zmin=0, zmax=max(codebook_size - 1, 1), colorscale="Turbo", hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>", colorbar={"title": {"text": "code id"}},
        text=img.astype(str) if show else None, texttemplate="%{text}" if show else None,
        xgap=1, ygap=1,
    ))
    fig.update_yaxes(autorange="reversed", title_text=ylabel, scaleanchor="x" if one_clip else None,
                     constrain="domain")
    fig.update_xaxes(title_text=xlabel, constrain="domain")
    fig.update_layout(title={"text": title, "x": 0.5, "xanchor": "center"} if title else None,
                      template="plotly_white", margin={"l": 40, "r": 20, "t": 50 if title else 20, "b": 40})
    return fig


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.2, foreground="k")]
