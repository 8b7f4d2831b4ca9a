"""Training snapshots (larp_lab.analysis.snapshots): listing and its errors, the numbers measured on the same
clips against direct computations, the own-cell share against the training code's, and (when the bundle has
them) the real bundled snapshots on four held-out clips."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from snapshot_helpers import micro_tokenizer, save_fake_snapshots, save_snapshot

from larp_lab import LARPTokenizer
from larp_lab.analysis import (
    SnapshotError,
    encoder_attention,
    list_snapshots,
    measure_snapshots,
    own_cell_chance,
    own_cell_share,
    prior_surprisal,
    query_attention_maps,
    to_bits,
)
from larp_lab.evaluation.codebook import codebook_usage, perplexity
from larp_lab.evaluation.metrics import psnr, ssim
from larp_lab.models.token_cells import locality_weights, own_cell_mask, token_grid


def _clips(n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 32, 32, generator=g) * 2 - 1  # (n, 3, T, H, W) in [-1, 1]


def _final(tmp_path, tok: LARPTokenizer, steps: int, name: str = "final"):
    """``tok`` saved as a trained model that says how many steps it was trained for."""
    return tok.save_pretrained(tmp_path / name, dtype=torch.float16, metadata={"steps": steps, "data": "digits"})


# ================================================================================================
#                                          Listing
# ================================================================================================


def test_list_snapshots_sorts_by_step_ignores_files_and_ends_with_the_final_model(tmp_path):
    root = tmp_path / "snaps"
    save_fake_snapshots(root, steps=(160, 10, 40))
    save_snapshot(micro_tokenizer(7), root, 3, 200, name="step3")  # no zero padding: still step 3
    (root / "README.md").write_text("notes")
    (root / ".cache").mkdir()
    snaps = list_snapshots(root)
    assert [s.step for s in snaps] == [3, 10, 40, 160]
    assert [s.path.name for s in snaps] == ["step3", "step000010", "step000040", "step000160"]
    assert not any(s.final for s in snaps) and snaps[1].max_steps == 200 and snaps[1].label == "step 10"
    final = _final(tmp_path, micro_tokenizer(9), 500)
    with_final = list_snapshots(root, final)
    assert [s.step for s in with_final] == [3, 10, 40, 160, 500]
    assert with_final[-1].final and with_final[-1].path == final and with_final[-1].label == "step 500 (final)"
    # a snapshot at the final model's own step is the same point: the final model replaces it
    at_160 = _final(tmp_path, micro_tokenizer(9), 160, name="final160")
    assert [(s.step, s.final) for s in list_snapshots(root, at_160)] == [(3, False), (10, False), (40, False),
                                                                         (160, True)]


def test_list_snapshots_errors_are_clear(tmp_path):
    with pytest.raises(SnapshotError, match="no such snapshots folder"):
        list_snapshots(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotError, match="no snapshots"):
        list_snapshots(tmp_path / "empty")
    root = tmp_path / "snaps"
    save_fake_snapshots(root, steps=(10, 40))
    bad = root / "best"
    shutil.copytree(root / "step000010", bad)
    with pytest.raises(SnapshotError, match=r"best: not a snapshot name.*step<N>"):
        list_snapshots(root)
    shutil.rmtree(bad)
    shutil.copytree(root / "step000010", root / "step10")  # step 10 twice
    with pytest.raises(SnapshotError, match="two snapshots at step 10"):
        list_snapshots(root)
    shutil.rmtree(root / "step10")
    shutil.copytree(root / "step000010", root / "step000020")  # its metadata says 10
    with pytest.raises(SnapshotError, match="folder says step 20 but its metadata says 10"):
        list_snapshots(root)
    shutil.rmtree(root / "step000020")
    (root / "step000030").mkdir()
    (root / "step000030" / "config.json").write_text("{}")
    with pytest.raises(SnapshotError, match="incomplete snapshot.*model.safetensors"):
        list_snapshots(root)
    shutil.rmtree(root / "step000030")
    assert [s.step for s in list_snapshots(root)] == [10, 40]  # repaired
    no_steps = micro_tokenizer(3).save_pretrained(tmp_path / "nosteps", metadata={"data": "digits"})
    with pytest.raises(SnapshotError, match="metadata says no 'steps'"):
        list_snapshots(root, no_steps)
    with pytest.raises(SnapshotError, match="trained to step 20 but .*step000040 is later"):
        list_snapshots(root, _final(tmp_path, micro_tokenizer(3), 20))
    with pytest.raises(SnapshotError, match="no config.json"):
        list_snapshots(root, tmp_path / "nowhere")
    assert issubclass(SnapshotError, ValueError)  # the CLI and the app show it as one line


# ================================================================================================
#                                     Numbers on the same clips
# ================================================================================================


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three fake snapshots and a final model that is a copy of the last one, saved at a later step."""
    tmp = tmp_path_factory.mktemp("snaps")
    save_fake_snapshots(tmp / "snaps", steps=(10, 40, 160))
    final = tmp / "final"
    shutil.copytree(tmp / "snaps" / "step000160", final)
    body = json.loads((final / "config.json").read_text())
    body["metadata"] = {"steps": 200, "data": "digits"}
    (final / "config.json").write_text(json.dumps(body))
    snaps = list_snapshots(tmp / "snaps", final)
    clips = _clips(5)
    return snaps, clips, measure_snapshots(snaps, clips, "cpu", keep=3, batch_size=2)


def test_report_shapes_and_ranges(run):
    snaps, clips, rep = run
    S, B, N, K = 4, 5, 16, 64
    assert len(rep) == S and rep.steps.tolist() == [10, 40, 160, 200] and rep.final.tolist() == [0, 0, 0, 1]
    assert rep.labels[-1] == "step 200 (final)" and rep.num_clips == B and rep.codebook_size == K
    assert rep.psnr_clip.shape == rep.ssim_clip.shape == rep.prior_bits_clip.shape == (S, B)
    assert rep.indices.shape == (S, B, N) and rep.indices.dtype == np.int64
    assert rep.reconstructions.shape == (S, 3, 3, 8, 32, 32) and rep.originals.shape == (3, 3, 8, 32, 32)
    assert np.array_equal(rep.originals, clips[:3].numpy())
    assert rep.queries == [5, 11] and rep.query_maps.shape == (S, 3, 2, 2, 4, 4)  # micro patch grid (2, 4, 4)
    assert np.abs(rep.reconstructions).max() <= 1.0
    assert np.all((rep.usage > 0) & (rep.usage <= min(1.0, B * N / K)))
    assert np.array_equal(rep.used_codes, np.round(rep.usage * K).astype(np.int64))
    assert np.all((rep.perplexity >= 1) & (rep.perplexity <= rep.used_codes + 1e-9))
    assert rep.uniform_bits == 6.0 and np.all(rep.prior_bits > 0)
    assert np.all((rep.own_cell >= 0) & (rep.own_cell <= 1)) and np.all((rep.attention_entropy > 0) & (rep.attention_entropy <= 1))
    assert np.all((rep.patch_mass > 0) & (rep.patch_mass <= 1 + 1e-6))
    assert rep.cells == (1, 4, 4) and rep.layer == 1  # 16 tokens over a (2, 4, 4) grid; the last of 2 layers
    assert math.isclose(rep.own_cell_chance, own_cell_chance(own_cell_mask(16, (2, 4, 4))))
    text = json.dumps(rep.to_dict())  # JSON-able
    assert json.loads(text)["snapshots"][0]["step"] == 10 and len(json.loads(text)["snapshots"]) == S


def test_a_copy_of_one_model_at_two_steps_gives_identical_numbers(run):
    _, _, rep = run
    a, b = rep.index_of(160), rep.index_of(200)  # the final model is a copy of step 160's files
    for arr in (rep.psnr_clip, rep.ssim_clip, rep.prior_bits_clip, rep.indices, rep.reconstructions, rep.query_maps):
        assert np.array_equal(arr[a], arr[b])
    for arr in (rep.usage, rep.perplexity, rep.own_cell, rep.attention_entropy, rep.patch_mass):
        assert arr[a] == arr[b]
    assert {k: v for k, v in rep.row(a).items() if k not in ("step", "label", "final")} == \
        {k: v for k, v in rep.row(b).items() if k not in ("step", "label", "final")}
    assert rep.psnr[0] != rep.psnr[a]  # and different models differ
    with pytest.raises(KeyError, match="no snapshot at step 7"):
        rep.index_of(7)


def test_numbers_match_a_direct_computation(run):
    snaps, clips, rep = run
    for i, snap in enumerate(snaps):
        tok = LARPTokenizer.from_pretrained(snap.path)
        with torch.no_grad():
            enc = tok.encode(clips)
            rec = tok.decode(enc.embeddings).clamp(-1, 1)
        assert np.array_equal(rep.indices[i], enc.indices.numpy())
        np.testing.assert_allclose(rep.psnr_clip[i], psnr(rec, clips).double().numpy(), atol=1e-3)
        np.testing.assert_allclose(rep.ssim_clip[i], ssim(rec, clips).double().numpy(), atol=1e-4)
        np.testing.assert_allclose(rep.reconstructions[i], rec[:3].numpy(), atol=1e-4)
        assert rep.usage[i] == codebook_usage(enc.indices, 64)
        assert math.isclose(rep.perplexity[i], perplexity(enc.indices, 64), rel_tol=1e-12)
        bits = to_bits(prior_surprisal(tok, enc.indices)).double().mean(1).numpy()
        np.testing.assert_allclose(rep.prior_bits_clip[i], bits, rtol=1e-5)
        _, cache = encoder_attention(tok, clips)
        maps = query_attention_maps(cache, layers=[1])[:, 0].mean(1)  # (B, N, t, h, w)
        np.testing.assert_allclose(rep.query_maps[i], maps[:3, [5, 11]].numpy(), atol=1e-6)
        share = own_cell_share(maps, own_cell_mask(16, (2, 4, 4))).mean()
        assert math.isclose(rep.own_cell[i], share, rel_tol=1e-6)


def test_batch_size_does_not_change_the_numbers(run):
    snaps, clips, rep = run
    one = measure_snapshots(snaps[:2], clips, keep=3, batch_size=5)
    assert np.array_equal(one.indices, rep.indices[:2]) and np.array_equal(one.usage, rep.usage[:2])
    np.testing.assert_allclose(one.psnr_clip, rep.psnr_clip[:2], atol=1e-4)
    np.testing.assert_allclose(one.own_cell, rep.own_cell[:2], rtol=1e-5)
    np.testing.assert_allclose(one.attention_entropy, rep.attention_entropy[:2], rtol=1e-5)


def test_measure_refuses_mixed_runs_and_bad_queries(run, tmp_path):
    snaps, clips, _ = run
    other = save_snapshot(micro_tokenizer(1, codebook_size=32), tmp_path, 999, 999)
    mixed = [*snaps[:1], type(snaps[0])(999, other)]
    with pytest.raises(SnapshotError, match="differ from the first snapshot"):
        measure_snapshots(mixed, clips[:2])
    with pytest.raises(ValueError, match=r"queries must lie in \[0, 16\)"):
        measure_snapshots(snaps[:1], clips[:2], queries=[16])
    with pytest.raises(ValueError, match="layer 2 is outside the encoder's 2 layers"):
        measure_snapshots(snaps[:1], clips[:2], layer=2)
    assert measure_snapshots(snaps[:1], clips[:2], layer=0).layer == 0
    with pytest.raises(ValueError, match="clips must be"):
        measure_snapshots(snaps[:1], clips[0])
    with pytest.raises(SnapshotError, match="no snapshots given"):
        measure_snapshots([], clips)


# ================================================================================================
#                                    Own-cell share and geometry
# ================================================================================================


def test_token_cells_match_the_training_locality_loss():
    """The geometry in larp_lab.models.token_cells is the one the locality loss trains with (it imports it)."""
    from larp_lab.training import locality as train_loc

    for n, grid in ((16, (2, 4, 4)), (64, (2, 8, 8)), (256, (4, 8, 8)), (16, (2, 8, 8)), (12, (3, 4, 4))):
        cells = token_grid(n, grid)
        assert cells == train_loc.token_grid(n, grid)
        assert torch.equal(locality_weights(cells, grid), train_loc.locality_weights(cells, grid))
    assert token_grid(64, (2, 8, 8)) == (1, 8, 8)
    mask = own_cell_mask(64, (2, 8, 8))  # one spatial cell, both temporal slots: 2 own patches per query
    assert mask.shape == (64, 2, 8, 8) and mask.sum((1, 2, 3)).tolist() == [2] * 64
    assert math.isclose(own_cell_chance(mask), 2 / (128 + 64))
    with pytest.raises(ValueError, match="has 8 cells but there are 16 tokens"):
        own_cell_mask(16, (2, 8, 8), cells=(2, 2, 2))


def test_own_cell_share_equals_the_bundle_measure():
    """own_cell_share on the last layer's maps is what scripts/bundle_models.py reports ("last_block"),
    measured there by the training code's AttentionLocality.own_cell_attention."""
    from larp_lab.training.locality import AttentionLocality, LocalityConfig

    tok = micro_tokenizer(5)
    x = _clips(3, seed=2)
    c = tok.config
    loc = AttentionLocality(LocalityConfig(weight=1.0), c.num_tokens, c.patch_grid, c.decoder_patch_grid)
    want = loc.own_cell_attention(tok, x)
    _, cache = encoder_attention(tok, x)
    mask = own_cell_mask(c.num_tokens, c.patch_grid)
    for layer in (0, 1):
        maps = query_attention_maps(cache, layers=[layer])[:, 0]  # (B, heads, N, t, h, w)
        per_head = own_cell_share(maps, mask)  # (B, heads, N)
        assert math.isclose(per_head.mean(), want[f"enc{layer}"], rel_tol=1e-5)
        assert math.isclose(own_cell_share(maps.mean(1), mask).mean(), per_head.mean(), rel_tol=1e-6)
    assert math.isclose(own_cell_chance(mask), want["chance"], rel_tol=1e-6)
    # a map that sits entirely on the own cells has share 1; a uniform map over patches has the patch share
    own = mask.float()[None] / mask.float().sum((1, 2, 3))[None, :, None, None, None]
    assert np.allclose(own_cell_share(own, mask), 1.0)
    uniform = torch.full((1, 16, 2, 4, 4), 1 / 32)  # the micro patch grid: 32 patches
    assert np.allclose(own_cell_share(uniform, mask), mask.sum((1, 2, 3)).numpy() / 32)
    with pytest.raises(ValueError, match="own-cell mask"):
        own_cell_share(uniform, own_cell_mask(64, (2, 8, 8)))


# ================================================================================================
#                                  The real bundled snapshots
# ================================================================================================


def test_the_bundled_snapshots_on_four_held_out_clips():
    """The bundle's snapshots, then its tokenizer, measured on four held-out digits: the scrub ends at the
    trained model, whose reconstructions beat the first snapshot's (skipped when the bundle has none)."""
    from larp_lab.analysis import bundled_snapshots
    from larp_lab.bundled import has_snapshots, model_metadata
    from larp_lab.viz.notebook import bundled_clips

    if not has_snapshots():
        pytest.skip("the bundled tokenizer has no training snapshots here")
    snaps = bundled_snapshots()
    steps = [s.step for s in snaps]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and len(snaps) >= 3
    assert snaps[-1].final and snaps[-1].step == model_metadata()["steps"]
    last = LARPTokenizer.from_pretrained(snaps[-1].path)
    clips, _, _ = bundled_clips(last, 4, seed=0)
    rep = measure_snapshots(snaps, clips, keep=2)
    assert rep.uniform_bits == math.log2(last.config.codebook_size)
    assert rep.psnr[-1] > rep.psnr[0] + 3.0  # trained vs barely started
    assert rep.used_codes[-1] > rep.used_codes[0]
