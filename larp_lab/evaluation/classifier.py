"""The offline proxy metrics: a small 3-D convolutional video classifier trained here, its feature
Fréchet distance ("proxy FVD") and its class accuracy on generated videos.

The I3D detector of the real FVD is a separate download (see :mod:`larp_lab.evaluation.fvd`). When it
is not available, or on small synthetic data where I3D features mean little, a classifier trained
on the same data gives a comparable signal: the Fréchet distance of its penultimate features
between real and generated clips, and how often generated clips of class c are recognised as c.
These numbers are **not** comparable with published FVDs; they compare models of this project
with each other on one dataset.

A classifier is saved and loaded like the models (:class:`~larp_lab.checkpoint.PretrainedMixin`:
``config.json`` + ``model.safetensors``, atomic writes, strict loading, never pickle); a training run
adds ``train_log.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import PretrainedMixin, atomic_write_bytes
from ..config import ConfigBase, ConfigError, check_range
from .fvd import FeatureStats, compute_stats, fvd_from_stats

__all__ = [
    "ClassifierConfig",
    "ClassifierTrainResult",
    "VideoClassifier",
    "class_accuracy",
    "classifier_stats",
    "proxy_fvd",
    "train_classifier",
]

# ================================================================================================
#                                            Model
# ================================================================================================


@dataclass
class ClassifierConfig(ConfigBase):
    """Sizes of a :class:`VideoClassifier`; ``feature_dim = 8 * width``."""

    num_classes: int
    frames: int
    size: int
    width: int = 32
    in_channels: int = 3

    def validate(self) -> None:
        o = "ClassifierConfig"
        for name, lo, hi in (("num_classes", 2, 1 << 20), ("frames", 1, 4096), ("size", 1, 4096), ("width", 1, 1024),
                             ("in_channels", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{o}.{name}: expected an integer, got {v!r}")
            check_range(o, name, v, lo, hi)

    @property
    def feature_dim(self) -> int:
        return 8 * self.width


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class _Stage(nn.Module):
    """Conv3d(stride) + GroupNorm + SiLU, then a residual Conv3d + GroupNorm + SiLU."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.norm1(self.conv1(x)))
        return x + F.silu(self.norm2(self.conv2(x)))


class VideoClassifier(nn.Module, PretrainedMixin):
    """Four residual Conv3d stages (widths w, 2w, 4w, 8w), global average pooling, linear head.

    Every stage halves height and width (while they are >= 2); stages 2-4 also halve time (while
    it is >= 2). Input: (B, in_channels, frames, size, size) in [-1, 1].
    """

    def __init__(self, config: ClassifierConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        w = config.width
        widths = (w, 2 * w, 4 * w, 8 * w)
        t, s = config.frames, config.size
        stages = []
        c_in = config.in_channels
        for i, c_out in enumerate(widths):
            st = 2 if (i > 0 and t >= 2) else 1
            ss = 2 if s >= 2 else 1
            stages.append(_Stage(c_in, c_out, (st, ss, ss)))
            t, s, c_in = math.ceil(t / st), math.ceil(s / ss), c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(widths[-1], config.num_classes)
        if device is not None:
            self.to(device)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _check(self, video: Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.frames, c.size, c.size)
        if video.ndim != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(f"classifier expects (B, {', '.join(map(str, want))}); got {tuple(video.shape)}")

    def features(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) in [-1, 1] -> (B, feature_dim) pooled features."""
        self._check(video)
        return self.stages(video).mean(dim=(2, 3, 4))

    def forward(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) in [-1, 1] -> logits (B, num_classes)."""
        return self.head(self.features(video))

    # -------------------------------------------------------------------------------------------
    # checkpoints: save_pretrained / from_pretrained come from PretrainedMixin (no official format)
    # -------------------------------------------------------------------------------------------
    config_class = ClassifierConfig
    checkpoint_kind = "video_classifier"


# ================================================================================================
#                                           Training
# ================================================================================================


@dataclass
class ClassifierTrainResult:
    model: VideoClassifier
    losses: list[float] = field(default_factory=list)  #: training loss of every step
    val_accuracy: float = float("nan")  #: accuracy on the held-out split (nan when it is empty)
    train_indices: list[int] = field(default_factory=list)
    val_indices: list[int] = field(default_factory=list)


def _item(sample: Any) -> tuple[Tensor, int]:
    if isinstance(sample, dict):
        return sample["video"], int(sample["label"])
    video, label = sample[0], sample[1]
    return video, int(label)


def _batch(dataset: Any, idx: list[int]) -> tuple[Tensor, Tensor]:
    items = [_item(dataset[i]) for i in idx]
    return torch.stack([v.float() for v, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def train_classifier(
    dataset: Any,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    device: torch.device | str = "cpu",
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    width: int = 32,
    val_fraction: float = 0.2,
    weight_decay: float = 0.01,
    progress: bool = True,
) -> ClassifierTrainResult:
    """Train a :class:`VideoClassifier` on a map-style dataset of labelled clips.

    Args:
        dataset: ``len(dataset)`` and ``dataset[i]`` -> ``(video, label)`` or
            ``{"video": ..., "label": ...}``, video (3, T, H, W) in [-1, 1], label an int.
        steps: optimisation steps (AdamW, cross-entropy; batches drawn without replacement,
            reshuffled every pass).
        seed: seeds the split, the initialisation and the batch order (the global RNG is untouched).
        out_dir: when given, the trained classifier and ``train_log.json`` are saved there.
        num_classes: default ``dataset.num_classes``, else ``len(dataset.classes)``, else 1 + the
            largest label (reading every item once).
        val_fraction: fraction of the dataset held out for ``val_accuracy``.
    """
    n = len(dataset)
    if n < 2:
        raise ValueError("the dataset needs at least 2 clips")
    if steps < 0 or batch_size < 1:
        raise ValueError("steps must be >= 0 and batch_size >= 1")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = min(n - 1, int(round(n * val_fraction)))
    val_idx, train_idx = sorted(perm[:n_val]), perm[n_val:]

    first, _ = _item(dataset[train_idx[0]])
    if first.ndim != 4 or first.shape[2] != first.shape[3]:
        raise ValueError(f"clips must be (C, T, S, S); got {tuple(first.shape)}")
    if num_classes is None:
        num_classes = getattr(dataset, "num_classes", None)
    if num_classes is None and getattr(dataset, "classes", None) is not None:
        num_classes = len(dataset.classes)  # larp_lab.data datasets name their classes
    if num_classes is None:  # last resort: read every item once
        num_classes = 1 + max(_item(dataset[i])[1] for i in range(n))
    cfg = ClassifierConfig(int(num_classes), int(first.shape[1]), int(first.shape[2]), width, int(first.shape[0]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoClassifier(cfg)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    from tqdm.auto import tqdm

    losses: list[float] = []
    order: list[int] = []
    bar = tqdm(range(steps), desc="classifier", disable=not progress)
    for _ in bar:
        if len(order) < min(batch_size, len(train_idx)):
            order += [train_idx[i] for i in torch.randperm(len(train_idx), generator=g).tolist()]
        idx, order = order[:batch_size], order[batch_size:]
        x, y = _batch(dataset, idx)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    model.eval()

    val_acc = float("nan")
    if val_idx:
        correct = 0
        for start in range(0, len(val_idx), batch_size):
            x, y = _batch(dataset, val_idx[start : start + batch_size])
            with torch.inference_mode():
                correct += int((model(x.to(device)).argmax(-1).cpu() == y).sum())
        val_acc = correct / len(val_idx)

    result = ClassifierTrainResult(model, losses, val_acc, sorted(train_idx), val_idx)
    if out_dir is not None:
        out = Path(out_dir)
        log = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "weight_decay": weight_decay,
               "val_accuracy": val_acc, "num_train": len(train_idx), "num_val": len(val_idx), "losses": losses}
        model.save_pretrained(out, metadata={"val_accuracy": val_acc, "steps": steps, "seed": seed})
        text = json.dumps(log, indent=2) + "\n"
        atomic_write_bytes(out / "train_log.json", lambda p: Path(p).write_text(text, encoding="utf-8"))
    return result


# ================================================================================================
#                                           Metrics
# ================================================================================================


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def classifier_stats(
    videos: Iterable[Any], classifier: VideoClassifier, *, max_items: int | None = None, progress: bool = False
) -> FeatureStats:
    """:class:`FeatureStats` of the classifier features of an iterable of video batches."""
    dev = _device_of(classifier)

    def feats(v: Tensor) -> Tensor:
        with torch.inference_mode():
            return classifier.features(v.to(dev, torch.float32)).cpu()

    with _eval_mode(classifier):
        return compute_stats(videos, feats, description=f"classifier:{classifier.config.to_dict()}",
                             max_items=max_items, progress=progress, desc="classifier features")


def proxy_fvd(
    real_videos: Iterable[Any] | FeatureStats,
    fake_videos: Iterable[Any] | FeatureStats,
    classifier: VideoClassifier,
    *,
    max_items: int | None = None,
    progress: bool = False,
) -> float:
    """Fréchet distance of classifier features between real and generated clips (B, 3, T, H, W).

    Either side may be precomputed :class:`FeatureStats` (e.g. the real set, computed once).
    """
    real = real_videos if isinstance(real_videos, FeatureStats) else classifier_stats(
        real_videos, classifier, max_items=max_items, progress=progress)
    fake = fake_videos if isinstance(fake_videos, FeatureStats) else classifier_stats(
        fake_videos, classifier, max_items=max_items, progress=progress)
    return fvd_from_stats(real, fake)


def class_accuracy(videos: Tensor, labels: Tensor, classifier: VideoClassifier, batch_size: int = 32) -> float:
    """Fraction of clips (N, 3, T, H, W) whose predicted class equals ``labels`` (N,)."""
    if videos.shape[0] != labels.shape[0]:
        raise ValueError(f"{videos.shape[0]} videos but {labels.shape[0]} labels")
    if videos.shape[0] == 0:
        raise ValueError("no videos")
    dev = _device_of(classifier)
    correct = 0
    with _eval_mode(classifier), torch.inference_mode():
        for v, y in zip(videos.split(batch_size), labels.split(batch_size)):
            correct += int((classifier(v.to(dev, torch.float32)).argmax(-1).cpu() == y.cpu().long()).sum())
    return correct / videos.shape[0]
