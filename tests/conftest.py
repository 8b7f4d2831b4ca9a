"""Shared test setup: offline Hub, deterministic seeds, official-format fixture directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from larp_lab import LARPGenerator, LARPTokenizer  # noqa: E402
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def official_dir(name: str, dest: Path) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """Write fixture ``name`` as an official Hub-format directory (config.json as the official
    PyTorchModelHubMixin writes it + model.safetensors of the official state dict).

    Returns (directory, io tensors without the ``io.`` prefix, fixture JSON).
    """
    from safetensors.torch import load_file, save_file

    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    tensors = load_file(str(FIXTURES / f"{name}.safetensors"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(
        json.dumps(meta["hub_config_json_as_written_by_PyTorchModelHubMixin_save_pretrained"], indent=2, sort_keys=True)
    )
    save_file({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, str(dest / "model.safetensors"))
    io = {k[len("io.") :]: v for k, v in tensors.items() if k.startswith("io.")}
    return dest, io, meta


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def official_tokenizer_dir(tmp_path_factory):
    return official_dir("tokenizer_small", tmp_path_factory.mktemp("tok_small"))


@pytest.fixture(scope="session")
def official_generator_dir(tmp_path_factory):
    return official_dir("generator_small", tmp_path_factory.mktemp("gen_small"))


@pytest.fixture(scope="session")
def official_fp_dir(tmp_path_factory):
    return official_dir("generator_fp_small", tmp_path_factory.mktemp("gen_fp_small"))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float() - b.detach().float()).abs().max().item()


def save_micro_tokenizer(directory: Path, noise: float = 0.02, seed: int = 0, metadata: dict | None = None,
                         **overrides) -> Path:
    """A micro tokenizer with every parameter perturbed (the official init zeroes its output layer);
    ``metadata`` goes into its config.json (e.g. ``{"data": "digits"}``, what it was trained on) and
    ``overrides`` replace fields of the micro preset (e.g. ``encoder_depth=1``)."""
    from larp_lab import LARPTokenizer
    from larp_lab.config import TOKENIZER_PRESETS

    torch.manual_seed(seed)
    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]().replace(**overrides))
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(noise * torch.randn_like(p))
    tok.save_pretrained(directory, metadata=metadata)
    return directory


def save_micro_bundle(root: Path, data: str = "digits", noise: float = 0.05) -> Path:
    """A bundle of micro models in ``root`` laid out like checkpoints/ (tokenizer, class-conditional
    generator named by the data's classes, frame predictor), each config.json saying it was trained on
    ``data`` as scripts/train_bundled.py writes it: 8 frames of 32x32, 16 tokens, 10 classes for digits. The
    tokenizer has one encoder layer, like the bundle of ``train_bundled.py --size micro`` (a one-step layer
    slider in the app)."""
    from larp_lab.bundled import DEFAULT_FRAME_PREDICTOR, DEFAULT_GENERATOR, DEFAULT_TOKENIZER
    from larp_lab.data.digits import DIGIT_NAMES

    names = DIGIT_NAMES if data == "digits" else tuple(f"class {i}" for i in range(10))
    save_micro_tokenizer(root / DEFAULT_TOKENIZER, noise=noise, metadata={"bundled": DEFAULT_TOKENIZER, "data": data},
                         encoder_depth=1)
    torch.manual_seed(0)
    gen = LARPGenerator(GENERATOR_PRESETS["micro"]().replace(class_names=names))
    gen.save_pretrained(root / DEFAULT_GENERATOR, metadata={"bundled": DEFAULT_GENERATOR, "data": data})
    pred = LARPGenerator(GENERATOR_PRESETS["micro-fp"]())
    pred.save_pretrained(root / DEFAULT_FRAME_PREDICTOR, metadata={"bundled": DEFAULT_FRAME_PREDICTOR, "data": data})
    return root


# --- perturbed micro models (random weights pushed off their init so outputs differ per input),
# shared by the pipelines and app-handler tests; module scope like the tests that use them ---


def small_generator(seed=0, **kw) -> LARPGenerator:
    """A small class-conditional generator (64 wide, 2 layers, 16 tokens over 64 codes, 5 classes; ``kw``
    replaces fields) with every parameter perturbed (the official init zeroes the head), in eval()."""
    from larp_lab import GeneratorConfig

    base = dict(dim=64, n_layer=2, n_head=4, vocab_size=64, num_tokens=16, num_classes=5)
    base.update(kw)
    torch.manual_seed(seed)
    gen = LARPGenerator(GeneratorConfig(**base))
    with torch.no_grad():  # the official init zeroes the head: give it something to say
        for p in gen.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return gen.eval()


def perturbed(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return perturbed(LARPTokenizer(TOKENIZER_PRESETS["micro"]()))


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(1)
    cfg = GENERATOR_PRESETS["micro"]().replace(class_names=tuple(f"class {i}" for i in range(10)))
    return perturbed(LARPGenerator(cfg), 1)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(2)
    return perturbed(LARPGenerator(GENERATOR_PRESETS["micro-fp"]()), 2)

