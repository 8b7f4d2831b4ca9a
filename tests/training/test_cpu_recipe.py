"""The CPU recipe (configs/tokenizer_cpu.yaml): attention-locality loss and codebook warm-up.

A few seconds: the config's own path (``train_tokenizer`` on the YAML) at a tiny number of steps,
checking that the locality loss is active, then annealed to zero, and that the VQ and the prior
take over from the continuous warm-up with a k-means codebook.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import REPO

from larp_lab import LARPTokenizer
from larp_lab.config import TOKENIZER_PRESETS, ConfigError
from larp_lab.training.codebook_init import spherical_kmeans
from larp_lab.training.config import train_config_from_dict
from larp_lab.training.locality import AttentionLocality, LocalityConfig, locality_weights, token_grid
from larp_lab.training.run import train_tokenizer


def test_token_grids_follow_the_patch_grid():
    assert token_grid(16, (2, 4, 4)) == (1, 4, 4)
    assert token_grid(32, (2, 4, 4)) == (2, 4, 4)
    assert token_grid(64, (2, 8, 8)) == (1, 8, 8)
    assert token_grid(256, (4, 8, 8)) == (4, 8, 8)
    w = locality_weights((1, 4, 4), (2, 4, 4))  # (N, P)
    assert w.shape == (16, 32)
    assert torch.equal(w.argmax(1) % 16, torch.arange(16))  # each token's heaviest patch is its own cell
    assert float(w.max()) <= 1.0 and float(w.min()) > 0


def test_schedule_holds_then_anneals_to_zero():
    c = LocalityConfig(weight=0.2, hold_steps=10, anneal_steps=10)
    assert [c.weight_at(s) for s in (0, 9)] == [0.2, 0.2]
    assert c.weight_at(15) == pytest.approx(0.1)
    assert c.weight_at(20) == 0.0 and c.weight_at(10_000) == 0.0
    with pytest.raises(ConfigError, match="weight"):
        LocalityConfig(weight=-1.0).validate()
    with pytest.raises(ConfigError, match="grid"):
        LocalityConfig(grid=(4, 4)).validate()


def test_the_loss_makes_queries_attend_to_their_cells():
    torch.manual_seed(0)
    cfg = TOKENIZER_PRESETS["micro"]()
    cfg.prior = None
    model = LARPTokenizer(cfg)
    loc = AttentionLocality(LocalityConfig(weight=1.0), cfg.num_tokens, cfg.patch_grid, cfg.decoder_patch_grid)
    x = torch.rand(4, 3, 8, 32, 32) * 2 - 1
    before = loc.own_cell_attention(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        with loc.recording(model):
            model.decode(model.encode(x, sample=False).embeddings)
        loss = loc.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = loc.own_cell_attention(model, x)
    assert losses[-1] < 0.7 * losses[0], losses
    assert after["enc0"] > 2 * before["enc0"] and after["enc0"] > 3 * after["chance"], (before, after)


def test_spherical_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    x = centres.repeat_interleave(50, 0) + 0.01 * torch.randn(400, 16, generator=g)
    c = spherical_kmeans(x, 8, generator=torch.Generator().manual_seed(1))
    assert c.shape == (8, 16)
    assert torch.allclose(c.norm(dim=-1), torch.ones(8), atol=1e-5)
    assert float((centres @ c.t()).max(1).values.min()) > 0.99  # every true centre has a centroid


def test_cpu_config_runs_the_recipe_and_anneals_the_loss_to_zero(tmp_path):
    d = yaml.safe_load((REPO / "configs" / "tokenizer_cpu.yaml").read_text())
    d["run"].update(batch_size=4, max_steps=12, log_every=1, eval_every=1000, save_every=1000)
    d["optim"]["warmup_steps"] = 2
    d["locality"].update(hold_steps=3, anneal_steps=4)  # weight 0 from step 7
    d["vq_warmup_steps"] = 5
    d["vq_init_clips"] = 8
    cfg = train_config_from_dict(d, "tokenizer")
    assert cfg.locality is not None and cfg.locality.weight > 0 and cfg.model.prior is not None
    train_tokenizer(cfg, tmp_path / "run", device="cpu", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    log = {r["step"]: r for r in rows if r["split"] == "train"}  # step = steps done
    assert [log[s].get("locality_weight", 0.0) for s in range(1, 13)] == pytest.approx(
        [w * cfg.locality.weight for w in (1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0, 0, 0, 0)])
    assert all(log[s]["locality"] > 0 for s in range(1, 8))
    assert all("locality" not in log[s] for s in range(8, 13))  # annealed away: no hooks, no cost
    # continuous warm-up (no VQ loss, no prior), then the k-means codebook, then VQ + prior
    assert all(log[s]["loss_q"] == 0.0 and "prior_ce" not in log[s] for s in range(1, 6))
    assert log[5].get("codebook_init") == 1.0
    assert all(log[s]["loss_q"] > 0 and log[s]["prior_ce"] > 0 for s in range(6, 13))
    tok = LARPTokenizer.from_pretrained(tmp_path / "run" / "model")  # plain LARP, same state dict
    assert tok.config == cfg.model
