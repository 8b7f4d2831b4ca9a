"""larp_lab: train, run and look inside LARP, the video tokenizer with a learned AR prior.

Public names (imported lazily, so ``import larp_lab`` stays light)::

    from larp_lab import LARPTokenizer, LARPGenerator
    from larp_lab import TokenizerConfig, GeneratorConfig, PriorConfig
    from larp_lab import load_default_tokenizer, load_default_generator

Paper: Wang et al., "LARP: Tokenizing Videos with a Learned Autoregressive Generative Prior",
arXiv 2410.21264 (ICLR 2025). Official code: https://github.com/hywang66/LARP (MIT).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "LARPTokenizer": "larp_lab.models.tokenizer",
    "TokenizerEncoding": "larp_lab.models.tokenizer",
    "LARPGenerator": "larp_lab.models.generator",
    "LARPPrior": "larp_lab.models.prior",
    "TokenizerConfig": "larp_lab.config",
    "GeneratorConfig": "larp_lab.config",
    "PriorConfig": "larp_lab.config",
    "TOKENIZER_PRESETS": "larp_lab.config",
    "GENERATOR_PRESETS": "larp_lab.config",
    "PRIOR_PRESETS": "larp_lab.config",
    "ConfigError": "larp_lab.config",
    "CheckpointError": "larp_lab.checkpoint",
    "load_default_tokenizer": "larp_lab.bundled",
    "load_default_generator": "larp_lab.bundled",
    "load_default_frame_predictor": "larp_lab.bundled",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .bundled import load_default_frame_predictor, load_default_generator, load_default_tokenizer
    from .checkpoint import CheckpointError
    from .config import (
        GENERATOR_PRESETS,
        PRIOR_PRESETS,
        TOKENIZER_PRESETS,
        ConfigError,
        GeneratorConfig,
        PriorConfig,
        TokenizerConfig,
    )
    from .models.generator import LARPGenerator
    from .models.prior import LARPPrior
    from .models.tokenizer import LARPTokenizer, TokenizerEncoding


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'larp_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
