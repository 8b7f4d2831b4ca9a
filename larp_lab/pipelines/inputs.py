"""Clips in: a video file read the way a tokenizer sees it, with a record of what was taken from it.

A tokenizer sees only ``frame_num`` frames of ``input_size`` x ``input_size``: :func:`load_clip`
seeks to ``start_time``, keeps ``frames`` frames (every ``stride``-th, or sampled at ``fps``),
resizes the short side to ``size`` and takes the centre square. :class:`ClipSource` says exactly
that (which seconds, how many distinct frames, the file's size and the crop window), so callers can
tell the user what the model was given.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.video import VideoError, VideoLimits, _target_size, probe_video, read_video

DEFAULT_LIMITS = VideoLimits()  #: the library's limits on files read (the app passes stricter ones)


@dataclass(frozen=True)
class ClipSource:
    """What was taken from a video file; the model sees only this."""

    path: str  #: the file read
    start_s: float  #: start time (seconds from the first frame)
    num_frames: int  #: frames given to the model (T)
    frames_decoded: int  #: distinct frames read from the file (fewer than T: the clip was looped)
    stride: int  #: every ``stride``-th frame was kept (when ``sample_fps`` is None)
    sample_fps: float | None  #: frames were sampled at this rate instead of by stride
    source_fps: float  #: the file's frame rate (0 when the container does not say)
    source_size: tuple[int, int]  #: (width, height) of the file's frames
    resized_size: tuple[int, int]  #: (width, height) after resizing the short side to the crop size
    crop: tuple[int, int, int, int]  #: (x0, y0, width, height) of the centre window in the resized frame
    duration_s: float | None  #: length of the file (None when the container does not say)

    @property
    def looped(self) -> bool:
        """True when the file had fewer frames than T after ``start_s`` (they were repeated)."""
        return self.frames_decoded < self.num_frames

    @property
    def rate(self) -> float:
        """Frames per second of the clip the model saw (0 when unknown)."""
        if self.sample_fps:
            return self.sample_fps
        return self.source_fps / self.stride if self.source_fps else 0.0

    @property
    def end_s(self) -> float | None:
        """End of the span of the file that was used (None when the frame rate is unknown)."""
        return self.start_s + self.frames_decoded / self.rate if self.rate else None

    def describe(self) -> str:
        """One line for the user, e.g. ``16 frames (0.00-0.67 s, every frame at 24 fps) of clip.mp4;
        1280x720 resized to 57x32, centre crop 32x32``."""
        name = Path(self.path).name
        if self.sample_fps:
            how = f"sampled at {self.sample_fps:g} fps"
        else:
            how = "every frame" if self.stride == 1 else f"one frame in {self.stride}"
            if self.source_fps:
                how += f" at {self.source_fps:g} fps"
        span = f"{self.start_s:.2f}-{self.end_s:.2f} s" if self.end_s is not None else f"from {self.start_s:.2f} s"
        text = f"{self.num_frames} frames ({span}, {how}) of {name}"
        if self.looped:
            text += f" (only {self.frames_decoded} there: looped)"
        (sw, sh), (rw, rh), (_, _, cw, ch) = self.source_size, self.resized_size, self.crop
        resized = "" if (rw, rh) == (sw, sh) else f" resized to {rw}x{rh},"
        crop = "" if (cw, ch) == (rw, rh) else f" centre crop {cw}x{ch}"
        return f"{text}; {sw}x{sh}{resized}{crop}".rstrip(",")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``looped``, ``end_s`` and ``description``."""
        return {**asdict(self), "looped": self.looped, "end_s": self.end_s, "description": self.describe()}


def _period(video: Tensor) -> int:
    """Smallest p such that frame i equals frame i % p for every i (video (3, T, H, W))."""
    T = video.shape[1]
    for p in range(1, T):
        if all(torch.equal(video[:, i], video[:, i % p]) for i in range(p, T)):
            return p
    return T


def load_clip(
    path: str | os.PathLike,
    *,
    frames: int,
    size: int,
    start_time: float = 0.0,
    stride: int = 1,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> tuple[Tensor, ClipSource]:
    """Read ``frames`` frames from ``start_time`` at a ``size`` x ``size`` centre crop.

    Returns:
        the clip, float32 (1, 3, frames, size, size) in [-1, 1], and what was taken from the file.
    Raises:
        VideoError (one sentence) for unreadable files, a start time outside the clip, or a broken limit.
    """
    if not (isinstance(start_time, (int, float)) and math.isfinite(start_time) and start_time >= 0):
        raise VideoError(f"the start time must be a number of seconds >= 0, got {start_time!r}.")
    info = probe_video(path, limits)
    if start_time > 0 and info.duration_s and start_time >= info.duration_s:
        raise VideoError(f"{Path(path).name} lasts {info.duration_s:.2f} s: a start time of {start_time:g} s is past its end.")
    kwargs = dict(size=size, stride=stride, fps=fps, start_s=float(start_time), limits=limits)
    try:
        video = read_video(path, frames, short="error", **kwargs)  # (3, T, H, W)
        decoded = frames
    except VideoError:  # too few frames after start_time (or a real error, raised again just below)
        video = read_video(path, frames, short="loop", **kwargs)
        decoded = _period(video)
    rw, rh = _target_size(info.width, info.height, size)
    crop = ((rw - size) // 2, (rh - size) // 2, size, size)
    source = ClipSource(
        path=str(path), start_s=float(start_time), num_frames=frames, frames_decoded=decoded, stride=stride,
        sample_fps=fps, source_fps=info.fps, source_size=(info.width, info.height), resized_size=(rw, rh),
        crop=crop, duration_s=info.duration_s,
    )
    return video.unsqueeze(0), source


def as_clip_batch(
    clip: str | os.PathLike | Tensor,
    tok,
    *,
    start_time: float = 0.0,
    frames: int | None = None,
    size: int | None = None,
    stride: int = 1,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> tuple[Tensor, ClipSource | None]:
    """A path (read at ``frames`` x ``size``, by default the tokenizer's frame_num x input_size) or a
    tensor (3, T, H, W) / (B, 3, T, H, W) in [-1, 1] -> (float32 (B, 3, T, H, W) on the tokenizer's
    device, the file record or None for a tensor)."""
    c = tok.config
    if isinstance(clip, Tensor):
        if start_time:
            raise ValueError("start_time applies to video files; slice the tensor instead")
        x = clip.unsqueeze(0) if clip.ndim == 4 else clip
        tok.check_video(x)
        return x.float().to(tok.device), None
    if not isinstance(clip, (str, os.PathLike)):
        raise TypeError(f"a clip is a video file path or a tensor; got {type(clip).__name__}")
    x, source = load_clip(clip, frames=frames or c.frame_num, size=size or c.input_size, start_time=start_time,
                          stride=stride, fps=fps, limits=limits)
    return x.to(tok.device), source
