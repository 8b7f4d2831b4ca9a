"""Sample tokens and decode them: class-conditional generation, frame prediction, and completing a
token sequence from its first k tokens (by the tokenizer's prior or a generator)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..analysis.completion import complete_with_prior
from ..data.video import VideoLimits, repeat_last_frame
from ._util import Stopwatch, compare
from .inputs import DEFAULT_LIMITS, ClipSource, as_clip_batch


def _seeded(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


# ------------------------------------------------------------------------------------------------
# class-conditional generation
# ------------------------------------------------------------------------------------------------


@dataclass
class Generation:
    """What :func:`generate` returns (tensors on the CPU)."""

    videos: Tensor  #: float32 (B, 3, T, H, W) in [-1, 1]
    tokens: Tensor  #: int64 (B, N)
    log_likelihood: Tensor | None  #: float32 (B, N): log p of each token under the generator (nats)
    class_id: int
    class_name: str
    settings: dict[str, Any]  #: num_samples, cfg_scale, temperature, top_k, top_p, seed
    metrics: dict[str, Any]  #: mean_nll_per_token: one value per sample (nats), when scored
    timings_ms: dict[str, float]  #: sample, decode, score


@torch.inference_mode()
def generate(
    tok,
    gen,
    class_name_or_id: str | int,
    *,
    num_samples: int = 1,
    cfg_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    score: bool = True,
    progress: bool = False,
) -> Generation:
    """Sample ``num_samples`` token sequences of one class, decode them and (``score``) measure the
    log-likelihood of every token under the generator (one teacher-forced pass)."""
    gen.check_tokenizer(tok)
    k = gen.class_index(class_name_or_id)
    if int(num_samples) < 1:
        raise ValueError(f"the number of samples must be at least 1, got {num_samples}")
    labels = torch.full((int(num_samples),), k, dtype=torch.long, device=gen.device)
    sw = Stopwatch(gen.device)
    with sw("sample"):
        idx = gen.sample(labels, cfg_scale=cfg_scale, temperature=temperature, top_k=int(top_k), top_p=top_p,
                         generator=_seeded(gen.device, seed), progress=progress)
    with sw("decode"):
        videos = tok.decode_indices(idx).clamp(-1, 1).cpu()
    ll, metrics = None, {}
    if score:
        with sw("score"):
            ll = gen.token_log_likelihood(idx, labels).cpu()
        metrics["mean_nll_per_token"] = [float(v) for v in -ll.mean(1)]
    names = gen.config.class_names
    settings = {"num_samples": int(num_samples), "cfg_scale": cfg_scale, "temperature": temperature,
                "top_k": int(top_k), "top_p": top_p, "seed": int(seed)}
    return Generation(videos=videos, tokens=idx.cpu(), log_likelihood=ll, class_id=k,
                      class_name=names[k] if names else str(k), settings=settings, metrics=metrics,
                      timings_ms=sw.ms)


# ------------------------------------------------------------------------------------------------
# frame prediction
# ------------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """What :func:`predict` returns (tensors on the CPU)."""

    truth: Tensor  #: float32 (B, 3, T, H, W): the clip as the model saw it
    prediction: Tensor  #: float32 (B, 3, T, H, W): decoded prediction (its first frames re-encode the condition)
    baseline: Tensor  #: float32 (B, 3, T, H, W): the last conditioning frame repeated
    tokens: Tensor  #: int64 (B, N): the predicted tokens
    cond_tokens: Tensor  #: int64 (B, N): tokens of the conditioning clip (last frame repeated)
    cond_frames: int
    #: psnr_predicted_db and psnr_repeat_last_db over the predicted frames; per_frame_psnr_db and
    #: per_frame_psnr_repeat_last_db over all frames (means over the B clips)
    metrics: dict[str, Any]
    timings_ms: dict[str, float]  #: read (files only), encode, sample, decode
    source: ClipSource | None


@torch.inference_mode()
def predict(
    tok,
    predictor,
    clip: str | os.PathLike | Tensor,
    *,
    cond_frames: int = 5,
    seed: int = 0,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    start_time: float = 0.0,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> Prediction:
    """Condition on the first ``cond_frames`` frames of ``clip`` (a file or (B, 3, T, H, W) tensor),
    predict the tokens of the whole clip, decode, and compare the future frames with the truth and
    with the repeat-last-frame baseline."""
    if not predictor.config.frame_prediction:
        raise ValueError("this is a class-conditional generator; frame prediction needs a frame-prediction one")
    predictor.check_tokenizer(tok)
    T = tok.config.frame_num
    if not 1 <= int(cond_frames) < T:
        raise ValueError(f"condition on 1 to {T - 1} frames, got {cond_frames}")
    cond_frames = int(cond_frames)
    sw = Stopwatch(tok.device)
    with sw("read"):
        x, source = as_clip_batch(clip, tok, start_time=start_time, limits=limits)
    if source is None:
        del sw.ms["read"]
    if x.shape[2] != T:
        raise ValueError(f"frame prediction works on clips of the tokenizer's {T} frames; got {x.shape[2]}")
    baseline = repeat_last_frame(x, cond_frames)
    with sw("encode"):
        cond = tok.encode(baseline).indices
    with sw("sample"):
        idx = predictor.sample(cond, temperature=temperature, top_k=int(top_k), top_p=top_p,
                               generator=_seeded(predictor.device, seed), greedy=greedy)
    with sw("decode"):
        pred = tok.decode_indices(idx, tuple(x.shape[2:])).clamp(-1, 1)
    x, pred, baseline = x.cpu(), pred.cpu(), baseline.cpu()
    fut = slice(cond_frames, T)
    ours, base = compare(pred, x, ssim_too=False), compare(baseline, x, ssim_too=False)
    metrics = {"cond_frames": cond_frames,
               "psnr_predicted_db": compare(pred[:, :, fut], x[:, :, fut], ssim_too=False)["psnr_db"],
               "psnr_repeat_last_db": compare(baseline[:, :, fut], x[:, :, fut], ssim_too=False)["psnr_db"],
               "per_frame_psnr_db": ours["per_frame_psnr_db"],
               "per_frame_psnr_repeat_last_db": base["per_frame_psnr_db"]}
    return Prediction(truth=x, prediction=pred, baseline=baseline, tokens=idx.cpu(), cond_tokens=cond.cpu(),
                      cond_frames=cond_frames, metrics=metrics, timings_ms=sw.ms, source=source)


# ------------------------------------------------------------------------------------------------
# completion from the first k tokens
# ------------------------------------------------------------------------------------------------


@dataclass
class Completion:
    """What :func:`complete` returns (tensors on the CPU)."""

    tokens: Tensor  #: int64 (B, N): the first k tokens kept, the rest filled in
    video: Tensor  #: float32 (B, 3, T, H, W) in [-1, 1]: the completed tokens decoded
    k: int
    method: str  #: "prior" (the tokenizer's AR prior) or "generator"
    #: tokens_changed (vs the input tokens); with a reference clip also psnr_db, ssim, per_frame_psnr_db
    metrics: dict[str, Any]
    timings_ms: dict[str, float]  #: complete, decode


@torch.inference_mode()
def complete(
    tok,
    tokens: Tensor | list,
    k: int,
    *,
    generator=None,
    reference: Tensor | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int = 0,
) -> Completion:
    """Keep ``tokens[:, :k]`` (1 <= k <= N), fill in the rest, decode.

    Args:
        tokens: int (B, N) or (N,) token ids of the tokenizer.
        generator: a class-conditional :class:`~larp_lab.models.generator.LARPGenerator` that
            continues the prefix unconditionally (its null class); None = the tokenizer's AR prior.
        reference: the clip (B, 3, T, H, W) the tokens came from, to measure the completion against.
        greedy: argmax continuation (default); otherwise sampled at ``temperature`` with ``seed``.
    """
    idx = torch.as_tensor(tokens).long()
    idx = (idx.unsqueeze(0) if idx.ndim == 1 else idx).to(tok.device)
    N = tok.config.num_tokens
    if idx.ndim != 2 or idx.shape[1] != N:
        raise ValueError(f"expected token ids of shape (B, {N}) or ({N},); got {tuple(idx.shape)}")
    k = int(k)
    if not 1 <= k <= N:
        raise ValueError(f"k must be between 1 and {N}, got {k}")
    sw = Stopwatch(tok.device)
    if generator is None:
        method = "prior"
        with sw("complete"):
            full = complete_with_prior(tok, idx, k, greedy=greedy, temperature=temperature,
                                       generator=_seeded(tok.device, seed))
    else:
        method = "generator"
        if generator.config.frame_prediction:
            raise ValueError("completion needs a class-conditional generator, not a frame-prediction one")
        generator.check_tokenizer(tok)
        B = idx.shape[0]
        with sw("complete"):
            full = generator.sample(generator.null_condition(B), temperature=temperature, greedy=greedy,
                                    generator=_seeded(generator.device, seed), prefix=idx[:, :k].to(generator.device))
    with sw("decode"):
        video = tok.decode_indices(full.to(tok.device)).clamp(-1, 1).cpu()
    full = full.cpu()
    metrics: dict[str, Any] = {"k": k, "method": method, "tokens_changed": int((full != idx.cpu()).sum())}
    if reference is not None:
        ref = reference.unsqueeze(0) if reference.ndim == 4 else reference
        metrics.update(compare(video, ref.cpu()))
    return Completion(tokens=full, video=video, k=k, method=method, metrics=metrics, timings_ms=sw.ms)
