"""The app's token-surgery handlers (larp_lab.app.surgery) on a micro tokenizer: edit, influence, swap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

from larp_lab import viz
from larp_lab.analysis import parse_edits, parse_positions
from larp_lab.app import handlers, surgery
from larp_lab.app.cache import ModelCache
from larp_lab.data.video import read_video

DIGITS = [str(REPO / "examples" / f"digits_{d}.mp4") for d in (3, 5, 7, 9)]


@pytest.fixture()
def models(tok):
    m = ModelCache()
    m._cache.update({("tokenizer", "t"): tok})
    return m


def test_parse_positions_and_edits():
    assert parse_positions("0-3, 7,7, 10 - 11", 16) == [0, 1, 2, 3, 7, 10, 11]
    assert parse_positions("all", 4) == [0, 1, 2, 3]
    for bad, msg in (("", "Give"), ("3-1", "lie in"), ("16", "lie in"), ("x", "cannot read")):
        with pytest.raises(ValueError, match=msg):
            parse_positions(bad, 16)
    assert parse_edits("3:17, 5 : 2", 16, 64) == {3: 17, 5: 2}
    for bad, msg in (("", "at least one"), ("3=1", "position:code"), ("16:1", "outside the 16"),
                     ("1:64", "outside the codebook")):
        with pytest.raises(ValueError, match=msg):
            parse_edits(bad, 16, 64)


def test_tokenize_grid_click_and_alternatives(models, tok):
    clip = surgery.tokenize(models, "t", DIGITS[0])
    N = tok.config.num_tokens
    assert len(clip.indices) == N and clip.video.shape == (1, 3, 8, 32, 32) and "8 frames" in clip.used
    assert clip.indices == tok.encode(clip.video).indices[0].tolist()
    img = surgery.grid(models, clip, selected=5)
    rows, cols = viz.grid_shape(N)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] * cols == img.shape[1] * rows
    # a click in the middle of cell (row 1, column 2) picks that token
    h, w = img.shape[0] / rows, img.shape[1] / cols
    assert viz.grid_cell_at(2.5 * w, 1.5 * h, img.shape, N) == cols + 2
    alts = surgery.alternatives(models, "t", clip, 3, k=5)
    assert alts[0] == (f"{clip.indices[3]} (this clip's code)", clip.indices[3])
    assert len(alts) >= 5 and all("prior p=" in lab for lab, _ in alts[1:])
    assert "cosine" in surgery.alternatives(models, "t", clip, 0)[1][0]
    with pytest.raises(ValueError, match="Tokenize a clip first"):
        surgery.alternatives(models, "t", None, 0)
    with pytest.raises(ValueError, match="tokenizer changed"):
        surgery.alternatives(models, "t", surgery.SurgeryClip("other", clip.video, clip.indices, ""), 0)


def test_edit_handler_writes_three_synchronised_panels(models, tok, tmp_path):
    ws = handlers.Workspace(tmp_path / "ws")
    clip = surgery.tokenize(models, "t", DIGITS[1])
    code = (clip.indices[2] + 1) % tok.config.codebook_size
    r = surgery.edit(models, ws, "t", clip, {2: code})
    v = read_video(r["video"], 8)
    assert v.shape == (3, 8, 128, 3 * 128 + 2 * 4)  # original | edited | difference, 4x, 4-px gaps
    assert r["info"]["changed_positions"] == [2] and r["indices"][2] == code
    assert len(r["info"]["energy_per_frame"]) == 8 and r["info"]["mean_energy"] > 0
    assert r["energy"].ndim == 3
    same = surgery.edit(models, ws, "t", clip, {2: clip.indices[2]})
    assert same["info"]["changed_positions"] == [] and same["info"]["mean_energy"] == 0


def test_influence_and_pixel_control(models, tok):
    clip = surgery.tokenize(models, "t", DIGITS[2])
    r = surgery.influence(models, "t", clip, num_codes=2)
    N = tok.config.num_tokens
    rows, cols = viz.grid_shape(N)
    assert r["mosaic"].shape == (rows * 33 - 1, cols * 33 - 1, 3) and r["mosaic"].dtype == np.uint8
    assert clip.influence is not None and clip.influence.maps.shape == (N, 8, 32, 32)
    s = clip.influence.strength()
    assert r["info"]["strongest_tokens"][0] == int(np.argmax(s))
    frame = surgery.reconstruction_frame(clip, 3)
    assert frame.shape == (128, 128, 3)
    p = surgery.pixel_control(models, clip, 3, 64.0, 64.0, frame.shape)
    assert p["info"]["pixel"] == [16, 16] and len(p["info"]["top_tokens"]) == 5
    share = clip.influence.pixel_control(3, 16, 16, radius=1)
    assert p["info"]["top_tokens"][0] == int(np.argmax(share))
    assert 0 < p["info"]["share_of_top_5"] <= 1.0
    with pytest.raises(ValueError, match="replacement codes"):
        surgery.influence(models, "t", clip, num_codes=99)
    with pytest.raises(ValueError, match="influence map first"):
        surgery.pixel_control(models, surgery.tokenize(models, "t", DIGITS[2]), 0, 1, 1, frame.shape)


def test_swap_handler_all_positions_gives_clip_b(models, tok, tmp_path):
    ws = handlers.Workspace(tmp_path / "ws")
    a, b = surgery.tokenize(models, "t", DIGITS[0]), surgery.tokenize(models, "t", DIGITS[3])
    N = tok.config.num_tokens
    r = surgery.swap(models, ws, "t", a, b, list(range(N)))
    info = r["info"]
    assert read_video(r["video"], 8).shape == (3, 8, 128, 3 * 128 + 8)
    assert info["tokens_changed"] == sum(x != y for x, y in zip(a.indices, b.indices))
    assert info["centre_yx"]["patched"] == info["centre_yx"]["B"] and info["colour_rgb"]["patched"] == info["colour_rgb"]["B"]
    assert info["positions"] == f"0-{N - 1}"
    assert parse_positions(surgery._ranges([0, 1, 2, 3, 7, 10, 11]), N) == [0, 1, 2, 3, 7, 10, 11]
    none = surgery.swap(models, ws, "t", a, b, [])["info"]
    assert none["tokens_changed"] == 0 and none["centre_yx"]["patched"] == none["centre_yx"]["A"]
    q = surgery.swap(models, ws, "t", a, b, list(range(N)), method="queries", layer=-1)["info"]
    assert q["layer"] == tok.config.encoder_depth - 1 and q["centre_yx"]["patched"] == q["centre_yx"]["B"]
    with pytest.raises(ValueError, match="method"):
        surgery.swap(models, ws, "t", a, b, [0], method="pixels")
    with pytest.raises(ValueError, match="clip B"):
        surgery.swap(models, ws, "t", a, None, [0])
    assert torch.equal(torch.tensor(a.indices), tok.encode(a.video).indices[0])  # nothing edited in place
