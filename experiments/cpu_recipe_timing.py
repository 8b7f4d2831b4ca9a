"""Seconds per optimizer step of ``configs/tokenizer_cpu.yaml`` at 2 and 1 threads, in both phases.

    python experiments/cpu_recipe_timing.py

Converts the step counts of ``cpu_recipe.py`` (run with one thread on a shared CPU) into wall time
on the 2-core budget: the tokenizer task's loss, backward and AdamW step on 16 clips, 20 timed steps
after 5 untimed ones, in the warm-up phase (continuous latents + locality loss) and the VQ + prior
phase. Evaluation, checkpoints and the k-means init are not included.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import torch  # noqa: E402


def main() -> int:
    from larp_lab.training.config import load_train_config
    from larp_lab.training.tokenizer_task import TokenizerTask

    out = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        for phase, step in (("warmup_locality", 0), ("vq_prior", 1500)):
            torch.manual_seed(0)
            cfg = load_train_config(ROOT.parent / "configs" / "tokenizer_cpu.yaml", "tokenizer")
            task = TokenizerTask(cfg, torch.device("cpu"))
            opt = torch.optim.AdamW(task.model.parameters(), 1e-3)
            walls = []
            for i in range(25):
                t0 = time.perf_counter()
                batch = task.collate([task.train_dataset[16 * i + j] for j in range(16)])
                loss, _ = task.loss(task.model, batch, step, cfg.run.max_steps)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i >= 5:
                    walls.append(time.perf_counter() - t0)
            out[f"{phase}_{threads}_threads"] = sum(walls) / len(walls)
            print(f"{phase} {threads} thread(s): {out[f'{phase}_{threads}_threads']:.3f} s/step", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
