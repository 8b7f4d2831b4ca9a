"""Invariants of LARPGenerator: sampling controls, CFG, KV cache, frame prediction, likelihoods."""

from __future__ import annotations

import pytest
import torch
from conftest import max_abs
from conftest import small_generator as make

from larp_lab import LARPGenerator
from larp_lab.config import GENERATOR_PRESETS
from larp_lab.models.generator import sample_from_logits, top_k_top_p_filter


@pytest.fixture(scope="module")
def gen():
    return make()


def test_forward_shapes_and_prefixes(gen):
    z = torch.randint(0, 64, (3, 16))
    labels = torch.tensor([0, 1, 4])
    full = gen(z, labels)
    assert full.shape == (3, 16, 64) and full.dtype == torch.float32
    # a prefix gives the same logits for its positions (causality)
    assert max_abs(gen(z[:, :7], labels), full[:, :7]) <= 1e-5
    with pytest.raises(ValueError):
        gen(torch.zeros(1, 17, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="class labels"):
        gen(z, torch.tensor([0, 1, 6]))


def test_token_log_likelihood(gen):
    z = torch.randint(0, 64, (2, 16))
    ll = gen.token_log_likelihood(z, torch.tensor([1, 2]))
    ref = gen(z, torch.tensor([1, 2])).log_softmax(-1).gather(-1, z[..., None]).squeeze(-1)
    assert ll.shape == (2, 16) and torch.equal(ll, ref) and torch.all(ll <= 0)
    assert max_abs(-ll.mean(), gen.loss(z, torch.tensor([1, 2]))) <= 1e-5


@pytest.mark.parametrize("top_k,top_p", [(1, 1.0), (5, 1.0), (0, 0.5), (0, 0.9), (8, 0.7)])
def test_top_k_top_p_never_sample_outside_the_kept_set(top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 100, generator=g) * 3
    kept = ~torch.isinf(top_k_top_p_filter(logits, top_k, top_p))
    if top_k:
        assert torch.all(kept.sum(-1) <= top_k + 0)  # no ties in random floats
    for _ in range(20):
        tok = sample_from_logits(logits, top_k=top_k, top_p=top_p, generator=g)
        assert torch.all(kept.gather(1, tok))
    # top-p keeps the smallest prefix whose mass exceeds p
    if top_p < 1 and not top_k:
        probs = logits.softmax(-1)
        mass = (probs * kept).sum(-1)
        assert torch.all(mass >= top_p - 1e-6)
        dropped_largest = (probs * kept).masked_fill(~kept, 2).min(-1).values
        assert torch.all(mass - dropped_largest < top_p + 1e-6)


def test_cfg_scale_one_equals_conditional(gen):
    labels = torch.tensor([1, 3])
    a = gen.sample(labels, cfg_scale=1.0, generator=torch.Generator().manual_seed(7))
    b = gen.sample(labels, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    # and the mixed logits at scale 1 are the conditional ones
    z = torch.randint(0, 64, (2, 16))
    cond, null = gen(z, labels), gen(z, gen.null_condition(2))
    assert torch.equal(null + (cond - null) * 1.0, cond) or max_abs(null + (cond - null), cond) <= 1e-6


@pytest.mark.parametrize("kw", [dict(), dict(cfg_scale=2.0), dict(cfg_scale=3.0, cfg_interval=4)])
def test_kv_cache_greedy_equals_no_cache(gen, kw):
    labels = torch.tensor([0, 2, 4])
    a = gen.sample(labels, greedy=True, **kw)
    b = gen.sample(labels, greedy=True, use_cache=False, **kw)
    assert torch.equal(a, b)


def test_kv_cache_sampling_equals_no_cache_with_same_seed(gen):
    labels = torch.tensor([0, 2])
    a = gen.sample(labels, cfg_scale=1.5, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = gen.sample(labels, cfg_scale=1.5, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(a, b)


def test_seeded_generator_is_reproducible_and_independent_of_global_rng(gen):
    labels = torch.tensor([1, 1, 1])
    a = gen.sample(labels, generator=torch.Generator().manual_seed(11))
    torch.manual_seed(999)
    b = gen.sample(labels, generator=torch.Generator().manual_seed(11))
    c = gen.sample(labels, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.int64 and a.shape == (3, 16)
    assert int(a.min()) >= 0 and int(a.max()) < 64


def test_cfg_interval_switches_guidance_off(gen):
    labels = torch.tensor([0, 1])
    guided = gen.sample(labels, cfg_scale=4.0, greedy=True)
    plain = gen.sample(labels, greedy=True)
    early_off = gen.sample(labels, cfg_scale=4.0, greedy=True, cfg_interval=0)
    # with CFG on only at the prefill and the first decode step the first two tokens are guided
    assert torch.equal(early_off[:, :2], guided[:, :2])
    assert not torch.equal(guided, plain)


def test_sampling_arguments_are_checked(gen):
    with pytest.raises(ValueError):
        gen.sample(torch.tensor([0]), length=17)
    with pytest.raises(ValueError):
        gen.sample(torch.tensor([0]), temperature=float("nan"))
    with pytest.raises(TypeError):
        gen.sample(torch.tensor([0.5]))
    assert gen.sample(3, length=5).shape == (1, 5)
    assert torch.equal(gen.sample([1, 2], temperature=0), gen.sample([1, 2], greedy=True))


def test_grouped_query_attention_cache():
    g = make(n_head=4, n_kv_head=2)
    assert g.layers[0].attention.wqkv.weight.shape == ((4 + 2 * 2) * 16, 64)
    labels = torch.tensor([1, 2])
    assert torch.equal(g.sample(labels, greedy=True), g.sample(labels, greedy=True, use_cache=False))


def test_fixed_position_table():
    g = make(use_fixed_pe=True)
    assert "abs_pe" in dict(g.named_buffers())
    labels = torch.tensor([1])
    assert torch.equal(g.sample(labels, greedy=True), g.sample(labels, greedy=True, use_cache=False))


def test_frame_prediction_mode():
    g = make(frame_prediction=True, cls_token_num=17)
    assert g.cls_embedding is None and g.tok_embeddings.num_embeddings == 65
    cond = torch.randint(0, 64, (2, 16))
    full = g.prepare_condition(cond)
    assert full.shape == (2, 17) and torch.all(full[:, -1] == 64)
    z = torch.randint(0, 64, (2, 16))
    assert torch.equal(g(z, cond), g(z, full))
    a = g.sample(cond, greedy=True)
    assert torch.equal(a, g.sample(cond, greedy=True, use_cache=False))
    with pytest.raises(ValueError, match="guidance"):
        g.sample(cond, cfg_scale=2.0)
    with pytest.raises(ValueError):
        g.prepare_condition(torch.randint(0, 64, (2, 15)))
    with pytest.raises(ValueError, match="lie in"):
        g.prepare_condition(torch.full((1, 16), 64))


def test_label_dropout_only_in_training(gen):
    emb = gen.cls_embedding
    labels = torch.arange(5).repeat(200)
    emb.train()
    try:
        torch.manual_seed(0)
        out = emb(labels)
        null = emb.embedding_table.weight[5]
        dropped = (out[:, 0] == null).all(-1).float().mean().item()
        assert 0.05 < dropped < 0.15  # class_dropout_prob = 0.1
    finally:
        emb.eval()
    assert not (emb(labels)[:, 0] == emb.embedding_table.weight[5]).all(-1).any()


def test_presets_build_on_meta():
    for name, mk in GENERATOR_PRESETS.items():
        cfg = mk()
        with torch.device("meta"):
            m = LARPGenerator(cfg)
        assert m.num_parameters() == cfg.num_parameters_estimate(), name


def test_training_step_reduces_loss():
    g = make()
    g.train()
    z = torch.randint(0, 64, (4, 16))
    labels = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.AdamW(g.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = g.loss(z, labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    g.eval()
    assert g.loss(z, labels).item() < 0.5 * first


# ------------------------------------------------------------------------------------------------
# sampling after a fixed prefix
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [dict(), dict(cfg_scale=2.0), dict(cfg_scale=3.0, cfg_interval=4)])
def test_greedy_prefix_continues_the_greedy_sample(gen, kw):
    labels = torch.tensor([0, 2, 4])
    full = gen.sample(labels, greedy=True, **kw)
    # k = 5, 6 straddle the step where cfg_interval=4 switches guidance off
    for k, use_cache in ((0, True), (1, True), (3, True), (5, True), (6, True), (15, True), (16, True),
                         (5, False), (6, False)):
        out = gen.sample(labels, greedy=True, prefix=full[:, :k], use_cache=use_cache, **kw)
        assert out.shape == (3, 16) and out.dtype == torch.int64
        assert torch.equal(out, full), (k, use_cache)


def test_prefix_cached_equals_uncached():
    g = make(n_head=4, n_kv_head=2)  # grouped KV heads as well
    labels = torch.tensor([1, 3])
    prefix = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(4))
    for kw in (dict(greedy=True), dict(cfg_scale=1.5, top_k=10, top_p=0.9), dict(cfg_scale=2.0, cfg_interval=6)):
        a = g.sample(labels, prefix=prefix, generator=torch.Generator().manual_seed(3), **kw)
        b = g.sample(labels, prefix=prefix, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
        assert torch.equal(a, b) and torch.equal(a[:, :5], prefix)
    # a prefix the model would not have chosen really steers what follows
    free = g.sample(labels, greedy=True)
    forced = free[:, :5].flip(0)
    steered = g.sample(labels, greedy=True, prefix=forced)
    assert torch.equal(steered[:, :5], forced) and not torch.equal(steered[:, 5:], free[:, 5:])
    # every continued token is the argmax given what precedes it
    assert torch.equal(steered[:, 5:], g(steered, labels).argmax(-1)[:, 5:])


def test_prefix_with_length_and_frame_prediction():
    g = make()
    labels = torch.tensor([2])
    assert torch.equal(g.sample(labels, greedy=True, length=8, prefix=torch.tensor([[7, 8]]))[:, :2],
                       torch.tensor([[7, 8]]))
    fp = make(frame_prediction=True, cls_token_num=17)
    cond = torch.randint(0, 64, (2, 16))
    full = fp.sample(cond, greedy=True)
    assert torch.equal(fp.sample(cond, greedy=True, prefix=full[:, :9]), full)
    assert torch.equal(fp.sample(cond, greedy=True, prefix=full[:, :9], use_cache=False), full)


def test_prefix_arguments_are_checked(gen):
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"k <= 8"):
        gen.sample(labels, length=8, prefix=torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="2 conditions for 3 prefixes"):
        gen.sample(labels, prefix=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        gen.sample(labels, prefix=torch.full((2, 2), 64))
    with pytest.raises(TypeError):
        gen.sample(labels, prefix=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(B, k\)"):
        gen.sample(labels, prefix=torch.zeros(4, dtype=torch.long))
