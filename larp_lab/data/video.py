"""Video reading and writing with PyAV only (no ffmpeg binary, no torchvision), and contact sheets.

Reading decodes only what is needed: it seeks to the start time, converts each kept frame straight
to a small RGB image (``frame.reformat`` scales in libswscale before any array exists), crops it
at once, and stops as soon as T frames are collected, so a long or huge clip costs about as much as
the frames used and never sits in memory whole. Every limit is configurable through
:class:`VideoLimits`; breaking one raises :class:`VideoError` with one sentence saying what is wrong.

Any pixel format FFmpeg decodes is accepted (grayscale, alpha, 10-bit, odd sizes...): frames are
converted to RGB (alpha is dropped). Variable frame rate is fine: ``start_s`` and ``fps`` work on
timestamps, measured from the stream's first timestamp. Refused with one sentence: empty files,
audio-only files, still images saved under a video name (a PNG/JPEG/WebP... renamed ``.mp4``),
and anything FFmpeg cannot parse.

Clips shorter than requested are **looped** by default (``short="loop"``: frames repeat from the
first kept frame), or padded by repeating the last frame (``short="pad"``), or refused
(``short="error"``).

Training augmentation is explicit and reproducible: ``crop="random"`` and ``flip=True`` draw from
the ``rng`` argument (a ``numpy.random.Generator``), never from global random state, in a fixed
order (crop row, crop column, then flip), so a dataset item is a pure function of its seed.

Writing produces browser-playable H.264 MP4 (yuv420p, even sizes) or GIF. :func:`side_by_side`,
:func:`video_grid` and :func:`save_frame_grid` lay clips out for viewing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "repeat_last_frame",
    "VideoError",
    "VideoLimits",
    "VideoInfo",
    "probe_video",
    "count_frames",
    "read_video",
    "write_video",
    "to_uint8_frames",
    "side_by_side",
    "video_grid",
    "save_frame_grid",
]


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


#: Frame-threaded decoding keeps about one decoded frame per thread in flight (FFmpeg's default is one
#: thread per core plus one), so the decoder's thread count is capped to keep those frames within this
#: many bytes: an 8K stream decodes on one thread, 1080p on up to MAX_DECODER_THREADS.
DECODER_MEMORY_BUDGET = 256 * 1024**2
MAX_DECODER_THREADS = 8


def _decoder_threads(width: int, height: int) -> int:
    """Decoder threads for frames of width x height (about 2.4 bytes per pixel per thread were
    measured for H.264 at 8K; 4 are assumed)."""
    per_thread = 4 * max(1, width) * max(1, height)
    return max(1, min(os.cpu_count() or 1, MAX_DECODER_THREADS, DECODER_MEMORY_BUDGET // per_thread))


#: FFmpeg demuxers that read single still images (``image2`` plus the ``*_pipe`` family).
_IMAGE_DEMUXERS = ("image2", "image2pipe")


def _still_image_kind(container) -> str | None:
    """The image type (``"png"``, ``"jpeg"``...) when the container is a still image, else None."""
    name = (container.format.name or "").split(",")[0]
    if name.endswith("_pipe") and name != "gif_pipe":  # a GIF may be animated: treated as a video
        return name[: -len("_pipe")]
    if name in _IMAGE_DEMUXERS:
        streams = container.streams.video
        return (streams[0].codec_context.name if streams else None) or "image"
    return None


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
    kind = _still_image_kind(container)
    if kind is not None:
        container.close()
        raise VideoError(f"{p} is a still image ({kind}), not a video.")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: the file has no video stream (audio-only or not a video).")
    return container, container.streams.video[0]


def _info(container, stream, path) -> VideoInfo:
    cc = stream.codec_context
    if cc is None:  # e.g. a corrupt codec tag: FFmpeg found a video stream but no decoder for it
        raise VideoError(f"{path}: the video stream uses an unknown or unsupported codec.")
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


def count_frames(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> int:
    """Number of frames of the first video stream.

    Taken from the container when it says (MP4, AVI, MOV); otherwise (WebM, MKV, GIF) the packets
    are counted by demuxing without decoding, which is cheap. Stops at ``limits.max_decoded_frames``.
    """
    container, stream = _open(path, limits)
    try:
        if stream.frames:
            return int(stream.frames)
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
                    if n > limits.max_decoded_frames:
                        raise VideoError(f"{path}: more than {limits.max_decoded_frames} frames; giving up counting.")
        except VideoError:
            raise
        except Exception as exc:
            if n == 0:
                raise VideoError(f"{path}: the video data is corrupt ({type(exc).__name__}).") from None
    finally:
        container.close()
    if n == 0:
        raise VideoError(f"{path}: the video stream holds no frames.")
    return n


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
    crop: Literal["center", "random", "none"] = "center",
    flip: bool = False,
    rng: np.random.Generator | None = None,
    stride: int = 1,
    fps: float | None = None,
    start_s: float = 0.0,
    short: Literal["loop", "pad", "error"] = "loop",
    limits: VideoLimits = VideoLimits(),
) -> Tensor:
    """Read ``num_frames`` frames as float32 (3, T, H, W) in [-1, 1].

    Args:
        size: resize the short side to ``size``, then crop to size x size (``crop="center"`` or
            ``"random"``) or keep the whole resized frame (``crop="none"``).
        crop: ``"random"`` places the size x size window uniformly at random (needs ``size`` and
            ``rng``); the same window is used for every frame.
        flip: mirror left-right with probability 1/2, drawn from ``rng`` (one draw per clip).
        rng: the only source of randomness (crop position first, then flip); required when
            ``crop="random"`` or ``flip=True``.
        stride: keep every ``stride``-th decoded frame (ignored when ``fps`` is given).
        fps: sample at this frame rate instead (by timestamps; robust to variable frame rate).
        start_s: start time in seconds from the first frame (seeks to the keyframe before it,
            then decodes forward).
        short: what to do when the clip has fewer frames than needed (see module docstring).
    """
    if num_frames < 1:
        raise VideoError("num_frames must be at least 1.")
    if stride < 1:
        raise VideoError("stride must be at least 1.")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise VideoError(f"fps must be a positive number, got {fps!r}.")
    if crop not in ("center", "random", "none"):
        raise VideoError(f"crop must be 'center', 'random' or 'none', got {crop!r}.")
    if crop == "random" and size is None:
        raise VideoError("crop='random' needs a size to crop to.")
    if (crop == "random" or flip) and rng is None:
        raise VideoError("crop='random' and flip=True need rng=numpy.random.default_rng(...) (no global randomness is used).")
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
        # the crop window (rows y0:y0+ch, cols x0:x0+cw) of every resized frame, decided up front
        y0, x0, ch, cw = 0, 0, th, tw
        if size is not None and crop != "none":
            ch = cw = size
            if crop == "center":
                y0, x0 = (th - size) // 2, (tw - size) // 2
            else:
                assert rng is not None
                y0 = int(rng.integers(0, th - size + 1))
                x0 = int(rng.integers(0, tw - size + 1))
        mirror = bool(flip) and bool(rng.random() < 0.5)  # type: ignore[union-attr]
        frames = _decode(container, stream, path, num_frames, (tw, th), (y0, x0, ch, cw),
                         stride=stride, fps=fps, start_s=start_s, limits=limits)
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
    arr = np.stack(frames)  # (T, H, W, 3) uint8
    if mirror:
        arr = arr[:, :, ::-1]
    video = torch.from_numpy(np.ascontiguousarray(arr)).permute(3, 0, 1, 2).float()  # (3, T, H, W)
    return video / 127.5 - 1.0


def _decode(
    container, stream, path, num_frames: int, target: tuple[int, int], window: tuple[int, int, int, int], *,
    stride: int, fps: float | None, start_s: float, limits: VideoLimits,
) -> list[np.ndarray]:
    """Decode up to ``num_frames`` kept frames, each resized to ``target`` (w, h) and cropped to
    ``window`` (y0, x0, h, w) at once; list of (h, w, 3) uint8."""
    tw, th = target
    y0, x0, ch, cw = window
    stream.thread_type = "AUTO"
    cc = stream.codec_context
    cc.thread_count = _decoder_threads(cc.width or 0, cc.height or 0)
    tb = stream.time_base or Fraction(1, 1_000_000)
    # times are measured from the first frame (MPEG-TS and some MKVs start far from 0); a negative
    # start (edit lists hiding encoder delay) is treated as 0, where the first shown frame lies
    t_first = max(float(stream.start_time * tb), 0.0) if stream.start_time is not None else 0.0
    if start_s > 0:
        try:
            container.seek(int((start_s + t_first) / tb), stream=stream, backward=True, any_frame=False)
        except Exception:  # a corrupt or unusable index: decode from where we are (earlier frames are skipped)
            pass
    frames: list[np.ndarray] = []
    decoded = 0
    next_t = start_s
    kept_idx = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            if decoded > limits.max_decoded_frames:
                raise VideoError(f"{path}: decoded {limits.max_decoded_frames} frames without finishing; giving up.")
            t = float(frame.pts * tb) - t_first if frame.pts is not None else None
            if t is not None and t < start_s - 1e-6:
                continue
            if fps is not None:
                if t is None:
                    raise VideoError(f"{path}: frames carry no timestamps, so fps sampling is impossible.")
                if t + 1e-6 < next_t:
                    continue
                next_t += 1.0 / fps
                while next_t <= t + 1e-6:  # a gap in a variable-rate stream: do not repeat frames
                    next_t += 1.0 / fps
            else:
                keep = kept_idx % stride == 0
                kept_idx += 1
                if not keep:
                    continue
            rgb = frame.reformat(width=tw, height=th, format="rgb24").to_ndarray()  # (th, tw, 3)
            frames.append(np.ascontiguousarray(rgb[y0 : y0 + ch, x0 : x0 + cw]))
            if len(frames) == num_frames:
                break
    except VideoError:
        raise
    except Exception as exc:
        if not frames:
            raise VideoError(f"{path}: the video data is corrupt and no frame could be decoded ({type(exc).__name__}).") from None
        # a corrupt tail: keep what was decoded
    return frames


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


# ----------------------------------------------------------------------------------------------
# Layouts for viewing: side by side, grids, PNG contact sheets
# ----------------------------------------------------------------------------------------------


def _as_clips(videos: Tensor | np.ndarray | Sequence[Tensor | np.ndarray], what: str) -> list[Tensor]:
    """A (3, T, H, W) clip, a (B, 3, T, H, W) batch or a list of clips -> list of float (3, T, H, W)."""
    if isinstance(videos, (Tensor, np.ndarray)):
        v = torch.as_tensor(videos)
        videos = [v] if v.ndim == 4 else list(v)
    clips = [torch.as_tensor(v).detach().float().cpu() for v in videos]
    if not clips:
        raise VideoError(f"{what}: no video given.")
    for i, c in enumerate(clips):
        if c.ndim != 4 or c.shape[0] != 3:
            raise VideoError(f"{what}: video {i} must be (3, T, H, W) in [-1, 1], got {tuple(c.shape)}.")
    return clips


def side_by_side(videos: Sequence[Tensor], gap: int = 2, pad_value: float = 1.0) -> Tensor:
    """Clips left to right with ``gap``-pixel separators (white by default).

    list of (3, T, H, W_i) in [-1, 1], same T and H -> (3, T, H, sum(W_i) + gap * (n - 1)).
    """
    clips = _as_clips(videos, "side_by_side")
    if gap < 0:
        raise VideoError(f"side_by_side: gap must be >= 0, got {gap}.")
    t, h = clips[0].shape[1:3]
    for i, c in enumerate(clips):
        if c.shape[1:3] != (t, h):
            raise VideoError(
                f"side_by_side: video {i} has {c.shape[1]} frames of height {c.shape[2]}, the first has {t} of height {h}."
            )
    parts: list[Tensor] = []
    for i, c in enumerate(clips):
        if i and gap:
            parts.append(torch.full((3, t, h, gap), pad_value))
        parts.append(c)
    return torch.cat(parts, dim=3)


def video_grid(videos: Sequence[Tensor], nrow: int = 4, gap: int = 2, pad_value: float = -1.0) -> Tensor:
    """Clips in a grid of ``nrow`` clips per row (as torchvision's ``make_grid``), black separators.

    list of n (3, T, H, W) in [-1, 1] (all the same shape) -> (3, T, r*H + (r-1)*gap, c*W + (c-1)*gap)
    with c = min(nrow, n) columns and r = ceil(n / c) rows; empty cells are ``pad_value``.
    """
    clips = _as_clips(videos, "video_grid")
    if nrow < 1:
        raise VideoError(f"video_grid: nrow must be at least 1, got {nrow}.")
    if gap < 0:
        raise VideoError(f"video_grid: gap must be >= 0, got {gap}.")
    shape = clips[0].shape
    for i, c in enumerate(clips):
        if c.shape != shape:
            raise VideoError(f"video_grid: video {i} is {tuple(c.shape)}, the first is {tuple(shape)}; all must match.")
    _, t, h, w = shape
    cols = min(nrow, len(clips))
    rows = math.ceil(len(clips) / cols)
    out = torch.full((3, t, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), pad_value)
    for k, c in enumerate(clips):
        r, q = divmod(k, cols)
        y, x = r * (h + gap), q * (w + gap)
        out[:, :, y : y + h, x : x + w] = c
    return out


def save_frame_grid(
    path: str | os.PathLike, video_or_list: Tensor | Sequence[Tensor], frames: int = 8, *, gap: int = 2
) -> Path:
    """Write a PNG contact sheet: one row per clip, ``frames`` evenly spaced frames per row.

    ``video_or_list``: (3, T, H, W), (B, 3, T, H, W) or a list of (3, T_i, H, W) in [-1, 1]
    (same H and W). The sheet is (rows*H + (rows-1)*gap, cols*W + (cols-1)*gap) RGB with white
    separators, cols = min(frames, longest T). Returns the path.
    """
    from PIL import Image

    clips = _as_clips(video_or_list, "save_frame_grid")
    if frames < 1:
        raise VideoError(f"save_frame_grid: frames must be at least 1, got {frames}.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise VideoError(f"{path}: save_frame_grid writes PNG files; use a .png name.")
    h, w = clips[0].shape[2:]
    for i, c in enumerate(clips):
        if c.shape[2:] != (h, w):
            raise VideoError(f"save_frame_grid: video {i} is {c.shape[3]}x{c.shape[2]}, the first is {w}x{h}.")
    cols = min(frames, max(c.shape[1] for c in clips))
    rows = []
    for c in clips:
        idx = np.linspace(0, c.shape[1] - 1, cols).round().astype(int)
        rows.append(side_by_side([c[:, i : i + 1] for i in idx], gap=gap))  # (3, 1, H, W')
    sheet = torch.cat([torch.cat([r, torch.ones(3, 1, gap, r.shape[3])], dim=2) for r in rows], dim=2)
    sheet = sheet[:, :, : sheet.shape[2] - gap] if gap else sheet
    img = to_uint8_frames(sheet)[0]  # (H', W', 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def repeat_last_frame(video: Tensor, keep: int) -> Tensor:
    """Keep the first ``keep`` frames of (B, C, T, H, W) clips and repeat the last kept frame up to T
    frames (the official frame-prediction conditioning, ``utils.repeat_to_m_frames``)."""
    T = video.shape[2]
    if not 1 <= keep <= T:
        raise ValueError(f"keep must be in [1, {T}], got {keep}")
    idx = torch.arange(T, device=video.device).clamp(max=keep - 1)
    return video[:, :, idx]
