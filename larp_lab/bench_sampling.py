"""Sampling speed against this machine's limit (``larp-lab bench --sampling``, ``python benchmarks/sampling.py``).

For a generator (a ``GENERATOR_PRESETS`` size with random weights, ``tiny`` = 256 wide, 6 layers, by
default; one model per length so that every job is a full-length sample) over a grid of batch x
length x CFG:

* **tokens/s** of ``gen.sample`` (B x length tokens per call; median of ``repeat`` calls after one
  warm-up);
* the **FLOP floor** two ways: (a) the analytic FLOPs of the job (every position through every
  matmul, attention over the filled cache) at the 2048^3 fp32 matmul rate; (b) the same job's GEMMs
  *timed alone at their real shapes* (rows x D @ D x N, one step's worth, times the steps) plus the
  attention FLOPs at the 2048^3 rate: the time the arithmetic alone takes here, overheads excluded;
* the **official LARP code** (:mod:`larp_lab.bench_official`; same weights, same job, runs
  alternating with ours) when a copy of its repository is at hand, else the row says it was skipped;
* optionally ``sample(compiled=True)`` (the static-shape step through ``torch.compile``);
* a **per-step profile** at one (batch, length, CFG): counts that do not depend on the machine's load
  (aten ops, Python calls, allocations and host syncs per step) for the module path (before the fast
  decoder) and the fast path, and a time breakdown of the fast path's step (GEMMs, attention kernel,
  KV-cache writes, norms and activations, CFG mix, sampling, and the rest: Python and dispatch).

Everything returns plain dicts (the JSON) next to a :class:`~larp_lab.bench.Report` table. Timings
mean something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .bench import Report, machine_info, matmul_flops
from .config import GENERATOR_PRESETS, GeneratorConfig

__all__ = ["SamplingBenchConfig", "run_sampling_benchmarks", "sampling_flops", "step_profile"]


@dataclass
class SamplingBenchConfig:
    #: a GENERATOR_PRESETS name or a generator checkpoint directory (its sizes), or a config; random weights
    model: str | GeneratorConfig = "tiny"
    batches: tuple[int, ...] = (1, 8, 64)
    lengths: tuple[int, ...] = (64, 256, 1024)
    cfg_scales: tuple[float, ...] = (1.0, 1.5)
    repeat: int = 3
    official: bool = True  #: compare with the official code when a copy is found
    official_repo: str | None = None  #: its location (default: $LARP_OFFICIAL_REPO, then the local mirror)
    compiled: bool = False  #: also time sample(compiled=True)
    profile: tuple[int, int, float] | None = (8, 256, 1.5)  #: (batch, length, cfg_scale) of the step profile
    grid: bool = True  #: run the tokens/s grid (False: the profile only)
    device: str = "cpu"
    threads: int | None = None  #: torch.set_num_threads when given
    micro_calls: int = 200  #: most calls per timing of a small kernel (GEMM shapes, profile parts)


# ------------------------------------------------------------------------------------------------
# models and FLOPs
# ------------------------------------------------------------------------------------------------


def _config(spec: str | GeneratorConfig, length: int) -> GeneratorConfig:
    if isinstance(spec, GeneratorConfig):
        cfg = spec
    elif spec in GENERATOR_PRESETS:
        cfg = GENERATOR_PRESETS[spec]()
    else:  # a checkpoint: its sizes (the benchmark's weights are random either way)
        from .models.generator import LARPGenerator

        cfg = LARPGenerator.from_pretrained(spec).config
    if cfg.frame_prediction:
        return cfg.replace(num_tokens=length, cls_token_num=length + 1)
    return cfg.replace(num_tokens=length)


def build_generator(spec: str | GeneratorConfig, length: int, device: torch.device, seed: int = 0):
    """A generator of ``spec``'s sizes over ``length`` tokens with seeded random weights (the official
    init zeroes the head; every weight is perturbed so that the logits are not flat), in eval mode."""
    from .models.generator import LARPGenerator

    torch.manual_seed(seed)
    gen = LARPGenerator(_config(spec, length), device=device)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return gen.eval()


def _gemm_shapes(cfg: GeneratorConfig) -> list[tuple[int, int, int]]:
    """(K, N, count per step) of the decode step's matmuls: per layer wqkv, wo, w1, w3, w2; the head."""
    D, F = cfg.dim, cfg.ffn_hidden
    qkv = (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim
    L = cfg.n_layer
    return [(D, qkv, L), (D, D, L), (D, F, 2 * L), (F, D, L), (D, cfg.vocab_size, 1)]


def sampling_flops(cfg: GeneratorConfig, rows: int, length: int) -> dict[str, float]:
    """Analytic FLOPs of sampling ``length`` tokens for ``rows`` sequences (2B with CFG).

    Positions fed: the ``C = cls_token_num`` condition positions (prefill) and ``length - 1`` tokens.
    Per row and position: 2 x (matmul weights), and attention 4 x n_layer x H x hd x (keys seen).
    Returns {"matmul", "attention", "prefill", "total"} in FLOP ("prefill" is part of the others).
    """
    per_pos = 2 * sum(k * n * c for k, n, c in _gemm_shapes(cfg))
    C = cfg.cls_token_num
    positions = C + length - 1
    attn_width = 4 * cfg.n_layer * cfg.n_head * cfg.head_dim
    keys = positions * (positions + 1) / 2  # position p attends p + 1 keys
    prefill = rows * (C * per_pos + attn_width * C * (C + 1) / 2)
    mm, attn = rows * positions * per_pos, rows * attn_width * keys
    return {"matmul": mm, "attention": attn, "prefill": prefill, "total": mm + attn}


# ------------------------------------------------------------------------------------------------
# timing helpers
# ------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(fn: Callable[[], Any], device: torch.device, inner: int, repeat: int = 5) -> float:
    """Median seconds of one call, timing ``inner`` calls at a time (for microsecond-sized calls)."""
    fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def alternating(fns: dict[str, Callable[[], Any]], device: torch.device, repeat: int) -> dict[str, float]:
    """Median seconds of each function, run in turns (a, b, a, b, ...) after one warm-up each, so that
    a drift in the machine's speed hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


_GEMM_CACHE: dict[tuple, float] = {}


def gemm_step_seconds(cfg: GeneratorConfig, rows: int, device: torch.device, max_calls: int = 200) -> float:
    """Seconds of one decode step's matmuls timed alone at their shapes (rows x K @ K x N)."""
    total = 0.0
    for K, N, count in _gemm_shapes(cfg):
        key = (str(device), rows, K, N, max_calls)
        if key not in _GEMM_CACHE:
            a = torch.randn(rows, K, device=device)
            w = torch.randn(N, K, device=device).t()
            guess = 2 * rows * K * N / 5e10  # seconds at ~50 GFLOP/s: ~20 ms of calls per timing
            inner = int(min(max_calls, max(3, 0.02 / guess)))
            _GEMM_CACHE[key] = _time_calls(lambda a=a, w=w: a @ w, device, inner)
        total += count * _GEMM_CACHE[key]
    return total


# ------------------------------------------------------------------------------------------------
# the grid
# ------------------------------------------------------------------------------------------------


def _seeded(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


def _condition(gen, batch: int, device: torch.device) -> torch.Tensor:
    c = gen.config
    if c.frame_prediction:
        return torch.randint(0, c.vocab_size, (batch, c.num_tokens), device=device,
                             generator=torch.Generator(device=device).manual_seed(0))
    return torch.arange(batch, device=device) % c.num_classes


def _official_model(off, gen, device):
    if off is None:
        return None
    return off.build(gen.config, gen.state_dict(), device)


def bench_grid(report: Report, bc: SamplingBenchConfig, device: torch.device, peak: float, off) -> list[dict]:
    """One row per (length, batch, cfg_scale): tokens/s, the two floors, the official code's speed."""
    rows_out = []
    for length in bc.lengths:
        gen = build_generator(bc.model, length, device)
        official = _official_model(off, gen, device)
        label = bc.model if isinstance(bc.model, str) else "generator"
        name = f"{label} ({gen.config.dim}w{gen.config.n_layer}L)"
        for B in bc.batches:
            for scale in bc.cfg_scales:
                if gen.config.frame_prediction and scale != 1.0:
                    continue
                cond = _condition(gen, B, device)
                fns: dict[str, Callable[[], Any]] = {
                    "larp_lab": lambda g=gen, c=cond, s=scale: g.sample(c, cfg_scale=s, generator=_seeded(device))}
                if official is not None:
                    fns["official"] = lambda m=official, c=cond, s=scale: m.sample(c, cfg_scale=s, temperature=1.0,
                                                                                   top_k=0, top_p=1.0)
                if bc.compiled:
                    fns["compiled"] = lambda g=gen, c=cond, s=scale: g.sample(c, cfg_scale=s, compiled=True,
                                                                              generator=_seeded(device))
                t = alternating(fns, device, bc.repeat)
                R = 2 * B if scale != 1.0 else B
                fl = sampling_flops(gen.config, R, length)
                floor_a = fl["total"] / peak
                floor_b = ((length - 1) * gemm_step_seconds(gen.config, R, device, bc.micro_calls)
                           + (fl["prefill"] + fl["attention"]) / peak)
                row = {"model": name, "batch": B, "length": length, "cfg_scale": scale, "rows": R,
                       "seconds": t["larp_lab"], "tokens_per_s": B * length / t["larp_lab"],
                       "gflop": fl["total"] / 1e9, "floor_peak_s": floor_a, "floor_gemm_shapes_s": floor_b,
                       "x_floor_peak": t["larp_lab"] / floor_a, "x_floor_gemm_shapes": t["larp_lab"] / floor_b,
                       "official_seconds": t.get("official"), "compiled_seconds": t.get("compiled")}
                row["speedup_vs_official"] = t["official"] / t["larp_lab"] if "official" in t else None
                rows_out.append(row)
                note = (f"{t['larp_lab']:.3g} s; floor {floor_a:.3g} s at peak ({row['x_floor_peak']:.2f}x), "
                        f"{floor_b:.3g} s GEMMs at their shapes ({row['x_floor_gemm_shapes']:.2f}x)")
                if "compiled" in t:
                    note += f"; compiled {B * length / t['compiled']:.4g} tok/s"
                if official is None:
                    note += "; official: skipped (no copy of github.com/hywang66/LARP found)"
                report.add(f"{name} sample {length} tok B={B} cfg={scale}", row["tokens_per_s"], "tokens/s",
                           B * length / t["official"] if "official" in t else None,
                           ("baseline: official LARP code; " if "official" in t else "") + note)
    return rows_out


# ------------------------------------------------------------------------------------------------
# the per-step profile
# ------------------------------------------------------------------------------------------------

_SYNC = ("aten::_local_scalar_dense",)


def _counts(fn: Callable[[], Any], steps: int) -> dict[str, float]:
    """Per-step counts of one call of ``fn`` (which samples ``steps`` tokens): aten ops (all, and
    those called from Python), ops that allocated memory and how much (CPU; the profiler's
    self memory), host syncs, Python function calls."""
    from torch.profiler import profile

    with profile(profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None]
    allocating = [e for e in events if e.self_cpu_memory_usage > 0]  # ops that allocated (net of their frees)
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    calls = pstats.Stats(pr).total_calls  # type: ignore[attr-defined]
    return {"aten_ops": len(events) / steps, "aten_ops_from_python": len(top) / steps,
            "allocating_ops": len(allocating) / steps,
            "allocated_kib": sum(e.self_cpu_memory_usage for e in allocating) / 1024 / steps,
            "host_syncs": sum(e.name in _SYNC for e in events) / steps, "python_calls": calls / steps}


def step_profile(gen, batch: int, length: int, cfg_scale: float, device: torch.device, repeat: int = 3,
                 max_calls: int = 200) -> dict[str, Any]:
    """Where one decode step's time goes, for ``gen.sample`` of (batch, length, cfg_scale).

    Returns {"counts": {"module path": ..., "fast path": ...}, "seconds_per_step": {...},
    "breakdown": [(component, seconds per step), ...]} where the breakdown times each part of the
    fast path's step alone at its shapes (rows R = B or 2B, the mean context) and "Python, dispatch
    and the rest" is what remains of the measured step.
    """
    import torch.nn.functional as F

    from .models.decoding import FastDecoder, TokenPicker, module_decoding
    from .models.generator import SamplingOptions

    c = gen.config
    cond = _condition(gen, batch, device)

    def fast():
        return gen.sample(cond, cfg_scale=cfg_scale, length=length, generator=_seeded(device))

    def modules():
        with module_decoding():
            return fast()

    t = alternating({"module path": modules, "fast path": fast}, device, repeat)
    per_step = {k: v / length for k, v in t.items()}
    counts = {"module path": _counts(modules, length), "fast path": _counts(fast, length)}
    # the parts of one fast step, alone
    R = 2 * batch if cfg_scale != 1.0 else batch
    ctx = c.cls_token_num + length // 2
    cache = gen.new_cache(R)
    dec = FastDecoder(gen, cache)
    H, hd, D = c.n_head, c.head_dim, c.dim
    x = torch.randn(R, D, device=device)
    q = torch.randn(R, H, 1, hd, device=device)
    k, v = cache.k[0].narrow(2, 0, ctx), cache.v[0].narrow(2, 0, ctx)
    src = torch.randn(R, cache.width, device=device)
    hid = torch.randn(R, c.ffn_hidden, device=device)
    logits = torch.randn(R, c.vocab_size, device=device)
    ids = torch.zeros(R, dtype=torch.long, device=device)
    pick = TokenPicker(batch, SamplingOptions(cfg_scale=cfg_scale), _seeded(device))
    plain = TokenPicker(batch, SamplingOptions(), _seeded(device))
    w = dec.layers[0]
    def timed(fn: Callable[[], Any], calls: int) -> float:  # ``calls`` at the default max_calls of 200
        return _time_calls(fn, device, max(3, max_calls * calls // 200))

    with torch.inference_mode():
        sampling = timed(lambda: plain(logits[:batch], False), 100)
        parts = {
            "GEMMs (timed alone at their shapes)": gemm_step_seconds(c, R, device, max_calls),
            "attention kernel (SDPA, mean context)": c.n_layer * timed(lambda: F.scaled_dot_product_attention(q, k, v), 50),
            "KV-cache writes (one copy per layer)": c.n_layer * timed(lambda: cache.kv[0].select(1, ctx).copy_(src), 200),
            "RMSNorms, SiLU, products, residual adds": (2 * c.n_layer + 1) * timed(lambda: dec._rms(x, w.attn_norm), 200)
            + c.n_layer * timed(lambda: F.silu(hid) * hid, 200) + 2 * c.n_layer * timed(lambda: x + x, 200),
            "embedding + position": timed(lambda: F.embedding(ids, dec.embed) + dec.pe[ctx], 200),
            "sampling (softmax, draw)": sampling,
        }
        if cfg_scale != 1.0:
            parts["CFG mix (uncond + (cond - uncond) * s)"] = max(0.0, timed(lambda: pick(logits, True), 100) - sampling)
    parts["Python, dispatch and the rest (measured step - the parts)"] = per_step["fast path"] - sum(parts.values())
    return {"batch": batch, "length": length, "cfg_scale": cfg_scale, "rows": R, "mean_context": ctx,
            "seconds_per_step": per_step, "counts": counts, "breakdown": list(parts.items())}


def profile_tables(p: dict[str, Any]) -> str:
    """The profile as two text tables (counts, before/after; time per step of the fast path)."""
    keys = ["aten_ops", "aten_ops_from_python", "python_calls", "allocating_ops", "allocated_kib", "host_syncs"]
    lines = [f"per decode step, batch {p['batch']}, {p['length']} tokens, cfg {p['cfg_scale']} ({p['rows']} rows)",
             f"{'count per step':<28} {'module path':>12} {'fast path':>12}"]
    for k in keys:
        lines.append(f"{k:<28} {p['counts']['module path'][k]:>12.1f} {p['counts']['fast path'][k]:>12.1f}")
    sps = p["seconds_per_step"]
    lines += ["", f"{'time per step (ms)':<28} {sps['module path'] * 1e3:>12.3f} {sps['fast path'] * 1e3:>12.3f}", "",
              f"{'fast step, part':<62} {'ms/step':>9} {'share':>7}"]
    total = sps["fast path"]
    for name, s in p["breakdown"]:
        lines.append(f"{name:<62} {s * 1e3:>9.3f} {s / total:>7.1%}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------


def run_sampling_benchmarks(bc: SamplingBenchConfig, out: str | Path | None = None) -> dict[str, Any]:
    """The grid and the profile; prints the tables, writes the JSON to ``out``, returns it."""
    from .bench_official import load_official_ar

    if bc.threads:
        torch.set_num_threads(bc.threads)
    dev = torch.device(bc.device)
    report = Report(str(dev), machine_info(dev))
    n = 2048 if bc.micro_calls >= 50 else 512  # a smaller probe only for smoke runs
    peak = matmul_flops(dev, n)
    report.add(f"fp32 matmul rate ({n}^3)", peak / 1e9, "GFLOP/s", None, "floor (a) uses this")
    result: dict[str, Any] = {"config": asdict(bc), "official": None, "grid": [], "profile": None}
    off = None
    if bc.official and bc.grid:
        try:
            off = load_official_ar(bc.official_repo)
            result["official"] = off.source if off is not None else "skipped: no copy of github.com/hywang66/LARP found"
        except Exception as exc:  # noqa: BLE001 - the comparison is optional: say why and go on
            result["official"] = f"skipped: {type(exc).__name__}: {exc}"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*sdp_kernel.*")  # the official code's per-step context
        if bc.grid:
            result["grid"] = bench_grid(report, bc, dev, peak, off)
        if bc.profile is not None:
            B, L, s = bc.profile
            gen = build_generator(bc.model, L, dev)
            result["profile"] = step_profile(gen, int(B), int(L), float(s), dev, bc.repeat, bc.micro_calls)
    result["report"] = report.to_json()
    print()
    print(report.table())
    if result["profile"] is not None:
        print()
        print(profile_tables(result["profile"]))
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nJSON: {p}")
    return result


def config_from_args(a: argparse.Namespace, device: str = "cpu") -> SamplingBenchConfig:
    """The options of ``larp-lab bench --sampling`` (see ``larp_lab.cli``) as a config."""
    prof = None
    if str(a.profile).lower() != "none":
        b, length, s = a.profile.split(",")
        prof = (int(b), int(length), float(s))
    return SamplingBenchConfig(model=a.model, batches=tuple(a.batches), lengths=tuple(a.lengths),
                               cfg_scales=tuple(a.cfg_scales), repeat=a.repeat, official=not a.no_official,
                               official_repo=a.official_repo, compiled=a.compiled, profile=prof,
                               grid=not a.profile_only, device=device, threads=a.threads,
                               micro_calls=a.micro_calls)
