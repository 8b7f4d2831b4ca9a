"""Draw the moving-digits picture of larp_lab/data/README.md: one held-out clip per digit, every frame.

    python scripts/digits_picture.py [--out docs/moving_digits.png] [--seed 10000] [--scale 3]

The clips are those of the CPU bundle (32x32, 8 frames, ``split="heldout"``; seed 10,000 is the
bundled recipe's held-out seed): row d is the first clip whose label is d, frames left to right,
each pixel drawn as a ``scale`` x ``scale`` block (no smoothing). The picture is a pure function of
the arguments, so running the script again rewrites the same PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def digits_picture(out: str | Path, seed: int = 10_000, scale: int = 3, frames: int = 8, size: int = 32) -> Path:
    """Write the picture (one row per digit 0..9) to ``out`` (a .png); returns its path."""
    import numpy as np
    import torch

    from larp_lab.data import NUM_DIGIT_CLASSES, MovingDigits, save_frame_grid

    ds = MovingDigits(num_clips=1000, frames=frames, size=size, seed=seed, split="heldout")
    clips, labels = ds.render(range(len(ds)))
    rows = [int(np.flatnonzero(labels == d)[0]) for d in range(NUM_DIGIT_CLASSES)]
    video = torch.from_numpy(clips[rows]).float() / 127.5 - 1.0  # (10, 3, T, S, S)
    video = video.repeat_interleave(scale, dim=3).repeat_interleave(scale, dim=4)
    return save_frame_grid(out, video, frames=frames, gap=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "moving_digits.png")
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--scale", type=int, default=3)
    a = p.parse_args(argv)
    print(digits_picture(a.out, seed=a.seed, scale=a.scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
