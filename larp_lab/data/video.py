"""Video reading and writing with PyAV only (no ffmpeg binary, no torchvision).

Reading decodes only what is needed: it seeks to the start time, converts each kept frame straight
to a small RGB image (``frame.reformat`` scales in libswscale before any array exists), and stops
as soon as T frames are collected, so a long or huge clip costs about as much as the frames used.
Every limit is configurable through :class:`VideoLimits`; breaking one raises
:class:`VideoError` with one sentence saying what is wrong.

Clips shorter than requested are **looped** by default (``short="loop"``: frames repeat from the
first kept frame), or padded by repeating the last frame (``short="pad"``), or refused
(``short="error"``).

Writing produces browser-playable H.264 MP4 (yuv420p, even sizes) or GIF.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["VideoError", "VideoLimits", "VideoInfo", "probe_video", "read_video", "write_video", "to_uint8_frames"]


class VideoError(ValueError):
    """A video cannot be read or written; the message is one sentence for the user."""


@dataclass(frozen=True)
class VideoLimits:
    """Limits applied before and during decoding (all configurable)."""

    max_file_bytes: int = 2 * 1024**3  #: refuse larger files
    max_pixels: int = 7680 * 4320  #: refuse streams with larger frames (8K)
    max_duration_s: float = 4 * 3600.0  #: refuse longer streams (when the container says)
    max_decoded_frames: int = 20_000  #: stop decoding after this many frames (endless streams)


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int | None  #: from the container; None when unknown (e.g. WebM)
    duration_s: float | None
    codec: str


def _open(path: str | os.PathLike, limits: VideoLimits):
    import av

    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file.")
    if not p.is_file():
        raise VideoError(f"{p}: not a regular file.")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"{p}: the file is empty.")
    if size > limits.max_file_bytes:
        raise VideoError(f"{p}: the file is {size / 1e6:.0f} MB, above the limit of {limits.max_file_bytes / 1e6:.0f} MB.")
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except Exception as exc:  # av.error.* (invalid data, unknown format, ...)
        raise VideoError(f"{p}: not a readable video ({type(exc).__name__}).") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: the file has no video stream (audio-only or not a video).")
    return container, container.streams.video[0]


def _info(container, stream, path) -> VideoInfo:
    cc = stream.codec_context
    w, h = int(cc.width or 0), int(cc.height or 0)
    if w <= 0 or h <= 0:
        raise VideoError(f"{path}: the video stream has no frame size.")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000.0
    n = int(stream.frames) if stream.frames else None
    return VideoInfo(w, h, fps if fps > 0 and math.isfinite(fps) else 0.0, n, duration, cc.name or "?")


def probe_video(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Container-level facts about a video, without decoding frames."""
    container, stream = _open(path, limits)
    try:
        return _info(container, stream, path)
    finally:
        container.close()


def _target_size(w: int, h: int, size: int | None) -> tuple[int, int]:
    """Resize so the short side is ``size`` (keeping the aspect ratio); (w, h)."""
    if size is None:
        return w, h
    if w <= h:
        return size, max(size, round(h * size / w))
    return max(size, round(w * size / h)), size


def read_video(
    path: str | os.PathLike,
    num_frames: int = 16,
    *,
    size: int | None = None,
    crop: Literal["center", "none"] = "center",
    stride: int = 1,
    fps: float | None = None,
    start_s: float = 0.0,
    short: Literal["loop", "pad", "error"] = "loop",
    limits: VideoLimits = VideoLimits(),
) -> Tensor:
    """Read ``num_frames`` frames as float32 (3, T, H, W) in [-1, 1].

    Args:
        size: resize the short side to ``size`` and (``crop="center"``) centre-crop to size x size.
        stride: keep every ``stride``-th decoded frame (ignored when ``fps`` is given).
        fps: sample at this frame rate instead (by timestamps; robust to variable frame rate).
        start_s: start time in seconds (seeks to the keyframe before it, then decodes forward).
        short: what to do when the clip has fewer frames than needed (see module docstring).
    """
    if num_frames < 1:
        raise VideoError("num_frames must be at least 1.")
    if stride < 1:
        raise VideoError("stride must be at least 1.")
    container, stream = _open(path, limits)
    try:
        info = _info(container, stream, path)
        if info.width * info.height > limits.max_pixels:
            raise VideoError(
                f"{path}: frames of {info.width}x{info.height} exceed the limit of {limits.max_pixels} pixels."
            )
        if info.duration_s is not None and info.duration_s > limits.max_duration_s:
            raise VideoError(
                f"{path}: the video lasts {info.duration_s:.0f} s, above the limit of {limits.max_duration_s:.0f} s."
            )
        tw, th = _target_size(info.width, info.height, size)
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 1_000_000)
        if start_s > 0:
            container.seek(int(start_s / tb), stream=stream, backward=True, any_frame=False)
        frames: list[np.ndarray] = []
        decoded = 0
        next_t = start_s
        kept_idx = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > limits.max_decoded_frames:
                    raise VideoError(f"{path}: decoded {limits.max_decoded_frames} frames without finishing; giving up.")
                t = float(frame.pts * tb) if frame.pts is not None else None
                if t is not None and t < start_s - 1e-6:
                    continue
                if fps is not None:
                    if t is None:
                        raise VideoError(f"{path}: frames carry no timestamps, so fps sampling is impossible.")
                    if t + 1e-6 < next_t:
                        continue
                    next_t += 1.0 / fps
                else:
                    keep = kept_idx % stride == 0
                    kept_idx += 1
                    if not keep:
                        continue
                rgb = frame.reformat(width=tw, height=th, format="rgb24").to_ndarray()
                frames.append(rgb)
                if len(frames) == num_frames:
                    break
        except VideoError:
            raise
        except Exception as exc:
            if not frames:
                raise VideoError(f"{path}: the video data is corrupt and no frame could be decoded ({type(exc).__name__}).") from None
            # a corrupt tail: keep what was decoded
    finally:
        container.close()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded after {start_s:.2f} s.")
    if len(frames) < num_frames:
        if short == "error":
            raise VideoError(f"{path}: only {len(frames)} frames available, {num_frames} needed.")
        if short == "loop":
            frames = [frames[i % len(frames)] for i in range(num_frames)]
        else:
            frames = frames + [frames[-1]] * (num_frames - len(frames))
    arr = np.stack(frames)  # (T, h, w, 3) uint8
    if size is not None and crop == "center":
        y0 = (arr.shape[1] - size) // 2
        x0 = (arr.shape[2] - size) // 2
        arr = arr[:, y0 : y0 + size, x0 : x0 + size]
    video = torch.from_numpy(np.ascontiguousarray(arr)).permute(3, 0, 1, 2).float()  # (3, T, H, W)
    return video / 127.5 - 1.0


def to_uint8_frames(video: Tensor | np.ndarray) -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] (or (T, H, W, 3) uint8) -> (T, H, W, 3) uint8."""
    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise VideoError(f"uint8 frames must be (T, H, W, 3); got {video.shape}")
        return video
    v = torch.as_tensor(video).detach().float().cpu()
    if v.ndim != 4 or v.shape[0] != 3:
        raise VideoError(f"video must be (3, T, H, W) in [-1, 1]; got {tuple(v.shape)}")
    v = ((v.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).contiguous().numpy()


def write_video(path: str | os.PathLike, video: Tensor | np.ndarray, fps: float = 8.0, *, crf: int = 18) -> Path:
    """Write (3, T, H, W) in [-1, 1] (or (T, H, W, 3) uint8) as H.264 MP4 (yuv420p) or GIF, by suffix.

    Odd sizes are padded by one pixel (edge-replicated) so H.264 yuv420p accepts them. The file is
    written next to its destination and renamed into place.
    """
    import av

    frames = to_uint8_frames(video)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise VideoError(f"{path}: only .mp4 and .gif outputs are supported.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    T, H, W, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1000)
    try:
        with av.open(str(tmp), mode="w") as out:
            if suffix == ".mp4":
                if H % 2 or W % 2:
                    frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
                    T, H, W, _ = frames.shape
                s = out.add_stream("libx264", rate=rate)
                s.pix_fmt = "yuv420p"
                s.options = {"crf": str(crf), "preset": "veryfast"}
            else:
                s = out.add_stream("gif", rate=rate)
                s.pix_fmt = "rgb8"
            s.width, s.height = W, H
            for f in frames:
                frame = av.VideoFrame.from_ndarray(f, format="rgb24")
                for packet in s.encode(frame):
                    out.mux(packet)
            for packet in s.encode():
                out.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
