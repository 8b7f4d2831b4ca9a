"""Checkpoints: ``save_pretrained`` / ``from_pretrained`` in this project's format and the official one.

A checkpoint is a directory with ``config.json`` and ``model.safetensors``. Loading never unpickles:
safetensors and JSON only; a legacy ``.pt``/``.pth``/``.bin`` file only through
``torch.load(..., weights_only=True)``.

The format is detected from ``config.json``:

* this project: ``{"larp_lab_format": 1, "model": "tokenizer" | "generator", "config": {...}}``;
* official tokenizer (``PyTorchModelHubMixin`` of ``LARPTokenizer``): a flat object with
  ``bottleneck_token_num`` and a nested ``bottleneck``;
* official generator (``LARP_AR``): the flat ``ModelArgs`` fields (``dim``, ``n_layer``, ...).

Loading is strict and careful, in this order, so that bad files fail fast and cheap:

1. the config is parsed and validated (absurd sizes are refused before anything is allocated);
2. the safetensors header is read and checked against the file size (a truncated file is
   refused) and against the key/shape listing of the model built on the ``meta`` device: every
   missing, unexpected or mis-shaped key is named in the error. Only ``prior_model.*`` and the
   three fixed sin-cos buffers may be absent, and only from an official file (the absent tables are
   recomputed, at most ``MAX_RECOMPUTED_ELEMENTS`` elements, so a tiny file cannot request gigabytes);
3. only then is the model materialised and the weights copied in. Floating tensors stored in
   fp16/bf16 are restored to float32.

Decision (official_layout.md section 4 items 4 and 14): an official tokenizer file without
``prior_model.*`` loads as a tokenizer without a prior (``config.prior = None``), rather than with
a randomly initialised one; the sin-cos buffers are recomputed when absent.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import PRIOR_PRESETS, ConfigError, GeneratorConfig, PriorConfig, TokenizerConfig

__all__ = [
    "CheckpointError",
    "save_pretrained",
    "load_tokenizer",
    "load_generator",
    "detect_format",
    "official_tokenizer_config",
    "official_generator_config",
    "resolve_checkpoint_dir",
]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pt", "checkpoint.pth")
MAX_CONFIG_BYTES = 1_000_000
MAX_HEADER_BYTES = 100_000_000
OFFICIAL_OPTIONAL_KEYS = ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed")
#: fixed tables absent from an official file are recomputed; together they may hold at most this many
#: elements (LARP-L's three hold 2.4M), so a tiny file cannot make loading allocate gigabytes
MAX_RECOMPUTED_ELEMENTS = 1 << 25
OFFICIAL_REPOS = ("hywang66/LARP-L-long-tokenizer", "hywang66/LARP-L-long-AR", "hywang66/LARP-L-long-AR-FP")

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, unsafe or does not match the model."""


# ================================================================================================
#                                           Saving
# ================================================================================================


def _atomic_write_bytes(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename (never a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_kind(model: nn.Module) -> str:
    from .models.generator import LARPGenerator
    from .models.tokenizer import LARPTokenizer

    if isinstance(model, LARPTokenizer):
        return "tokenizer"
    if isinstance(model, LARPGenerator):
        return "generator"
    raise TypeError(f"cannot save a {type(model).__name__}; expected LARPTokenizer or LARPGenerator")


def save_pretrained(
    model: nn.Module, directory: str | Path, *, metadata: dict[str, Any] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically, file by file).

    Args:
        metadata: extra JSON-able information stored in ``config.json`` under ``"metadata"``.
        dtype: store floating tensors in this dtype (e.g. torch.float16 to halve the size);
            loading restores float32.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    kind = model_kind(model)
    state = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[k] = t.contiguous().clone()
    body = {
        "larp_lab_format": FORMAT_VERSION,
        "model": kind,
        "config": model.config.to_dict(),
        "metadata": metadata or {},
    }
    _atomic_write_bytes(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    text = json.dumps(body, indent=2, sort_keys=True)
    _atomic_write_bytes(directory / CONFIG_NAME, lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))
    return directory


# ================================================================================================
#                                  Official config conversion
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


# ================================================================================================
#                                      Format detection
# ================================================================================================


def detect_format(cfg: dict[str, Any]) -> tuple[str, str]:
    """(source, kind) of a parsed ``config.json``: source in {"larp_lab", "official"}, kind in
    {"tokenizer", "generator"}."""
    if not isinstance(cfg, dict):
        raise CheckpointError("config.json must hold a JSON object")
    if "larp_lab_format" in cfg:
        if cfg["larp_lab_format"] != FORMAT_VERSION:
            raise CheckpointError(
                f"config.json has larp_lab_format {cfg['larp_lab_format']!r}; this version reads {FORMAT_VERSION}"
            )
        kind = cfg.get("model")
        if kind not in ("tokenizer", "generator"):
            raise CheckpointError(f"config.json names an unknown model kind {kind!r}")
        if not isinstance(cfg.get("config"), dict):
            raise CheckpointError("config.json has no \"config\" object describing the model")
        return "larp_lab", kind
    if "bottleneck_token_num" in cfg and "bottleneck" in cfg:
        return "official", "tokenizer"
    if {"dim", "n_layer", "n_head", "vocab_size"} <= set(cfg):
        return "official", "generator"
    raise CheckpointError(
        "config.json is neither a larp_lab checkpoint nor an official LARP tokenizer/generator config "
        f"(top-level keys: {sorted(cfg)[:12]})"
    )


# ================================================================================================
#                                 Locating and reading files
# ================================================================================================


def _looks_like_repo_id(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", s))


def resolve_checkpoint_dir(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A local checkpoint directory for a path, or a Hub repo id downloaded through huggingface_hub."""
    p = Path(path_or_repo_id).expanduser()
    if p.is_dir():
        return p
    if p.is_file():
        raise CheckpointError(f"{p} is a file; pass the checkpoint directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    s = str(path_or_repo_id)
    if not _looks_like_repo_id(s) or s.startswith((".", "/", "~")):
        raise CheckpointError(f"{s}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency
        raise CheckpointError("huggingface_hub is needed to download checkpoints by repo id") from None
    try:
        local = snapshot_download(
            s, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "*.md"]
        )
    except Exception as exc:  # offline, unknown repo, auth...
        raise CheckpointError(
            f"could not download {s} from the Hugging Face Hub ({type(exc).__name__}). "
            f"Offline? Download {CONFIG_NAME} and {WEIGHTS_NAME} from https://huggingface.co/{s} "
            "into a directory on a machine with network access and pass that directory instead."
        ) from None
    return Path(local)


def read_config_json(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME} (is this a checkpoint directory?)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too-long integers, absurd nesting
        raise CheckpointError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: must hold a JSON object")
    return data


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Parse and check a safetensors header without reading the tensors: {key: (dtype, shape)}.

    Refuses files that are not safetensors (e.g. a pickle renamed), truncated files and headers
    whose offsets do not tile the data section exactly.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(
                f"{path}: not a valid safetensors file (header length {n} for a file of {size} bytes; "
                "truncated, or not safetensors at all)"
            )
        raw = f.read(n)
    if raw[:1] != b"{":
        raise CheckpointError(f"{path}: not a safetensors file (the header is not JSON)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, too-long integers, absurd nesting
        raise CheckpointError(f"{path}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    header.pop("__metadata__", None)
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for key, info in header.items():
        try:
            dtype, shape, (a, b) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            if not all(type(v) is int for v in (*shape, a, b)):  # JSON integers only (no floats, strings, bools)
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors entry for {str(key)[:100]!r}") from None
        if not isinstance(dtype, str) or dtype not in _DTYPE_SIZES:
            raise CheckpointError(f"{path}: tensor {str(key)[:100]!r} has unsupported dtype {str(dtype)[:20]!r}")
        numel = 1
        for s in shape:
            if s < 0:
                raise CheckpointError(f"{path}: tensor {key!r} has a negative dimension")
            numel *= s
        if b - a != numel * _DTYPE_SIZES[dtype] or a < 0:
            raise CheckpointError(f"{path}: tensor {key!r} has inconsistent offsets")
        spans.append((a, b))
        out[key] = (dtype, shape)
    spans.sort()
    end = 0
    for a, b in spans:
        if a != end:
            raise CheckpointError(f"{path}: tensors do not tile the data section (corrupt file)")
        end = b
    if 8 + n + end != size:
        raise CheckpointError(
            f"{path}: the file is {size} bytes but its header describes {8 + n + end}; it is truncated or corrupt"
        )
    return out


def _find_weights(directory: Path) -> Path:
    st = directory / WEIGHTS_NAME
    if st.is_file():
        return st
    for name in LEGACY_WEIGHTS:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME} (nor a legacy {'/'.join(LEGACY_WEIGHTS)})")


def _load_legacy(path: Path) -> dict[str, Tensor]:
    """A ``.pt``-style state dict, through ``torch.load(weights_only=True)`` only."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor file that loads with weights_only=True "
            f"({type(exc).__name__}). Only safetensors or plain state dicts are accepted; nothing in it was run."
        ) from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj


# ================================================================================================
#                                          Loading
# ================================================================================================

_ST_NAMES = {v: k for k, v in _DTYPES.items()}


def _expected_listing(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_listing(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], optional: set[str], where: str
) -> None:
    missing = sorted(k for k in expected if k not in found and k not in optional)
    unexpected = sorted(k for k in found if k not in expected)
    wrong = sorted(
        f"{k}: file {found[k]} vs model {expected[k]}" for k in expected if k in found and found[k] != expected[k]
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_clip(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_clip(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches {_clip(wrong)}")
        raise CheckpointError(f"{where}: weights do not match the config: " + "; ".join(parts))
    recomputed = sum(math.prod(expected[k]) for k in optional if k in expected and k not in found)
    if recomputed > MAX_RECOMPUTED_ELEMENTS:
        raise CheckpointError(
            f"{where}: the config asks for {recomputed:,} elements of fixed tables that the file does not hold "
            f"(the limit is {MAX_RECOMPUTED_ELEMENTS:,}); refusing to build them (is the config corrupt?)"
        )


def _clip(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _read_weights(path: Path, expected_listing: dict, optional: set[str], device) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        header = read_safetensors_header(path)
        found = {k: v[1] for k, v in header.items()}
        _check_listing(expected_listing, found, optional, str(path))
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except Exception as exc:
            raise CheckpointError(f"{path}: could not read the tensors ({exc})") from None
    state = _load_legacy(path)
    _check_listing(expected_listing, {k: tuple(v.shape) for k, v in state.items()}, optional, str(path))
    return state


def _materialise(model: nn.Module, state: dict[str, Tensor], device, dtype: torch.dtype) -> nn.Module:
    model = model.to_empty(device=device)
    own = model.state_dict()
    with torch.no_grad():
        for k, dst in own.items():
            if k in state:
                src = state[k]
                dst.copy_(src.to(dtype) if src.is_floating_point() and dst.is_floating_point() else src)
    return model


def _prepare(path_or_repo_id, expected_kind: str, revision: str | None):
    directory = resolve_checkpoint_dir(path_or_repo_id, revision)
    raw = read_config_json(directory)
    source, kind = detect_format(raw)
    if kind != expected_kind:
        other = "LARPGenerator" if kind == "generator" else "LARPTokenizer"
        raise CheckpointError(f"{directory} holds a {kind}, not a {expected_kind}; load it with {other}.from_pretrained")
    return directory, raw, source


def load_tokenizer(
    path_or_repo_id: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
    prior_sizes: dict[str, Any] | None = None,
    **overrides: Any,
):
    """Load a :class:`~larp_lab.models.tokenizer.LARPTokenizer` (either format), strictly.

    Args:
        device: where to put the weights. dtype: floating dtype of the weights (float32 default).
        prior_sizes: sizes for an official prior name outside the official table.
        **overrides: top-level :class:`TokenizerConfig` fields to change (e.g. ``vq_temperature``,
            ``pixel_range``); shapes cannot be changed this way without a key mismatch.
    """
    from .models.tokenizer import LARPTokenizer

    directory, raw, source = _prepare(path_or_repo_id, "tokenizer", revision)
    cfg = (
        TokenizerConfig.from_dict(raw["config"]) if source == "larp_lab" else official_tokenizer_config(raw, prior_sizes)
    )
    if overrides:
        cfg = cfg.replace(**overrides)
    weights = _find_weights(directory)
    # which keys does the file hold? (header only)
    if weights.suffix == ".safetensors":
        present = set(read_safetensors_header(weights))
    else:
        present = None
    if source == "official" and cfg.prior is not None and present is not None:
        if not any(k.startswith("prior_model.") for k in present):
            warnings.warn(
                f"{directory}: the checkpoint holds no prior_model.* weights; the tokenizer is loaded without a prior",
                stacklevel=2,
            )
            cfg = cfg.replace(prior=None)
    with torch.device("meta"):
        model = LARPTokenizer(cfg)
    optional = set(OFFICIAL_OPTIONAL_KEYS) if source == "official" else set()
    state = _read_weights(weights, _expected_listing(model), optional, "cpu")
    if present is None and source == "official" and cfg.prior is not None:
        if not any(k.startswith("prior_model.") for k in state):
            raise CheckpointError(f"{weights}: legacy file without prior weights; set prior=None to load it")
    model = _materialise(model, state, device, dtype)
    model._table_cache = {}
    missing_tables = [k for k in OFFICIAL_OPTIONAL_KEYS if k not in state]
    if missing_tables:
        model.reset_fixed_tables()
    model.eval()
    return model


def load_generator(
    path_or_repo_id: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
    **overrides: Any,
):
    """Load a :class:`~larp_lab.models.generator.LARPGenerator` (either format), strictly."""
    from .models.generator import LARPGenerator

    directory, raw, source = _prepare(path_or_repo_id, "generator", revision)
    cfg = GeneratorConfig.from_dict(raw["config"]) if source == "larp_lab" else official_generator_config(raw)
    if overrides:
        cfg = cfg.replace(**overrides)
    weights = _find_weights(directory)
    with torch.device("meta"):
        model = LARPGenerator(cfg)
    optional = {"abs_pe"} if (source == "official" and cfg.use_fixed_pe) else set()
    state = _read_weights(weights, _expected_listing(model), optional, "cpu")
    model = _materialise(model, state, device, dtype)
    if "abs_pe" not in state:
        model.reset_fixed_tables()
    model.eval()
    return model
