"""The app's figures, as images or plotly figures (all drawn by larp_lab.viz), and the codebook map
behind the Explore tab (computed once per tokenizer)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from torch import Tensor

from .. import viz
from ..analysis import codebook_map
from ..pipelines import Reconstruction

_MAPS: dict[tuple[int, str], dict] = {}
_MAPS_LOCK = threading.Lock()


def image(fig) -> np.ndarray | None:
    """A static figure as an RGB array (H, W, 3) for ``gr.Image``."""
    return None if fig is None else viz.figure_to_array(fig)


def reconstruction_figures(r: Reconstruction) -> dict[str, Any]:
    """Per-frame PSNR (an image) and the token-id grid (a plotly figure: the id of a cell on hover)
    of a (one-clip) reconstruction."""
    K = r.metrics["codebook_size"]
    return {"psnr": image(viz.per_frame_psnr_figure(r.metrics["per_frame_psnr_db"])),
            "tokens": viz.token_id_heatmap(r.tokens[0], K, title="")}  # the app's caption says what it is


def likelihood_figure(log_likelihood: Tensor) -> np.ndarray:
    """Per-token surprisal of generated samples (rows of ``log_likelihood`` (B, N), nats) as an image."""
    return image(viz.surprisal_heatmap(-log_likelihood.double().numpy(), first_position=0))


def per_frame_figure(values, cond_frames: int) -> np.ndarray:
    return image(viz.per_frame_psnr_figure(values, cond_frames=cond_frames,
                                           title="PSNR per frame (prediction vs truth)"))


def codebook_umap(tok, method: str = "umap") -> dict:
    """2-D map of the tokenizer's codebook, computed once per tokenizer (UMAP takes ~10-30 s the
    first time in a process, mostly numba compilation)."""
    key = (id(tok), method)
    with _MAPS_LOCK:
        if key not in _MAPS:
            _MAPS[key] = codebook_map(tok, method=method, seed=0)
        return _MAPS[key]


def warm_up(tok) -> threading.Thread:
    """Compute the codebook UMAP in the background so the first Explore request is quick."""
    t = threading.Thread(target=codebook_umap, args=(tok,), daemon=True)
    t.start()
    return t
