"""Moving digits (larp_lab/data/digits.py): the teaching set of the CPU bundle.

Every frame is checked against the digit images themselves: a helper finds, in a rendered frame,
which digit image of :func:`digit_images` it shows (bilinearly upsampled, as the docstring says),
where, and in what colour, so labels, splits, motion and colours are tested from the pixels, not
from the renderer's own parameters.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from larp_lab.data import DIGIT_NAMES, NUM_DIGIT_CLASSES, MovingDigits, digit_images


def _upsampled(split: str, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(the split's digit images upsampled to d x d (n, d, d), each divided by its maximum; labels)."""
    images, labels = digit_images(split)
    up = torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=(d, d), mode="bilinear",
                                         align_corners=False)[:, 0].clamp(0, 1).numpy()
    return up / up.max(axis=(1, 2), keepdims=True), labels


def _locate(frame: np.ndarray, sprites: np.ndarray) -> tuple[int, int, int, float]:
    """(image, y, x, error): the upsampled digit image ``sprites[image]`` and the top-left corner
    (y, x) of its d x d window that best explain ``frame`` (uint8 (3, S, S)); error = the largest
    difference of the frame's brightest channel from the image (both scaled to maximum 1) over the
    window. Only windows that hold all of the frame's ink are candidates."""
    f = frame.astype(np.float64)
    gray = f[int(f.reshape(3, -1).sum(1).argmax())]  # the colour's strongest channel
    gray = gray / gray.max()
    S, d = gray.shape[0], sprites.shape[1]
    ys, xs = np.nonzero(gray)
    windows = [(y, x) for y in range(max(0, ys.max() - d + 1), min(ys.min(), S - d) + 1)
               for x in range(max(0, xs.max() - d + 1), min(xs.min(), S - d) + 1)]
    crops = np.stack([gray[y:y + d, x:x + d] for y, x in windows])  # (W, d, d)
    err = np.abs(crops[:, None] - sprites[None]).max(axis=(2, 3))  # (W, n)
    w, img = np.unravel_index(int(err.argmin()), err.shape)
    return int(img), windows[w][0], windows[w][1], float(err[w, img])


def _track(clip: np.ndarray, sprites: np.ndarray) -> tuple[int, np.ndarray]:
    """(image, positions int (T, 2) of its window's top-left corner) of a one-digit clip (3, T, S, S)."""
    img, *_ = _locate(clip[:, 0], sprites)
    pos = []
    for t in range(clip.shape[1]):
        i, y, x, err = _locate(clip[:, t], sprites[img : img + 1])
        assert err < 0.02, (t, err)
        pos.append((y, x))
    return img, np.array(pos)


# ----------------------------------------------------------------------------------------------
# determinism, shapes, item == render
# ----------------------------------------------------------------------------------------------


def test_a_clip_is_a_pure_function_of_seed_split_and_index():
    a = MovingDigits(50, frames=8, size=32, seed=3)
    again = MovingDigits(50, frames=8, size=32, seed=3)
    clips, labels = a.render(range(6))
    assert torch.equal(a[4]["video"], a[4]["video"]) and torch.equal(a[4]["video"], again[4]["video"])
    np.testing.assert_array_equal(again.render(range(6))[0], clips)
    # batch composition and order do not matter
    sub, sub_labels = a.render([5, 1, 5])
    np.testing.assert_array_equal(sub, clips[[5, 1, 5]])
    np.testing.assert_array_equal(sub_labels, labels[[5, 1, 5]])
    # other indices, seeds and splits differ
    assert all(not np.array_equal(clips[i], clips[j]) for i in range(6) for j in range(i))
    other_seed = MovingDigits(50, frames=8, size=32, seed=4).render(range(6))[0]
    heldout = MovingDigits(50, frames=8, size=32, seed=3, split="heldout").render(range(6))[0]
    assert all(not np.array_equal(clips[i], other_seed[i]) and not np.array_equal(clips[i], heldout[i])
               for i in range(6))
    # num_clips is only the length: clip i is the same in a longer set
    np.testing.assert_array_equal(MovingDigits(10, frames=8, size=32, seed=3).render([4])[0], clips[[4]])


def test_items_and_render_agree_shapes_dtypes_ranges():
    ds = MovingDigits(20, frames=8, size=32, seed=1)
    assert len(ds) == 20 and ds.classes == DIGIT_NAMES == tuple("0123456789") and NUM_DIGIT_CLASSES == 10
    clips, labels = ds.render([0, 7, 19])
    assert clips.dtype == np.uint8 and clips.shape == (3, 3, 8, 32, 32)
    assert labels.dtype == np.int64 and labels.shape == (3,) and set(labels.tolist()) <= set(range(10))
    for j, i in enumerate((0, 7, 19)):
        item = ds[i]
        v = item["video"]
        assert v.dtype == torch.float32 and v.shape == (3, 8, 32, 32)
        assert float(v.min()) == -1.0 and float(v.max()) <= 1.0  # black background
        assert torch.equal(v, torch.from_numpy(clips[j]).float() / 127.5 - 1.0)
        assert item["label"] == int(labels[j]) and isinstance(item["label"], int) and item["index"] == i
    assert ds[-1]["index"] == 19 and torch.equal(ds[-1]["video"], ds[19]["video"])
    other = MovingDigits(4, frames=3, size=24, seed=0, digit_size=10)
    assert other[0]["video"].shape == (3, 3, 24, 24) and other.render([1, 2])[0].shape == (2, 3, 3, 24, 24)
    with pytest.raises(IndexError, match="out of range for 20 clips"):
        ds[20]
    with pytest.raises(IndexError):
        ds.render([0, 20])


def test_render_of_no_clips_is_empty():
    clips, labels = MovingDigits(5, frames=4, size=16).render([])
    assert clips.shape == (0, 3, 4, 16, 16) and clips.dtype == np.uint8
    assert labels.shape == (0,) and labels.dtype == np.int64


# ----------------------------------------------------------------------------------------------
# what a clip shows: the labelled digit image, in its split, inside the frame, moving and bouncing
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_each_clip_shows_one_digit_image_of_its_split_with_its_label(split):
    ds = MovingDigits(40, frames=2, size=32, seed=0, split=split)
    sprites, sprite_labels = _upsampled(split, 16)
    other, _ = _upsampled("heldout" if split == "train" else "train", 16)
    clips, labels = ds.render(range(40))
    for clip, label in zip(clips, labels):
        img, y, x, err = _locate(clip[:, 0], sprites)
        assert err < 0.02, err  # exactly that image (up to the uint8 rounding)
        assert label == sprite_labels[img]
        *_, err_other = _locate(clip[:, 0], other)
        assert err_other > 0.1  # and no image of the other split
    assert len(set(labels.tolist())) >= 8  # the ten digits come up (40 clips: at least 8 of them)


def test_splits_are_disjoint_and_cover_the_1797_images():
    from sklearn.datasets import load_digits

    train, train_y = digit_images("train")
    held, held_y = digit_images("heldout")
    assert train.shape == (1438, 8, 8) and held.shape == (359, 8, 8)  # every fifth image is held out
    assert train.dtype == held.dtype == np.float32 and float(train.min()) == 0.0 and float(train.max()) == 1.0
    assert train_y.dtype == np.int64 and set(train_y.tolist()) == set(held_y.tolist()) == set(range(10))
    all_digits = load_digits()
    everything = {(im.astype(np.float32) / 16).tobytes(): int(y) for im, y in zip(all_digits.images, all_digits.target)}
    a = {im.tobytes(): int(y) for im, y in zip(train, train_y)}
    b = {im.tobytes(): int(y) for im, y in zip(held, held_y)}
    assert len(a) == 1438 and len(b) == 359 and not a.keys() & b.keys()  # disjoint
    assert {**a, **b} == everything  # together: all 1,797 images, with their labels
    with pytest.raises(ValueError, match="split must be 'train' or 'heldout'"):
        digit_images("test")  # type: ignore[arg-type]


def test_the_digit_stays_inside_the_frame_on_black_and_moves_at_its_speed():
    """A wide frame (no wall within reach for most clips): a clip that stays a speed's width away
    from the walls moves in a straight line, (T - 1) * speed pixels from its first frame."""
    T, S, d = 10, 160, 8
    sprites, _ = _upsampled("train", d)
    for speed in (1.0, 2.0, 3.0):
        ds = MovingDigits(16, frames=T, size=S, seed=5, digit_size=d, min_speed=speed, max_speed=speed)
        clips, _ = ds.render(range(16))
        straight = 0
        for clip in clips:
            img, pos = _track(clip, sprites)
            assert pos.min() >= 0 and pos.max() <= S - d  # the whole d x d window in the frame, every frame
            steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
            assert steps.max() <= speed + 1.5  # rounding to whole pixels: at most 1 px per axis
            if pos.min() >= speed + 1 and pos.max() <= S - d - speed - 1:  # never near a wall: no bounce
                straight += 1
                assert abs(np.linalg.norm(pos[-1] - pos[0]) - speed * (T - 1)) <= 1.5, (speed, pos)
        assert straight >= 8, (speed, straight)
    # speeds spread over [min_speed, max_speed]
    clips, _ = MovingDigits(12, frames=T, size=S, seed=6, digit_size=d).render(range(12))
    mean_steps = []
    for clip in clips:
        _, pos = _track(clip, sprites)
        mean_steps.append(np.linalg.norm(np.diff(pos, axis=0), axis=1).mean())
    assert min(mean_steps) < 1.8 and max(mean_steps) > 2.0 and max(mean_steps) <= 3 + 1.5, mean_steps


def test_the_digit_bounces_off_the_walls():
    """32x32 frames, 16x16 digits: over 40 frames the digit reaches the walls and turns back."""
    sprites, _ = _upsampled("train", 16)
    clips, _ = MovingDigits(6, frames=40, size=32, seed=2, min_speed=2.0, max_speed=3.0).render(range(6))
    for clip in clips:
        _, pos = _track(clip, sprites)
        assert pos.min() >= 0 and pos.max() <= 16
        ax = int(np.abs(np.diff(pos, axis=0)).sum(0).argmax())  # the axis it moves most along (>= 1.4 px/frame)
        p = pos[:, ax]
        turns = np.count_nonzero(np.diff(np.sign(np.diff(p))[np.diff(p) != 0]))
        assert turns >= 2, p  # bounced at least twice
        assert p.min() <= 2 and p.max() >= 14, p  # at the walls when it turned


def test_colours_are_bright_and_saturated_on_black():
    ds = MovingDigits(40, frames=1, size=32, seed=9)
    sprites, _ = _upsampled("train", 16)
    clips, _ = ds.render(range(40))
    hues = []
    for clip in clips:
        frame = clip[:, 0].astype(np.float64) / 255
        img, y, x, _ = _locate(clip[:, 0], sprites)
        raw = torch.nn.functional.interpolate(torch.from_numpy(digit_images("train")[0][img : img + 1, None]),
                                              size=(16, 16), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
        i, j = np.unravel_index(int(raw.argmax()), raw.shape)
        colour = frame[:, y + i, x + j] / float(raw[i, j])  # the digit's colour at its most opaque pixel
        h, s, v = colorsys.rgb_to_hsv(*colour)
        assert v >= 0.85 - 0.01 and s >= 0.55 - 0.02, colour
        hues.append(h)
        window = np.zeros((32, 32), dtype=bool)
        window[y : y + 16, x : x + 16] = True
        assert not frame[:, ~window].any()  # black outside the digit
        np.testing.assert_allclose(frame[:, window].reshape(3, 16, 16), colour[:, None, None] * raw.numpy()[None],
                                   atol=2 / 255)
    assert np.histogram(hues, bins=6, range=(0, 1))[0].min() >= 1  # hues all round the colour wheel


def test_two_digits_are_composited_and_labelled_by_the_first():
    ds = MovingDigits(6, frames=4, size=32, seed=0, num_digits=2)
    clips, labels = ds.render(range(6))
    one = MovingDigits(6, frames=4, size=32, seed=0).render(range(6))[0]
    assert clips.shape == (6, 3, 4, 32, 32) and set(labels.tolist()) <= set(range(10))
    assert (clips > 0).sum() > (one > 0).sum()  # more ink than one digit
    np.testing.assert_array_equal(ds.render(range(6))[0], clips)


# ----------------------------------------------------------------------------------------------
# arguments, the training config kind
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"num_clips": 0}, "num_clips must be at least 1"),
    ({"frames": 0}, "frames >= 1"),
    ({"size": 7}, "size >= 8"),
    ({"seed": -1}, "seed must be a non-negative"),
    ({"split": "val"}, "split must be 'train' or 'heldout'"),
    ({"digit_size": 3}, r"digit_size must be in \[4, size=32\]"),
    ({"digit_size": 33}, r"digit_size must be in \[4, size=32\]"),
    ({"num_digits": 0}, "num_digits must be at least 1"),
    ({"min_speed": -1.0}, "min_speed <= max_speed"),
    ({"min_speed": 3.0, "max_speed": 2.0}, "min_speed <= max_speed"),
    ({"max_speed": float("inf")}, "finite"),
    ({"min_speed": float("nan")}, "min_speed <= max_speed"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingDigits(**{"num_clips": 4, "size": 32, **kwargs})


def test_the_digits_kind_of_the_training_config():
    from larp_lab.training.config import DataConfig, SourceConfig
    from larp_lab.training.data import build_dataset, dataset_class_names, is_procedural

    cfg = DataConfig(sources=(SourceConfig(kind="digits"),), frames=8, size=32, seed=2)
    train = build_dataset(cfg, train=True, num_clips=100)
    held = build_dataset(cfg, train=False, num_clips=10)
    assert isinstance(train, MovingDigits) and isinstance(held, MovingDigits)
    assert (train.split, train.seed, len(train), train.frames, train.size) == ("train", 2, 100, 8, 32)
    assert (held.split, held.seed, len(held)) == ("heldout", 10_002, 10)
    assert train[0]["video"].shape == (3, 8, 32, 32)
    assert dataset_class_names(cfg) == DIGIT_NAMES and is_procedural(cfg)
    mixed = DataConfig(sources=(SourceConfig(kind="digits"), SourceConfig(kind="synthetic")), frames=8, size=32)
    assert dataset_class_names(mixed) is None  # labels of two kinds: no common class names
