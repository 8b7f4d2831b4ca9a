"""``larp-lab evaluate``: a tokenizer's reconstruction metrics and a generator's sample metrics.

Tokenizer (on held-out clips): PSNR, SSIM, LPIPS (when its weights are given), codebook usage and
perplexity, rFVD with the I3D detector (when ``i3d_path`` is given) and the offline proxy rFVD with
the small video classifier (when one is given).

Generator (class-conditional): ``num_samples`` clips, classes balanced (``i % num_classes``), at
``cfg_scale``/``temperature``/``top_k``/``top_p`` from ``seed``: gFVD and proxy gFVD against the
held-out real clips, class accuracy of the samples by the classifier, and the validation-free
sampling speed. Real statistics can be cached (``real_stats_cache``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigBase, ConfigError, check_at_least, check_positive
from .codebook import CodebookStats
from .metrics import psnr, ssim


@dataclass
class EvalSettings(ConfigBase):
    """What ``larp-lab evaluate`` measures and how (the sampling fields apply to generators)."""

    num_clips: int = 256
    batch_size: int = 16
    seed: int = 0
    cfg_scale: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    i3d_path: str | None = None
    classifier_path: str | None = None
    lpips_vgg_path: str | None = None
    lpips_lin_path: str | None = None
    real_stats_cache: str | None = None
    progress: bool = True

    def validate(self) -> None:
        o = "EvalSettings"
        check_at_least(o, "num_clips", self.num_clips, 1)
        check_at_least(o, "batch_size", self.batch_size, 1)
        check_at_least(o, "top_k", self.top_k, 0)
        check_positive(o, "cfg_scale", self.cfg_scale, allow_zero=True)
        check_positive(o, "temperature", self.temperature, allow_zero=True)
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{o}.top_p = {self.top_p!r} must lie in (0, 1]")


def _loader(dataset: Dataset, n: int, batch_size: int) -> DataLoader:
    n = min(n, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    return DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=lambda b: (
        torch.stack([x["video"] for x in b]), torch.tensor([int(x.get("label", -1)) for x in b])))


def _bar(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False)


@torch.inference_mode()
def evaluate_tokenizer(tok, dataset: Dataset, settings: EvalSettings, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Reconstruction metrics of ``tok`` over the first ``num_clips`` clips of ``dataset``."""
    from .fvd import FeatureStats, fvd_from_stats

    settings.validate()
    tok = tok.to(device).eval()
    loader = _loader(dataset, settings.num_clips, settings.batch_size)
    lp = None
    if settings.lpips_vgg_path or settings.lpips_lin_path:
        from .lpips import LPIPS, video_lpips

        lp = LPIPS.from_files(settings.lpips_vgg_path, settings.lpips_lin_path, device=device)
    i3d = None
    if settings.i3d_path:
        from .fvd import I3DDetector

        i3d = I3DDetector(settings.i3d_path, device=device)
    clf = _classifier(settings, device)
    stats = CodebookStats(tok.config.codebook_size)
    sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0, "prior_bits": 0.0}
    has_prior = getattr(tok, "prior_model", None) is not None
    feats = {k: (FeatureStats(k), FeatureStats(k)) for k, on in (("i3d", i3d), ("proxy", clf)) if on is not None}
    n = 0
    t_enc = t_dec = 0.0
    for video, _ in _bar(loader, len(loader), "reconstructing", settings.progress):
        x = video.to(device)
        t0 = time.perf_counter()
        enc = tok.encode(x)
        t1 = time.perf_counter()
        rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1)
        t2 = time.perf_counter()
        t_enc, t_dec = t_enc + t1 - t0, t_dec + t2 - t1
        stats.update(enc.indices)
        if has_prior:  # -log2 p(token | earlier tokens) under the AR prior, mean over the N-1 predicted tokens
            sums["prior_bits"] += float((-tok.prior_log_likelihood(enc.indices) / math.log(2)).mean(1).sum())
        sums["psnr"] += float(psnr(rec, x).sum())
        sums["ssim"] += float(ssim(rec, x).sum())
        if lp is not None:
            sums["lpips"] += float(video_lpips(rec, x, lp).mean(1).sum())
        if i3d is not None:
            feats["i3d"][0].update(i3d(x))
            feats["i3d"][1].update(i3d(rec))
        if clf is not None:
            feats["proxy"][0].update(clf.features(x).cpu())
            feats["proxy"][1].update(clf.features(rec).cpu())
        n += x.shape[0]
    out: dict[str, Any] = {
        "clips": n,
        "psnr_db": sums["psnr"] / n,
        "ssim": sums["ssim"] / n,
        "codebook_usage": stats.usage(),
        "perplexity": stats.perplexity(),
        "encode_ms_per_clip": 1000 * t_enc / n,
        "decode_ms_per_clip": 1000 * t_dec / n,
    }
    if has_prior:
        out["prior_bits_per_token"] = sums["prior_bits"] / n
        out["uniform_bits_per_token"] = math.log2(tok.config.codebook_size)
    if lp is not None:
        out["lpips"] = sums["lpips"] / n
    if i3d is not None:
        out["rfvd"] = fvd_from_stats(*feats["i3d"])
    if clf is not None:
        out["proxy_rfvd"] = fvd_from_stats(*feats["proxy"])
    return out


def _classifier(settings: EvalSettings, device):
    if not settings.classifier_path:
        return None
    from .classifier import VideoClassifier

    return VideoClassifier.from_pretrained(settings.classifier_path, device=device).eval()


@torch.inference_mode()
def evaluate_generator(gen, tok, real: Dataset, settings: EvalSettings, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Sample metrics of a class-conditional generator (decoded with ``tok``) against ``real`` clips."""
    from .classifier import class_accuracy
    from .fvd import FeatureStats, fvd_from_stats

    settings.validate()
    if gen.config.frame_prediction:
        raise ValueError("evaluate_generator measures class-conditional generators; this one predicts frames")
    gen, tok = gen.to(device).eval(), tok.to(device).eval()
    clf = _classifier(settings, device)
    i3d = None
    if settings.i3d_path:
        from .fvd import I3DDetector

        i3d = I3DDetector(settings.i3d_path, device=device)
    g = torch.Generator(device=device).manual_seed(settings.seed)
    n = settings.num_clips
    labels = torch.arange(n) % gen.config.num_classes
    fake_feats = {k: FeatureStats(k) for k, on in (("i3d", i3d), ("proxy", clf)) if on is not None}
    videos, t_sample = [], 0.0
    for i in _bar(range(0, n, settings.batch_size), (n + settings.batch_size - 1) // settings.batch_size,
                  "sampling", settings.progress):
        y = labels[i : i + settings.batch_size].to(device)
        t0 = time.perf_counter()
        idx = gen.sample(y, cfg_scale=settings.cfg_scale, temperature=settings.temperature, top_k=settings.top_k,
                         top_p=settings.top_p, generator=g)
        t_sample += time.perf_counter() - t0
        v = tok.decode_indices(idx).clamp(-1, 1)
        if i3d is not None:
            fake_feats["i3d"].update(i3d(v))
        if clf is not None:
            fake_feats["proxy"].update(clf.features(v).cpu())
            videos.append(v.cpu())
    out: dict[str, Any] = {"samples": n, "cfg_scale": settings.cfg_scale, "seed": settings.seed,
                           "sample_s_per_clip": t_sample / n}
    if clf is not None:
        out["class_accuracy"] = class_accuracy(torch.cat(videos), labels, clf)
    if fake_feats:
        real_feats = _real_stats(real, n, settings, device, i3d, clf)
        if i3d is not None:
            out["gfvd"] = fvd_from_stats(real_feats["i3d"], fake_feats["i3d"])
        if clf is not None:
            out["proxy_gfvd"] = fvd_from_stats(real_feats["proxy"], fake_feats["proxy"])
    return out


def _real_stats(real: Dataset, n: int, settings: EvalSettings, device, i3d, clf) -> dict[str, Any]:
    """Real-clip features, read from / written to ``real_stats_cache`` (one .npz per detector)."""
    from .fvd import FeatureStats

    detectors = {k: d for k, d in (("i3d", i3d), ("proxy", clf)) if d is not None}
    desc = {k: f"{k}|{getattr(real, 'description', type(real).__name__)}|n={min(n, len(real))}|"
               f"{getattr(d, 'description', None) or getattr(getattr(d, 'config', None), 'to_dict', lambda: '')()}"
            for k, d in detectors.items()}
    cache = {k: Path(f"{settings.real_stats_cache}.{k}.npz") for k in detectors} if settings.real_stats_cache else {}
    out: dict[str, Any] = {}
    for k in detectors:
        if k in cache and cache[k].is_file():
            out[k] = FeatureStats.load(cache[k], expected_description=desc[k])
    todo = [k for k in detectors if k not in out]
    if todo:
        fresh = {k: FeatureStats(desc[k]) for k in todo}
        for video, _ in _loader(real, n, settings.batch_size):
            x = video.to(device)
            for k in todo:
                f = detectors[k](x) if k == "i3d" else detectors[k].features(x)
                fresh[k].update(f.cpu())
        for k in todo:
            if k in cache:
                fresh[k].save(cache[k])
        out.update(fresh)
    return out


def format_table(title: str, metrics: dict[str, Any]) -> str:
    """A plain two-column table."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 3 + max(len(v) for _, v in rows))
    return "\n".join([title, line, *(f"{k:<{w}} | {v}" for k, v in rows), line])


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2))
