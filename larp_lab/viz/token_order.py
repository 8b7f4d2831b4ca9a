"""Token-order figures: prior NLL per position under reordering, PSNR vs kept prefix, position
importance (inputs from :mod:`larp_lab.analysis.token_order`)."""

from __future__ import annotations

import numpy as np

from ..analysis.likelihood import to_bits
from ..analysis.token_order import OrderNLL, PositionImportance, PrefixCurve
from .figure import new_figure

__all__ = ["nll_order_curves", "position_importance_bar", "psnr_vs_k"]


def nll_order_curves(result: OrderNLL, *, bits: bool = False, smooth: int = 1):
    """Prior NLL per position: learned order vs reverse vs random permutations.

    The random curves are drawn as their mean with two bands: +-1 std and min-max over the
    permutations. ``smooth`` > 1 applies a moving average over positions (useful for N = 1024).
    """
    conv = to_bits if bits else (lambda a: a)

    def sm(a: np.ndarray) -> np.ndarray:
        if smooth <= 1 or a.shape[-1] < smooth:
            return a
        k = np.ones(smooth)
        norm = np.convolve(np.ones(a.shape[-1]), k, mode="same")  # fewer neighbours at the ends
        return np.apply_along_axis(lambda r: np.convolve(r, k, mode="same") / norm, -1, a)

    x = result.positions
    fig, axes = new_figure(figsize=(7, 3.6))
    ax = axes[0, 0]
    if result.random.size:
        r = sm(conv(result.random))
        mu, sd = r.mean(0), r.std(0)
        ax.fill_between(x, r.min(0), r.max(0), color="tab:gray", alpha=0.15, lw=0, label="random: min-max")
        ax.fill_between(x, mu - sd, mu + sd, color="tab:gray", alpha=0.35, lw=0, label="random: +-1 std")
        ax.plot(x, mu, color="tab:gray", lw=1.2, label=f"random ({r.shape[0]} perms)")
    ax.plot(x, sm(conv(result.reverse)), color="tab:orange", lw=1.2, label="reverse")
    ax.plot(x, sm(conv(result.learned)), color="tab:blue", lw=1.6, label="learned order")
    m = result.means()
    unit = "bits" if bits else "nats"
    ax.set_title(
        f"prior NLL per token ({unit}): learned {conv(m['learned']):.3f}, reverse {conv(m['reverse']):.3f}, "
        f"random {conv(m['random']):.3f}", fontsize=9,
    )
    ax.set_xlabel("position in the (re)ordered sequence")
    ax.set_ylabel(f"NLL ({unit})")
    ax.legend(fontsize=7, loc="best")
    return fig


def psnr_vs_k(curves, *, full_psnr: float | None = None):
    """PSNR vs number of kept tokens k, mean over clips with a +-1 std band.

    ``curves``: one :class:`PrefixCurve` or a dict ``{label: PrefixCurve}`` (e.g. neutral fill vs
    generator completion). ``full_psnr``: a dashed reference line (default: the first curve's value
    at k = N when it has one).
    """
    if isinstance(curves, PrefixCurve):
        curves = {curves.mode: curves}
    fig, axes = new_figure(figsize=(6, 3.6))
    ax = axes[0, 0]
    for label, c in curves.items():
        ax.plot(c.ks, c.mean, marker="o", ms=3, lw=1.4, label=label)
        ax.fill_between(c.ks, c.mean - c.std, c.mean + c.std, alpha=0.2, lw=0)
    if full_psnr is None:
        first = next(iter(curves.values()))
        full_psnr = float(first.mean[-1]) if len(first.ks) else None
    if full_psnr is not None:
        ax.axhline(full_psnr, color="k", ls="--", lw=0.8, label="all tokens")
    ax.set_xlabel("tokens kept (k, in token order)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("reconstruction from the first k tokens", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def position_importance_bar(result: PositionImportance, *, top: int | None = None):
    """Mean PSNR drop (dB) when each position is replaced by the neutral code, with std error bars.

    ``top``: show only the ``top`` most important positions (sorted), for long sequences.
    """
    drop = result.drop
    mean, std = drop.mean(1), drop.std(1)
    pos = result.positions
    if top is not None:
        order = np.argsort(-mean, kind="stable")[:top]
        pos, mean, std = pos[order], mean[order], std[order]
        xs = np.arange(len(pos))
    else:
        xs = pos
    fig, axes = new_figure(figsize=(max(5.0, min(0.25 * len(pos) + 2, 14)), 3.4))
    ax = axes[0, 0]
    ax.bar(xs, mean, yerr=std if drop.shape[1] > 1 else None, color="tab:red", alpha=0.8,
           error_kw={"elinewidth": 0.6})
    if top is not None:
        ax.set_xticks(xs, [str(p) for p in pos], fontsize=7)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("token position" + (" (most important first)" if top is not None else ""))
    ax.set_ylabel("PSNR drop (dB)")
    ax.set_title(f"position importance (one token replaced by the neutral code; {drop.shape[1]} clips)",
                 fontsize=9)
    return fig
