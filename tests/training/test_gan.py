"""GAN parts of tokenizer training: the transformer discriminator, the losses, LeCam and the schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from larp_lab.config import DISCRIMINATOR_PRESETS, ConfigError, DiscriminatorConfig
from larp_lab.models.discriminator import TransformerDiscriminator
from larp_lab.models.layers import sincos_3d
from larp_lab.training.config import GANConfig
from larp_lab.training.gan import (
    DiscriminatorSchedule,
    LeCamEMA,
    adaptive_weight,
    discriminator_step_loss,
    generator_adversarial_loss,
    hinge_d_loss,
    hinge_g_loss,
    lecam_penalty,
    ns_d_loss,
    ns_g_loss,
    ns_smooth_d_loss,
    smooth_targets,
)

LOG2 = math.log(2.0)


# ================================================================================================
#                                        Discriminator
# ================================================================================================


def test_official_discriminator_layout():
    disc = TransformerDiscriminator(DISCRIMINATOR_PRESETS["official"](), device="meta")
    shapes = {k: tuple(v.shape) for k, v in disc.state_dict().items()}
    assert shapes["x_embedder.proj.weight"] == (384, 3, 4, 8, 8)
    assert shapes["cls_token"] == (1, 1, 384)
    assert shapes["encoder_pos_embed"] == (1, 1024, 384)
    assert shapes["transformer_encoder.blocks.7.attn.qkv.weight"] == (1152, 384)
    assert "transformer_encoder.blocks.7.attn.qkv.bias" not in shapes
    assert shapes["transformer_encoder.blocks.0.mlp.fc1.weight"] == (1536, 384)
    assert shapes["norm_final.weight"] == (384,) and shapes["fc.weight"] == (1, 384)
    assert "transformer_encoder.blocks.8.norm1.weight" not in shapes
    assert disc.norm_final.eps == 1e-6 and disc.transformer_encoder.blocks[0].norm1.eps == 1e-5
    n_params = sum(p.numel() for p in disc.parameters())
    # patch conv + cls token + 8 blocks (qkv, proj, 2 LayerNorms, fc1, fc2) + final LayerNorm + fc
    D = 384
    block = 3 * D * D + (D * D + D) + 2 * (2 * D) + (4 * D * D + 4 * D) + (4 * D * D + D)
    assert n_params == (D * 3 * 4 * 8 * 8 + D) + D + 8 * block + 2 * D + (D + 1)


def test_discriminator_forward_and_init():
    cfg = DISCRIMINATOR_PRESETS["micro"]()
    disc = TransformerDiscriminator(cfg, input_size=32, frame_num=8)
    video = torch.rand(3, 3, 8, 32, 32) * 2 - 1
    logits = disc(video)
    assert logits.shape == (3,) and logits.dtype == torch.float32
    torch.testing.assert_close(disc.encoder_pos_embed, sincos_3d(64, 4, 4, 4), rtol=0, atol=0)
    assert torch.equal(disc.fc.bias, torch.zeros(1)) and torch.equal(disc.x_embedder.proj.bias, torch.zeros(64))
    # the clip's logit depends on the clip only (no mixing across the batch)
    torch.testing.assert_close(disc(video[1:2]), logits[1:2], rtol=1e-5, atol=1e-6)
    logits.sum().backward()
    assert disc.cls_token.grad is not None and disc.cls_token.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="discriminator expects"):
        disc(torch.zeros(1, 3, 16, 32, 32))
    with pytest.raises(ConfigError, match="does not divide into 4x8x8 patches"):
        TransformerDiscriminator(DiscriminatorConfig(), input_size=100)
    with pytest.raises(ConfigError, match="unknown keys"):
        DiscriminatorConfig.from_dict({"hidden_size": 64, "heads": 2})
    with pytest.raises(ConfigError, match="hidden_size 66 is not divisible by num_heads 4"):
        DiscriminatorConfig(hidden_size=66, num_heads=4).validate()


# ================================================================================================
#                                            Losses
# ================================================================================================


def test_ns_losses_values_and_signs():
    zeros = torch.zeros(4)
    assert ns_d_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert ns_g_loss(zeros).item() == pytest.approx(LOG2)
    # a confident, correct discriminator has a small loss; the generator's loss falls as D(fake) rises
    assert ns_d_loss(torch.full((4,), 10.0), torch.full((4,), -10.0)).item() < 1e-3
    assert ns_g_loss(torch.full((4,), 3.0)) < ns_g_loss(zeros) < ns_g_loss(torch.full((4,), -3.0))
    x = torch.tensor([-2.0, 0.5, 3.0])
    torch.testing.assert_close(ns_g_loss(x), F.softplus(-x).mean())


def test_hinge_losses():
    assert hinge_d_loss(torch.ones(3), -torch.ones(3)).item() == 0.0
    assert hinge_d_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(1.0)
    assert hinge_g_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_ns_smooth_targets_and_loss():
    real, fake = torch.randn(1000), torch.randn(1000)
    t_real, t_fake = smooth_targets(real, fake, torch.Generator().manual_seed(0))
    assert bool((t_real >= torch.tensor(0.7)).all()) and bool((t_real <= 1.0).all())
    assert bool((t_fake >= 0.0).all()) and bool((t_fake <= torch.tensor(0.3)).all())
    assert bool((t_real == 0.7).any()) and bool((t_fake == 0.3).any())  # both clamps bite at this size
    # the draws equal the official randn_like(real) then randn_like(fake) on the global RNG
    torch.manual_seed(7)
    n_real, n_fake = torch.randn_like(real), torch.randn_like(fake)
    torch.manual_seed(7)
    t_real, t_fake = smooth_targets(real, fake)
    torch.testing.assert_close(t_real, (1 - n_real.abs() * 0.15).clamp_min(0.7), rtol=0, atol=0)
    torch.testing.assert_close(t_fake, (n_fake.abs() * 0.15).clamp_max(0.3), rtol=0, atol=0)
    # the loss is BCE against those targets, and lies above the hard-target loss for confident logits
    g = torch.Generator().manual_seed(3)
    loss = ns_smooth_d_loss(real, fake, g)
    tr, tf = smooth_targets(real, fake, torch.Generator().manual_seed(3))
    ref = F.binary_cross_entropy_with_logits(real, tr) + F.binary_cross_entropy_with_logits(fake, tf)
    torch.testing.assert_close(loss, ref)
    strong_real, strong_fake = torch.full((50,), 8.0), torch.full((50,), -8.0)
    assert ns_smooth_d_loss(strong_real, strong_fake) > ns_d_loss(strong_real, strong_fake) + 0.1


# ================================================================================================
#                                            LeCam
# ================================================================================================


def test_lecam_penalty_and_ema():
    assert lecam_penalty(torch.tensor(1.0), torch.tensor(-1.0), torch.tensor(0.0), torch.tensor(0.0)).item() == 2.0
    # no penalty when real logits are below the fake EMA and fake logits above the real EMA
    assert lecam_penalty(torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0)).item() == 0.0

    ema = LeCamEMA(decay=0.999)
    real, fake = torch.tensor([[0.5], [1.5]]), torch.tensor([[-1.0], [-1.0]])
    pen = ema.step(real, fake)  # uses EMAs of 0, then moves them
    assert pen.item() == pytest.approx(1.0**2 + 1.0**2)
    assert ema.ema_real.item() == pytest.approx(0.001) and ema.ema_fake.item() == pytest.approx(-0.001)
    assert ema.ema_real.dtype == torch.float32
    expected = torch.tensor(0.0)
    expected.mul_(0.999).add_(torch.tensor(1.0), alpha=1 - 0.999)
    assert torch.equal(ema.ema_real, expected)


def test_lecam_state_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, generator=g), torch.randn(4, generator=g)) for _ in range(20)]
    a = LeCamEMA()
    for r, f in batches[:10]:
        a.step(r, f)
    b = LeCamEMA()
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"ema_real", "ema_fake"}
    for r, f in batches[10:]:
        assert torch.equal(a.step(r, f), b.step(r, f))
    assert torch.equal(a.ema_real, b.ema_real) and torch.equal(a.ema_fake, b.ema_fake)


# ================================================================================================
#                                  Weights, schedule, one-call helpers
# ================================================================================================


def test_schedule_official_defaults():
    s = DiscriminatorSchedule.from_config(GANConfig())
    assert [st for st in range(1, 16) if s.update_discriminator(st, epoch=1)] == [5, 10, 15]
    assert s.adversarial_active(1, epoch=1)
    late = DiscriminatorSchedule(d_update_freq=2, disc_start=3, disc_self_start=-1)
    assert late.d_start == 3
    assert not late.update_discriminator(4, epoch=2) and late.update_discriminator(4, epoch=3)
    assert not late.adversarial_active(100, epoch=2) and late.adversarial_active(100, epoch=3)
    by_step = DiscriminatorSchedule(d_update_freq=1, disc_start=10, disc_self_start=5, start_unit="step")
    assert not by_step.update_discriminator(4) and by_step.update_discriminator(5)
    assert not by_step.adversarial_active(9) and by_step.adversarial_active(10)


def test_gan_config():
    cfg = GANConfig()
    assert cfg.effective_lecam_weight == pytest.approx(1e-6)
    assert GANConfig(lecam_weight_applied_twice=False).effective_lecam_weight == 0.001
    assert GANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="disc_loss"):
        GANConfig.from_dict({**cfg.to_dict(), "disc_loss": "wgan"})
    with pytest.raises(ValueError, match="d_update_freq"):
        GANConfig.from_dict({**cfg.to_dict(), "d_update_freq": 0})
    with pytest.raises(ValueError, match="unknown keys"):
        GANConfig.from_dict({"heads": 3})
    # GANConfig owns the discriminator's sizes; files written before they moved still read
    old = GANConfig.from_dict({"hidden_size": 64, "num_heads": 2, "depth": 1})
    assert old.discriminator == DiscriminatorConfig(hidden_size=64, num_heads=2, depth=1)
    assert GANConfig.from_dict(old.to_dict()) == old
    with pytest.raises(ConfigError, match="DiscriminatorConfig: hidden_size 100 is not divisible by num_heads 3"):
        GANConfig.from_dict({"discriminator": {"hidden_size": 100, "num_heads": 3}})


def test_adaptive_weight():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    nll = (3.0 * w).sum()  # grad (3, 3): norm 3 sqrt 2
    g = w.sum()  # grad (1, 1): norm sqrt 2
    aw = adaptive_weight(nll, g, w, scale=0.5, eps=0.0)
    assert aw.item() == pytest.approx(1.5) and not aw.requires_grad


def test_discriminator_and_generator_step_losses():
    disc = TransformerDiscriminator(DISCRIMINATOR_PRESETS["micro"](), input_size=32, frame_num=8)
    real = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    fake = (torch.rand(2, 3, 8, 32, 32) * 2 - 1).requires_grad_(True)
    cfg = GANConfig()
    lecam = LeCamEMA(cfg.lecam_decay)
    total, info = discriminator_step_loss(disc, real, fake, cfg, lecam, generator=torch.Generator().manual_seed(0))
    lr, lf = disc(real), disc(fake)
    ref_d = ns_smooth_d_loss(lr, lf, torch.Generator().manual_seed(0))
    assert info["d_loss"] == pytest.approx(ref_d.item(), rel=1e-5)
    pen = lecam_penalty(lr.mean(), lf.mean(), torch.tensor(0.0), torch.tensor(0.0))
    assert total.item() == pytest.approx(ref_d.item() + 1e-6 * pen.item(), rel=1e-5)
    assert lecam.ema_real.item() == pytest.approx(0.001 * lr.mean().item(), rel=1e-4)
    total.backward()
    assert fake.grad is None  # the fakes are detached for the D step
    assert disc.fc.weight.grad is not None

    disc.zero_grad()
    adv, w = generator_adversarial_loss(disc, fake, cfg, step=1, epoch=1)
    assert w == pytest.approx(0.3)
    assert adv.item() == pytest.approx(0.3 * ns_g_loss(disc(fake)).item(), rel=1e-5)
    adv.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    off, w_off = generator_adversarial_loss(disc, fake, GANConfig(disc_start=2), step=1, epoch=1)
    assert w_off == 0.0 and off.item() == 0.0
