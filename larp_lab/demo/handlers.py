"""What the app's buttons do, as plain functions of (models, inputs) -> (files, numbers, figures).

Each handler validates its inputs, works in a fresh per-request directory under the app's work
directory (old ones are removed after ``KEEP_S`` seconds; Gradio copies what it serves into its own
cache), and raises ``ValueError``/``VideoError`` with one sentence for bad input, which the UI shows
as a ``gr.Error``. Nothing uploaded is ever unpickled: videos go through PyAV only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.completion import complete_with_generator, complete_with_prior
from ..data.video import VideoLimits, read_video, side_by_side, write_video
from ..evaluation.metrics import per_frame_psnr, psnr, ssim
from .generate import check_compatible, generate_clips, predict_future
from .models import ModelHub
from .reconstruct import APP_LIMITS

KEEP_S = 1800


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


# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------


def reconstruct(hub: ModelHub, ws: Workspace, tokenizer: str, video_path: str | None,
                limits: VideoLimits = APP_LIMITS) -> dict[str, Any]:
    """Original | reconstruction (one MP4, so both play in sync), the reconstruction alone, tokens
    (.npy and .json), metrics, per-frame PSNR and the token ids."""
    if not video_path:
        raise ValueError("Upload a video (or pick an example) first.")
    tok = hub.tokenizer(tokenizer)
    cfg = tok.config
    x = read_video(video_path, cfg.frame_num, size=cfg.input_size, limits=limits).unsqueeze(0).to(tok.device)
    with torch.inference_mode():
        t0 = time.perf_counter()
        enc = tok.encode(x)
        t1 = time.perf_counter()
        rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1)
        t2 = time.perf_counter()
    out = ws.new("rec")
    idx = enc.indices[0].cpu()
    both = write_video(out / "original_vs_reconstruction.mp4", side_by_side([x[0].cpu(), rec[0].cpu()]))
    alone = write_video(out / "reconstruction.mp4", rec[0].cpu())
    np.save(out / "tokens.npy", idx.numpy())
    (out / "tokens.json").write_text(json.dumps({"tokenizer": tokenizer, "tokens": idx.tolist()}))
    frame_psnr = per_frame_psnr(rec, x)[0].tolist()
    metrics = {
        "psnr_db": round(float(psnr(rec, x)[0]), 3),
        "ssim": round(float(ssim(rec, x)[0]), 4),
        "encode_ms": round(1000 * (t1 - t0), 1),
        "decode_ms": round(1000 * (t2 - t1), 1),
        "num_tokens": cfg.num_tokens,
        "codebook_size": cfg.codebook_size,
        "distinct_codes": int(idx.unique().numel()),
    }
    return {"side_by_side": both, "reconstruction": alone, "tokens_npy": out / "tokens.npy",
            "tokens_json": out / "tokens.json", "metrics": metrics, "per_frame_psnr": frame_psnr,
            "indices": idx, "video": x.cpu(), "grid": enc.video_shape}


def reconstruct_from_prefix(hub: ModelHub, ws: Workspace, tokenizer: str, generator: str | None,
                            indices: list[int] | torch.Tensor, video: torch.Tensor | None, k: int,
                            method: str) -> dict[str, Any]:
    """Keep the first ``k`` tokens, complete the rest by the prior or the generator, decode."""
    tok = hub.tokenizer(tokenizer)
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(1, -1).to(tok.device)
    N = idx.shape[1]
    k = int(k)
    if not 1 <= k <= N:
        raise ValueError(f"k must be between 1 and {N}")
    if method == "prior":
        full = complete_with_prior(tok, idx, k)
    elif method == "generator":
        if not generator:
            raise ValueError("no generator is loaded to complete the tokens")
        gen = hub.generator(generator)
        check_compatible(tok, gen)
        full = complete_with_generator(gen, idx, k)
    else:
        raise ValueError(f"unknown completion method {method!r}")
    with torch.inference_mode():
        rec = tok.decode_indices(full).clamp(-1, 1).cpu()
    out = ws.new("prefix")
    path = write_video(out / f"first_{k}_tokens_{method}.mp4", rec[0])
    metrics = {"k": k, "method": method, "tokens_changed": int((full != idx).sum())}
    if video is not None:
        metrics["psnr_db"] = round(float(psnr(rec, video)[0]), 3)
    return {"video": path, "metrics": metrics, "indices": full[0].cpu()}


# ------------------------------------------------------------------------------------------------
# generate / predict
# ------------------------------------------------------------------------------------------------


def generate(hub: ModelHub, ws: Workspace, tokenizer: str, generator: str, class_name: str, num_samples: int,
             cfg_scale: float, temperature: float, top_k: int, top_p: float, seed: int) -> dict[str, Any]:
    tok, gen = hub.tokenizer(tokenizer), hub.generator(generator)
    for name, v, lo, hi in (("CFG scale", cfg_scale, 0.0, 20.0), ("temperature", temperature, 0.0, 5.0),
                            ("top-p", top_p, 0.0, 1.0), ("top-k", top_k, 0, gen.config.vocab_size)):
        if v is None or not (lo <= float(v) <= hi):
            raise ValueError(f"{name} must lie in [{lo}, {hi}]")
    samples, info = generate_clips(tok, gen, class_name, num_samples=int(num_samples), cfg_scale=float(cfg_scale),
                                   temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                                   seed=int(seed), out_dir=ws.new("gen"))
    return {"samples": samples, "info": info}


def predict(hub: ModelHub, ws: Workspace, tokenizer: str, predictor: str, video_path: str | None, cond_frames: int,
            seed: int, limits: VideoLimits = APP_LIMITS) -> dict[str, Any]:
    if not video_path:
        raise ValueError("Upload a video (or pick an example) first.")
    tok, pred = hub.tokenizer(tokenizer), hub.predictor(predictor)
    p = predict_future(tok, pred, video_path, cond_frames=int(cond_frames), seed=int(seed), out_dir=ws.new("pred"),
                       limits=limits)
    metrics = {"conditioning_frames": p.cond_frames, "psnr_predicted_frames_db": round(p.psnr_predicted, 3),
               "psnr_repeat_last_frame_db": round(p.psnr_repeat_last, 3)}
    return {"video": p.path, "metrics": metrics, "per_frame_psnr": p.per_frame_psnr}
