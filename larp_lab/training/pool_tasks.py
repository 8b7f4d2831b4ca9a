"""Training tasks fed from memory, for :func:`larp_lab.training.loop.train` (used by the bundled recipe).

* :func:`make_pool_tokenizer_task`: the tokenizer task of ``larp-lab train-tokenizer`` (same loss,
  prior, dead-code restarts) reading clips from a :class:`~larp_lab.training.pool.ClipPool`: the
  loop's sampler hands out indices, the loss gathers and augments the clips on the device;
* :class:`TokenTask`: next-token training of a generator on token sequences held on the device
  (class-conditional on labels, or frame prediction on conditioning tokens).

Both accept a :class:`~larp_lab.training.budget.Deadline`, checked before every step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .budget import Deadline
from .generator_task import generator_param_groups
from .pool import ClipPool, IndexDataset, augment, collate_indices, mixture_rows, to_float

__all__ = ["TokenTask", "evaluate_tokenizer_on_pool", "make_pool_tokenizer_task", "snapshot_steps", "to_device"]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def snapshot_steps(steps: int, count: int = 8, first: int = 25) -> list[int]:
    """About ``count`` distinct steps log-spaced from ``first`` to ``steps`` (the last step included)."""
    if steps <= first:
        return [steps]
    raw = torch.logspace(math.log10(first), math.log10(steps), count).round().long().tolist()
    return sorted(set(min(steps, max(1, int(v))) for v in raw) | {steps})


def make_pool_tokenizer_task(cfg, device: torch.device, pool: ClipPool, val: ClipPool, photo_weight: float,
                             deadline: Deadline | None, snapshots: Path | None = None):
    """A :class:`~larp_lab.training.tokenizer_task.TokenizerTask` for ``cfg`` whose training clips come
    from ``pool`` (virtual indices of :func:`~larp_lab.training.pool.mixture_rows` with photo clips at
    ``photo_weight``, each flipped (not digits) and time-reversed at random) and whose evaluation is
    :func:`evaluate_tokenizer_on_pool` on ``val``. With ``snapshots``, the model is also saved (fp16,
    bundled format) into ``snapshots/step<NNNNNN>`` at about 8 log-spaced steps
    (:func:`snapshot_steps`): the latent space as it forms."""
    from .tokenizer_task import TokenizerTask

    class PoolTokenizerTask(TokenizerTask):
        """The tokenizer task of ``larp-lab train-tokenizer`` (same loss, same dead-code restarts), fed
        from the clip pool: indices in, clips gathered and augmented on the device."""

        def __init__(self) -> None:
            super().__init__(cfg, device)
            self.pool, self.val = pool, val
            self.rows = mixture_rows(pool.num_synthetic, pool.num_photos, photo_weight).to(pool.device)
            self.train_dataset = IndexDataset(len(self.rows))
            self.shuffle = True
            self.deadline = deadline
            self.steps_done = 0
            self._batch: dict[str, torch.Tensor] | None = None
            self._max_steps = 0
            self._snapshot_at: set[int] = set()

        def collate(self, batch: list[int]) -> dict[str, torch.Tensor]:
            return collate_indices(batch)

        def clips(self, index: torch.Tensor) -> torch.Tensor:
            """float32 (B, 3, T, S, S) on the device: pool clips of virtual indices, augmented."""
            rows = self.rows[index.to(self.rows.device)]
            raw = self.pool.clips[rows.to(self.pool.device)].to(self.device, non_blocking=True)
            return to_float(augment(raw, hflip=self.pool.spec.data != "digits"))  # a mirrored digit is no digit

        def loss(self, model: nn.Module, batch: dict, step: int, max_steps: int):
            if self.deadline is not None:
                self.deadline.check()
            if snapshots is not None and max_steps != self._max_steps:
                self._max_steps, self._snapshot_at = max_steps, set(snapshot_steps(max_steps))
            index = batch["index"]
            self._batch = {"video": self.clips(index), "label": torch.full_like(index, -1)}
            return super().loss(model, self._batch, step, max_steps)

        def after_step(self, batch: dict, step: int) -> dict[str, float]:
            self.steps_done = step + 1
            out = super().after_step(self._batch if self._batch is not None else batch, step)
            if snapshots is not None and step + 1 in self._snapshot_at:
                self.model.save_pretrained(snapshots / f"step{step + 1:06d}", dtype=torch.float16,
                                           metadata={"snapshot_step": step + 1, "max_steps": self._max_steps})
            return out

        def warmup_dataset(self):
            """The clips the codebook warm-up's k-means reads: the pool's labelled rows, unaugmented."""
            return _PoolVideos(self.pool)

        @torch.no_grad()
        def evaluate(self, model, step: int, run_dir: Path) -> dict[str, float]:
            return evaluate_tokenizer_on_pool(model, self.val, self.device, cfg.model.codebook_size)

    return PoolTokenizerTask()


class _PoolVideos(torch.utils.data.Dataset):
    """``{"video": float32 (3, T, S, S)}`` items of a pool's labelled rows (what ``collect_latents`` reads)."""

    def __init__(self, pool: ClipPool) -> None:
        self.pool = pool

    def __len__(self) -> int:
        return max(1, self.pool.num_synthetic)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"video": self.pool.gather(torch.tensor([int(i)]))[0]}


@torch.no_grad()
def evaluate_tokenizer_on_pool(model, val: ClipPool, device: torch.device, codebook_size: int,
                               batch: int = 64, ssim_clips: int | None = None) -> dict[str, float]:
    """PSNR of reconstructions, codebook usage and perplexity, and the prior's bits per token, on
    every clip of ``val`` (argmax codes, eval mode); SSIM on the first ``ssim_clips`` clips (default:
    all on CUDA, 16 on the CPU, where its 11x11 windows cost seconds)."""
    if ssim_clips is None:
        ssim_clips = len(val) if device.type == "cuda" else 16
    from ..evaluation.metrics import psnr, ssim

    was = model.training
    model.eval()
    ps, ss, bits = [], [], []
    counts = torch.zeros(codebook_size, dtype=torch.long)
    for i in range(0, len(val), batch):
        x = val.gather(torch.arange(i, min(len(val), i + batch))).to(device)
        enc = model.encode(x)
        rec = model.decode(enc.embeddings).float().clamp(-1, 1)
        ps.append(psnr(rec, x).cpu())
        if i < ssim_clips:
            ss.append(ssim(rec[: ssim_clips - i], x[: ssim_clips - i]).cpu())
        counts += torch.bincount(enc.indices.flatten().cpu(), minlength=codebook_size)
        if getattr(model, "prior_model", None) is not None:
            bits.append((-model.prior_log_likelihood(enc.indices) / math.log(2)).mean(dim=1).cpu())
    model.train(was)
    p = counts.float() / counts.sum()
    nz = p[p > 0]
    s_all = torch.cat(ss)
    out = {"psnr": float(torch.cat(ps).mean()), "ssim": float(s_all.mean()), "ssim_clips": len(s_all),
           "codebook_usage": float((counts > 0).float().mean()), "perplexity": float(torch.exp(-(nz * nz.log()).sum())),
           "clips": len(val)}
    if bits:
        out["prior_bits_per_token"] = float(torch.cat(bits).mean())
    return out


class TokenTask:
    """Next-token training of a :class:`~larp_lab.models.generator.LARPGenerator` on tokens held on the
    device (class-conditional on ``labels``, or frame prediction on ``cond``); the loss of
    ``larp-lab train-generator``, the data of the pool's stage 2."""

    display_keys = ("loss",)

    def __init__(self, cfg, data: dict[str, torch.Tensor], train_rows: torch.Tensor, val_rows: torch.Tensor,
                 device: torch.device, deadline: Deadline | None = None) -> None:
        from ..models.generator import LARPGenerator

        self.cfg, self.data, self.device, self.deadline = cfg, data, device, deadline
        self.model = LARPGenerator(cfg.model)
        self.train_rows, self.val_rows = train_rows.to(device), val_rows.to(device)
        self.train_dataset = IndexDataset(len(train_rows))
        self.shuffle = True
        self.steps_done = 0

    def param_groups(self) -> list[dict[str, Any]]:
        return generator_param_groups(self.model)

    def collate(self, batch: list[int]) -> dict[str, torch.Tensor]:
        return collate_indices(batch)

    def _rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.data["tokens"][rows].long()
        cond = self.data["cond"][rows] if self.cfg.model.frame_prediction else self.data["labels"][rows]
        return tokens, cond.long()

    def loss(self, model: nn.Module, batch: dict, step: int, max_steps: int):
        if self.deadline is not None:
            self.deadline.check()
        tokens, cond = self._rows(self.train_rows[batch["index"].to(self.device)])
        logits = model(tokens, cond)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        return loss, {"loss": loss.item()}

    def after_step(self, batch: dict, step: int) -> dict[str, float]:
        self.steps_done = step + 1
        return {}

    @torch.no_grad()
    def evaluate(self, model, step: int, run_dir: Path) -> dict[str, float]:
        was = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(self.val_rows), 256):
            tokens, cond = self._rows(self.val_rows[i : i + 256])
            ll = model.token_log_likelihood(tokens, cond)
            total -= float(ll.sum())
            count += ll.numel()
        model.train(was)
        nll = total / max(1, count)
        return {"val_nll": nll, "val_bits_per_token": nll / math.log(2), "val_sequences": len(self.val_rows)}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
