"""``benchmarks/soak.py`` for one minute on a micro bundle (the hour is run by hand; docs/RELIABILITY.md):
every endpoint the running app lists is driven with good and bad inputs; every good input answered,
every bad one a clear error, nothing escapes the app's code, the app serves to the end, exits cleanly
and leaves no file; memory and open files stay within generous bounds. The flatness verdicts are not
asserted here: a minute is mostly the app's warm-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, save_micro_bundle
from snapshot_helpers import add_snapshots_to_bundle

pytestmark = pytest.mark.slow

RSS_GROWTH_MB = 1500  #: generous: the first minute loads every model, UMAP and the snapshots
FD_GROWTH = 150  #: matplotlib keeps a font file open per (font, worker thread), up to 64 of them


def test_a_minute_of_steady_use(tmp_path):
    bundle = save_micro_bundle(tmp_path / "ckpts", data="digits")
    add_snapshots_to_bundle(bundle, steps=(10, 40), final_steps=100)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "1", "--out", str(out),
                          "--progress", "0", "--", "--checkpoints", str(bundle)],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert res.returncode in (0, 1), res.stdout[-2000:] + res.stderr[-3000:]  # 1: a flatness line failed
    assert "verdict:" in res.stdout, res.stdout[-2000:]
    r = json.loads((out / "soak.json").read_text())
    lines = r["verdict"]["lines"]
    for name in ("good inputs answered", "bad inputs: clear errors", "server log: no crash",
                 "still serving, clean exit", "no temporary file outlives the retention"):
        assert lines[name]["ok"], (name, lines[name]["detail"])
    # every endpoint the app lists, and the tabs' buttons, were driven
    assert set(r["endpoints"]["api"]) >= {"/reconstruct", "/generate", "/edit_tokens", "/swap_tokens",
                                          "/token_influence", "/snapshots"}
    assert not r["endpoints"]["api_new"], r["endpoints"]["api_new"]
    for ep in [*r["endpoints"]["api"], "ui:on_reconstruct", "ui:on_generate", "ui:on_predict", "ui:on_explore"]:
        assert r["per_endpoint"].get(ep, {}).get("good", 0) >= 1, (ep, r["per_endpoint"].get(ep))
    bad = [q for q in r["requests"] if q["kind"] == "bad"]
    assert bad and all(q["error"] for q in bad)  # (every good case runs first, then every bad one)
    s = r["samples"]
    assert len(s) >= 5
    assert max(x["rss_mb"] for x in s) < s[0]["rss_mb"] + RSS_GROWTH_MB, [x["rss_mb"] for x in s]
    assert max(x["fds"] for x in s) < s[0]["fds"] + FD_GROWTH, [x["fds"] for x in s]
    assert r["windows"] and (out / "soak.png").stat().st_size > 10_000
    # the files made at start-up (the page's examples) are named, kept by Gradio to the end, and left out of
    # the retention rule, whose line names the oldest file it did count
    start = r["app"]["startup_files"]
    assert all(x["startup_files"] == len(start) for x in s), ([x["startup_files"] for x in s], start)
    assert not any(x["oldest_file"] in start for x in s)
