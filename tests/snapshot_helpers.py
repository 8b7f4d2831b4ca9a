"""Fake training snapshots for the tests of larp_lab.analysis.snapshots, the app's Training tab and the CLI:
micro tokenizers saved the way the bundled recipe saves its snapshots (``<root>/step<NNNNNN>/``, fp16,
metadata ``{"snapshot_step", "max_steps"}``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from larp_lab import LARPTokenizer
from larp_lab.bundled import DEFAULT_TOKENIZER, SNAPSHOTS_SUFFIX
from larp_lab.config import TOKENIZER_PRESETS

STEPS = (10, 40, 160)


def micro_tokenizer(seed: int, noise: float = 0.3, **overrides) -> LARPTokenizer:
    """A micro tokenizer (16 tokens, 64 codes, 32x32x8 clips) pushed off its init by ``noise`` (seeded)."""
    torch.manual_seed(seed)
    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]().replace(**overrides))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    return tok.eval()


def save_snapshot(tok: LARPTokenizer, root: Path, step: int, max_steps: int, name: str | None = None) -> Path:
    """``tok`` saved as the recipe saves a snapshot (fp16) into ``root/step<NNNNNN>`` (or ``root/name``)."""
    return tok.save_pretrained(root / (name or f"step{step:06d}"), dtype=torch.float16,
                               metadata={"snapshot_step": step, "max_steps": max_steps})


def save_fake_snapshots(root: Path, steps=STEPS, max_steps: int = 200, **overrides) -> list[Path]:
    """One differently perturbed micro tokenizer per step in ``root`` (created), in the recipe's layout."""
    root.mkdir(parents=True, exist_ok=True)
    return [save_snapshot(micro_tokenizer(100 + i, **overrides), root, s, max_steps) for i, s in enumerate(steps)]


def add_snapshots_to_bundle(bundle: Path, steps=STEPS, final_steps: int = 200) -> Path:
    """Snapshots beside the bundled tokenizer of a micro bundle (``<bundle>/<tokenizer>-snapshots``), and the
    tokenizer's config.json told how many steps it was trained for (as scripts/train_bundled.py writes it)."""
    cfg = bundle / DEFAULT_TOKENIZER / "config.json"
    body = json.loads(cfg.read_text())
    body.setdefault("metadata", {})["steps"] = final_steps
    cfg.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    depth = body["config"]["encoder_depth"]  # the micro bundle's tokenizer has one encoder layer
    root = bundle / f"{DEFAULT_TOKENIZER}{SNAPSHOTS_SUFFIX}"
    save_fake_snapshots(root, steps, final_steps, encoder_depth=depth)
    return root
