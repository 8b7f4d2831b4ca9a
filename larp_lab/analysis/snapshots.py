"""How the latent space forms: the same held-out clips through a tokenizer's training snapshots.

The bundled recipe saves the tokenizer (fp16, bundled format) at about 8 log-spaced steps into
``<snapshots>/step<NNNNNN>/`` (config.json metadata ``{"snapshot_step", "max_steps"}``). Here:

* :func:`list_snapshots` finds them (sorted by step, from the folder name, checked against the
  metadata), optionally followed by the final model (its step from its metadata ``"steps"``);
* :func:`bundled_snapshots` does that for the bundled tokenizer (``checkpoints/<name>-snapshots``);
* :func:`measure_snapshots` loads one snapshot at a time and measures it on the *same* clips:
  reconstructions (a few kept for display), PSNR and SSIM, codebook usage and perplexity on these
  clips, the prior's bits per token (beside the uniform ``log2 K``), and where the queries of the last
  encoder layer look: their own-cell share (:mod:`.locality`, beside chance), the normalised entropy
  of their patch maps, and the maps of a few chosen queries.

Typical use::

    snaps = bundled_snapshots()                                   # [Snapshot(step=58, ...), ..., final]
    videos, _, _ = bundled_clips(final_tok, 40, seed=0)           # larp_lab.viz.notebook
    rep = measure_snapshots(snaps, videos, "cpu")
    rep.table()                                                   # one row of numbers per snapshot
    rep.to_dict()                                                 # JSON-able (no pixels)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..bundled import DEFAULT_TOKENIZER, bundled_path, snapshots_path
from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME
from ..evaluation.codebook import CodebookStats
from ..evaluation.metrics import psnr, ssim
from ..models.token_cells import own_cell_mask, token_grid
from ._util import batches, to_numpy
from .attention import encoder_attention, encoder_layers, query_attention_maps, query_statistics
from .likelihood import prior_surprisal, to_bits
from .locality import own_cell_chance, own_cell_share

__all__ = ["Snapshot", "SnapshotError", "SnapshotReport", "bundled_snapshots", "list_snapshots", "measure_snapshots"]

#: a snapshot folder's name: ``step`` and the step number (zero-padded by the recipe), e.g. ``step000718``
SNAPSHOT_NAME = re.compile(r"^step(\d+)$")


class SnapshotError(ValueError):
    """A snapshots folder that cannot be read as one: missing, empty, a malformed name, a step that
    disagrees with the metadata, two snapshots at one step."""


@dataclass(frozen=True)
class Snapshot:
    """One point of the scrub: a tokenizer checkpoint directory and the training step it was saved at."""

    step: int
    path: Path
    final: bool = False  #: the trained model itself (the last point), not a snapshot folder
    max_steps: int | None = None  #: the schedule's length when it was saved (metadata), when known

    @property
    def label(self) -> str:
        """``"step 718"``, or ``"step 8799 (final)"``."""
        return f"step {self.step}" + (" (final)" if self.final else "")


def _metadata(directory: Path) -> dict:
    try:
        meta = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")).get("metadata")
    except (OSError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"{directory}: unreadable {CONFIG_NAME} ({exc})") from None
    return meta if isinstance(meta, dict) else {}


def _step_of_final(directory: Path) -> int:
    meta = _metadata(directory)
    for key in ("steps", "snapshot_step"):
        v = meta.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    raise SnapshotError(f"final model {directory}: its {CONFIG_NAME} metadata says no 'steps' (the step it was "
                        "trained to); pass final=None to scrub through the snapshots only")


def list_snapshots(root, final=None) -> list[Snapshot]:
    """The snapshots in ``root``, sorted by step, then the final model ``final`` (a checkpoint directory) if given.

    Every sub-folder of ``root`` must be named ``step<N>`` (N the step, any zero-padding) and hold a
    ``config.json`` and ``model.safetensors``; files and hidden entries are ignored. A snapshot's
    ``metadata["snapshot_step"]``, when present, must equal N. The final model's step is its metadata
    ``"steps"``; a snapshot saved at that very step is the same point and is replaced by the final model;
    a snapshot after it is refused.

    Raises:
        SnapshotError (a ValueError): ``root`` missing or holding no snapshot, a malformed name, an
            incomplete snapshot, two snapshots at one step, a step disagreeing with the metadata, or a
            final model without a step or older than a snapshot.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SnapshotError(f"{root}: no such snapshots folder (it should hold step<N>/ tokenizer checkpoints)")
    out: dict[int, Snapshot] = {}
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        m = SNAPSHOT_NAME.match(d.name)
        if m is None:
            raise SnapshotError(f"{d}: not a snapshot name; snapshot folders are named step<N> (e.g. step000718)")
        step = int(m.group(1))
        missing = [f for f in (CONFIG_NAME, WEIGHTS_NAME) if not (d / f).is_file()]
        if missing:
            raise SnapshotError(f"{d}: incomplete snapshot (no {', '.join(missing)})")
        meta = _metadata(d)
        if "snapshot_step" in meta and meta["snapshot_step"] != step:
            raise SnapshotError(f"{d}: the folder says step {step} but its metadata says {meta['snapshot_step']}")
        if step in out:
            raise SnapshotError(f"{d}: two snapshots at step {step} ({out[step].path.name} and {d.name})")
        ms = meta.get("max_steps")
        out[step] = Snapshot(step, d, max_steps=ms if isinstance(ms, int) else None)
    if not out:
        raise SnapshotError(f"{root}: no snapshots (step<N>/ tokenizer checkpoints) in this folder")
    snaps = [out[s] for s in sorted(out)]
    if final is not None:
        fdir = Path(final).expanduser()
        if not (fdir / CONFIG_NAME).is_file():
            raise SnapshotError(f"final model {fdir}: no {CONFIG_NAME} there")
        fstep = _step_of_final(fdir)
        if snaps[-1].step > fstep:
            raise SnapshotError(f"final model {fdir} was trained to step {fstep} but {snaps[-1].path} is later "
                                f"(step {snaps[-1].step}): are they from the same run?")
        snaps = [s for s in snaps if s.step != fstep]
        snaps.append(Snapshot(fstep, fdir, final=True, max_steps=out[max(out)].max_steps))
    return snaps


def bundled_snapshots(name: str = DEFAULT_TOKENIZER, include_final: bool = True) -> list[Snapshot]:
    """:func:`list_snapshots` of the bundled tokenizer ``name`` (``<checkpoints>/<name>-snapshots``), ending
    with the bundled model itself when ``include_final``."""
    return list_snapshots(snapshots_path(name), bundled_path(name) if include_final else None)


# ================================================================================================
#                                          Measuring
# ================================================================================================


@dataclass
class SnapshotReport:
    """What :func:`measure_snapshots` returns (S snapshots, B clips, K codes, Q chosen queries, k kept clips).

    Numbers are float64 numpy; ``*_clip`` arrays hold one value per clip, the others are means over the clips.
    """

    steps: np.ndarray  #: int64 (S,)
    labels: list[str]  #: (S,) "step 718", ..., "step 8799 (final)"
    final: np.ndarray  #: bool (S,): the final model
    psnr_clip: np.ndarray  #: (S, B) dB
    ssim_clip: np.ndarray  #: (S, B)
    usage: np.ndarray  #: (S,) fraction of the K codes used on these clips
    used_codes: np.ndarray  #: int64 (S,)
    perplexity: np.ndarray  #: (S,) exp(entropy) of the codes used on these clips, in [1, K]
    prior_bits_clip: np.ndarray  #: (S, B) mean prior surprisal per token (bits; NaN without a prior)
    own_cell: np.ndarray  #: (S,) mean own-cell attention share of the queries (last encoder layer, heads averaged)
    attention_entropy: np.ndarray  #: (S,) mean normalised entropy of the queries' patch maps (1 = uniform)
    patch_mass: np.ndarray  #: (S,) mean attention of a query on the patches (the rest stays among the queries)
    indices: np.ndarray  #: int64 (S, B, N) token ids of every clip
    originals: np.ndarray  #: float32 (k, 3, T, H, W) the kept clips, in [-1, 1]
    reconstructions: np.ndarray  #: float32 (S, k, 3, T, H, W) their reconstructions, clamped to [-1, 1]
    queries: list[int]  #: (Q,) the queries whose maps are kept
    query_maps: np.ndarray  #: float32 (S, k, Q, t, h, w) their last-layer maps (heads averaged)
    codebook_size: int
    num_tokens: int
    uniform_bits: float  #: log2 K: the bits per token of a prior that knows nothing
    own_cell_chance: float  #: the own-cell share of uniform attention
    cells: tuple[int, int, int]  #: the token cell grid of the own-cell share
    layer: int  #: the encoder layer of the attention numbers
    paths: list[str] = field(default_factory=list)  #: (S,) the checkpoint directories

    # ------------------------------------------------------------------------------ derived
    @property
    def psnr(self) -> np.ndarray:
        """(S,) mean PSNR over the clips (dB)."""
        return self.psnr_clip.mean(1)

    @property
    def ssim(self) -> np.ndarray:
        """(S,) mean SSIM over the clips."""
        return self.ssim_clip.mean(1)

    @property
    def prior_bits(self) -> np.ndarray:
        """(S,) mean prior bits per token over the clips."""
        return self.prior_bits_clip.mean(1)

    @property
    def num_clips(self) -> int:
        return int(self.psnr_clip.shape[1])

    def __len__(self) -> int:
        return len(self.steps)

    def index_of(self, step: int) -> int:
        """The row of the snapshot saved at ``step`` (KeyError when there is none)."""
        hit = np.flatnonzero(self.steps == int(step))
        if not hit.size:
            raise KeyError(f"no snapshot at step {step}; steps: {self.steps.tolist()}")
        return int(hit[0])

    def row(self, i: int) -> dict:
        """The numbers of snapshot ``i`` as plain Python (what the app shows and the JSON holds)."""
        return {
            "step": int(self.steps[i]), "label": self.labels[i], "final": bool(self.final[i]),
            "psnr_db": round(float(self.psnr[i]), 3), "ssim": round(float(self.ssim[i]), 4),
            "codebook_usage": round(float(self.usage[i]), 4), "used_codes": int(self.used_codes[i]),
            "perplexity": round(float(self.perplexity[i]), 2),
            "prior_bits_per_token": round(float(self.prior_bits[i]), 3),
            "own_cell_attention": round(float(self.own_cell[i]), 4),
            "attention_entropy": round(float(self.attention_entropy[i]), 4),
            "patch_mass": round(float(self.patch_mass[i]), 4),
        }

    def table(self) -> list[dict]:
        """One :meth:`row` per snapshot, in step order."""
        return [self.row(i) for i in range(len(self))]

    def to_dict(self) -> dict:
        """Everything but the pixels and maps, JSON-able: the rows, the reference figures and the setup."""
        return {
            "snapshots": self.table(), "clips": self.num_clips, "codebook_size": self.codebook_size,
            "num_tokens": self.num_tokens, "uniform_bits_per_token": round(self.uniform_bits, 4),
            "own_cell_chance": round(self.own_cell_chance, 4), "cells": list(self.cells),
            "attention_layer": self.layer, "queries_shown": list(self.queries),
            "checkpoints": [Path(p).name for p in self.paths],  # folder names: no machine paths in a shared JSON
        }


def _default_queries(num_tokens: int, count: int = 2) -> list[int]:
    """``count`` queries spread over the token sequence (a third and two thirds of the way for two)."""
    return sorted({min(num_tokens - 1, round(num_tokens * (i + 1) / (count + 1))) for i in range(count)})


@torch.no_grad()
def _measure_one(tok, clips: Tensor, keep: int, queries: list[int], layer: int | None, batch_size: int,
                 mask: Tensor) -> dict:
    """The numbers of one tokenizer on ``clips`` (B, 3, T, H, W), in batches."""
    K = tok.config.codebook_size
    stats = CodebookStats(K)
    ps, ss, idx, own, ent, mass, kept_rec, kept_maps = [], [], [], [], [], [], [], []
    used_layer = None
    for sl in batches(clips.shape[0], batch_size):
        x = clips[sl].to(tok.device)
        enc, cache = encoder_attention(tok, x)  # eval(), argmax codes; attention of every encoder layer
        rec = tok.decode(enc.embeddings, enc.video_shape).float().clamp(-1, 1)  # (b, 3, T, H, W)
        layers = encoder_layers(cache)
        if layer is not None and not -len(layers) <= layer < len(layers):
            raise ValueError(f"layer {layer} is outside the encoder's {len(layers)} layers")
        used_layer = layers[-1] if layer is None else layers[layer]
        maps = query_attention_maps(cache, layers=[used_layer])[:, 0].mean(1)  # (b, N, t, h, w) heads averaged
        ps.append(psnr(rec, x).double().cpu())
        ss.append(ssim(rec, x).double().cpu())
        idx.append(enc.indices.cpu())
        stats.update(enc.indices)
        own.append(torch.from_numpy(own_cell_share(maps, mask)))
        q = query_statistics(maps)
        ent.append(torch.from_numpy(q.entropy))
        mass.append(torch.from_numpy(q.mass))
        have = sum(r.shape[0] for r in kept_rec)
        if have < keep:
            kept_rec.append(rec[: keep - have].cpu())
            kept_maps.append(maps[: keep - have, queries].cpu())
    indices = torch.cat(idx)
    bits = (to_numpy(to_bits(prior_surprisal(tok, indices, batch_size))).astype(np.float64).mean(1)
            if tok.prior is not None else np.full(indices.shape[0], np.nan))
    summary = stats.summary()
    return {
        "psnr": torch.cat(ps).numpy(), "ssim": torch.cat(ss).numpy(), "indices": indices.numpy(),
        "usage": summary["usage"], "used_codes": summary["used_codes"], "perplexity": summary["perplexity"],
        "bits": bits, "own": float(torch.cat(own).mean()), "entropy": float(torch.cat(ent).mean()),
        "mass": float(torch.cat(mass).mean()), "rec": torch.cat(kept_rec).numpy().astype(np.float32),
        "maps": torch.cat(kept_maps).float().numpy(), "layer": used_layer, "K": K,
    }


def measure_snapshots(snapshots: list[Snapshot], clips: Tensor, device: torch.device | str = "cpu", *,
                      keep: int = 4, queries: list[int] | None = None, layer: int | None = None,
                      batch_size: int = 16, cells: tuple[int, int, int] | None = None) -> SnapshotReport:
    """Measure every snapshot on the same ``clips``, loading one tokenizer at a time.

    Args:
        snapshots: from :func:`list_snapshots` (any order; measured and reported in that order).
        clips: float32 (B, 3, T, H, W) in [-1, 1] at the tokenizers' clip size (e.g. held-out clips of
            the data they were trained on, :func:`larp_lab.viz.notebook.bundled_clips`).
        device: where each tokenizer runs; results come back on the CPU.
        keep: how many of the clips' reconstructions and query maps to keep for display (the first ones;
            at least 1, at most B).
        queries: the queries whose maps are kept (default: two spread over the sequence).
        layer: the encoder layer of the attention numbers (default: the last; negative counts from the end).
        cells: the token cell grid of the own-cell share (default :func:`~larp_lab.models.token_cells.token_grid`).
    Returns:
        :class:`SnapshotReport`. All snapshots must share num_tokens, codebook size and clip size.
    """
    from ..models.tokenizer import LARPTokenizer

    if not snapshots:
        raise SnapshotError("measure_snapshots: no snapshots given")
    clips = torch.as_tensor(clips).float()
    if clips.ndim != 5 or clips.shape[0] < 1:
        raise ValueError(f"clips must be (B, 3, T, H, W) with B >= 1; got {tuple(clips.shape)}")
    keep = max(1, min(int(keep), clips.shape[0]))
    rows, shape = [], None
    for snap in snapshots:
        tok = LARPTokenizer.from_pretrained(snap.path, device=device)
        c = tok.config
        this = (c.num_tokens, c.codebook_size, c.frame_num, c.input_size, c.patch_grid)
        if shape is None:
            shape = this
            qs = _default_queries(c.num_tokens) if queries is None else [int(q) for q in queries]
            if any(not 0 <= q < c.num_tokens for q in qs):
                raise ValueError(f"queries must lie in [0, {c.num_tokens}); got {qs}")
            grid = token_grid(c.num_tokens, c.patch_grid) if cells is None else tuple(int(v) for v in cells)
            mask = own_cell_mask(c.num_tokens, c.patch_grid, grid)
        elif this != shape:
            raise SnapshotError(f"{snap.path}: (tokens, codes, frames, size, patch grid) {this} differ from the "
                                f"first snapshot's {shape}; snapshots of one run share them")
        rows.append(_measure_one(tok, clips, keep, qs, layer, batch_size, mask))
        del tok  # one model in memory at a time
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    K = rows[0]["K"]
    return SnapshotReport(
        steps=np.array([s.step for s in snapshots], dtype=np.int64),
        labels=[s.label for s in snapshots],
        final=np.array([s.final for s in snapshots], dtype=bool),
        psnr_clip=np.stack([r["psnr"] for r in rows]),
        ssim_clip=np.stack([r["ssim"] for r in rows]),
        usage=np.array([r["usage"] for r in rows], dtype=np.float64),
        used_codes=np.array([r["used_codes"] for r in rows], dtype=np.int64),
        perplexity=np.array([r["perplexity"] for r in rows], dtype=np.float64),
        prior_bits_clip=np.stack([r["bits"] for r in rows]),
        own_cell=np.array([r["own"] for r in rows]),
        attention_entropy=np.array([r["entropy"] for r in rows]),
        patch_mass=np.array([r["mass"] for r in rows]),
        indices=np.stack([r["indices"] for r in rows]),
        originals=clips[:keep].numpy().astype(np.float32),
        reconstructions=np.stack([r["rec"] for r in rows]),
        queries=qs,
        query_maps=np.stack([r["maps"] for r in rows]),
        codebook_size=K,
        num_tokens=shape[0],
        uniform_bits=math.log2(K),
        own_cell_chance=own_cell_chance(mask),
        cells=tuple(grid),
        layer=int(rows[0]["layer"]),
        paths=[str(s.path) for s in snapshots],
    )
