"""Patch tokens (``TokenizerConfig.token_mode="patch"``): the baseline LARP is compared with. The encoder's
outputs at the P patches are the N = P tokens; everything after the encoder is LARP's."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import REPO

from larp_lab import LARPTokenizer
from larp_lab.config import TOKENIZER_PRESETS, ConfigError
from larp_lab.training.config import train_config_from_dict
from larp_lab.training.run import train_tokenizer


def _patch_cfg():
    c = TOKENIZER_PRESETS["micro"]()  # 8x32x32, patches 4x8x8 -> (2, 4, 4) = 32 patches, 16 tokens
    return c.replace(token_mode="patch", temporal_patch_size=8)  # (1, 4, 4) = 16 patches = 16 tokens


def test_patch_mode_needs_one_token_per_patch():
    with pytest.raises(ConfigError, match="one token per encoder patch: 2x4x4 = 32 patches but num_tokens = 16"):
        TOKENIZER_PRESETS["micro"]().replace(token_mode="patch")
    assert TOKENIZER_PRESETS["micro"]().token_mode == "holistic"  # the default: LARP, the official layout


def test_patch_tokens_are_the_patch_outputs():
    torch.manual_seed(0)
    cfg = _patch_cfg()
    tok = LARPTokenizer(cfg).eval()
    holistic = LARPTokenizer(TOKENIZER_PRESETS["micro"]())
    q = tok.encoder_latent_query_embed
    assert q.numel() == 0 and not q.requires_grad  # no queries
    n_q = holistic.encoder_latent_query_embed.numel()
    assert tok.num_parameters() == cfg.num_parameters_estimate()
    assert holistic.num_parameters() - tok.num_parameters() == n_q + (  # only the queries and the patch conv differ
        holistic.x_embedder.proj.weight.numel() - tok.x_embedder.proj.weight.numel())
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    with tok.capture(["hook_encoder_out", "encoder.blocks.0.hook_out"]) as cache:
        enc = tok.encode(x)
    assert enc.indices.shape == (2, 16) and tok.decode_indices(enc.indices).shape == x.shape
    # the encoder ran on the 16 patches only, and its 16 outputs are the tokens
    assert cache["encoder.blocks.0.hook_out"].shape == (2, 16, cfg.encoder_hidden_size)
    lay = tok.layout()
    assert lay.tokens_are_patches and lay.encoder_queries == slice(0, 16) == lay.encoder_patches
    with pytest.raises(ValueError, match="one token per patch"):
        tok.encode(torch.zeros(1, 3, 8, 64, 64), any_size=True)


def test_patch_tokenizer_saves_and_loads(tmp_path):
    torch.manual_seed(1)
    tok = LARPTokenizer(_patch_cfg()).eval()
    tok.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "config.json").read_text())["config"]["token_mode"] == "patch"
    back = LARPTokenizer.from_pretrained(tmp_path / "p").eval()
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    assert back.config.token_mode == "patch"
    assert torch.equal(back.encode(x).indices, tok.encode(x).indices)
    assert torch.allclose(back.reconstruct(x), tok.reconstruct(x), atol=1e-6)


def test_the_digits_recipe_trains_patch_tokens(tmp_path):
    """configs/tokenizer_digits_patch.yaml (the patch twin of the bundled recipe) for a few steps."""
    d = yaml.safe_load((REPO / "configs" / "tokenizer_digits_patch.yaml").read_text())
    d["run"].update(batch_size=4, max_steps=8, log_every=1, eval_every=1000, save_every=1000)
    d["optim"]["warmup_steps"] = 2
    d["vq_warmup_steps"], d["vq_init_clips"] = 3, 8
    cfg = train_config_from_dict(d, "tokenizer")
    assert cfg.model.token_mode == "patch" and cfg.model.num_tokens == 64 and cfg.model.codebook_size == 1024
    assert cfg.locality is None or cfg.locality.weight == 0
    train_tokenizer(cfg, tmp_path / "run", device="cpu", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 8 and all(r["loss"] == r["loss"] for r in train) and train[-1]["prior_ce"] > 0
    tok = LARPTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert tok.config == cfg.model
    d["locality"] = {"weight": 0.1, "hold_steps": 2, "anneal_steps": 2}
    with pytest.raises(ValueError, match="locality"):
        train_tokenizer(train_config_from_dict(d, "tokenizer"), tmp_path / "run2", device="cpu", progress=False)


def test_patch_tokens_tell_the_decoder_where_they_lie():
    """In patch mode the decoder's table over the tokens is each patch's mean 3-D position in the
    decoder's own coordinates (brute force: every pixel takes its decoder patch's entry, then the
    mean over the encoder patch's pixels); holistic tokens keep LARP's 1-D table over the index."""
    from larp_lab.models.layers import patch_token_pe, sincos_3d, sincos_latent

    T, H, W, D = 8, 16, 16, 8
    table = sincos_3d(D, T // 4, H // 4, W // 4)  # decoder patches 4x4x4
    per_pixel = table.reshape(T // 4, H // 4, W // 4, D).repeat_interleave(4, 0).repeat_interleave(4, 1)
    per_pixel = per_pixel.repeat_interleave(4, 2)  # (T, H, W, D)
    brute = per_pixel.reshape(T // 2, 2, H // 8, 8, W // 8, 8, D).mean(dim=(1, 3, 5)).reshape(1, -1, D)
    assert torch.allclose(patch_token_pe(table, (T, H, W), (2, 8), (4, 4)), brute, atol=1e-6)
    # the same region under another decoder grid: a 1x1x1 decoder patch everywhere gives the plain mean
    fine = sincos_3d(D, T, H, W)
    exact = fine.reshape(T // 2, 2, H // 8, 8, W // 8, 8, D).mean(dim=(1, 3, 5)).reshape(1, -1, D)
    assert torch.allclose(patch_token_pe(fine, (T, H, W), (2, 8), (1, 1)), exact, atol=1e-6)

    cfg = _patch_cfg()
    tok = LARPTokenizer(cfg)
    want = patch_token_pe(tok.decoder_patch_query_embed, (cfg.frame_num, cfg.input_size, cfg.input_size),
                          (cfg.temporal_patch_size, cfg.patch_size),
                          (cfg.decoder_temporal_patch_size, cfg.decoder_patch_size))
    assert torch.equal(tok.decoder_latent_pe, want)
    assert len({tuple(r.tolist()) for r in want[0]}) == cfg.num_tokens  # every token its own place
    holistic = LARPTokenizer(TOKENIZER_PRESETS["micro"]())
    c = holistic.config
    assert torch.equal(holistic.decoder_latent_pe, sincos_latent(c.decoder_hidden_size, c.num_tokens,
                                                                 c.latent_pe_scale_factor))
