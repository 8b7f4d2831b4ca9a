"""The discriminator side of tokenizer training: model, optimizer, LeCam EMA and schedule.

The official trainer counts its step from 1 (incremented before the step) and compares the GAN
start with the 1-based epoch; here ``step`` is 0-based, so ``step + 1`` is passed on, and the epoch
is ``step * batch_size // dataset_len + 1``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import TokenizerConfig
from ..models.discriminator import TransformerDiscriminator
from .config import GANConfig
from .gan import DiscriminatorSchedule, LeCamEMA, discriminator_step_loss, generator_adversarial_loss


class GanTrainer:
    def __init__(self, cfg: GANConfig, model_cfg: TokenizerConfig, device: torch.device,
                 steps_per_epoch: int = 1_000_000_000) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.disc = TransformerDiscriminator(  # judges the tokenizer's clips
            cfg.discriminator, input_size=model_cfg.input_size, frame_num=model_cfg.frame_num,
            in_channels=model_cfg.in_channels, device=device,
        )
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr, betas=(cfg.d_beta1, cfg.d_beta2))
        self.lecam = LeCamEMA(cfg.lecam_decay).to(device)
        self.schedule = DiscriminatorSchedule.from_config(cfg)

    def _epoch(self, step: int) -> int:
        return step // self.steps_per_epoch + 1

    def generator_loss(self, rec: torch.Tensor, step: int, **_: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted adversarial loss of the reconstructions (D frozen), and its metrics."""
        self.disc.requires_grad_(False)
        try:
            loss, w = generator_adversarial_loss(self.disc, rec, self.cfg, step + 1, self._epoch(step))
        finally:
            self.disc.requires_grad_(True)
        return loss, ({"g_adv": loss.item() / w} if w else {})

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, float]:
        """One D update when the schedule says so (every ``d_update_freq`` steps)."""
        if not self.schedule.update_discriminator(step + 1, self._epoch(step)):
            return {}
        self.disc.train()
        loss, info = discriminator_step_loss(self.disc, real, fake, self.cfg, self.lecam)
        if loss.item() <= self.cfg.d_update_loss_threshold:
            return {}
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for p in self.disc.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
        self.opt.step()
        return {k: v for k, v in info.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict(), "lecam": self.lecam.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.lecam.load_state_dict(state["lecam"])
