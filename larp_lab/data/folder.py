"""Datasets of video files: a class-per-folder tree (UCF-101 layout) and the official LARP CSV lists.

Both read clips lazily with :func:`larp_lab.data.video.read_video` (seek, decode only the frames
needed, downscale each frame before it becomes an array) and follow the official LARP data
pipeline (``hywang66/LARP``, ``datasets/video_dataset.py``, read for its behaviour; no code taken):

* **one CSV per split**: the official scripts train on ``ucf101_train.csv`` (the released tokenizer
  on ``k600_train.csv`` and ``ucf101_train.csv`` together), validate on ``ucf101_val.csv``, and
  evaluate frame prediction on ``k600_val.csv``. Each CSV has the header ``id,path,action,label``;
  the rows are sorted by path.
* **frames**: ``frame_rate="native"`` (the official default) takes ``frames`` *consecutive* frames
  starting at a random frame ``s`` drawn uniformly from ``[0, n - frames]`` (n = frames in the
  file); the official code draws that start at random for the validation set too, and so does this
  one, but from ``(seed, index)`` so evaluations repeat exactly. ``frame_rate="uniform"`` spreads
  the frames over the whole clip (here as a stride of ``n // frames`` from the first frame, a close
  approximation of the official ``int(k * n / frames)``). A clip with fewer than ``frames`` frames
  is padded by repeating its last frame, as the official code does.
* **space**: the short side is resized to ``size`` (antialiased) and the centre ``size x size`` is
  cropped, in training and evaluation alike (the released configs use ``scale = aspect_ratio = 1``,
  for which the official transform is resize + centre crop: no random crop). ``crop="random"`` is
  available as an extra. Training adds a **random horizontal flip** (``rand_flip: 'yes'`` in the
  official tokenizer config); evaluation never flips.
* **labels**: for UCF-101 the official code derives the label from the file name (``v_<Action>_...``,
  actions sorted alphabetically, which is also the alphabetical folder order of UCF-101); for
  Kinetics-600 it gives no label (-1). Here ``VideoFolder`` labels by sorted folder name and
  ``VideoCSV`` takes the CSV's ``label`` column (-1 where a row has none).

Extras over the official loader: ``stride`` (keep every k-th frame), per-epoch augmentation through
:meth:`set_epoch`, and **fault tolerance**: a missing or unreadable file is skipped with a
:class:`SkippedVideoWarning`, listed in ``skipped_files`` (counted by ``skipped``), and the item is
replaced deterministically by the next readable file in the list; when no file can be read at all
a :class:`~larp_lab.data.video.VideoError` says so. (With DataLoader workers each worker process
keeps its own list.)

Randomness comes only from ``numpy.random.default_rng([seed, epoch, index])``: the temporal start
is drawn first, then the crop position (``crop="random"``), then the flip.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from ._index import check_index
from .video import VideoError, VideoLimits, count_frames, probe_video, read_video

__all__ = ["VIDEO_EXTENSIONS", "SkippedVideoWarning", "VideoFolder", "VideoCSV", "find_videos"]

#: File name endings recognised as videos (case-insensitive).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")


class SkippedVideoWarning(RuntimeWarning):
    """A video file was missing or unreadable and was skipped."""


def find_videos(folder: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """All files under ``folder`` (recursively) whose name ends with one of ``extensions``, sorted.

    Hidden files and folders (names starting with ".") are ignored.
    """
    root = Path(folder)
    exts = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(exts):
                found.append(Path(dirpath) / name)
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# Shared machinery: per-file facts, reading a window, skipping bad files
# ----------------------------------------------------------------------------------------------


class _VideoFileDataset(Dataset):
    """Base for datasets of video files: epoch-aware seeding, frame-count cache, skip-and-replace."""

    def __init__(self, seed: int, limits: VideoLimits | None):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        self.seed = int(seed)
        self.epoch = 0
        self.limits = limits if limits is not None else VideoLimits()
        self.skipped_files: list[str] = []
        self._bad: set[str] = set()
        self._facts: dict[str, tuple[int, float]] = {}

    @property
    def skipped(self) -> int:
        """How many distinct files were skipped so far (in this process)."""
        return len(self.skipped_files)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (windows, crops, flips) for a new epoch; items stay reproducible."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        self.epoch = int(epoch)

    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        """A fresh generator for item ``index`` (a fresh one per attempt keeps replacements exact)."""
        return np.random.default_rng([self.seed, self.epoch, index, stream])

    def _facts_of(self, path: Path) -> tuple[int, float]:
        """(frame count, frames per second) of a file, cached."""
        key = str(path)
        if key not in self._facts:
            info = probe_video(path, self.limits)
            n = info.num_frames or count_frames(path, self.limits)
            self._facts[key] = (n, info.fps)
        return self._facts[key]

    def _read_window(
        self, path: Path, frames: int, size: int, *, rng: np.random.Generator, random_start: bool,
        crop: Literal["center", "random"], flip: bool, stride: int, frame_rate: Literal["native", "uniform"],
    ):
        """Read ``frames`` frames of ``path`` as (3, T, size, size) in [-1, 1] (see module docstring)."""
        n, fps = self._facts_of(path)
        start_s = 0.0
        if frame_rate == "uniform":
            stride = max(1, n // frames)
        elif random_start and fps > 0:
            span = (frames - 1) * stride + 1
            start = int(rng.integers(0, max(n - span, 0) + 1))
            start_s = start / fps
        return read_video(path, frames, size=size, crop=crop, flip=flip, rng=rng, stride=stride,
                          start_s=start_s, short="pad", limits=self.limits)

    def _first_readable(self, first: int, count: int, load: Callable[[int], dict], path_of: Callable[[int], Path]) -> dict:
        """``load(k)`` for k = first, first+1, ... (mod count), skipping files that fail."""
        last_error = ""
        for step in range(count):
            k = (first + step) % count
            path = str(path_of(k))
            if path in self._bad:
                continue
            try:
                return load(k)
            except (VideoError, OSError) as exc:
                last_error = str(exc)
                self._bad.add(path)
                self.skipped_files.append(path)
                what = str(exc) if path in str(exc) else f"{path}: {exc}"
                warnings.warn(f"{what} Skipping it.", SkippedVideoWarning, stacklevel=3)
        raise VideoError(
            f"none of the {count} videos could be read ({len(self._bad)} skipped; last error: {last_error or 'see warnings'})."
        )


def _check_common(frames: int, size: int, stride: int, frame_rate: str, crop: str) -> None:
    if frames < 1 or size < 1:
        raise ValueError(f"frames and size must be at least 1, got frames={frames}, size={size}.")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}.")
    if frame_rate not in ("native", "uniform"):
        raise ValueError(f"frame_rate must be 'native' or 'uniform', got {frame_rate!r}.")
    if crop not in ("center", "random"):
        raise ValueError(f"crop must be 'center' or 'random', got {crop!r}.")


# ----------------------------------------------------------------------------------------------
# root/<class>/*.mp4
# ----------------------------------------------------------------------------------------------


class _LabelledVideos(_VideoFileDataset):
    """A list of (path, label) ``samples`` read as windows of ``frames`` frames (shared by the
    folder and CSV datasets)."""

    samples: list[tuple[Path, int]]

    def _set_reading(self, frames, size, train, stride, crop, flip, frame_rate) -> None:
        self.frames, self.size, self.train, self.stride = int(frames), int(size), bool(train), int(stride)
        self.crop, self.flip, self.frame_rate = crop, self.train if flip is None else bool(flip), frame_rate

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int, k: int) -> dict:
        path, label = self.samples[k]
        video = self._read_window(path, self.frames, self.size, rng=self._rng(index), random_start=True,
                                  crop=self.crop, flip=self.flip, stride=self.stride, frame_rate=self.frame_rate)
        return {"video": video, "label": label, "index": index, "path": str(path)}

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, len(self), "videos")
        return self._first_readable(i, len(self), lambda k: self._load(i, k), lambda k: self.samples[k][0])


class VideoFolder(_LabelledVideos):
    """Videos in one folder per class (the UCF-101 layout ``root/<class>/<video>``).

    Classes are the sub-folder names sorted alphabetically (label = position); videos are found
    recursively inside each class folder. ``dataset[i]`` ->
    ``{"video": float32 (3, T, size, size) in [-1, 1], "label": int, "index": i, "path": str}``.

    Args:
        train: random temporal window and random flip (see module docstring); otherwise the window
            is still drawn from ``(seed, index)`` but there is no flip.
        stride: keep every ``stride``-th frame of the window.
        crop: ``"center"`` (official) or ``"random"``.
        flip: override the flip (default: ``train``).
        frame_rate: ``"native"`` (consecutive frames, official default) or ``"uniform"``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames: int = 16,
        size: int = 128,
        train: bool = True,
        stride: int = 1,
        seed: int = 0,
        *,
        crop: Literal["center", "random"] = "center",
        flip: bool | None = None,
        frame_rate: Literal["native", "uniform"] = "native",
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        limits: VideoLimits | None = None,
    ):
        super().__init__(seed, limits)
        _check_common(frames, size, stride, frame_rate, crop)
        self.root = Path(root)
        if not self.root.is_dir():
            raise VideoError(f"{self.root}: no such folder.")
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [
            (p, k) for k, c in enumerate(self.classes) for p in find_videos(self.root / c, extensions)
        ]
        if not self.samples:
            raise VideoError(f"{self.root}: no videos found in class folders (expected root/<class>/<video>).")
        self._set_reading(frames, size, train, stride, crop, flip, frame_rate)

    def __repr__(self) -> str:
        return (f"VideoFolder({str(self.root)!r}, {len(self.classes)} classes, {len(self)} videos, frames={self.frames}, "
                f"size={self.size}, train={self.train})")


# ----------------------------------------------------------------------------------------------
# Official metadata CSV: id,path,action,label
# ----------------------------------------------------------------------------------------------


class VideoCSV(_LabelledVideos):
    """Videos listed in an official LARP metadata CSV (``id,path,action,label``; one file per split).

    Relative paths are taken from ``root``. Rows are sorted by path (as the official loader
    sorts its list). ``dataset[i]`` ->
    ``{"video": float32 (3, T, size, size) in [-1, 1], "label": int, "index": i, "path": str}``;
    ``label`` is the row's ``label`` (-1 when empty), ``label_names`` maps labels to ``action``.
    Sampling and augmentation as :class:`VideoFolder` and the module docstring.
    """

    def __init__(
        self,
        csv_file: str | os.PathLike,
        root: str | os.PathLike,
        frames: int = 16,
        size: int = 128,
        train: bool = True,
        stride: int = 1,
        seed: int = 0,
        *,
        crop: Literal["center", "random"] = "center",
        flip: bool | None = None,
        frame_rate: Literal["native", "uniform"] = "native",
        limits: VideoLimits | None = None,
    ):
        super().__init__(seed, limits)
        _check_common(frames, size, stride, frame_rate, crop)
        self.csv_file, self.root = Path(csv_file), Path(root)
        rows = _read_csv(self.csv_file)
        self.samples: list[tuple[Path, int]] = []
        self.label_names: dict[int, str] = {}
        for line, row in rows:
            rel = (row.get("path") or "").strip()
            if not rel:
                raise VideoError(f"{self.csv_file}, line {line}: the path is empty.")
            label_text = (row.get("label") or "").strip()
            try:
                label = int(label_text) if label_text else -1
            except ValueError:
                raise VideoError(f"{self.csv_file}, line {line}: the label {label_text!r} is not an integer.") from None
            path = Path(rel) if Path(rel).is_absolute() else self.root / rel
            self.samples.append((path, label))
            action = (row.get("action") or "").strip()
            if label >= 0 and action:
                self.label_names.setdefault(label, action)
        self.samples.sort(key=lambda s: str(s[0]))
        self._set_reading(frames, size, train, stride, crop, flip, frame_rate)

    def __repr__(self) -> str:
        return (f"VideoCSV({str(self.csv_file)!r}, root={str(self.root)!r}, {len(self)} videos, frames={self.frames}, "
                f"size={self.size}, train={self.train})")


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a metadata CSV as (line number, row); refuses files without a ``path`` column or rows."""
    if not path.is_file():
        raise VideoError(f"{path}: no such CSV file.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if "path" not in header:
                raise VideoError(f"{path}: no 'path' column in the header (expected id,path,action,label).")
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise VideoError(f"{path}: not a UTF-8 text CSV file.") from None
    except csv.Error as exc:
        raise VideoError(f"{path}: not a valid CSV file ({exc}).") from None
    if not rows:
        raise VideoError(f"{path}: the CSV lists no videos.")
    return rows
