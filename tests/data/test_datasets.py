"""Datasets: synthetic classes, photo pans, windows of videos, folder/CSV trees, mixing, collation.

File-based datasets are tested on small lossless clips whose pixels encode the frame number and
the pixel position (see tests/test_video_io.py), so each check can tell exactly which frames,
window and flip an item used.
"""

from __future__ import annotations

import csv
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_video_io import coded_clip, frame_ids

from larp_lab.data import (
    BUNDLED_PHOTOS,
    CLASS_NAMES,
    NUM_CLASSES,
    MixedDataset,
    PhotoPans,
    SkippedVideoWarning,
    SyntheticVideos,
    VideoCSV,
    VideoError,
    VideoFolder,
    VideoWindows,
    bundled_photos,
    collate_videos,
    render_clip,
    to_uint8_frames,
    write_video,
)
from larp_lab.data import synthetic as synthetic_module

# ----------------------------------------------------------------------------------------------
# Synthetic videos
# ----------------------------------------------------------------------------------------------


def test_synthetic_shapes_range_labels_and_names():
    assert len(CLASS_NAMES) == NUM_CLASSES >= 10 and len(set(CLASS_NAMES)) == NUM_CLASSES
    ds = SyntheticVideos(num_clips=30, frames=16, size=64, seed=0)
    assert len(ds) == 30
    labels = set()
    for i in range(NUM_CLASSES):
        item = ds[i]
        v = item["video"]
        assert v.shape == (3, 16, 64, 64) and v.dtype == torch.float32
        assert -1.0 <= float(v.min()) and float(v.max()) <= 1.0 and float(v.std()) > 0.05
        assert item["label"] == i % NUM_CLASSES and item["index"] == i
        assert float((v[:, 1:] - v[:, :-1]).abs().mean()) > 1e-4  # something moves in every class
        labels.add(item["label"])
    assert labels == set(range(NUM_CLASSES))
    assert ds[-1]["index"] == 29
    with pytest.raises(IndexError):
        ds[30]
    for frames, size in ((1, 16), (8, 32), (5, 24)):
        assert SyntheticVideos(4, frames, size)[3]["video"].shape == (3, frames, size, size)


def test_synthetic_is_deterministic_per_seed_and_index():
    a, b = SyntheticVideos(100, 8, 32, seed=7), SyntheticVideos(100, 8, 32, seed=7)
    later = a[41]["video"]
    _ = [a[i] for i in (3, 99, 0)]  # order and history do not matter
    assert torch.equal(a[41]["video"], later) and torch.equal(b[41]["video"], later)
    assert not torch.equal(a[41]["video"], a[53]["video"])  # same class, other clip
    assert not torch.equal(SyntheticVideos(100, 8, 32, seed=8)[41]["video"], later)
    np.random.seed(0)
    torch.manual_seed(0)
    x = a[5]["video"]
    np.random.seed(1)
    torch.manual_seed(1)
    assert torch.equal(a[5]["video"], x)  # global random state is never used
    assert np.array_equal(render_clip(41 % NUM_CLASSES, np.random.default_rng([7, 41]), 8, 32), later.numpy())
    with pytest.raises(ValueError, match="label must be in"):
        render_clip(NUM_CLASSES, np.random.default_rng(0))


def _motion_features(video: torch.Tensor) -> np.ndarray:
    """Colour-blind motion descriptors of a (3, T, S, S) clip."""
    x = video.numpy().mean(0)  # (T, S, S) grey
    d = np.abs(np.diff(x, axis=0))  # (T-1, S, S) temporal change
    e = d.mean((1, 2))
    s = d.shape[1]
    ys, xs = np.mgrid[0:s, 0:s] / s
    w = d + 1e-8
    cy = (w * ys).sum((1, 2)) / w.sum((1, 2))
    cx = (w * xs).sum((1, 2)) / w.sum((1, 2))
    spread = np.sqrt((w * ((ys - cy[:, None, None]) ** 2 + (xs - cx[:, None, None]) ** 2)).sum((1, 2)) / w.sum((1, 2)))
    vel = np.hypot(np.diff(cx), np.diff(cy))
    return np.array([
        np.log(e.mean() + 1e-6), (d > 0.05).mean(), e.std() / (e.mean() + 1e-6), vel.mean(),
        np.abs(np.diff(vel)).mean(), spread.mean(), spread.std(), np.abs(np.diff(e)).mean() / (e.mean() + 1e-6),
        np.hypot(cx[-1] - cx[0], cy[-1] - cy[0]),
    ])


def test_synthetic_classes_differ_by_motion():
    """A nearest-centroid classifier on colour-blind motion statistics must beat chance by far."""
    per_class = 16
    ds = SyntheticVideos(per_class * NUM_CLASSES, 16, 48, seed=3)
    feats = np.stack([_motion_features(ds[i]["video"]) for i in range(len(ds))])
    labels = np.arange(len(ds)) % NUM_CLASSES
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    train = np.arange(len(ds)) < len(ds) // 2
    centroids = np.stack([z[train & (labels == c)].mean(0) for c in range(NUM_CLASSES)])
    pred = np.argmin(((z[~train, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float((pred == labels[~train]).mean())
    assert accuracy > 0.5, f"motion statistics separate the classes poorly: accuracy {accuracy:.2f}"
    moving = np.array([feats[labels == c, 1].mean() for c in range(NUM_CLASSES)])
    assert CLASS_NAMES[int(moving.argmax())] == "background pan"  # the whole frame moves only in a pan
    flicker = np.array([feats[labels == c, 7].mean() for c in range(NUM_CLASSES)])
    assert CLASS_NAMES[int(flicker.argmax())] == "blinking"  # motion energy switches on and off
    travel = np.array([feats[labels == c, 8].mean() for c in range(NUM_CLASSES)])  # first-to-last shift
    in_place = [CLASS_NAMES.index(n) for n in ("rotating", "zooming", "shaking", "expanding ring")]
    travelling = [CLASS_NAMES.index(n) for n in ("falling", "zigzag", "bouncing", "orbiting")]
    assert 2 * travel[in_place].max() < travel[travelling].min()


def _rotation_change(shape: str) -> list[float]:
    """Fraction of a shape's area that changes when it is turned by 90 and by 180 degrees."""
    masks = []
    for angle in (0.0, np.pi / 2, np.pi):
        canvas = np.zeros((3, 1, 64, 64), np.float32)
        synthetic_module._draw(canvas, shape, np.ones(3, np.float32), np.array([0.5]), np.array([0.5]), 0.3, angle)
        masks.append(canvas[0, 0])
    assert masks[0].sum() > 50
    return [float(np.abs(m - masks[0]).sum() / masks[0].sum()) for m in masks[1:]]


def test_rotating_shapes_have_no_rotational_symmetry():
    assert max(_rotation_change("square")) < 0.1 and max(_rotation_change("disc")) < 0.1  # the measure works
    for name in synthetic_module._CLASS_SHAPES[CLASS_NAMES.index("rotating")]:
        assert min(_rotation_change(name)) > 0.5, f"{name} looks the same after a rotation"


def test_bounding_boxes_change_nothing(monkeypatch):
    """Objects are drawn only inside their bounding box; drawing everywhere gives the same pixels."""
    clips = [render_clip(c, np.random.default_rng([4, c]), 8, 40) for c in range(NUM_CLASSES)]
    monkeypatch.setattr(synthetic_module, "_EXTENT", 100.0)
    for c in range(NUM_CLASSES):
        assert np.array_equal(render_clip(c, np.random.default_rng([4, c]), 8, 40), clips[c]), CLASS_NAMES[c]


def test_synthetic_speed_sanity():
    """No timing assertion: renders use the cached grids; the rate is printed (pytest -s)."""
    ds = SyntheticVideos(200, 16, 64, seed=11)
    ds[0]
    misses = synthetic_module._coords.cache_info().misses
    start = time.perf_counter()
    n = 60
    for i in range(n):
        ds[i]
    rate = n / (time.perf_counter() - start)
    assert synthetic_module._coords.cache_info().misses == misses  # grids built once per (T, S)
    print(f"synthetic 64x64x16: {rate:.0f} clips/s on one core")


# ----------------------------------------------------------------------------------------------
# Photo pans
# ----------------------------------------------------------------------------------------------


def test_bundled_photographs_and_credits():
    photos = bundled_photos()
    names = [p.name for p in photos]
    assert len(photos) == len(BUNDLED_PHOTOS) == 11 and "grace_hopper.jpg" in names and "astronaut.png" in names
    credits = {name: credit for (_, name), credit in BUNDLED_PHOTOS.items()}
    assert all(("public domain" in credits[n]) or ("CC0" in credits[n]) for n in names)
    readme = (Path(__file__).resolve().parents[2] / "larp_lab" / "data" / "README.md").read_text()
    for n in names:
        assert n in readme, n


def test_photo_pans_are_smooth_deterministic_camera_moves():
    ds = PhotoPans(20, frames=12, size=48, seed=0)
    steps, spans = [], []
    for i in range(6):
        item = ds[i]
        v = item["video"]
        assert v.shape == (3, 12, 48, 48) and v.dtype == torch.float32 and item["label"] == -1
        assert -1.0 <= float(v.min()) and float(v.max()) <= 1.0 and float(v.std()) > 0.1
        steps.append(float((v[:, 1:] - v[:, :-1]).abs().mean()))
        spans.append(float((v[:, -1] - v[:, 0]).abs().mean()))
    assert min(spans) > 0.01  # the camera moves in every clip
    assert np.mean(steps) < 0.5 * np.mean(spans)  # ... smoothly: neighbouring frames are close
    assert torch.equal(ds[3]["video"], PhotoPans(20, frames=12, size=48, seed=0)[3]["video"])
    assert not torch.equal(ds[3]["video"], PhotoPans(20, frames=12, size=48, seed=1)[3]["video"])


def test_photo_pans_on_own_images(tmp_path):
    yy, xx = np.mgrid[0:90, 0:120]
    img = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "g.png")
    v = PhotoPans(3, frames=4, size=16, images=[tmp_path / "g.png"])[0]["video"]
    assert v.shape == (3, 4, 16, 16)
    g = to_uint8_frames(v)[0, :, :, 1].astype(int)  # green = 2 * row: smooth, increasing down
    assert (np.diff(g[:, 8]) >= 0).all() and g[-1, 8] > g[0, 8]
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(VideoError, match="not a readable image"):
        PhotoPans(3, images=[tmp_path / "bad.png"])[0]
    with pytest.raises(VideoError, match="no such image"):
        PhotoPans(3, images=[tmp_path / "missing.png"])


# ----------------------------------------------------------------------------------------------
# Trees of files
# ----------------------------------------------------------------------------------------------


def _x0_and_flip(video: torch.Tensor) -> tuple[int, bool]:
    g = to_uint8_frames(video)[0, 0, :, 1].astype(int)  # green = 5 * column of the original
    return int(g.min()) // 5, bool(g[0] > g[-1])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """root/<class>/...: two classes of coded clips, one corrupt file, one class without videos."""
    root = tmp_path_factory.mktemp("tree")
    for d in ("jump", "run/sub", "zz_empty"):
        (root / d).mkdir(parents=True)
    coded_clip(root / "jump" / "a.mkv", n=20)
    coded_clip(root / "jump" / "b.mkv", n=5)  # shorter than the window
    (root / "jump" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    coded_clip(root / "run" / "sub" / "c.mkv", n=30)
    (root / "run" / "notes.txt").write_text("not a video")
    return root


def test_video_folder_layout_labels_and_official_sampling(tree):
    ds = VideoFolder(tree, frames=8, size=32, train=True, seed=0)
    assert ds.classes == ["jump", "run", "zz_empty"]
    assert [(p.name, k) for p, k in ds.samples] == [("a.mkv", 0), ("b.mkv", 0), ("broken.mp4", 0), ("c.mkv", 1)]
    starts, flips = set(), set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[3]
        assert item["label"] == 1 and item["path"].endswith("c.mkv") and item["index"] == 3
        ids = frame_ids(item["video"])
        assert ids == list(range(ids[0], ids[0] + 8)) and 0 <= ids[0] <= 22  # consecutive frames
        x0, flipped = _x0_and_flip(item["video"])
        assert x0 == 8  # centre crop, as the official transform
        starts.add(ids[0])
        flips.add(flipped)
    assert len(starts) > 2 and flips == {True, False}
    assert frame_ids(ds[1]["video"]) == [0, 1, 2, 3, 4, 4, 4, 4]  # short clip: last frame repeated
    strided = VideoFolder(tree, frames=4, size=32, stride=3)[0]["video"]
    ids = frame_ids(strided)
    assert np.diff(ids).tolist() == [3, 3, 3] and ids[0] <= 20 - 10
    uniform = VideoFolder(tree, frames=4, size=32, frame_rate="uniform")[3]["video"]
    assert frame_ids(uniform) == [0, 7, 14, 21]


def test_video_folder_eval_is_reproducible_and_unflipped(tree):
    a = VideoFolder(tree, frames=8, size=32, train=False, seed=5)
    b = VideoFolder(tree, frames=8, size=32, train=False, seed=5)
    for i in (0, 3):
        assert torch.equal(a[i]["video"], b[i]["video"])
    for epoch in range(4):
        a.set_epoch(epoch)
        assert _x0_and_flip(a[3]["video"]) == (8, False)


def test_bad_files_are_skipped_counted_and_replaced(tree):
    ds = VideoFolder(tree, frames=8, size=32, seed=0)
    with pytest.warns(SkippedVideoWarning, match=r"broken\.mp4.*Skipping it"):
        item = ds[2]  # broken.mp4 -> replaced by the next readable file in the list
    assert item["path"].endswith("c.mkv") and item["label"] == 1 and item["index"] == 2
    assert ds.skipped == 1 and ds.skipped_files[0].endswith("broken.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad files are not retried nor warned about again
        again = ds[2]
        assert ds.skipped == 1
    fresh = VideoFolder(tree, frames=8, size=32, seed=0)
    with pytest.warns(SkippedVideoWarning):
        assert torch.equal(fresh[2]["video"], again["video"]) and torch.equal(item["video"], again["video"])


def test_a_file_deleted_after_listing_is_skipped(tmp_path):
    (tmp_path / "k").mkdir()
    for name in ("a.mkv", "b.mkv"):
        coded_clip(tmp_path / "k" / name, n=10)
    ds = VideoFolder(tmp_path, frames=4, size=32)
    (tmp_path / "k" / "a.mkv").unlink()
    with pytest.warns(SkippedVideoWarning, match="no such file"):
        assert ds[0]["path"].endswith("b.mkv")
    assert ds.skipped_files == [str(tmp_path / "k" / "a.mkv")]


def test_no_readable_video_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_text("nope")
    (tmp_path / "a" / "y.avi").write_bytes(b"")
    ds = VideoFolder(tmp_path, frames=4, size=16)
    with pytest.warns(SkippedVideoWarning), pytest.raises(VideoError, match="none of the 2 videos could be read"):
        ds[0]
    assert ds.skipped == 2
    with pytest.raises(VideoError, match="no videos found"):
        VideoFolder(tmp_path / "a", frames=4, size=16)
    with pytest.raises(VideoError, match="no such folder"):
        VideoFolder(tmp_path / "missing")


def _write_csv(path: Path, rows: list[dict], header=("id", "path", "action", "label")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header))
        w.writeheader()
        w.writerows(rows)
    return path


def test_video_csv_official_format(tree, tmp_path):
    rows = [
        {"id": 3, "path": "run/sub/c.mkv", "action": "Run", "label": 1},
        {"id": 1, "path": "jump/a.mkv", "action": "Jump", "label": 0},
        {"id": 9, "path": "jump/missing.mkv", "action": "Jump", "label": 0},
        {"id": 2, "path": "jump/broken.mp4", "action": "Jump", "label": 0},
        {"id": 4, "path": str(tree / "jump" / "b.mkv"), "action": "", "label": ""},  # absolute, unlabelled
    ]
    csv_file = _write_csv(tmp_path / "ucf101_train.csv", rows)
    ds = VideoCSV(csv_file, tree, frames=8, size=32, train=True, seed=0)
    assert [str(p) for p, _ in ds.samples] == sorted(str(p) for p, _ in ds.samples)  # sorted by path
    assert len(ds) == 5 and ds.label_names == {0: "Jump", 1: "Run"}
    with pytest.warns(SkippedVideoWarning) as caught:
        items = [ds[i] for i in range(len(ds))]
    assert ds.skipped == 2 and sorted(Path(p).name for p in ds.skipped_files) == ["broken.mp4", "missing.mkv"]
    assert len(caught) == 2
    labels = {Path(it["path"]).name: it["label"] for it in items}
    assert labels["c.mkv"] == 1 and labels["a.mkv"] == 0 and labels["b.mkv"] == -1
    for it in items:
        ids = frame_ids(it["video"])
        assert it["video"].shape == (3, 8, 32, 32)
        assert ids == list(range(ids[0], ids[0] + 8)) or ids[-1] == ids[-2]  # consecutive, or padded
    val = VideoCSV(_write_csv(tmp_path / "ucf101_val.csv", rows[:2]), tree, frames=8, size=32, train=False)
    assert all(_x0_and_flip(val[i]["video"]) == (8, False) for i in range(2))


@pytest.mark.parametrize("content,expect", [
    ("id,file,label\n1,a.mkv,0\n", "no 'path' column"),
    ("id,path,action,label\n", "lists no videos"),
    ("id,path,action,label\n1,a.mkv,A,zero\n", "is not an integer"),
    ("id,path,action,label\n1,,A,0\n", "the path is empty"),
])
def test_video_csv_refuses_malformed_files(content, expect, tmp_path):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(VideoError, match=expect):
        VideoCSV(tmp_path / "m.csv", tmp_path)
    with pytest.raises(VideoError, match="no such CSV"):
        VideoCSV(tmp_path / "none.csv", tmp_path)


def test_video_windows(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    coded_clip(tmp_path / "one.mkv", n=30)
    coded_clip(tmp_path / "deep" / "er" / "two.mkv", n=12, w=40, h=32)
    write_video(tmp_path / "deep" / "three.mp4", torch.rand(3, 10, 32, 48) * 2 - 1)
    write_video(tmp_path / "four.gif", torch.rand(3, 6, 32, 32) * 2 - 1)
    (tmp_path / "five.webm").write_bytes(b"garbage" * 50)
    (tmp_path / "readme.txt").write_text("ignored")
    ds = VideoWindows(tmp_path, num_clips=40, frames=6, size=24, seed=2, train=True)
    assert sorted(p.name for p in ds.files) == ["five.webm", "four.gif", "one.mkv", "three.mp4", "two.mkv"]
    with pytest.warns(SkippedVideoWarning, match="five.webm"):
        items = [ds[i] for i in range(len(ds))]
    assert ds.skipped == 1
    assert {Path(it["path"]).name for it in items} == {"four.gif", "one.mkv", "three.mp4", "two.mkv"}
    assert all(it["video"].shape == (3, 6, 24, 24) and it["label"] == -1 for it in items)
    again = VideoWindows(tmp_path, num_clips=40, frames=6, size=24, seed=2, train=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(torch.equal(again[i]["video"], items[i]["video"]) for i in (0, 7, 39))
    coded = [it for it in items if Path(it["path"]).name == "one.mkv"]
    starts = {frame_ids(it["video"])[0] for it in coded}
    assert len(coded) > 3 and len(starts) > 2 and max(starts) <= 24  # windows fit inside the clip
    ev = VideoWindows(tmp_path, num_clips=10, frames=6, size=24, train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [Path(ev[i]["path"]).name for i in range(10)]
        assert ev[4]["path"].endswith("one.mkv") and not _x0_and_flip(ev[4]["video"])[1]  # centre crop, no flip
    # file i % n in sorted path order; five.webm is unreadable and replaced by the next file
    assert names[:5] == ["two.mkv", "three.mp4", "four.gif", "four.gif", "one.mkv"] and names[5:] == names[:5]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no video files"):
        VideoWindows(empty, 4)


# ----------------------------------------------------------------------------------------------
# Mixing and collation
# ----------------------------------------------------------------------------------------------


def test_mixed_dataset_and_collate(tree):
    syn = SyntheticVideos(50, frames=8, size=32)
    pans = PhotoPans(10, frames=8, size=32)
    mix = MixedDataset([(syn, 3.0), (pans, 1.0)], num_clips=4000, seed=1)
    chosen = np.array([mix.choose(i)[0] for i in range(4000)])
    assert abs(float((chosen == 0).mean()) - 0.75) < 0.03
    assert mix.choose(17) == MixedDataset([(syn, 3.0), (pans, 1.0)], num_clips=4000, seed=1).choose(17)
    assert [mix.choose(i) for i in range(20)] != [MixedDataset([(syn, 3), (pans, 1)], 4000, seed=2).choose(i) for i in range(20)]
    item = mix[5]
    k, j = mix.choose(5)
    assert item["index"] == 5 and item["source"] == k and item["source_index"] == j
    assert torch.equal(item["video"], [syn, pans][k][j]["video"])
    batch = collate_videos([mix[i] for i in range(4)])
    assert batch["video"].shape == (4, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["source"].dtype == torch.int64 and batch["source"].shape == (4,)
    loader = torch.utils.data.DataLoader(mix, batch_size=3, collate_fn=collate_videos)
    first = next(iter(loader))
    assert first["video"].shape == (3, 3, 8, 32, 32) and torch.equal(first["video"][1], mix[1]["video"])
    folder = VideoFolder(tree, frames=8, size=32)
    both = collate_videos([folder[0], folder[3]])
    MixedDataset([(folder, 1.0), (syn, 1.0)], 10).set_epoch(3)  # forwarded to the file dataset
    assert folder.epoch == 3
    assert both["path"][1].endswith("c.mkv") and both["label"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="use the same frames and size"):
        collate_videos([syn[0], SyntheticVideos(5, frames=8, size=16)[0]])
    with pytest.raises(ValueError, match="positive finite"):
        MixedDataset([(syn, 0.0)], 10)
    with pytest.raises(ValueError, match="at least one"):
        MixedDataset([], 10)
