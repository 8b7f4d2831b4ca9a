#!/usr/bin/env python
"""Train the patch-token twin of a bundled run (issue 19): a tokenizer whose 64 tokens are patch
embeddings instead of holistic queries, and a class-conditional generator on its tokens, on the same
clips with the same step counts, batches, seeds and recipe as the run that wrote ``--bundle-log``.

    python scripts/train_patch_twin.py --bundle-log checkpoints/train_log.json \
        --out runs/patch_twin --work runs/patch_twin_work --progress

Interrupted? Run it again with ``--resume``: each stage continues its last checkpoint exactly. Then
``scripts/compare_tokens.py`` measures the twin beside the bundled holistic tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle-log", default="checkpoints/train_log.json", help="train_log.json of the bundled run")
    p.add_argument("--out", required=True, help="where the twin's models and log go")
    p.add_argument("--work", required=True, help="run folders with checkpoints (exact resume)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--progress", action="store_true", help="progress bars of the training loop")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default; 1 beside other work on a 2-core machine: two "
                        "threads that share their cores with other processes spin and run ~5x slower)")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)

    from larp_lab.training.patch_twin import train_patch_twin

    log = train_patch_twin(Path(a.bundle_log), Path(a.out), Path(a.work), device=a.device, progress=a.progress,
                           resume=a.resume)
    for key, rec in log["stages"].items():
        print(f"{key}: {rec['steps']} steps in {rec['wall_s']} s (the holistic run's: {rec['holistic_wall_s']} s); "
              f"eval {rec['eval']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
