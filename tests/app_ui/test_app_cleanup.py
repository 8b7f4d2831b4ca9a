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
