"""Generate class-conditional clips, and predict the future of a clip (frame prediction)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.video import VideoLimits, read_video, repeat_last_frame, side_by_side, write_video
from ..evaluation.metrics import per_frame_psnr, psnr


@dataclass
class Sample:
    path: Path  #: H.264 MP4 of the decoded clip
    tokens: list[int]
    log_likelihood: list[float]  #: per-token log p under the generator (nats)
    mean_nll: float


def class_index(gen, name_or_id: str | int) -> int:
    """A class id from a name (``config.class_names``) or a number."""
    names = gen.config.class_names
    if isinstance(name_or_id, int) or str(name_or_id).lstrip("-").isdigit():
        k = int(name_or_id)
    elif names and name_or_id in names:
        k = names.index(name_or_id)
    else:
        raise ValueError(f"unknown class {name_or_id!r}" + (f"; choose one of: {', '.join(names)}" if names else ""))
    if not 0 <= k < gen.config.num_classes:
        raise ValueError(f"class id {k} is outside [0, {gen.config.num_classes})")
    return k


def check_compatible(tok, gen) -> None:
    if tok.config.num_tokens != gen.config.num_tokens or tok.config.codebook_size != gen.config.vocab_size:
        raise ValueError(
            f"the generator ({gen.config.num_tokens} tokens over {gen.config.vocab_size} codes) does not fit the "
            f"tokenizer ({tok.config.num_tokens} tokens over {tok.config.codebook_size} codes)"
        )


@torch.inference_mode()
def generate_clips(
    tok, gen, class_name: str | int, *, num_samples: int = 1, cfg_scale: float = 1.0, temperature: float = 1.0,
    top_k: int = 0, top_p: float = 1.0, seed: int = 0, out_dir: str | Path | None = None, fps: float = 8.0,
) -> tuple[list[Sample], dict]:
    """Sample ``num_samples`` clips of one class, decode them and score every token."""
    check_compatible(tok, gen)
    if not 1 <= num_samples <= 16:
        raise ValueError("the number of samples must be between 1 and 16")
    k = class_index(gen, class_name)
    labels = torch.full((num_samples,), k, dtype=torch.long, device=gen.device)
    g = torch.Generator(device=gen.device).manual_seed(int(seed))
    t0 = time.perf_counter()
    idx = gen.sample(labels, cfg_scale=cfg_scale, temperature=temperature, top_k=int(top_k), top_p=top_p, generator=g)
    t1 = time.perf_counter()
    videos = tok.decode_indices(idx).clamp(-1, 1).cpu()
    t2 = time.perf_counter()
    ll = gen.token_log_likelihood(idx, labels).cpu()
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="larp_gen_"))
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(num_samples):
        path = write_video(out / f"sample_{i:02d}.mp4", videos[i], fps=fps)
        samples.append(Sample(path, idx[i].tolist(), ll[i].tolist(), float(-ll[i].mean())))
    name = gen.config.class_names[k] if gen.config.class_names else str(k)
    info = {"class": name, "class_id": k, "sample_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3),
            "mean_nll_per_token": [round(s.mean_nll, 4) for s in samples]}
    return samples, info


@dataclass
class Prediction:
    path: Path  #: truth | prediction, side by side (MP4)
    psnr_predicted: float  #: PSNR over the predicted frames
    psnr_repeat_last: float  #: baseline: repeat the last conditioning frame
    per_frame_psnr: list[float]
    cond_frames: int


@torch.inference_mode()
def predict_future(
    tok, predictor, video_path: str | Path, *, cond_frames: int = 5, seed: int = 0, greedy: bool = False,
    out_dir: str | Path | None = None, limits: VideoLimits | None = None, fps: float = 8.0,
) -> Prediction:
    """Condition on the first ``cond_frames`` frames of a clip; predict the whole clip; compare."""
    check_compatible(tok, predictor)
    cfg = tok.config
    if not 1 <= cond_frames < cfg.frame_num:
        raise ValueError(f"condition on 1 to {cfg.frame_num - 1} frames")
    kwargs = {"limits": limits} if limits is not None else {}
    x = read_video(video_path, cfg.frame_num, size=cfg.input_size, **kwargs).unsqueeze(0).to(tok.device)
    cond = tok.encode(repeat_last_frame(x, cond_frames)).indices
    g = torch.Generator(device=predictor.device).manual_seed(int(seed))
    idx = predictor.sample(cond, generator=g, greedy=greedy)
    pred = tok.decode_indices(idx).clamp(-1, 1)
    future = slice(cond_frames, cfg.frame_num)
    baseline = repeat_last_frame(x, cond_frames)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="larp_pred_"))
    path = write_video(out / "prediction.mp4", side_by_side([x[0].cpu(), pred[0].cpu()]), fps=fps)
    return Prediction(
        path=path,
        psnr_predicted=float(psnr(pred[:, :, future], x[:, :, future])[0]),
        psnr_repeat_last=float(psnr(baseline[:, :, future], x[:, :, future])[0]),
        per_frame_psnr=[round(float(v), 3) for v in per_frame_psnr(pred, x)[0]],
        cond_frames=cond_frames,
    )
