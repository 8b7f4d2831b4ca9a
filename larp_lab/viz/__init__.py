"""Figures and rendered videos from :mod:`larp_lab.analysis` arrays, shared by notebooks and the app.

Static figures are matplotlib :class:`~larp_lab.viz.figure.LabFigure` objects made without
``pyplot`` (Agg canvas: headless, no global state, never shown; they display as PNG in notebooks
and go into ``gr.Plot``). Interactive figures are plotly ``go.Figure`` objects (plotly is imported
on first use). :func:`save_figure` writes either; :func:`overlay_video` returns a (3, T, H, W)
clip in [-1, 1] for :func:`larp_lab.data.video.write_video`.

=============================  ===============================================================
figure                         input
=============================  ===============================================================
attention_grid                 (N, t, h, w) query maps [+ clip]: query x frame heatmaps
rollout_figure                 rollout maps (B, N, t, h, w) [+ clip]
layer_head_grid                query_attention_maps (B, layers, heads, N, t, h, w), one query
overlay_video                  clip (3, T, H, W) + heat (T, H, W) or (t, h, w) -> clip
query_centroid_scatter         QueryStats: (x, y) centroids coloured by t
nll_order_curves               OrderNLL: learned vs reverse vs random (bands)
psnr_vs_k                      PrefixCurve or {label: PrefixCurve}
position_importance_bar        PositionImportance
surprisal_heatmap / _strip     surprisal (B, L) / (L,)
per_class_bars                 per_class_table rows
likelihood_error_scatter       per-clip NLL and error (matplotlib or plotly)
codebook_usage_histogram       code counts (K,)
embedding_scatter              (n, 2) coordinates, plotly with hover (embedding_scatter_static)
token_id_grid / _heatmap       token ids (N,) or (B, N) (the heatmap: plotly, ids on hover)
per_frame_psnr_figure          PSNR per frame (T,) [+ conditioning frames shaded]
snapshot_grid                  SnapshotReport: snapshots x (clips' reconstructions, query maps)
snapshot_curves                SnapshotReport: PSNR, codebook, prior bits, attention vs step
token_grid_image               token ids (N,) [+ values (N,)] -> clickable grid image (grid_cell_at)
difference_clip                edit difference (T, H, W) -> heat clip (3, T, H, W)
energy_figure                  edit energy per frame (T,)
influence_mosaic / _frames     InfluenceMap.maps (N, T, H, W): every token's map / one token's
patching_bars                  PatchingSweep.means(): per position, what moved towards clip B
comparison_figure              TokenizerComparison: holistic vs patch (prefix curve, importance, prior bits)
clip_rows_figure               labelled rows of frames [(label, clip (3, T, H, W))]
=============================  ===============================================================

:mod:`larp_lab.viz.notebook` holds what the notebooks share (``show_video``, ``show_frames``,
``comparison_grid``, ``interleave``, ``repo_root``, ...); IPython is imported only when showing.
"""

from .attention import attention_grid, layer_head_grid, overlay_video, query_centroid_scatter, rollout_figure
from .compare import clip_rows_figure, comparison_figure
from .figure import LabFigure, apply_colormap, category_colors, figure_to_array, new_figure, save_figure
from .latent import (
    codebook_usage_histogram,
    embedding_scatter,
    embedding_scatter_static,
    grid_shape,
    token_id_grid,
    token_id_heatmap,
)
from .likelihood import likelihood_error_scatter, per_class_bars, surprisal_heatmap, surprisal_strip
from .metrics import per_frame_psnr_figure
from .notebook import comparison_grid, interleave, show_frames, show_video
from .snapshots import snapshot_curves, snapshot_grid
from .surgery import (
    difference_clip,
    energy_figure,
    grid_cell_at,
    influence_frames,
    influence_mosaic,
    patching_bars,
    token_grid_image,
    upscale_clip,
)
from .token_order import nll_order_curves, position_importance_bar, psnr_vs_k

__all__ = [
    "difference_clip",
    "energy_figure",
    "grid_cell_at",
    "influence_frames",
    "influence_mosaic",
    "patching_bars",
    "token_grid_image",
    "upscale_clip",
    "LabFigure",
    "apply_colormap",
    "attention_grid",
    "category_colors",
    "codebook_usage_histogram",
    "clip_rows_figure",
    "comparison_figure",
    "comparison_grid",
    "embedding_scatter",
    "embedding_scatter_static",
    "figure_to_array",
    "grid_shape",
    "interleave",
    "layer_head_grid",
    "likelihood_error_scatter",
    "new_figure",
    "nll_order_curves",
    "overlay_video",
    "per_class_bars",
    "per_frame_psnr_figure",
    "position_importance_bar",
    "psnr_vs_k",
    "query_centroid_scatter",
    "rollout_figure",
    "save_figure",
    "show_frames",
    "show_video",
    "snapshot_curves",
    "snapshot_grid",
    "surprisal_heatmap",
    "surprisal_strip",
    "token_id_grid",
    "token_id_heatmap",
]
