"""Train every bundled model from nothing inside a wall-clock budget, in the bundled format.

    python scripts/train_bundled.py --device cpu --budget-minutes 120 --out runs/bundled --work runs/bundled_work
    python scripts/train_bundled.py --device cpu --budget-minutes 120 --out runs/bundled --work runs/bundled_work --resume
    python scripts/train_bundled.py --device cuda --budget-minutes 8 --out runs/bundled_gpu --then-bench
    python scripts/train_bundled.py --device cpu --budget-minutes 1 --size micro --out /tmp/bundled  # a proof

Stages (larp_lab/training/bundled_recipe.py): a pool of clips made once (moving digits by default;
``--data synthetic`` for the 12-class motion set); the tokenizer with its prior; the tokens of the
pool; the class-conditional generator and the frame predictor; the proxy classifier only if it must
change. Each training stage measures its throughput and sets its steps so its schedule ends inside
its share of the budget. ``--size auto`` is ``cpu`` (32x32x8 moving digits, the CPU recipe of
configs/tokenizer_digits.yaml: locality loss and codebook warm-up) on a CPU and ``tiny`` on CUDA.

An interrupted run (a kill, a full disk) goes on with the same command plus ``--resume``: finished
stages are kept, the running one continues from its last checkpoint (at most 3 minutes old) with
the plan it had, and the budget counts the time already spent.

``--out`` receives one folder per model (config.json + fp16 model.safetensors) and train_log.json:
at most --max-files files of at most --max-file-mb MB each (the run fails loudly otherwise).
Measure and ship them afterwards on a CPU with ``scripts/bundle_models.py --bundle OUT``.
``--then-bench`` then runs the time-capped accelerator benchmarks (larp_lab/bench_bundled.py).
This script never imports PyAV or gradio.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here, imports included

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--budget-minutes", type=float, required=True,
                   help="wall clock for everything up to the written models (the benchmarks come after)")
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    p.add_argument("--size", default="auto", choices=["auto", "cpu", "tiny", "micro"],
                   help="cpu: the shipped CPU bundle (32x32x8); tiny: 64x64x16 GPU models; micro: very small models "
                        "(a proof run); auto: cpu on a CPU, tiny on CUDA")
    p.add_argument("--data", default="digits", choices=["digits", "synthetic"],
                   help="the clips every model trains on: moving digits (10 classes) or the 12-class motion set")
    p.add_argument("--work", default=None, help="run directories with checkpoints (default: a new temporary directory; "
                                                "give one to be able to --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out / --work (same options as the first call)")
    p.add_argument("--pool-clips", type=int, default=None, help="training pool clips (default: the size's)")
    p.add_argument("--photo-fraction", type=float, default=None, help="share of photo pans in the pool")
    p.add_argument("--workers", type=int, default=None, help="processes making the pool (default: the CPU cores, <= 16)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training steps")
    p.add_argument("--classifier", default="auto", choices=["auto", "keep", "retrain"],
                   help="auto: retrain the proxy classifier only if the bundled one does not fit or is inaccurate")
    p.add_argument("--classifier-min-accuracy", type=float, default=0.9)
    p.add_argument("--tokenizer-lr", type=float, default=None, help="override the size's tokenizer learning rate")
    p.add_argument("--max-files", type=int, default=10)
    p.add_argument("--max-file-mb", type=float, default=16.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="progress bars of the training loop")
    p.add_argument("--then-bench", action="store_true", help="then the time-capped benchmarks of the new models")
    p.add_argument("--bench-seconds", type=float, default=60.0)
    p.add_argument("--bench-out", default=None, help="benchmark JSON (default on CUDA: benchmarks/results_cuda.json)")
    p.add_argument("--no-bench-compile", action="store_true", help="skip the torch.compile benchmark row")
    a = p.parse_args(argv)
    if not a.budget_minutes > 0:
        p.error("--budget-minutes must be positive")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import torch

    from larp_lab.training.bundled_recipe import BundledRunConfig, train_bundled

    if a.threads:
        torch.set_num_threads(a.threads)

    run = BundledRunConfig(
        out=a.out, budget_s=a.budget_minutes * 60.0, device=a.device, size=a.size, data=a.data, work=a.work,
        resume=a.resume,
        pool_clips=a.pool_clips, photo_fraction=a.photo_fraction, workers=a.workers, compile=a.compile,
        classifier=a.classifier, classifier_min_accuracy=a.classifier_min_accuracy, tokenizer_lr=a.tokenizer_lr,
        max_files=a.max_files, max_file_mb=a.max_file_mb, seed=a.seed, progress=a.progress,
    )
    try:
        log = train_bundled(run, started=STARTED)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as exc:
        hint = ""
        if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:  # ENOSPC
            hint = " (the disk is full: free space, then run the same command with --resume)"
        elif a.work and not a.resume and isinstance(exc, OSError):
            hint = " (run the same command with --resume to continue)"
        print(f"[train_bundled] error: {exc}{hint}", file=sys.stderr, flush=True)
        return 2
    if a.then_bench:
        from larp_lab.bench_bundled import run_bundle_bench

        device = log["device"]
        if a.bench_out is None and not device.startswith("cuda"):  # results_cpu.json belongs to larp-lab bench
            raise SystemExit("--then-bench off CUDA needs --bench-out (benchmarks/results_cpu.json is larp-lab bench's)")
        bench_out = a.bench_out or str(ROOT / "benchmarks" / "results_cuda.json")
        run_bundle_bench(a.out, device, seconds=a.bench_seconds, out=bench_out, compile_=not a.no_bench_compile)
        print(f"[train_bundled] benchmarks -> {bench_out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
