"""The larp-lab command: real runs on tiny models, and bad input -> exit 2 with one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, save_micro_tokenizer

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
    video = read_video(out, 8)
    assert video.shape == (3, 8, 32, 64)  # original | reconstruction
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (16,) and tokens.dtype == np.int64
    assert main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "r.gif"), "--tokenizer", str(tok_dir),
                 "--tokens", str(tmp_path / "t.json")]) == 0
    assert len(json.loads((tmp_path / "t.json").read_text())) == 16


def test_sample_with_untrained_presets_is_labelled(tmp_path, capsys):
    rc = main(["sample", "--class", "3", "-n", "2", "-o", str(tmp_path / "s"), "--generator", "untrained:micro",
               "--tokenizer", "untrained:micro", "--seed", "1"])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["sample_00.mp4", "sample_01.mp4", "tokens.npy"]
    assert np.load(tmp_path / "s" / "tokens.npy").shape == (2, 16)


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
    d, _, _ = official_tokenizer_dir
    res = run_cli("info", str(d))
    assert res.returncode == 0 and json.loads(res.stdout)["format"] == "official"
    res = run_cli("convert", str(d), str(tmp_path / "conv"), "--dtype", "float16")
    assert res.returncode == 0, res.stderr
    res = run_cli("info", str(tmp_path / "conv"))
    assert json.loads(res.stdout)["format"] == "larp_lab"


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
