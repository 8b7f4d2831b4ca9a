"""Handlers behind the app, on micro models (the app itself is tested in test_app.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from larp_lab import LARPGenerator, LARPTokenizer
from larp_lab.analysis.completion import complete_with_generator, complete_with_prior
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.data.video import read_video
from larp_lab.demo.generate import class_index, generate_clips, predict_future

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"


def perturbed(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return perturbed(LARPTokenizer(TOKENIZER_PRESETS["micro"]()))


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(1)
    cfg = GENERATOR_PRESETS["micro"]().replace(class_names=tuple(f"class {i}" for i in range(10)))
    return perturbed(LARPGenerator(cfg), 1)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(2)
    return perturbed(LARPGenerator(GENERATOR_PRESETS["micro-fp"]()), 2)


def test_generate_clips(tok, gen, tmp_path):
    samples, info = generate_clips(tok, gen, "class 3", num_samples=3, cfg_scale=2.0, top_k=20, seed=5, out_dir=tmp_path)
    assert len(samples) == 3 and info["class_id"] == 3
    for s in samples:
        assert read_video(s.path, 8).shape == (3, 8, 32, 32)
        assert len(s.tokens) == 16 and len(s.log_likelihood) == 16 and s.mean_nll > 0
    again, _ = generate_clips(tok, gen, 3, num_samples=3, cfg_scale=2.0, top_k=20, seed=5, out_dir=tmp_path / "b")
    assert [s.tokens for s in samples] == [s.tokens for s in again]  # seeded
    with pytest.raises(ValueError, match="unknown class"):
        class_index(gen, "dragons")
    with pytest.raises(ValueError, match="between 1 and 16"):
        generate_clips(tok, gen, 1, num_samples=0)


def test_predict_future(tok, predictor, tmp_path):
    pred = predict_future(tok, predictor, CLIP, cond_frames=3, greedy=True, out_dir=tmp_path)
    assert read_video(pred.path, 8).shape == (3, 8, 32, 66)  # truth | 2-pixel gap | prediction
    assert len(pred.per_frame_psnr) == 8 and pred.cond_frames == 3
    assert pred.psnr_predicted > 0 and pred.psnr_repeat_last > 0
    with pytest.raises(ValueError, match="condition on"):
        predict_future(tok, predictor, CLIP, cond_frames=8)


def test_completion_keeps_the_prefix_and_k_equal_n_is_identity(tok, gen):
    x = read_video(CLIP, 8, size=32).unsqueeze(0)
    with torch.no_grad():
        idx = tok.encode(x).indices
    for k in (1, 5, 16):
        a = complete_with_prior(tok, idx, k)
        b = complete_with_generator(gen, idx, k)
        assert torch.equal(a[:, :k], idx[:, :k]) and torch.equal(b[:, :k], idx[:, :k])
    assert torch.equal(complete_with_prior(tok, idx, 16), idx)
    # the generator's completion equals its own greedy continuation computed without the cache
    k = 4
    b = complete_with_generator(gen, idx, k)
    seq = idx.clone()
    for i in range(k, 16):
        logits = gen(seq[:, : i + 1], gen.null_condition(1))[:, i]
        seq[:, i] = logits.argmax(-1)
    assert torch.equal(b, seq)
    # the prior's completion equals its argmax predictions, one position at a time
    a = complete_with_prior(tok, idx, 3)
    reg = tok.bottleneck.regularizer
    with torch.no_grad():
        logits = tok.prior_model.logits(reg.lookup(a), reg.normalized_codebook())
    assert torch.equal(logits.argmax(-1)[:, 2:], a[:, 3:])
    with pytest.raises(ValueError):
        complete_with_prior(tok, idx, 0)


def test_explore_and_reconstruct_handlers(tok, tmp_path):
    from larp_lab.demo import explore, handlers
    from larp_lab.demo.models import ModelHub

    hub = ModelHub()
    hub._cache[("tokenizer", "t")] = tok
    ws = handlers.Workspace(tmp_path / "ws")
    r = handlers.reconstruct(hub, ws, "t", str(CLIP))
    assert read_video(r["side_by_side"], 8).shape == (3, 8, 32, 66)
    assert r["metrics"]["num_tokens"] == 16 and len(r["per_frame_psnr"]) == 8
    figs = explore.reconstruction_figures(r)
    assert figs["psnr"] is not None and figs["tokens"] is not None
    p = handlers.reconstruct_from_prefix(hub, ws, "t", None, r["indices"], r["video"], 4, "prior")
    assert p["metrics"]["k"] == 4 and read_video(p["video"], 8).shape == (3, 8, 32, 32)
    with pytest.raises(ValueError, match="no generator"):
        handlers.reconstruct_from_prefix(hub, ws, "t", None, r["indices"], r["video"], 4, "generator")
    e = explore.explore_clip(hub, ws, "t", str(CLIP), query=3, layer=1, head=None, map_method="pca")
    assert read_video(e["overlay"], 8).shape == (3, 8, 32, 32)
    assert e["info"]["token_id"] == int(r["indices"][3]) and 0 < e["info"]["attention_mass_on_patches"] <= 1
    with pytest.raises(ValueError, match="query"):
        explore.explore_clip(hub, ws, "t", str(CLIP), query=99, layer=0, head=None, map_method="pca")
    with pytest.raises(ValueError, match="Upload"):
        handlers.reconstruct(hub, ws, "t", None)
    # old request directories are pruned
    ws.keep_s = 0
    ws.new("x")
    assert len(list(ws.root.iterdir())) == 1
