"""Finding models by name: the bundled checkpoints, untrained presets, local directories, Hub ids.

``load_default_tokenizer()`` / ``load_default_generator()`` / ``load_default_frame_predictor()``
load the small models shipped in the repository's ``checkpoints/`` directory, offline. The
directory can be moved with the ``LARP_LAB_CHECKPOINTS`` environment variable.

:func:`resolve_tokenizer` and :func:`resolve_generator` turn the ``--tokenizer`` / ``--generator``
arguments of the CLI and the app into models:

* ``"default"`` (or a bundled model's directory name): the bundled checkpoint;
* ``"untrained:<preset>"``: a randomly initialised preset (``TOKENIZER_PRESETS`` /
  ``GENERATOR_PRESETS``) -- useful to try the pipeline, useless for pictures, and labelled so;
* a local checkpoint directory, or a Hub repo id such as ``hywang66/LARP-L-long-tokenizer``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from .hub import CheckpointError

DEFAULT_TOKENIZER = "larp-tiny-tokenizer"
DEFAULT_GENERATOR = "larp-tiny-generator"
DEFAULT_FRAME_PREDICTOR = "larp-tiny-frame-predictor"
UNTRAINED_PREFIX = "untrained:"


def checkpoints_dir() -> Path:
    """The bundled checkpoints directory (``$LARP_LAB_CHECKPOINTS`` or ``<repo>/checkpoints``)."""
    env = os.environ.get("LARP_LAB_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


def bundled_path(name: str) -> Path:
    path = checkpoints_dir() / name
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the bundled model {name!r} is not in {checkpoints_dir()}; use a checkpoint directory, a Hub repo id, "
            f"or 'untrained:<preset>' (presets: {sorted(TOKENIZER_PRESETS)})"
        )
    return path


def load_default_tokenizer(device: torch.device | str = "cpu"):
    """The bundled tokenizer (with its prior), offline."""
    from .models.tokenizer import LARPTokenizer

    return LARPTokenizer.from_pretrained(bundled_path(DEFAULT_TOKENIZER), device=device)


def load_default_generator(device: torch.device | str = "cpu"):
    """The bundled class-conditional generator, offline."""
    from .models.generator import LARPGenerator

    return LARPGenerator.from_pretrained(bundled_path(DEFAULT_GENERATOR), device=device)


def load_default_frame_predictor(device: torch.device | str = "cpu"):
    """The bundled frame-prediction generator, offline."""
    from .models.generator import LARPGenerator

    return LARPGenerator.from_pretrained(bundled_path(DEFAULT_FRAME_PREDICTOR), device=device)


def _untrained(spec: str, presets: dict, kind: str):
    name = spec[len(UNTRAINED_PREFIX) :]
    if name not in presets:
        raise CheckpointError(f"unknown {kind} preset {name!r}; choose one of {sorted(presets)}")
    warnings.warn(f"using an UNTRAINED {kind} ({name}, random weights): outputs are noise", stacklevel=3)
    return presets[name]()


def resolve_tokenizer(spec: str = "default", device: torch.device | str = "cpu", seed: int = 0):
    """A tokenizer from a name, directory, Hub id or ``untrained:<preset>`` (see module docstring)."""
    from .models.tokenizer import LARPTokenizer

    if spec.startswith(UNTRAINED_PREFIX):
        cfg = _untrained(spec, TOKENIZER_PRESETS, "tokenizer")
        torch.manual_seed(seed)
        return LARPTokenizer(cfg, device=device).eval()
    if spec == "default":
        return load_default_tokenizer(device)
    if not Path(spec).exists() and (checkpoints_dir() / spec / "config.json").is_file():
        spec = str(checkpoints_dir() / spec)
    return LARPTokenizer.from_pretrained(spec, device=device)


def resolve_generator(spec: str = "default", device: torch.device | str = "cpu", seed: int = 0):
    """A generator from a name, directory, Hub id or ``untrained:<preset>``."""
    from .models.generator import LARPGenerator

    if spec.startswith(UNTRAINED_PREFIX):
        cfg = _untrained(spec, GENERATOR_PRESETS, "generator")
        torch.manual_seed(seed)
        return LARPGenerator(cfg, device=device).eval()
    if spec == "default":
        return load_default_generator(device)
    if not Path(spec).exists() and (checkpoints_dir() / spec / "config.json").is_file():
        spec = str(checkpoints_dir() / spec)
    return LARPGenerator.from_pretrained(spec, device=device)


def is_untrained(spec: str) -> bool:
    return spec.startswith(UNTRAINED_PREFIX)
