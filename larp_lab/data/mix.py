"""Mixing datasets by weight, and batching clips.

:class:`MixedDataset` draws, for every index ``i``, a source (with probability proportional to its
weight) and an item of that source from ``numpy.random.default_rng([seed, i])``: the mix is a pure
function of ``(seed, i)``, so it is identical across workers, processes and resumptions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._index import check_index

__all__ = ["MixedDataset", "collate_videos"]


class MixedDataset(Dataset):
    """``num_clips`` items drawn from weighted sources.

    ``sources``: ``[(dataset, weight), ...]`` with positive finite weights (normalised here).
    ``dataset[i]`` is the chosen source's item with ``"index"`` set to ``i`` and two keys added:
    ``"source"`` (position of the source in ``sources``) and ``"source_index"`` (the item's index in
    that source). Labels are passed through unchanged (sources may use overlapping label ranges;
    tell them apart with ``"source"``).
    """

    def __init__(self, sources: Sequence[tuple[Dataset, float]], num_clips: int, seed: int = 0):
        if not sources:
            raise ValueError("MixedDataset needs at least one (dataset, weight) pair.")
        if num_clips < 1:
            raise ValueError(f"num_clips must be at least 1, got {num_clips}.")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        weights = []
        for k, pair in enumerate(sources):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"source {k} must be a (dataset, weight) pair, got {type(pair).__name__}.")
            ds, w = pair
            w = float(w)
            if not (w > 0 and math.isfinite(w)):
                raise ValueError(f"source {k}: the weight must be a positive finite number, got {w}.")
            if len(ds) < 1:  # type: ignore[arg-type]
                raise ValueError(f"source {k} ({type(ds).__name__}) is empty.")
            weights.append(w)
        self.datasets = [ds for ds, _ in sources]
        self.probabilities = np.asarray(weights) / sum(weights)
        self.num_clips, self.seed = int(num_clips), int(seed)

    def __len__(self) -> int:
        return self.num_clips

    def set_epoch(self, epoch: int) -> None:
        """Forward to the sources that vary their augmentation by epoch (file datasets)."""
        for ds in self.datasets:
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)

    def choose(self, index: int) -> tuple[int, int]:
        """(source position, index within that source) of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.choice(len(self.datasets), p=self.probabilities))
        return k, int(rng.integers(len(self.datasets[k])))  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, self.num_clips, "clips")
        k, j = self.choose(i)
        item = dict(self.datasets[k][j])
        item.update(index=i, source=k, source_index=j)
        return item

    def __repr__(self) -> str:
        parts = ", ".join(f"{type(d).__name__}: {p:.3f}" for d, p in zip(self.datasets, self.probabilities))
        return f"MixedDataset([{parts}], num_clips={self.num_clips}, seed={self.seed})"


def collate_videos(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items: ``{"video": (B, 3, T, H, W) float32, "label": (B,) int64, "index": (B,) int64}``.

    Other keys present in every item are kept: integers become int64 tensors, strings lists.
    Clips must all have the same shape.
    """
    if not batch:
        raise ValueError("collate_videos: the batch is empty.")
    for key in ("video", "label", "index"):
        if any(key not in item for item in batch):
            raise ValueError(f"collate_videos: every item needs a {key!r} entry.")
    videos = [torch.as_tensor(item["video"]) for item in batch]
    shape = videos[0].shape
    for k, v in enumerate(videos):
        if v.ndim != 4 or v.shape[0] != 3:
            raise ValueError(f"collate_videos: item {k} has a video of shape {tuple(v.shape)}, expected (3, T, H, W).")
        if v.shape != shape:
            raise ValueError(
                f"collate_videos: item {k} is {tuple(v.shape)} but item 0 is {tuple(shape)}; use the same frames and size everywhere."
            )
    out: dict[str, Any] = {
        "video": torch.stack(videos).float(),
        "label": torch.tensor([int(item["label"]) for item in batch], dtype=torch.int64),
        "index": torch.tensor([int(item["index"]) for item in batch], dtype=torch.int64),
    }
    common = set(batch[0]).intersection(*batch[1:]) - set(out)
    for key in sorted(common):
        values = [item[key] for item in batch]
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.int64)
        elif all(isinstance(v, Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
