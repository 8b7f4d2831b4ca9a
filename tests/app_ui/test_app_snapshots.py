"""The app's Training tab handlers (larp_lab.app.snapshots) on a micro bundle with fake snapshots; the tab in
the running app and the browser is tested in test_app.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save_micro_bundle
from snapshot_helpers import add_snapshots_to_bundle

from larp_lab.app import snapshots as snap_app
from larp_lab.bundled import set_checkpoints_dir
from larp_lab.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = save_micro_bundle(tmp_path_factory.mktemp("snapbundle") / "ckpts", data="digits")
    add_snapshots_to_bundle(root, steps=(10, 40, 160), final_steps=200)
    set_checkpoints_dir(root)
    yield root
    set_checkpoints_dir(None)


def test_scrub_returns_images_and_the_numbers_of_each_snapshot(bundle):
    assert snap_app.available()
    snaps = snap_app.snapshot_list()
    assert [(s.step, s.final) for s in snaps] == [(10, False), (40, False), (160, False), (200, True)]
    first = snap_app.scrub(0)
    for key in ("grid", "curves"):
        img = first[key]
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.shape[0] > 100 and img.std() > 0  # a drawn figure, not a blank
    assert first["index"] == 0 and first["info"]["step"] == 10 and first["info"]["steps"] == [10, 40, 160, 200]
    assert first["text"].startswith("**step 10** of 200 (snapshot 1 of 4): PSNR ")
    assert first["info"]["clips"] == snap_app.APP_CLIPS and first["info"]["uniform_bits_per_token"] == 6.0
    last = snap_app.scrub(-1)
    assert last["index"] == 3 and last["info"]["final"] and "(the final model)" in last["text"]
    assert snap_app.scrub(None)["index"] == 3
    rep = snap_app.snapshot_report()
    for i in range(4):  # the numbers shown are the report's
        assert snap_app.scrub(i)["info"]["psnr_db"] == round(float(rep.psnr[i]), 3)
    assert not np.array_equal(first["grid"], last["grid"])  # another snapshot, other reconstructions


def test_scrubbing_reuses_the_measurement_and_the_images(bundle):
    rep = snap_app.snapshot_report()
    assert snap_app.snapshot_report() is rep  # measured once per bundle, clips and device
    a, b = snap_app.scrub(1), snap_app.scrub(1)
    assert a["grid"] is b["grid"] and a["curves"] is b["curves"]  # rendered once
    assert snap_app.snapshot_report(n_clips=4) is not rep and snap_app.snapshot_report(n_clips=4).num_clips == 4


def test_steps_and_indices_outside_the_snapshots_are_refused(bundle):
    assert snap_app.index_of_step(40) == 1 and snap_app.index_of_step(-1) == 3 and snap_app.index_of_step(200) == 3
    with pytest.raises(ValueError, match=r"no snapshot at step 41; steps: \[10, 40, 160, 200\]"):
        snap_app.index_of_step(41)
    with pytest.raises(ValueError, match="snapshot 4 does not exist: there are 4"):
        snap_app.scrub(4)


def test_without_snapshots_the_tab_says_so(tmp_path):
    root = save_micro_bundle(tmp_path / "plain", data="digits")
    set_checkpoints_dir(root)
    try:
        assert not snap_app.available()
        with pytest.raises(CheckpointError, match="has no training snapshots"):
            snap_app.snapshot_list()
    finally:
        set_checkpoints_dir(None)
