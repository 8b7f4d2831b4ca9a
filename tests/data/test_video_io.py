"""Video I/O with PyAV: reading real and broken files, limits, sampling, augmentation, layouts.

Most checks use small lossless clips written here whose pixels *encode* what was read: red = frame
number (8 * t + 4), green = column (5 * x), blue = row (5 * y). Decoding FFV1 (bgr0) is exact, so
the test can recover which frames, which crop window and which flip read_video produced.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from larp_lab.data.video import (
    VideoError,
    VideoLimits,
    count_frames,
    probe_video,
    read_video,
    save_frame_grid,
    side_by_side,
    to_uint8_frames,
    video_grid,
    write_video,
)

SHARED_CLIP = Path("/work/shared/clips/bigbuckbunny.mp4")
CLIP = SHARED_CLIP if SHARED_CLIP.exists() else REPO / "examples" / "bigbuckbunny_128.mp4"


# ----------------------------------------------------------------------------------------------
# Writers for test files
# ----------------------------------------------------------------------------------------------


def coded_frame(t: int, w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8: R = 8t + 4, G = 5x, B = 5y."""
    f = np.empty((h, w, 3), np.uint8)
    f[..., 0] = 8 * t + 4
    f[..., 1] = (5 * np.arange(w))[None, :]
    f[..., 2] = (5 * np.arange(h))[:, None]
    return f


def write_frames(path: Path, frames: list[np.ndarray], *, codec: str = "ffv1", pix_fmt: str = "bgr0",
                 fmt: str = "rgb24", rate: int = 10, pts_ms: list[int] | None = None, options=None) -> Path:
    """Write frames with PyAV; ``pts_ms`` gives explicit timestamps (variable frame rate)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if pts_ms is not None:
            s.time_base = Fraction(1, 1000)
        for i, a in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(a, format=fmt)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def coded_clip(path: Path, n: int = 30, w: int = 48, h: int = 32, rate: int = 10) -> Path:
    return write_frames(path, [coded_frame(t, w, h) for t in range(n)], rate=rate)


def frame_ids(video: torch.Tensor) -> list[int]:
    """Frame numbers encoded in the red channel of a (3, T, H, W) clip read back."""
    u8 = to_uint8_frames(video)  # (T, H, W, 3)
    return [int(round((float(f[..., 0].mean()) - 4) / 8)) for f in u8]


# ----------------------------------------------------------------------------------------------
# The real clip
# ----------------------------------------------------------------------------------------------


def test_real_clip_probe_count_and_read():
    info = probe_video(CLIP)
    assert info.codec == "h264" and info.fps > 0 and info.width >= 128 and info.height >= 128
    n = count_frames(CLIP)
    assert n == info.num_frames and n >= 64
    v = read_video(CLIP, 8, size=64)
    assert v.shape == (3, 8, 64, 64) and v.dtype == torch.float32
    assert -1.0 <= float(v.min()) < float(v.max()) <= 1.0
    full = read_video(CLIP, 2, size=64, crop="none")  # short side 64, aspect kept
    assert full.shape[2] == 64 and full.shape[3] == round(info.width * 64 / info.height)
    assert torch.equal(v[:, :2], full[:, :, :, (full.shape[3] - 64) // 2 :][..., :64])


def test_real_clip_seek_matches_decoding_from_the_start():
    info = probe_video(CLIP)
    k = 20
    ahead = read_video(CLIP, k + 4, size=32)
    seeked = read_video(CLIP, 4, size=32, start_s=k / info.fps)
    assert torch.equal(seeked, ahead[:, k:])


# ----------------------------------------------------------------------------------------------
# Broken and unusual files
# ----------------------------------------------------------------------------------------------


def _png(path: Path) -> Path:
    Image.fromarray(np.full((9, 11, 3), 200, np.uint8)).save(path, format="PNG")
    return path


def _jpeg(path: Path) -> Path:
    Image.fromarray(np.full((9, 11, 3), 100, np.uint8)).save(path, format="JPEG")
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=44100)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


BROKEN = {
    "missing": (lambda d: d / "nope.mp4", "no such file"),
    "folder": (lambda d: _folder(d / "dir.mp4"), "not a regular file"),
    "empty": (lambda d: _bytes(d / "e.mp4", b""), "the file is empty"),
    "random bytes": (lambda d: _bytes(d / "r.mp4", np.random.default_rng(0).bytes(5000)), "not a readable video"),
    "text": (lambda d: _bytes(d / "t.mp4", b"just some notes\n"), "not a readable video"),
    "png renamed": (lambda d: _png(d / "p.mp4"), "is a still image (png), not a video."),
    "jpeg renamed": (lambda d: _jpeg(d / "j.mp4"), "is a still image (jpeg), not a video."),
    "audio only": (lambda d: _audio_only(d / "a.mp4"), "no video stream"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_files_are_refused_with_one_sentence(kind, tmp_path):
    make, expect = BROKEN[kind]
    path = make(tmp_path)
    for call in (lambda: read_video(path, 4), lambda: probe_video(path)):
        with pytest.raises(VideoError) as err:
            call()
        msg = str(err.value)
        assert expect in msg and "\n" not in msg and msg.endswith(".")


def test_truncated_files(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(40)]
    # moov at the end (PyAV's default): a cut file has no index at all
    src = write_frames(tmp_path / "a.mp4", frames, codec="libx264", pix_fmt="yuv420p")
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="not a readable video"):
        read_video(cut, 4)
    # moov first (faststart): the frames before the cut are usable, the rest is missing
    src = write_frames(tmp_path / "b.mp4", frames, codec="libx264", pix_fmt="yuv420p",
                       options={"movflags": "faststart"})
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError, match=r"only \d+ frames available, 40 needed"):
        read_video(cut, 40, short="error")
    assert read_video(cut, 40).shape == (3, 40, 32, 32)
    cut.write_bytes(data[:1500])  # header only
    with pytest.raises(VideoError, match="no frame could be decoded"):
        read_video(cut, 4)


def test_grayscale_becomes_rgb(tmp_path):
    ramp = np.tile((np.arange(24, dtype=np.uint8) * 10)[None, :], (16, 1))  # (16, 24)
    path = write_frames(tmp_path / "g.mkv", [ramp] * 3, pix_fmt="gray", fmt="gray")
    v = read_video(path, 3)
    assert v.shape == (3, 3, 16, 24)
    u8 = to_uint8_frames(v)
    assert np.array_equal(u8[..., 0], u8[..., 1]) and np.array_equal(u8[..., 1], u8[..., 2])
    assert np.array_equal(u8[0, :, :, 0], ramp)


@pytest.mark.parametrize("name,codec,pix_fmt", [("a.webm", "libvpx-vp9", "yuva420p"), ("a.mov", "png", "rgba")])
def test_alpha_is_dropped(name, codec, pix_fmt, tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = (200, 40, 90)
    rgba[..., 3] = np.linspace(0, 255, 30, dtype=np.uint8)[None, :]
    path = write_frames(tmp_path / name, [rgba] * 4, codec=codec, pix_fmt=pix_fmt, fmt="rgba")
    v = read_video(path, 4)
    assert v.shape == (3, 4, 20, 30)
    mean = to_uint8_frames(v).reshape(-1, 3).mean(0)
    assert np.allclose(mean, (200, 40, 90), atol=6)


def test_odd_sizes(tmp_path):
    path = coded_clip(tmp_path / "odd.mkv", n=5, w=33, h=21)
    assert read_video(path, 5).shape == (3, 5, 21, 33)
    assert read_video(path, 5, size=16).shape == (3, 5, 16, 16)
    assert read_video(path, 5, size=16, crop="none").shape == (3, 5, 16, round(33 * 16 / 21))
    write_video(tmp_path / "odd.mp4", read_video(path, 5))  # H.264 needs even sizes: padded
    assert read_video(tmp_path / "odd.mp4", 5).shape == (3, 5, 22, 34)


def test_variable_frame_rate_sampling_by_timestamps(tmp_path):
    pts = [0, 40, 80, 100, 120, 500, 540, 1000, 1040, 1500]  # bursts and gaps, in ms
    path = write_frames(tmp_path / "vfr.mkv", [coded_frame(t, 16, 16) for t in range(len(pts))], pts_ms=pts)
    assert frame_ids(read_video(path, 10, short="error")) == list(range(10))
    # 4 fps grid 0, 0.25, 0.5, 0.75, 1.0, ...: first frame at or after each grid point, never repeated
    assert frame_ids(read_video(path, 4, fps=4.0, short="error")) == [0, 5, 7, 9]
    assert frame_ids(read_video(path, 3, fps=4.0, start_s=0.45, short="error")) == [5, 7, 9]


@pytest.mark.parametrize("n", [1, 2])
def test_one_and_two_frame_clips(n, tmp_path):
    path = coded_clip(tmp_path / f"c{n}.mkv", n=n)
    assert count_frames(path) == n
    assert frame_ids(read_video(path, 5)) == [i % n for i in range(5)]  # loop
    assert frame_ids(read_video(path, 5, short="pad")) == list(range(n)) + [n - 1] * (5 - n)
    with pytest.raises(VideoError, match=f"only {n} frames available, 5 needed"):
        read_video(path, 5, short="error")


def test_webm_frame_count_by_demuxing(tmp_path):
    path = write_frames(tmp_path / "c.webm", [coded_frame(t, 16, 16) for t in range(7)], codec="libvpx-vp9",
                        pix_fmt="yuv420p")
    assert probe_video(path).num_frames is None  # WebM does not say
    assert count_frames(path) == 7


# ----------------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------------


def test_limits(tmp_path):
    path = coded_clip(tmp_path / "c.mkv", n=30)
    size = path.stat().st_size
    with pytest.raises(VideoError, match="above the limit"):
        read_video(path, 4, limits=VideoLimits(max_file_bytes=size - 1))
    with pytest.raises(VideoError, match="exceed the limit of 1000 pixels"):
        read_video(path, 4, limits=VideoLimits(max_pixels=1000))
    with pytest.raises(VideoError, match="lasts 3 s, above the limit of 2 s"):
        read_video(path, 4, limits=VideoLimits(max_duration_s=2.0))
    with pytest.raises(VideoError, match="decoded 10 frames without finishing"):
        read_video(path, 12, limits=VideoLimits(max_decoded_frames=10))
    assert read_video(path, 10, limits=VideoLimits(max_decoded_frames=10)).shape[1] == 10
    with pytest.raises(VideoError, match="more than 10 frames"):
        count_frames(write_frames(tmp_path / "c.webm", [coded_frame(t, 16, 16) for t in range(12)],
                                  codec="libvpx-vp9", pix_fmt="yuv420p"), VideoLimits(max_decoded_frames=10))


# ----------------------------------------------------------------------------------------------
# Temporal sampling
# ----------------------------------------------------------------------------------------------


def test_start_stride_fps_loop_pad(tmp_path):
    path = coded_clip(tmp_path / "c.mkv", n=30, rate=10)
    assert frame_ids(read_video(path, 4, start_s=1.0)) == [10, 11, 12, 13]
    assert frame_ids(read_video(path, 4, start_s=1.04)) == [11, 12, 13, 14]  # first frame at or after
    assert frame_ids(read_video(path, 4, stride=3)) == [0, 3, 6, 9]
    assert frame_ids(read_video(path, 4, stride=3, start_s=0.5)) == [5, 8, 11, 14]
    assert frame_ids(read_video(path, 4, fps=2.5)) == [0, 4, 8, 12]
    assert frame_ids(read_video(path, 6, start_s=2.6)) == [26, 27, 28, 29, 26, 27]
    assert frame_ids(read_video(path, 6, start_s=2.6, short="pad")) == [26, 27, 28, 29, 29, 29]
    with pytest.raises(VideoError, match="no frame could be decoded after 5.00 s"):
        read_video(path, 4, start_s=5.0)
    for bad in (dict(num_frames=0), dict(stride=0), dict(fps=0.0), dict(crop="middle")):
        with pytest.raises(VideoError):
            read_video(path, **{"num_frames": 4, **bad})


# ----------------------------------------------------------------------------------------------
# Random crop and flip
# ----------------------------------------------------------------------------------------------


def _window(video: torch.Tensor) -> tuple[int, int, bool]:
    """(y0, x0, flipped) of a crop of a coded clip (G = 5x, B = 5y at full size)."""
    f = to_uint8_frames(video)[0].astype(int)
    g = f[0, :, 1]
    flipped = bool(g[0] > g[-1])
    x0 = int(g.min()) // 5
    assert np.array_equal(np.sort(g), 5 * np.arange(x0, x0 + len(g)))  # a contiguous, unscaled window
    return int(f[0, 0, 2]) // 5, x0, flipped


def test_random_crop_and_flip_are_driven_by_rng(tmp_path):
    path = coded_clip(tmp_path / "c.mkv", n=4, w=48, h=32)  # short side 32: no resize at size=32
    seen = set()
    for seed in range(24):
        a = read_video(path, 2, size=32, crop="random", flip=True, rng=np.random.default_rng(seed))
        b = read_video(path, 2, size=32, crop="random", flip=True, rng=np.random.default_rng(seed))
        assert torch.equal(a, b) and a.shape == (3, 2, 32, 32)
        y0, x0, flipped = _window(a)
        assert y0 == 0 and 0 <= x0 <= 16
        # the draws are exactly: crop row, crop column, then flip
        r = np.random.default_rng(seed)
        assert (int(r.integers(0, 1)), int(r.integers(0, 17)), bool(r.random() < 0.5)) == (y0, x0, flipped)
        seen.add((x0, flipped))
    assert len({x for x, _ in seen}) > 5 and {f for _, f in seen} == {True, False}
    centre = read_video(path, 2, size=32)
    assert _window(centre) == (0, 8, False)
    assert _window(read_video(path, 2, size=32, flip=False, crop="random", rng=np.random.default_rng(0)))[2] is False
    with pytest.raises(VideoError, match="need rng="):
        read_video(path, 2, size=32, crop="random")
    with pytest.raises(VideoError, match="need rng="):
        read_video(path, 2, size=32, flip=True)
    with pytest.raises(VideoError, match="needs a size"):
        read_video(path, 2, crop="random", rng=np.random.default_rng(0))


def test_random_crop_on_the_real_clip_is_a_window_of_the_resized_frame():
    full = read_video(CLIP, 2, size=48, crop="none")  # (3, 2, 48, W)
    for seed in range(4):
        v = read_video(CLIP, 2, size=48, crop="random", flip=True, rng=np.random.default_rng(seed))
        r = np.random.default_rng(seed)
        assert int(r.integers(0, full.shape[2] - 47)) == 0  # the short side is exactly 48
        x0 = int(r.integers(0, full.shape[3] - 47))
        expect = full[..., x0 : x0 + 48]
        assert torch.equal(v, expect.flip(-1) if r.random() < 0.5 else expect)


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------


def test_side_by_side_and_grid():
    a, b, c = (torch.full((3, 4, 8, w), v) for w, v in ((6, -0.5), (5, 0.0), (6, 0.5)))
    s = side_by_side([a, b], gap=2)
    assert s.shape == (3, 4, 8, 13)
    assert torch.equal(s[..., :6], a) and torch.equal(s[..., 8:], b) and bool((s[..., 6:8] == 1).all())
    assert side_by_side([a, b], gap=0).shape == (3, 4, 8, 11)
    with pytest.raises(VideoError, match="video 1 has 4 frames of height 9"):
        side_by_side([a, torch.zeros(3, 4, 9, 6)])
    g = video_grid([a, c, a], nrow=2, gap=1)
    assert g.shape == (3, 4, 8 * 2 + 1, 6 * 2 + 1)
    assert torch.equal(g[:, :, :8, 7:], c) and torch.equal(g[:, :, 9:, :6], a)
    assert bool((g[:, :, 9:, 7:] == -1).all()) and bool((g[:, :, 8] == -1).all())  # empty cell, separator
    assert video_grid(torch.stack([a, c]), nrow=5).shape == (3, 4, 8, 14)  # a batch tensor works too
    with pytest.raises(VideoError, match="all must match"):
        video_grid([a, b], nrow=2)
    with pytest.raises(VideoError, match=r"must be \(3, T, H, W\)"):
        video_grid([torch.zeros(4, 8, 6)], nrow=1)


def test_save_frame_grid_png(tmp_path):
    clips = [torch.linspace(-1, 1, 10).reshape(1, 10, 1, 1).expand(3, 10, 6, 5).clone() * s for s in (1.0, -1.0)]
    out = save_frame_grid(tmp_path / "sheet.png", clips, frames=4)
    img = np.asarray(Image.open(out))
    assert img.shape == (2 * 6 + 2, 4 * 5 + 3 * 2, 3)
    idx = np.linspace(0, 9, 4).round().astype(int)  # frames 0, 3, 6, 9
    for row, clip in enumerate(clips):
        u8 = to_uint8_frames(clip)
        for col, t in enumerate(idx):
            cell = img[row * 8 : row * 8 + 6, col * 7 : col * 7 + 5]
            assert np.array_equal(cell, u8[t])
    assert (img[6:8] == 255).all() and (img[:, 5:7] == 255).all()  # white separators
    single = np.asarray(Image.open(save_frame_grid(tmp_path / "one.png", clips[0], frames=20)))
    assert single.shape == (6, 10 * 5 + 9 * 2, 3)  # never more columns than frames
    with pytest.raises(VideoError, match="use a .png name"):
        save_frame_grid(tmp_path / "sheet.jpg", clips)


def test_written_files_read_back(tmp_path):
    clip = read_video(CLIP, 6, size=32)
    for name in ("a.mp4", "a.gif"):
        back = read_video(write_video(tmp_path / name, clip, fps=5), 6)
        assert back.shape == (3, 6, 32, 32)
        assert float((back - clip).abs().mean()) < 0.15
    shutil.copy(tmp_path / "a.gif", tmp_path / "gif_as.mp4")  # an animated GIF under a video name is a video
    assert read_video(tmp_path / "gif_as.mp4", 6).shape == (3, 6, 32, 32)
