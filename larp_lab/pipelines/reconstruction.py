"""Reconstruct a clip: tokenize it, decode the tokens, measure how close the result is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.video import VideoLimits
from ._util import Stopwatch, compare
from .inputs import DEFAULT_LIMITS, ClipSource, as_clip_batch


@dataclass
class Reconstruction:
    """What :func:`reconstruct` returns (tensors on the CPU)."""

    original: Tensor  #: float32 (B, 3, T, H, W) in [-1, 1]: the clip as the model saw it
    reconstruction: Tensor  #: float32 (B, 3, T, H, W), clamped to [-1, 1]
    tokens: Tensor  #: int64 (B, N)
    #: psnr_db, ssim, per_frame_psnr_db (means over the B clips), num_tokens, codebook_size, distinct_codes
    metrics: dict[str, Any]
    timings_ms: dict[str, float]  #: read (files only), encode, decode
    source: ClipSource | None  #: what was taken from the file (None for a tensor input)


@torch.inference_mode()
def reconstruct(
    tok,
    clip: str | os.PathLike | Tensor,
    *,
    start_time: float = 0.0,
    frames: int | None = None,
    size: int | None = None,
    stride: int = 1,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> Reconstruction:
    """Encode ``clip`` to tokens and decode them again.

    Args:
        tok: a :class:`~larp_lab.models.tokenizer.LARPTokenizer` (in eval mode: argmax codes).
        clip: a video file (read from ``start_time`` s at the tokenizer's frame_num x input_size
            centre crop, or ``frames`` x ``size``) or a float tensor (3, T, H, W) / (B, 3, T, H, W)
            in [-1, 1].
        frames, size: read another number of frames / crop size than the model's (an explicit opt-in
            to a size the model was not trained on; a tensor of another size is refused).
        stride, fps: keep every ``stride``-th frame, or sample at ``fps`` (files only).
    """
    sw = Stopwatch(tok.device)
    with sw("read"):
        x, source = as_clip_batch(clip, tok, start_time=start_time, frames=frames, size=size, stride=stride,
                                  fps=fps, limits=limits)
    if source is None:
        del sw.ms["read"]
    with sw("encode"):  # frames/size asked for explicitly: encode at that size (recomputed position tables)
        enc = tok.encode(x, any_size=frames is not None or size is not None)
    with sw("decode"):
        rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1)
    x, rec, idx = x.cpu(), rec.cpu(), enc.indices.cpu()
    c = tok.config
    metrics: dict[str, Any] = {**compare(rec, x), "num_tokens": c.num_tokens, "codebook_size": c.codebook_size,
                               "distinct_codes": int(idx.unique().numel())}
    return Reconstruction(original=x, reconstruction=rec, tokens=idx, metrics=metrics, timings_ms=sw.ms,
                          source=source)
