"""Likelihood figures: surprisal heatmaps and strips, per-class bars, likelihood vs error scatter
(inputs from :mod:`larp_lab.analysis.likelihood`)."""

from __future__ import annotations

import numpy as np

from ..analysis._util import to_numpy
from ..analysis.likelihood import correlation, to_bits
from .figure import category_colors, new_figure, plotly_go

__all__ = ["likelihood_error_scatter", "per_class_bars", "surprisal_heatmap", "surprisal_strip"]


def surprisal_heatmap(surprisal, *, labels=None, class_names=None, bits: bool = True, first_position: int = 1,
                      cmap: str = "magma", max_rows: int = 64):
    """Clips (rows) x token positions (columns) surprisal image.

    ``surprisal``: (B, L) nats (e.g. :func:`~larp_lab.analysis.prior_surprisal`, whose first column
    is position 1: ``first_position=1``; generator surprisal starts at 0). Rows are labelled with
    the class when ``labels`` are given; at most ``max_rows`` clips are drawn.
    """
    s = to_numpy(surprisal).astype(np.float64)[:max_rows]
    s = to_bits(s) if bits else s
    B, L = s.shape
    fig, axes = new_figure(figsize=(min(2 + 0.12 * L, 14), min(1.2 + 0.22 * B, 12)))
    ax = axes[0, 0]
    im = ax.imshow(s, aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(first_position - 0.5, first_position + L - 0.5, B - 0.5, -0.5))
    if labels is not None and B <= 40:
        lab = to_numpy(labels).reshape(-1)[:B]
        names = [class_names[int(c)] if class_names is not None and 0 <= c < len(class_names) else str(int(c))
                 for c in lab]
        ax.set_yticks(np.arange(B), names, fontsize=6)
    ax.set_xlabel("token position")
    ax.set_ylabel("clip")
    fig.colorbar(im, ax=ax, label=f"surprisal ({'bits' if bits else 'nats'})")
    ax.set_title("per-token surprisal -log p", fontsize=9)
    return fig


def surprisal_strip(surprisal, tokens=None, *, bits: bool = True, first_position: int = 1, cmap: str = "magma"):
    """One clip's surprisal per token as coloured bars; ``tokens`` (L,) ids label the bars (when
    L <= 64). ``surprisal``: (L,) nats."""
    s = to_numpy(surprisal).astype(np.float64).reshape(-1)
    s = to_bits(s) if bits else s
    L = s.size
    x = np.arange(first_position, first_position + L)
    import matplotlib

    colours = matplotlib.colormaps[cmap](s / max(float(s.max()), 1e-12) * 0.85 + 0.1)
    fig, axes = new_figure(figsize=(min(2 + 0.2 * L, 14), 3))
    ax = axes[0, 0]
    ax.bar(x, s, color=colours, width=0.9)
    if tokens is not None and L <= 64:
        tk = to_numpy(tokens).reshape(-1)
        tk = tk[len(tk) - L:] if len(tk) > L else tk  # prior surprisal skips token 0
        ax.set_xticks(x, [str(int(t)) for t in tk], fontsize=6, rotation=90)
        ax.set_xlabel("token id (in order)")
    else:
        ax.set_xlabel("token position")
    ax.set_ylabel(f"surprisal ({'bits' if bits else 'nats'})")
    ax.set_title(f"surprisal per token (mean {s.mean():.2f})", fontsize=9)
    return fig


def per_class_bars(table: list[dict], *, ylabel: str = "mean NLL per token (nats)", sort: bool = False):
    """Bars of per-class means with std error bars, from
    :func:`~larp_lab.analysis.per_class_table` rows (``name``, ``mean``, ``std``, ``n``)."""
    rows = sorted(table, key=lambda r: r["mean"]) if sort else list(table)
    names = [f"{r['name']} ({r['n']})" for r in rows]
    fig, axes = new_figure(figsize=(max(4.5, 0.55 * len(rows) + 1.5), 3.6))
    ax = axes[0, 0]
    x = np.arange(len(rows))
    ax.bar(x, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], color="tab:purple", alpha=0.8,
           error_kw={"elinewidth": 0.7})
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title("per class (n clips)", fontsize=9)
    return fig


def likelihood_error_scatter(nll, error, *, labels=None, class_names=None, backend: str = "matplotlib",
                             xlabel: str = "mean NLL per token (nats)", ylabel: str = "reconstruction MSE"):
    """Each clip's likelihood (x) against its reconstruction error (y), coloured by class, with
    the Pearson r and Spearman rho in the title. ``backend="plotly"`` gives hover text (clip index,
    class, values)."""
    x = to_numpy(nll).astype(np.float64).reshape(-1)
    y = to_numpy(error).astype(np.float64).reshape(-1)
    c = correlation(x, y)
    title = f"likelihood vs error: Pearson r = {c['pearson']:.3f}, Spearman rho = {c['spearman']:.3f} (n = {c['n']})"
    lab = None if labels is None else to_numpy(labels).reshape(-1).astype(int)

    def name(k: int) -> str:
        return class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)

    if backend == "plotly":
        go = plotly_go()
        fig = go.Figure()
        groups = [(None, np.arange(x.size))] if lab is None else [(k, np.flatnonzero(lab == k)) for k in np.unique(lab)]
        colours = category_colors(len(groups))
        for (k, sel), colour in zip(groups, colours):
            fig.add_trace(go.Scatter(
                x=x[sel], y=y[sel], mode="markers", name="clips" if k is None else name(int(k)),
                marker={"color": colour},
                text=[f"clip {i}" + ("" if k is None else f" ({name(int(k))})") for i in sel],
                hovertemplate="%{text}<br>NLL %{x:.3f}<br>error %{y:.4g}<extra></extra>",
            ))
        fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, template="plotly_white")
        return fig
    if backend != "matplotlib":
        raise ValueError(f"backend must be 'matplotlib' or 'plotly'; got {backend!r}")
    fig, axes = new_figure(figsize=(5.5, 4))
    ax = axes[0, 0]
    if lab is None:
        ax.scatter(x, y, s=14, alpha=0.8)
    else:
        cats = np.unique(lab)
        for k, colour in zip(cats, category_colors(len(cats))):
            sel = lab == k
            ax.scatter(x[sel], y[sel], s=14, alpha=0.8, color=colour, label=name(int(k)))
        ax.legend(fontsize=6, ncol=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    return fig
