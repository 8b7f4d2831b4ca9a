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


@torch.inference_mode()
def test_bundled_tokenizer_reconstructs_the_real_clip():
    tok = load_default_tokenizer()
    c = tok.config
    assert (c.input_size, c.frame_num, c.num_tokens) == (64, 16, 256)
    assert all(p.dtype == torch.float32 for p in tok.parameters())
    x = read_video(REPO / "examples" / "bigbuckbunny_128.mp4", 16, size=64).unsqueeze(0)
    enc = tok.encode(x)
    rec = tok.decode_indices(enc.indices)
    assert rec.shape == x.shape and enc.indices.shape == (1, 256)
    mse = ((rec.clamp(-1, 1) - x) / 2).pow(2).mean()
    gray = (x / 2).pow(2).mean()  # a constant mid-grey clip
    # the CPU-trained model reproduces colours, not shapes (13.3 dB, see its card): it must at least
    # beat a grey clip (it does by ~1 dB), which a broken load (noise, wrong range) would not
    assert 10 * torch.log10(gray / mse) > 0.5, (float(10 * torch.log10(1 / mse)), float(10 * torch.log10(1 / gray)))


@torch.inference_mode()
def test_bundled_generators_sample():
    tok = load_default_tokenizer()
    gen = load_default_generator()
    assert gen.config.num_tokens == 256 and gen.config.vocab_size == tok.config.codebook_size
    assert gen.config.class_names is not None and len(gen.config.class_names) == gen.config.num_classes
    idx = gen.sample(torch.tensor([0, 5]), cfg_scale=1.5, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (2, 256) and tok.decode_indices(idx).shape == (2, 3, 16, 64, 64)
    fp = load_default_frame_predictor()
    assert fp.config.frame_prediction and fp.config.cls_token_num == 257
    x = read_video(REPO / "examples" / "synthetic_bouncing.mp4", 16, size=64).unsqueeze(0)
    cond = tok.encode(repeat_last_frame(x, 5)).indices
    out = fp.sample(cond, greedy=True)
    assert out.shape == (1, 256)


def test_bundled_classifier_loads():
    from larp_lab.data.synthetic import CLASS_NAMES
    from larp_lab.evaluation.classifier import VideoClassifier

    clf = VideoClassifier.from_pretrained(CKPT / "larp-tiny-classifier")
    assert clf.config.num_classes == len(CLASS_NAMES)
    x = read_video(REPO / "examples" / "synthetic_bouncing.mp4", 16, size=64).unsqueeze(0)
    with torch.inference_mode():
        assert clf(x).shape == (1, len(CLASS_NAMES))


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
    assert load_default_tokenizer().config.num_tokens == 256
    explicit = _copy_tokenizer(tmp_path / "explicit")
    bundled.set_checkpoints_dir(explicit)  # --checkpoints DIR wins over the environment
    assert checkpoints_dir() == explicit
    assert bundled.resolve_tokenizer(bundled.DEFAULT_TOKENIZER).config.num_tokens == 256
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
    assert bundled.resolve_tokenizer(str(d / bundled.DEFAULT_TOKENIZER)).config.num_tokens == 256
