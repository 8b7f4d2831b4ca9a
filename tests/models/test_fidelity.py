"""Fidelity to the official implementation: reproduce the tensors recorded by running the official
code (tests/fixtures, see NOTICE.md) through the official-format loading path.

Tolerances (fixtures README): floats <= 1e-5 max abs, indices / masks / greedy tokens exact.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURES, max_abs

from larp_lab import TOKENIZER_PRESETS, LARPGenerator, LARPTokenizer
from larp_lab.config import GENERATOR_PRESETS
from larp_lab.models.generator import top_k_top_p_filter
from larp_lab.official import official_generator_config, official_tokenizer_config

TOL = 1e-5


# ------------------------------------------------------------------------------------------------
# tokenizer
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok_and_io(official_tokenizer_dir):
    d, io, meta = official_tokenizer_dir
    # the fixture feeds [-1, 1] noise straight into the network, so use the identity pixel mapping
    tok = LARPTokenizer.from_pretrained(d, pixel_range="minus_one_one")
    return tok, io


def test_official_tokenizer_config_is_detected(official_tokenizer_dir):
    d, _, meta = official_tokenizer_dir
    tok = LARPTokenizer.from_pretrained(d)
    c = tok.config
    assert (c.input_size, c.frame_num, c.num_tokens, c.codebook_size) == (32, 8, 16, 64)
    assert c.pixel_range == "zero_one"  # the official models were trained on [0, 1] frames
    assert c.prior is not None and (c.prior.n_layer, c.prior.n_head, c.prior.n_embd) == (2, 2, 64)
    assert not tok.training


def test_encoder_internals(tok_and_io):
    tok, io = tok_and_io
    with torch.no_grad(), tok.capture(attention=False) as cache:
        enc = tok.encode(io["x"])
    assert max_abs(cache["hook_patch_embed"], io["encode.patch_embed"]) <= TOL
    assert max_abs(cache["hook_encoder_out"], io["encode.encoder_out"]) <= TOL
    assert max_abs(enc.projected, io["encode.projected_z"]) <= TOL
    assert max_abs(enc.normalized, io["encode.unregularized_z"]) <= TOL
    assert max_abs(enc.cos_sim, io["encode.cos_sim"]) <= TOL
    assert enc.indices.dtype == torch.int64
    assert torch.equal(enc.indices, io["encode.bottleneck_rep"])
    assert max_abs(enc.latents, io["encode.regularized_z"]) <= TOL
    assert max_abs(enc.embeddings, io["encode.encoded"]) <= TOL
    for mine, ref in ((enc.loss_q, "loss_q"), (enc.loss_commit, "loss_commit"), (enc.loss_codebook, "loss_codebook")):
        assert max_abs(mine, io[f"encode.{ref}"]) <= TOL


def test_decoder_and_reconstruction(tok_and_io):
    tok, io = tok_and_io
    with torch.no_grad(), tok.capture(attention=False) as cache:
        enc = tok.encode(io["x"])
        rec = tok.decode(enc.embeddings)
    assert max_abs(cache["hook_decoder_out"], io["decode.decoder_out"]) <= TOL
    assert max_abs(cache["hook_final_out"], io["decode.final_layer_out"]) <= TOL
    assert max_abs(rec, io["decode.reconstruction"]) <= TOL
    with torch.no_grad():
        rec_idx = tok.decode_indices(io["encode.bottleneck_rep"])
        rec_int32 = tok.decode_indices(io["encode.bottleneck_rep"].int())
    assert max_abs(rec_idx, io["decode_from_bottleneck.reconstruction"]) <= TOL
    assert torch.equal(rec_idx, rec_int32)


def test_fixed_tables_equal_the_official_buffers(official_tokenizer_dir):
    from safetensors.torch import load_file

    d, _, _ = official_tokenizer_dir
    stored = load_file(str(d / "model.safetensors"))
    tok = LARPTokenizer(LARPTokenizer.from_pretrained(d).config)  # fresh model: tables recomputed
    for name in ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed"):
        assert torch.equal(getattr(tok, name), stored[name]), name


def test_prior_deterministic_outputs(tok_and_io):
    tok, io = tok_and_io
    prior = tok.prior_model
    cb = tok.bottleneck.regularizer.normalized_codebook()
    with torch.no_grad():
        z = tok.encode(io["x"]).latents
        assert max_abs(prior.predict(z), io["prior.ar_predict"]) <= TOL
        logits = prior.logits(z, cb)
        assert logits.shape == io["prior.logits"].shape
        assert max_abs(logits, io["prior.logits"]) <= TOL
        res = prior.scheduled_sampling_loss(z, io["encode.bottleneck_rep"], cb, step=0, max_steps=1000)
    assert torch.equal(res.labels, io["prior.labels"])
    assert res.ss_ratio == 0.0
    assert max_abs(res.loss, io["prior.loss_latent_ce_ss0"]) <= TOL


def _train_without_dropout(tok: LARPTokenizer) -> LARPTokenizer:
    tok.train()
    for m in tok.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for block in tok.prior_model.blocks:
        block.attn.attn_pdrop = 0.0
    return tok


def test_training_forward_replays_recorded_draws(official_tokenizer_dir):
    """Train mode, dropout 0, step 150 of 1000 (ss ratio 0.25): given the recorded RNG draws the
    whole two-round loss is deterministic."""
    d, io, _ = official_tokenizer_dir
    tok = _train_without_dropout(LARPTokenizer.from_pretrained(d, pixel_range="minus_one_one"))
    cb = tok.bottleneck.regularizer.normalized_codebook()
    with torch.no_grad():
        enc = tok.encode(io["x"])  # consumes a VQ draw; replace it by the recorded one
        z = tok.bottleneck.regularizer.lookup(io["train_nodrop.vq_sampled_indices"])
        assert max_abs(z, io["train_nodrop.regularized_z"]) <= TOL
        res = tok.prior_model.scheduled_sampling_loss(
            io["train_nodrop.regularized_z"], io["train_nodrop.vq_sampled_indices"], cb, step=150, max_steps=1000,
            mask=io["train_nodrop.mask_ss"].bool(), sampled_indices=io["train_nodrop.prior_sampled_indices"][None],
        )
    assert enc.indices.shape == (2, 16)
    assert res.ss_ratio == 0.25
    assert max_abs(res.logits, io["train_nodrop.logits_all_rounds"]) <= TOL
    assert max_abs(res.loss, io["train_nodrop.loss_latent_ce"]) <= TOL


def test_training_forward_replays_official_rng_order(official_tokenizer_dir):
    """Seeded like the official run, our forward draws the same VQ codes, the same scheduled-sampling
    mask and the same prior samples, in the same order, and so reproduces the loss."""
    d, io, meta = official_tokenizer_dir
    tok = _train_without_dropout(LARPTokenizer.from_pretrained(d, pixel_range="minus_one_one"))
    seeds = meta["train_settings"]["seeds"]
    torch.manual_seed(seeds["train_nodrop"])
    with torch.no_grad():
        out = tok(io["x"], step=150, max_steps=1000)
    assert torch.equal(out.encoding.indices, io["train_nodrop.vq_sampled_indices"])
    assert torch.equal(out.prior.mask.to(torch.uint8), io["train_nodrop.mask_ss"])
    assert torch.equal(out.prior.sampled_indices[0], io["train_nodrop.prior_sampled_indices"])
    assert max_abs(out.encoding.latents, io["train_nodrop.regularized_z"]) <= TOL
    assert max_abs(out.encoding.loss_q, io["train_nodrop.loss_q"]) <= TOL
    assert max_abs(out.prior.loss, io["train_nodrop.loss_latent_ce"]) <= TOL
    torch.manual_seed(seeds["train_nodrop_ss0"])
    with torch.no_grad():
        out = tok(io["x"], step=0, max_steps=1000)
    assert torch.equal(out.encoding.indices, io["train_nodrop_ss0.vq_sampled_indices"])
    assert max_abs(out.prior.loss, io["train_nodrop_ss0.loss_latent_ce"]) <= TOL


# ------------------------------------------------------------------------------------------------
# generators
# ------------------------------------------------------------------------------------------------


def _teacher_forced_through_cache(gen: LARPGenerator, z: torch.Tensor, cond: torch.Tensor):
    cond = gen.prepare_condition(cond)
    cache = gen.new_cache(z.shape[0])
    pre = gen.prefill(cond, cache)
    rows = [pre[:, -1:]]
    step1 = None
    for i in range(z.shape[1] - 1):
        out = gen.decode_step(z[:, i : i + 1], gen.config.cls_token_num + i, cache)
        step1 = out if step1 is None else step1
        rows.append(out)
    return pre, step1, torch.cat(rows, dim=1)


@pytest.mark.parametrize("name", ["generator_small", "generator_fp_small"])
def test_generator_logits_and_kv_cache(name, request):
    d, io, meta = request.getfixturevalue("official_generator_dir" if name == "generator_small" else "official_fp_dir")
    gen = LARPGenerator.from_pretrained(d)
    assert gen.config.frame_prediction == (name == "generator_fp_small")
    with torch.no_grad():
        logits = gen(io["z"], io["cond_idx"])
        assert logits.shape == io["logits"].shape
        assert max_abs(logits, io["logits"]) <= TOL
        loss = gen.loss(io["z"], io["cond_idx"])
        assert max_abs(loss, io["loss"]) <= TOL
        pre, step1, all_logits = _teacher_forced_through_cache(gen, io["z"], io["cond_idx"])
    assert max_abs(pre, io["kv.prefill_logits"]) <= TOL
    assert max_abs(step1, io["kv.decode_step1_logits"]) <= TOL
    assert max_abs(all_logits, io["kv.all_logits"]) <= TOL


def test_generator_null_class_and_cfg(official_generator_dir):
    d, io, _ = official_generator_dir
    gen = LARPGenerator.from_pretrained(d)
    with torch.no_grad():
        null = gen(io["z"], io["cond_idx_null"])
        assert max_abs(null, io["logits_null_class"]) <= TOL
        assert torch.equal(gen(io["z"], torch.tensor([-1, -1])), null)  # negative label = null
        scale = float(io["cfg.scale"])
        cond = gen(io["z"], io["cond_idx"])
        cfg = null + (cond - null) * scale
    assert max_abs(cfg, io["cfg.logits"]) <= TOL


@pytest.mark.parametrize("name", ["generator_small", "generator_fp_small"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation(name, use_cache, request):
    d, io, _ = request.getfixturevalue("official_generator_dir" if name == "generator_small" else "official_fp_dir")
    gen = LARPGenerator.from_pretrained(d)
    out = gen.sample(io["cond_idx"], greedy=True, use_cache=use_cache)
    assert out.dtype == torch.int64
    assert torch.equal(out, io["generate.greedy"].long())
    if "generate.greedy_cfg" in io:
        out = gen.sample(io["cond_idx"], cfg_scale=1.5, greedy=True, use_cache=use_cache)
        assert torch.equal(out, io["generate.greedy_cfg"].long())


def test_seeded_sampling_replays_official_rng(official_generator_dir, official_fp_dir):
    """RNG-dependent entries: one torch.multinomial per step on the same probabilities."""
    d, io, _ = official_generator_dir
    gen = LARPGenerator.from_pretrained(d)
    torch.manual_seed(2027)
    out = gen.sample(io["cond_idx"], cfg_scale=1.5, temperature=1.0, top_k=10, top_p=0.9)
    assert torch.equal(out, io["generate.sampled_seeded"].long())
    d, io, _ = official_fp_dir
    gen = LARPGenerator.from_pretrained(d)
    torch.manual_seed(3036)
    assert torch.equal(gen.sample(io["cond_idx"]), io["generate.sampled_seeded"].long())


def test_frame_prediction_conditioning_matches(official_fp_dir, official_tokenizer_dir):
    d, io, _ = official_fp_dir
    tok = LARPTokenizer.from_pretrained(official_tokenizer_dir[0], pixel_range="minus_one_one")
    gen = LARPGenerator.from_pretrained(d)
    with torch.no_grad():
        assert torch.equal(tok.encode(io["x"]).indices, io["z"])
        assert torch.equal(tok.encode(io["x_cond"]).indices, io["cond_tokens"])
        # the separator is appended when only the N conditioning tokens are given
        assert torch.equal(gen.prepare_condition(io["cond_tokens"]), io["cond_idx"])
        video = tok.decode_indices(io["generate.greedy"])
    assert max_abs(video, io["generate.greedy_decoded_video"]) <= TOL


@pytest.mark.parametrize("name", ["generator_small", "generator_fp_small"])
def test_top_k_top_p_filter(name):
    from safetensors.torch import load_file

    t = load_file(str(FIXTURES / f"{name}.safetensors"))
    logits = t["io.filter.input_logits"]
    for k, p in ((5, 1.0), (0, 0.8), (10, 0.9), (1, 1.0)):
        ref = t[f"io.filter.topk{k}_topp{p}"]
        out = top_k_top_p_filter(logits, k, p)
        assert torch.equal(torch.isinf(out), torch.isinf(ref)), (k, p)
        assert torch.equal(out[~torch.isinf(out)], ref[~torch.isinf(ref)])
    probs = torch.softmax(top_k_top_p_filter(logits / 0.7, 10, 0.9), dim=-1)
    assert max_abs(probs, t["io.filter.probs_T0.7_topk10_topp0.9"]) <= TOL


# ------------------------------------------------------------------------------------------------
# released configurations: key and shape listings (built on the meta device, nothing allocated)
# ------------------------------------------------------------------------------------------------

LAYOUTS = json.loads((FIXTURES / "state_dict_layouts_full.json").read_text())


def _listing(model) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _expected(name: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(e["key"], tuple(e["shape"])) for e in LAYOUTS[name]["keys"]]


def test_released_tokenizer_state_dict_layout():
    cfg = official_tokenizer_config(LAYOUTS["LARP-L-long-tokenizer"]["hub_config_as_mixin_would_write"])
    with torch.device("meta"):
        tok = LARPTokenizer(cfg)
    assert _listing(tok) == _expected("LARP-L-long-tokenizer")  # same keys, shapes and order
    assert tok.num_parameters() == 193_880_224
    assert tok.num_parameters(include_prior=False) == 172_179_984
    assert cfg.num_parameters_estimate() == 193_880_224
    # the preset equals the released configuration
    assert TOKENIZER_PRESETS["larp-l"]().to_dict() == cfg.to_dict()


@pytest.mark.parametrize("name,preset,params", [
    ("LARP-L-long-AR", "llama-abs-LP", 631_975_680),
    ("LARP-L-long-AR-FP", "llama-abs-LP-fp", 633_157_120),
])
def test_released_generator_state_dict_layout(name, preset, params):
    cfg = official_generator_config(LAYOUTS[name]["hub_config_as_mixin_would_write"])
    with torch.device("meta"):
        gen = LARPGenerator(cfg)
    assert _listing(gen) == _expected(name)
    assert gen.num_parameters() == params
    assert cfg.num_parameters_estimate() == params
    assert GENERATOR_PRESETS[preset]().to_dict() == cfg.to_dict()
