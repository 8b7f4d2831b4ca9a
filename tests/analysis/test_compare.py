"""Holistic vs patch comparison (larp_lab.analysis.compare, larp_lab.viz.compare) on micro random
models: the numbers agree with direct measurements, one tokenizer compared with itself gives no gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import larp_lab.analysis as A
from larp_lab import pipelines, viz
from larp_lab.config import TOKENIZER_PRESETS
from larp_lab.data.digits import MovingDigits
from larp_lab.evaluation.metrics import psnr
from larp_lab.models.tokenizer import LARPTokenizer


def _perturbed(cfg, seed: int) -> LARPTokenizer:
    torch.manual_seed(seed)
    tok = LARPTokenizer(cfg)
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return tok.eval()


@pytest.fixture(scope="module")
def toks():
    micro = TOKENIZER_PRESETS["micro"]()  # 16 holistic tokens over 2x4x4 patches
    patch = micro.replace(token_mode="patch", temporal_patch_size=8)  # 1x4x4 = 16 patch tokens
    return {"holistic": _perturbed(micro, 0), "patch": _perturbed(patch, 1)}


@pytest.fixture(scope="module")
def clips(toks):
    c = toks["holistic"].config
    video, _ = MovingDigits(6, frames=c.frame_num, size=c.input_size, seed=3).render(range(6))
    return torch.from_numpy(video).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def cmp(toks, clips):
    with torch.no_grad():
        return A.compare_tokenizers(toks, clips, influence_clips=2, influence_codes=1)


def test_top_share():
    assert A.top_share(np.ones(8)) == pytest.approx(0.25)
    assert A.top_share(np.array([0, 0, 5.0, 0])) == pytest.approx(1.0)
    assert A.top_share(np.array([3.0, 1.0, -2.0, 0.0]), fraction=0.5) == pytest.approx(1.0)  # negatives clipped
    assert math.isnan(A.top_share(np.zeros(4)))


def test_reports_match_direct_measurements(toks, clips, cmp):
    assert list(cmp.reports) == ["holistic", "patch"]
    for name, tok in toks.items():
        r = cmp.reports[name]
        with torch.no_grad():
            rec = pipelines.reconstruct(tok, clips)
            direct = psnr(rec.reconstruction, rec.original).numpy()
            ids = tok.encode(clips).indices
        np.testing.assert_allclose(r.psnr, direct, atol=1e-3)  # k = N of the prefix curve: the reconstruction
        np.testing.assert_allclose(r.importance.baseline, direct, atol=1e-3)
        assert r.token_mode == name and r.codes_used == int(ids.unique().numel())
        bits = A.to_bits(A.prior_surprisal(tok, ids)).numpy()
        assert r.prior_bits.shape == (6, tok.config.num_tokens - 1)
        np.testing.assert_allclose(r.prior_bits, bits, rtol=1e-5)
        assert list(r.prefix.ks) == A.default_ks(16) and r.prefix.psnr.shape == (len(r.prefix.ks), 6)
        assert r.concentration.shape == (2, 16) and r.consistency.shape == (16,)
        assert ((r.concentration >= 1 / 16 - 1e-6) & (r.concentration <= 1 + 1e-6)).all()
        s = r.summary()
        assert s["psnr_db"] == pytest.approx(float(direct.mean()), abs=1e-3)
        assert s["uniform_bits_per_token"] == pytest.approx(math.log2(tok.config.codebook_size))
        assert {"prefix_psnr_db_k4", "prefix_psnr_db_k8", "prefix_area_db", "importance_top_quarter_share",
                "influence_concentration", "influence_consistency"} <= s.keys()
        lo, hi = r.prefix.mean.min(), r.prefix.mean.max()
        assert lo - 1e-9 <= s["prefix_area_db"] <= hi + 1e-9
    assert [row["tokenizer"] for row in cmp.table()] == ["holistic", "patch"]


def test_a_tokenizer_against_itself_has_no_gap(toks, clips):
    with torch.no_grad():
        same = A.compare_tokenizers({"a": toks["patch"], "b": toks["patch"]}, clips[:3])
    assert np.array_equal(same.prefix_gap("a", "b"), np.zeros(len(A.default_ks(16))))
    np.testing.assert_equal(same.reports["a"].summary() | {"tokenizer": "b"}, same.reports["b"].summary())  # NaN == NaN


def test_bad_input_is_refused(toks, clips, cmp):
    with pytest.raises(ValueError, match="at least one tokenizer"):
        A.compare_tokenizers({}, clips)
    with pytest.raises(ValueError, match=r"reads clips of \(8, 32, 32\)"):
        A.compare_tokenizers(toks, clips[:, :, :4])
    with pytest.raises(ValueError, match="must be"):
        A.compare_tokenizers(toks, clips[0])
    other = A.TokenizerComparison({"x": cmp.reports["holistic"], "y": A.TokenizerReport(
        **{**cmp.reports["patch"].__dict__, "prefix": A.PrefixCurve(np.array([0, 16]), np.zeros((2, 6)), "neutral")})})
    with pytest.raises(ValueError, match="different k"):
        other.prefix_gap("x", "y")


def test_figures(cmp, clips):
    fig = viz.comparison_figure(cmp, title="t")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert len(axes[0].get_lines()) == 2 and len(axes[1].get_lines()) == 2
    assert len(axes[2].get_lines()) == 3  # two tokenizers and the uniform line
    assert axes[1].get_lines()[0].get_ydata()[0] == pytest.approx(cmp.reports["holistic"].importance.mean_drop.max())
    rows = viz.clip_rows_figure([("a", clips[0]), ("b", clips[1])], frames=4)
    assert len(rows.get_axes()) == 2 and rows.get_axes()[0].get_ylabel() == "a"
    assert rows.get_axes()[0].get_images()[0].get_array().shape[:2] == (32, 4 * (32 + 2))
    with pytest.raises(ValueError, match="the first row"):
        viz.clip_rows_figure([("a", clips[0]), ("b", clips[1][:, :4])])
