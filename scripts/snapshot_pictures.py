"""Draw the training-snapshot pictures of the docs: how the bundled tokenizer's latent space formed.

    python scripts/snapshot_pictures.py [--out docs/snapshots] [--clips 40] [--seed 0] [--device cpu]

Runs ``larp-lab snapshots`` on the bundled tokenizer's snapshots (``checkpoints/larp-tiny-tokenizer-snapshots``,
then the bundled tokenizer itself) and the same held-out clips, and writes into ``--out``:

* ``snapshots.png``: rows = snapshots (step, PSNR), columns = four held-out clips' middle frame as each
  snapshot reconstructs them, then where two queries look (home cell in cyan);
* ``snapshot_curves.png``: PSNR / SSIM, codebook usage, prior bits per token, query attention vs step;
* ``snapshots.json``: the numbers behind them.

Rerun it whenever the bundle is retrained (its steps are read from the folder, nothing is hard-coded). The
pictures are a pure function of the bundle and the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from larp_lab.cli import main as cli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "snapshots")
    p.add_argument("--clips", type=int, default=40, help="held-out clips measured at every snapshot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    return cli(["snapshots", "--out", str(a.out), "--clips", str(a.clips), "--seed", str(a.seed), "--device", a.device])


if __name__ == "__main__":
    raise SystemExit(main())
