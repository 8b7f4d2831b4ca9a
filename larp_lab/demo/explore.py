"""The app's figures and the Explore tab: where a query looks, how surprising each token is, and
where the clip's tokens sit among the codebook (all from larp_lab.analysis + larp_lab.viz)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .. import viz
from ..analysis import codebook_map, encoder_attention, prior_surprisal, query_attention_maps, upsample_maps
from ..data.video import read_video, write_video
from .models import ModelHub
from .reconstruct import APP_LIMITS

_MAPS: dict[tuple[int, str], dict] = {}
_MAPS_LOCK = threading.Lock()


def image(fig) -> np.ndarray | None:
    """A static figure as an RGB array (H, W, 3) for ``gr.Image``."""
    return None if fig is None else viz.figure_to_array(fig)


def reconstruction_figures(r: dict) -> dict[str, Any]:
    """Per-frame PSNR and the token-id grid of a reconstruction result, as images."""
    K = r["metrics"]["codebook_size"]
    return {"psnr": image(viz.per_frame_psnr_figure(r["per_frame_psnr"])),
            "tokens": image(viz.token_id_grid(r["indices"], K, title="token ids, in order (row by row)"))}


def likelihood_figure(samples) -> np.ndarray:
    """Per-token surprisal of generated samples (rows) under the generator, as an image."""
    s = -np.asarray([smp.log_likelihood for smp in samples], dtype=np.float64)
    return image(viz.surprisal_heatmap(s, first_position=0))


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


def explore_clip(hub: ModelHub, ws, tokenizer: str, video_path: str | None, query: int, layer: int,
                 head: int | None, map_method: str = "umap") -> dict[str, Any]:
    """Attention of one holistic query (layer, head or head mean) as an overlay video and a frame
    grid, the prior's surprisal of each token, and the clip's codes on the codebook map."""
    if not video_path:
        raise ValueError("Upload a video (or pick an example) first.")
    tok = hub.tokenizer(tokenizer)
    c = tok.config
    if not 0 <= query < c.num_tokens:
        raise ValueError(f"query must be in [0, {c.num_tokens - 1}]")
    if not 0 <= layer < c.encoder_depth:
        raise ValueError(f"layer must be in [0, {c.encoder_depth - 1}]")
    if head is not None and not 0 <= head < c.encoder_num_heads:
        raise ValueError(f"head must be in [0, {c.encoder_num_heads - 1}] or the mean")
    x = read_video(video_path, c.frame_num, size=c.input_size, limits=APP_LIMITS).unsqueeze(0).to(tok.device)
    enc, cache = encoder_attention(tok, x)
    maps = query_attention_maps(cache, [layer])[0, 0]  # (heads, N, t, h, w)
    qmaps = maps.mean(0) if head is None else maps[head]  # (N, t, h, w)
    heat = upsample_maps(qmaps[query], tuple(x.shape[2:]), mode="bilinear")  # (T, H, W)
    out = ws.new("explore")
    overlay = write_video(out / f"query{query}_layer{layer}.mp4", viz.overlay_video(x[0].cpu(), heat))
    grid = image(viz.attention_grid(
        qmaps, x[0].cpu(), queries=[query], include_mean=True,
        title=f"query {query}, layer {layer}, {'mean of heads' if head is None else f'head {head}'}"))
    info: dict[str, Any] = {"query": query, "layer": layer, "head": "mean" if head is None else head,
                            "token_id": int(enc.indices[0, query]),
                            "attention_mass_on_patches": round(float(qmaps[query].sum()), 4)}
    if tok.prior_model is not None:
        s = prior_surprisal(tok, enc.indices)[0]  # (N-1,) nats
        surprisal = image(viz.surprisal_strip(s, enc.indices[0, 1:], first_position=1))
        info["prior_nll_nats_per_token"] = round(float(s.mean()), 4)
    else:
        surprisal = None
    cmap = codebook_umap(tok, map_method)
    used = set(enc.indices[0].tolist())
    colour = np.array([1.0 if int(k) in used else 0.0 for k in cmap["code"]])
    hover = [f"code {int(k)}" + (" (in this clip)" if int(k) in used else "") for k in cmap["code"]]
    umap_fig = viz.embedding_scatter(cmap["coords"], colour, hover=hover, categorical=True,
                                     class_names=["other codes", "codes of this clip"],
                                     title="codebook (UMAP of the unit code vectors)")
    info["distinct_codes_in_clip"] = len(used)
    return {"overlay": overlay, "heatmap": grid, "surprisal": surprisal, "umap": umap_fig, "info": info}

