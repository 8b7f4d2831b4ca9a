"""What the app's buttons do, as plain functions of (models, inputs) -> (files, numbers, figures).

Each handler validates its inputs, runs a :mod:`larp_lab.pipelines` job, writes what the page
shows in a fresh per-request directory under the app's work directory (old ones are removed after
``KEEP_S`` seconds; Gradio copies what it serves into its own cache), and raises
``ValueError``/``VideoError`` with one sentence for bad input, which the UI shows as a
``gr.Error``. Nothing uploaded is ever unpickled: videos go through PyAV only. The handlers that
take a clip also say what the tokenizer was trained on (``trained_on``, from its config.json), so a
poor result on real footage is no surprise.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import pipelines, viz
from ..analysis import encoder_attention, prior_surprisal, query_attention_maps, upsample_maps
from ..bundled import DEFAULT_GENERATOR, DEFAULT_TOKENIZER, describe_training, model_metadata, training_data
from ..data.video import VideoLimits
from .cache import ModelCache
from .figures import codebook_umap, image

KEEP_S = 1800

#: limits for uploads through the app (smaller than the library defaults)
APP_LIMITS = VideoLimits(
    max_file_bytes=200 * 1024**2, max_pixels=3840 * 2160, max_duration_s=20 * 60.0, max_decoded_frames=5000
)


class Workspace:
    """Per-request output directories under one root, pruned by age."""

    def __init__(self, root: str | Path | None = None, keep_s: float = KEEP_S) -> None:
        self.root = Path(root) if root else Path(tempfile.gettempdir()) / "larp_lab_app"
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_s = keep_s

    def new(self, prefix: str) -> Path:
        self.prune()
        return Path(tempfile.mkdtemp(prefix=f"{prefix}_", dir=self.root))

    def prune(self) -> None:
        now = time.time()
        for d in self.root.iterdir():
            try:
                if d.is_dir() and now - d.stat().st_mtime > self.keep_s:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                continue

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _need_video(video_path: str | None) -> str:
    if not video_path:
        raise ValueError("Upload a video (or pick an example) first.")
    return video_path


def _start(start_time: float | None) -> float:
    return 0.0 if start_time is None else float(start_time)


def trained_on(models: ModelCache, tokenizer: str) -> str | None:
    """What the tokenizer ``tokenizer`` was trained on, e.g. ``"moving digits, 32x32, 8 frames"`` (its
    config.json metadata "data" and its clip size); None when its config.json does not say."""
    data = training_data(tokenizer, DEFAULT_TOKENIZER)
    if data is None:
        return None
    c = models.tokenizer(tokenizer).config
    return describe_training(data, c.frame_num, c.input_size)


def generator_classes(models: ModelCache, generator: str) -> dict[str, Any]:
    """The classes the Generate tab offers: ``{"names": [...], "data": "digits" | None}``, the names from the
    generator's config (``class_names``; its class ids as text when it names none) and the data it was
    trained on from its config.json."""
    c = models.generator(generator).config
    names = [str(n) for n in c.class_names] if c.class_names else [str(i) for i in range(c.num_classes)]
    return {"names": names, "data": training_data(generator, DEFAULT_GENERATOR)}


def check_pairing(models: ModelCache, tokenizer: str, generator: str) -> None:
    """Raise ValueError unless ``generator`` learned the tokens of ``tokenizer``. Sizes alone cannot
    tell (the bundled patch tokenizer has the holistic one's 64 tokens over 1024 codes, so the bundled
    generator would sample sequences it decodes into noise): a generator whose config.json metadata
    names its ``tokenizer`` pairs with that one only; one that names none pairs with any holistic
    tokenizer of its sizes, never with a patch-token one."""
    meta = model_metadata(generator, DEFAULT_GENERATOR)
    tok_cfg = models.tokenizer(tokenizer).config
    named = meta.get("tokenizer")
    if isinstance(named, str) and named:
        if Path(named).name != Path(tokenizer.rstrip("/")).name:
            raise ValueError(f"{generator} learned the tokens of {named}, not of {tokenizer}: pick {named} as the "
                             "tokenizer to use it")
    elif getattr(tok_cfg, "token_mode", "holistic") == "patch":
        raise ValueError(f"{tokenizer} makes patch tokens; {generator} learned holistic tokens and would decode into "
                         "noise with it. Pick the holistic tokenizer (larp-tiny-tokenizer) to generate or predict.")


# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------


def reconstruct(models: ModelCache, ws: Workspace, tokenizer: str, video_path: str | None,
                start_time: float | None = 0.0, limits: VideoLimits = APP_LIMITS) -> dict[str, Any]:
    """Original | reconstruction (one MP4, so both play in sync), the reconstruction alone, tokens
    (.npy and .json), the metrics shown (rounded), and the :class:`~larp_lab.pipelines.Reconstruction`."""
    tok = models.tokenizer(tokenizer)
    r = pipelines.reconstruct(tok, _need_video(video_path), start_time=_start(start_time), limits=limits)
    files = pipelines.save_reconstruction(r, ws.new("rec"), tokenizer)
    m, t = r.metrics, r.timings_ms
    metrics = {
        "psnr_db": round(m["psnr_db"], 3),
        "ssim": round(m["ssim"], 4),
        "encode_ms": round(t["encode"], 1),
        "decode_ms": round(t["decode"], 1),
        "num_tokens": m["num_tokens"],
        "codebook_size": m["codebook_size"],
        "distinct_codes": m["distinct_codes"],
    }
    return {**files, "result": r, "metrics": metrics, "used": r.source.describe(),
            "trained_on": trained_on(models, tokenizer)}


def reconstruct_from_prefix(models: ModelCache, ws: Workspace, tokenizer: str, generator: str | None,
                            indices: list[int] | torch.Tensor, video: torch.Tensor | None, k: int,
                            method: str) -> dict[str, Any]:
    """Keep the first ``k`` tokens, complete the rest by the prior or the generator, decode."""
    if method not in ("prior", "generator"):
        raise ValueError(f"unknown completion method {method!r}")
    if method == "generator" and not generator:
        raise ValueError("no generator is loaded to complete the tokens")
    tok = models.tokenizer(tokenizer)
    gen = models.generator(generator) if method == "generator" else None
    if gen is not None:
        check_pairing(models, tokenizer, generator)
    c = pipelines.complete(tok, indices, int(k), generator=gen, reference=video)
    path = pipelines.save_video(ws.new("prefix") / f"first_{c.k}_tokens_{method}.mp4", c.video)
    metrics = {"k": c.k, "method": method, "tokens_changed": c.metrics["tokens_changed"]}
    if "psnr_db" in c.metrics:
        metrics["psnr_db"] = round(c.metrics["psnr_db"], 3)
    return {"video": path, "metrics": metrics, "indices": c.tokens[0]}


# ------------------------------------------------------------------------------------------------
# generate / predict
# ------------------------------------------------------------------------------------------------

MAX_SAMPLES = 16


def generate(models: ModelCache, ws: Workspace, tokenizer: str, generator: str, class_name: str, num_samples: int,
             cfg_scale: float, temperature: float, top_k: int, top_p: float, seed: int) -> dict[str, Any]:
    """``num_samples`` clips of one class as MP4s, with each sample's mean NLL per token."""
    tok, gen = models.tokenizer(tokenizer), models.generator(generator)
    check_pairing(models, tokenizer, generator)
    for name, v, lo, hi in (("CFG scale", cfg_scale, 0.0, 20.0), ("temperature", temperature, 0.0, 5.0),
                            ("top-p", top_p, 0.0, 1.0), ("top-k", top_k, 0, gen.config.vocab_size),
                            ("the number of samples", num_samples, 1, MAX_SAMPLES)):
        try:
            inside = v is not None and lo <= float(v) <= hi
        except (TypeError, ValueError, OverflowError):  # not a number (a list or text through the API)
            inside = False
        if not inside:
            raise ValueError(f"{name} must lie in [{lo}, {hi}]")
    g = pipelines.generate(tok, gen, class_name, num_samples=int(num_samples), cfg_scale=float(cfg_scale),
                           temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), seed=int(seed))
    paths = pipelines.save_clips(ws.new("gen"), g.videos)
    t = g.timings_ms
    info = {"class": g.class_name, "class_id": g.class_id, "sample_s": round(t["sample"] / 1000, 3),
            "decode_s": round(t["decode"] / 1000, 3),
            "mean_nll_per_token": [round(v, 4) for v in g.metrics["mean_nll_per_token"]]}
    return {"paths": paths, "result": g, "info": info}


def predict(models: ModelCache, ws: Workspace, tokenizer: str, predictor: str, video_path: str | None,
            cond_frames: int, seed: int, start_time: float | None = 0.0,
            limits: VideoLimits = APP_LIMITS) -> dict[str, Any]:
    """Truth | prediction (one MP4) and the prediction's PSNR next to the repeat-last-frame baseline."""
    tok, pred = models.tokenizer(tokenizer), models.predictor(predictor)
    check_pairing(models, tokenizer, predictor)
    p = pipelines.predict(tok, pred, _need_video(video_path), cond_frames=int(cond_frames), seed=int(seed),
                          start_time=_start(start_time), limits=limits)
    path = pipelines.save_side_by_side(ws.new("pred") / "prediction.mp4", p.truth, p.prediction)
    m = p.metrics
    metrics = {"conditioning_frames": p.cond_frames, "psnr_predicted_frames_db": round(m["psnr_predicted_db"], 3),
               "psnr_repeat_last_frame_db": round(m["psnr_repeat_last_db"], 3), "used": p.source.describe()}
    return {"video": path, "metrics": metrics, "per_frame_psnr": [round(v, 3) for v in m["per_frame_psnr_db"]],
            "used": p.source.describe(), "trained_on": trained_on(models, tokenizer)}


# ------------------------------------------------------------------------------------------------
# explore
# ------------------------------------------------------------------------------------------------


def explore(models: ModelCache, ws: Workspace, tokenizer: str, video_path: str | None, query: int, layer: int,
            head: int | None, start_time: float | None = 0.0, map_method: str = "umap",
            limits: VideoLimits = APP_LIMITS) -> dict[str, Any]:
    """Attention of one holistic query (layer, head or head mean) as an overlay video and a frame
    grid (one row: that query, frame by frame), the prior's surprisal of each token, the clip's
    codes on the codebook map, and what the model saw (``used``)."""
    path = _need_video(video_path)
    tok = models.tokenizer(tokenizer)
    c = tok.config
    if not 0 <= query < c.num_tokens:
        raise ValueError(f"query must be in [0, {c.num_tokens - 1}]")
    if not 0 <= layer < c.encoder_depth:
        raise ValueError(f"layer must be in [0, {c.encoder_depth - 1}]")
    if head is not None and not 0 <= head < c.encoder_num_heads:
        raise ValueError(f"head must be in [0, {c.encoder_num_heads - 1}] or the mean")
    x, source = pipelines.load_clip(path, frames=c.frame_num, size=c.input_size, start_time=_start(start_time),
                                    limits=limits)
    x = x.to(tok.device)
    enc, cache = encoder_attention(tok, x)
    maps = query_attention_maps(cache, [layer])[0, 0]  # (heads, N, t, h, w)
    qmaps = maps.mean(0) if head is None else maps[head]  # (N, t, h, w)
    heat = upsample_maps(qmaps[query], tuple(x.shape[2:]), mode="bilinear")  # (T, H, W)
    overlay = pipelines.save_video(ws.new("explore") / f"query{query}_layer{layer}.mp4",
                                   viz.overlay_video(x[0].cpu(), heat))
    grid = image(viz.attention_grid(
        qmaps, x[0].cpu(), queries=[query], include_mean=False,
        title=f"query {query}, layer {layer}, {'mean of heads' if head is None else f'head {head}'}"))
    info: dict[str, Any] = {"query": query, "layer": layer, "head": "mean" if head is None else head,
                            "token_id": int(enc.indices[0, query]),
                            "attention_mass_on_patches": round(float(qmaps[query].sum()), 4),
                            "used": source.describe()}
    if tok.prior_model is not None:
        s = prior_surprisal(tok, enc.indices)[0]  # (N-1,) nats
        surprisal = image(viz.surprisal_strip(s, enc.indices[0, 1:], first_position=1))
        info["prior_nll_nats_per_token"] = round(float(s.mean()), 4)
    else:
        surprisal = None
    cmap = codebook_umap(tok, map_method)
    in_clip = set(enc.indices[0].tolist())
    colour = np.array([1.0 if int(k) in in_clip else 0.0 for k in cmap["code"]])
    hover = [f"code {int(k)}" + (" (in this clip)" if int(k) in in_clip else "") for k in cmap["code"]]
    umap_fig = viz.embedding_scatter(cmap["coords"], colour, hover=hover, categorical=True,
                                     class_names=["other codes", "codes of this clip"],
                                     title=f"all {len(cmap['code'])} codes ({map_method.upper()} of the unit vectors)")
    umap_fig.update_layout(legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
                           title={"y": 0.98, "yanchor": "top", "font": {"size": 13}},
                           margin={"l": 40, "r": 10, "t": 70, "b": 40})  # legend above: fits a phone
    info["distinct_codes_in_clip"] = len(in_clip)
    return {"overlay": overlay, "heatmap": grid, "surprisal": surprisal, "umap": umap_fig, "info": info,
            "used": info["used"], "trained_on": trained_on(models, tokenizer)}
