"""Reconstruct an uploaded clip: read it (with limits), tokenize, decode, measure, write MP4s."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.video import VideoLimits, read_video, write_video
from ..evaluation.metrics import per_frame_psnr, psnr, ssim

#: limits for uploads through the app (smaller than the library defaults)
APP_LIMITS = VideoLimits(
    max_file_bytes=200 * 1024**2, max_pixels=3840 * 2160, max_duration_s=20 * 60.0, max_decoded_frames=5000
)


@dataclass
class Reconstruction:
    original_path: Path  #: the clip as the model saw it (cropped, resized), H.264 MP4
    reconstruction_path: Path  #: the decoded clip, H.264 MP4
    tokens: list[int]
    psnr: float
    ssim: float
    per_frame_psnr: list[float]
    encode_ms: float
    decode_ms: float
    metrics: dict = field(default_factory=dict)


@torch.inference_mode()
def reconstruct_file(
    tok, path: str | Path, *, out_dir: str | Path | None = None, stride: int = 1, fps: float = 8.0,
    limits: VideoLimits = APP_LIMITS,
) -> Reconstruction:
    """Read ``path`` at the tokenizer's size, reconstruct it and write both clips as MP4."""
    cfg = tok.config
    video = read_video(path, cfg.frame_num, size=cfg.input_size, stride=stride, limits=limits)
    x = video.unsqueeze(0).to(tok.device)
    t0 = time.perf_counter()
    enc = tok.encode(x)
    t1 = time.perf_counter()
    rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1)
    t2 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="larp_lab_"))
    out.mkdir(parents=True, exist_ok=True)
    orig_path = write_video(out / "original.mp4", x[0].cpu(), fps=fps)
    rec_path = write_video(out / "reconstruction.mp4", rec[0].cpu(), fps=fps)
    result = Reconstruction(
        original_path=orig_path,
        reconstruction_path=rec_path,
        tokens=enc.indices[0].tolist(),
        psnr=float(psnr(rec, x)[0]),
        ssim=float(ssim(rec, x)[0]),
        per_frame_psnr=[round(float(v), 3) for v in per_frame_psnr(rec, x)[0]],
        encode_ms=1000 * (t1 - t0),
        decode_ms=1000 * (t2 - t1),
    )
    result.metrics = {
        "psnr_db": round(result.psnr, 3),
        "ssim": round(result.ssim, 4),
        "per_frame_psnr_db": result.per_frame_psnr,
        "encode_ms": round(result.encode_ms, 1),
        "decode_ms": round(result.decode_ms, 1),
        "num_tokens": cfg.num_tokens,
        "codebook_size": cfg.codebook_size,
        "tokens": result.tokens,
    }
    return result
