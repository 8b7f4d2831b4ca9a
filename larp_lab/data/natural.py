"""Natural-content clips without a video dataset: camera moves over photographs, and windows of
your own videos.

* :class:`PhotoPans` makes slow pans and zooms over still photographs: a smooth random camera path
  (eased start and end, a slight hand-held wobble), sub-pixel positions, bilinear sampling from an
  image pyramid (box-filtered halvings, so zooming out does not alias). By default it uses the
  photographs bundled with matplotlib (see LICENSES below); pass ``images=`` for your own.
* :class:`VideoWindows` cuts random temporal windows with random crops and flips (``train=True``)
  or evenly spread windows with centre crops (``train=False``) out of the videos found recursively
  in a folder.

LICENSES
--------
The photographs come from two installed packages and are read as plain image files (neither
package's code runs). matplotlib's ``mpl-data/sample_data`` holds exactly one photograph:

* ``grace_hopper.jpg`` (512x600): official U.S. Navy portrait of Commodore Grace M. Hopper,
  January 1984 (Naval History and Heritage Command). A work of the U.S. federal government, in
  the public domain in the United States. The file's JPEG comment gives its source,
  http://commons.wikimedia.org/wiki/File:Grace_Hopper.jpg; matplotlib added it (PR #1599, 2012) as
  a public-domain replacement for the "Lena" test image.

scikit-image's ``skimage/data`` (a dependency of larp_lab for these files) ships these, with the
licences its ``skimage.data`` docstrings state:

* ``astronaut.png``: NASA portrait of astronaut Eileen Collins; public domain.
* ``chelsea.png``: a cat, photographed by Stefan van der Walt; CC0.
* ``coffee.png``: a cup of coffee (courtesy of Pikolo Espresso Bar), by Rachel Michetti; CC0.
* ``rocket.jpg``: a SpaceX Falcon 9 launch; released into the public domain by SpaceX.
* ``hubble_deep_field.jpg``: Hubble Deep Field, NASA; public domain.
* ``brick.png``, ``grass.png``, ``gravel.png``: textures from CC0Textures; CC0.
* ``retina.jpg``: a retina fundus image; CC0 1.0.
* ``camera.png`` (grayscale): a photographer with a camera, by Lav Varshney; CC0.

The other images in those folders are not photographs, or carry no stated licence, and are not used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._index import check_index
from .folder import VIDEO_EXTENSIONS, _VideoFileDataset, find_videos
from .video import VideoError, VideoLimits, read_video

__all__ = ["PhotoPans", "VideoWindows", "bundled_photos", "BUNDLED_PHOTOS"]

#: The photographs PhotoPans uses: (package, file name) -> credit and licence (see LICENSES above).
BUNDLED_PHOTOS: dict[tuple[str, str], str] = {
    ("matplotlib", "grace_hopper.jpg"): "U.S. Navy portrait of Commodore Grace M. Hopper, 1984 (NHHC); public domain",
    ("skimage", "astronaut.png"): "NASA portrait of astronaut Eileen Collins; public domain",
    ("skimage", "chelsea.png"): "cat, by Stefan van der Walt; CC0",
    ("skimage", "coffee.png"): "coffee cup, by Rachel Michetti (courtesy Pikolo Espresso Bar); CC0",
    ("skimage", "rocket.jpg"): "SpaceX Falcon 9 launch; public domain (SpaceX)",
    ("skimage", "hubble_deep_field.jpg"): "Hubble Deep Field, NASA; public domain",
    ("skimage", "brick.png"): "brick texture, CC0Textures; CC0",
    ("skimage", "grass.png"): "grass texture, CC0Textures; CC0",
    ("skimage", "gravel.png"): "gravel texture, CC0Textures; CC0",
    ("skimage", "retina.jpg"): "retina fundus image; CC0 1.0",
    ("skimage", "camera.png"): "photographer with a camera, by Lav Varshney; CC0",
}


def _package_data_dir(package: str) -> Path | None:
    """The data folder of an installed package, found without importing it."""
    import importlib.util

    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def bundled_photos() -> list[Path]:
    """Paths of the bundled photographs found in this installation (matplotlib's and scikit-image's)."""
    found = []
    for package, name in BUNDLED_PHOTOS:
        folder = _package_data_dir(package)
        if folder is not None and (folder / name).is_file():
            found.append(folder / name)
    if not found:
        raise VideoError("none of the bundled photographs (matplotlib / scikit-image sample data) was found.")
    return found


# ----------------------------------------------------------------------------------------------
# Photographs: pyramid + camera path + bilinear sampling
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _pyramid(path: str, min_side: int) -> tuple[np.ndarray, ...]:
    """An RGB image and its box-filtered halvings as float32 (H_l, W_l, 3) in [0, 1], down to
    about ``min_side`` pixels on the short side; read-only, cached per process."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoError(f"{path}: not a readable image ({type(exc).__name__}).") from None
    levels = []
    while True:
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr.setflags(write=False)
        levels.append(arr)
        if min(img.size) // 2 < max(min_side, 2):
            break
        img = img.reduce(2)
    return tuple(levels)


def _ease(tau: np.ndarray, k: float) -> np.ndarray:
    """Blend of linear and smoothstep motion (k in [0, 1]) mapping [0, 1] onto [0, 1]."""
    return (1.0 - k) * tau + k * tau * tau * (3.0 - 2.0 * tau)


def _camera_path(rng: np.random.Generator, frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random pan/zoom: centre x, centre y, window side (all (T,), in source pixels)."""
    tau = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    short = min(height, width)
    mode = int(rng.integers(3))  # 0: pan, 1: zoom, 2: both
    f0 = rng.uniform(0.3, 0.75)
    if mode == 0:
        f1 = f0 * rng.uniform(0.95, 1.05)
    else:
        ratio = rng.uniform(1.3, 2.0)
        f1 = float(np.clip(f0 * ratio if rng.random() < 0.5 else f0 / ratio, 0.2, 0.95))
    e = _ease(tau, rng.uniform(0.0, 1.0))
    side = short * f0 * (f1 / f0) ** e  # (T,) window side, pixels
    w0, w1 = side[0], side[-1]
    c0 = np.array([rng.uniform(w0 / 2, width - w0 / 2), rng.uniform(w0 / 2, height - w0 / 2)])
    a = rng.uniform(0, 2 * math.pi)
    travel = short * (rng.uniform(0.15, 0.4) if mode != 1 else rng.uniform(0.0, 0.05))
    c1 = c0 + travel * np.array([math.cos(a), math.sin(a)])
    c1 = np.clip(c1, [w1 / 2, w1 / 2], [width - w1 / 2, height - w1 / 2])
    wobble = 0.01 * short * np.sin(2 * math.pi * rng.uniform(0.5, 1.5) * tau[:, None] + rng.uniform(0, 2 * math.pi, 2))
    centre = c0 + (c1 - c0) * e[:, None] + wobble  # (T, 2)
    half = side / 2
    cx = np.clip(centre[:, 0], half, width - half)
    cy = np.clip(centre[:, 1], half, height - half)
    return cx, cy, side


def _sample(levels: Sequence[np.ndarray], cx: np.ndarray, cy: np.ndarray, side: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples of square windows (centre cx, cy, side ``side``; source pixels at level 0)
    on a size x size grid -> float32 (T, size, size, 3)."""
    level = int(np.clip(math.floor(math.log2(max(float(side.min()) / size, 1.0))), 0, len(levels) - 1))
    img = levels[level]
    h, w, _ = img.shape
    scale = 2.0**level
    offs = (np.arange(size) + 0.5) / size - 0.5  # (S,) output pixel centres, window units
    xs = (cx[:, None] + offs[None] * side[:, None]) / scale - 0.5  # (T, S) source index space
    ys = (cy[:, None] + offs[None] * side[:, None]) / scale - 0.5
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2) if w > 1 else np.zeros_like(xs, dtype=np.int64)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2) if h > 1 else np.zeros_like(ys, dtype=np.int64)
    fx = (xs - x0).astype(np.float32)[:, None, :, None]  # (T, 1, S, 1)
    fy = (ys - y0).astype(np.float32)[:, :, None, None]  # (T, S, 1, 1)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    r0, r1 = y0[:, :, None], y1[:, :, None]  # (T, S, 1)
    c0, c1 = x0[:, None, :], x1[:, None, :]  # (T, 1, S)
    top = img[r0, c0] * (1 - fx) + img[r0, c1] * fx  # (T, S, S, 3)
    bottom = img[r1, c0] * (1 - fx) + img[r1, c1] * fx
    return top * (1 - fy) + bottom * fy


class PhotoPans(Dataset):
    """Slow pans and zooms over photographs; ``dataset[i]`` ->
    ``{"video": float32 (3, T, size, size) in [-1, 1], "label": -1, "index": i}``.

    Each clip picks a photograph, mirrors it with probability 1/2 and follows a smooth random camera
    path (pan, zoom, or both), all drawn from ``numpy.random.default_rng([seed, i])``.

    Args:
        images: image files to use (any format Pillow reads); default: :func:`bundled_photos`.
    """

    def __init__(
        self, num_clips: int, frames: int = 16, size: int = 64, seed: int = 0,
        images: Sequence[str | os.PathLike] | None = None,
    ):
        if num_clips < 1 or frames < 1 or size < 2:
            raise ValueError(f"need num_clips >= 1, frames >= 1, size >= 2; got {num_clips}, {frames}, {size}.")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        self.images = [Path(p) for p in images] if images is not None else bundled_photos()
        if not self.images:
            raise VideoError("PhotoPans needs at least one image.")
        for p in self.images:
            if not p.is_file():
                raise VideoError(f"{p}: no such image file.")
        self.num_clips, self.frames, self.size, self.seed = int(num_clips), int(frames), int(size), int(seed)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, self.num_clips, "videos")
        rng = np.random.default_rng([self.seed, i])
        levels = _pyramid(str(self.images[int(rng.integers(len(self.images)))]), self.size)
        mirror = bool(rng.random() < 0.5)
        h, w, _ = levels[0].shape
        cx, cy, side = _camera_path(rng, self.frames, h, w)
        frames = _sample(levels, cx, cy, side, self.size)  # (T, S, S, 3) in [0, 1]
        if mirror:
            frames = frames[:, :, ::-1]
        video = torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)))  # (3, T, S, S)
        return {"video": video * 2.0 - 1.0, "label": -1, "index": i}

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.images)
        return f"PhotoPans(num_clips={self.num_clips}, frames={self.frames}, size={self.size}, seed={self.seed}, images=[{names}])"


# ----------------------------------------------------------------------------------------------
# Windows of user videos
# ----------------------------------------------------------------------------------------------

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class VideoWindows(_VideoFileDataset):
    """``num_clips`` windows cut from the videos found recursively in ``folder``.

    ``dataset[i]`` -> ``{"video": float32 (3, T, size, size) in [-1, 1], "label": -1, "index": i,
    "path": str}``.

    ``train=True``: a random file, a random start time, a random crop position and a random flip,
    drawn from ``(seed, epoch, i)``. ``train=False``: file ``i % n_files``, start times spread
    evenly over each file (golden-ratio sequence), centre crop, no flip. Windows that run past the
    end of a short file are looped. Unreadable files are skipped and replaced by the next one, with
    a warning (see :mod:`larp_lab.data.folder`).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        num_clips: int,
        frames: int = 16,
        size: int = 64,
        seed: int = 0,
        train: bool = True,
        *,
        stride: int = 1,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        limits: VideoLimits | None = None,
    ):
        super().__init__(seed, limits)
        if num_clips < 1 or frames < 1 or size < 1 or stride < 1:
            raise ValueError(f"need num_clips, frames, size, stride >= 1; got {num_clips}, {frames}, {size}, {stride}.")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise VideoError(f"{self.folder}: no such folder.")
        self.files = find_videos(self.folder, extensions)
        if not self.files:
            exts = ", ".join(e.lstrip(".") for e in extensions)
            raise VideoError(f"{self.folder}: no video files ({exts}) found.")
        self.num_clips, self.frames, self.size = int(num_clips), int(frames), int(size)
        self.train, self.stride = bool(train), int(stride)

    def __len__(self) -> int:
        return self.num_clips

    def _load(self, index: int, k: int) -> dict:
        path = self.files[k]
        n, fps = self._facts_of(path)
        rng = self._rng(index, stream=1)
        start_s = 0.0
        if fps > 0:
            free = max(n - (self.frames - 1) * self.stride - 1, 0) / fps  # latest start that still fits
            frac = rng.random() if self.train else ((index // len(self.files)) * _GOLDEN) % 1.0
            start_s = frac * free
        video = read_video(path, self.frames, size=self.size, crop="random" if self.train else "center",
                           flip=self.train, rng=rng, stride=self.stride, start_s=start_s, short="loop",
                           limits=self.limits)
        return {"video": video, "label": -1, "index": index, "path": str(path)}

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, self.num_clips, "videos")
        n = len(self.files)
        first = int(self._rng(i, stream=0).integers(n)) if self.train else i % n
        return self._first_readable(first, n, lambda k: self._load(i, k), lambda k: self.files[k])

    def __repr__(self) -> str:
        return (f"VideoWindows({str(self.folder)!r}, {len(self.files)} files, num_clips={self.num_clips}, "
                f"frames={self.frames}, size={self.size}, train={self.train})")
