"""What a checkpoint holds, read cheaply: ``config.json``, the safetensors header (never the weights)
and ``MODEL_CARD.md``. Behind ``larp-lab info`` and the class list in ``larp-lab sample --help``.

:func:`describe_checkpoint` answers what a user needs before loading a model: its kind, the clips it
takes (frames, size), its tokens and codebook, its parameter count, its class names, the training
summary and key metrics of its model card, and the file format. Nothing here unpickles anything or
builds a model; a legacy ``.pt``/``.bin`` weights file is named, not opened.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import (
    CONFIG_NAME,
    LEGACY_WEIGHTS,
    WEIGHTS_NAME,
    CheckpointError,
    detect_format,
    read_config_json,
    read_safetensors_header,
    resolve_checkpoint_dir,
)
from .config import ConfigError
from .official import GENERATOR_FIXED_TABLES, PRIOR_PREFIX, TOKENIZER_FIXED_TABLES

__all__ = ["CheckpointInfo", "bundled_class_names", "describe_checkpoint", "model_card_summary", "resolve_source"]

CARD_NAME = "MODEL_CARD.md"
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint described from its files (see :func:`describe_checkpoint`)."""

    directory: str
    source_format: str  #: "larp_lab" (this project's) or "official" (the official Hub files)
    format_version: int | None  #: ``larp_lab_format`` of config.json (None for official files)
    kind: str  #: "tokenizer", "generator" or "video_classifier"
    model: str  #: what it is, in words, e.g. "class-conditional LARP generator"
    facts: dict[str, str]  #: ordered label -> value lines (clip size, tokens, codebook, layers...)
    parameters: int | None  #: learned parameters (None when the weights are not safetensors)
    parameter_parts: dict[str, int]  #: e.g. {"prior": n} for a tokenizer with its AR prior
    weights: str  #: the weights file and its storage dtype
    class_names: tuple[str, ...] | None
    num_classes: int | None  #: None for models without classes (tokenizers, frame predictors)
    card: dict[str, list[str]] = field(default_factory=dict)  #: MODEL_CARD.md: "training", "metrics" lines
    config_note: str | None = None  #: set when config.json does not load as this version's config

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    def lines(self) -> list[str]:
        """The description as text lines (what ``larp-lab info`` prints)."""
        fmt = (f"larp_lab format {self.format_version}" if self.source_format == "larp_lab"
               else "official LARP Hub format (larp_lab reads it directly; `larp-lab convert` rewrites it)")
        rows = [("model", self.model), *self.facts.items()]
        if self.parameters is not None:
            parts = "".join(f", {name} {_millions(n)}" for name, n in self.parameter_parts.items())
            rest = self.parameters - sum(self.parameter_parts.values())
            rows.append(("parameters", f"{_millions(self.parameters)}"
                         + (f" ({parts[2:]}, the rest {_millions(rest)})" if parts else "")))
        if self.num_classes is not None:
            if self.class_names:
                rows.append(("classes", f"{self.num_classes}: " + ", ".join(self.class_names)))
            else:
                how = f" (pass an id 0-{self.num_classes - 1} as --class)" if self.kind == "generator" else ""
                rows.append(("classes", f"{self.num_classes}, unnamed{how}"))
        rows += [("weights", self.weights), ("format", fmt), ("directory", self.directory)]
        width = max(len(k) for k, _ in rows) + 2
        out = [f"{k + ':':<{width}}{v}" for k, v in rows]
        if self.config_note:
            out.append(f"note: {self.config_note}")
        for part, title in (("training", "training"), ("metrics", "metrics")):
            if self.card.get(part):
                out.append(f"{title} (from {CARD_NAME}):")
                out += [f"  {ln}" for ln in self.card[part]]
        if not self.card:
            out.append(f"no {CARD_NAME} (no training summary)")
        return out


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10_000 else str(n)


# ------------------------------------------------------------------------------------------------
# MODEL_CARD.md
# ------------------------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_lines(rows: list[str]) -> list[str]:
    """Markdown table rows -> one line per data row: ``label: header value, header value``."""
    body = [_cells(r) for r in rows if not re.fullmatch(r"\|?[\s:|-]+\|?", r.strip())]
    if len(body) < 2:
        return [" ".join(c for c in r if c) for r in body]
    head, out = body[0], []
    for r in body[1:]:
        label = f"{head[0]} {r[0]}" if re.fullmatch(r"[-+\d.,%x ]+", r[0]) else r[0]  # a bare number: name it
        pairs = [f"{h} {v}" for h, v in zip(head[1:], r[1:]) if v and v != "-"]
        out.append(f"{label}: " + ", ".join(pairs) if pairs else label)
    return out


def model_card_summary(path: str | Path) -> dict[str, list[str]]:
    """The training summary and key metrics of a model card: {"training": [...], "metrics": [...]}.

    "training": the bullet lines of a ``## Training`` section (command, steps, hardware, wall time,
    code). "metrics": for every section whose heading mentions metrics or results, the heading's
    remark in brackets, each table row as ``label: column value, ...`` and its bullet lines.
    ``<details>`` blocks (e.g. the full config) are skipped. {} when the file is absent or empty.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    text = p.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"<details>.*?</details>", "", text, flags=re.S)
    out: dict[str, list[str]] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        heading = heading.strip()
        lines = [ln.rstrip() for ln in body.splitlines()]
        bullets = [ln.strip()[2:].strip() for ln in lines if ln.strip().startswith(("- ", "* "))]
        if heading.lower().startswith("training"):
            out.setdefault("training", []).extend(bullets)
        elif re.search(r"metric|result", heading, re.I):
            got: list[str] = []
            remark = re.search(r"\((.*)\)", heading)
            if remark:
                got.append(f"({remark.group(1)})")
            table: list[str] = []
            for ln in lines + [""]:
                if ln.strip().startswith("|"):
                    table.append(ln)
                    continue
                if table:
                    got += _table_lines(table)
                    table = []
            got += bullets
            out.setdefault("metrics", []).extend(got)
    return {k: v for k, v in out.items() if v}


# ------------------------------------------------------------------------------------------------
# config.json
# ------------------------------------------------------------------------------------------------


def _parse_config(raw: dict[str, Any], source: str, kind: str) -> tuple[Any, str | None]:
    """The model's config object (or the raw dict when it does not load, with the reason)."""
    body = raw["config"] if source == "larp_lab" else raw
    try:
        if kind == "tokenizer":
            if source == "official":
                from .official import official_tokenizer_config

                return official_tokenizer_config(raw), None
            from .config import TokenizerConfig

            return TokenizerConfig.from_dict(body), None
        if kind == "generator":
            if source == "official":
                from .official import official_generator_config

                return official_generator_config(raw), None
            from .config import GeneratorConfig

            return GeneratorConfig.from_dict(body), None
        from .evaluation.classifier import ClassifierConfig

        return ClassifierConfig.from_dict(body), None
    except (ConfigError, CheckpointError, ValueError, TypeError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:300]
        return _Raw(body), f"config.json does not load as this version's config ({msg}); the values shown are as written"


class _Raw:
    """Attribute access to a raw config dict (None for missing keys), for configs that do not load."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def __getattr__(self, name: str) -> Any:
        return self._body.get(name) if isinstance(self._body, dict) else None


def _line(template: str, *values: Any) -> str | None:
    """``template`` filled with ``values``; None when one is missing (a config that does not load)."""
    return None if any(v is None for v in values) else template.format(*values)


def _facts(kind: str, c: Any, has_prior: bool | None) -> tuple[str, dict[str, str], int | None, tuple | None]:
    """(model in words, facts, number of classes, class names) from a config (or _Raw)."""
    facts: dict[str, str | None] = {}
    names: tuple[str, ...] | None = None
    num_classes = None
    if kind == "tokenizer":
        prior = c.prior
        prior_name = prior.get("name") if isinstance(prior, dict) else getattr(prior, "name", None)
        if has_prior is None:
            has_prior = prior is not None
        model = "LARP video tokenizer" + (f" with its AR prior ({prior_name or 'unnamed'})" if has_prior
                                          else " (no AR prior)")
        facts["clips"] = _line("{} frames of {}x{} (frames x height x width)", c.frame_num, c.input_size, c.input_size)
        facts["tokens"] = _line("{} holistic tokens per clip", c.num_tokens)
        facts["codebook"] = _line("{} codes of {} dimensions (cosine VQ)", c.codebook_size, c.bottleneck_dim)
        facts["encoder"] = _line("{} blocks, width {}, {} heads", c.encoder_depth, c.encoder_hidden_size,
                                 c.encoder_num_heads)
        facts["decoder"] = _line("{} blocks, width {}, {} heads", c.decoder_depth, c.decoder_hidden_size,
                                 c.decoder_num_heads)
    elif kind == "generator":
        fp = bool(c.frame_prediction)
        model = ("frame-prediction LARP generator (conditioned on the tokens of a clip's first frames)" if fp
                 else "class-conditional LARP generator (Llama-style, classifier-free guidance)")
        facts["tokens"] = _line("{} tokens per clip from a vocabulary of {}", c.num_tokens, c.vocab_size)
        facts["layers"] = _line("{}, width {}, {} heads", c.n_layer, c.dim, c.n_head)
        if not fp:
            num_classes = c.num_classes
            names = tuple(str(n) for n in c.class_names) if c.class_names else None
    else:
        model = "video classifier (behind the offline proxy metrics: proxy FVD, class accuracy)"
        facts["clips"] = _line("{} frames of {}x{}", c.frames, c.size, c.size)
        facts["width"] = _line("{}", c.width)
        num_classes = c.num_classes
    return model, {k: v for k, v in facts.items() if v is not None}, num_classes, names


# ------------------------------------------------------------------------------------------------
# the description
# ------------------------------------------------------------------------------------------------


Header = dict[str, tuple[str, tuple[int, ...]]]  #: safetensors header: key -> (dtype, shape)


def _hub_repo_id(source: str) -> str | None:
    """``source`` when it names a Hub repo (owner/name) rather than a local path or bundled model."""
    from .bundled import has_bundled

    if Path(source).expanduser().exists() or has_bundled(source) or source.startswith((".", "/", "~")):
        return None
    return source if re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", source) else None


def _from_hub(repo_id: str) -> tuple[Path, Header | None, str]:
    """config.json and the model card of a Hub repo (downloaded: small files only), and the header of
    its weights read remotely (None offline). Returns (directory, header, where the header came from)."""
    from huggingface_hub import get_safetensors_metadata, snapshot_download

    try:
        d = Path(snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, "*.md"]))
    except Exception as exc:  # offline, unknown repo, auth...
        raise CheckpointError(
            f"could not read {repo_id} from the Hugging Face Hub ({type(exc).__name__}); offline? Pass a local "
            "checkpoint directory instead"
        ) from None
    if (d / WEIGHTS_NAME).is_file():  # downloaded earlier
        return d, read_safetensors_header(d / WEIGHTS_NAME), "local copy"
    try:
        meta = get_safetensors_metadata(repo_id).files_metadata[WEIGHTS_NAME]
    except Exception:  # offline, or not one safetensors file
        return d, None, "Hub"
    return d, {k: (t.dtype, tuple(t.shape)) for k, t in meta.tensors.items()}, "Hub (header only, not downloaded)"


def resolve_source(source: str) -> Path:
    """A checkpoint directory from a path, a bundled model's name or a Hub repo id (for a repo id:
    config.json and the model card only, never the weights)."""
    from .bundled import bundled_path, has_bundled

    repo = _hub_repo_id(source)
    if repo is not None:
        return _from_hub(repo)[0]
    if not Path(source).expanduser().exists() and has_bundled(source):
        return bundled_path(source)
    return resolve_checkpoint_dir(source)


def _fixed_tables(kind: str, c: Any) -> set[str]:
    """State-dict keys holding fixed tables (buffers), not learned parameters."""
    if kind == "tokenizer":
        return set(TOKENIZER_FIXED_TABLES)
    if kind == "generator" and c.use_fixed_pe:
        return set(GENERATOR_FIXED_TABLES)
    return set()


def _local_header(d: Path) -> tuple[Header | None, str]:
    """The safetensors header of a local checkpoint, or None and what the weights are instead."""
    if (d / WEIGHTS_NAME).is_file():
        return read_safetensors_header(d / WEIGHTS_NAME), ""
    for name in LEGACY_WEIGHTS:
        if (d / name).is_file():
            return None, f"{name} (a legacy file: not opened here; loading reads it with torch.load(weights_only=True))"
    return None, f"none: no {WEIGHTS_NAME} in the directory"


def _weights(header: Header, kind: str, fixed: set[str]) -> tuple[str, int, dict[str, int]]:
    """(description, learned parameters, parts) from a safetensors header."""
    n = sum(math.prod(shape) for key, (_, shape) in header.items() if key not in fixed)
    parts = {}
    if kind == "tokenizer":
        prior = sum(math.prod(shape) for key, (_, shape) in header.items() if key.startswith(PRIOR_PREFIX))
        if prior:
            parts["prior"] = prior
    dtypes = sorted({_DTYPE_NAMES.get(dt, dt) for dt, _ in header.values()})
    stored = f", stored as {'/'.join(dtypes)}" if dtypes else ""
    return f"{WEIGHTS_NAME} ({len(header)} tensors{stored}; loaded as float32)", n, parts


def describe_checkpoint(source: str) -> CheckpointInfo:
    """Describe a checkpoint directory, bundled model name or Hub repo id without loading it (a Hub
    repo's weights are not downloaded: their header is read remotely).

    Raises:
        CheckpointError: no such directory, no or unreadable config.json, a corrupt safetensors header,
            a Hub repo that cannot be reached.
    """
    repo = _hub_repo_id(source)
    if repo is not None:
        d, header, where = _from_hub(repo)
        missing = f"{WEIGHTS_NAME} on the Hub: not downloaded, and its header could not be read (offline?)"
    else:
        d = resolve_source(source)
        header, missing = _local_header(d)
        where = ""
    raw = read_config_json(d)
    src, kind = detect_format(raw)
    cfg, note = _parse_config(raw, src, kind)
    n, parts, has_prior = None, {}, None
    weights = missing
    if header is not None:
        weights, n, parts = _weights(header, kind, _fixed_tables(kind, cfg))
        weights += f"; from the {where}" if where else ""
        if kind == "tokenizer":
            has_prior = bool(parts)
    model, facts, num_classes, names = _facts(kind, cfg, has_prior)
    meta = raw.get("metadata") if src == "larp_lab" else None
    data = meta.get("data") if isinstance(meta, dict) else None
    if isinstance(data, str) and data:  # what it was trained on, as scripts/train_bundled.py records it
        from .bundled import DATA_NAMES

        facts = {**facts, "trained on": f"{DATA_NAMES.get(data, data)} (config.json metadata \"data\": {data})"}
    return CheckpointInfo(
        directory=str(d) if repo is None else f"{repo} (Hub; files in {d})", source_format=src,
        format_version=raw.get("larp_lab_format") if src == "larp_lab" else None,
        kind=kind, model=model, facts=facts, parameters=n, parameter_parts=parts, weights=weights,
        class_names=names, num_classes=num_classes, card=model_card_summary(d / CARD_NAME), config_note=note,
    )


def bundled_class_names(name: str, root: str | Path | None = None) -> tuple[str, ...] | None:
    """Class names of the bundled generator ``name``, read from its config.json only (no weights),
    in ``root`` or the bundled checkpoints directory; None when it is not there or names no classes.
    Never raises."""
    from .bundled import find_checkpoints_dir

    base = Path(root).expanduser() if root is not None else find_checkpoints_dir()
    if base is None:
        return None
    try:
        body = json.loads((base / name / "config.json").read_text(encoding="utf-8"))
        names = body["config"].get("class_names")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return tuple(str(n) for n in names) if isinstance(names, list) and names else None
