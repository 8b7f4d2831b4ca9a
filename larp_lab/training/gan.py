"""GAN losses, LeCam regularisation and the discriminator schedule of tokenizer training.

Every choice follows the official code (hywang66/LARP ``models/loss.py`` ``VQLPIPSWithDiscriminator``,
``trainers/larp_tokenizer_trainer.py``, ``trainers/base_trainer.py``, configured by
``cfgs/larp_tokenizer.yaml``; read for facts, not copied):

* **Losses** (``disc_loss: 'ns_smooth'``): the discriminator minimises
  ``BCE(D(x), t_real) + BCE(D(x_hat), t_fake)`` (a *sum* of the two batch means) with **noisy
  targets on both sides**: ``t_real = max(1 - 0.15 |n|, 0.7)`` and ``t_fake = min(0.15 |n'|, 0.3)``,
  n, n' ~ N(0, 1) drawn per logit, real first (the official function is called
  ``ns_d_loss_single_side_smooth``, but it smooths both targets). The generator minimises the
  non-saturating ``-mean(log sigmoid(D(x_hat)))``. ``'ns'`` (hard 1/0 targets) and ``'hinge'``
  (``0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))``, generator ``-mean D(x_hat)``) exist too.
* **LeCam** (``lecam_weight: 0.001``): ``relu(mean D(x) - ema_fake)^2 + relu(ema_real - mean D(x_hat))^2``
  on the batch means of the logits, with the EMAs as they were *before* this batch; then the EMAs
  move: ``ema = decay * ema + (1 - decay) * mean`` with decay 0.999, in float32, starting at 0. The
  official code multiplies the penalty by ``lecam_weight`` **twice** (``lecam_loss = w * reg`` and
  then ``total = d_loss + w * lecam_loss``), so its effective weight is ``w^2 = 1e-6``;
  :class:`~larp_lab.training.config.GANConfig` reproduces that by default (``lecam_weight_applied_twice``).
* **Generator weight**: a *fixed* weight, ``disc_weight (0.3) * disc_factor (1.0)``, and 0 before
  ``disc_start``; the ``last_layer`` passed by the trainer is unused, so there is no VQGAN-style
  adaptive weight. :func:`adaptive_weight` is offered as an option, not the official behaviour.
* **Schedule**: ``disc_start: 0``, ``disc_self_start: -1`` (= ``disc_start``), both compared with the
  **epoch** (1-based), not the step. The discriminator is updated when ``epoch >= disc_self_start``
  and ``global_step % d_update_freq == 0`` with ``d_update_freq: 5``, where ``global_step`` is
  incremented *before* the step (the first step is 1, so D first updates at step 5). The
  generator's adversarial term is applied on every step from ``disc_start``. A D step is skipped
  when its loss is not above ``d_update_loss_threshold`` (-1e6, i.e. never).
* **Reconstruction terms** are the trainer's (``TokenizerTrainConfig.rec_loss`` / ``lpips_weight``):
  officially L1 with weight 1.0 and LPIPS-VGG with weight 1.0.
* **Optimiser** of the discriminator: Adam, lr 1e-4, betas (0.5, 0.9) (``optimizer.loss_args``).
* Quirk not reproduced: the official loss module also updates the LeCam EMAs during *evaluation*
  batches (its D loss runs in eval too); here the EMAs move only when :meth:`LeCamEMA.update` is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DiscLoss, GANConfig

__all__ = [
    "DiscriminatorSchedule",
    "LeCamEMA",
    "adaptive_weight",
    "discriminator_loss",
    "discriminator_step_loss",
    "generator_adversarial_loss",
    "generator_adversarial_weight",
    "generator_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "lecam_penalty",
    "ns_d_loss",
    "ns_g_loss",
    "ns_smooth_d_loss",
    "smooth_targets",
]


# ================================================================================================
#                                          Losses
# ================================================================================================


def ns_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Non-saturating D loss with hard targets: BCE(real, 1) + BCE(fake, 0) (sum of two means)."""
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return real + fake


def smooth_targets(
    logits_real: Tensor, logits_fake: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The official noisy targets: real ``max(1 - 0.15|n|, 0.7)``, fake ``min(0.15|n'|, 0.3)``.

    n is drawn for the real logits first, then n' for the fake ones, each with the logits' shape
    (with ``generator=None`` the draws equal the official ``randn_like`` calls on the global RNG).
    """
    n_real = torch.randn(logits_real.shape, generator=generator, dtype=logits_real.dtype, device=logits_real.device)
    n_fake = torch.randn(logits_fake.shape, generator=generator, dtype=logits_fake.dtype, device=logits_fake.device)
    t_real = (1.0 - n_real.abs() * 0.15).clamp_min(0.7)
    t_fake = (n_fake.abs() * 0.15).clamp_max(0.3)
    return t_real, t_fake


def ns_smooth_d_loss(logits_real: Tensor, logits_fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The official ``ns_smooth`` D loss: BCE against the noisy targets of :func:`smooth_targets`."""
    t_real, t_fake = smooth_targets(logits_real, logits_fake, generator)
    real = F.binary_cross_entropy_with_logits(logits_real, t_real)
    fake = F.binary_cross_entropy_with_logits(logits_fake, t_fake)
    return real + fake


def ns_g_loss(logits_fake: Tensor) -> Tensor:
    """Non-saturating generator loss: ``-mean(log sigmoid(D(x_hat)))`` (>= 0, falls as D(x_hat) rises)."""
    return -F.logsigmoid(logits_fake).mean()


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """``0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """``-mean D(x_hat)``."""
    return -logits_fake.mean()


def discriminator_loss(
    kind: DiscLoss, logits_real: Tensor, logits_fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The D loss named by ``GANConfig.disc_loss``."""
    if kind == "ns_smooth":
        return ns_smooth_d_loss(logits_real, logits_fake, generator)
    if kind == "ns":
        return ns_d_loss(logits_real, logits_fake)
    if kind == "hinge":
        return hinge_d_loss(logits_real, logits_fake)
    raise ValueError(f"unknown discriminator loss {kind!r}")


def generator_loss(kind: DiscLoss, logits_fake: Tensor) -> Tensor:
    """The generator loss paired with ``kind`` (``ns`` and ``ns_smooth`` share the non-saturating one)."""
    if kind in ("ns_smooth", "ns"):
        return ns_g_loss(logits_fake)
    if kind == "hinge":
        return hinge_g_loss(logits_fake)
    raise ValueError(f"unknown discriminator loss {kind!r}")


# ================================================================================================
#                                           LeCam
# ================================================================================================


def lecam_penalty(real_mean: Tensor, fake_mean: Tensor, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """``relu(real_mean - ema_fake)^2 + relu(ema_real - fake_mean)^2`` on scalars (LeCam, Tseng et al. 2021)."""
    return F.relu(real_mean - ema_fake).pow(2) + F.relu(ema_real - fake_mean).pow(2)


class LeCamEMA(nn.Module):
    """EMAs of the mean real and fake logits, and the LeCam penalty against them.

    Buffers ``ema_real`` and ``ema_fake`` (float32 scalars, starting at 0) are in the state dict, so
    a resumed run continues bit for bit. Use :meth:`penalty` (with the EMAs before this batch),
    then :meth:`update`, as the official code does; :meth:`step` does both.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must lie in [0, 1)")
        self.decay = float(decay)
        self.register_buffer("ema_real", torch.tensor(0.0))
        self.register_buffer("ema_fake", torch.tensor(0.0))

    def penalty(self, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
        """Scalar LeCam penalty of this batch's logits (any shapes; their means are used)."""
        return lecam_penalty(logits_real.float().mean(), logits_fake.float().mean(), self.ema_real, self.ema_fake)

    @torch.no_grad()
    def update(self, logits_real: Tensor, logits_fake: Tensor) -> None:
        """``ema = decay * ema + (1 - decay) * mean(logits)`` for both sides, in float32."""
        real, fake = logits_real.detach().float().mean(), logits_fake.detach().float().mean()
        self.ema_real.mul_(self.decay).add_(real, alpha=1 - self.decay)
        self.ema_fake.mul_(self.decay).add_(fake, alpha=1 - self.decay)

    def step(self, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
        """Penalty with the current EMAs, then update them; returns the penalty."""
        p = self.penalty(logits_real, logits_fake)
        self.update(logits_real, logits_fake)
        return p

    def extra_repr(self) -> str:
        return f"decay={self.decay}"


# ================================================================================================
#                                  Weights and the schedule
# ================================================================================================


def adaptive_weight(
    nll_loss: Tensor, g_loss: Tensor, last_layer: Tensor, scale: float = 1.0, eps: float = 1e-4, max_weight: float = 1e4
) -> Tensor:
    """VQGAN's adaptive weight ``scale * |grad nll| / (|grad g| + eps)`` at ``last_layer``, clamped to
    [0, max_weight] and detached. **Not** what LARP does (it uses the fixed ``disc_weight``); offered
    for experiments. Both losses must still have their graphs."""
    g_nll = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = g_nll.norm() / (g_adv.norm() + eps)
    return (w.clamp(0.0, max_weight) * scale).detach()


@dataclass
class DiscriminatorSchedule:
    """When the discriminator trains and when the generator's adversarial term is on.

    ``step`` is the 1-based count of the current optimisation step (the official trainer increments
    it before the step) and ``epoch`` is 1-based; starts are compared with the epoch when
    ``start_unit == "epoch"`` (official) and with the step otherwise.
    """

    d_update_freq: int = 5
    disc_start: int = 0
    disc_self_start: int | None = None
    start_unit: Literal["epoch", "step"] = "epoch"

    @classmethod
    def from_config(cls, cfg: GANConfig) -> DiscriminatorSchedule:
        return cls(cfg.d_update_freq, cfg.disc_start, cfg.disc_self_start, cfg.start_unit)

    def _clock(self, step: int, epoch: int) -> int:
        return epoch if self.start_unit == "epoch" else step

    @property
    def d_start(self) -> int:
        """The official ``disc_self_start``: None or negative means ``disc_start``."""
        return self.disc_start if self.disc_self_start is None or self.disc_self_start < 0 else self.disc_self_start

    def update_discriminator(self, step: int, epoch: int = 1) -> bool:
        """True when D takes an optimiser step now: past ``d_start`` and ``step % d_update_freq == 0``."""
        return self._clock(step, epoch) >= self.d_start and step % self.d_update_freq == 0

    def adversarial_active(self, step: int, epoch: int = 1) -> bool:
        """True when the generator's adversarial term is on (``adopt_weight``: off before ``disc_start``)."""
        return self._clock(step, epoch) >= self.disc_start


def generator_adversarial_weight(cfg: GANConfig, step: int, epoch: int = 1) -> float:
    """The official fixed weight of the generator's GAN loss: ``disc_weight * disc_factor``, 0 before
    ``disc_start``."""
    return cfg.disc_weight * cfg.disc_factor if DiscriminatorSchedule.from_config(cfg).adversarial_active(step, epoch) else 0.0


# ================================================================================================
#                                    One-call loss helpers
# ================================================================================================


def discriminator_step_loss(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    cfg: GANConfig,
    lecam: LeCamEMA | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The discriminator's total loss on one batch, as the official loss module computes it.

    ``fake`` is detached here. When ``lecam`` is given and ``cfg.lecam_weight > 0`` the penalty uses
    the EMAs before this batch, which are then updated. Returns (loss, info) with info holding
    ``d_loss``, ``lecam`` (the raw penalty), ``logits_real`` and ``logits_fake`` (means).
    """
    logits_real = discriminator(real)
    logits_fake = discriminator(fake.detach())
    d_loss = discriminator_loss(cfg.disc_loss, logits_real, logits_fake, generator)
    total = d_loss
    pen = torch.zeros((), device=d_loss.device)
    if lecam is not None and cfg.lecam_weight > 0:
        pen = lecam.step(logits_real, logits_fake)
        total = d_loss + cfg.effective_lecam_weight * pen
    info = {
        "d_loss": d_loss.item(), "lecam": pen.item(),
        "logits_real": float(logits_real.detach().float().mean()),
        "logits_fake": float(logits_fake.detach().float().mean()),
    }
    return total, info


def generator_adversarial_loss(
    discriminator: nn.Module, fake: Tensor, cfg: GANConfig, step: int, epoch: int = 1
) -> tuple[Tensor, float]:
    """(weight * generator loss, weight) for the reconstructions ``fake``; (0, 0.0) before
    ``disc_start`` (the discriminator is not even run then, as in the official code)."""
    w = generator_adversarial_weight(cfg, step, epoch)
    if w == 0.0:
        return fake.new_zeros(()), 0.0
    return w * generator_loss(cfg.disc_loss, discriminator(fake)), w
