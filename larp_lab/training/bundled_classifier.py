"""Stage 4 of the bundled recipe: does the proxy classifier have to change, and if so, retrain it.

The bundled classifier (``checkpoints/larp-tiny-classifier``) measures the class accuracy and proxy
FVD of generated clips. It is kept when its config matches the clips (classes, frames, size) and it
recognises at least ``min_accuracy`` of held-out synthetic clips; otherwise a new one (same width)
is trained on the pool's synthetic clips within a time share.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .pool import ClipPool, to_float

__all__ = ["CLASSIFIER_NAME", "PoolClassifierData", "classifier_accuracy", "decide_classifier", "retrain_classifier"]

#: the directory name of the bundled proxy classifier (the other names come from larp_lab.bundled)
CLASSIFIER_NAME = "larp-tiny-classifier"


class PoolClassifierData(torch.utils.data.Dataset):
    """(video float (3, T, S, S), label) of the labelled rows of a pool (for ``train_classifier``)."""

    def __init__(self, pool: ClipPool, rows: torch.Tensor, num_classes: int) -> None:
        self.pool, self.rows, self.num_classes = pool, rows, num_classes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        r = self.rows[i : i + 1]
        return to_float(self.pool.clips[r.to(self.pool.device)])[0], int(self.pool.labels[r])


@torch.no_grad()
def classifier_accuracy(clf, val: ClipPool, device: torch.device, clips: int, batch: int = 48) -> float:
    rows = torch.arange(min(clips, val.num_synthetic))
    correct = 0
    for i in range(0, len(rows), batch):
        r = rows[i : i + batch]
        pred = clf(val.gather(r).to(device)).argmax(-1).cpu()
        correct += int((pred == val.labels[r.to(val.labels.device)].cpu()).sum())
    return correct / max(1, len(rows))


def decide_classifier(mode: str, val: ClipPool, device: torch.device, *, clips: int, min_accuracy: float,
                      num_classes: int) -> dict[str, Any]:
    """Whether the bundled proxy classifier must change: ``{"decision": "keep" | "retrain", "reason", ...}``.

    ``auto`` keeps it when its config matches the pool (classes, frames, size) and it recognises at
    least ``min_accuracy`` of ``clips`` held-out synthetic clips; ``keep``/``retrain`` force a choice
    (``keep`` still needs a bundled classifier that matches the clips).
    """
    from ..bundled import checkpoints_dir
    from ..evaluation.classifier import VideoClassifier

    path = checkpoints_dir() / CLASSIFIER_NAME
    rec: dict[str, Any] = {"mode": mode, "bundled": str(path), "min_accuracy": min_accuracy}
    if mode == "retrain":
        return {**rec, "decision": "retrain", "reason": "asked for (--classifier retrain)"}
    if not (path / "config.json").is_file():
        if mode == "keep":
            raise FileNotFoundError(f"--classifier keep: no bundled classifier in {path}")
        return {**rec, "decision": "retrain", "reason": f"no bundled classifier in {path}"}
    clf = VideoClassifier.from_pretrained(path, device=device)
    c = clf.config
    want = (num_classes, val.spec.frames, val.spec.size)
    if (c.num_classes, c.frames, c.size) != want:
        reason = (f"the bundled classifier takes {c.frames}x{c.size} clips of {c.num_classes} classes, the pool holds "
                  f"{val.spec.frames}x{val.spec.size} clips of {num_classes}")
        if mode == "keep":
            raise ValueError(f"--classifier keep: {reason}")
        return {**rec, "decision": "retrain", "reason": reason}
    acc = classifier_accuracy(clf, val, device, clips)
    n = min(clips, val.num_synthetic)
    rec.update(accuracy=round(acc, 4), clips=n)
    if mode == "keep" or acc >= min_accuracy:
        return {**rec, "decision": "keep",
                "reason": f"matches the clips and recognises {acc:.1%} of {n} held-out synthetic clips"
                          + (f" (>= {min_accuracy:.0%})" if acc >= min_accuracy else " (kept as asked)")}
    return {**rec, "decision": "retrain", "reason": f"recognises only {acc:.1%} of {n} held-out clips (< {min_accuracy:.0%})"}


def retrain_classifier(pool: ClipPool, val: ClipPool, device: torch.device, share_s: float, num_classes: int,
                       seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Train a proxy classifier (width 16, as bundled) on the pool's synthetic clips (20% held out by
    ``train_classifier``) for as many steps as fit ``share_s`` after timing 3 of them; returns the
    classifier and its record (steps, accuracies, wall time)."""
    from ..evaluation.classifier import train_classifier

    rows = torch.arange(pool.num_synthetic)
    data = PoolClassifierData(pool, rows, num_classes)
    batch = 64 if device.type == "cuda" else 16
    t0 = time.monotonic()
    probe = PoolClassifierData(pool, rows[: min(len(rows), 4 * batch)], num_classes)
    train_classifier(probe, 3, batch_size=batch, device=device, seed=seed, width=16, val_fraction=0.0,
                     progress=False, num_classes=num_classes)
    sps = (time.monotonic() - t0) / 3
    eval_s = sps * 0.4 * math.ceil(0.2 * len(rows) / batch)
    steps = max(4, int((share_s - (time.monotonic() - t0) - eval_s) / (sps * 1.1)))
    res = train_classifier(data, steps, batch_size=batch, device=device, seed=seed, width=16, val_fraction=0.2,
                           progress=False, num_classes=num_classes)
    acc = classifier_accuracy(res.model, val, device, val.num_synthetic)
    return res.model, {"steps": steps, "batch_size": batch, "clips_seen": steps * batch,
                       "pool_val_accuracy": round(res.val_accuracy, 4), "num_val": len(res.val_indices),
                       "heldout_accuracy": round(acc, 4),
                       "final_loss": round(res.losses[-1], 5) if res.losses else None,
                       "wall_s": round(time.monotonic() - t0, 2)}
