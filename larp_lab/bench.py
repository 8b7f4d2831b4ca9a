"""Speed and memory benchmarks (``larp-lab bench``, ``python benchmarks/run.py``): a table and JSON.

Every speed-up is a ratio measured side by side in the same run against a baseline:

* tokenizer encode/decode (clips/s, peak memory), fused SDPA vs the explicit-softmax attention path,
  and the machine's FLOP floor: the model's analytic FLOPs over the measured fp32 matmul rate;
* generator sampling (tokens/s) with the static KV cache vs recomputing the sequence each step,
  with and without CFG;
* a training step of tokenizer+prior and of the generator (and model FLOPs utilisation on GPU);
* the app's reconstruct round trip (read -> encode -> decode -> write MP4s), through larp_lab.pipelines;
* on GPU: eager vs ``torch.compile`` and bf16.

Timings are medians of repeated runs after warm-up. Absolute numbers depend on the machine (the
JSON records it); compare ratios across machines, absolute times only on the same device.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS, GeneratorConfig, TokenizerConfig


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None = None  #: same measurement on the baseline path
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.value == 0:
            return None
        # ratios are "how many times better": for times baseline/value, for throughputs value/baseline
        return self.baseline / self.value if self.unit in ("s", "ms") else self.value / self.baseline


@dataclass
class Report:
    device: str
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    def add(self, *a, **k) -> Row:
        r = Row(*a, **k)
        self.rows.append(r)
        print(self.format_row(r), flush=True)
        return r

    @staticmethod
    def format_row(r: Row) -> str:
        base = f"{r.baseline:.4g}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        return f"{r.name:<58} {r.value:>10.4g} {r.unit:<9} {base:>10} {ratio:>8}  {r.note}"

    def table(self) -> str:
        head = f"{'benchmark':<58} {'value':>10} {'unit':<9} {'baseline':>10} {'ratio':>8}  note"
        return "\n".join([f"device: {self.device}", head, "-" * len(head), *map(self.format_row, self.rows)])

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "machine": self.machine,
                "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device: torch.device, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory of one call: CUDA allocator peak on GPU, RSS high-water mark growth on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0, after - before) / 1024  # ru_maxrss is in KiB on Linux (a lower bound here)


def matmul_flops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """Measured dense matmul rate (FLOP/s) for (n x n) @ (n x n)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timeit(lambda: a @ b, device, repeat=5, warmup=2)
    return 2 * n**3 / t


# ------------------------------------------------------------------------------------------------
# analytic FLOPs
# ------------------------------------------------------------------------------------------------


def _vit_flops(tokens: int, dim: int, depth: int, mlp_ratio: float, out_rows: int | None = None) -> float:
    """Forward FLOPs of ``depth`` ViT blocks over ``tokens`` rows; the last block only for ``out_rows``."""
    hidden = dim * mlp_ratio
    total = 0.0
    for i in range(depth):
        q_rows = out_rows if (out_rows is not None and i == depth - 1) else tokens
        total += 2 * tokens * dim * 3 * dim  # qkv for every row (k, v needed by all)
        total += 2 * 2 * q_rows * tokens * dim  # scores + weighted sum
        total += 2 * q_rows * dim * dim  # output projection
        total += 2 * 2 * q_rows * dim * hidden  # MLP
    return total


def tokenizer_flops(cfg: TokenizerConfig) -> tuple[float, float]:
    """(encode, decode) forward FLOPs per clip at the configured size."""
    P, N, M = cfg.num_patches, cfg.num_tokens, cfg.num_decoder_patches
    patch_in = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
    enc = 2 * P * patch_in * cfg.encoder_hidden_size
    enc += _vit_flops(P + N, cfg.encoder_hidden_size, cfg.encoder_depth, cfg.mlp_ratio, out_rows=N)
    enc += 2 * N * cfg.encoder_hidden_size * cfg.bottleneck_dim + 2 * N * cfg.bottleneck_dim * cfg.codebook_size
    dec = 2 * N * cfg.bottleneck_dim * cfg.decoder_hidden_size
    dec += _vit_flops(N + M, cfg.decoder_hidden_size, cfg.decoder_depth, cfg.mlp_ratio, out_rows=M)
    out = cfg.decoder_temporal_patch_size * cfg.decoder_patch_size**2 * cfg.in_channels
    dec += 2 * M * cfg.decoder_hidden_size * out
    return enc, dec


def generator_train_flops(cfg: GeneratorConfig, batch: int) -> float:
    """Forward + backward FLOPs of one teacher-forced step (6 x params x tokens + attention)."""
    from .models.generator import LARPGenerator

    with torch.device("meta"):
        n_params = sum(p.numel() for p in LARPGenerator(cfg).parameters())
    L = cfg.cls_token_num + cfg.num_tokens - 1
    attn = 2 * 2 * cfg.n_layer * L * L * cfg.dim / 2  # causal
    return 3 * batch * (2 * n_params * L + attn)


# ------------------------------------------------------------------------------------------------
# benchmarks
# ------------------------------------------------------------------------------------------------


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def bench_tokenizer(report: Report, name: str, cfg: TokenizerConfig, batches: list[int], device: torch.device,
                    repeat: int, peak_flops: float, model=None) -> None:
    from .models.layers import plain_attention
    from .models.tokenizer import LARPTokenizer

    torch.manual_seed(0)
    tok = model if model is not None else _perturbed(LARPTokenizer(cfg, device=device))
    enc_f, dec_f = tokenizer_flops(cfg)
    for B in batches:
        x = torch.rand(B, 3, cfg.frame_num, cfg.input_size, cfg.input_size, device=device) * 2 - 1
        with torch.inference_mode():
            emb = tok.encode(x).embeddings
            t_enc = timeit(lambda: tok.encode(x), device, repeat)
            t_dec = timeit(lambda: tok.decode(emb), device, repeat)
            with plain_attention():
                b_enc = timeit(lambda: tok.encode(x), device, repeat)
                b_dec = timeit(lambda: tok.decode(emb), device, repeat)
            mem = peak_memory_mb(lambda: tok.decode(tok.encode(x).embeddings), device)
        floor = B * (enc_f + dec_f) / peak_flops
        report.add(f"{name} encode B={B}", B / t_enc, "clips/s", B / b_enc, "baseline: explicit-softmax attention")
        report.add(f"{name} decode B={B}", B / t_dec, "clips/s", B / b_dec, "baseline: explicit-softmax attention")
        report.add(f"{name} encode+decode B={B} vs FLOP floor", t_enc + t_dec, "s", None,
                   f"floor {floor:.4g} s = {B * (enc_f + dec_f) / 1e9:.3g} GFLOP / {peak_flops / 1e9:.3g} GFLOP/s "
                   f"-> {(t_enc + t_dec) / floor:.2f}x the floor")
        report.add(f"{name} encode+decode B={B} peak memory", mem, "MB", None,
                   "CUDA allocator peak" if device.type == "cuda" else "RSS high-water growth (lower bound)")


def bench_sampling(report: Report, name: str, cfg: GeneratorConfig, batches: list[int], device: torch.device,
                   num_tokens: int, repeat: int, model=None, baseline_tokens: int | None = None) -> None:
    from .models.generator import LARPGenerator

    torch.manual_seed(0)
    gen = model if model is not None else _perturbed(LARPGenerator(cfg, device=device))
    n = min(num_tokens, gen.config.num_tokens)
    nb = min(baseline_tokens or n, n)
    for B in batches:
        for cfg_scale in (1.0, 1.5):
            if gen.config.frame_prediction and cfg_scale != 1.0:
                continue
            if gen.config.frame_prediction:
                cond = torch.randint(0, gen.config.vocab_size, (B, gen.config.num_tokens), device=device)
            else:
                cond = torch.arange(B, device=device) % gen.config.num_classes
            g = torch.Generator(device=device).manual_seed(0)

            def run(use_cache: bool, tokens: int) -> None:
                gen.sample(cond, cfg_scale=cfg_scale, length=tokens, use_cache=use_cache, generator=g)

            t = timeit(lambda: run(True, n), device, repeat)
            tb = timeit(lambda: run(False, nb), device, max(1, repeat // 2))
            # the no-cache baseline costs ~quadratically; when measured on fewer tokens it is scaled
            # to n tokens by the ratio of summed sequence lengths (stated in the note)
            scale = 1.0 if nb == n else (sum(range(1, n + 1)) / sum(range(1, nb + 1)))
            report.add(f"{name} sample {n} tokens B={B} cfg={cfg_scale}", B * n / t, "tokens/s",
                       B * n / (tb * scale), "baseline: no KV cache" + (
                           "" if nb == n else f" (measured at {nb} tokens, scaled to {n} by summed lengths)"))


def bench_train_step(report: Report, device: torch.device, repeat: int, peak_flops: float,
                     tok_cfg: TokenizerConfig, tok_batch: int, gen_cfg: GeneratorConfig, gen_batch: int,
                     precision: torch.dtype | None, compile_: bool = False) -> None:
    from .models.generator import LARPGenerator
    from .models.tokenizer import LARPTokenizer

    tag = ("bf16" if precision is not None else "fp32") + (" compiled" if compile_ else "")
    torch.manual_seed(0)
    tok = LARPTokenizer(tok_cfg, device=device).train()
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-4)
    model = torch.compile(tok) if compile_ else tok
    x = torch.rand(tok_batch, 3, tok_cfg.frame_num, tok_cfg.input_size, tok_cfg.input_size, device=device) * 2 - 1
    ctx = (lambda: torch.autocast(device.type, dtype=precision)) if precision is not None else None

    def tok_step() -> None:
        with ctx() if ctx else torch.enable_grad():
            out = model(x, 10, 100)
            loss = (out.reconstruction.float() - x).abs().mean() + 0.1 * out.encoding.loss_q
            if out.prior is not None:
                loss = loss + 0.06 * out.prior.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = timeit(tok_step, device, repeat, warmup=2 if compile_ else 1)
    enc_f, dec_f = tokenizer_flops(tok_cfg)
    flops = 3 * tok_batch * (enc_f + dec_f)
    report.add(f"train step tokenizer+prior B={tok_batch} ({tag})", t, "s", None,
               f"MFU {flops / t / peak_flops:.1%} of measured {'bf16' if precision else 'fp32'} matmul peak")
    tok = opt = model = None  # free the tokenizer before building the generator
    gen = LARPGenerator(gen_cfg, device=device).train()
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-4)
    gmodel = torch.compile(gen) if compile_ else gen
    z = torch.randint(0, gen_cfg.vocab_size, (gen_batch, gen_cfg.num_tokens), device=device)
    y = torch.randint(0, gen_cfg.num_classes, (gen_batch,), device=device)

    def gen_step() -> None:
        with ctx() if ctx else torch.enable_grad():
            logits = gmodel(z, y)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), z.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = timeit(gen_step, device, repeat, warmup=2 if compile_ else 1)
    report.add(f"train step generator B={gen_batch} ({tag})", t, "s", None,
               f"MFU {generator_train_flops(gen_cfg, gen_batch) / t / peak_flops:.1%}")


def bench_app_round_trip(report: Report, tok, clip: Path, device: torch.device, repeat: int) -> None:
    """What the app's Reconstruct button runs: :func:`larp_lab.pipelines.reconstruct` on the file,
    then :func:`larp_lab.pipelines.save_reconstruction` (two H.264 MP4s and the token files)."""
    import tempfile

    from .pipelines import reconstruct, save_reconstruction

    def round_trip(d: str):
        r = reconstruct(tok, clip)
        save_reconstruction(r, d, "bench")
        return r

    with tempfile.TemporaryDirectory() as d:
        t = timeit(lambda: round_trip(d), device, repeat)
        ms = round_trip(d).timings_ms
    report.add("app reconstruct round trip (read, encode, decode, 2 MP4s + tokens)", t * 1000, "ms", None,
               f"model time {ms['encode'] + ms['decode']:.0f} ms (encode {ms['encode']:.0f}, decode "
               f"{ms['decode']:.0f}); read {ms['read']:.0f} ms")


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmarks(device: str = "cpu", quick: bool = False, out: str | Path | None = None,
                   compile_: bool = False) -> Report:
    """All benchmarks for ``device``; CPU uses sizes that finish in minutes, GPU the paper's."""
    from .bundled import DEFAULT_GENERATOR, DEFAULT_TOKENIZER, has_bundled

    dev = torch.device(device)
    report = Report(str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
                    machine_info(dev))
    gpu = dev.type == "cuda"
    repeat = 3 if quick else 5
    peak32 = matmul_flops(dev)
    report.add("fp32 matmul rate (2048^3)", peak32 / 1e9, "GFLOP/s", None, "the FLOP floors below use this")
    peak_bf16 = None
    if gpu:
        peak_bf16 = matmul_flops(dev, 8192, torch.bfloat16)
        report.add("bf16 matmul rate (8192^3)", peak_bf16 / 1e9, "GFLOP/s")
    # bundled models when present, else the same preset with random weights
    tok_model = gen_model = None
    if has_bundled(DEFAULT_TOKENIZER):
        from .bundled import load_default_tokenizer

        tok_model = load_default_tokenizer(dev)
    tiny_cfg = tok_model.config if tok_model is not None else TOKENIZER_PRESETS["tiny"]()
    tiny_name = "bundled tokenizer" if tok_model is not None else "tiny tokenizer (random)"
    bench_tokenizer(report, tiny_name, tiny_cfg, [1, 32], dev, repeat, peak32, model=tok_model)
    larp_l = TOKENIZER_PRESETS["larp-l"]()
    bench_tokenizer(report, "LARP-L tokenizer (random)", larp_l, [1, 32] if gpu else [1], dev,
                    2 if not gpu else repeat, peak32)
    if has_bundled(DEFAULT_GENERATOR):
        from .bundled import load_default_generator

        gen_model = load_default_generator(dev)
    gcfg = gen_model.config if gen_model is not None else GENERATOR_PRESETS["tiny"]()
    bench_sampling(report, "bundled generator" if gen_model is not None else "tiny generator (random)", gcfg,
                   [1, 32], dev, gcfg.num_tokens, repeat, model=gen_model)
    # the KV-cache target is stated at 1024 tokens: a small generator over 1024 tokens on any device
    long_cfg = gcfg.replace(num_tokens=1024, cls_token_num=1, frame_prediction=False, class_names=None,
                            num_classes=gcfg.num_classes)
    bench_sampling(report, f"generator {long_cfg.dim}w{long_cfg.n_layer}L at 1024 tokens (random)", long_cfg,
                   [1], dev, 1024, 1 if not gpu else repeat, baseline_tokens=1024)
    for preset in ("llama-abs-L", "llama-abs-LP"):
        cfg = GENERATOR_PRESETS[preset]()
        if gpu:
            bench_sampling(report, preset, cfg, [1, 32, 64] if preset.endswith("LP") else [1, 32], dev, 1024, 1,
                           baseline_tokens=256)
        else:  # CPU: a prefix of the sequence, enough to compare the two paths
            bench_sampling(report, preset, cfg, [1], dev, 64 if not quick else 32, 1, baseline_tokens=32)
    if gpu:
        bench_train_step(report, dev, repeat, peak_bf16, larp_l, 16, GENERATOR_PRESETS["llama-abs-LP"](), 8,
                         torch.bfloat16, compile_=False)
        if compile_:
            bench_train_step(report, dev, repeat, peak_bf16, larp_l, 16, GENERATOR_PRESETS["llama-abs-LP"](), 8,
                             torch.bfloat16, compile_=True)
    else:
        bench_train_step(report, dev, repeat, peak32, tiny_cfg, 8, gcfg, 8, None)
    clip = Path(__file__).resolve().parent.parent / "examples" / "bigbuckbunny_128.mp4"
    if clip.is_file():
        from .models.tokenizer import LARPTokenizer

        tok = tok_model if tok_model is not None else _perturbed(LARPTokenizer(tiny_cfg, device=dev))
        bench_app_round_trip(report, tok, clip, dev, repeat)
    print()
    print(report.table())
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(report.to_json(), indent=2))
        print(f"\nJSON: {p}")
    return report
