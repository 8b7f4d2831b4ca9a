"""`larp-lab influence` and `larp-lab patch` (issue 19) on a micro tokenizer; bad input -> exit 2."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, save_micro_tokenizer

from larp_lab.cli import main
from larp_lab.data.video import read_video

DIGITS = [str(REPO / "examples" / f"digits_{d}.mp4") for d in (3, 7)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return save_micro_tokenizer(tmp_path_factory.mktemp("cli") / "tok", noise=0.02)


def test_influence_writes_a_mosaic_and_numbers(tok_dir, tmp_path, capsys):
    assert main(["influence", DIGITS[0], "--out", str(tmp_path), "--tokenizer", str(tok_dir), "--codes", "2"]) == 0
    report = json.loads((tmp_path / "influence.json").read_text())
    assert len(report["tokens"]) == len(report["strength"]) == 16 and report["replacement_codes"] == 2
    assert len(report["centroid_yx"]) == 16 and all(0 < s <= 1 for s in report["share_in_best_4x4_block"])
    assert (tmp_path / "influence.png").stat().st_size > 1000
    assert "strongest" in capsys.readouterr().out


def test_patch_all_positions_gives_clip_b(tok_dir, tmp_path, capsys):
    out = tmp_path / "p.mp4"
    assert main(["patch", *DIGITS, "-o", str(out), "--tokenizer", str(tok_dir), "--positions", "all"]) == 0
    assert read_video(out, 8).shape == (3, 8, 32, 3 * 32 + 4)
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("object centre"))
    centre = json.loads(line.split(": ", 1)[1].replace("'", '"'))
    assert centre["patched"] == centre["B"]  # every token from B: the clip B decodes to
    assert main(["patch", *DIGITS, "-o", str(out), "--tokenizer", str(tok_dir), "--positions", "0-3",
                 "--method", "queries", "--layer", "0"]) == 0


def test_patch_refuses_bad_positions(tok_dir, tmp_path, capsys):
    assert main(["patch", *DIGITS, "-o", str(tmp_path / "p.mp4"), "--tokenizer", str(tok_dir),
                 "--positions", "5-99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --positions") and "0..15" in err[0]
