"""Moving digits: a Moving-MNIST-style teaching set built from scikit-learn's bundled 8x8 digits.

Each clip shows one handwritten digit (``num_digits`` of them, if asked) of a random bright colour
flying in a straight line at constant speed over a black background and bouncing off the four
walls; its label is the digit (``0`` .. ``9``): ten classes a person tells apart at a glance. This is
the field's standard toy video set (Srivastava et al. 2015, Moving MNIST), made from the 1,797
digit images that ``sklearn.datasets.load_digits()`` ships (nothing is downloaded).

Train / held-out: every fifth digit image (image index ``% 5 == 4``, 359 images) belongs to the
held-out split and never appears in a ``split="train"`` clip, so held-out clips show handwriting
the models never saw. A clip is a pure function of ``(seed, split, index)``.

Rendering is vectorised (numpy, a whole batch at once): the 8x8 images are upsampled once to
``digit_size`` pixels with bilinear interpolation (smooth strokes rather than
blocky 2x2 pixels; the reasons, not a measurement, are in ``larp_lab/data/README.md``), positions are
integer pixels on a triangle-wave bounce, and a digit's intensity is its alpha over the background.
32x32x8 clips render at a few thousand clips/s on one core (24,000 in about 8 s).

============  ==================================================================================
field         how it is drawn (per clip, from ``numpy.random.default_rng([seed, split, index])``)
============  ==================================================================================
digit image   uniform over the split's images (label = its digit)
colour        hue uniform, saturation 0.55-1, value 0.85-1 (HSV)
start         uniform over the positions where the digit is fully inside the frame
velocity      speed ``min_speed``-``max_speed`` pixels/frame, direction uniform
============  ==================================================================================
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ._index import check_index

__all__ = ["DIGIT_NAMES", "NUM_DIGIT_CLASSES", "MovingDigits", "digit_images"]

#: class names of the moving-digits set: the label of a clip is its digit
DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
NUM_DIGIT_CLASSES = len(DIGIT_NAMES)
_SPLITS = {"train": 0, "heldout": 1}


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the moving-digits set needs scikit-learn (pip install scikit-learn)") from exc
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def digit_images(split: Literal["train", "heldout"] = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (n, 8, 8) in [0, 1], labels int64 (n,)) of one split (see the module docstring)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    images, labels = _load()
    keep = (np.arange(len(images)) % 5 == 4) == (split == "heldout")
    return images[keep], labels[keep]


@lru_cache(maxsize=8)
def _sprites(split: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sprites float32 (n, d, d) in [0, 1], labels (n,)): the split's images upsampled to ``digit_size``."""
    images, labels = digit_images(split)  # type: ignore[arg-type]
    t = torch.from_numpy(images)[:, None]
    up = torch.nn.functional.interpolate(t, size=(digit_size, digit_size), mode="bilinear", align_corners=False)
    return up[:, 0].clamp(0, 1).numpy(), labels


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(n,) each in [0, 1] -> (n, 3) RGB in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _bounce(p0: np.ndarray, v: np.ndarray, frames: int, span: int) -> np.ndarray:
    """Integer positions (n, T) of a point starting at ``p0`` (n,) with velocity ``v`` (n,) px/frame,
    reflected at 0 and ``span`` (a triangle wave)."""
    if span <= 0:
        return np.zeros((len(p0), frames), dtype=np.int64)
    x = p0[:, None] + v[:, None] * np.arange(frames)[None, :]
    m = np.mod(x, 2 * span)
    return np.rint(span - np.abs(m - span)).astype(np.int64).clip(0, span)


class MovingDigits(Dataset):
    """``num_clips`` moving-digit clips (see the module docstring).

    ``dataset[i]`` -> ``{"video": float32 (3, T, S, S) in [-1, 1], "label": int (the digit of the first
    digit drawn), "index": i}``; :meth:`render` makes many clips at once as uint8.
    """

    classes: tuple[str, ...] = DIGIT_NAMES

    def __init__(self, num_clips: int = 10_000, frames: int = 8, size: int = 32, seed: int = 0,
                 split: Literal["train", "heldout"] = "train", digit_size: int | None = None, num_digits: int = 1,
                 min_speed: float = 1.0, max_speed: float = 3.0):
        if num_clips < 1:
            raise ValueError(f"num_clips must be at least 1, got {num_clips}.")
        if frames < 1 or size < 8:
            raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}.")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}.")
        digit_size = size // 2 if digit_size is None else int(digit_size)
        if not 4 <= digit_size <= size:
            raise ValueError(f"digit_size must be in [4, size={size}], got {digit_size}.")
        if num_digits < 1:
            raise ValueError(f"num_digits must be at least 1, got {num_digits}.")
        if not 0.0 <= min_speed <= max_speed:
            raise ValueError(f"need 0 <= min_speed <= max_speed, got {min_speed}, {max_speed}.")
        if not np.isfinite(max_speed):
            raise ValueError(f"max_speed must be finite (pixels per frame), got {max_speed}.")
        self.num_clips, self.frames, self.size, self.seed = int(num_clips), int(frames), int(size), int(seed)
        self.split, self.digit_size, self.num_digits = split, digit_size, int(num_digits)
        self.min_speed, self.max_speed = float(min_speed), float(max_speed)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, self.num_clips, "clips")
        clips, labels = self.render([i])
        video = torch.from_numpy(clips[0]).float().div_(127.5).sub_(1.0)
        return {"video": video, "label": int(labels[0]), "index": i}

    def _params(self, i: int, n_images: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], i])
        k = self.num_digits
        img = rng.integers(0, n_images, size=k)
        hsv = rng.random((k, 3))
        span = self.size - self.digit_size
        start = rng.random((k, 2)) * span
        speed = self.min_speed + rng.random(k) * (self.max_speed - self.min_speed)
        angle = rng.random(k) * 2 * np.pi
        vel = np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=1)
        return img, hsv, start, vel

    def render(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Clips ``indices`` at once: (uint8 (B, 3, T, S, S), labels int64 (B,)); byte v stands for
        v / 127.5 - 1 (the clip pool's encoding)."""
        idx = [check_index(i, self.num_clips, "clips") for i in indices]
        if not idx:
            return (np.zeros((0, 3, self.frames, self.size, self.size), dtype=np.uint8),
                    np.zeros((0,), dtype=np.int64))
        sprites, sprite_labels = _sprites(self.split, self.digit_size)
        params = [self._params(i, len(sprites)) for i in idx]
        B, K, T, S, d = len(idx), self.num_digits, self.frames, self.size, self.digit_size
        img = np.stack([p[0] for p in params])  # (B, K)
        hsv = np.stack([p[1] for p in params])  # (B, K, 3)
        start = np.stack([p[2] for p in params])  # (B, K, 2)
        vel = np.stack([p[3] for p in params])  # (B, K, 2)
        colour = _hsv_to_rgb(hsv[..., 0].ravel(), 0.55 + 0.45 * hsv[..., 1].ravel(),
                             0.85 + 0.15 * hsv[..., 2].ravel()).reshape(B, K, 3).astype(np.float32)
        span = S - d
        ys = _bounce(start[..., 0].ravel(), vel[..., 0].ravel(), T, span).reshape(B, K, T)
        xs = _bounce(start[..., 1].ravel(), vel[..., 1].ravel(), T, span).reshape(B, K, T)
        alpha = np.zeros((B, K, T, S, S), dtype=np.float32)
        dy, dx = np.arange(d), np.arange(d)
        bi, ki, ti = np.meshgrid(np.arange(B), np.arange(K), np.arange(T), indexing="ij")  # (B, K, T)
        rows = ys[..., None, None] + dy[:, None]  # (B, K, T, d, 1)
        cols = xs[..., None, None] + dx[None, :]  # (B, K, T, 1, d)
        alpha[bi[..., None, None], ki[..., None, None], ti[..., None, None], rows, cols] = sprites[img][:, :, None]
        # composite: later digits over earlier ones
        video = np.zeros((B, 3, T, S, S), dtype=np.float32)
        for k in range(K):
            a = alpha[:, k][:, None]  # (B, 1, T, S, S)
            video = video * (1.0 - a) + colour[:, k, :, None, None, None] * a
        clips = np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
        return clips, sprite_labels[img[:, 0]]

    def __repr__(self) -> str:
        return (f"MovingDigits(num_clips={self.num_clips}, frames={self.frames}, size={self.size}, seed={self.seed}, "
                f"split={self.split!r}, digit_size={self.digit_size}, num_digits={self.num_digits})")
