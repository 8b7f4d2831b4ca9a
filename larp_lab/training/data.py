"""Datasets for training and evaluation, built from a :class:`DataConfig`."""

from __future__ import annotations

from torch.utils.data import Dataset

from .config import DataConfig, SourceConfig


def _source(s: SourceConfig, cfg: DataConfig, *, train: bool, num_clips: int, seed: int) -> Dataset:
    """One dataset per source kind (an explicit mapping, no registry)."""
    if not train and s.val_path:
        s = s.replace(path=s.val_path)
    if s.kind == "synthetic":
        from ..data.synthetic import SyntheticVideos

        return SyntheticVideos(num_clips=num_clips, frames=cfg.frames, size=cfg.size, seed=seed)
    if s.kind == "digits":
        from ..data.digits import MovingDigits

        return MovingDigits(num_clips=num_clips, frames=cfg.frames, size=cfg.size, seed=seed,
                            split="train" if train else "heldout")
    if s.kind == "photos":
        from ..data.natural import PhotoPans

        return PhotoPans(num_clips=num_clips, frames=cfg.frames, size=cfg.size, seed=seed)
    if s.kind == "videos":
        from ..data.natural import VideoWindows

        return VideoWindows(s.path, num_clips=num_clips, frames=cfg.frames, size=cfg.size, seed=seed, train=train)
    if s.kind == "folder":
        from ..data.folder import VideoFolder

        return VideoFolder(s.path, frames=cfg.frames, size=cfg.size, train=train, seed=seed)
    if s.kind == "csv":
        from ..data.folder import VideoCSV

        return VideoCSV(s.path, s.root or ".", frames=cfg.frames, size=cfg.size, train=train, seed=seed)
    raise ValueError(f"unknown data source kind {s.kind!r}")


def build_dataset(cfg: DataConfig, *, train: bool, num_clips: int | None = None) -> Dataset:
    """The training (``train=True``) or held-out dataset described by ``cfg``.

    Procedural sources use seed ``cfg.seed`` for training and ``cfg.seed + 10_000`` for held-out
    clips, so the two never share a clip. ``num_clips`` bounds procedural sources.
    """
    n = num_clips if num_clips is not None else (cfg.num_clips if train else cfg.val_clips)
    seed = cfg.seed if train else cfg.seed + 10_000
    parts = [(_source(s, cfg, train=train, num_clips=n, seed=seed + i), s.weight) for i, s in enumerate(cfg.sources)]
    if len(parts) == 1:
        return parts[0][0]
    from ..data.mix import MixedDataset

    return MixedDataset(parts, num_clips=n, seed=seed)


def is_procedural(cfg: DataConfig) -> bool:
    """True when every source generates clips on the fly (no need to shuffle)."""
    return all(s.kind in ("synthetic", "digits", "photos", "videos") for s in cfg.sources)


def dataset_class_names(cfg: DataConfig) -> tuple[str, ...] | None:
    """Class names when every source is labelled the same way (synthetic, digits, or one labelled folder)."""
    kinds = {s.kind for s in cfg.sources}
    if kinds == {"synthetic"}:
        from ..data.synthetic import CLASS_NAMES

        return tuple(CLASS_NAMES)
    if kinds == {"digits"}:
        from ..data.digits import DIGIT_NAMES

        return DIGIT_NAMES
    if len(cfg.sources) == 1 and cfg.sources[0].kind == "folder":
        from pathlib import Path

        return tuple(sorted(p.name for p in Path(cfg.sources[0].path).iterdir() if p.is_dir()))
    return None
