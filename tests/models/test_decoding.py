"""The fast sampling path (larp_lab.models.decoding) against the reference paths: the same ids for the
same seed, bit-identical decode-step logits, the same draws as torch.multinomial, no host syncs."""

from __future__ import annotations

import pytest
import torch
from conftest import max_abs
from conftest import small_generator as make

from larp_lab.models.decoding import FastDecoder, TokenPicker, draw_one, fast_path_available
from larp_lab.models.generator import SamplingOptions, sample_from_logits


@pytest.fixture(scope="module")
def gen():
    return make()


def _seeded(s: int) -> torch.Generator:
    return torch.Generator().manual_seed(s)


# ------------------------------------------------------------------------------------------------
# ids: the fast KV-cache path equals the no-cache reference (modules, torch.multinomial) exactly
# ------------------------------------------------------------------------------------------------

CASES = [
    dict(),
    dict(cfg_scale=1.5),
    dict(cfg_scale=4.0, cfg_interval=3),
    dict(temperature=0.7),
    dict(top_k=5),
    dict(top_p=0.8),
    dict(cfg_scale=2.0, temperature=1.3, top_k=10, top_p=0.9),
    dict(greedy=True, cfg_scale=1.5),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
@pytest.mark.parametrize("labels", [[3], [0, 2, 4]], ids=["B1", "B3"])
def test_fast_sampling_equals_the_no_cache_reference(gen, kw, labels):
    """The reference recomputes the whole sequence through the modules at every step and draws with
    torch.multinomial; the fast path uses the KV cache, FastDecoder and TokenPicker."""
    for seed in (0, 1):
        fast = gen.sample(torch.tensor(labels), generator=_seeded(seed), **kw)
        ref = gen.sample(torch.tensor(labels), generator=_seeded(seed), use_cache=False, **kw)
        assert torch.equal(fast, ref), (kw, labels, seed)


def test_fast_sampling_uses_the_global_rng_like_the_reference(gen):
    torch.manual_seed(5)
    a = gen.sample(torch.tensor([1, 2]), cfg_scale=1.5, top_k=8)
    torch.manual_seed(5)
    b = gen.sample(torch.tensor([1, 2]), cfg_scale=1.5, top_k=8, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("batch", [1, 2])
def test_frame_prediction_fast_equals_reference(batch):
    fp = make(seed=1, frame_prediction=True, cls_token_num=17)
    cond = torch.randint(0, 64, (batch, 16), generator=_seeded(0))
    for kw in (dict(), dict(top_p=0.9, temperature=0.8), dict(greedy=True)):
        a = fp.sample(cond, generator=_seeded(4), **kw)
        b = fp.sample(cond, generator=_seeded(4), use_cache=False, **kw)
        assert torch.equal(a, b), kw


def test_grouped_kv_heads_and_prefix_fast_equals_reference():
    g = make(seed=2, n_head=4, n_kv_head=2)
    labels = torch.tensor([0, 1, 2])
    a = g.sample(labels, cfg_scale=1.5, generator=_seeded(9))
    assert torch.equal(a, g.sample(labels, cfg_scale=1.5, generator=_seeded(9), use_cache=False))
    prefix = a[:, :5]
    b = g.sample(labels, cfg_scale=1.5, top_k=6, prefix=prefix, generator=_seeded(3))
    c = g.sample(labels, cfg_scale=1.5, top_k=6, prefix=prefix, generator=_seeded(3), use_cache=False)
    assert torch.equal(b, c) and torch.equal(b[:, :5], prefix)


def test_hooked_sampling_takes_the_module_path_with_the_same_ids(gen):
    """With a hook active the decode steps run through the modules (so hooks fire): same ids."""
    labels = torch.tensor([0, 3])
    assert fast_path_available(gen)
    with gen.hooks([("layers.0.hook_out", lambda t, name: None)]):
        assert not fast_path_available(gen)
        hooked = gen.sample(labels, cfg_scale=1.5, generator=_seeded(8))
    assert torch.equal(hooked, gen.sample(labels, cfg_scale=1.5, generator=_seeded(8)))


# ------------------------------------------------------------------------------------------------
# logits: FastDecoder.step is bit-identical to the module decode step; the cache agrees with forward
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=2), dict(frame_prediction=True, cls_token_num=17)])
@pytest.mark.parametrize("rows", [1, 4])
def test_fast_step_logits_are_bit_identical_to_the_module_step(kw, rows):
    g = make(seed=3, **kw)
    c = g.config
    cond = (torch.randint(0, 64, (rows, 16), generator=_seeded(1)) if c.frame_prediction
            else torch.arange(rows) % (c.num_classes + 1))  # includes the null class
    cond = g.prepare_condition(cond)
    z = torch.randint(0, 64, (rows, 16), generator=_seeded(2))
    with torch.no_grad():
        ref_cache, fast_cache = g.new_cache(rows), g.new_cache(rows)
        assert torch.equal(g.prefill(cond, ref_cache), g.prefill(cond, fast_cache))
        fast = FastDecoder(g, fast_cache)
        rows_ref, rows_fast = [], []
        for i in range(15):
            pos = c.cls_token_num + i
            rows_ref.append(g.decode_step(z[:, i : i + 1], pos, ref_cache)[:, -1])
            rows_fast.append(fast.step(z[:, i], pos))
        teacher = g(z, cond)[:, 1:]  # (rows, 15, V): no cache
    assert torch.equal(torch.stack(rows_fast, 1), torch.stack(rows_ref, 1))
    assert torch.equal(fast_cache.buf, ref_cache.buf)
    torch.testing.assert_close(torch.stack(rows_fast, 1), teacher, rtol=1e-5, atol=1e-4)  # cache vs none: float tolerance


def test_static_step_agrees_with_the_exact_step(gen):
    """The static-shape step (for torch.compile / CUDA graphs) attends all L_max keys under a mask:
    another summation order, so float tolerance rather than bit equality."""
    cond = gen.prepare_condition(torch.tensor([0, 1, 5]))
    z = torch.randint(0, 64, (3, 16), generator=_seeded(6))
    with torch.no_grad():
        a_cache, b_cache = gen.new_cache(3), gen.new_cache(3)
        gen.prefill(cond, a_cache)
        gen.prefill(cond, b_cache)
        a, b = FastDecoder(gen, a_cache), FastDecoder(gen, b_cache)
        for i in range(15):
            pos = 1 + i
            la = a.step(z[:, i], pos)
            lb = b.step_static(z[:, i], torch.tensor([pos]))
            assert max_abs(la, lb) <= 1e-5
    torch.testing.assert_close(a_cache.buf, b_cache.buf, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# the draw and the picker
# ------------------------------------------------------------------------------------------------


def test_draw_one_is_torch_multinomial():
    """torch.multinomial(p, 1) is argmax(p / Exp(1) noise) with the noise from one exponential_ on a
    (B, V) tensor: the same ids and the same generator state afterwards, also with zeros in p."""
    g = _seeded(0)
    for s in range(50):
        logits = torch.randn(4, 300, generator=g) * 3
        logits[:, ::7] = float("-inf")  # filtered entries: probability 0
        p = logits.softmax(-1)
        g1, g2 = _seeded(s), _seeded(s)
        assert torch.equal(torch.multinomial(p, 1, generator=g1), draw_one(p, g2))
        assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize("opts", [
    SamplingOptions(),
    SamplingOptions(cfg_scale=1.5),
    SamplingOptions(cfg_scale=0.0),
    SamplingOptions(temperature=0.5, top_k=7),
    SamplingOptions(cfg_scale=3.0, top_p=0.7, temperature=1.2),
    SamplingOptions(cfg_scale=1.5, greedy=True),
])
def test_token_picker_equals_pick_then_multinomial(gen, opts):
    cfg_on = opts.cfg_scale != 1.0
    B = 3
    logits = torch.randn(2 * B if cfg_on else B, 64, generator=_seeded(1)) * 2
    pick = TokenPicker(B, opts, _seeded(7))
    ref_gen = _seeded(7)
    for _ in range(5):
        ref = gen._pick(logits, B, cfg_on, opts, ref_gen)
        assert torch.equal(pick(logits, cfg_on), ref)
    # without CFG but with both halves still in the cache: the first B rows
    if cfg_on:
        ref = sample_from_logits(logits[:B], temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                                 greedy=opts.greedy, generator=_seeded(2))
        assert torch.equal(TokenPicker(B, opts, _seeded(2))(logits, False), ref)


# ------------------------------------------------------------------------------------------------
# no host synchronisation per decode step (a count, not a timing)
# ------------------------------------------------------------------------------------------------


def _host_syncs(fn) -> int:
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(1 for e in prof.events() if e.name in ("aten::_local_scalar_dense", "aten::item"))


def test_decode_steps_do_not_synchronise(gen):
    labels = torch.tensor([0, 1])
    for kw in (dict(cfg_scale=1.5), dict(top_k=5, top_p=0.9, temperature=0.8)):
        short = _host_syncs(lambda kw=kw: gen.sample(labels, length=4, generator=_seeded(0), **kw))
        long = _host_syncs(lambda kw=kw: gen.sample(labels, length=16, generator=_seeded(0), **kw))
        assert long == short, kw  # the argument checks before the loop only


def test_module_decoding_is_the_same_sampler(gen):
    from larp_lab.models.decoding import module_decoding

    labels = torch.tensor([4, 0, 2])
    fast = gen.sample(labels, cfg_scale=2.5, top_p=0.95, generator=_seeded(21))
    with module_decoding():
        assert not fast_path_available(gen)
        slow = gen.sample(labels, cfg_scale=2.5, top_p=0.95, generator=_seeded(21))
    assert torch.equal(fast, slow)
