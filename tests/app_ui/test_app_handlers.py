"""The app's handlers (larp_lab.app), on micro models; the app itself is tested in test_app.py and the
pipelines they call in test_pipelines.py."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, save_micro_bundle

from larp_lab.analysis.completion import complete_with_generator, complete_with_prior
from larp_lab.app import figures, handlers
from larp_lab.app.cache import ModelCache
from larp_lab.app.examples import clip_kind, example_clips, examples_label, training_note
from larp_lab.bundled import (
    DEFAULT_FRAME_PREDICTOR,
    DEFAULT_GENERATOR,
    DEFAULT_TOKENIZER,
    describe_training,
    set_checkpoints_dir,
    training_data,
)
from larp_lab.data.video import read_video

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"
EXAMPLES = REPO / "examples"
DIGIT_CLIPS = ["digits_3.mp4", "digits_5.mp4", "digits_7.mp4", "digits_9.mp4"]
SYNTHETIC_CLIPS = ["synthetic_bouncing.mp4", "synthetic_expanding_ring.mp4", "synthetic_rotating.mp4"]


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


# ------------------------------------------------------------------------------------------------
# what the models were trained on, and the examples offered first
# ------------------------------------------------------------------------------------------------


def test_example_clips_put_the_tokenizers_training_data_first():
    names = lambda data: [p.rsplit("/", 1)[-1] for p in example_clips(EXAMPLES, data)]  # noqa: E731
    assert names("digits") == DIGIT_CLIPS + ["bigbuckbunny_128.mp4"] + SYNTHETIC_CLIPS
    assert names(None) == names("digits")  # not recorded: the bundled models' data, moving digits, first
    assert names("synthetic") == SYNTHETIC_CLIPS + ["bigbuckbunny_128.mp4"] + DIGIT_CLIPS
    assert [clip_kind(n) for n in ("digits_3.mp4", "synthetic_rotating.mp4", "bigbuckbunny_128.mp4")] == [
        "digits", "synthetic", None]
    assert examples_label("digits").startswith("Examples: moving digits first (held-out clips of the models' "
                                               "training data), then real footage (Big Buck Bunny")
    assert examples_label("synthetic").startswith("Examples: synthetic shapes first")
    for name in DIGIT_CLIPS:  # real clips, readable at any model's size; each shows its digit's class
        assert read_video(EXAMPLES / name, 8, size=32).shape == (3, 8, 32, 32)


def test_examples_are_the_held_out_digits_made_by_the_script():
    """The committed digits clips are what scripts/make_examples.py renders (within the codec's error)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_examples", REPO / "scripts" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    clips = mod.digit_clips()
    assert sorted(clips) == [3, 5, 7, 9]
    for digit, (_, clip) in clips.items():
        back = read_video(EXAMPLES / f"digits_{digit}.mp4", 8, size=mod.SIZE)
        ref = torch.from_numpy(clip[:, :8]).float() / 127.5 - 1
        psnr = 10 * torch.log10(4 / (back - ref).pow(2).mean())
        assert psnr > 30, (digit, float(psnr))


def test_handlers_say_what_the_tokenizer_was_trained_on(tmp_path):
    """A digits bundle (config.json metadata "data": "digits"): every result that shows a clip says
    "moving digits, 32x32, 8 frames" (the tokenizer's clip size), and Generate lists the digits."""
    root = save_micro_bundle(tmp_path / "ckpts", data="digits")
    set_checkpoints_dir(root)
    try:
        assert training_data() == "digits" and training_data(DEFAULT_GENERATOR, DEFAULT_GENERATOR) == "digits"
        assert training_data(str(root / DEFAULT_TOKENIZER)) == "digits"  # a directory works too
        assert training_data("untrained:micro") is None and training_data("someone/LARP-hub") is None
        m = ModelCache()
        ws = handlers.Workspace(tmp_path / "ws")
        want = "moving digits, 32x32, 8 frames"
        assert describe_training("digits", 8, 32) == want and describe_training(None, 8, 32) is None
        r = handlers.reconstruct(m, ws, "default", str(CLIP))
        assert r["trained_on"] == want and r["metrics"]["num_tokens"] == 16
        assert handlers.reconstruct(m, ws, DEFAULT_TOKENIZER, str(CLIP))["trained_on"] == want
        assert handlers.predict(m, ws, "default", DEFAULT_FRAME_PREDICTOR, str(CLIP), 3, 0)["trained_on"] == want
        e = handlers.explore(m, ws, "default", str(CLIP), query=0, layer=0, head=None, map_method="pca")
        assert e["trained_on"] == want
        assert training_note(want) == ("**The tokenizer was trained on:** moving digits, 32x32, 8 frames, nothing "
                                       "else; clips unlike those, such as real footage, come back blurred or wrong.")
        assert handlers.generator_classes(m, "default") == {"names": [str(d) for d in range(10)], "data": "digits"}
        g = handlers.generate(m, ws, "default", "default", "7", 1, 1.0, 1.0, 0, 1.0, 0)
        assert g["info"]["class"] == "7" and g["info"]["class_id"] == 7
    finally:
        set_checkpoints_dir(None)


def test_a_tokenizer_that_does_not_say_gets_no_training_note(models, tmp_path):
    r = handlers.reconstruct(models, handlers.Workspace(tmp_path / "ws"), "t", str(CLIP))
    assert r["trained_on"] is None and training_note(None) == ""
    assert handlers.generator_classes(models, "g") == {"names": [f"class {i}" for i in range(10)], "data": None}


def test_generators_pair_only_with_the_tokens_they_learned(models, gen, tmp_path):
    """Sizes cannot tell a patch tokenizer's tokens from a holistic one's: the handlers refuse the pair
    (a generator naming its tokenizer in config.json pairs with that one only)."""
    from larp_lab.config import TOKENIZER_PRESETS
    from larp_lab.models.tokenizer import LARPTokenizer

    torch.manual_seed(3)
    patch = LARPTokenizer(TOKENIZER_PRESETS["micro"]().replace(token_mode="patch", temporal_patch_size=8)).eval()
    models._cache[("tokenizer", "pt")] = patch
    ws = handlers.Workspace(tmp_path / "ws")
    handlers.check_pairing(models, "t", "g")  # no metadata, holistic tokens: fine
    with pytest.raises(ValueError, match="pt makes patch tokens; g learned holistic tokens"):
        handlers.generate(models, ws, "pt", "g", "class 3", 1, 1.0, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="makes patch tokens"):
        handlers.predict(models, ws, "pt", "p", str(CLIP), 3, 0)
    with pytest.raises(ValueError, match="makes patch tokens"):
        handlers.reconstruct_from_prefix(models, ws, "pt", "g", [0] * 16, None, 4, "generator")
    assert handlers.reconstruct_from_prefix(models, ws, "pt", None, [0] * 16, None, 4, "prior")["metrics"]["k"] == 4
    named = tmp_path / "gen_of_pt"
    gen.save_pretrained(named, metadata={"tokenizer": "pt"})
    handlers.check_pairing(models, "pt", str(named))  # it says it learned pt's tokens
    with pytest.raises(ValueError, match="learned the tokens of pt, not of t"):
        handlers.check_pairing(models, "t", str(named))
