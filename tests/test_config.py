"""Configs: presets, strict JSON round trip, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from larp_lab.config import (
    GENERATOR_PRESETS,
    PRIOR_PRESETS,
    TOKENIZER_PRESETS,
    ConfigError,
    GeneratorConfig,
    PriorConfig,
    TokenizerConfig,
)

ALL = [(TokenizerConfig, n, f) for n, f in TOKENIZER_PRESETS.items()] + [
    (GeneratorConfig, n, f) for n, f in GENERATOR_PRESETS.items()
] + [(PriorConfig, n, f) for n, f in PRIOR_PRESETS.items()]


@pytest.mark.parametrize("cls,name,make", ALL, ids=[f"{c.__name__}-{n}" for c, n, _ in ALL])
def test_json_round_trip(cls, name, make):
    cfg = make()
    cfg.validate()
    back = cls.from_json(cfg.to_json())
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_released_sizes():
    tok = TOKENIZER_PRESETS["larp-l"]()
    assert (tok.input_size, tok.frame_num, tok.num_tokens, tok.codebook_size, tok.bottleneck_dim) == (128, 16, 1024, 8192, 16)
    assert tok.patch_grid == (4, 16, 16) and tok.num_patches == 1024
    lp = GENERATOR_PRESETS["llama-abs-LP"]()
    assert (lp.dim, lp.n_layer, lp.n_head, lp.ffn_hidden, lp.pe_len) == (1280, 30, 20, 3584, 1024)
    fp = GENERATOR_PRESETS["llama-abs-LP-fp"]()
    assert fp.cls_token_num == 1025 and fp.pe_len == 2048 and fp.separator_token == 8192
    assert [(PRIOR_PRESETS[n]().n_layer, PRIOR_PRESETS[n]().n_head, PRIOR_PRESETS[n]().n_embd)
            for n in ("gptc-L", "gptc-B", "gptc-M", "gptc-S", "gptc-XS", "gptc-XXS")] == [
        (24, 16, 1024), (12, 12, 768), (12, 8, 512), (12, 6, 384), (6, 6, 384), (6, 4, 256)]
    assert {"llama-abs-S", "llama-abs-B", "llama-abs-L", "llama-abs-LP", "llama-abs-XL", "llama-abs-XXL",
            "llama-abs-XXXL"} <= set(GENERATOR_PRESETS)
    assert TOKENIZER_PRESETS["tiny"]().input_size == 64 and TOKENIZER_PRESETS["tiny"]().frame_num == 16
    assert TOKENIZER_PRESETS["micro"]().input_size == 32 and TOKENIZER_PRESETS["micro"]().frame_num == 8


def test_nested_prior_round_trip_and_none():
    cfg = TOKENIZER_PRESETS["micro"]().replace(prior=None)
    assert TokenizerConfig.from_json(cfg.to_json()).prior is None
    d = TOKENIZER_PRESETS["micro"]().to_dict()
    d["prior"]["n_layer"] = "two"
    with pytest.raises(ConfigError, match="PriorConfig.n_layer"):
        TokenizerConfig.from_dict(d)
    d["prior"] = {"bogus": 1}
    with pytest.raises(ConfigError, match="unknown keys"):
        TokenizerConfig.from_dict(d)


@pytest.mark.parametrize("change,match", [
    ({"dim": 0}, "dim"),
    ({"n_head": 7}, "divisible"),
    ({"n_kv_head": 3}, "n_kv_head|multiple"),
    ({"frame_prediction": True}, "cls_token_num"),
    ({"cls_token_num": 3}, "cls_token_num"),
    ({"token_dropout_p": 1.5}, "token_dropout_p"),
    ({"norm_eps": float("nan")}, "finite"),
    ({"class_names": ["a"]}, "class names"),
    ({"vocab_size": True}, "integer"),
])
def test_generator_config_errors(change, match):
    d = GENERATOR_PRESETS["micro"]().to_dict() | change
    with pytest.raises(ConfigError, match=match):
        GeneratorConfig.from_dict(d)


def test_not_an_object():
    with pytest.raises(ConfigError, match="JSON object"):
        TokenizerConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="valid JSON"):
        TokenizerConfig.from_json("{")


def test_replace_validates():
    with pytest.raises(ConfigError):
        TOKENIZER_PRESETS["micro"]().replace(num_tokens=0)
    cfg = TOKENIZER_PRESETS["micro"]().replace(num_tokens=32)
    assert dataclasses.asdict(cfg)["num_tokens"] == 32
