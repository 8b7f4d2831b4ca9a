"""The models behind the app: loaded once, by name, and shared by every handler (:class:`ModelCache`).

Names are what ``--tokenizer`` / ``--generator`` / ``--predictor`` accept: a bundled model name
(``checkpoints/<name>``), a checkpoint directory, an official Hub repo id, or ``untrained:<preset>``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from ..bundled import (
    DEFAULT_FRAME_PREDICTOR,
    DEFAULT_GENERATOR,
    DEFAULT_TOKENIZER,
    find_checkpoints_dir,
    is_untrained,
    resolve_generator,
    resolve_tokenizer,
)


def bundled_names() -> dict[str, list[str]]:
    """Bundled checkpoints by kind: {"tokenizer": [...], "generator": [...], "predictor": [...]}."""
    import json

    out: dict[str, list[str]] = {"tokenizer": [], "generator": [], "predictor": []}
    root = find_checkpoints_dir()
    if root is None:  # no bundled models here (an installed wheel): only the models named on the command line
        return out
    for d in sorted(root.iterdir()):
        cfg = d / "config.json"
        if not cfg.is_file():
            continue
        try:
            body = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        kind = body.get("model")
        if kind == "tokenizer":
            out["tokenizer"].append(d.name)
        elif kind == "generator":
            fp = bool(body.get("config", {}).get("frame_prediction"))
            out["predictor" if fp else "generator"].append(d.name)
    return out


@dataclass
class ModelCache:
    """Loads models lazily by name and keeps them (thread-safe); everything on ``device``."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _cache: dict[tuple[str, str], object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _get(self, kind: str, name: str):
        key = (kind, name)
        with self._lock:
            if key not in self._cache:
                if kind == "tokenizer":
                    model = resolve_tokenizer(name, self.device)
                else:
                    model = resolve_generator(name, self.device)
                    want_fp = kind == "predictor"
                    if model.config.frame_prediction != want_fp:
                        what = "frame-prediction" if want_fp else "class-conditional"
                        raise ValueError(f"{name} is not a {what} generator")
                self._cache[key] = model.eval()
            return self._cache[key]

    def tokenizer(self, name: str):
        return self._get("tokenizer", name)

    def generator(self, name: str):
        return self._get("generator", name)

    def predictor(self, name: str):
        return self._get("predictor", name)


def default_choices(tokenizer: str | None, generator: str | None, predictor: str | None) -> dict[str, list[str]]:
    """The names offered in the app's selectors: the ones given first, then the bundled ones."""
    found = bundled_names()
    picks = {
        "tokenizer": [tokenizer] if tokenizer else [],
        "generator": [generator] if generator else [],
        "predictor": [predictor] if predictor else [],
    }
    for kind, default in (("tokenizer", DEFAULT_TOKENIZER), ("generator", DEFAULT_GENERATOR),
                          ("predictor", DEFAULT_FRAME_PREDICTOR)):
        names = found[kind]
        if default in names:
            names = [default] + [n for n in names if n != default]
        picks[kind] += [n for n in names if n not in picks[kind]]
    return picks


def label(name: str) -> str:
    return f"{name} (UNTRAINED: random weights)" if is_untrained(name) else name
