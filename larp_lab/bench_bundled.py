"""A time-capped subset of ``larp-lab bench`` on the models of a bundle that was just trained
(``scripts/train_bundled.py --then-bench``): the accelerator half of the benchmarks in about a minute.

In order, each item only when the time left allows it: the matmul rates (fp32; bf16 on CUDA),
tokenizer encode/decode throughput, generator sampling speed (KV cache vs none), and one training
step of tokenizer+prior and of the generator, eager and then ``torch.compile``d. On CUDA the model
calls run under bf16 autocast. The JSON is rewritten after every item, so a run cut short keeps what
it measured; skipped items are listed with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from .bench import Report, bench_sampling, bench_tokenizer, bench_train_step, machine_info, matmul_flops

__all__ = ["run_bundle_bench"]


def _write(path: Path | None, report: Report, extra: dict[str, Any]) -> None:
    if path is None:
        return
    from .checkpoint import atomic_write_bytes

    text = json.dumps({**report.to_json(), **extra}, indent=2) + "\n"
    atomic_write_bytes(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def run_bundle_bench(
    bundle: str | Path, device: str = "cuda", *, seconds: float = 60.0, out: str | Path | None = None,
    compile_: bool = True,
) -> dict[str, Any]:
    """Benchmark the tokenizer and generator in ``bundle`` (a ``train_bundled`` output directory) for
    at most about ``seconds``; returns the JSON written to ``out``."""
    from .bundled import DEFAULT_GENERATOR, DEFAULT_TOKENIZER
    from .models.generator import LARPGenerator
    from .models.tokenizer import LARPTokenizer

    t0 = time.monotonic()
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if cuda and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    out_path = Path(out) if out is not None else None
    bundle = Path(bundle)
    tok = LARPTokenizer.from_pretrained(bundle / DEFAULT_TOKENIZER, device=dev)
    gen = LARPGenerator.from_pretrained(bundle / DEFAULT_GENERATOR, device=dev)
    name = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if cuda else "")
    report = Report(name, machine_info(dev))
    extra: dict[str, Any] = {"bundle": str(bundle), "seconds_cap": seconds,
                             "precision": "bf16 autocast" if cuda else "fp32", "skipped": []}
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    repeat = 5 if cuda else 2
    peak: dict[str, float] = {}

    def matmuls() -> None:
        peak["fp32"] = matmul_flops(dev, 2048 if cuda else 384)
        report.add("fp32 matmul rate", peak["fp32"] / 1e9, "GFLOP/s")
        if cuda:
            peak["bf16"] = matmul_flops(dev, 8192, torch.bfloat16)
            report.add("bf16 matmul rate (8192^3)", peak["bf16"] / 1e9, "GFLOP/s")

    def tokenizer() -> None:
        with amp():
            bench_tokenizer(report, "bundled tokenizer" + (" bf16" if cuda else ""), tok.config,
                            [1, 64] if cuda else [1, 4], dev, repeat, peak["fp32"], model=tok)

    def sampling() -> None:
        n = gen.config.num_tokens
        with amp():
            bench_sampling(report, "bundled generator" + (" bf16" if cuda else ""), gen.config,
                           [1, 32] if cuda else [1], dev, n, 2 if cuda else 1, model=gen,
                           baseline_tokens=n if cuda else min(n, 16))

    def train_step(compiled: bool) -> Callable[[], None]:
        def run() -> None:
            bench_train_step(report, dev, repeat, peak.get("bf16", peak["fp32"]), tok.config, 64 if cuda else 4,
                             gen.config, 64 if cuda else 4, torch.bfloat16 if cuda else None, compile_=compiled)
        return run

    # (name, function, seconds it needs left to be worth starting)
    items: list[tuple[str, Callable[[], None], float]] = [
        ("matmul rates", matmuls, 0.0),
        ("tokenizer throughput", tokenizer, 5.0 if cuda else 2.0),
        ("generator sampling", sampling, 8.0 if cuda else 2.0),
        ("train step, eager", train_step(False), 5.0 if cuda else 2.0),
    ]
    if compile_ and cuda:
        items.append(("train step, torch.compile", train_step(True), 35.0))
    elif compile_:
        extra["skipped"].append({"item": "train step, torch.compile", "reason": "compiled only on CUDA"})
    for label, fn, need in items:
        left = seconds - (time.monotonic() - t0)
        if left < need:
            extra["skipped"].append({"item": label, "reason": f"{left:.0f} s of the {seconds:.0f} s cap left, needs {need:.0f}"})
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failing item (a compile error...) must not lose the others
            extra["skipped"].append({"item": label, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
        extra["elapsed_s"] = round(time.monotonic() - t0, 2)
        _write(out_path, report, extra)
    extra["elapsed_s"] = round(time.monotonic() - t0, 2)
    _write(out_path, report, extra)
    print(report.table(), flush=True)
    return {**report.to_json(), **extra}
