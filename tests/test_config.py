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


# ------------------------------------------------------------------------------------------------
# Training and evaluation configs: every value that would break a run is refused, naming the field
# ------------------------------------------------------------------------------------------------

TOK_RUN = {
    "model": "micro",
    "data": {"frames": 8, "size": 32},
    "optim": {"warmup_steps": 2},
    "run": {"batch_size": 8, "max_steps": 10},
}


def _tok(section: str | None, change: dict):
    import copy

    from larp_lab.training.config import train_config_from_dict

    d = copy.deepcopy(TOK_RUN)
    if section is None:
        d.update(change)
    else:
        d.setdefault(section, {}).update(change)
    return train_config_from_dict(d, "tokenizer")


@pytest.mark.parametrize("section,change,field", [
    ("run", {"log_every": 0}, "RunConfig.log_every"),
    ("run", {"eval_every": 0}, "RunConfig.eval_every"),
    ("run", {"save_every": -1}, "RunConfig.save_every"),
    ("run", {"batch_size": 0}, "RunConfig.batch_size"),
    ("run", {"max_steps": 0}, "RunConfig.max_steps"),
    ("optim", {"grad_accum": 0}, "OptimConfig.grad_accum"),
    ("optim", {"grad_accum": 3}, "OptimConfig.grad_accum"),  # 8 clips do not split into 3 micro-batches
    ("optim", {"lr": 0.0}, "OptimConfig.lr"),
    ("optim", {"lr": -1e-4}, "OptimConfig.lr"),
    ("optim", {"lr": float("inf")}, "lr"),
    ("optim", {"warmup_steps": 11}, "OptimConfig.warmup_steps"),
    ("optim", {"warmup_steps": -1}, "OptimConfig.warmup_steps"),
    ("optim", {"betas": [0.9, 1.0]}, "OptimConfig.betas"),
    ("optim", {"weight_decay": -0.1}, "OptimConfig.weight_decay"),
    ("optim", {"min_lr_ratio": 1.5}, "OptimConfig.min_lr_ratio"),
    ("optim", {"step_milestones": [0.5, 2.0]}, "OptimConfig.step_milestones"),
    ("optim", {"grad_clip": -1.0}, "OptimConfig.grad_clip"),
    ("optim", {"ema_decay": 1.0}, "OptimConfig.ema_decay"),
    ("data", {"val_clips": 0}, "DataConfig.val_clips"),
    ("data", {"num_clips": 0}, "DataConfig.num_clips"),
    ("data", {"num_workers": -1}, "DataConfig.num_workers"),
    ("data", {"sources": []}, "DataConfig.sources"),
    ("data", {"sources": [{"kind": "synthetic", "weight": 0.0}]}, "SourceConfig.weight"),
    ("data", {"sources": [{"kind": "folder"}]}, "SourceConfig.path"),
    (None, {"loss_q_weight": -0.1}, "TokenizerTrainConfig.loss_q_weight"),
    (None, {"prior_loss_weight": float("nan")}, "prior_loss_weight"),
    (None, {"dead_code_restart_every": -5}, "TokenizerTrainConfig.dead_code_restart_every"),
    (None, {"loss_q_warmup_steps": -1}, "TokenizerTrainConfig.loss_q_warmup_steps"),
    (None, {"lpips_weight": -1.0}, "TokenizerTrainConfig.lpips_weight"),
    (None, {"gan": {"d_update_freq": 0}}, "GANConfig.d_update_freq"),
    (None, {"gan": {"d_lr": 0.0}}, "GANConfig.d_lr"),
    (None, {"gan": {"lecam_decay": 1.0}}, "GANConfig.lecam_decay"),
    (None, {"gan": {"d_beta2": -0.5}}, "GANConfig.d_beta2"),
    (None, {"gan": {"disc_weight": -1.0}}, "GANConfig.disc_weight"),
    (None, {"gan": {"discriminator": {"depth": 0}}}, "DiscriminatorConfig.depth"),
    (None, {"gan": {"discriminator": {"temporal_patch_size": 3}}}, "temporal_patch_size"),  # 8 frames
])
def test_tokenizer_train_config_refuses_bad_values(section, change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
        _tok(section, change)
    assert "\n" not in str(e.value)


def test_good_training_config_and_boundaries():
    cfg = _tok("optim", {"warmup_steps": 10, "grad_accum": 4, "ema_decay": 0.0})  # warm-up == max_steps is fine
    assert cfg.optim.warmup_steps == cfg.run.max_steps
    with pytest.raises(ConfigError, match=r"RunConfig\.log_every"):
        cfg.run.replace(log_every=0)  # replace validates too
    with pytest.raises(ConfigError, match=r"OptimConfig\.grad_accum"):
        cfg.replace(optim=cfg.optim.replace(grad_accum=3))  # 8 clips, 3 micro-batches


@pytest.mark.parametrize("change,field", [
    ({"num_train_clips": 0}, "GeneratorTrainConfig.num_train_clips"),
    ({"sample_cfg_scale": -1.0}, "GeneratorTrainConfig.sample_cfg_scale"),
    ({"sample_cfg_scale": 2.0, "model_overrides": {"class_dropout_prob": 0.0}}, "sample_cfg_scale"),
    ({"model": "micro-fp", "cond_frames": 0}, "GeneratorTrainConfig.cond_frames"),
    ({"model": "micro-fp", "cond_frames": 9}, "GeneratorTrainConfig.cond_frames"),
    ({"model": "micro-fp", "sample_cfg_scale": 1.5}, "sample_cfg_scale"),
])
def test_generator_train_config_refuses_bad_values(change, field):
    from larp_lab.training.config import train_config_from_dict

    d = {"model": "micro", "data": {"frames": 8, "size": 32}, "run": {"batch_size": 8, "max_steps": 10}, **change}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        train_config_from_dict(d, "generator")


@pytest.mark.parametrize("change,field", [
    ({"num_clips": 0}, "EvalSettings.num_clips"),
    ({"batch_size": 0}, "EvalSettings.batch_size"),
    ({"top_k": -1}, "EvalSettings.top_k"),
    ({"top_p": 0.0}, "EvalSettings.top_p"),
    ({"top_p": 1.5}, "EvalSettings.top_p"),
    ({"temperature": -1.0}, "EvalSettings.temperature"),
    ({"cfg_scale": float("nan")}, "EvalSettings.cfg_scale"),
])
def test_eval_settings_refuse_bad_values(change, field):
    from larp_lab.evaluation.runner import EvalSettings

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EvalSettings(**change).validate()
    assert EvalSettings.from_dict(EvalSettings().to_dict()) == EvalSettings()


def test_every_config_dataclass_shares_the_public_base():
    from larp_lab.config import ConfigBase, DiscriminatorConfig
    from larp_lab.evaluation.classifier import ClassifierConfig
    from larp_lab.evaluation.runner import EvalSettings
    from larp_lab.training import config as tc

    classes = [PriorConfig, TokenizerConfig, GeneratorConfig, DiscriminatorConfig, ClassifierConfig, EvalSettings,
               tc.SourceConfig, tc.DataConfig, tc.OptimConfig, tc.RunConfig, tc.GANConfig, tc.TokenizerTrainConfig,
               tc.GeneratorTrainConfig]
    assert all(issubclass(c, ConfigBase) for c in classes)
    with pytest.raises(ConfigError, match=r"ClassifierConfig\.num_classes"):
        ClassifierConfig(num_classes=1, frames=8, size=16).validate()


def test_renamed_key_into_a_nested_config():
    from larp_lab.training.config import GANConfig

    cfg = GANConfig.from_dict({"depth": 3, "discriminator": {"hidden_size": 64, "num_heads": 4}})
    assert (cfg.discriminator.depth, cfg.discriminator.hidden_size) == (3, 64)
    with pytest.raises(ConfigError, match=r"GANConfig\.discriminator: expected a mapping"):
        GANConfig.from_dict({"depth": 3, "discriminator": 5})
