"""The official LARP generator (github.com/hywang66/LARP, MIT), loaded for side-by-side speed benchmarks.

Nothing of the official code is part of this package: :func:`load_official_ar` copies the five files
the generator needs (``ar/generate.py``, ``models/larp_ar.py``, ``models/embed.py``,
``models/norm.py``, ``ar/__init__.py``) out of a local copy of the repository into a temporary
folder, imports them from there and deletes the folder, with stand-ins for what only the tokenizer half uses (``einops``,
``timm``'s ``PatchEmbed``, the model registry). Where no copy is found it returns None and the
benchmark skips the comparison.

Where the copy is looked for: the ``repo`` argument, else ``$LARP_OFFICIAL_REPO``, else
``/work/.mirror/hywang66+LARP/repo``; a bare git directory (read at ``HEAD`` with ``git show``) or a
checkout.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["OfficialAR", "find_official_repo", "load_official_ar"]

DEFAULT_LOCATIONS = ("/work/.mirror/hywang66+LARP/repo",)
_FILES = ("ar/__init__.py", "ar/generate.py", "models/larp_ar.py", "models/embed.py", "models/norm.py")
_REGISTRY_STUB = "models = {}\n\n\ndef register(name):\n    return lambda cls: cls\n\n\ndef make(*a, **k):\n    raise NotImplementedError\n"


def find_official_repo(repo: str | os.PathLike | None = None) -> Path | None:
    """``repo`` when given (None if it does not exist), else the first existing default location
    (see the module docstring), or None."""
    cands = [repo] if repo else [os.environ.get("LARP_OFFICIAL_REPO"), *DEFAULT_LOCATIONS]
    for cand in cands:
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def _read(repo: Path, rel: str) -> str:
    if (repo / rel).is_file():  # a checkout
        return (repo / rel).read_text()
    return subprocess.run(["git", f"--git-dir={repo}", "show", f"HEAD:{rel}"], check=True, capture_output=True,
                          text=True).stdout


@contextlib.contextmanager
def _stand_ins():
    """Modules the official ``models/embed.py`` imports for the tokenizer only."""
    einops = types.ModuleType("einops")
    timm = types.ModuleType("timm")
    timm_models = types.ModuleType("timm.models")
    vit = types.ModuleType("timm.models.vision_transformer")
    vit.PatchEmbed = type("PatchEmbed", (torch.nn.Module,), {})
    stubs = {"einops": einops, "timm": timm, "timm.models": timm_models, "timm.models.vision_transformer": vit}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update({k: v for k, v in stubs.items() if saved[k] is None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)


@dataclass
class OfficialAR:
    """The official ``LARP_AR`` class and its ``ModelArgs``, imported from a temporary folder."""

    LARP_AR: Any
    ModelArgs: Any
    source: str

    def build(self, config, state_dict: dict[str, torch.Tensor], device: torch.device):
        """An official model with the sizes of a :class:`~larp_lab.config.GeneratorConfig` holding
        ``state_dict`` (larp_lab's generator state dict: the same names and shapes), in eval mode."""
        c = config
        args = self.ModelArgs(
            dim=c.dim, n_layer=c.n_layer, n_head=c.n_head, n_kv_head=c.n_kv_head, multiple_of=c.multiple_of,
            ffn_dim_multiplier=c.ffn_dim_multiplier, norm_eps=c.norm_eps, num_classes=c.num_classes,
            class_dropout_prob=c.class_dropout_prob, vocab_size=c.vocab_size, cls_token_num=c.cls_token_num,
            max_seq_len=c.num_tokens, use_fixed_pe=c.use_fixed_pe, frame_prediction=c.frame_prediction,
        )
        with contextlib.redirect_stdout(io.StringIO()), torch.device(device):  # it prints which PE it uses
            model = self.LARP_AR(args)
        model.load_state_dict(state_dict, strict=True)
        return model.eval()


_LOADED: dict[str, OfficialAR] = {}


def load_official_ar(repo: str | os.PathLike | None = None) -> OfficialAR | None:
    """Import the official generator from a temporary copy; None when no copy of the repository is
    found. Imported once per process (the official packages are the top-level ``ar`` and ``models``)."""
    root = find_official_repo(repo)
    if root is None:
        return None
    if str(root) in _LOADED:
        return _LOADED[str(root)]
    tmp = Path(tempfile.mkdtemp(prefix="larp_official_"))
    for rel in _FILES:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(_read(root, rel))
    (tmp / "models" / "__init__.py").write_text(_REGISTRY_STUB)  # not the official registry (tokenizer imports)
    clash = [m for m in ("ar", "models") if m in sys.modules]
    if clash:
        raise RuntimeError(f"cannot import the official code: modules {clash} are already imported")
    sys.path.insert(0, str(tmp))
    try:
        with _stand_ins():
            import models.larp_ar as larp_ar  # noqa: PLC0415 - from the temporary folder
    finally:
        sys.path.remove(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)  # everything is imported (``ar`` by larp_ar): no copy stays behind
    _LOADED[str(root)] = OfficialAR(larp_ar.LARP_AR, larp_ar.ModelArgs, str(root))
    return _LOADED[str(root)]
