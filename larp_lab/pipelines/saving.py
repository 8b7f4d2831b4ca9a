"""Writing pipeline results: MP4/GIF clips, side-by-side comparisons, token files.

Kept apart from the maths: the pipelines return tensors, callers decide what to write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from torch import Tensor

from ..data.video import side_by_side, write_video
from .reconstruction import Reconstruction

FPS = 8.0  #: frame rate of written clips (LARP models see 16 frames; at 8 fps a clip lasts 2 s)


def _one(video: Tensor) -> Tensor:
    """(1, 3, T, H, W) or (3, T, H, W) -> (3, T, H, W)."""
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise ValueError(f"write one clip at a time; got a batch of {video.shape[0]}")
        video = video[0]
    return video.cpu()


def save_video(path: str | os.PathLike, video: Tensor, fps: float = FPS) -> Path:
    """One clip (3, T, H, W) or (1, 3, T, H, W) in [-1, 1] -> H.264 MP4 (or GIF by the suffix)."""
    return write_video(path, _one(video), fps=fps)


def save_side_by_side(path: str | os.PathLike, *videos: Tensor, fps: float = FPS, gap: int = 2) -> Path:
    """Clips of the same length next to each other (``gap``-pixel white separators), so they play in sync."""
    return write_video(path, side_by_side([_one(v) for v in videos], gap=gap), fps=fps)


def save_clips(out_dir: str | os.PathLike, videos: Tensor, fps: float = FPS, stem: str = "sample") -> list[Path]:
    """Every clip of a batch (B, 3, T, H, W) as ``<stem>_00.mp4``, ``<stem>_01.mp4``... in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_video(out / f"{stem}_{i:02d}.mp4", v.cpu(), fps=fps) for i, v in enumerate(videos)]


def save_tokens(path: str | os.PathLike, tokens: Tensor, tokenizer: str) -> Path:
    """Token ids (N,) or (B, N): ``.npy`` (int64 array) or ``.json`` (``{"tokenizer": ..., "tokens": [...]}``)."""
    p = Path(path)
    if p.suffix not in (".npy", ".json"):
        raise ValueError(f"{p.name}: tokens are saved as .npy or .json")
    p.parent.mkdir(parents=True, exist_ok=True)
    ids = tokens.detach().cpu().long()
    if p.suffix == ".npy":
        np.save(p, ids.numpy())
    else:
        p.write_text(json.dumps({"tokenizer": tokenizer, "tokens": ids.tolist()}))
    return p


def save_reconstruction(r: Reconstruction, out_dir: str | os.PathLike, tokenizer: str, fps: float = FPS) -> dict[str, Path]:
    """The files the app offers for one reconstructed clip: original | reconstruction side by side,
    the reconstruction alone, and the tokens (.npy and .json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "side_by_side": save_side_by_side(out / "original_vs_reconstruction.mp4", r.original, r.reconstruction,
                                          fps=fps),
        "reconstruction": save_video(out / "reconstruction.mp4", r.reconstruction, fps=fps),
        "tokens_npy": save_tokens(out / "tokens.npy", r.tokens[0], tokenizer),
        "tokens_json": save_tokens(out / "tokens.json", r.tokens[0], tokenizer),
    }
