"""Write the example clips of examples/ (the app's examples, the tests' and the notebooks' clips).

    python scripts/make_examples.py [--out examples] [--kinds digits synthetic] [--check]

* ``digits_<d>.mp4``: held-out moving digits (:class:`larp_lab.data.digits.MovingDigits`, split
  ``"heldout"``: handwriting never used in training), the first clip of each digit in ``DIGITS``,
  ``FRAMES`` frames of ``SIZE``x``SIZE`` (the bundled models' clips) upscaled ``SCALE`` times with
  nearest-neighbour pixels for viewing (a 32x32 video is a stamp in a player, and H.264's half-size
  colour planes would smear the colours of a 32-pixel clip). A model reading one at its own size
  gets the clip back: read at 32x32 the first 8 frames are the held-out clip within the codec's error
  (``--check`` measures it).
* ``synthetic_*.mp4``: three clips of the procedural synthetic set (``SyntheticVideos(100, 16, 64,
  seed=2026)``, items 24, 27 and 34), as first made.

``bigbuckbunny_128.mp4`` (real footage) is cut from the original film, see examples/README.md.
Every clip is written with :func:`larp_lab.data.video.write_video` (H.264, yuv420p) at 8 fps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

DIGITS = (3, 5, 7, 9)  #: one clip of each of these digits
SIZE, FRAMES, SCALE, SEED, FPS, CRF = 32, 24, 4, 2026, 8.0, 18
SYNTHETIC = {"bouncing": 24, "rotating": 27, "expanding_ring": 34}  #: file name -> item of SyntheticVideos


def digit_clips(digits=DIGITS, size: int = SIZE, frames: int = FRAMES, seed: int = SEED,
                ) -> dict[int, tuple[int, np.ndarray]]:
    """{digit: (index, uint8 clip (3, frames, size, size))}: the first held-out clip of each digit."""
    from larp_lab.data.digits import MovingDigits

    data = MovingDigits(num_clips=1000, frames=frames, size=size, seed=seed, split="heldout")
    out: dict[int, tuple[int, np.ndarray]] = {}
    for start in range(0, len(data), 100):
        clips, labels = data.render(range(start, start + 100))
        for i, label in enumerate(labels.tolist()):
            if label in digits and label not in out:
                out[label] = (start + i, clips[i])
        if len(out) == len(digits):
            return out
    raise RuntimeError(f"no held-out clip of digits {sorted(set(digits) - set(out))} in {len(data)} clips")


def upscale(clip: np.ndarray, scale: int) -> torch.Tensor:
    """uint8 (3, T, S, S) -> float (3, T, S*scale, S*scale) in [-1, 1], nearest-neighbour."""
    x = torch.from_numpy(clip).float().div(127.5).sub(1.0)
    return x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)


def write_digits(out: Path, check: bool) -> list[Path]:
    from larp_lab.data.video import read_video, write_video

    paths = []
    for digit, (index, clip) in sorted(digit_clips().items()):
        path = write_video(out / f"digits_{digit}.mp4", upscale(clip, SCALE), fps=FPS, crf=CRF)
        paths.append(path)
        line = f"{path.name}: held-out clip {index} (digit {digit}), {FRAMES}x{SIZE * SCALE}x{SIZE * SCALE}"
        if check:  # what a 32x32, 8-frame model reads back, against the rendered clip
            back = read_video(path, 8, size=SIZE)
            ref = torch.from_numpy(clip[:, :8]).float().div(127.5).sub(1.0)
            mse = float((back - ref).pow(2).mean()) / 4.0  # on [0, 1]
            line += f"; read back at {SIZE}x{SIZE}: PSNR {10 * np.log10(1.0 / max(mse, 1e-12)):.1f} dB"
        print(f"{line}, {path.stat().st_size / 1024:.1f} KiB")
    return paths


def write_synthetic(out: Path) -> list[Path]:
    from larp_lab.data.synthetic import SyntheticVideos
    from larp_lab.data.video import write_video

    data = SyntheticVideos(100, 16, 64, seed=2026)
    paths = []
    for name, item in SYNTHETIC.items():
        path = write_video(out / f"synthetic_{name}.mp4", data[item]["video"], fps=FPS, crf=CRF)
        paths.append(path)
        print(f"{path.name}: SyntheticVideos item {item}, {path.stat().st_size / 1024:.1f} KiB")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "examples")
    p.add_argument("--kinds", nargs="+", choices=["digits", "synthetic"], default=["digits"],
                   help="which clips to (re)write (default: digits)")
    p.add_argument("--check", action="store_true", help="read each digits clip back at 32x32 and print its PSNR")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if "digits" in a.kinds:
        write_digits(a.out, a.check)
    if "synthetic" in a.kinds:
        write_synthetic(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
