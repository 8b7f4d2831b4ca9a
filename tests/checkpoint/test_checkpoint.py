"""Checkpoints: round trips, the official format, and refusing bad or hostile files safely."""

from __future__ import annotations

import json
import pickle
import tracemalloc
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from larp_lab import CheckpointError, ConfigError, LARPGenerator, LARPTokenizer
from larp_lab.checkpoint import read_safetensors_header
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS, TokenizerConfig


@pytest.fixture(scope="module")
def micro_tok():
    torch.manual_seed(0)
    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]())
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return tok.eval()


@pytest.fixture(scope="module")
def micro_gen():
    torch.manual_seed(0)
    gen = LARPGenerator(GENERATOR_PRESETS["micro"]().replace(class_names=tuple(f"c{i}" for i in range(10))))
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return gen.eval()


def test_tokenizer_round_trip_is_bit_exact(micro_tok, tmp_path):
    micro_tok.save_pretrained(tmp_path / "tok", metadata={"note": "test"})
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["larp_lab_format"] == 1 and cfg["model"] == "tokenizer" and cfg["metadata"] == {"note": "test"}
    back = LARPTokenizer.from_pretrained(tmp_path / "tok")
    assert back.config == micro_tok.config
    assert back.checkpoint_metadata == {"note": "test"} and micro_tok.checkpoint_metadata == {}
    back.checkpoint_metadata["note"] = "changed"  # a copy: the model's own stays as loaded
    assert back.checkpoint_metadata == {"note": "test"}
    a, b = micro_tok.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(micro_tok.reconstruct(x), back.reconstruct(x))


def test_generator_round_trip_is_bit_exact(micro_gen, tmp_path):
    micro_gen.save_pretrained(tmp_path / "gen")
    back = LARPGenerator.from_pretrained(tmp_path / "gen")
    assert back.config == micro_gen.config and back.config.class_names[3] == "c3"
    a, b = micro_gen.state_dict(), back.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    labels = torch.tensor([1, 2])
    assert torch.equal(micro_gen.sample(labels, greedy=True), back.sample(labels, greedy=True))


def test_half_precision_storage_restores_float32(micro_tok, tmp_path):
    micro_tok.save_pretrained(tmp_path / "h", dtype=torch.float16)
    header = read_safetensors_header(tmp_path / "h" / "model.safetensors")
    assert {d for d, _ in header.values()} == {"F16"}
    back = LARPTokenizer.from_pretrained(tmp_path / "h")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    w = micro_tok.x_embedder.proj.weight
    assert torch.equal(back.x_embedder.proj.weight, w.half().float())


def test_wrong_model_kind_is_refused(micro_gen, tmp_path):
    micro_gen.save_pretrained(tmp_path / "gen")
    with pytest.raises(CheckpointError, match="holds a generator"):
        LARPTokenizer.from_pretrained(tmp_path / "gen")


def test_key_and_shape_mismatches_name_the_keys(micro_tok, tmp_path):
    micro_tok.save_pretrained(tmp_path / "t")
    f = tmp_path / "t" / "model.safetensors"
    sd = load_file(str(f))
    sd.pop("bottleneck.in_linear.bias")
    sd["surprise.weight"] = torch.zeros(2)
    sd["final_layer.linear.bias"] = torch.zeros(5)
    save_file(sd, str(f))
    with pytest.raises(CheckpointError) as e:
        LARPTokenizer.from_pretrained(tmp_path / "t")
    msg = str(e.value)
    assert "bottleneck.in_linear.bias" in msg and "surprise.weight" in msg and "final_layer.linear.bias" in msg


def test_config_that_does_not_match_the_weights(micro_tok, tmp_path):
    micro_tok.save_pretrained(tmp_path / "t")
    cfg_path = tmp_path / "t" / "config.json"
    body = json.loads(cfg_path.read_text())
    body["config"]["codebook_size"] = 128
    cfg_path.write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match="bottleneck.regularizer.embedding.weight"):
        LARPTokenizer.from_pretrained(tmp_path / "t")


class _Payload:
    """Unpickling this runs code: it would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_config(d, micro_tok):
    d.mkdir(parents=True, exist_ok=True)
    body = {"larp_lab_format": 1, "model": "tokenizer", "config": micro_tok.config.to_dict(), "metadata": {}}
    (d / "config.json").write_text(json.dumps(body))


def test_pickle_payload_is_refused_without_running(micro_tok, tmp_path):
    marker = tmp_path / "PWNED"
    # a torch-style zip checkpoint whose pickle runs code
    d = tmp_path / "legacy"
    _write_config(d, micro_tok)
    torch.save({"model": _Payload(marker)}, d / "model.pt")  # torch.save pickles the payload object
    assert zipfile.is_zipfile(d / "model.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        LARPTokenizer.from_pretrained(d)
    assert not marker.exists()
    # a raw pickle renamed to model.safetensors
    d2 = tmp_path / "renamed"
    _write_config(d2, micro_tok)
    (d2 / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="safetensors"):
        LARPTokenizer.from_pretrained(d2)
    assert not marker.exists()


def test_plain_legacy_state_dict_loads(micro_tok, tmp_path):
    d = tmp_path / "legacy_ok"
    _write_config(d, micro_tok)
    torch.save({"state_dict": micro_tok.state_dict()}, d / "model.pt")
    back = LARPTokenizer.from_pretrained(d)
    assert torch.equal(back.encoder_latent_query_embed, micro_tok.encoder_latent_query_embed)


def test_truncated_safetensors_is_refused(micro_tok, tmp_path):
    micro_tok.save_pretrained(tmp_path / "t")
    f = tmp_path / "t" / "model.safetensors"
    data = f.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        f.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a valid|too short|corrupt"):
            LARPTokenizer.from_pretrained(tmp_path / "t")
    f.write_bytes(b"")
    with pytest.raises(CheckpointError):
        LARPTokenizer.from_pretrained(tmp_path / "t")


def test_absurd_config_is_refused_before_allocation(tmp_path):
    cfg = TOKENIZER_PRESETS["micro"]().to_dict()
    cfg["encoder_hidden_size"] = 16384
    cfg["encoder_depth"] = 256
    d = tmp_path / "absurd"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"larp_lab_format": 1, "model": "tokenizer", "config": cfg}))
    (d / "model.safetensors").write_bytes(b"\x00" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="parameters"):
            LARPTokenizer.from_pretrained(d)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    for bad, match in (
        ({"num_tokens": -3}, "num_tokens"),
        ({"encoder_hidden_size": 66}, "divisible"),
        ({"input_size": 30}, "divide"),
        ({"patch_size": "8"}, "integer"),
        ({"mystery": 1}, "unknown keys"),
    ):
        c = TOKENIZER_PRESETS["micro"]().to_dict() | bad
        with pytest.raises(ConfigError, match=match):
            TokenizerConfig.from_dict(c)


def test_malformed_config_json(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        LARPTokenizer.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="neither"):
        LARPTokenizer.from_pretrained(d)
    with pytest.raises(CheckpointError, match="no such"):
        LARPTokenizer.from_pretrained(tmp_path / "missing")


def test_offline_repo_id_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Download config.json and model.safetensors"):
        LARPTokenizer.from_pretrained("hywang66/LARP-L-long-tokenizer")


def test_official_file_without_prior_and_tables(official_tokenizer_dir, tmp_path):
    d, io, _ = official_tokenizer_dir
    sd = load_file(str(d / "model.safetensors"))
    slim = {k: v for k, v in sd.items() if not k.startswith("prior_model.")
            and k not in ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed")}
    out = tmp_path / "slim"
    out.mkdir()
    (out / "config.json").write_text((d / "config.json").read_text())
    save_file(slim, str(out / "model.safetensors"))
    with pytest.warns(UserWarning, match="no prior_model"):
        tok = LARPTokenizer.from_pretrained(out, pixel_range="minus_one_one")
    assert tok.prior_model is None and tok.config.prior is None
    assert torch.equal(tok.encoder_patch_pe, sd["encoder_patch_pe"])  # recomputed bit-identically
    with torch.no_grad():
        assert torch.equal(tok.encode(io["x"]).indices, io["encode.bottleneck_rep"])
    # a partial prior is not silently accepted
    partial = dict(slim)
    partial["prior_model.pos_emb"] = sd["prior_model.pos_emb"]
    save_file(partial, str(out / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys"):
        LARPTokenizer.from_pretrained(out)


def test_convert_official_to_project_format(official_tokenizer_dir, official_generator_dir, tmp_path):
    from larp_lab.cli import main

    d, io, _ = official_tokenizer_dir
    assert main(["convert", str(d), str(tmp_path / "tok")]) == 0
    tok = LARPTokenizer.from_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["larp_lab_format"] == 1
    assert tok.config.pixel_range == "zero_one"
    ref = LARPTokenizer.from_pretrained(d)
    a, b = ref.state_dict(), tok.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    g, gio, _ = official_generator_dir
    assert main(["convert", str(g), str(tmp_path / "gen")]) == 0
    gen = LARPGenerator.from_pretrained(tmp_path / "gen")
    assert torch.equal(gen.sample(gio["cond_idx"], greedy=True), gio["generate.greedy"].long())


# ------------------------------------------------------------------------------------------------
# The mixin: class attributes say what a model is; no module of the checkpoint layer imports models
# ------------------------------------------------------------------------------------------------


def test_checkpoint_layer_does_not_import_the_models():
    import subprocess
    import sys

    code = (
        "import sys, larp_lab.checkpoint, larp_lab.official; "
        "print(sorted(m for m in sys.modules if m.startswith('larp_lab')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["larp_lab", "larp_lab.checkpoint", "larp_lab.config", "larp_lab.official"]
    with pytest.raises(ImportError):
        __import__("larp_lab.hub")


def test_models_declare_their_checkpoint_format():
    from larp_lab.checkpoint import PretrainedMixin
    from larp_lab.config import GeneratorConfig
    from larp_lab.evaluation.classifier import ClassifierConfig, VideoClassifier
    from larp_lab.official import GENERATOR_FORMAT, TOKENIZER_FORMAT

    assert (LARPTokenizer.config_class, LARPTokenizer.checkpoint_kind, LARPTokenizer.official_format) == (
        TokenizerConfig, "tokenizer", TOKENIZER_FORMAT)
    assert (LARPGenerator.config_class, LARPGenerator.checkpoint_kind, LARPGenerator.official_format) == (
        GeneratorConfig, "generator", GENERATOR_FORMAT)
    assert (VideoClassifier.config_class, VideoClassifier.checkpoint_kind, VideoClassifier.official_format) == (
        ClassifierConfig, "video_classifier", None)
    assert all(issubclass(c, PretrainedMixin) for c in (LARPTokenizer, LARPGenerator, VideoClassifier))


def test_classifier_checkpoints_go_through_the_same_strict_loader(micro_tok, tmp_path):
    from larp_lab.evaluation.classifier import ClassifierConfig, VideoClassifier

    torch.manual_seed(0)
    clf = VideoClassifier(ClassifierConfig(num_classes=3, frames=8, size=16, width=4)).eval()
    clf.save_pretrained(tmp_path / "clf", metadata={"note": 1})
    back = VideoClassifier.from_pretrained(tmp_path / "clf")
    assert back.config == clf.config and not back.training
    assert all(torch.equal(a, b) for a, b in zip(clf.state_dict().values(), back.state_dict().values()))
    f = tmp_path / "clf" / "model.safetensors"
    sd = load_file(str(f))
    sd["head.bias"] = torch.zeros(5)
    save_file(sd, str(f))
    with pytest.raises(CheckpointError, match=r"head\.bias: file \(5,\) vs model \(3,\)"):
        VideoClassifier.from_pretrained(tmp_path / "clf")
    micro_tok.save_pretrained(tmp_path / "tok")
    with pytest.raises(CheckpointError, match="holds a tokenizer, not a video_classifier; load it with LARPTokenizer"):
        VideoClassifier.from_pretrained(tmp_path / "tok")
    with pytest.raises(CheckpointError, match="holds a video_classifier, not a tokenizer; load it with VideoClassifier"):
        LARPTokenizer.from_pretrained(tmp_path / "clf")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from larp_lab.checkpoint import atomic_write_bytes

    target = tmp_path / "sub" / "f.txt"
    atomic_write_bytes(target, lambda p: open(p, "w").write("old"))
    assert target.read_text() == "old"

    def fails(p):
        open(p, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, fails)
    assert target.read_text() == "old" and sorted(x.name for x in target.parent.iterdir()) == ["f.txt"]
