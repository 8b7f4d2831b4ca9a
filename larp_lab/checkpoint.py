"""Checkpoints: ``save_pretrained`` / ``from_pretrained`` for every model, in this project's format and
the official one.

A checkpoint is a directory with ``config.json`` and ``model.safetensors``. Loading never unpickles:
safetensors and JSON only; a legacy ``.pt``/``.pth``/``.bin`` file only through
``torch.load(..., weights_only=True)``.

A model class gets both methods from :class:`PretrainedMixin` and says, in class attributes, what
it is: ``config_class`` (its config dataclass), ``checkpoint_kind`` (the ``"model"`` field of
``config.json``) and ``official_format`` (how the official Hub files map onto it, see
:mod:`larp_lab.official`; None when there are none). Nothing here imports the models.

The format is detected from ``config.json``:

* this project: ``{"larp_lab_format": 1, "model": "tokenizer" | "generator" | ..., "config": {...}}``;
* official tokenizer / generator: see :func:`larp_lab.official.official_kind`.

Loading is strict and careful, in this order, so that bad files fail fast and cheap:

1. the config is parsed and validated (absurd sizes are refused before anything is allocated);
2. the safetensors header is read and checked against the file size (a truncated file is
   refused) and against the key/shape listing of the model built on the ``meta`` device: every
   missing, unexpected or mis-shaped key is named in the error. Only the keys the model's official
   format allows (its fixed sin-cos tables) may be absent, and only from an official file; the
   absent tables are recomputed (``model.reset_fixed_tables()``), at most
   ``MAX_RECOMPUTED_ELEMENTS`` elements, so a tiny file cannot request gigabytes;
3. only then is the model materialised and the weights copied in. Floating tensors stored in
   fp16/bf16 are restored to the requested dtype (float32 by default).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from .config import ConfigBase
from .official import OfficialFormat, official_kind

__all__ = [
    "CONFIG_NAME",
    "CheckpointError",
    "FORMAT_VERSION",
    "PretrainedMixin",
    "WEIGHTS_NAME",
    "atomic_write_bytes",
    "detect_format",
    "read_config_json",
    "read_safetensors_header",
    "resolve_checkpoint_dir",
]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pt", "checkpoint.pth")
MAX_CONFIG_BYTES = 1_000_000
MAX_HEADER_BYTES = 100_000_000
#: fixed tables absent from an official file are recomputed; together they may hold at most this many
#: elements (LARP-L's three hold 2.4M), so a tiny file cannot make loading allocate gigabytes
MAX_RECOMPUTED_ELEMENTS = 1 << 25
#: the model kinds of this project's format, with the class that loads each (named in errors)
CHECKPOINT_KINDS = {"tokenizer": "LARPTokenizer", "generator": "LARPGenerator", "video_classifier": "VideoClassifier"}

_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, unsafe or does not match the model."""


# ================================================================================================
#                                           Writing
# ================================================================================================


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Create ``path`` by calling ``write(tmp)`` on a temporary file in the same directory, then
    fsync and rename it into place: readers see the old file or the new one, never a torn file."""
    path = Path(path)
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


# ================================================================================================
#                                      Format detection
# ================================================================================================


def detect_format(cfg: dict[str, Any]) -> tuple[str, str]:
    """(source, kind) of a parsed ``config.json``: source in {"larp_lab", "official"}, kind one of
    :data:`CHECKPOINT_KINDS` (official files: "tokenizer" or "generator")."""
    if not isinstance(cfg, dict):
        raise CheckpointError("config.json must hold a JSON object")
    if "larp_lab_format" in cfg:
        if cfg["larp_lab_format"] != FORMAT_VERSION:
            raise CheckpointError(
                f"config.json has larp_lab_format {cfg['larp_lab_format']!r}; this version reads {FORMAT_VERSION}"
            )
        kind = cfg.get("model")
        if kind not in CHECKPOINT_KINDS:
            raise CheckpointError(f"config.json names an unknown model kind {kind!r}")
        if not isinstance(cfg.get("config"), dict):
            raise CheckpointError("config.json has no \"config\" object describing the model")
        return "larp_lab", kind
    kind = official_kind(cfg)
    if kind is not None:
        return "official", kind
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
    """The parsed ``config.json`` of a checkpoint directory (small JSON objects only)."""
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
#                                     Strict weight loading
# ================================================================================================


def _expected_listing(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _clip(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


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


def _read_weights(path: Path, expected_listing: dict, optional: set[str]) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        header = read_safetensors_header(path)
        found = {k: v[1] for k, v in header.items()}
        _check_listing(expected_listing, found, optional, str(path))
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
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


def _prepare(path_or_repo_id, expected_kind: str, revision: str | None) -> tuple[Path, dict[str, Any], str]:
    directory = resolve_checkpoint_dir(path_or_repo_id, revision)
    raw = read_config_json(directory)
    source, kind = detect_format(raw)
    if kind != expected_kind:
        other = CHECKPOINT_KINDS[kind]
        raise CheckpointError(f"{directory} holds a {kind}, not a {expected_kind}; load it with {other}.from_pretrained")
    return directory, raw, source


# ================================================================================================
#                                          The mixin
# ================================================================================================

M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` with a ``config`` attribute.

    A subclass (``class LARPTokenizer(nn.Module, PretrainedMixin)``) sets the class attributes
    below; its constructor takes ``(config)``, and it overrides :meth:`reset_fixed_tables` when it
    holds fixed tables an official file may omit.
    """

    #: the config dataclass stored under ``"config"`` in ``config.json``
    config_class: ClassVar[type[ConfigBase]]
    #: the ``"model"`` field of ``config.json`` (a key of :data:`CHECKPOINT_KINDS`)
    checkpoint_kind: ClassVar[str]
    #: how the official Hub files map onto this model; None when there are none
    official_format: ClassVar[OfficialFormat | None] = None

    config: Any

    @property
    def checkpoint_metadata(self) -> dict[str, Any]:
        """A copy of the ``"metadata"`` of the ``config.json`` the model was loaded from (the bundled
        models': ``{"data": "digits", ...}``, what they were trained on); empty for the official format
        and for a model built in memory. ``save_pretrained`` takes its own ``metadata``."""
        return dict(self.__dict__.get("_checkpoint_metadata", {}))

    def reset_fixed_tables(self) -> None:
        """Recompute the model's fixed (not learned) tables; called after loading a file that
        lacks some of them. Models without such tables keep this no-op."""

    def save_pretrained(
        self, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None, dtype: torch.dtype | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no pickle) into ``directory``, atomically,
        file by file.

        Args:
            metadata: extra JSON-able information stored in ``config.json`` under ``"metadata"``.
            dtype: store floating tensors in this dtype (e.g. torch.float16 to halve the size);
                loading restores float32.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {}
        for k, v in self.state_dict().items():  # type: ignore[attr-defined]
            t = v.detach().to("cpu")
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            state[k] = t.contiguous().clone()
        body = {
            "larp_lab_format": FORMAT_VERSION,
            "model": self.checkpoint_kind,
            "config": self.config.to_dict(),
            "metadata": metadata or {},
        }
        atomic_write_bytes(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
        text = json.dumps(body, indent=2, sort_keys=True)
        atomic_write_bytes(directory / CONFIG_NAME, lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))
        return directory

    @classmethod
    def from_pretrained(
        cls: type[M],
        path_or_repo_id: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        revision: str | None = None,
        **kwargs: Any,
    ) -> M:
        """Load this project's format or the model's official Hub format (detected from
        ``config.json``), from a directory or, when online, a Hub repo id; strictly (see the module
        docstring). The model is returned in ``eval()`` mode.

        Args:
            device: where to put the weights. dtype: floating dtype of the weights (float32 default).
            revision: the Hub revision of a repo id.
            **kwargs: the official format's options (the tokenizer's ``prior_sizes``: sizes for an
                official prior name outside the official table); every other keyword changes a
                top-level config field (e.g. ``vq_temperature``, ``pixel_range``); shapes cannot be
                changed this way without a key mismatch.
        """
        fmt = cls.official_format
        options = {k: kwargs.pop(k) for k in (fmt.options if fmt else ()) if k in kwargs}
        overrides = kwargs
        directory, raw, source = _prepare(path_or_repo_id, cls.checkpoint_kind, revision)
        official = source == "official"
        if not official:
            cfg = cls.config_class.from_dict(raw["config"])
        elif fmt is None:  # pragma: no cover - detect_format names only kinds with an official format
            raise CheckpointError(f"{directory}: {cls.__name__} has no official format")
        else:
            cfg = fmt.to_config(raw, **options)
        if overrides:
            cfg = cfg.replace(**overrides)
        weights = _find_weights(directory)
        if official and weights.suffix == ".safetensors":  # fit the config to the keys the file holds
            cfg, note = fmt.fit_to_file(cfg, set(read_safetensors_header(weights)))
            if note:
                warnings.warn(f"{directory}: {note}", stacklevel=2)
        with torch.device("meta"):
            model = cls(cfg)  # type: ignore[call-arg]
        optional = set(fmt.optional_keys(cfg)) if official else set()
        state = _read_weights(weights, _expected_listing(model), optional)  # type: ignore[arg-type]
        model = _materialise(model, state, device, dtype)  # type: ignore[arg-type,assignment]
        if any(k not in state for k in optional):
            model.reset_fixed_tables()
        meta = None if official else raw.get("metadata")
        model._checkpoint_metadata = dict(meta) if isinstance(meta, dict) else {}  # type: ignore[attr-defined]
        model.eval()  # type: ignore[attr-defined]
        return model
