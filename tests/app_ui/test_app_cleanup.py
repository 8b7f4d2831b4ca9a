"""The app's clean-up of Gradio's cache folder: Gradio deletes the files it cached but not the directory it
made for each (one per upload and per result); ``app.prune_empty_dirs`` removes those once empty and
untouched for a while, and nothing else."""

from __future__ import annotations

import importlib.util
import os
import time

from conftest import REPO


def _app():
    spec = importlib.util.spec_from_file_location("larp_lab_app_main", REPO / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prune_empty_dirs_removes_only_old_empty_directories(tmp_path):
    app = _app()
    old = time.time() - 3600
    (tmp_path / "a").mkdir()  # empty, old: removed
    (tmp_path / "b").mkdir()  # holds a file: kept, and the file too
    (tmp_path / "b" / "result.mp4").write_bytes(b"x")
    (tmp_path / "c").mkdir()  # empty but just made (Gradio may be about to write into it): kept
    (tmp_path / "d" / "e").mkdir(parents=True)  # nested, old and empty: removed, then d (touched by that) kept
    for p in ("a", "b", "d/e", "d"):
        os.utime(tmp_path / p, (old, old))
    assert app.prune_empty_dirs(tmp_path, min_age_s=60) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["b", "b/result.mp4", "c", "d"]
    assert app.prune_empty_dirs(tmp_path / "missing", min_age_s=60) == 0


def test_tree_stats_names_the_oldest_file_and_leaves_out_the_excluded(tmp_path):
    from app_http import tree_files, tree_stats

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "digits_3.mp4").write_bytes(b"abc")  # made at start-up: excluded
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.mp4").write_bytes(b"12345")
    (tmp_path / "out" / "new.mp4").write_bytes(b"1")
    now = time.time()
    os.utime(tmp_path / "examples" / "digits_3.mp4", (now - 7200, now - 7200))
    os.utime(tmp_path / "out" / "result.mp4", (now - 600, now - 600))
    assert tree_files(tmp_path) == {"examples/digits_3.mp4", "out/result.mp4", "out/new.mp4"}
    everything = tree_stats(tmp_path)
    assert everything.oldest_file == "examples/digits_3.mp4" and everything.oldest_file_s > 7000
    ts = tree_stats(tmp_path, exclude={"examples/digits_3.mp4"})
    assert (ts.bytes, ts.files, ts.dirs) == (9, 3, 2)  # the excluded file still counts in the totals
    assert ts.oldest_file == "out/result.mp4" and 590 < ts.oldest_file_s < 700
    assert tree_stats(tmp_path, exclude=tree_files(tmp_path)).oldest_file_s == 0.0
