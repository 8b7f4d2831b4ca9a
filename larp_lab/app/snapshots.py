"""The app's Training tab: scrub through the bundled tokenizer's training snapshots on the same held-out clips.

:func:`snapshot_list` lists the snapshots (``checkpoints/<tokenizer>-snapshots/step<N>``, then the bundled
model itself when its config.json says how many steps it was trained for). :func:`snapshot_report`
measures all of them once per (checkpoints folder, tokenizer, clips, seed, device) and keeps the result
(:func:`larp_lab.analysis.measure_snapshots`, about a second for the tiny bundle on a CPU); :func:`scrub`
renders one snapshot (its reconstructions and query maps beside the originals, the curves with a line
at its step, its numbers), keeping the rendered images too, so moving the slider back and forth is quick.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import viz
from ..analysis.snapshots import Snapshot, SnapshotReport, list_snapshots, measure_snapshots
from ..bundled import (
    DEFAULT_TOKENIZER,
    bundled_path,
    find_checkpoints_dir,
    has_snapshots,
    model_metadata,
    snapshots_path,
    training_data,
)
from ..viz.notebook import bundled_clips
from .figures import image

__all__ = ["APP_CLIPS", "INTRO", "available", "index_of_step", "scrub", "snapshot_list", "snapshot_report", "step_text",
           "warm_up"]

#: held-out clips measured per snapshot in the app (numbers), of which SHOWN are drawn
APP_CLIPS = 20
SHOWN = 4
#: what to notice, shown above the slider
INTRO = (
    "The bundled tokenizer was saved a handful of times while it trained (steps spaced evenly on a log scale). "
    "Every snapshot here reconstructs **the same held-out digits**. Move the slider from the first snapshot to "
    "the final model and watch the grey blur become digits, each query's attention (right; its home cell "
    "in cyan) narrow from the whole frame to a small region, and in the curves the codebook fill up and the "
    "prior's bits per token fall below the uniform line (red line: the snapshot shown)."
)

_REPORTS: dict[tuple, SnapshotReport] = {}
_IMAGES: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
_LOCK = threading.Lock()
_MAX_IMAGES = 64


def available(name: str = DEFAULT_TOKENIZER) -> bool:
    """True when the bundled tokenizer ``name`` has a snapshots folder (never raises)."""
    return has_snapshots(name)


def snapshot_list(name: str = DEFAULT_TOKENIZER) -> list[Snapshot]:
    """The snapshots of the bundled tokenizer ``name`` in step order, ending with the bundled model itself when
    its config.json metadata gives its step count ("steps"). Raises SnapshotError / CheckpointError."""
    steps = model_metadata(name).get("steps")
    final = bundled_path(name) if isinstance(steps, int) and steps > 0 else None
    return list_snapshots(snapshots_path(name), final)


def _key(name: str, n_clips: int, seed: int, device) -> tuple:
    return (str(find_checkpoints_dir()), name, int(n_clips), int(seed), str(torch.device(device)))


def snapshot_report(name: str = DEFAULT_TOKENIZER, *, n_clips: int = APP_CLIPS, seed: int = 0,
                    device: torch.device | str = "cpu") -> SnapshotReport:
    """The measured snapshots of ``name`` on ``n_clips`` held-out clips of the data it was trained on
    (:func:`~larp_lab.viz.notebook.bundled_clips`, one digit after another), computed once and kept."""
    key = _key(name, n_clips, seed, device)
    with _LOCK:
        if key not in _REPORTS:
            from ..models.tokenizer import LARPTokenizer

            snaps = snapshot_list(name)
            last = LARPTokenizer.from_pretrained(snaps[-1].path)  # for the clip size (and it is small)
            clips, _, _ = bundled_clips(last, n_clips, seed, kind=training_data(name) or "synthetic")
            _REPORTS[key] = measure_snapshots(snaps, clips, device, keep=SHOWN)
        return _REPORTS[key]


def warm_up(name: str = DEFAULT_TOKENIZER, device: torch.device | str = "cpu") -> threading.Thread:
    """Measure the snapshots in the background (a few seconds), so the Training tab answers at once; a
    failure is left for the tab to report."""

    def run() -> None:
        try:
            snapshot_report(name, device=device)
        except Exception:  # noqa: BLE001 - shown by the tab's own call
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def step_text(report: SnapshotReport, index: int) -> str:
    """``"**step 718** of 8799: snapshot 4 of 7, PSNR 19.45 dB"`` (Markdown)."""
    i = int(index)
    last = int(report.steps[-1])
    what = "the final model" if report.final[i] else f"snapshot {i + 1} of {len(report)}"
    return (f"**{report.labels[i]}** of {last} ({what}): PSNR {report.psnr[i]:.2f} dB on {report.num_clips} "
            f"held-out clips, {int(report.used_codes[i])} codes used, {report.prior_bits[i]:.2f} bits per token "
            f"(uniform {report.uniform_bits:.2f}).")


def scrub(index: int | None, name: str = DEFAULT_TOKENIZER, *, n_clips: int = APP_CLIPS, seed: int = 0,
          device: torch.device | str = "cpu") -> dict[str, Any]:
    """Snapshot ``index`` (0 = the earliest; None or -1 = the last) of ``name``: ``{"grid": (H, W, 3) uint8,
    "curves": (H, W, 3) uint8, "text": Markdown, "info": its numbers and every snapshot's steps, "index": i}``.

    Raises ValueError for an index outside the snapshots (and SnapshotError / CheckpointError without them).
    """
    rep = snapshot_report(name, n_clips=n_clips, seed=seed, device=device)
    i = len(rep) - 1 if index is None or int(index) == -1 else int(index)
    if not 0 <= i < len(rep):
        raise ValueError(f"snapshot {index} does not exist: there are {len(rep)} (0 to {len(rep) - 1})")
    key = (*_key(name, n_clips, seed, device), i)
    with _LOCK:
        imgs = _IMAGES.get(key)
        if imgs is not None:
            _IMAGES.move_to_end(key)
    if imgs is None:
        imgs = {"grid": image(viz.snapshot_grid(rep, rows=[i])),
                "curves": image(viz.snapshot_curves(rep, highlight=i))}
        with _LOCK:
            _IMAGES[key] = imgs
            while len(_IMAGES) > _MAX_IMAGES:
                _IMAGES.popitem(last=False)
    info = {**rep.row(i), "uniform_bits_per_token": round(rep.uniform_bits, 3),
            "own_cell_chance": round(rep.own_cell_chance, 4), "clips": rep.num_clips,
            "steps": rep.steps.tolist(), "index": i, "checkpoint": Path(rep.paths[i]).name}
    return {**imgs, "text": step_text(rep, i), "info": info, "index": i}


def index_of_step(step: int | None, name: str = DEFAULT_TOKENIZER, **kw) -> int:
    """The index of the snapshot saved at ``step`` (None or -1: the last), for the API; ValueError when none."""
    rep = snapshot_report(name, **kw)
    if step is None or int(step) == -1:
        return len(rep) - 1
    try:
        return rep.index_of(int(step))
    except KeyError:
        raise ValueError(f"no snapshot at step {int(step)}; steps: {rep.steps.tolist()}") from None
