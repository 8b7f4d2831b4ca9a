"""Hooks that read and write (TransformerLens style) on LARPTokenizer and LARPGenerator.

Hooks live in a context variable: per thread, gone on exit, never attached to the modules.
"""

from __future__ import annotations

import threading

import pytest
import torch

from larp_lab import GeneratorConfig, LARPGenerator, LARPTokenizer, TokenizerConfig
from larp_lab.config import PRIOR_PRESETS
from larp_lab.models.capture import UnknownHookPointError
from larp_lab.models.layers import active_hooks, plain_attention


def _perturb(model, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tok():
    cfg = TokenizerConfig(
        input_size=32, frame_num=8, num_tokens=16, encoder_hidden_size=64, encoder_depth=2, encoder_num_heads=4,
        decoder_hidden_size=64, decoder_depth=2, decoder_num_heads=4, codebook_size=64,
        prior=PRIOR_PRESETS["gptc-micro"](),
    )
    torch.manual_seed(0)
    return _perturb(LARPTokenizer(cfg), 0, 0.05)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    cfg = GeneratorConfig(dim=64, n_layer=2, n_head=4, vocab_size=64, num_tokens=16, num_classes=5)
    return _perturb(LARPGenerator(cfg), 1, 0.3)


def clip(b=2, seed=1):
    return torch.rand(b, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tokens(b=3, seed=2):
    return torch.randint(0, 64, (b, 16), generator=torch.Generator().manual_seed(seed))


LABELS = torch.tensor([0, 2, 4])


# ------------------------------------------------------------------------------------------------
# identity and read-only hooks change nothing
# ------------------------------------------------------------------------------------------------


def test_identity_hooks_change_nothing_bit_for_bit(tok, gen):
    x, z = clip(), tokens()
    every = lambda name: True  # noqa: E731
    seen = []
    with torch.no_grad():
        rec, logits = tok.reconstruct(x), gen(z, LABELS)
        with tok.hooks([(every, lambda t, name: t)]), gen.hooks([(every, lambda t, name: seen.append(name))]):
            rec_id, logits_id = tok.reconstruct(x), gen(z, LABELS)
        # copies of every activation (attention probabilities excepted: new probabilities are used as given)
        copy = [(lambda n: not n.endswith("hook_attn"), lambda t, name: t.clone())]
        rec_copy = tok.run_with_hooks(x, fwd_hooks=copy)
        logits_copy = gen.run_with_hooks(z, LABELS, fwd_hooks=copy)
    assert torch.equal(rec, rec_id) and torch.equal(rec, rec_copy)
    assert torch.equal(logits, logits_id) and torch.equal(logits, logits_copy)
    assert set(seen) == set(gen.hook_point_names())  # every generator hook point fired


def test_hook_points_know_their_names(tok, gen):
    for model in (tok, gen):
        for name, m in model.named_modules():
            if type(m).__name__ == "HookPoint":
                assert m.name == name
    names = tok.hook_point_names()
    assert {"hook_decoder_in", "decoder.blocks.1.attn.hook_head_out", "encoder.blocks.0.hook_out",
            "prior_model.blocks.0.attn.hook_head_out", "prior_model.blocks.1.hook_out"} <= set(names)
    assert {"hook_embed", "hook_logits", "layers.1.hook_out", "layers.0.attention.hook_head_out",
            "layers.0.attention.hook_attn"} <= set(gen.hook_point_names())


# ------------------------------------------------------------------------------------------------
# interventions
# ------------------------------------------------------------------------------------------------


def zero_token(i):
    def fn(t, name):  # t: (B, N, D)
        t = t.clone()
        t[:, i] = 0
        return t

    return fn


def test_zeroing_one_token_embedding_changes_the_decoded_clip(tok):
    ids = tok.encode(clip()).indices
    with torch.no_grad():
        base = tok.decode_indices(ids)
        with tok.hooks([("hook_decoder_in", zero_token(3))]):
            hooked = tok.decode_indices(ids)
        after = tok.decode_indices(ids)
        # the same as decoding embeddings with row 3 zeroed by hand
        emb = tok.bottleneck.out_linear(tok.bottleneck.regularizer.lookup(ids))
        emb[:, 3] = 0
        manual = tok.decode(emb)
    assert not torch.equal(base, hooked)
    assert torch.equal(base, after)  # only while the hook is active
    torch.testing.assert_close(hooked, manual, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_name", ["tok", "gen"])
def test_head_ablation_equals_zeroing_its_output_projection_columns(model_name, tok, gen):
    """Zeroing head h's output (B, H, L, hd) is the same as zeroing its hd input columns of the
    output projection: check the hook against a model edited by hand."""
    import copy

    h = 2
    if model_name == "tok":
        model, point, x = tok, "decoder.blocks.1.attn.hook_head_out", (clip(),)
        proj = lambda m: m.decoder.blocks[1].attn.proj  # noqa: E731
        hd = tok.decoder.blocks[1].attn.head_dim
    else:
        model, point, x = gen, "layers.0.attention.hook_head_out", (tokens(), LABELS)
        proj = lambda m: m.layers[0].attention.wo  # noqa: E731
        hd = gen.config.head_dim

    def ablate(t, name):  # (B, H, L, hd)
        assert t.ndim == 4 and t.shape[1] == 4 and t.shape[-1] == hd
        t = t.clone()
        t[:, h] = 0
        return t

    edited = copy.deepcopy(model)
    with torch.no_grad():
        proj(edited).weight[:, h * hd : (h + 1) * hd] = 0
        base = model._hooked_run(*x)
        ablated = model.run_with_hooks(*x, fwd_hooks=[(point, ablate)])
        reference = edited._hooked_run(*x)
    assert not torch.equal(base, ablated)
    torch.testing.assert_close(ablated, reference, rtol=0, atol=1e-5)


def test_replacing_attention_probabilities_is_used(tok):
    x = clip()
    with torch.no_grad():
        base = tok.reconstruct(x)
        same = tok.run_with_hooks(x, fwd_hooks=[("decoder.blocks.0.attn.hook_attn", lambda p, n: p.clone())])

        def uniform(p, name):
            return torch.full_like(p, 1.0 / p.shape[-1])

        flat = tok.run_with_hooks(x, fwd_hooks=[("decoder.blocks.0.attn.hook_attn", uniform)])
    torch.testing.assert_close(same, base, rtol=0, atol=1e-5)  # explicit softmax @ v == fused
    assert (flat - base).abs().max() > 1e-3


def test_a_logit_hook_steers_sampling(gen):
    banned = gen.sample(LABELS, greedy=True)[:, 0]  # the tokens greedy sampling starts with

    def ban(logits, name):  # (B, L, V)
        logits = logits.clone()
        logits[..., banned] -= 1e4  # finite: CFG mixes these logits (-inf - -inf would be nan)
        return logits

    for use_cache in (True, False):
        with gen.hooks([("hook_logits", ban)]):
            out = gen.sample(LABELS, greedy=True, cfg_scale=2.0, use_cache=use_cache)
        assert not torch.isin(out, banned).any()
    assert torch.equal(gen.sample(LABELS, greedy=True)[:, 0], banned)


def test_nested_hooks_run_outer_first(gen):
    order = []
    with gen.hooks([("hook_logits", lambda t, n: order.append("outer"))]):
        with gen.hooks([("hook_logits", lambda t, n: order.append("inner"))]):
            gen(tokens(1), LABELS[:1])
        gen(tokens(1), LABELS[:1])
    assert order == ["outer", "inner", "outer"]


# ------------------------------------------------------------------------------------------------
# hooks never outlive their context
# ------------------------------------------------------------------------------------------------


def test_hooks_are_gone_after_the_context_even_on_error(tok, gen):
    calls = []
    with tok.hooks([("hook_decoder_in", lambda t, n: calls.append(n))]):
        assert active_hooks() is not None
    with pytest.raises(RuntimeError, match="boom"):
        with gen.hooks([("hook_logits", lambda t, n: calls.append(n))]):
            raise RuntimeError("boom")
    assert active_hooks() is None
    with torch.no_grad():
        tok.decode_indices(tokens(1))
        gen(tokens(1), LABELS[:1])
    assert calls == []
    assert all(not m._forward_hooks and not m._forward_pre_hooks for mod in (tok, gen) for m in mod.modules())


def test_bad_names_and_bad_replacements_are_refused(tok, gen):
    with pytest.raises(ValueError, match=r"unknown hook points.*close names: .*layers\.0\.hook_out"):
        with gen.hooks([("layers.0.hook_ot", lambda t, n: None)]):
            pass
    with pytest.raises(UnknownHookPointError, match="hook_decoder_in"):
        tok.run_with_hooks(clip(1), fwd_hooks=[("hook_decoder_inn", lambda t, n: None)])
    with pytest.raises(KeyError):  # older callers catch KeyError from capture
        with tok.capture(names=["nope"]):
            pass
    with pytest.raises(ValueError, match=r"hook_logits.*return None or a tensor of shape"):
        gen.run_with_hooks(tokens(1), LABELS[:1], fwd_hooks=[("hook_logits", lambda t, n: t[..., :3])])
    with pytest.raises(TypeError):
        gen.run_with_hooks(tokens(1), LABELS[:1], fwd_hooks=[("hook_logits",)])
    assert active_hooks() is None


# ------------------------------------------------------------------------------------------------
# threads
# ------------------------------------------------------------------------------------------------


def test_a_capture_in_one_thread_never_touches_a_concurrent_one(tok, gen):
    """Thread A captures everything (and uses the plain attention path) while thread B, running the
    same models at the same time, captures nothing: both get the unhooked outputs bit for bit and
    nothing of B's runs lands in A's cache."""
    x, z = clip(1), tokens(1)
    with torch.no_grad():
        base_rec, base_logits = tok.reconstruct(x), gen(z, LABELS[:1])
    runs = 3
    start, done = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    results: dict[str, object] = {}
    recorded_threads = set()

    def capturing():
        try:
            with torch.no_grad(), tok.capture() as tcache, gen.capture() as gcache:
                with gen.hooks([(lambda n: True, lambda t, n: recorded_threads.add(threading.get_ident()))]):
                    start.wait()
                    outs = [(tok.reconstruct(x), gen(z, LABELS[:1])) for _ in range(runs)]
                    done.wait()
            results["A"] = (outs, tcache, gcache)
        except Exception as e:  # pragma: no cover - reported below
            results["A_error"] = e

    def plain_thread():
        try:
            with torch.no_grad():
                start.wait()
                outs = [(tok.reconstruct(x), gen(z, LABELS[:1])) for _ in range(runs)]
                results["B_hooks_seen"] = active_hooks()
                done.wait()
            results["B"] = outs
        except Exception as e:  # pragma: no cover
            results["B_error"] = e

    threads = [threading.Thread(target=capturing), threading.Thread(target=plain_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert "A_error" not in results and "B_error" not in results, results
    outs_a, tcache, gcache = results["A"]
    for rec, logits in outs_a + results["B"]:
        assert torch.equal(rec, base_rec) and torch.equal(logits, base_logits)
    assert results["B_hooks_seen"] is None
    # A's cache holds exactly A's runs: one tensor per run for each hook point hit once per run
    assert len(tcache.all("decoder.blocks.0.attn.hook_attn")) == runs
    assert len(gcache.all("layers.0.attention.hook_attn")) == runs
    assert len(recorded_threads) == 1 and threads[1].ident not in recorded_threads

    # plain attention is scoped the same way: a plain-path thread does not move a fused one
    seen = {}

    def plain_path():
        with plain_attention(), torch.no_grad():
            start.wait()
            seen["plain"] = tok.reconstruct(x)
            done.wait()

    def fused_path():
        with torch.no_grad():
            start.wait()
            seen["fused"] = tok.reconstruct(x)
            done.wait()

    threads = [threading.Thread(target=plain_path), threading.Thread(target=fused_path)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert torch.equal(seen["fused"], base_rec)
    torch.testing.assert_close(seen["plain"], base_rec, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# generator run_with_cache
# ------------------------------------------------------------------------------------------------


def test_generator_run_with_cache_returns_attention_patterns(gen):
    z = tokens()
    logits, cache = gen.run_with_cache(z, LABELS)
    assert torch.equal(logits, gen(z, LABELS))
    L = gen.config.cls_token_num + gen.config.num_tokens - 1  # condition + all tokens but the last
    for layer in range(gen.config.n_layer):
        att = cache.attention("layers", layer)
        assert att.shape == (3, gen.config.n_head, L, L)
        torch.testing.assert_close(att.sum(-1), torch.ones(3, gen.config.n_head, L))
        assert torch.all(att.triu(1) == 0)  # causal
        assert cache[f"layers.{layer}.attention.hook_head_out"].shape == (3, 4, L, gen.config.head_dim)
        assert cache[f"layers.{layer}.hook_out"].shape == (3, L, 64)
    assert cache["hook_embed"].shape == (3, L, 64) and cache["hook_logits"].shape == (3, L, 64)
    _, only_attn = gen.run_with_cache(z, LABELS, activations=False)
    assert all(k.endswith("hook_attn") for k in only_attn.keys())
    # during cached sampling every decode step is recorded: the prefill, then one row per step
    with gen.capture(names=["layers.0.attention.hook_attn"]) as steps:
        gen.sample(LABELS, greedy=True)
    rows = steps.all("layers.0.attention.hook_attn")
    assert len(rows) == gen.config.num_tokens and rows[1].shape == (3, 4, 1, 2)
    torch.testing.assert_close(rows[-1].sum(-1), torch.ones(3, 4, 1))
