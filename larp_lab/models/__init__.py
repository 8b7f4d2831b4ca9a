"""The three LARP models: tokenizer (with its prior) and generator. Nothing here imports from
training, analysis, viz or the app."""

from .capture import ActivationCache, SequenceLayout, capture, hook_point_names
from .generator import LARPGenerator
from .prior import LARPPrior
from .tokenizer import LARPTokenizer, TokenizerEncoding, TokenizerOutput

__all__ = [
    "ActivationCache",
    "LARPGenerator",
    "LARPPrior",
    "LARPTokenizer",
    "SequenceLayout",
    "TokenizerEncoding",
    "TokenizerOutput",
    "capture",
    "hook_point_names",
]
