"""Helpers shared by the teaching notebooks (``notebooks/src/*.py``): where things are, clip batches
(:func:`bundled_clips`: held-out clips of the kind a model was trained on), and showing clips in a notebook.

Importing this module loads neither IPython nor Jupyter: :func:`show_video` and :func:`show_frames`
import ``IPython.display`` when called, so everything else also works in scripts and tests.

    from larp_lab.viz.notebook import comparison_grid, default_device, output_dir, repo_root, show_video
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..data.digits import DIGIT_NAMES, MovingDigits
from ..data.synthetic import CLASS_NAMES, SyntheticVideos
from ..data.video import save_frame_grid, side_by_side, video_grid, write_video

__all__ = [
    "bundled_clips",
    "clip_batch",
    "comparison_grid",
    "data_kind",
    "default_device",
    "generator_condition",
    "interleave",
    "output_dir",
    "repo_root",
    "show_frames",
    "show_video",
]


def repo_root(start: str | os.PathLike = ".") -> Path:
    """The larp_lab repository (for ``examples/``, ``configs/``, ``experiments/``).

    The first of ``start`` and its parents that holds both ``larp_lab/`` and ``examples/`` (a notebook
    runs in ``notebooks/``), else the directory above the imported package.
    """
    here = Path(start).resolve()
    for d in (here, *here.parents):
        if (d / "larp_lab").is_dir() and (d / "examples").is_dir():
            return d
    return Path(__file__).resolve().parents[2]


@functools.cache
def output_dir() -> Path:
    """A temporary folder for the videos and pictures a notebook makes: created on the first call,
    the same folder for every later call in the process (one per kernel)."""
    return Path(tempfile.mkdtemp(prefix="larp_lab_nb_"))


def default_device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _file_in(out_dir: str | os.PathLike | None, name: str, suffix: str) -> Path:
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    return Path(out_dir if out_dir is not None else output_dir()) / f"{name}{suffix}"


def show_video(clip: Tensor, name: str, width: int = 384, *, fps: float = 8.0, out_dir=None):
    """Write a (3, T, H, W) clip in [-1, 1] as ``<out_dir>/<name>.mp4`` (default: :func:`output_dir`)
    and return it as an ``IPython.display.Video`` embedded in the notebook (looping, muted)."""
    from IPython.display import Video

    path = write_video(_file_in(out_dir, name, ".mp4"), clip, fps=fps)
    return Video(str(path), embed=True, width=width, html_attributes="controls loop autoplay muted")


def show_frames(clips: Tensor | Sequence[Tensor], name: str, frames: int = 8, *, out_dir=None):
    """A PNG contact sheet ``<out_dir>/<name>.png``, one row of ``frames`` evenly spaced frames per clip,
    as an ``IPython.display.Image``. ``clips``: (3, T, H, W), (B, 3, T, H, W) or a list of clips in [-1, 1]."""
    from IPython.display import Image

    clips = clips if isinstance(clips, Tensor) else list(clips)
    return Image(filename=str(save_frame_grid(_file_in(out_dir, name, ".png"), clips, frames=frames)))


def _columns(columns, what: str) -> list[list[Tensor]]:
    cols = [list(c) for c in columns]
    if not cols or not cols[0] or any(len(c) != len(cols[0]) for c in cols):
        raise ValueError(f"{what}: give non-empty columns of the same length, got lengths {[len(c) for c in cols]}")
    return cols


def clip_batch(dataset, indices: Iterable[int]) -> tuple[Tensor, Tensor]:
    """Items of a clip dataset (``{"video": (3, T, H, W), "label": int}``, e.g. ``SyntheticVideos``)
    stacked: -> videos (B, 3, T, H, W) and labels (B,) long."""
    items = [dataset[int(i)] for i in indices]
    if not items:
        raise ValueError("clip_batch: no indices given")
    return torch.stack([it["video"] for it in items]), torch.tensor([int(it["label"]) for it in items])


def data_kind(model) -> str:
    """What clips ``model`` (a tokenizer or generator) was trained on, as its checkpoint says:
    ``"digits"`` when its ``config.json`` metadata has ``"data": "digits"`` (the bundled models trained
    on moving digits), else ``"synthetic"`` (earlier bundled models recorded nothing and were trained on
    :class:`~larp_lab.data.SyntheticVideos`; also the answer for official weights, your own runs and
    models built in memory). :func:`larp_lab.bundled.training_data` reads the same from a checkpoint
    directory, and says None where nothing is recorded."""
    return "digits" if getattr(model, "checkpoint_metadata", {}).get("data") == "digits" else "synthetic"


def bundled_clips(tok, n: int, seed: int = 0, *, kind: str | None = None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """``n`` clips of the kind the tokenizer ``tok`` was trained on (:func:`data_kind`; ``kind``,
    ``"digits"`` or ``"synthetic"``, overrides it), at its clip size (``frame_num`` frames of
    ``input_size`` pixels), whose labels cycle through the classes: clip ``i`` shows class ``i % C``,
    so ``n = C`` gives one clip per class.

    Moving digits come from the held-out split (handwriting never trained on,
    :class:`~larp_lab.data.MovingDigits`); synthetic clips from :class:`~larp_lab.data.SyntheticVideos`.
    The same clip size, ``n``, ``seed`` and kind always give the same clips.

    Returns (videos float32 (n, 3, T, H, W) in [-1, 1], labels (n,) long, class names).
    """
    if n < 1:
        raise ValueError(f"bundled_clips: n must be at least 1, got {n}")
    kind = data_kind(tok) if kind is None else kind
    if kind not in ("digits", "synthetic"):
        raise ValueError(f"bundled_clips: kind must be 'digits' or 'synthetic', got {kind!r}")
    frames, size = tok.config.frame_num, tok.config.input_size
    if kind == "synthetic":  # item i has label i % 12 already
        videos, labels = clip_batch(SyntheticVideos(n, frames=frames, size=size, seed=seed), range(n))
        return videos, labels, CLASS_NAMES
    pool = MovingDigits(10**9, frames=frames, size=size, seed=seed, split="heldout")  # clips are made on demand
    C = len(DIGIT_NAMES)
    need = [len(range(c, n, C)) for c in range(C)]  # clips wanted of each digit
    found: list[list[Tensor]] = [[] for _ in range(C)]
    missing = n
    for i in range(100 * n + 1000):  # the digits are about equally frequent: a few n draws suffice
        item = pool[i]
        c = item["label"]
        if len(found[c]) < need[c]:
            found[c].append(item["video"])
            missing -= 1
            if missing == 0:
                break
    else:  # pragma: no cover - would need a digit to be missing from the held-out images
        raise RuntimeError("bundled_clips: could not find clips of every digit")
    videos = torch.stack([found[j % C][j // C] for j in range(n)])
    return videos, torch.arange(n) % C, DIGIT_NAMES


def interleave(*columns: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Clips row by row: the first clip of every column, then the second of every column, ...

    ``columns``: batches (B, 3, T, H, W) or lists of B clips, all of the same length B -> list of
    B * len(columns) clips (3, T, H, W), e.g. original / reconstruction pairs for :func:`show_frames`.
    """
    return [clip for row in zip(*_columns(columns, "interleave")) for clip in row]


def comparison_grid(*columns: Tensor | Sequence[Tensor], nrow: int = 4) -> Tensor:
    """One side-by-side clip per row of ``columns`` (e.g. original | reconstruction), laid out in a grid
    of ``nrow`` per line: batches (B, 3, T, H, W) of the same B, T and H -> one (3, T, H', W') clip."""
    return video_grid([side_by_side(list(row)) for row in zip(*_columns(columns, "comparison_grid"))], nrow=nrow)


def generator_condition(gen, labels: Tensor, class_names: Sequence[str]) -> tuple[Tensor, bool]:
    """The condition to give ``gen`` for clips with these class ``labels`` (B,) of ``class_names``:
    the labels themselves when the generator was trained on the same classes (the bundled one on the
    clips of :func:`bundled_clips`), else its null class (e.g. LARP-L's UCF-101 generator on digits).

    Returns (cond (B,) long on the CPU, whether the labels are used).
    """
    same = tuple(gen.config.class_names or ()) == tuple(class_names)
    return (labels.cpu() if same else gen.null_condition(len(labels)).cpu()), same
