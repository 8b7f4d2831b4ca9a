"""larp_lab.analysis on micro random models: shapes, invariants and exact identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import larp_lab.analysis as A
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.data.synthetic import SyntheticVideos
from larp_lab.evaluation.metrics import psnr
from larp_lab.models.generator import LARPGenerator
from larp_lab.models.tokenizer import LARPTokenizer


def _perturb(model, scale):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return _perturb(LARPTokenizer(TOKENIZER_PRESETS["micro"]()), 0.1)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(1)
    return _perturb(LARPGenerator(GENERATOR_PRESETS["micro"]()), 0.05)


@pytest.fixture(scope="module")
def data(tok):
    return A.encode_dataset(tok, SyntheticVideos(16, frames=8, size=32, seed=3), n=8, batch_size=3)


# ------------------------------------------------------------------------------------------------
# encode_dataset
# ------------------------------------------------------------------------------------------------


def test_encode_dataset_shapes_and_errors(tok, data):
    assert data.indices.shape == (8, 16) and data.indices.dtype == torch.int64
    assert data.latents.shape == (8, 16, 16)
    assert data.labels.tolist() == list(range(8))
    assert data.videos.shape == (8, 3, 8, 32, 32)
    assert len(data) == 8 and data.num_tokens == 16
    # quantized latents are the unit codebook rows of the indices
    cb = tok.bottleneck.regularizer.normalized_codebook()
    assert torch.allclose(data.latents, cb[data.indices], atol=1e-6)
    with torch.no_grad():
        rec = tok.reconstruct(data.videos)
    assert torch.allclose(data.psnr, psnr(rec, data.videos), atol=1e-5)
    assert torch.allclose(10 * torch.log10(1 / data.mse), data.psnr, atol=1e-3)
    # a bare tensor of clips works too and gives the same tokens; no labels -> -1
    again = A.encode_dataset(tok, data.videos[:4], batch_size=4, reconstruct=False, keep_videos=False)
    assert torch.equal(again.indices, data.indices[:4])
    assert again.labels.tolist() == [-1] * 4 and again.videos is None and again.psnr is None
    with pytest.raises(ValueError):
        A.encode_dataset(tok, data.videos, n=99)


def test_encode_dataset_restores_training_mode(tok):
    tok.train()
    try:
        A.encode_dataset(tok, torch.zeros(1, 3, 8, 32, 32), reconstruct=False)
        assert tok.training
    finally:
        tok.eval()


# ------------------------------------------------------------------------------------------------
# attention
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attn(tok, data):
    return A.encoder_attention(tok, data.videos[:3])


def test_query_attention_maps(tok, data, attn):
    enc, cache = attn
    assert torch.equal(enc.indices, data.indices[:3])  # capturing changes nothing
    assert A.encoder_layers(cache) == [0, 1]
    assert not any(k.startswith("decoder") for k in cache.keys())
    maps = A.query_attention_maps(cache)
    assert maps.shape == (3, 2, 4, 16, 2, 4, 4)  # (B, layers, heads, N, t, h, w)
    assert maps.min() >= 0
    mass = maps.sum(dim=(-3, -2, -1))
    assert mass.max() <= 1 + 1e-6 and mass.min() > 0
    assert torch.equal(maps[:, 1], cache.query_to_patch_attention(1).float())
    # the rest of each row is the attention to the queries
    full = cache.attention("encoder", 0)[:, :, cache.layout.encoder_queries]
    assert torch.allclose(mass[:, 0] + full[..., cache.layout.encoder_queries].sum(-1), torch.ones(3, 4, 16), atol=1e-5)


def test_attention_rollout(attn):
    _, cache = attn
    R = A.attention_rollout(cache)
    L = cache.layout.num_patches + cache.layout.num_tokens
    assert R.shape == (3, L, L)
    assert R.min() >= 0
    assert torch.allclose(R.sum(-1), torch.ones(3, L), atol=1e-5)
    # the definition: mean over heads, 0.5 A + 0.5 I, product with layer 0 applied first
    a0 = cache.attention("encoder", 0).double().mean(1).numpy()
    a1 = cache.attention("encoder", 1).double().mean(1).numpy()
    eye = np.eye(L)
    want = (0.5 * a1 + 0.5 * eye) @ (0.5 * a0 + 0.5 * eye)
    np.testing.assert_allclose(R.numpy(), want, atol=1e-6)
    one = A.attention_rollout(cache, layers=[0], add_residual=False)
    np.testing.assert_allclose(one.numpy(), a0, atol=1e-6)
    assert torch.allclose(A.attention_rollout(cache, head_fusion="max").sum(-1), torch.ones(3, L), atol=1e-5)
    with pytest.raises(ValueError):
        A.attention_rollout(cache, head_fusion="median")
    maps = A.rollout_query_maps(R, cache.layout)
    assert maps.shape == (3, 16, 2, 4, 4)
    assert maps.sum((-3, -2, -1)).max() <= 1 + 1e-6
    norm = A.rollout_query_maps(R, cache.layout, renormalize=True)
    assert torch.allclose(norm.sum((-3, -2, -1)), torch.ones(3, 16), atol=1e-5)


def test_query_statistics_on_known_maps():
    maps = torch.zeros(2, 3, 2, 4, 4)  # (B, N, t, h, w)
    maps[:, 0, 1, 2, 3] = 0.5  # query 0: one cell (t=1, y=2, x=3), half its mass on patches
    maps[:, 1] = 1.0 / 32  # query 1: uniform
    maps[0, 2, 0, 0, 0] = maps[0, 2, 1, 0, 0] = 0.4  # query 2: two frames, same place
    maps[1, 2, 0, 3, 3] = maps[1, 2, 1, 3, 3] = 0.4
    mask = torch.zeros(8, 32, 32, dtype=torch.bool)
    mask[4:8, 16:24, 24:32] = True  # exactly the cell of query 0
    s = A.query_statistics(maps, mask=mask)
    assert s.shape == (2, 3)
    np.testing.assert_allclose(s.mass[:, 0], 0.5)
    np.testing.assert_allclose([s.centroid_t[0, 0], s.centroid_y[0, 0], s.centroid_x[0, 0]], [0.75, 0.625, 0.875])
    np.testing.assert_allclose([s.spread_t[0, 0], s.spread_y[0, 0], s.entropy[0, 0]], 0, atol=1e-12)
    assert s.peak[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose([s.entropy[0, 1], s.temporal_entropy[0, 1], s.spatial_entropy[0, 1]], 1.0)
    np.testing.assert_allclose([s.centroid_t[0, 1], s.centroid_y[0, 1], s.centroid_x[0, 1]], 0.5)
    np.testing.assert_allclose([s.temporal_entropy[0, 2], s.spatial_entropy[0, 2]], [1.0, 0.0], atol=1e-12)
    assert s.spread_t[0, 2] == pytest.approx(0.25)
    # mask: query 0 puts all its patch attention on the object; uniform gets the baseline
    assert s.mask_mass[0, 0] == pytest.approx(1.0)
    assert s.mask_baseline[0, 0] == pytest.approx(1 / 32)
    assert s.mask_lift[0, 0] == pytest.approx(32.0)
    assert s.mask_lift[0, 1] == pytest.approx(1.0)
    assert s.mask_correlation[0, 0] == pytest.approx(1.0)
    assert np.isnan(s.mask_correlation[0, 1])  # a constant map has no correlation
    summary = A.specialisation_summary(s)
    # query 2 moves between clips: consistency > 0; queries 0 and 1 stay put
    assert summary["centroid_consistency"] > 0
    assert summary["object_queries"] == pytest.approx(1 / 3)
    assert set(summary) >= {"temporal_entropy", "spatial_entropy", "temporal_coverage", "spatial_coverage",
                            "mask_lift", "mask_correlation", "patch_mass"}
    rows = s.table(clip=0)
    assert len(rows) == 3 and rows[0]["query"] == 0 and rows[0]["mass"] == pytest.approx(0.5)
    one = A.query_statistics(maps[0])  # (N, t, h, w) = a batch of one, no mask
    assert one.shape == (1, 3) and one.mask_lift is None
    assert math.isnan(A.specialisation_summary(one)["centroid_consistency"])


def test_upsample_pool_and_motion_mask():
    maps = torch.rand(5, 2, 4, 4)
    up = A.upsample_maps(maps, (8, 32, 32), "nearest")
    assert up.shape == (5, 8, 32, 32)
    assert torch.equal(up[:, 5, 17, 30], maps[:, 1, 2, 3])
    assert torch.allclose(up.mean((-3, -2, -1)), maps.mean((-3, -2, -1)), atol=1e-6)
    bil = A.upsample_maps(maps, (8, 32, 32), "bilinear")
    assert bil.shape == (5, 8, 32, 32)
    assert torch.equal(bil[:, 0], bil[:, 3])  # frames of one temporal patch share a map
    assert bil.min() >= maps.min() - 1e-6 and bil.max() <= maps.max() + 1e-6
    assert A.upsample_maps(maps, (8, 32, 32), "trilinear").shape == (5, 8, 32, 32)
    with pytest.raises(ValueError):
        A.upsample_maps(maps, (8, 32, 32), "cubic")
    # pooling a mask gives the fraction of each patch inside it
    mask = torch.zeros(8, 32, 32, dtype=torch.bool)
    mask[0:4, 0:4, 0:8] = True  # half of cell (0, 0, 0)
    g = A.pool_mask_to_grid(mask, (2, 4, 4))
    assert g[0, 0, 0] == pytest.approx(0.5) and g.sum() == pytest.approx(0.5)
    # motion mask: a square moving over a still background
    video = torch.full((3, 8, 32, 32), -0.5)
    for f in range(8):
        video[:, f, 10:14, 2 + 3 * f : 6 + 3 * f] = 0.8
    mm = A.motion_mask(video)
    assert mm.shape == (8, 32, 32)
    assert mm[3, 11, 12] and not mm[3, 25, 25]
    assert A.motion_mask(video[None]).shape == (1, 8, 32, 32)


# ------------------------------------------------------------------------------------------------
# token order
# ------------------------------------------------------------------------------------------------


def test_prior_nll_under_order(tok, data):
    idx = data.indices
    own = -tok.prior_log_likelihood(idx)
    torch.testing.assert_close(A.prior_nll_under_order(tok, idx), own)
    torch.testing.assert_close(A.prior_nll_under_order(tok, idx, torch.arange(16), batch_size=3), own)
    rev = A.prior_nll_under_order(tok, idx, torch.arange(15, -1, -1))
    torch.testing.assert_close(rev, -tok.prior_log_likelihood(idx.flip(1)))
    perms = torch.stack([torch.randperm(16) for _ in range(8)])  # one per clip
    per_clip = A.prior_nll_under_order(tok, idx, perms)
    torch.testing.assert_close(per_clip, -tok.prior_log_likelihood(idx.gather(1, perms)))
    assert not torch.allclose(rev, own)
    with pytest.raises(ValueError):
        A.prior_nll_under_order(tok, idx, torch.zeros(16, dtype=torch.long))


def test_token_order_nll(tok, data):
    r = A.token_order_nll(tok, data.indices, num_random=3, seed=5)
    assert r.positions.tolist() == list(range(1, 16))
    assert r.learned.shape == r.reverse.shape == (15,)
    assert r.random.shape == (3, 15) and r.permutations.shape == (3, 16)
    np.testing.assert_allclose(r.learned, (-tok.prior_log_likelihood(data.indices)).mean(0).numpy(), rtol=1e-6)
    assert r.learned_per_clip.shape == (8,)
    for p in r.permutations:
        assert sorted(p.tolist()) == list(range(16))
    again = A.token_order_nll(tok, data.indices, num_random=3, seed=5)
    np.testing.assert_array_equal(again.random, r.random)
    m = r.means()
    assert m["learned"] == pytest.approx(r.learned.mean())
    assert len(r.table()) == 15


def test_neutral_code(tok, data):
    idx = data.indices
    code = A.neutral_code(tok, idx)
    cb = tok.bottleneck.regularizer.normalized_codebook().double()
    z = cb[idx.reshape(-1)]  # every used latent
    dist = ((z[:, None, :] - cb[None]) ** 2).sum(-1).mean(0)  # (K,) mean squared distance to each code
    assert code == int(dist.argmin())
    counts = torch.bincount(idx.reshape(-1), minlength=64)
    assert A.neutral_code(tok, idx, method="most_frequent") == int(counts.argmax())
    assert 0 <= A.neutral_code(tok) < 64
    pos = A.positional_neutral_codes(tok, idx)
    assert pos.shape == (16,) and pos.dtype == torch.int64
    assert int(pos[0]) == int(((cb[idx[:, 0]].mean(0)) @ cb.t()).argmax())
    with pytest.raises(ValueError):
        A.neutral_code(tok, idx, method="median")


def test_keep_prefix():
    idx = torch.arange(32).reshape(2, 16)
    assert torch.equal(A.keep_prefix(idx, 16, 7), idx)
    assert torch.equal(A.keep_prefix(idx, 0, 7), torch.full((2, 16), 7))
    out = A.keep_prefix(idx, 3, torch.arange(100, 116))
    assert out[1].tolist() == [16, 17, 18] + list(range(103, 116))
    with pytest.raises(ValueError):
        A.keep_prefix(idx, 17, 0)


def test_prefix_curve_neutral_endpoints(tok, data):
    v, idx = data.videos, data.indices
    unused = int(torch.bincount(idx.reshape(-1), minlength=64).argmin())  # a code absent from the clips
    c = A.prefix_reconstruction_curve(tok, v, idx, ks=[0, 5, 16], fill=unused, batch_size=3)
    assert c.psnr.shape == (3, 8) and c.ks.tolist() == [0, 5, 16] and c.mode == "neutral"
    with torch.no_grad():
        full = psnr(tok.decode_indices(idx), v)
        const = tok.decode_indices(torch.full_like(idx, unused))
    np.testing.assert_array_equal(c.psnr[2], full.numpy())  # k = N: exactly the full reconstruction
    np.testing.assert_array_equal(c.psnr[0], psnr(const, v).numpy())  # k = 0: the constant-code clip
    assert not np.array_equal(c.psnr[0], c.psnr[2])
    assert c.mean.shape == (3,) and len(c.table()) == 3
    default = A.prefix_reconstruction_curve(tok, v[:2], idx[:2])
    assert default.ks.tolist() == A.default_ks(16) and default.ks[0] == 0 and default.ks[-1] == 16
    assert int(default.fill[0]) == A.neutral_code(tok, idx[:2])


def test_complete_prefix_greedy_matches_teacher_forcing(gen, data):
    labels = data.labels[:4] % 10
    prefix = data.indices[:4, :5]
    out = A.complete_prefix(gen, prefix, labels)
    assert out.shape == (4, 16) and torch.equal(out[:, :5], prefix)
    logits = gen(out, labels)  # (B, N, V): each generated token is the argmax given what precedes it
    assert torch.equal(out[:, 5:], logits.argmax(-1)[:, 5:])
    assert torch.equal(A.complete_prefix(gen, prefix[:, :0], labels), gen.sample(labels, greedy=True))
    assert torch.equal(A.complete_prefix(gen, data.indices[:4, :1], labels)[:, 1:],
                       gen(A.complete_prefix(gen, data.indices[:4, :1], labels), labels).argmax(-1)[:, 1:])
    assert torch.equal(A.complete_prefix(gen, data.indices[:4], labels), data.indices[:4])
    # CFG from scratch equals the model's own sampler
    assert torch.equal(A.complete_prefix(gen, prefix[:, :0], labels, cfg_scale=2.0),
                       gen.sample(labels, cfg_scale=2.0, greedy=True))
    # seeded sampling is reproducible
    s1 = A.complete_prefix(gen, prefix, labels, greedy=False, top_k=8, generator=torch.Generator().manual_seed(3))
    s2 = A.complete_prefix(gen, prefix, labels, greedy=False, top_k=8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and torch.equal(s1[:, :5], prefix)


def test_prefix_curve_generator(tok, gen, data):
    v, idx, labels = data.videos[:3], data.indices[:3], data.labels[:3] % 10
    c = A.prefix_reconstruction_curve(tok, v, idx, ks=[0, 8, 16], mode="generator", gen=gen, cond=labels)
    assert c.psnr.shape == (3, 3) and c.mode == "generator"
    with torch.no_grad():
        np.testing.assert_array_equal(c.psnr[2], psnr(tok.decode_indices(idx), v).numpy())
        done = A.complete_prefix(gen, idx[:, :8], labels)
        np.testing.assert_array_equal(c.psnr[1], psnr(tok.decode_indices(done), v).numpy())
    s = A.prefix_reconstruction_curve(tok, v, idx, ks=[4], mode="generator", gen=gen, cond=labels,
                                      greedy=False, num_samples=2, seed=1)
    assert s.psnr.shape == (1, 3) and np.isfinite(s.psnr).all()
    with pytest.raises(ValueError, match="cond"):
        A.prefix_reconstruction_curve(tok, v, idx, mode="generator", gen=gen)
    with pytest.raises(ValueError):
        A.prefix_reconstruction_curve(tok, v, idx, mode="oracle")


def test_position_importance(tok, data):
    v, idx = data.videos[:2], data.indices[:2]
    fill = int(torch.bincount(data.indices.reshape(-1), minlength=64).argmin())
    r = A.position_importance(tok, v, idx, fill=fill, batch_size=5)
    assert r.ablated.shape == (16, 2) and r.baseline.shape == (2,) and r.mean_drop.shape == (16,)
    with torch.no_grad():
        np.testing.assert_array_equal(r.baseline, psnr(tok.decode_indices(idx), v).numpy())
        ab = idx[1:2].clone()
        ab[0, 7] = fill
        assert r.ablated[7, 1] == pytest.approx(float(psnr(tok.decode_indices(ab), v[1:2])[0]), abs=1e-5)
    np.testing.assert_allclose(r.drop, r.baseline[None] - r.ablated)
    sub = A.position_importance(tok, v, idx, fill=fill, positions=[3, 7])
    np.testing.assert_allclose(sub.ablated, r.ablated[[3, 7]], atol=1e-5)
    assert len(sub.table()) == 2


# ------------------------------------------------------------------------------------------------
# likelihood
# ------------------------------------------------------------------------------------------------


def test_surprisal(tok, gen, data):
    s = A.prior_surprisal(tok, data.indices, batch_size=3)
    torch.testing.assert_close(s, -tok.prior_log_likelihood(data.indices))
    assert s.shape == (8, 15) and (s > 0).all()
    labels = data.labels % 10
    g = A.generator_surprisal(gen, data.indices, labels, batch_size=5)
    torch.testing.assert_close(g, -gen.token_log_likelihood(data.indices, labels))
    assert A.to_bits(math.log(2)) == pytest.approx(1.0)
    torch.testing.assert_close(A.to_bits(s), s / math.log(2))
    pp = A.per_position_mean(s)
    np.testing.assert_allclose(pp["mean"], s.mean(0).numpy(), rtol=1e-6)
    assert pp["std"].shape == (15,) and pp["sem"].shape == (15,)


def test_per_class_table():
    rows = A.per_class_table(np.array([1.0, 2.0, 3.0, 5.0]), np.array([2, 0, 2, 0]), ["a", "b", "c"])
    assert [r["label"] for r in rows] == [0, 2]
    assert rows[0] == {"label": 0, "name": "a", "n": 2, "mean": 3.5, "std": pytest.approx(math.sqrt(4.5))}
    assert rows[1]["name"] == "c" and rows[1]["mean"] == 2.0
    two_d = A.per_class_table(np.array([[1.0, 3.0], [2.0, 2.0]]), [5, 5])
    assert two_d == [{"label": 5, "name": "5", "n": 2, "mean": 2.0, "std": 0.0}]


def test_rank_correlations():
    assert A.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    assert A.spearman(x, np.exp(3 * x)) == pytest.approx(1.0)  # monotone transform
    assert A.spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert A.pearson(x, np.exp(3 * x)) < 0.99  # not linear
    assert A.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    y = x + rng.normal(size=50)
    assert A.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert math.isnan(A.pearson([1, 1, 1], [1, 2, 3]))
    c = A.correlation([1.0, 2.0, np.nan, 4.0], [2.0, 4.0, 5.0, 8.0])
    assert c["n"] == 3 and c["pearson"] == pytest.approx(1.0) and c["spearman"] == pytest.approx(1.0)


def test_extremes_and_report(tok, gen, data):
    e = A.extreme_clips(np.array([3.0, 1.0, 2.0, 5.0, 1.0]), k=2)
    assert e.most_likely.tolist() == [1, 4] and e.most_likely_nll.tolist() == [1.0, 1.0]
    assert e.least_likely.tolist() == [3, 0] and len(e.table()) == 4
    rep = A.score_dataset(tok, data, gen, cond=data.labels % 10)
    assert rep.prior.shape == (8, 15) and rep.generator.shape == (8, 16)
    np.testing.assert_allclose(rep.prior_clip, rep.prior.mean(1))
    assert set(rep.correlations) == {"prior", "generator"}
    assert rep.correlations["prior"]["spearman"] == pytest.approx(A.spearman(rep.prior_clip, data.mse))
    assert A.score_dataset(tok, data).generator is None


# ------------------------------------------------------------------------------------------------
# latent space
# ------------------------------------------------------------------------------------------------


def test_codebook_usage_stats(data):
    s = A.codebook_usage_stats(data.indices, 64)
    counts = np.bincount(data.indices.reshape(-1).numpy(), minlength=64)
    np.testing.assert_array_equal(s["counts"], counts)
    np.testing.assert_array_equal(s["dead_codes"], np.flatnonzero(counts == 0))
    assert s["num_dead_codes"] == int((counts == 0).sum())
    p = counts[counts > 0] / counts.sum()
    assert s["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert s["usage"] == pytest.approx((counts > 0).mean())


def test_embed_2d_pca():
    rng = np.random.default_rng(0)
    t = rng.normal(size=30)
    line = np.stack([t, 2 * t, -t, np.zeros(30)], 1) + 3.0  # points on a line
    y = A.embed_2d(line, "pca")
    assert y.shape == (30, 2)
    np.testing.assert_allclose(y[:, 1], 0, atol=1e-9)
    assert abs(A.pearson(y[:, 0], t)) == pytest.approx(1.0)
    np.testing.assert_array_equal(A.embed_2d(line, "pca"), y)
    assert A.embed_2d(rng.normal(size=(5, 1)), "pca").shape == (5, 2)
    with pytest.raises(ValueError):
        A.embed_2d(line, "tsne")
    with pytest.raises(ValueError, match="at least 4"):
        A.embed_2d(line[:3], "umap")


@pytest.mark.slow
def test_embed_2d_umap_tiny():
    pts = np.random.default_rng(0).normal(size=(24, 16))
    y = A.embed_2d(pts, "umap", n_neighbors=5, min_dist=0.1, seed=0)
    assert y.shape == (24, 2) and np.isfinite(y).all() and y.std(0).min() > 0


def test_clip_and_token_embeddings(tok, data):
    assert A.clip_embeddings(data.latents).shape == (8, 16)
    assert A.clip_embeddings(data.latents, "concat").shape == (8, 256)
    h = A.clip_embeddings(data.latents, "histogram", indices=data.indices, codebook_size=64)
    assert h.shape == (8, 64) and np.allclose(h.sum(1), 1)
    tp = A.token_points(data.latents, data.labels, data.indices)
    assert tp["points"].shape == (128, 16)
    assert tp["position"][:18].tolist() == list(range(16)) + [0, 1]
    assert tp["label"][16] == 1 and tp["clip"][17] == 1 and tp["code"][17] == int(data.indices[1, 1])
    cm = A.codebook_map(tok, data.indices, method="pca")
    assert cm["coords"].shape == (64, 2) and cm["count"].sum() == 128
    used = A.codebook_map(tok, data.indices, method="pca", only_used=True)
    assert (used["count"] > 0).all() and len(used["code"]) == len(data.indices.unique())
    assert A.codebook_points(tok).shape == (64, 16)
    clips = A.clip_map(data, method="pca")
    assert clips["coords"].shape == (8, 2) and clips["motion"].shape == (8,) and np.isfinite(clips["psnr"]).all()


def test_motion_energy_and_neighbours():
    still = torch.zeros(2, 3, 4, 8, 8)
    still[1, :, 2:] = 1.0
    e = A.motion_energy(still)
    assert e[0] == 0 and e[1] > 0
    idx = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 5], [9, 9, 9, 9], [1, 2, 0, 0]])
    d = A.hamming_distances(idx)
    assert d.tolist()[0] == [0, 1, 4, 2] and (d == d.T).all()
    nn_rows = A.nearest_clips(0, indices=idx, k=2)
    assert [r["index"] for r in nn_rows] == [1, 3] and nn_rows[0]["fraction_differing"] == 0.25
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [0.0, 1.0]])
    cd = A.cosine_distances(emb)
    assert cd[0, 2] == pytest.approx(2.0) and cd[0, 3] == pytest.approx(1.0) and cd[0, 0] == pytest.approx(0.0)
    assert [r["index"] for r in A.nearest_clips(0, embeddings=emb, metric="cosine", k=3)] == [1, 3, 2]
    with pytest.raises(ValueError):
        A.nearest_clips(0, indices=idx, metric="euclid")
