"""Micro random models shared by the analysis tests (weights nudged off their init so outputs differ per
input; smaller nudges than tests/conftest.py's, which these override here), and no autograd."""

from __future__ import annotations

import pytest
import torch

from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.models.generator import LARPGenerator
from larp_lab.models.tokenizer import LARPTokenizer


def _perturb(model, scale):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return _perturb(LARPTokenizer(TOKENIZER_PRESETS["micro"]()), 0.1)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(1)
    return _perturb(LARPGenerator(GENERATOR_PRESETS["micro"]()), 0.05)
