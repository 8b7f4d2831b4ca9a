"""Token surgery and patching (larp_lab.analysis.surgery / .patching) on micro random models:
exact identities (no edit = no change, a full swap = clip B, causality of generator patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import larp_lab.analysis as A
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.data.digits import MovingDigits
from larp_lab.evaluation.classifier import ClassifierConfig, VideoClassifier
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
def clips(tok):
    c = tok.config
    video, labels = MovingDigits(12, frames=c.frame_num, size=c.input_size, seed=5).render(range(12))
    return torch.from_numpy(video).float() / 127.5 - 1.0, torch.as_tensor(labels)


@pytest.fixture(scope="module")
def ids(tok, clips):
    return tok.encode(clips[0]).indices


# ------------------------------------------------------------------------------------------------
# edits
# ------------------------------------------------------------------------------------------------


def test_edit_tokens_sets_codes_and_refuses_bad_ones(ids):
    out = A.edit_tokens(ids[0], {2: 7, 5: 0}, num_codes=64)
    assert out.shape == (1, ids.shape[1]) and out[0, 2] == 7 and out[0, 5] == 0
    keep = [i for i in range(ids.shape[1]) if i not in (2, 5)]
    assert torch.equal(out[0, keep], ids[0, keep])
    assert torch.equal(A.edit_tokens(ids, [(1, 3)])[:, 1], torch.full((len(ids),), 3))
    with pytest.raises(ValueError, match="position 99"):
        A.edit_tokens(ids[0], {99: 1})
    with pytest.raises(ValueError, match="code 64"):
        A.edit_tokens(ids[0], {0: 64}, num_codes=64)


def test_decode_edit_no_change_is_zero_and_one_change_is_seen(tok, ids):
    same = A.decode_edit(tok, ids[0], ids[0])
    T = tok.config.frame_num
    assert same.changed == [] and same.energy.shape == (T,) and same.total_energy == 0.0
    assert float(same.difference.abs().max()) == 0.0
    assert torch.allclose(same.original, tok.decode_indices(ids[:1])[0].clamp(-1, 1), atol=1e-6)
    p, code = 3, (int(ids[0, 3]) + 1) % tok.config.codebook_size
    e = A.decode_edit(tok, ids[0], A.edit_tokens(ids[0], {p: code}))
    assert e.changed == [p] and e.edited_indices[p] == code and e.total_energy > 0
    direct = ((e.edited - e.original) ** 2).mean(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(e.energy, direct, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="one clip"):
        A.decode_edit(tok, ids[:2], ids[:2])
    with pytest.raises(ValueError, match="token ids must lie"):
        A.decode_edit(tok, ids[0], A.edit_tokens(ids[0], {0: 10_000}))


def test_prior_alternatives_are_the_priors_own_probabilities(tok, ids):
    K, N = tok.config.codebook_size, tok.config.num_tokens
    codes, probs, kind = A.prior_alternatives(tok, ids[0], 4, k=K)
    assert kind == "prior" and len(codes) == K and np.all(np.diff(probs) <= 1e-7)
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    # the probability it gives the clip's own code is the prior's log-likelihood of that token
    ll = tok.prior_log_likelihood(ids[:1])[0, 3].exp().item()  # (N-1,): row i-1 scores token i
    own = float(probs[list(codes).index(int(ids[0, 4]))])
    assert own == pytest.approx(ll, rel=1e-4)
    c0, sims, kind0 = A.prior_alternatives(tok, ids[0], 0, k=5)
    assert kind0 == "nearest" and int(ids[0, 0]) not in c0 and np.all(np.diff(sims) <= 1e-7)
    with pytest.raises(ValueError, match="outside"):
        A.prior_alternatives(tok, ids[0], N)


# ------------------------------------------------------------------------------------------------
# influence maps
# ------------------------------------------------------------------------------------------------


def test_token_influence_matches_a_direct_computation(tok, ids):
    inf = A.token_influence(tok, ids[0], num_codes=3, seed=1, positions=[0, 5], batch_size=4)
    N, (T, H, W) = tok.config.num_tokens, (tok.config.frame_num, tok.config.input_size, tok.config.input_size)
    assert inf.maps.shape == (N, T, H, W) and inf.codes.shape == (N, 3)
    assert not set(inf.codes.flatten().tolist()) & set(ids[0].tolist())  # "random" = codes the clip does not use
    others = [p for p in range(N) if p not in (0, 5)]
    assert float(inf.maps[others].abs().max()) == 0.0
    base = tok.decode_indices(ids[:1]).clamp(-1, 1)[0]
    want = torch.zeros(T, H, W)
    for c in inf.codes[5]:
        want += (tok.decode_indices(A.edit_tokens(ids[0], {5: int(c)})).clamp(-1, 1)[0] - base).abs().mean(0) / 3
    assert torch.allclose(inf.maps[5], want, atol=1e-5)
    share = inf.pixel_control(1, 3, 4, radius=1)
    assert share.shape == (N,) and share.sum() == pytest.approx(1.0, abs=1e-5) and share[others].max() == 0
    assert inf.strength()[5] == pytest.approx(float(want.mean()), rel=1e-4)
    with pytest.raises(ValueError, match="outside the clip"):
        inf.pixel_control(T, 0, 0)


def _fake(maps):
    maps = torch.as_tensor(maps, dtype=torch.float32)
    return A.InfluenceMap(maps=maps, codes=torch.zeros(maps.shape[0], 1, dtype=torch.long),
                          reconstruction=torch.zeros(3, *maps.shape[1:]))


def test_concentration_consistency_and_centroids_on_known_maps():
    T, H, W = 2, 8, 8
    patch = torch.zeros(4, T, H, W)  # token n acts only on block n of a 2x2 grid: a patch tokenizer
    for n, (y, x) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        patch[n, :, y : y + 4, x : x + 4] = 1.0
    m = _fake(patch)
    np.testing.assert_allclose(m.concentration(cells=2), 1.0)
    np.testing.assert_allclose(_fake(torch.ones(4, T, H, W)).concentration(cells=2), 0.25)
    np.testing.assert_allclose(m.centroids()[3], [5.5, 5.5])
    np.testing.assert_allclose(m.temporal(), 0.5)
    # the same regions in every clip: consistency 1; regions that move from clip to clip: lower
    np.testing.assert_allclose(A.influence_consistency([m, _fake(patch * 2.0)]), 1.0, atol=1e-6)
    moved = _fake(patch[[1, 0, 3, 2]])
    assert A.influence_consistency([m, moved]).max() < 0
    with pytest.raises(ValueError, match="two clips"):
        A.influence_consistency([m])


# ------------------------------------------------------------------------------------------------
# patching between clips
# ------------------------------------------------------------------------------------------------


def test_swap_tokens_and_query_patching_identities(tok, clips, ids):
    N = tok.config.num_tokens
    assert torch.equal(A.swap_tokens(ids[:2], ids[2:4], []), ids[:2])
    assert torch.equal(A.swap_tokens(ids[:2], ids[2:4], range(N)), ids[2:4])
    assert torch.equal(A.swap_tokens(ids[:2], ids[2:4], [1])[:, 1], ids[2:4, 1])
    va, vb = clips[0][:2], clips[0][2:4]
    none_ids, _ = A.patch_query_outputs(tok, va, vb, layer=-1, positions=[])
    assert torch.equal(none_ids, ids[:2])
    # every query row of the last block from B: the codes are B's
    all_ids, rec = A.patch_query_outputs(tok, va, vb, layer=-1, positions=range(N))
    assert torch.equal(all_ids, ids[2:4]) and rec.shape == va.shape
    # one query of the first block: that position changes, and (through attention) possibly others
    one_ids, _ = A.patch_query_outputs(tok, va, vb, layer=0, positions=[2])
    assert one_ids.shape == (2, N)
    with pytest.raises(ValueError, match="outside the encoder"):
        A.patch_query_outputs(tok, va, vb, layer=99, positions=[0])


def test_clip_properties_of_a_known_moving_square():
    T, S = 4, 16
    v = -torch.ones(1, 3, T, S, S)
    for t in range(T):
        v[0, :, t, 4 : 6, 2 + t : 4 + t] = torch.tensor([1.0, 0.0, -0.5])[:, None, None]
    p = A.clip_properties(v)
    np.testing.assert_allclose(p.centre[0, :, 0], 4.5, atol=1e-5)
    np.testing.assert_allclose(p.centre[0, :, 1], [2.5, 3.5, 4.5, 5.5], atol=1e-5)
    np.testing.assert_allclose(p.velocity[0], [0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(p.colour[0], [1.0, 0.0, -0.5], atol=1e-5)
    assert p.area[0] == 4 and p.digit is None


def test_patching_sweep_all_positions_is_clip_b_and_none_is_clip_a(tok, clips):
    torch.manual_seed(0)
    c = tok.config
    clf = VideoClassifier(ClassifierConfig(num_classes=10, frames=c.frame_num, size=c.input_size, width=8)).eval()
    video, labels = clips
    N = tok.config.num_tokens
    sw = A.patching_sweep(tok, video, clf, labels, groups=[[], list(range(N)), [0, 1]], num_pairs=6, seed=0,
                         min_gap=1e-4)  # random models: every reconstruction looks alike
    assert sw.pairs.shape == (6, 2) and all(labels[a] != labels[b] for a, b in sw.pairs)
    m = sw.means()
    for k in ("position", "colour"):
        assert m[k][0] == pytest.approx(0.0, abs=1e-5) and m[k][1] == pytest.approx(1.0, abs=1e-4), k
    ident = sw.identity[1][~np.isnan(sw.identity[1])]
    np.testing.assert_allclose(ident, 1.0, atol=1e-4)
    rec_b = tok.decode_indices(tok.encode(video[sw.pairs[:, 1]]).indices).clamp(-1, 1)
    assert sw.flipped.shape == (3, 6)
    assert np.array_equal(sw.flipped[1], (clf(rec_b).argmax(-1) == labels[sw.pairs[:, 1]]).numpy())
    assert sw.top("position", k=1) == [1] and len(sw.table()) == 3
    # the first group changes nothing: the patched clips are A's reconstructions exactly
    assert np.nanmax(np.abs(sw.motion[0])) < 1e-5
    q = A.patching_sweep(tok, video, None, None, groups=[list(range(N))], num_pairs=4, method="queries",
                          layer=-1, min_gap=1e-4)
    assert q.method == "queries" and q.means()["position"][0] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="method"):
        A.patching_sweep(tok, video, method="pixels")


# ------------------------------------------------------------------------------------------------
# the generator
# ------------------------------------------------------------------------------------------------


def test_generator_patches_are_causal(gen):
    N = gen.config.num_tokens
    x = gen.sample(torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0))
    same = A.generator_patch_effect(gen, x, torch.tensor([0, 1]), class_from=torch.tensor([0, 1]))
    assert same.kl.shape == (2, N) and same.kl.max() < 1e-6 and not same.changed.any()
    other = A.generator_patch_effect(gen, x, torch.tensor([0, 1]), class_from=torch.tensor([2, 3]))
    assert other.kl[:, 0].min() > 0 and other.first_affected() == 0 and other.site == "class embedding"
    y = gen.sample(torch.tensor([0, 1]), generator=torch.Generator().manual_seed(9))
    p = 5
    res = A.generator_patch_effect(gen, x, torch.tensor([0, 1]), layer=0, position=p, source_tokens=y)
    assert res.kl[:, : p + 1].max() < 1e-6  # predictions of tokens 0..p never read the row of token p
    assert res.kl[:, p + 1].min() > 0 and res.first_affected() == p + 1
    none = A.generator_patch_effect(gen, x, torch.tensor([0, 1]), layer=-1, position=p, source_tokens=x)
    assert none.kl.max() < 1e-6
    with pytest.raises(ValueError, match="either"):
        A.generator_patch_effect(gen, x, torch.tensor([0, 1]), class_from=torch.tensor([2, 3]), layer=0, position=1)
