"""The models shipped in checkpoints/ load offline and run at their documented sizes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import REPO

from larp_lab import (
    CheckpointError,
    bundled,
    load_default_frame_predictor,
    load_default_generator,
    load_default_tokenizer,
)
from larp_lab.bundled import checkpoints_dir
from larp_lab.data.video import read_video, repeat_last_frame

CKPT = REPO / "checkpoints"
NAMES = ["larp-tiny-tokenizer", "larp-tiny-generator", "larp-tiny-frame-predictor", "larp-tiny-classifier"]


def test_bundle_is_complete_and_small():
    assert checkpoints_dir() == CKPT or "LARP_LAB_CHECKPOINTS" in __import__("os").environ
    total = 0
    for name in NAMES:
        d = CKPT / name
        for f in ("config.json", "model.safetensors", "MODEL_CARD.md"):
            assert (d / f).is_file(), f"{name}/{f}"
        card = (d / "MODEL_CARD.md").read_text()
        assert "## Training" in card or "Training" in card
        total += sum(p.stat().st_size for p in d.iterdir())
    assert total <= 60 * 2**20, f"checkpoints/ holds {total / 2**20:.1f} MB"
    metrics = json.loads((CKPT / "metrics.json").read_text())
    assert {"tokenizer", "generator", "predictor", "classifier"} <= set(metrics)


def _heldout_digits(n: int, tok, seed: int = 7):
    from larp_lab.data.digits import MovingDigits

    c = tok.config
    d = MovingDigits(n, c.frame_num, c.input_size, seed=seed, split="heldout")
    items = [d[i] for i in range(n)]
    return torch.stack([it["video"] for it in items]), torch.tensor([it["label"] for it in items])


@torch.inference_mode()
def test_bundled_tokenizer_reconstructs_heldout_digits():
    tok = load_default_tokenizer()
    c = tok.config
    assert (c.input_size, c.frame_num, c.num_tokens) == (32, 8, 64)
    assert tok.checkpoint_metadata.get("data") == "digits"
    assert all(p.dtype == torch.float32 for p in tok.parameters())
    x, _ = _heldout_digits(16, tok)
    enc = tok.encode(x)
    rec = tok.decode_indices(enc.indices).clamp(-1, 1)
    assert rec.shape == x.shape and enc.indices.shape == (16, 64)
    mse = ((rec - x) / 2).pow(2).mean()
    flat = ((x.mean(dim=(2, 3, 4), keepdim=True) - x) / 2).pow(2).mean()  # each clip in its mean colour
    # measured 25.7 dB vs 18.5 flat on 256 clips (metrics.json): a broken load (noise, wrong range,
    # wrong weights) falls to or below the flat-colour field
    gain = float(10 * torch.log10(flat / mse))
    assert gain > 4.0, gain
    # the real clip still goes through (the model was not trained on it: blurs)
    v = read_video(REPO / "examples" / "bigbuckbunny_128.mp4", c.frame_num, size=c.input_size).unsqueeze(0)
    assert tok.decode_indices(tok.encode(v).indices).shape == v.shape


@torch.inference_mode()
def test_bundled_generators_sample_the_digit_asked_for():
    from larp_lab.evaluation.classifier import VideoClassifier

    tok = load_default_tokenizer()
    gen = load_default_generator()
    assert gen.config.num_tokens == 64 and gen.config.vocab_size == tok.config.codebook_size
    assert tuple(gen.config.class_names) == tuple(str(d) for d in range(10))
    labels = torch.arange(10)
    idx = gen.sample(labels, cfg_scale=3.0, generator=torch.Generator().manual_seed(0))
    v = tok.decode_indices(idx).clamp(-1, 1)
    assert idx.shape == (10, 64) and v.shape == (10, 3, 8, 32, 32)
    clf = VideoClassifier.from_pretrained(CKPT / "larp-tiny-classifier")
    hits = int((clf(v).argmax(-1) == labels).sum())
    assert hits >= 5, hits  # chance is 1 in 10; see the generator's card for the measured rate
    fp = load_default_frame_predictor()
    assert fp.config.frame_prediction and fp.config.cls_token_num == 65
    x, _ = _heldout_digits(2, tok)
    cond = tok.encode(repeat_last_frame(x, 4)).indices
    assert fp.sample(cond, greedy=True).shape == (2, 64)


@torch.inference_mode()
def test_bundled_classifier_reads_heldout_digits():
    from larp_lab.evaluation.classifier import VideoClassifier

    tok = load_default_tokenizer()
    clf = VideoClassifier.from_pretrained(CKPT / "larp-tiny-classifier")
    assert clf.config.num_classes == 10
    x, y = _heldout_digits(40, tok, seed=11)
    acc = float((clf(x).argmax(-1) == y).float().mean())
    assert acc >= 0.8, acc  # measured 97.7% on 256 held-out clips


# ------------------------------------------------------------------------------------------------
# where the bundled models are looked for
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_explicit_dir(monkeypatch):
    monkeypatch.delenv("LARP_LAB_CHECKPOINTS", raising=False)
    bundled.set_checkpoints_dir(None)
    yield
    bundled.set_checkpoints_dir(None)


def _copy_tokenizer(dst):
    shutil.copytree(CKPT / bundled.DEFAULT_TOKENIZER, dst / bundled.DEFAULT_TOKENIZER)
    return dst


def test_checkpoints_dir_order(no_explicit_dir, monkeypatch, tmp_path):
    assert checkpoints_dir() == CKPT  # a repository clone: checkpoints/ next to the package
    env_dir = _copy_tokenizer(tmp_path / "env")
    monkeypatch.setenv("LARP_LAB_CHECKPOINTS", str(env_dir))
    assert checkpoints_dir() == env_dir
    assert bundled.bundled_path(bundled.DEFAULT_TOKENIZER) == env_dir / bundled.DEFAULT_TOKENIZER
    assert load_default_tokenizer().config.num_tokens == 64
    explicit = _copy_tokenizer(tmp_path / "explicit")
    bundled.set_checkpoints_dir(explicit)  # --checkpoints DIR wins over the environment
    assert checkpoints_dir() == explicit
    assert bundled.resolve_tokenizer(bundled.DEFAULT_TOKENIZER).config.num_tokens == 64
    assert bundled.has_bundled(bundled.DEFAULT_TOKENIZER) and not bundled.has_bundled(bundled.DEFAULT_GENERATOR)
    with pytest.raises(CheckpointError, match=f"bundled model '{bundled.DEFAULT_GENERATOR}' is not in"):
        load_default_generator()


def test_missing_checkpoints_dir_errors(no_explicit_dir, monkeypatch, tmp_path):
    bundled.set_checkpoints_dir(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="--checkpoints .*nowhere: no such directory"):
        checkpoints_dir()
    bundled.set_checkpoints_dir(None)
    monkeypatch.setenv("LARP_LAB_CHECKPOINTS", str(tmp_path / "gone"))
    with pytest.raises(CheckpointError, match="LARP_LAB_CHECKPOINTS=.*gone: no such directory"):
        load_default_tokenizer()
    assert not bundled.has_bundled(bundled.DEFAULT_TOKENIZER)  # never raises
    monkeypatch.delenv("LARP_LAB_CHECKPOINTS")
    # an installed wheel: no checkpoints/ next to the package
    monkeypatch.setattr(bundled, "REPO_CHECKPOINTS", tmp_path / "site-packages" / "checkpoints")
    with pytest.raises(CheckpointError) as e:
        load_default_tokenizer()
    msg = str(e.value)
    assert "not part of an installed" in msg and "LARP_LAB_CHECKPOINTS" in msg and "--checkpoints" in msg
    assert "Hub repo id" in msg and "\n" not in msg
    assert bundled.find_checkpoints_dir() is None
    # a Hub id or a directory still resolves without the bundle (here: a directory)
    d = _copy_tokenizer(tmp_path / "own")
    assert bundled.resolve_tokenizer(str(d / bundled.DEFAULT_TOKENIZER)).config.num_tokens == 64
