"""The larp-lab command: real runs on tiny models, and bad input -> exit 2 with one error line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, save_micro_bundle, save_micro_tokenizer

from larp_lab.bundled import set_checkpoints_dir
from larp_lab.cli import main
from larp_lab.data.video import read_video, write_video

EXAMPLE = REPO / "examples" / "bigbuckbunny_128.mp4"


def run_cli(*args, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "larp_lab", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return save_micro_tokenizer(tmp_path_factory.mktemp("cli") / "tok", noise=0.02)


def test_reconstruct_writes_a_playable_video_and_tokens(tok_dir, tmp_path, capsys):
    out = tmp_path / "rec.mp4"
    rc = main(["reconstruct", str(EXAMPLE), "-o", str(out), "--tokenizer", str(tok_dir), "--tokens",
               str(tmp_path / "t.npy"), "--side-by-side"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "16 tokens" in text
    assert f"tokenizer: {tok_dir}" in text
    assert "used: 8 frames (0.00-0.64 s, every frame at 12.5 fps) of bigbuckbunny_128.mp4; 128x128 resized to 32x32" in text
    video = read_video(out, 8)
    assert video.shape == (3, 8, 32, 64)  # original | reconstruction
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (16,) and tokens.dtype == np.int64
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.gif"), "--tokenizer", str(tok_dir),
                 "--tokens", str(tmp_path / "t.json")]) == 0
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["tokenizer"] == str(tok_dir) and saved["tokens"] == tokens.tolist()


def test_reconstruct_start_takes_later_frames_and_says_so(tok_dir, tmp_path, capsys):
    from larp_lab import LARPTokenizer, pipelines

    tok_json = tmp_path / "t.json"
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", str(tok_dir),
                 "--start", "2", "--tokens", str(tok_json)]) == 0
    assert "used: 8 frames (2.00-2.64 s" in capsys.readouterr().out
    r = pipelines.reconstruct(LARPTokenizer.from_pretrained(tok_dir), EXAMPLE, start_time=2.0)
    assert json.loads(tok_json.read_text())["tokens"] == r.tokens[0].tolist()
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", str(tok_dir),
                 "--start", "99"]) == 2
    assert "past its end" in capsys.readouterr().err


def test_reconstruct_names_the_bundled_tokenizer(tmp_path, capsys):
    from larp_lab.bundled import DEFAULT_TOKENIZER, checkpoints_dir

    if not (checkpoints_dir() / DEFAULT_TOKENIZER / "config.json").is_file():
        pytest.skip("no bundled tokenizer in this checkout")
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4")]) == 0
    assert f"tokenizer: {DEFAULT_TOKENIZER}\n" in capsys.readouterr().out


def test_checkpoints_option_moves_the_bundled_models(tok_dir, tmp_path, capsys):
    from larp_lab.bundled import DEFAULT_TOKENIZER, checkpoints_dir

    root = tmp_path / "ckpts"
    shutil.copytree(tok_dir, root / DEFAULT_TOKENIZER)
    try:
        assert main(["--checkpoints", str(root), "reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4")]) == 0
        assert checkpoints_dir() == root
        out = capsys.readouterr().out
        assert f"tokenizer: {DEFAULT_TOKENIZER}" in out
        # the bundled name resolved to the copy in root: the same tokens as the directory itself
        assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", DEFAULT_TOKENIZER,
                     "--tokens", str(tmp_path / "a.npy")]) == 0
        assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", str(tok_dir),
                     "--tokens", str(tmp_path / "b.npy")]) == 0
        assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    finally:
        set_checkpoints_dir(None)
    missing = tmp_path / "nothing"
    assert main(["--checkpoints", str(missing), "info", str(tok_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and str(missing) in err
    set_checkpoints_dir(None)


def test_sample_with_untrained_presets_is_labelled(tmp_path, capsys):
    rc = main(["sample", "--class", "3", "-n", "2", "-o", str(tmp_path / "s"), "--generator", "untrained:micro",
               "--tokenizer", "untrained:micro", "--seed", "1"])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["sample_00.mp4", "sample_01.mp4", "tokens.npy"]
    assert np.load(tmp_path / "s" / "tokens.npy").shape == (2, 16)
    assert "UNTRAINED" in capsys.readouterr().out


@pytest.mark.parametrize("make_input,expect", [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: (d / "notes.mp4").write_text("hello") and d / "notes.mp4", "not a readable video"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") is not None and d / "empty.mp4", "empty"),
])
def test_bad_video_input_exits_2_with_one_error_line(make_input, expect, tmp_path, tok_dir):
    path = make_input(tmp_path)
    res = run_cli("reconstruct", str(path), "-o", str(tmp_path / "o.mp4"), "--tokenizer", str(tok_dir))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args,expect", [
    (["reconstruct", str(EXAMPLE), "-o", "x.mp4", "--tokenizer", "hywang66/LARP-L-long-tokenizer"], "Download"),
    (["reconstruct", str(EXAMPLE), "-o", "x.mp4", "--tokenizer", "/nonexistent/dir"], "no such checkpoint"),
    (["reconstruct", str(EXAMPLE), "-o", "x.avi", "--tokenizer", "untrained:micro"], "only .mp4 and .gif"),
    (["reconstruct", str(EXAMPLE), "-o", "x.mp4", "--tokenizer", "untrained:huge"], "unknown tokenizer preset"),
    (["sample", "--class", "nope", "-o", "s", "--generator", "untrained:micro", "--tokenizer", "untrained:micro"],
     "unknown class"),
    (["sample", "--class", "1", "-o", "s", "--generator", "untrained:micro", "--tokenizer", "untrained:tiny"],
     "does not match"),
    (["reconstruct"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2(args, expect, tmp_path):
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], res.stderr


def test_info_and_convert_via_subprocess(official_tokenizer_dir, tmp_path):
    from larp_lab import LARPTokenizer

    d, _, _ = official_tokenizer_dir
    res = run_cli("info", str(d), "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["source_format"] == "official"
    n = sum(p.numel() for p in LARPTokenizer.from_pretrained(d).parameters())
    assert json.loads(res.stdout)["parameters"] == n  # from the safetensors header; the fixed tables left out
    res = run_cli("convert", str(d), str(tmp_path / "conv"), "--dtype", "float16")
    assert res.returncode == 0, res.stderr
    res = run_cli("info", str(tmp_path / "conv"))
    assert res.returncode == 0, res.stderr
    assert "format:     larp_lab format 1" in res.stdout and "stored as float16" in res.stdout
    assert "8 frames of 32x32" in res.stdout and "16 holistic tokens" in res.stdout


CARD = """# my-generator

Words about the model.

## Training

- Command: `larp-lab train-generator --config c.yaml`
- Steps: 1200
- Hardware: x86_64, 2 CPU threads, no GPU
- Wall time: 16.8 min of training steps

<details><summary>Resolved config</summary>

| not | shown |
|---|---|
| 1 | 2 |
</details>

## Metrics (96 samples, seed 0)

| CFG scale | class accuracy | proxy gFVD |
|---|---|---|
| 3.0 | 91.4% | 18.2 |
| 1.0 | 80.0% | - |

- prior: 7.1 bits per token (uniform: 10 bits)
"""


def test_info_describes_a_model_for_a_user(tmp_path, capsys):
    from larp_lab import LARPGenerator
    from larp_lab.bundled import DEFAULT_GENERATOR
    from larp_lab.config import GENERATOR_PRESETS

    names = tuple(f"kind {i}" for i in range(10))
    gen = LARPGenerator(GENERATOR_PRESETS["micro"]().replace(class_names=names))
    root = tmp_path / "ckpts"
    d = gen.save_pretrained(root / DEFAULT_GENERATOR)
    (d / "MODEL_CARD.md").write_text(CARD)
    assert main(["info", str(d)]) == 0
    out = capsys.readouterr().out
    n = sum(p.numel() for p in gen.parameters())
    assert "model:      class-conditional LARP generator" in out
    assert "tokens:     16 tokens per clip from a vocabulary of 64" in out
    assert f"parameters: {n / 1e6:.2f}M" in out
    assert "classes:    10: kind 0, kind 1, kind 2" in out and "format:     larp_lab format 1" in out
    assert "training (from MODEL_CARD.md):\n  Command: `larp-lab train-generator --config c.yaml`\n  Steps: 1200" in out
    assert "  Hardware: x86_64, 2 CPU threads, no GPU\n  Wall time: 16.8 min" in out
    assert "  (96 samples, seed 0)\n  CFG scale 3.0: class accuracy 91.4%, proxy gFVD 18.2\n" in out
    assert "  CFG scale 1.0: class accuracy 80.0%\n  prior: 7.1 bits per token (uniform: 10 bits)" in out
    assert "not" not in out.split("metrics")[-1].split()  # the <details> block is skipped
    # by bundled name (--checkpoints), and as JSON
    try:
        assert main(["--checkpoints", str(root), "info", DEFAULT_GENERATOR, "--json"]) == 0
    finally:
        set_checkpoints_dir(None)
    info = json.loads(capsys.readouterr().out)
    assert info["class_names"] == list(names) and info["parameters"] == n and info["num_classes"] == 10
    assert info["card"]["training"][1] == "Steps: 1200"
    # a tokenizer: clip size, tokens, codebook, prior share of the parameters; no card said so
    from larp_lab import LARPTokenizer

    tok_dir = save_micro_tokenizer(tmp_path / "tok")
    tok = LARPTokenizer.from_pretrained(tok_dir)
    assert main(["info", str(tok_dir)]) == 0
    out = capsys.readouterr().out
    prior = sum(p.numel() for p in tok.prior_model.parameters())
    total = sum(p.numel() for p in tok.parameters())
    assert "model:      LARP video tokenizer with its AR prior" in out
    assert "clips:      8 frames of 32x32" in out and "codebook:   64 codes of 16 dimensions" in out
    assert f"parameters: {total / 1e6:.2f}M (prior {prior / 1e6:.2f}M, the rest {(total - prior) / 1e6:.2f}M)" in out
    assert "no MODEL_CARD.md" in out and "classes" not in out


def test_info_of_a_hub_repo_reads_the_weights_header_remotely(official_tokenizer_dir, tmp_path, monkeypatch, capsys):
    """`info OWNER/NAME` downloads config.json and the cards only; the weights' header is read remotely."""
    from types import SimpleNamespace

    import huggingface_hub

    from larp_lab.checkpoint import read_safetensors_header

    d, _, _ = official_tokenizer_dir
    snap = tmp_path / "snapshot"
    snap.mkdir()
    shutil.copy(d / "config.json", snap / "config.json")
    asked = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kw):
        asked.append((repo_id, tuple(allow_patterns)))
        return str(snap)

    def fake_metadata(repo_id, **kw):
        header = read_safetensors_header(d / "model.safetensors")
        tensors = {k: SimpleNamespace(dtype=dt, shape=list(shape)) for k, (dt, shape) in header.items()}
        return SimpleNamespace(files_metadata={"model.safetensors": SimpleNamespace(tensors=tensors)})

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", fake_metadata)
    assert main(["info", "someone/LARP-test-tokenizer", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert asked == [("someone/LARP-test-tokenizer", ("config.json", "*.md"))]  # no weights asked for
    from larp_lab import LARPTokenizer

    assert info["parameters"] == sum(p.numel() for p in LARPTokenizer.from_pretrained(d).parameters())
    assert "not downloaded" in info["weights"] and info["directory"].startswith("someone/LARP-test-tokenizer (Hub")

    def offline(repo_id, **kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", offline)
    assert main(["info", "someone/LARP-test-tokenizer"]) == 0
    assert "could not be read (offline?)" in capsys.readouterr().out
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert main(["info", "someone/LARP-test-tokenizer"]) == 2
    assert "could not read someone/LARP-test-tokenizer from the Hugging Face Hub" in capsys.readouterr().err


def _help_text(capsys, *args) -> str:
    with pytest.raises(SystemExit) as e:
        main([*args, "sample", "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_sample_help_lists_the_classes_from_config_json_only(tmp_path, capsys):
    from larp_lab.bundled import DEFAULT_GENERATOR

    root = tmp_path / "ckpts"
    (root / DEFAULT_GENERATOR).mkdir(parents=True)
    body = {"larp_lab_format": 1, "model": "generator", "config": {"class_names": ["cats", "100% dogs", "owls"]}}
    (root / DEFAULT_GENERATOR / "config.json").write_text(json.dumps(body))  # no weights: none are read
    text = _help_text(capsys, "--checkpoints", str(root))
    assert f"The default generator ({DEFAULT_GENERATOR}) has 3 classes: cats; 100% dogs; owls" in text.replace(
        "- ", "-")
    text = _help_text(capsys, "--checkpoints", str(tmp_path / "missing"))
    assert "larp-lab info GENERATOR" in text and "--checkpoints DIR" in text and "classes:" not in text


def test_sample_help_lists_the_bundled_classes():
    from larp_lab.bundled import DEFAULT_GENERATOR, checkpoints_dir

    if not (checkpoints_dir() / DEFAULT_GENERATOR / "config.json").is_file():
        pytest.skip("no bundled generator in this checkout")
    names = json.loads((checkpoints_dir() / DEFAULT_GENERATOR / "config.json").read_text())["config"]["class_names"]
    res = run_cli("sample", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split()).replace("- ", "-")
    assert f"has {len(names)} classes: " + "; ".join(names) in text
    res = run_cli("info", DEFAULT_GENERATOR)
    assert res.returncode == 0 and ", ".join(names) in res.stdout


# ------------------------------------------------------------------------------------------------
# what the models were trained on: evaluate --data, reconstruct, info
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_tok_dir(tmp_path_factory):
    """A micro tokenizer whose config.json says it was trained on moving digits (as the bundled ones do)."""
    return save_micro_tokenizer(tmp_path_factory.mktemp("cli") / "digits_tok", noise=0.02,
                                metadata={"data": "digits"})


def _evaluate(capsys, tmp_path, *args, before: tuple = ()) -> tuple[dict, str]:
    out = tmp_path / "metrics.json"
    assert main([*before, "evaluate", "--num-clips", "4", "--batch-size", "4", "--json", str(out), *args]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_evaluate_measures_on_the_data_the_tokenizer_was_trained_on(digits_tok_dir, tok_dir, tmp_path, capsys):
    report, out = _evaluate(capsys, tmp_path, "--tokenizer", str(digits_tok_dir))
    assert report["data"] == "digits" and report["tokenizer_metrics"]["clips"] == 4
    assert ("data: digits (what the tokenizer was trained on, from its config.json): MovingDigits(num_clips=4, "
            "frames=8, size=32, seed=10000, split='heldout'") in out  # held-out digits, at the tokenizer's size
    digits_psnr = report["tokenizer_metrics"]["psnr_db"]
    # a tokenizer that does not say: synthetic, as before
    report, out = _evaluate(capsys, tmp_path, "--tokenizer", str(tok_dir))
    assert report["data"] == "synthetic" and "data: synthetic (the default): SyntheticVideos(" in out
    # asked for: held-out digits, whatever the tokenizer says; the same clips as by default
    report, out = _evaluate(capsys, tmp_path, "--tokenizer", str(digits_tok_dir), "--data", "digits")
    assert report["data"] == "digits" and "data: digits: MovingDigits(" in out
    assert report["tokenizer_metrics"]["psnr_db"] == digits_psnr
    report, _ = _evaluate(capsys, tmp_path, "--tokenizer", str(digits_tok_dir), "--data", "synthetic")
    assert report["data"] == "synthetic"
    assert main(["evaluate", "--tokenizer", str(tok_dir), "--data", "mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown --data 'mnist'; use digits, synthetic, photos") and len(err.splitlines()) == 1


def _evaluate_help(capsys, *args) -> str:
    with pytest.raises(SystemExit) as e:
        main([*args, "evaluate", "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split()).replace("- ", "-")


def test_evaluate_help_says_the_default_data(tmp_path, capsys):
    from larp_lab.bundled import DEFAULT_TOKENIZER

    root = tmp_path / "ckpts"
    (root / DEFAULT_TOKENIZER).mkdir(parents=True)
    body = {"larp_lab_format": 1, "model": "tokenizer", "config": {}, "metadata": {"data": "digits"}}
    (root / DEFAULT_TOKENIZER / "config.json").write_text(json.dumps(body))  # no weights: none are read
    text = _evaluate_help(capsys, "--checkpoints", str(root))
    assert "digits, synthetic, photos, videos:DIR, folder:DIR, csv:FILE[:ROOT]" in text
    assert "(digits: held-out moving digits, drawn from digit images never used in training)" in text
    assert ('Default: the data the tokenizer was trained on (metadata "data" of its config.json), else synthetic; '
            f"for the bundled {DEFAULT_TOKENIZER} that is digits") in text
    body["metadata"] = {}
    (root / DEFAULT_TOKENIZER / "config.json").write_text(json.dumps(body))
    text = _evaluate_help(capsys, "--checkpoints", str(root))
    assert f"the bundled {DEFAULT_TOKENIZER} here names none, so synthetic" in text


def test_reconstruct_and_info_say_what_the_model_was_trained_on(digits_tok_dir, tok_dir, tmp_path, capsys):
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", str(digits_tok_dir)]) == 0
    out = capsys.readouterr().out
    assert ("trained on: moving digits, 32x32, 8 frames only (clips unlike those, such as real footage, "
            "reconstruct poorly)\n") in out
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4"), "--tokenizer", str(tok_dir)]) == 0
    assert "trained on" not in capsys.readouterr().out  # its config.json does not say
    assert main(["info", str(digits_tok_dir)]) == 0
    assert 'trained on: moving digits (config.json metadata "data": digits)' in capsys.readouterr().out


def test_a_digits_bundle_is_the_default_everywhere(tmp_path, capsys):
    """--checkpoints at a digits bundle: evaluate measures on held-out digits, sample --help lists the
    digits, sample takes a digit, reconstruct says what the bundled tokenizer was trained on."""
    root = save_micro_bundle(tmp_path / "ckpts", data="digits")
    try:
        report, out = _evaluate(capsys, tmp_path, before=("--checkpoints", str(root)))
        assert report["data"] == "digits" and report["tokenizer"] == "default" and "split='heldout'" in out
        assert main(["--checkpoints", str(root), "sample", "--class", "7", "-n", "1", "-o", str(tmp_path / "s")]) == 0
        assert "1 samples of class '7'" in capsys.readouterr().out
        assert main(["--checkpoints", str(root), "reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.mp4")]) == 0
        assert "trained on: moving digits, 32x32, 8 frames only" in capsys.readouterr().out
    finally:
        set_checkpoints_dir(None)
    with pytest.raises(SystemExit):
        main(["--checkpoints", str(root), "sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "has 10 classes: 0; 1; 2; 3; 4; 5; 6; 7; 8; 9" in text


def test_evaluate_default_data_for_the_bundled_tokenizer():
    """Whatever bundle is in checkpoints/ (or $LARP_LAB_CHECKPOINTS): the default --data is the data its
    tokenizer's config.json names, else synthetic."""
    from larp_lab.bundled import DEFAULT_TOKENIZER, find_checkpoints_dir
    from larp_lab.cli import _default_eval_data

    root = find_checkpoints_dir()
    if root is None or not (root / DEFAULT_TOKENIZER / "config.json").is_file():
        pytest.skip("no bundled tokenizer in this checkout")
    meta = json.loads((root / DEFAULT_TOKENIZER / "config.json").read_text()).get("metadata") or {}
    assert _default_eval_data("default") == meta.get("data", "synthetic")
    res = run_cli("evaluate", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split()).replace("- ", "-")
    assert (f"for the bundled {DEFAULT_TOKENIZER} that is {meta['data']}" if meta.get("data")
            else f"the bundled {DEFAULT_TOKENIZER} here names none, so synthetic") in text


def test_video_helpers_round_trip(tmp_path):
    t = torch.linspace(0, 1, 6)[None, :, None, None]
    yy = torch.linspace(-1, 1, 33)[None, None, :, None]
    xx = torch.linspace(-1, 1, 50)[None, None, None, :]
    x = torch.cat([(xx + t).expand(1, 6, 33, 50), yy.expand(1, 6, 33, 50), (xx * yy).expand(1, 6, 33, 50)]).clamp(-1, 1)
    write_video(tmp_path / "a.mp4", x)  # odd height: padded to even for yuv420p
    back = read_video(tmp_path / "a.mp4", 6)
    assert back.shape == (3, 6, 34, 50)  # padded by one edge row
    assert torch.equal(back[:, :, 33], back[:, :, 32]) or (back[:, :, 33] - back[:, :, 32]).abs().max() < 0.1
    assert (back[:, :, :33] - x).abs().mean() < 0.05  # lossy codec, smooth picture
    looped = read_video(tmp_path / "a.mp4", 10, size=16)
    assert looped.shape == (3, 10, 16, 16) and torch.equal(looped[:, 6], looped[:, 0])
