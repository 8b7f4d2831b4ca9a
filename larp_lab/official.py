"""The official LARP Hub format: detection and conversion, as pure functions.

The official repository (hywang66/LARP) publishes its models with ``PyTorchModelHubMixin``: a flat
``config.json`` and a ``model.safetensors`` whose keys already match this project's models. What
differs is the config, and a few tensors the official files may leave out:

* official tokenizer ``config.json``: a flat object with ``bottleneck_token_num`` and a nested
  ``bottleneck``; its prior (``prior_model``) is named by a registry name (``gptc-S``) whose sizes
  come from :data:`~larp_lab.config.PRIOR_PRESETS`;
* official generator ``config.json`` (``LARP_AR``): the flat ``ModelArgs`` fields (``dim``,
  ``n_layer``, ...), named as in :class:`~larp_lab.config.GeneratorConfig`.

Decision (official_layout.md section 4 items 4 and 14): an official tokenizer file without
``prior_model.*`` loads as a tokenizer without a prior (``config.prior = None``), rather than with a
randomly initialised one; the fixed sin-cos tables are recomputed when absent.

Each model class names its :class:`OfficialFormat` (``LARPTokenizer.official_format``); the
loader in :mod:`larp_lab.checkpoint` calls its functions and knows nothing model-specific. This
module imports only :mod:`larp_lab.config`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

from .config import PRIOR_PRESETS, ConfigBase, ConfigError, GeneratorConfig, PriorConfig, TokenizerConfig

__all__ = [
    "GENERATOR_FIXED_TABLES",
    "GENERATOR_FORMAT",
    "OFFICIAL_REPOS",
    "OfficialFormat",
    "TOKENIZER_FIXED_TABLES",
    "TOKENIZER_FORMAT",
    "official_generator_config",
    "official_kind",
    "official_prior_config",
    "official_tokenizer_config",
]

#: The released checkpoints on the Hugging Face Hub.
OFFICIAL_REPOS = ("hywang66/LARP-L-long-tokenizer", "hywang66/LARP-L-long-AR", "hywang66/LARP-L-long-AR-FP")
#: The tokenizer's fixed sin-cos buffers: an official file may omit them (they are recomputed).
TOKENIZER_FIXED_TABLES = ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed")
#: The generator's fixed position table (``use_fixed_pe``): an official file may omit it.
GENERATOR_FIXED_TABLES = ("abs_pe",)
#: State-dict prefix of the tokenizer's prior.
PRIOR_PREFIX = "prior_model."


# ================================================================================================
#                                          Detection
# ================================================================================================


def official_kind(cfg: dict[str, Any]) -> Literal["tokenizer", "generator"] | None:
    """Which official model a parsed ``config.json`` describes (None when it is not an official one)."""
    if "bottleneck_token_num" in cfg and "bottleneck" in cfg:
        return "tokenizer"
    if {"dim", "n_layer", "n_head", "vocab_size"} <= set(cfg):
        return "generator"
    return None


# ================================================================================================
#                                     Tokenizer conversion
# ================================================================================================

_OFFICIAL_TOKENIZER_FLAGS = {
    # key: the only value this implementation supports (the released value)
    "learned_encoder_patch_pe": False,
    "learned_encoder_latent_query_embed": True,
    "learned_decoder_latent_pe": False,
    "learned_decoder_patch_query_embed": False,
    "use_encoder_patch_token_type_embed": False,
    "use_encoder_latent_query_token_type_embed": False,
    "use_decoder_latent_token_type_embed": False,
    "use_decoder_patch_query_token_type_embed": True,
}


def official_prior_config(spec: dict[str, Any] | None, prior_sizes: dict[str, Any] | None = None) -> PriorConfig | None:
    """Official ``prior_model`` dict -> :class:`PriorConfig` (None when there is no prior).

    The official JSON carries only a registry name (``gptc-S``); sizes come from the official table
    (``PRIOR_PRESETS``) or from ``prior_sizes`` = {"n_layer", "n_head", "n_embd"} for other names.
    """
    if not spec:
        return None
    name = str(spec.get("name", "")).strip()
    if name.lower() in ("", "none", "no", "null"):
        return None
    if prior_sizes is not None:
        base = PriorConfig(
            n_layer=int(prior_sizes["n_layer"]), n_head=int(prior_sizes["n_head"]), n_embd=int(prior_sizes["n_embd"])
        )
    elif name in PRIOR_PRESETS:
        base = PRIOR_PRESETS[name]()
    else:
        m = re.fullmatch(r"gptc-test-L(\d+)H(\d+)E(\d+)", name)
        if not m:
            raise ConfigError(
                f"unknown official prior name {name!r}; known: {sorted(PRIOR_PRESETS)} "
                "(pass prior_sizes={'n_layer':..,'n_head':..,'n_embd':..})"
            )
        base = PriorConfig(n_layer=int(m[1]), n_head=int(m[2]), n_embd=int(m[3]))
    args = dict(spec.get("args") or {})
    drop = 0.0 if spec.get("no_dropout", False) else None
    return base.replace(
        name=name,
        l2_normalized=bool(args.get("l2_normalized", True)),
        max_positions=int(args.get("max_seq_len", base.max_positions)),
        embd_pdrop=drop if drop is not None else float(args.get("embd_pdrop", 0.1)),
        resid_pdrop=drop if drop is not None else float(args.get("resid_pdrop", 0.1)),
        attn_pdrop=drop if drop is not None else float(args.get("attn_pdrop", 0.1)),
        use_mix_ss=bool(spec.get("use_mix_ss", True)),
        mix_ss_max_ratio=float(spec.get("mix_ss_max_ratio", 0.5)),
        mix_ss_peak_steps_ratio=float(spec.get("mix_ss_peak_steps_ratio", 0.3)),
        n_rounds=int(spec.get("n_rounds", 2)),
        avg_loss_over_rounds=bool(spec.get("avg_loss_over_rounds", True)),
        no_grad_before_last_round=bool(spec.get("no_grad_before_last_round", False)),
        latent_ce_temperature=float(spec.get("latent_ce_temperature", 1.0)),
    )


def official_tokenizer_config(d: dict[str, Any], prior_sizes: dict[str, Any] | None = None) -> TokenizerConfig:
    """Official tokenizer ``config.json`` -> :class:`TokenizerConfig` (``pixel_range="zero_one"``)."""
    try:
        for key, supported in _OFFICIAL_TOKENIZER_FLAGS.items():
            if key in d and bool(d[key]) != supported:
                raise ConfigError(f"official tokenizer option {key}={d[key]!r} is not supported (only {supported})")
        for key in ("transformer_name", "encoder_name", "decoder_name"):
            v = d.get(key, "none")
            if v not in ("none", "transformer_encoder_parallel"):
                raise ConfigError(f"official tokenizer option {key}={v!r} is not supported")
        bn = d["bottleneck"]["args"]
        if bn.get("norm", "none") != "none":
            raise ConfigError(f"official bottleneck norm {bn['norm']!r} is not supported (only 'none')")
        reg = bn["regularizer"]
        if reg.get("name") != "vq":
            raise ConfigError(f"official regularizer {reg.get('name')!r} is not supported (only 'vq')")
        ra = reg["args"]
        if not ra.get("l2_normalized", True):
            raise ConfigError("only the L2-normalised (cosine) VQ of LARP is supported")
        temp = float(ra.get("stochastic_temperature", 0.03))
        if temp <= 0:
            raise ConfigError("a learnable VQ temperature (stochastic_temperature < 0) is not supported")
        return TokenizerConfig(
            input_size=int(d["input_size"]),
            frame_num=int(d["frame_num"]),
            in_channels=int(d.get("in_channels", 3)),
            patch_size=int(d["patch_size"]),
            temporal_patch_size=int(d["temporal_patch_size"]),
            decoder_patch_size=int(d.get("decoder_patch_size", d["patch_size"])),
            decoder_temporal_patch_size=int(d.get("decoder_temporal_patch_size", d["temporal_patch_size"])),
            num_tokens=int(d["bottleneck_token_num"]),
            encoder_hidden_size=int(d["encoder_hidden_size"]),
            encoder_depth=int(d["encoder_depth"]),
            encoder_num_heads=int(d["encoder_num_heads"]),
            decoder_hidden_size=int(d["decoder_hidden_size"]),
            decoder_depth=int(d["decoder_depth"]),
            decoder_num_heads=int(d["decoder_num_heads"]),
            bottleneck_dim=int(bn["bottleneck_dim"]),
            codebook_size=int(ra["codebook_size"]),
            vq_temperature=temp,
            commitment_loss_weight=float(ra.get("commitment_loss_weight", 0.25)),
            codebook_loss_weight=float(ra.get("codebook_loss_weight", 1.0)),
            latent_pe_scale_factor=float(d.get("latent_pe_scale_factor", 10000)),
            query_init_std=float(d.get("query_init_std", 0.02)),
            pixel_range="zero_one",
            prior=official_prior_config(d.get("prior_model"), prior_sizes),
        )
    except ConfigError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"official tokenizer config.json is missing or has a malformed field: {exc!r}") from None


def tokenizer_fixed_tables(config: TokenizerConfig) -> frozenset[str]:
    """State-dict keys an official tokenizer file may omit: the three fixed sin-cos buffers."""
    return frozenset(TOKENIZER_FIXED_TABLES)


def fit_tokenizer_to_file(config: TokenizerConfig, keys: Collection[str]) -> tuple[TokenizerConfig, str | None]:
    """The config fitted to the keys an official file holds: without a prior when it holds no
    ``prior_model.*`` weights (and the note saying so); unchanged otherwise."""
    if config.prior is not None and not any(k.startswith(PRIOR_PREFIX) for k in keys):
        return (
            config.replace(prior=None),
            "the checkpoint holds no prior_model.* weights; the tokenizer is loaded without a prior",
        )
    return config, None


# ================================================================================================
#                                     Generator conversion
# ================================================================================================

_GENERATOR_FIELDS = {
    "dim", "n_layer", "n_head", "n_kv_head", "multiple_of", "ffn_dim_multiplier", "norm_eps", "initializer_range",
    "token_dropout_p", "attn_dropout_p", "resid_dropout_p", "ffn_dropout_p", "drop_path_rate", "num_classes",
    "class_dropout_prob", "vocab_size", "cls_token_num", "max_seq_len", "use_fixed_pe", "frame_prediction",
}
_GENERATOR_IGNORED = {"rope_base", "max_batch_size", "model_type", "caption_dim"}


def official_generator_config(d: dict[str, Any]) -> GeneratorConfig:
    """Official ``ModelArgs`` JSON -> :class:`GeneratorConfig` (unused official fields are dropped)."""
    unknown = sorted(set(d) - _GENERATOR_FIELDS - _GENERATOR_IGNORED)
    if unknown:
        raise ConfigError(f"official generator config has unknown keys {unknown}")
    if d.get("model_type", "class_cond") != "class_cond":
        raise ConfigError(f"official model_type {d['model_type']!r} is not supported (only 'class_cond')")
    drop_path = d.get("drop_path_rate", 0.0)
    if isinstance(drop_path, bool) or not isinstance(drop_path, (int, float)):
        raise ConfigError(f"official generator config: drop_path_rate must be a number, got {drop_path!r}")
    if drop_path != 0.0:
        warnings.warn("drop_path_rate > 0 is ignored (it only matters for training)", stacklevel=3)
    kept = {k: v for k, v in d.items() if k in _GENERATOR_FIELDS}
    return GeneratorConfig.from_dict(kept)


def generator_fixed_tables(config: GeneratorConfig) -> frozenset[str]:
    """State-dict keys an official generator file may omit: the fixed position table, when fixed."""
    return frozenset(GENERATOR_FIXED_TABLES) if config.use_fixed_pe else frozenset()


def _unchanged(config: ConfigBase, keys: Collection[str]) -> tuple[ConfigBase, str | None]:
    return config, None


# ================================================================================================
#                                  The formats, one per model
# ================================================================================================


@dataclass(frozen=True)
class OfficialFormat:
    """How one model's official Hub files map onto this project's (a record of pure functions).

    Attributes:
        kind: the model kind, as :func:`official_kind` reports it.
        to_config: official ``config.json`` dict (and ``options``) -> this project's config.
        optional_keys: config -> state-dict keys an official file may omit (fixed tables, recomputed).
        fit_to_file: (config, keys the file holds) -> (the config to build, a note to warn with or None).
        options: keyword arguments of ``from_pretrained`` passed to ``to_config`` (not config overrides).
    """

    kind: Literal["tokenizer", "generator"]
    to_config: Callable[..., Any]
    optional_keys: Callable[[Any], frozenset[str]]
    fit_to_file: Callable[[Any, Collection[str]], tuple[Any, str | None]] = _unchanged
    options: tuple[str, ...] = ()


TOKENIZER_FORMAT = OfficialFormat(
    kind="tokenizer",
    to_config=official_tokenizer_config,
    optional_keys=tokenizer_fixed_tables,
    fit_to_file=fit_tokenizer_to_file,
    options=("prior_sizes",),
)
GENERATOR_FORMAT = OfficialFormat(
    kind="generator", to_config=official_generator_config, optional_keys=generator_fixed_tables
)
