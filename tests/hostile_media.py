"""Hostile and unusual media files for the robustness tests, made here with PyAV (nothing downloaded).

    python tests/hostile_media.py OUTDIR     # writes every file into OUTDIR and prints a table

:data:`HOSTILE` lists every file: its name, how it is made and what reading it must give with the
library's default :class:`~larp_lab.data.video.VideoLimits` (``expect``: ``"ok"`` = a clip,
``"error"`` = a :class:`~larp_lab.data.video.VideoError` whose message contains ``match``,
``"either"`` = one of the two, never anything else) and with the app's stricter ``APP_LIMITS``
(``app_expect``/``app_match``, when different). Everything is deterministic (seeded RNGs, fixed
encoder settings); :func:`make_all` writes the files and returns how long each took.

Two files are large to *decode* but cheap to *make*:

* ``long_20min.mp4``: 20 minutes at 2 fps and 64x48 (2400 frames, a keyframe every 10 s), made
  with libx264 ``ultrafast``. Every frame carries its own number in three flat bands
  (:func:`long_clip_frame_number` reads it back), so a test can check that a seek lands on the
  right frame.
* ``huge_8k.mp4``: 300 frames of 7680x4320 (12.5 s at 24 fps). Encoding 300 8K frames with x264
  takes ~30 s on a slow 2-core machine, so one flat intra frame is encoded once (keyint=1, a
  complete IDR access unit) and its packet is muxed 300 times with increasing timestamps: a valid
  H.264 stream whose every frame is a full 8K decode (~50 MB of YUV each, 15 GB for the whole
  clip), made in under a second and ~29 MB on disk.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["Hostile", "HOSTILE", "UNICODE_NAME", "make_all", "long_clip_frame_number", "valid_mp4_bytes"]

UNICODE_NAME = "clip ünïcødé 视频.mp4"
LONG_FPS = 2
LONG_FRAMES = 20 * 60 * LONG_FPS  # 20 minutes
HUGE_W, HUGE_H, HUGE_FRAMES, HUGE_FPS = 7680, 4320, 300, 24


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------


def _write(path: Path, frames: Iterable[np.ndarray], *, codec: str = "libx264", pix_fmt: str = "yuv420p",
           fmt: str = "rgb24", rate: int = 10, pts: list[int] | None = None, time_base: Fraction | None = None,
           options: dict | None = None, container_options: dict | None = None) -> Path:
    """Encode ``frames`` (arrays in ``fmt``) with PyAV. ``pts`` (in ``time_base``) makes variable rate."""
    frames = iter(frames)
    first = next(frames)
    h, w = (first.shape[0] * 2 // 3, first.shape[1]) if fmt == "yuv420p" else first.shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if options:
            s.options = options
        if time_base is not None:
            s.time_base = s.codec_context.time_base = time_base
        for i, a in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(a, format=fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def _moving(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    """n RGB frames: a smooth gradient with a square moving across it, and a little seeded noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // max(w + h - 2, 1)], -1)
    out = []
    for t in range(n):
        f = base.copy()
        s = max(2, min(w, h) // 4)
        x0, y0 = (t * 3) % max(1, w - s), (t * 2) % max(1, h - s)
        f[y0 : y0 + s, x0 : x0 + s] = (240, 30, 60)
        f = f + rng.integers(-6, 7, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def valid_mp4_bytes(path: Path, n: int = 48, w: int = 64, h: int = 48, *, faststart: bool = False) -> bytes:
    """A small valid H.264 MP4 (moov at the end unless ``faststart``); returns its bytes."""
    _write(path, _moving(n, w, h), options={"preset": "ultrafast", "crf": "23", "g": "12"},
           container_options={"movflags": "faststart"} if faststart else None)
    return path.read_bytes()


# ----------------------------------------------------------------------------------------------
# Makers (each takes the destination path)
# ----------------------------------------------------------------------------------------------


def make_empty(p: Path) -> None:
    p.write_bytes(b"")


def make_truncated(p: Path) -> None:
    data = valid_mp4_bytes(p)  # moov at the end: the cut file has no index at all
    p.write_bytes(data[: len(data) // 2])


def make_truncated_faststart(p: Path) -> None:
    data = valid_mp4_bytes(p, faststart=True)  # index first: the frames before the cut decode
    p.write_bytes(data[: int(len(data) * 0.6)])


def _flip(data: bytes, lo: int, hi: int, count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    for pos in rng.integers(lo, hi, count):
        b[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def make_bitflip(p: Path) -> None:
    data = valid_mp4_bytes(p)
    n = len(data)
    p.write_bytes(_flip(data, n // 4, 3 * n // 4, 200, seed=1))  # 200 flipped bits in the frame data


def make_bitflip_header(p: Path) -> None:
    data = valid_mp4_bytes(p, faststart=True)
    p.write_bytes(_flip(data, 32, 1500, 40, seed=2))  # 40 flipped bits in the moov box (sizes, dimensions...)


def make_random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(3).bytes(200_000))


def make_text(p: Path) -> None:
    p.write_text("These are my holiday notes, saved as .mp4 by mistake.\n" * 40, encoding="utf-8")


def make_png(p: Path) -> None:
    from PIL import Image

    Image.fromarray(_moving(1, 40, 30)[0]).save(p, format="PNG")


def make_jpeg(p: Path) -> None:
    from PIL import Image

    Image.fromarray(_moving(1, 40, 30)[0]).save(p, format="JPEG")


def _audio(p: Path, codec: str, rate: int, samples: int, fmt: str, layout: str = "stereo") -> None:
    with av.open(str(p), "w") as out:
        s = out.add_stream(codec, rate=rate, layout=layout)
        t = np.arange(samples * 20) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(20):
            chunk = tone[i * samples : (i + 1) * samples]
            if fmt == "s16":  # packed: (1, samples * channels)
                a = (np.repeat(chunk, 2) * 32767).astype(np.int16)[None]
            else:  # planar float: (channels, samples)
                a = np.stack([chunk, chunk])
            frame = av.AudioFrame.from_ndarray(a, format=fmt, layout=layout)
            frame.sample_rate, frame.pts = rate, i * samples
            for pk in s.encode(frame):
                out.mux(pk)
        for pk in s.encode():
            out.mux(pk)


def make_audio_aac(p: Path) -> None:
    _audio(p, "aac", 44100, 1024, "fltp")


def make_audio_mp2(p: Path) -> None:
    _audio(p, "mp2", 44100, 1152, "s16")


def make_one_frame(p: Path) -> None:
    _write(p, _moving(1, 64, 48), options={"preset": "ultrafast"})


def make_two_frames(p: Path) -> None:
    _write(p, _moving(2, 64, 48), options={"preset": "ultrafast"})


def make_tiny(p: Path) -> None:
    _write(p, _moving(12, 8, 8), options={"preset": "ultrafast"})


def make_odd_tall(p: Path) -> None:  # 17 wide, 1031 tall: odd sizes need a codec without chroma subsampling
    _write(p, _moving(6, 17, 1031), codec="ffv1", pix_fmt="bgr0")


def make_wide(p: Path) -> None:  # 4000 wide, 16 tall: aspect 250:1
    _write(p, _moving(10, 4000, 16), options={"preset": "ultrafast"})


def make_gray_ffv1(p: Path) -> None:
    ramp = [np.tile(((np.arange(48) * 5 + 8 * t) % 256).astype(np.uint8)[None, :], (32, 1)) for t in range(10)]
    _write(p, ramp, codec="ffv1", pix_fmt="gray", fmt="gray")


def make_gray_x264(p: Path) -> None:
    ramp = [np.tile(((np.arange(48) * 5 + 8 * t) % 256).astype(np.uint8)[None, :], (32, 1)) for t in range(10)]
    _write(p, ramp, pix_fmt="gray", fmt="gray", options={"preset": "ultrafast"})


def _rgba(n: int, w: int, h: int) -> list[np.ndarray]:
    out = []
    for f in _moving(n, w, h):
        a = np.empty((h, w, 4), np.uint8)
        a[..., :3] = f
        a[..., 3] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        out.append(a)
    return out


def make_alpha_png_mov(p: Path) -> None:
    _write(p, _rgba(6, 40, 30), codec="png", pix_fmt="rgba", fmt="rgba")


def make_alpha_vp9_webm(p: Path) -> None:
    _write(p, _rgba(6, 40, 30), codec="libvpx-vp9", pix_fmt="yuva420p", fmt="rgba",
           options={"deadline": "realtime", "cpu-used": "8"})


def make_vfr(p: Path) -> None:
    pts = [0, 40, 80, 100, 120, 500, 540, 1000, 1040, 1500, 1510, 1520, 2600, 2640]  # ms: bursts and gaps
    _write(p, _moving(len(pts), 64, 48), pts=pts, time_base=Fraction(1, 1000), options={"preset": "ultrafast"})


def _number_bands(i: int, w: int, h: int) -> np.ndarray:
    """A flat gray frame of three vertical bands coding i = 60 a + 5 b + c (a < 40, b < 12, c < 5)."""
    a, b, c = i // 60, (i // 5) % 12, i % 5
    f = np.empty((h, w), np.uint8)
    third = w // 3
    f[:, :third] = 16 + 5 * a
    f[:, third : 2 * third] = 16 + 18 * b
    f[:, 2 * third :] = 16 + 45 * c
    return f


def long_clip_frame_number(frame_rgb: np.ndarray) -> int:
    """The frame number coded by :func:`_number_bands`, from a (H, W, 3) uint8 frame read back."""
    h, w = frame_rgb.shape[:2]
    g = frame_rgb[..., 1].astype(float)
    third = w // 3
    m = [float(np.median(g[:, x0 + third // 4 : x0 + 3 * third // 4])) for x0 in (0, third, 2 * third)]
    y = [v * 219 / 255 for v in m]  # full-range RGB back to limited-range luma offsets
    a, b, c = round(y[0] / 5), round(y[1] / 18), round(y[2] / 45)
    return 60 * a + 5 * b + c


def make_long(p: Path) -> None:
    w, h = 96, 48
    frames = (np.concatenate([_number_bands(i, w, h), np.full((h // 2, w), 128, np.uint8)]) for i in range(LONG_FRAMES))
    _write(p, frames, fmt="yuv420p", rate=LONG_FPS,
           options={"preset": "ultrafast", "qp": "0", "g": str(10 * LONG_FPS)})


def make_huge(p: Path) -> None:
    y = np.full((HUGE_H, HUGE_W), 90, np.uint8)
    y[HUGE_H // 4 : HUGE_H // 2, HUGE_W // 4 : HUGE_W // 2] = 200
    yuv = np.concatenate([y, np.full((HUGE_H // 2, HUGE_W), 128, np.uint8)])
    tb = Fraction(1, HUGE_FPS)
    with av.open(str(p), "w") as out:
        s = out.add_stream("libx264", rate=HUGE_FPS)
        s.width, s.height, s.pix_fmt, s.time_base = HUGE_W, HUGE_H, "yuv420p", tb
        s.options = {"preset": "ultrafast", "crf": "30", "x264-params": "keyint=1:bframes=0"}
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = 0, tb
        packets = list(s.encode(frame)) + list(s.encode())
        assert len(packets) == 1 and packets[0].is_keyframe
        data = bytes(packets[0])
        for i in range(HUGE_FRAMES):
            pk = av.Packet(data)
            pk.pts = pk.dts = i
            pk.duration, pk.time_base, pk.stream, pk.is_keyframe = 1, tb, s, True
            out.mux(pk)


def make_unicode(p: Path) -> None:
    _write(p, _moving(10, 64, 48), options={"preset": "ultrafast"})


# ----------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    key: str
    filename: str
    make: Callable[[Path], None]
    expect: str  #: "ok", "error" or "either" with the library's default VideoLimits
    match: str = ""  #: a substring of the VideoError message when expect == "error"
    app_expect: str | None = None  #: what the app (APP_LIMITS) gives, when different
    app_match: str = ""

    @property
    def expect_app(self) -> tuple[str, str]:
        return (self.app_expect, self.app_match) if self.app_expect else (self.expect, self.match)


_UNREADABLE = "not a readable video"

HOSTILE: list[Hostile] = [
    Hostile("empty", "empty.mp4", make_empty, "error", "the file is empty"),
    Hostile("truncated", "truncated.mp4", make_truncated, "error", _UNREADABLE),
    Hostile("truncated_faststart", "truncated_faststart.mp4", make_truncated_faststart, "ok"),
    Hostile("bitflip", "bitflip.mp4", make_bitflip, "either"),
    Hostile("bitflip_header", "bitflip_header.mp4", make_bitflip_header, "either"),
    Hostile("random_bytes", "random.mp4", make_random, "error", _UNREADABLE),
    Hostile("text", "notes.mp4", make_text, "error", _UNREADABLE),
    Hostile("png_renamed", "image_png.mp4", make_png, "error", "is a still image (png), not a video"),
    Hostile("jpeg_renamed", "image_jpeg.mp4", make_jpeg, "error", "is a still image (jpeg), not a video"),
    Hostile("audio_aac", "audio_only.m4a", make_audio_aac, "error", "no video stream"),
    Hostile("audio_mp2", "audio_only_mp2.mp4", make_audio_mp2, "error", "no video stream"),
    Hostile("one_frame", "one_frame.mp4", make_one_frame, "ok"),
    Hostile("two_frames", "two_frames.mp4", make_two_frames, "ok"),
    Hostile("tiny_8x8", "tiny_8x8.mp4", make_tiny, "ok"),
    Hostile("odd_17x1031", "odd_17x1031.mkv", make_odd_tall, "ok"),
    Hostile("wide_4000x16", "wide_4000x16.mp4", make_wide, "ok"),
    Hostile("gray_ffv1", "gray_ffv1.mkv", make_gray_ffv1, "ok"),
    Hostile("gray_x264", "gray_x264.mp4", make_gray_x264, "ok"),
    Hostile("alpha_png_mov", "alpha_png.mov", make_alpha_png_mov, "ok"),
    Hostile("alpha_vp9_webm", "alpha_vp9.webm", make_alpha_vp9_webm, "ok"),
    Hostile("vfr", "vfr.mp4", make_vfr, "ok"),
    Hostile("long_20min", "long_20min.mp4", make_long, "ok"),
    Hostile("huge_8k", "huge_8k.mp4", make_huge, "ok", app_expect="error",
            app_match="frames of 7680x4320 exceed the limit of 8294400 pixels"),
    Hostile("unicode_name", UNICODE_NAME, make_unicode, "ok"),
]


def make_all(outdir: str | Path, keys: Iterable[str] | None = None) -> tuple[dict[str, Path], dict[str, float]]:
    """Write the files (all, or those in ``keys``) into ``outdir``; ({key: path}, {key: seconds})."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    wanted = set(keys) if keys is not None else None
    paths, seconds = {}, {}
    for h in HOSTILE:
        if wanted is not None and h.key not in wanted:
            continue
        p = outdir / h.filename
        t0 = time.perf_counter()
        h.make(p)
        seconds[h.key] = time.perf_counter() - t0
        paths[h.key] = p
    return paths, seconds


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/hostile_media.py OUTDIR", file=sys.stderr)
        return 2
    paths, seconds = make_all(argv[0])
    for h in HOSTILE:
        p = paths[h.key]
        print(f"{h.key:22s} {p.stat().st_size:>11,d} B  {seconds[h.key]:6.2f} s  {h.expect:6s}  {p.name}")
    print(f"total {sum(seconds.values()):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
