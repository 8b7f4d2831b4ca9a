"""Figure plumbing shared by the viz modules: headless matplotlib figures, saving, colormaps.

Figures are made with :class:`LabFigure` (a :class:`matplotlib.figure.Figure` drawn with the Agg
canvas), never through ``pyplot``: nothing global is created, nothing is shown, no GUI backend is
touched, and figures are freed like any other object. A :class:`LabFigure` renders itself in a
notebook (``_repr_png_``) without ``%matplotlib``; Gradio's ``gr.Plot`` takes it as it is.
Interactive figures are plotly ``go.Figure`` objects (plotly is imported only when one is made).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import matplotlib.colors
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["LabFigure", "apply_colormap", "category_colors", "figure_to_array", "new_figure", "save_figure"]


class LabFigure(Figure):
    """A matplotlib Figure with an Agg canvas that shows itself as PNG in notebooks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=None, squeeze: bool = False, **kwargs):
    """A :class:`LabFigure` and its axes array (nrows, ncols) (``squeeze=False`` by default)."""
    fig = LabFigure(figsize=figsize, layout=kwargs.pop("layout", "constrained"))
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


def _is_plotly(fig) -> bool:
    return type(fig).__module__.startswith("plotly")


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write a figure to ``path`` and return it.

    matplotlib figures: any format matplotlib knows by suffix (``.png``, ``.pdf``, ``.svg``).
    plotly figures: ``.html`` (self-contained, works offline), ``.json``, or ``.png`` / ``.svg``
    when the optional ``kaleido`` package is installed (a clear error otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if _is_plotly(fig):
        if suffix == ".html":
            fig.write_html(str(path), include_plotlyjs=True, full_html=True)
        elif suffix == ".json":
            fig.write_json(str(path))
        else:
            try:
                import kaleido  # noqa: F401
            except ImportError as e:
                raise RuntimeError(
                    f"{path}: saving a plotly figure as {suffix or 'this format'} needs the optional 'kaleido' "
                    "package; save it as .html or .json, or make the matplotlib version of this figure"
                ) from e
            fig.write_image(str(path))
        return path
    if not isinstance(fig, Figure):
        raise TypeError(f"save_figure takes a matplotlib or plotly figure, got {type(fig).__name__}")
    if fig.canvas is None or not hasattr(fig.canvas, "print_figure"):
        FigureCanvasAgg(fig)
    fig.savefig(str(path), dpi=dpi, bbox_inches="tight")
    return path


def figure_to_array(fig, *, dpi: int = 100) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 image (H, W, 3) (e.g. for ``gr.Image``)."""
    canvas = FigureCanvasAgg(fig) if not isinstance(fig.canvas, FigureCanvasAgg) else fig.canvas
    old = fig.dpi
    fig.set_dpi(dpi)
    try:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    finally:
        fig.set_dpi(old)


def apply_colormap(values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Values in [0, 1] (any shape S) -> RGB float32 (S..., 3) in [0, 1] (values are clipped)."""
    cm = matplotlib.colormaps[cmap]
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    return np.asarray(cm(v), dtype=np.float64)[..., :3].astype(np.float32)  # 0-d input: cm gives a tuple


def category_colors(n: int) -> list[str]:
    """``n`` distinct hex colours for categories: tab10 up to 10, tab20 up to 20, then a cycle of
    tab20 (the default 10-colour cycle would repeat colours for the 12 synthetic classes)."""
    cm = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cm(i % cm.N)) for i in range(n)]


def to_image(frame: np.ndarray) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) float in [0, 1] for ``imshow``."""
    return np.clip((np.transpose(np.asarray(frame, dtype=np.float32), (1, 2, 0)) + 1.0) * 0.5, 0.0, 1.0)


def plotly_go():
    """``plotly.graph_objects``, imported on first use."""
    import plotly.graph_objects as go

    return go
