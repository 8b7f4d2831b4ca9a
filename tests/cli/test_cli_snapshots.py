"""``larp-lab snapshots``: a tokenizer's training snapshots measured on the same clips -> two figures and a JSON;
bad folders -> exit 2 with one error line."""

from __future__ import annotations

import json

import pytest
from conftest import save_micro_bundle
from PIL import Image
from snapshot_helpers import add_snapshots_to_bundle, save_fake_snapshots

from larp_lab.bundled import DEFAULT_TOKENIZER, set_checkpoints_dir
from larp_lab.cli import main


@pytest.fixture(autouse=True)
def _forget_checkpoints_dir():
    yield
    set_checkpoints_dir(None)


def test_snapshots_of_the_bundled_tokenizer_write_figures_and_numbers(tmp_path, capsys):
    bundle = save_micro_bundle(tmp_path / "ckpts", data="digits")
    add_snapshots_to_bundle(bundle, steps=(10, 40, 160), final_steps=200)
    out = tmp_path / "out"
    assert main(["--checkpoints", str(bundle), "snapshots", "--clips", "3", "--keep", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 snapshots of" in text and f"+ the final model {bundle / DEFAULT_TOKENIZER}" in text
    assert "on 3 held-out digits clips (seed 0)" in text and "uniform prior: 6.00 bits/token" in text
    report = json.loads((out / "snapshots.json").read_text())
    rows = report["snapshots"]
    assert [r["step"] for r in rows] == [10, 40, 160, 200] and [r["final"] for r in rows] == [False] * 3 + [True]
    assert report["clips"] == 3 and report["data"] == "digits" and report["uniform_bits_per_token"] == 6.0
    for r in rows:  # each row is printed with the numbers of the JSON
        assert f"{r['step']:>8} {r['psnr_db']:>8.2f} {r['ssim']:>6.3f} {r['used_codes']:>6}" in text
        assert 0 < r["codebook_usage"] <= 3 * 16 / 64 and r["prior_bits_per_token"] > 0
    with Image.open(out / "snapshots.png") as grid, Image.open(out / "snapshot_curves.png") as curves:
        assert grid.size[1] > grid.size[0] * 0.8 and curves.size[0] > curves.size[1]  # 5 rows x 4 columns; 2x2 panels


def test_snapshots_of_a_folder_without_a_final_model(tmp_path, capsys):
    save_fake_snapshots(tmp_path / "snaps", steps=(5, 50))
    out = tmp_path / "out"
    assert main(["snapshots", "--snapshots", str(tmp_path / "snaps"), "--clips", "2", "--data", "digits",
                 "--out", str(out)]) == 0
    rows = json.loads((out / "snapshots.json").read_text())["snapshots"]
    assert [(r["step"], r["final"]) for r in rows] == [(5, False), (50, False)]
    assert "final model" not in capsys.readouterr().out


@pytest.mark.parametrize("setup,args,expect", [
    (None, ["--snapshots", "{tmp}/missing"], "no such snapshots folder"),
    ("empty", ["--snapshots", "{tmp}/snaps"], "no snapshots"),
    ("badname", ["--snapshots", "{tmp}/snaps"], "not a snapshot name"),
    ("snaps", ["--snapshots", "{tmp}/snaps", "--final", "{tmp}/nowhere"], "no config.json"),
    ("snaps", ["--snapshots", "{tmp}/snaps", "--clips", "0"], "--clips must be between 1 and 1000"),
    ("plainbundle", [], "has no training snapshots"),
])
def test_bad_snapshot_folders_exit_2_with_one_line(setup, args, expect, tmp_path, capsys):
    snaps = tmp_path / "snaps"
    pre = []
    if setup == "empty":
        snaps.mkdir()
    elif setup in ("snaps", "badname"):
        save_fake_snapshots(snaps, steps=(5,))
        if setup == "badname":
            (snaps / "step000005").rename(snaps / "latest")
    elif setup == "plainbundle":
        pre = ["--checkpoints", str(save_micro_bundle(tmp_path / "ckpts", data="digits"))]
    argv = [*pre, "snapshots", *[a.format(tmp=tmp_path) for a in args], "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expect in err, err
