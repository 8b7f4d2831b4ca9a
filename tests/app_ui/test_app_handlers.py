"""The app's handlers (larp_lab.app), on micro models; the app itself is tested in test_app.py and the
pipelines they call in test_pipelines.py."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO

from larp_lab.analysis.completion import complete_with_generator, complete_with_prior
from larp_lab.app import figures, handlers
from larp_lab.app.cache import ModelCache
from larp_lab.data.video import read_video

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"



@pytest.fixture()
def models(tok, gen, predictor):
    m = ModelCache()
    m._cache.update({("tokenizer", "t"): tok, ("generator", "g"): gen, ("predictor", "p"): predictor})
    return m


def test_generate_handler(models, tmp_path):
    ws = handlers.Workspace(tmp_path / "ws")
    r = handlers.generate(models, ws, "t", "g", "class 3", 3, 2.0, 1.0, 20, 1.0, 5)
    assert len(r["paths"]) == 3 and r["info"]["class_id"] == 3 and r["info"]["class"] == "class 3"
    for p in r["paths"]:
        assert read_video(p, 8).shape == (3, 8, 32, 32)
    assert len(r["info"]["mean_nll_per_token"]) == 3 and min(r["info"]["mean_nll_per_token"]) > 0
    assert figures.likelihood_figure(r["result"].log_likelihood) is not None
    again = handlers.generate(models, ws, "t", "g", "3", 3, 2.0, 1.0, 20, 1.0, 5)
    assert torch.equal(again["result"].tokens, r["result"].tokens)  # seeded; names and ids both work
    with pytest.raises(ValueError, match="unknown class"):
        handlers.generate(models, ws, "t", "g", "dragons", 1, 1.0, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="number of samples"):
        handlers.generate(models, ws, "t", "g", "class 1", 0, 1.0, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="CFG scale"):
        handlers.generate(models, ws, "t", "g", "class 1", 1, 50.0, 1.0, 0, 1.0, 0)


def test_predict_handler(models, tmp_path):
    ws = handlers.Workspace(tmp_path / "ws")
    r = handlers.predict(models, ws, "t", "p", str(CLIP), 3, 0)
    assert read_video(r["video"], 8).shape == (3, 8, 32, 66)  # truth | 2-pixel gap | prediction
    assert len(r["per_frame_psnr"]) == 8 and r["metrics"]["conditioning_frames"] == 3
    assert r["metrics"]["psnr_predicted_frames_db"] > 0 and r["metrics"]["psnr_repeat_last_frame_db"] > 0
    assert "8 frames" in r["metrics"]["used"] and r["used"] == r["metrics"]["used"]
    assert figures.per_frame_figure(r["per_frame_psnr"], 3) is not None
    later = handlers.predict(models, ws, "t", "p", str(CLIP), 3, 0, start_time=2.0)
    assert later["used"].startswith("8 frames (2.00-2.64 s") and "128x128 resized to 32x32" in later["used"]
    with pytest.raises(ValueError, match="condition on"):
        handlers.predict(models, ws, "t", "p", str(CLIP), 8, 0)


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
    b = complete_with_generator(gen, idx, 4)
    seq = idx.clone()
    with torch.no_grad():
        for i in range(4, 16):
            seq[:, i] = gen(seq[:, : i + 1], gen.null_condition(1))[:, i].argmax(-1)
    assert torch.equal(b, seq)
    # the prior's completion equals its argmax predictions, one position at a time
    a = complete_with_prior(tok, idx, 3)
    reg = tok.bottleneck.regularizer
    with torch.no_grad():
        logits = tok.prior_model.logits(reg.lookup(a), reg.normalized_codebook())
    assert torch.equal(logits.argmax(-1)[:, 2:], a[:, 3:])
    with pytest.raises(ValueError):
        complete_with_prior(tok, idx, 0)


def test_reconstruct_explore_and_prefix_handlers(models, tmp_path):
    ws = handlers.Workspace(tmp_path / "ws")
    r = handlers.reconstruct(models, ws, "t", str(CLIP))
    res = r["result"]
    assert read_video(r["side_by_side"], 8).shape == (3, 8, 32, 66)
    assert read_video(r["reconstruction"], 8).shape == (3, 8, 32, 32)
    assert json.loads(r["tokens_json"].read_text()) == {"tokenizer": "t", "tokens": res.tokens[0].tolist()}
    assert r["metrics"]["num_tokens"] == 16 and r["metrics"]["psnr_db"] == round(res.metrics["psnr_db"], 3)
    assert r["used"] == res.source.describe() and "0.00-0.64 s" in r["used"]
    later = handlers.reconstruct(models, ws, "t", str(CLIP), 2.0)
    assert "2.00-2.64 s" in later["used"] and not torch.equal(later["result"].original, res.original)
    figs = figures.reconstruction_figures(res)
    assert figs["psnr"] is not None and figs["tokens"] is not None
    p = handlers.reconstruct_from_prefix(models, ws, "t", None, res.tokens[0].tolist(), res.original, 4, "prior")
    assert p["metrics"]["k"] == 4 and "psnr_db" in p["metrics"] and read_video(p["video"], 8).shape == (3, 8, 32, 32)
    with pytest.raises(ValueError, match="no generator"):
        handlers.reconstruct_from_prefix(models, ws, "t", None, res.tokens[0], res.original, 4, "generator")
    with pytest.raises(ValueError, match="unknown completion method"):
        handlers.reconstruct_from_prefix(models, ws, "t", "g", res.tokens[0], res.original, 4, "magic")
    tokens_fig = figs["tokens"]  # plotly: the id of each cell on hover
    assert tokens_fig.data[0].hovertext[0][3] == f"token 3 (row 0, column 3)<br>code {int(res.tokens[0, 3])}"
    e = handlers.explore(models, ws, "t", str(CLIP), query=3, layer=1, head=None, map_method="pca")
    assert read_video(e["overlay"], 8).shape == (3, 8, 32, 32)
    assert e["info"]["token_id"] == int(res.tokens[0, 3]) and 0 < e["info"]["attention_mass_on_patches"] <= 1
    assert e["used"] == r["used"]
    # one query selected: one row of heatmaps (2 frames wide), not the query twice
    h, w = e["heatmap"].shape[:2]
    assert h < 0.75 * w, (h, w)
    e2 = handlers.explore(models, ws, "t", str(CLIP), query=3, layer=1, head=0, start_time=2.0, map_method="pca")
    assert e2["used"] == later["used"] and e2["info"]["head"] == 0
    with pytest.raises(ValueError, match="query"):
        handlers.explore(models, ws, "t", str(CLIP), query=99, layer=0, head=None, map_method="pca")
    with pytest.raises(ValueError, match="Upload"):
        handlers.reconstruct(models, ws, "t", None)
    # old request directories are pruned
    ws.keep_s = 0
    ws.new("x")
    assert len(list(ws.root.iterdir())) == 1


def test_model_cache_refuses_the_wrong_kind_of_generator():
    m = ModelCache()
    with pytest.raises(ValueError, match="not a frame-prediction generator"):
        m.predictor("untrained:micro")
    assert m.generator("untrained:micro") is m.generator("untrained:micro")  # loaded once
