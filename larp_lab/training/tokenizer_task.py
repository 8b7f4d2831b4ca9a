"""Training the LARP tokenizer together with its AR prior.

Loss per step (official weights by default)::

    rec (L1 or L2)  +  loss_q_weight * w(step) * VQ loss  +  prior_loss_weight * prior CE
    [+ lpips_weight * LPIPS]  [+ disc_weight * adversarial, from gan.disc_start]

The prior's CE is the two-round scheduled-sampling loss, its ramp driven by (step, max_steps); the
prior's parameters get their own learning-rate multiplier (``prior_lr_mult``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.tokenizer import LARPTokenizer
from .config import TokenizerTrainConfig
from .data import build_dataset, is_procedural


def _decay_groups(named: list[tuple[str, nn.Parameter]], wd_mult: float, lr_mult: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on norms, biases, embeddings tables of positions)."""
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n and "pos_emb" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n and "pos_emb" not in n)]
    groups = []
    if decay:
        groups.append({"params": decay, "lr_mult": lr_mult})
    if no_decay:
        groups.append({"params": no_decay, "lr_mult": lr_mult, "weight_decay": 0.0})
    return groups


class TokenizerTask:
    display_keys = ("loss", "rec", "psnr", "prior_ce", "usage")

    def __init__(self, cfg: TokenizerTrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.model = LARPTokenizer(cfg.model)
        self.train_dataset = build_dataset(cfg.data, train=True)
        self.val_dataset = build_dataset(cfg.data, train=False)
        self.shuffle = not is_procedural(cfg.data)
        self.lpips = None
        if cfg.lpips_weight > 0:
            from ..evaluation.lpips import LPIPS

            self.lpips = LPIPS.from_files(cfg.lpips_vgg_path, cfg.lpips_lin_path, device=device)
        self.gan = None
        if cfg.gan is not None:
            from .gan_trainer import GanTrainer

            steps_per_epoch = max(1, len(self.train_dataset) // cfg.run.batch_size)
            self.gan = GanTrainer(cfg.gan, cfg.model, device, steps_per_epoch)
        self._val_batch = None
        self._code_counts = torch.zeros(cfg.model.codebook_size, dtype=torch.long)
        self._last_latents: torch.Tensor | None = None
        self.locality = None  # attention-locality loss (training/locality.py), off unless configured
        if cfg.locality is not None and cfg.locality.weight > 0:
            from .locality import AttentionLocality

            m = cfg.model
            if m.token_mode == "patch":
                raise ValueError("the locality loss ties each holistic query to a cell of the frame; patch tokens "
                                 "are tied to their patch already: set locality.weight to 0 for token_mode 'patch'")
            self.locality = AttentionLocality(cfg.locality, m.num_tokens, m.patch_grid, m.decoder_patch_grid)

    # -------------------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        named = list(self.model.named_parameters())
        main = [(n, p) for n, p in named if not n.startswith("prior_model.")]
        prior = [(n, p) for n, p in named if n.startswith("prior_model.")]
        return _decay_groups(main, 1.0, 1.0) + _decay_groups(prior, 1.0, self.cfg.prior_lr_mult)

    def collate(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "video": torch.stack([b["video"] for b in batch]),
            "label": torch.tensor([int(b.get("label", -1)) for b in batch], dtype=torch.long),
        }

    def loss_q_weight(self, step: int) -> float:
        c = self.cfg
        if c.loss_q_warmup_steps <= 0 or step >= c.loss_q_warmup_steps:
            return c.loss_q_weight
        frac = step / c.loss_q_warmup_steps
        return c.loss_q_weight * (c.loss_q_warmup_start + (1.0 - c.loss_q_warmup_start) * frac)

    def loss(self, model: nn.Module, batch: dict, step: int, max_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        x = batch["video"]
        loc_w = self.locality.cfg.weight_at(step) if self.locality is not None else 0.0
        bare = getattr(model, "module", model)
        with self.locality.recording(bare) if loc_w > 0 else contextlib.nullcontext():
            if step < c.vq_warmup_steps:  # codebook warm-up: continuous latents, no VQ, no prior
                from .codebook_init import continuous_forward

                out = continuous_forward(bare, x)
            else:
                out = model(x, step, max_steps, sample=None if c.vq_sampling else False)
        rec = out.reconstruction.float()
        rec_loss = F.l1_loss(rec, x) if c.rec_loss == "l1" else F.mse_loss(rec, x)
        total = rec_loss + self.loss_q_weight(step) * out.encoding.loss_q
        metrics: dict[str, float] = {"rec": rec_loss.item(), "loss_q": out.encoding.loss_q.item()}
        if loc_w > 0:
            loc = self.locality.loss()
            total = total + loc_w * loc
            metrics.update(locality=loc.item(), locality_weight=loc_w)
        if out.prior is not None:
            total = total + c.prior_loss_weight * out.prior.loss
            metrics.update(
                prior_ce=out.prior.loss.item(), prior_top1=out.prior.top1.item(), prior_top5=out.prior.top5.item(),
                ss_ratio=out.prior.ss_ratio,
            )
        if self.lpips is not None:
            lp = self.lpips(rec, x).mean()
            total = total + c.lpips_weight * lp
            metrics["lpips"] = lp.item()
        if self.gan is not None:
            g_loss, g_metrics = self.gan.generator_loss(rec, step)
            total = total + g_loss
            metrics.update(g_metrics)
            self._last_rec = rec.detach()
        with torch.no_grad():
            if c.dead_code_restart_every > 0 and step >= c.vq_warmup_steps:
                self._code_counts += torch.bincount(out.encoding.indices.flatten().cpu(),
                                                    minlength=self._code_counts.numel())
                self._last_latents = out.encoding.normalized.detach().reshape(-1, out.encoding.normalized.shape[-1])
            mse = (rec.clamp(-1, 1) - x).pow(2).mean().clamp_min(1e-10) / 4.0
            metrics["psnr"] = float(10 * torch.log10(1.0 / mse))
            metrics["usage"] = out.encoding.indices.unique().numel() / self.cfg.model.codebook_size
        metrics["loss"] = total.item()
        return total, metrics

    def after_step(self, batch: dict, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        c = self.cfg
        if c.vq_warmup_steps > 0 and step + 1 == c.vq_warmup_steps:  # end of warm-up: k-means codebook
            from .codebook_init import collect_latents, init_codebook_from_latents

            lat = collect_latents(self.model, self.warmup_dataset(), c.vq_init_clips, 32, c.run.seed + 4242, self.device)
            init_codebook_from_latents(self.model, lat, seed=c.run.seed + 4243)
            metrics["codebook_init"] = 1.0
        every = self.cfg.dead_code_restart_every
        if every > 0 and (step + 1) % every == 0:
            metrics["restarted_codes"] = float(self.restart_dead_codes())
        if self.gan is not None:
            metrics.update(self.gan.discriminator_step(batch["video"], self._last_rec, step))
        return metrics

    def warmup_dataset(self):
        """Clips (``{"video": ...}`` items) whose latents initialise the codebook after the warm-up."""
        return self.train_dataset

    @torch.no_grad()
    def restart_dead_codes(self) -> int:
        """Re-initialise codes unused since the last restart to random encoder outputs of the last
        batch (all processes agree: counts are summed and the new rows broadcast from rank 0)."""
        import torch.distributed as dist

        counts = self._code_counts.to(self.device)
        dist_on = dist.is_available() and dist.is_initialized()
        if dist_on:
            dist.all_reduce(counts)
        dead = (counts == 0).nonzero().flatten()
        self._code_counts.zero_()
        if dead.numel() == 0 or self._last_latents is None:
            return 0
        emb = self.model.bottleneck.regularizer.embedding.weight
        pool = self._last_latents.to(emb.device, emb.dtype)
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
        new = pool[pick] + 0.01 * torch.randn(dead.numel(), pool.shape[1], device=pool.device, dtype=pool.dtype)
        alive = emb[(counts > 0).to(emb.device)]
        scale = alive.norm(dim=-1).mean() if alive.numel() else emb.new_tensor(1.0)
        new = torch.nn.functional.normalize(new, dim=-1) * scale
        if dist_on:
            dist.broadcast(new, src=0)
        emb[dead.to(emb.device)] = new
        return int(dead.numel())

    # -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: LARPTokenizer, step: int, run_dir: Path) -> dict[str, float]:
        from ..data.video import side_by_side, write_video
        from ..evaluation.metrics import psnr, ssim

        model.eval()
        if self._val_batch is None:
            items = [self.val_dataset[i] for i in range(len(self.val_dataset))]
            self._val_batch = torch.stack([it["video"] for it in items])
        x_all = self._val_batch
        recs, counts = [], torch.zeros(self.cfg.model.codebook_size, dtype=torch.long)
        for i in range(0, len(x_all), 16):
            x = x_all[i : i + 16].to(self.device)
            enc = model.encode(x)
            recs.append(model.decode(enc.embeddings).clamp(-1, 1).cpu())
            counts += torch.bincount(enc.indices.flatten().cpu(), minlength=counts.numel())
        rec = torch.cat(recs)
        p = counts.float() / counts.sum()
        nz = p[p > 0]
        metrics = {
            "psnr": float(psnr(rec, x_all).mean()),
            "ssim": float(ssim(rec, x_all).mean()),
            "codebook_usage": float((counts > 0).float().mean()),
            "perplexity": float(torch.exp(-(nz * nz.log()).sum())),
        }
        samples = run_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        k = min(4, len(x_all))
        pairs = [side_by_side([x_all[i], rec[i]]) for i in range(k)]
        write_video(samples / f"reconstruction_step{step:07d}.mp4", torch.cat(pairs, dim=-2), fps=8)
        from ..data.video import save_frame_grid

        save_frame_grid(samples / f"reconstruction_step{step:07d}.png", [v for pair in zip(x_all[:k], rec[:k]) for v in pair])
        return metrics

    # -------------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"code_counts": self._code_counts.clone()}
        if self._last_latents is not None:
            state["last_latents"] = self._last_latents.cpu()
        if self.gan is not None:
            state["gan"] = self.gan.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "code_counts" in state:
            self._code_counts.copy_(state["code_counts"])
        if "last_latents" in state:
            self._last_latents = state["last_latents"].to(self.device)
        if self.gan is not None and "gan" in state:
            self.gan.load_state_dict(state["gan"])
