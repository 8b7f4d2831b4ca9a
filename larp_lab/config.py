"""Typed configurations for the three LARP models, with presets and a strict JSON round trip.

Three dataclasses describe everything needed to build a model:

* :class:`PriorConfig` -- the training-time autoregressive prior (the official "GPTC") and its
  two-round scheduled-sampling loss;
* :class:`TokenizerConfig` -- the LARP tokenizer (ViT encoder with holistic queries, 16-d cosine VQ,
  ViT decoder), optionally carrying a :class:`PriorConfig`;
* :class:`GeneratorConfig` -- the Llama-style second-stage generator (class-conditional or
  frame prediction);
* :class:`DiscriminatorConfig` -- the GAN discriminator used while training the tokenizer.

Every config dataclass of the project (these, the training configs in ``larp_lab.training.config``,
the evaluation settings) derives from :class:`ConfigBase`: a strict JSON round trip and a
``validate`` that refuses, with one line naming the field, any value that would break a run.

Presets are small factory functions collected in plain dicts (``TOKENIZER_PRESETS``,
``PRIOR_PRESETS``, ``GENERATOR_PRESETS``, ``DISCRIMINATOR_PRESETS``); the CLI takes its choices from those dicts. There is no
string registry that hides which class gets built: every preset returns a config, and the model
class is always named by the caller.

``to_dict`` / ``from_dict`` are exact inverses. ``from_dict`` refuses unknown keys and wrong types
with a message that names them, and ``validate`` refuses absurd sizes *before* any tensor is
allocated (an estimate of the parameter count is checked against ``MAX_PARAMETERS``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ConfigBase",
    "ConfigError",
    "PriorConfig",
    "TokenizerConfig",
    "GeneratorConfig",
    "DiscriminatorConfig",
    "PRIOR_PRESETS",
    "TOKENIZER_PRESETS",
    "GENERATOR_PRESETS",
    "DISCRIMINATOR_PRESETS",
    "MAX_PARAMETERS",
    "check_at_least",
    "check_positive",
    "check_range",
    "load_config_file",
]

#: Upper bound on the parameter count a config may describe (guards against absurd configs).
MAX_PARAMETERS = 20_000_000_000


class ConfigError(ValueError):
    """A configuration is malformed, inconsistent or absurdly large."""


# ----------------------------------------------------------------------------------------------
# Generic dataclass <-> dict helpers
# ----------------------------------------------------------------------------------------------


class ConfigBase:
    """Shared JSON round trip and validation of the config dataclasses.

    Subclasses are ``@dataclass`` es whose fields are annotated with ``int``, ``float``, ``bool``,
    ``str``, ``Literal[...]``, tuples, optionals or other :class:`ConfigBase` classes (nested
    configs); :meth:`from_dict` checks every value against its annotation. A subclass overrides
    :meth:`validate` (calling ``super().validate()`` validates its nested configs) to refuse values
    that would break a run, with a :class:`ConfigError` naming the field.
    """

    #: old key -> new key, accepted by :meth:`from_dict` (files written before a rename); a new key
    #: ``"outer.inner"`` moves the value into the nested mapping ``outer`` (a field moved into a
    #: nested config)
    _renamed_keys: typing.ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        data = cls._apply_renames(data)
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(names)}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(cls.__name__, k, hints[k], v) for k, v in data.items()}
        try:
            cfg = cls(**kwargs)
        except TypeError as exc:  # missing required fields
            raise ConfigError(f"{cls.__name__}: {exc}") from None
        cfg.validate()
        return cfg

    @classmethod
    def _apply_renames(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the keys of :attr:`_renamed_keys` under their new names."""
        out: dict[str, Any] = {}
        moved: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            new = cls._renamed_keys.get(key, key)
            if "." in new:
                outer, inner = new.split(".", 1)
                moved.setdefault(outer, {})[inner] = value
            else:
                out[new] = value
        for outer, values in moved.items():
            nested = out.get(outer, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"{cls.__name__}.{outer}: expected a mapping, got {type(nested).__name__}")
            out[outer] = {**values, **nested}  # the nested mapping, when given, wins
        return out

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # bad JSON, too-long integers, absurd nesting
            raise ConfigError(f"{cls.__name__}: not valid JSON ({str(exc)[:200]})") from None
        return cls.from_dict(data)

    def replace(self, **changes):
        """A copy with some fields changed (validated)."""
        cfg = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Validate the nested configs (subclasses add their own checks and call this)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, ConfigBase):
                    item.validate()


def _coerce(owner: str, key: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``hint``; build nested configs from dicts."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(owner, key, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{owner}.{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{owner}.{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{owner}.{key}: expected a list, got {value!r}")
        return tuple(_coerce(owner, key, args[0], v) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{owner}.{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(owner, key, a, v) for a, v in zip(args, value))
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        if isinstance(value, hint):
            return value
        return hint.from_dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{owner}.{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{owner}.{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}.{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{owner}.{key}: expected a finite number, got {str(value)[:40]}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{owner}.{key}: expected a string, got {value!r}")
        return value
    return value


def check_range(owner: str, name: str, value: float, lo: float, hi: float) -> None:
    """Refuse ``value`` outside [lo, hi] (NaN included) with a message naming ``owner.name``."""
    if not (lo <= value <= hi):
        raise ConfigError(f"{owner}.{name} = {value!r} is outside the allowed range [{lo}, {hi}]")


def check_at_least(owner: str, name: str, value: int, lo: int) -> None:
    """Refuse an integer below ``lo`` (``log_every >= 1``, ``num_workers >= 0``...)."""
    if not value >= lo:
        raise ConfigError(f"{owner}.{name} must be >= {lo}, got {value!r}")


def check_positive(owner: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    """Refuse a number that is not finite and > 0 (>= 0 with ``allow_zero``): learning rates, weights."""
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{owner}.{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_params(owner: str, n: int) -> None:
    if n > MAX_PARAMETERS:
        raise ConfigError(
            f"{owner} describes about {n / 1e9:.1f}B parameters, more than the limit of "
            f"{MAX_PARAMETERS / 1e9:.0f}B; refusing to build it (is the config corrupt?)"
        )


# ----------------------------------------------------------------------------------------------
# Prior (official "GPTC")
# ----------------------------------------------------------------------------------------------


@dataclass
class PriorConfig(ConfigBase):
    """The training-time AR prior over continuous 16-d latents and its scheduled-sampling loss.

    Sizes follow the official GPTC registry (see ``PRIOR_PRESETS``). ``max_positions`` (the official
    ``max_seq_len``) is the length of the learned ``pos_emb`` table; the official default of 1024 is kept independent of the token
    count (decision, official_layout.md section 4 item 12: a prior is usable for any N <= max_positions + 1).
    """

    n_layer: int = 12
    n_head: int = 6
    n_embd: int = 384
    max_positions: int = 1024
    _renamed_keys: typing.ClassVar[dict[str, str]] = {"max_seq_len": "max_positions"}
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    l2_normalized: bool = True
    # loss and schedule
    use_mix_ss: bool = True
    mix_ss_max_ratio: float = 0.5
    mix_ss_peak_steps_ratio: float = 0.3
    n_rounds: int = 2
    avg_loss_over_rounds: bool = True
    no_grad_before_last_round: bool = False
    latent_ce_temperature: float = 1.0
    #: informational: the official registry name (e.g. "gptc-S"), kept for conversion back
    name: str = "gptc-S"

    def validate(self) -> None:
        o = "PriorConfig"
        check_range(o, "n_layer", self.n_layer, 1, 256)
        check_range(o, "n_head", self.n_head, 1, 256)
        check_range(o, "n_embd", self.n_embd, 1, 65536)
        check_range(o, "max_positions", self.max_positions, 1, 1 << 20)
        check_range(o, "n_rounds", self.n_rounds, 1, 16)
        for p in ("embd_pdrop", "resid_pdrop", "attn_pdrop", "mix_ss_max_ratio"):
            check_range(o, p, getattr(self, p), 0.0, 1.0)
        check_range(o, "mix_ss_peak_steps_ratio", self.mix_ss_peak_steps_ratio, 1e-9, 1e9)
        check_range(o, "latent_ce_temperature", self.latent_ce_temperature, 1e-9, 1e9)
        if self.n_embd % self.n_head:
            raise ConfigError(f"{o}: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        _check_params(o, self.num_parameters_estimate(16))

    def num_parameters_estimate(self, latent_dim: int) -> int:
        d = self.n_embd
        per_layer = 12 * d * d + 13 * d
        return self.n_layer * per_layer + self.max_positions * d + 2 * latent_dim * d + 3 * d + latent_dim

    def without_dropout(self) -> PriorConfig:
        return self.replace(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)


def _prior(n_layer: int, n_head: int, n_embd: int, name: str) -> PriorConfig:
    return PriorConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, name=name)


#: The official GPTC sizes (n_layer, n_head, n_embd), plus the kit's small priors.
PRIOR_PRESETS: dict[str, typing.Callable[[], PriorConfig]] = {
    "gptc-L": lambda: _prior(24, 16, 1024, "gptc-L"),
    "gptc-B": lambda: _prior(12, 12, 768, "gptc-B"),
    "gptc-M": lambda: _prior(12, 8, 512, "gptc-M"),
    "gptc-S": lambda: _prior(12, 6, 384, "gptc-S"),
    "gptc-XS": lambda: _prior(6, 6, 384, "gptc-XS"),
    "gptc-XXS": lambda: _prior(6, 4, 256, "gptc-XXS"),
    "gptc-tiny": lambda: _prior(4, 4, 128, "gptc-tiny"),
    "gptc-micro": lambda: _prior(2, 2, 64, "gptc-micro"),
}


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------


@dataclass
class TokenizerConfig(ConfigBase):
    """The LARP tokenizer.

    Decisions on the official model's open points (official_layout.md section 4):

    * ``layer_norm_eps`` = 1e-5 in the ViT blocks, as timm did in 2024 when the released weights were
      trained (item 1); the final layer's LayerNorm uses 1e-6 as in the official code.
    * ``pixel_range`` records the range the *weights* expect. The public API always takes and
      returns videos in [-1, 1]; the tokenizer converts to and from ``"zero_one"`` internally for the
      official checkpoints, which were trained on [0, 1] frames.
    * The decoder unpatchifies with the *decoder's* patch sizes (item 5); the official code used the
      encoder's, which is the same thing in every released configuration.
    """

    input_size: int = 128
    frame_num: int = 16
    in_channels: int = 3
    patch_size: int = 8
    temporal_patch_size: int = 4
    decoder_patch_size: int = 8
    decoder_temporal_patch_size: int = 4
    num_tokens: int = 1024
    encoder_hidden_size: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    decoder_hidden_size: int = 768
    decoder_depth: int = 12
    decoder_num_heads: int = 12
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5
    bottleneck_dim: int = 16
    codebook_size: int = 8192
    vq_temperature: float = 0.03
    commitment_loss_weight: float = 0.25
    codebook_loss_weight: float = 1.0
    latent_pe_scale_factor: float = 10000.0
    query_init_std: float = 0.02
    pixel_range: Literal["minus_one_one", "zero_one"] = "minus_one_one"
    prior: PriorConfig | None = field(default_factory=lambda: PRIOR_PRESETS["gptc-S"]())
    #: ``"holistic"`` (LARP: N learned queries read the patches; the official model) or ``"patch"`` (the
    #: baseline LARP is compared with: the encoder's outputs at the P patches are the tokens, in raster
    #: order (t, h, w); needs P == num_tokens; no query parameters; the decoder's table over the tokens is
    #: then each patch's mean 3-D position, :func:`~larp_lab.models.layers.patch_token_pe`, not a 1-D one over
    #: the index). Everything else after the encoder is shared.
    token_mode: Literal["holistic", "patch"] = "holistic"

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def patch_grid(self) -> tuple[int, int, int]:
        """Encoder patch grid (t, h, w) at the configured input size."""
        return (
            self.frame_num // self.temporal_patch_size,
            self.input_size // self.patch_size,
            self.input_size // self.patch_size,
        )

    @property
    def decoder_patch_grid(self) -> tuple[int, int, int]:
        return (
            self.frame_num // self.decoder_temporal_patch_size,
            self.input_size // self.decoder_patch_size,
            self.input_size // self.decoder_patch_size,
        )

    @property
    def num_patches(self) -> int:
        t, h, w = self.patch_grid
        return t * h * w

    @property
    def num_decoder_patches(self) -> int:
        t, h, w = self.decoder_patch_grid
        return t * h * w

    def validate(self) -> None:
        o = "TokenizerConfig"
        for name, hi in (
            ("input_size", 8192),
            ("frame_num", 4096),
            ("in_channels", 16),
            ("patch_size", 512),
            ("temporal_patch_size", 512),
            ("decoder_patch_size", 512),
            ("decoder_temporal_patch_size", 512),
            ("num_tokens", 1 << 16),
            ("encoder_hidden_size", 16384),
            ("decoder_hidden_size", 16384),
            ("encoder_depth", 256),
            ("decoder_depth", 256),
            ("encoder_num_heads", 256),
            ("decoder_num_heads", 256),
            ("bottleneck_dim", 4096),
            ("codebook_size", 1 << 22),
        ):
            check_range(o, name, getattr(self, name), 1, hi)
        check_range(o, "mlp_ratio", self.mlp_ratio, 0.01, 64)
        check_range(o, "layer_norm_eps", self.layer_norm_eps, 0.0, 1.0)
        check_range(o, "vq_temperature", self.vq_temperature, 1e-9, 1e9)
        for side in ("encoder", "decoder"):
            d, h = getattr(self, f"{side}_hidden_size"), getattr(self, f"{side}_num_heads")
            if d % h:
                raise ConfigError(f"{o}: {side}_hidden_size {d} is not divisible by {side}_num_heads {h}")
        for d in (self.encoder_hidden_size, self.decoder_hidden_size):
            if d % 4:
                raise ConfigError(f"{o}: hidden sizes must be divisible by 4 for the 3-D sin-cos table, got {d}")
        for p, pt in (
            (self.patch_size, self.temporal_patch_size),
            (self.decoder_patch_size, self.decoder_temporal_patch_size),
        ):
            if self.input_size % p or self.frame_num % pt:
                raise ConfigError(
                    f"{o}: input {self.frame_num}x{self.input_size}x{self.input_size} does not divide into "
                    f"{pt}x{p}x{p} patches"
                )
        if self.token_mode == "patch" and self.num_patches != self.num_tokens:
            t, h, w = self.patch_grid
            raise ConfigError(
                f"{o}: patch tokens need one token per encoder patch: {t}x{h}x{w} = {self.num_patches} patches "
                f"but num_tokens = {self.num_tokens}"
            )
        if self.prior is not None:
            self.prior.validate()
            if self.num_tokens - 1 > self.prior.max_positions:
                raise ConfigError(
                    f"{o}: the prior's position table holds {self.prior.max_positions} positions but "
                    f"{self.num_tokens - 1} are needed for {self.num_tokens} tokens"
                )
        _check_params(o, self.num_parameters_estimate())
        # guard the fixed buffers and activations too
        n_elems = (self.num_patches + self.num_decoder_patches + self.num_tokens) * max(
            self.encoder_hidden_size, self.decoder_hidden_size
        )
        if n_elems > 2_000_000_000:
            raise ConfigError(f"{o}: sin-cos tables of {n_elems} elements are absurdly large")

    def num_parameters_estimate(self) -> int:
        """Parameter count (without buffers), exact for this architecture up to small terms."""

        def vit(d: int, depth: int) -> int:
            hidden = int(d * self.mlp_ratio)
            return depth * (3 * d * d + d * d + d + 2 * d * hidden + hidden + d + 4 * d)

        de, dd = self.encoder_hidden_size, self.decoder_hidden_size
        c, p, pt = self.in_channels, self.patch_size, self.temporal_patch_size
        out = self.decoder_temporal_patch_size * self.decoder_patch_size**2 * c
        n = vit(de, self.encoder_depth) + vit(dd, self.decoder_depth)
        n += de * c * pt * p * p + de  # patch embedding
        n += (self.num_tokens * de if self.token_mode == "holistic" else 0) + dd  # queries + token-type embed
        n += de * self.bottleneck_dim + self.bottleneck_dim + self.bottleneck_dim * dd + dd
        n += self.codebook_size * self.bottleneck_dim
        n += 2 * dd + dd * out + out
        if self.prior is not None:
            n += self.prior.num_parameters_estimate(self.bottleneck_dim)
        return n


def _larp_tokenizer(
    hidden: int, depth: int, heads: int, prior: str = "gptc-S", **kw: Any
) -> TokenizerConfig:
    return TokenizerConfig(
        encoder_hidden_size=hidden,
        encoder_depth=depth,
        encoder_num_heads=heads,
        decoder_hidden_size=hidden,
        decoder_depth=depth,
        decoder_num_heads=heads,
        prior=PRIOR_PRESETS[prior](),
        **kw,
    )


#: Tokenizer presets. ``larp-l`` is the released LARP-L-long configuration (128x128x16, 1024 tokens,
#: trained on [0, 1] frames). ``larp-s``/``larp-b`` continue the ladder below it with ViT widths; the
#: official code ships no S/B tokenizer configs, so these are this kit's choice. ``tiny`` and
#: ``micro`` are this kit's CPU-sized models.
TOKENIZER_PRESETS: dict[str, typing.Callable[[], TokenizerConfig]] = {
    "larp-l": lambda: _larp_tokenizer(768, 12, 12, pixel_range="zero_one"),
    "larp-b": lambda: _larp_tokenizer(512, 12, 8),
    "larp-s": lambda: _larp_tokenizer(384, 12, 6),
    "tiny": lambda: TokenizerConfig(
        input_size=64,
        frame_num=16,
        num_tokens=256,
        encoder_hidden_size=256,
        encoder_depth=4,
        encoder_num_heads=4,
        decoder_hidden_size=256,
        decoder_depth=4,
        decoder_num_heads=4,
        codebook_size=1024,
        prior=PRIOR_PRESETS["gptc-tiny"](),
    ),
    "micro": lambda: TokenizerConfig(
        input_size=32,
        frame_num=8,
        num_tokens=16,
        encoder_hidden_size=64,
        encoder_depth=2,
        encoder_num_heads=4,
        decoder_hidden_size=64,
        decoder_depth=2,
        decoder_num_heads=4,
        codebook_size=64,
        prior=PRIOR_PRESETS["gptc-micro"](),
    ),
}


# ----------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------


@dataclass
class GeneratorConfig(ConfigBase):
    """The Llama-style AR generator (the official ``LARP_AR`` / ``ModelArgs``).

    Field names follow the official ``ModelArgs`` so that official ``config.json`` files map one to
    one. ``num_tokens`` is the number of generated tokens (the tokenizer's N) and ``vocab_size`` the
    tokenizer's codebook size. In frame-prediction mode the condition is the tokenizer's N tokens of
    the conditioning clip followed by a separator token (id ``vocab_size``), so
    ``cls_token_num = num_tokens + 1``.
    """

    dim: int = 1280
    n_layer: int = 30
    n_head: int = 20
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 101
    class_dropout_prob: float = 0.1
    vocab_size: int = 8192
    cls_token_num: int = 1
    num_tokens: int = 1024
    _renamed_keys: typing.ClassVar[dict[str, str]] = {"max_seq_len": "num_tokens"}
    use_fixed_pe: bool = False
    frame_prediction: bool = False
    #: optional human-readable class names (index -> name); not part of the official format
    class_names: tuple[str, ...] | None = None

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_hidden(self) -> int:
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def pe_len(self) -> int:
        """Length of the absolute position table: condition positions + generated tokens - 1."""
        return self.num_tokens + self.cls_token_num - 1

    @property
    def separator_token(self) -> int:
        """Frame prediction: the id of the separator appended to the conditioning tokens."""
        return self.vocab_size

    def validate(self) -> None:
        o = "GeneratorConfig"
        for name, hi in (
            ("dim", 65536),
            ("n_layer", 512),
            ("n_head", 1024),
            ("multiple_of", 1 << 16),
            ("num_classes", 1 << 24),
            ("vocab_size", 1 << 24),
            ("cls_token_num", 1 << 20),
            ("num_tokens", 1 << 20),
        ):
            check_range(o, name, getattr(self, name), 1, hi)
        for p in ("token_dropout_p", "attn_dropout_p", "resid_dropout_p", "ffn_dropout_p", "class_dropout_prob"):
            check_range(o, p, getattr(self, p), 0.0, 1.0)
        check_range(o, "norm_eps", self.norm_eps, 0.0, 1.0)
        if self.dim % self.n_head:
            raise ConfigError(f"{o}: dim {self.dim} is not divisible by n_head {self.n_head}")
        if self.n_kv_head is not None:
            check_range(o, "n_kv_head", self.n_kv_head, 1, self.n_head)
            if self.n_head % self.n_kv_head:
                raise ConfigError(f"{o}: n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")
        if self.ffn_dim_multiplier is not None:
            check_range(o, "ffn_dim_multiplier", self.ffn_dim_multiplier, 1e-3, 1e3)
        if self.frame_prediction and self.cls_token_num != self.num_tokens + 1:
            raise ConfigError(
                f"{o}: frame prediction needs cls_token_num = num_tokens + 1 = {self.num_tokens + 1} "
                f"(N conditioning tokens + separator), got {self.cls_token_num}"
            )
        if not self.frame_prediction and self.cls_token_num != 1:
            raise ConfigError(f"{o}: class-conditional models use cls_token_num = 1, got {self.cls_token_num}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"{o}: {len(self.class_names)} class names given for num_classes = {self.num_classes}"
            )
        _check_params(o, self.num_parameters_estimate())

    def num_parameters_estimate(self) -> int:
        d, h = self.dim, self.ffn_hidden
        attn = d * (self.n_head + 2 * self.kv_heads) * self.head_dim + d * d
        per_layer = attn + 3 * d * h + 2 * d
        n = self.n_layer * per_layer + d
        n += (self.vocab_size + int(self.frame_prediction)) * d + self.vocab_size * d
        n += self.pe_len * d
        if not self.frame_prediction:
            n += (self.num_classes + int(self.class_dropout_prob > 0)) * d
        return n


def _llama_abs(n_layer: int, n_head: int, dim: int, **kw: Any) -> GeneratorConfig:
    return GeneratorConfig(n_layer=n_layer, n_head=n_head, dim=dim, **kw)


#: Generator presets: the official llama-abs ladder (n_layer, n_head, dim); 1024 tokens over an
#: 8192-code vocabulary and the 101 UCF-101 classes by default. ``-fp`` variants are frame prediction.
GENERATOR_PRESETS: dict[str, typing.Callable[[], GeneratorConfig]] = {
    "llama-abs-S": lambda: _llama_abs(12, 6, 384),
    "llama-abs-B": lambda: _llama_abs(12, 12, 768),
    "llama-abs-L": lambda: _llama_abs(24, 16, 1024),
    "llama-abs-LP": lambda: _llama_abs(30, 20, 1280),
    "llama-abs-XL": lambda: _llama_abs(36, 20, 1280),
    "llama-abs-XXL": lambda: _llama_abs(48, 24, 1536),
    "llama-abs-XXXL": lambda: _llama_abs(48, 40, 2560),
    "llama-abs-LP-fp": lambda: _llama_abs(30, 20, 1280, frame_prediction=True, cls_token_num=1025),
    "tiny": lambda: _llama_abs(6, 4, 256, vocab_size=1024, num_tokens=256, num_classes=10, multiple_of=64),
    "tiny-fp": lambda: _llama_abs(
        6, 4, 256, vocab_size=1024, num_tokens=256, num_classes=10, multiple_of=64,
        frame_prediction=True, cls_token_num=257,
    ),
    "micro": lambda: _llama_abs(2, 4, 64, vocab_size=64, num_tokens=16, num_classes=10),
    "micro-fp": lambda: _llama_abs(
        2, 4, 64, vocab_size=64, num_tokens=16, num_classes=10, frame_prediction=True, cls_token_num=17
    ),
}


# ----------------------------------------------------------------------------------------------
# Discriminator (training only)
# ----------------------------------------------------------------------------------------------


@dataclass
class DiscriminatorConfig(ConfigBase):
    """The architecture of the GAN discriminator of tokenizer training (a ViT over 3-D patches).

    The clip it judges (channels, frames, side) is the tokenizer's and is given to
    :class:`~larp_lab.models.discriminator.TransformerDiscriminator` with the config, so the sizes live
    here once and the clip once (in the :class:`TokenizerConfig`). Defaults = the official LARP-L
    discriminator (``cfgs/larp_tokenizer.yaml``: 384 wide, 12 heads, 8 blocks, 4x8x8 patches).
    """

    hidden_size: int = 384
    num_heads: int = 12
    depth: int = 8
    temporal_patch_size: int = 4
    patch_size: int = 8
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5

    def validate(self) -> None:
        o = "DiscriminatorConfig"
        for name, hi in (("hidden_size", 16384), ("num_heads", 256), ("depth", 256), ("temporal_patch_size", 512),
                         ("patch_size", 512)):
            check_range(o, name, getattr(self, name), 1, hi)
        check_range(o, "mlp_ratio", self.mlp_ratio, 0.01, 64)
        check_range(o, "layer_norm_eps", self.layer_norm_eps, 0.0, 1.0)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{o}: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.hidden_size % 4:
            raise ConfigError(f"{o}: hidden_size must be divisible by 4 for the 3-D sin-cos table, got {self.hidden_size}")

    def grid(self, frame_num: int, input_size: int) -> tuple[int, int, int]:
        """(t, h, w) patch grid over a clip of ``frame_num`` frames of ``input_size`` squared."""
        s = input_size // self.patch_size
        return frame_num // self.temporal_patch_size, s, s

    def check_clip(self, in_channels: int, frame_num: int, input_size: int) -> None:
        """Refuse a clip that does not divide into the patches, or absurdly many patches."""
        o = "DiscriminatorConfig"
        check_range("TransformerDiscriminator", "in_channels", in_channels, 1, 16)
        check_range("TransformerDiscriminator", "frame_num", frame_num, 1, 4096)
        check_range("TransformerDiscriminator", "input_size", input_size, 1, 8192)
        if input_size % self.patch_size or frame_num % self.temporal_patch_size:
            raise ConfigError(
                f"{o}: a {frame_num}x{input_size}x{input_size} clip does not divide into "
                f"{self.temporal_patch_size}x{self.patch_size}x{self.patch_size} patches "
                "(temporal_patch_size x patch_size x patch_size)"
            )
        t, h, w = self.grid(frame_num, input_size)
        if t * h * w > 1_000_000:
            raise ConfigError(f"{o}: {t * h * w} patches per clip is absurdly many")


#: Discriminator presets: ``official`` (for 16x128x128 clips), ``tiny`` (the ``tiny`` tokenizer's
#: 16x64x64 clips) and ``micro`` (the ``micro`` tokenizer's 8x32x32 clips, for tests).
DISCRIMINATOR_PRESETS: dict[str, typing.Callable[[], DiscriminatorConfig]] = {
    "official": lambda: DiscriminatorConfig(),
    "tiny": lambda: DiscriminatorConfig(hidden_size=128, num_heads=4, depth=4),
    "micro": lambda: DiscriminatorConfig(hidden_size=64, num_heads=2, depth=2, temporal_patch_size=2),
}


def load_config_file(path: str | Path, cls: type):
    """Read a JSON config file into ``cls`` (small files only)."""
    p = Path(path)
    if p.stat().st_size > 1_000_000:
        raise ConfigError(f"{p}: config file is larger than 1 MB; refusing to parse it")
    return cls.from_json(p.read_text(encoding="utf-8"))
