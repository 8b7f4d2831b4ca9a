"""larp_lab.pipelines on micro models: shapes, metrics equal to evaluation.metrics of the returned
tensors, what was taken from a file, seeding, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO

from larp_lab import LARPTokenizer, pipelines
from larp_lab.analysis.completion import complete_with_prior
from larp_lab.config import TOKENIZER_PRESETS
from larp_lab.data.video import VideoError, read_video, repeat_last_frame, write_video
from larp_lab.evaluation.metrics import per_frame_psnr, psnr, ssim

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"  # 128x128, 64 frames at 12.5 fps



@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    """A 96x48 clip of 6 frames at 8 fps whose columns and frames are all different."""
    t = torch.linspace(-1, 1, 6)[None, :, None, None]
    xx = torch.linspace(-1, 1, 96)[None, None, None, :]
    yy = torch.linspace(-1, 1, 48)[None, None, :, None]
    x = torch.cat([(0.5 * xx + 0.5 * t).expand(1, 6, 48, 96), yy.expand(1, 6, 48, 96),
                   (xx * yy).expand(1, 6, 48, 96)]).clamp(-1, 1)
    return write_video(tmp_path_factory.mktemp("clips") / "wide.mp4", x, fps=8.0)


# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------


def test_reconstruct_a_file_metrics_are_those_of_the_returned_tensors(tok):
    r = pipelines.reconstruct(tok, CLIP)
    assert r.original.shape == r.reconstruction.shape == (1, 3, 8, 32, 32)
    assert r.tokens.shape == (1, 16) and r.tokens.dtype == torch.int64
    assert r.reconstruction.abs().max() <= 1
    assert r.metrics["psnr_db"] == pytest.approx(float(psnr(r.reconstruction, r.original)[0]), abs=1e-6)
    assert r.metrics["ssim"] == pytest.approx(float(ssim(r.reconstruction, r.original)[0]), abs=1e-6)
    assert r.metrics["per_frame_psnr_db"] == pytest.approx(per_frame_psnr(r.reconstruction, r.original)[0].tolist())
    assert r.metrics["num_tokens"] == 16 and r.metrics["distinct_codes"] == r.tokens.unique().numel()
    # the tokens decode to the reconstruction, and the original is what read_video gives
    with torch.no_grad():
        assert torch.allclose(tok.decode_indices(r.tokens).clamp(-1, 1), r.reconstruction, atol=1e-5)
    assert torch.equal(r.original[0], read_video(CLIP, 8, size=32))
    assert set(r.timings_ms) == {"read", "encode", "decode"} and all(v >= 0 for v in r.timings_ms.values())


def test_what_was_used_from_a_file(tok):
    r = pipelines.reconstruct(tok, CLIP)
    s = r.source
    assert (s.path, s.start_s, s.num_frames, s.frames_decoded, s.looped) == (str(CLIP), 0.0, 8, 8, False)
    assert s.source_size == (128, 128) and s.resized_size == (32, 32) and s.crop == (0, 0, 32, 32)
    assert s.source_fps == pytest.approx(12.5) and s.end_s == pytest.approx(8 / 12.5)
    text = s.describe()
    assert "8 frames" in text and "0.00-0.64 s" in text and "bigbuckbunny_128.mp4" in text and "128x128" in text
    assert json.loads(json.dumps(s.to_dict()))["description"] == text
    strided = pipelines.load_clip(CLIP, frames=8, size=32, stride=2)[1]
    assert strided.end_s == pytest.approx(16 / 12.5) and "0.00-1.28 s, one frame in 2 at 12.5 fps" in strided.describe()
    sampled = pipelines.load_clip(CLIP, frames=4, size=32, fps=2.0, start_time=1.0)[1]
    assert sampled.end_s == pytest.approx(3.0) and "4 frames (1.00-3.00 s, sampled at 2 fps)" in sampled.describe()


def test_start_time_picks_later_frames(tok):
    later = pipelines.reconstruct(tok, CLIP, start_time=2.0)
    assert later.source.start_s == 2.0 and "2.00-2.64 s" in later.source.describe()
    # 2.0 s at 12.5 fps is frame 25: the same frames as reading 33 frames and keeping the last 8
    assert torch.equal(later.original[0], read_video(CLIP, 33, size=32)[:, 25:])
    assert not torch.equal(later.original, pipelines.reconstruct(tok, CLIP).original)


def test_a_short_remainder_is_looped_and_said_so(tok):
    r = pipelines.reconstruct(tok, CLIP, start_time=4.6)  # frames at 4.64..5.04 s: 6 of the 8 needed
    assert r.source.frames_decoded == 6 and r.source.looped
    assert torch.equal(r.original[:, :, 6:], r.original[:, :, :2])
    assert "only 6 there: looped" in r.source.describe()


def test_wide_clip_is_resized_and_centre_cropped(tok, wide_clip):
    r = pipelines.reconstruct(tok, wide_clip)
    s = r.source
    assert s.source_size == (96, 48) and s.resized_size == (64, 32) and s.crop == (16, 0, 32, 32)
    assert "96x48 resized to 64x32, centre crop 32x32" in s.describe()
    assert s.frames_decoded == 6 and s.looped  # 6 frames in the file, the model takes 8
    full = read_video(wide_clip, 6, size=32, crop="none")  # (3, 6, 32, 64)
    assert torch.equal(r.original[0, :, :6], full[:, :, :, 16:48])


def test_reconstruct_a_tensor_batch(tok):
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    r = pipelines.reconstruct(tok, x)
    assert r.source is None and "read" not in r.timings_ms
    assert torch.equal(r.original, x) and r.tokens.shape == (2, 16)
    assert r.metrics["psnr_db"] == pytest.approx(float(psnr(r.reconstruction, x).mean()), abs=1e-6)
    one = pipelines.reconstruct(tok, x[1])  # (3, T, H, W) is one clip
    assert torch.equal(one.tokens[0], r.tokens[1])


@pytest.mark.parametrize("kwargs,match", [
    ({"start_time": 60.0}, "past its end"),
    ({"start_time": -1.0}, "start time"),
])
def test_reconstruct_refuses_bad_start_times(tok, kwargs, match):
    with pytest.raises(VideoError, match=match):
        pipelines.reconstruct(tok, CLIP, **kwargs)


def test_reconstruct_refuses_bad_inputs(tok, tmp_path):
    bad = tmp_path / "text.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoError, match="not a readable video"):
        pipelines.reconstruct(tok, bad)
    with pytest.raises(ValueError, match="channels"):
        pipelines.reconstruct(tok, torch.zeros(1, 4, 8, 32, 32))
    with pytest.raises(ValueError, match="start_time applies to video files"):
        pipelines.reconstruct(tok, torch.zeros(1, 3, 8, 32, 32), start_time=1.0)
    with pytest.raises(TypeError, match="video file path or a tensor"):
        pipelines.reconstruct(tok, 42)


# ------------------------------------------------------------------------------------------------
# generate / predict / complete
# ------------------------------------------------------------------------------------------------


def test_generate_is_seeded_and_scored(tok, gen):
    g = pipelines.generate(tok, gen, "class 3", num_samples=3, cfg_scale=2.0, top_k=20, seed=5)
    assert g.videos.shape == (3, 3, 8, 32, 32) and g.tokens.shape == (3, 16) and g.tokens.dtype == torch.int64
    assert g.class_id == 3 and g.class_name == "class 3" and g.settings["cfg_scale"] == 2.0
    with torch.no_grad():
        assert torch.allclose(tok.decode_indices(g.tokens).clamp(-1, 1), g.videos, atol=1e-5)
        ll = gen.token_log_likelihood(g.tokens, torch.full((3,), 3))
    assert torch.allclose(g.log_likelihood, ll)
    assert g.metrics["mean_nll_per_token"] == pytest.approx((-ll.mean(1)).tolist())
    again = pipelines.generate(tok, gen, 3, num_samples=3, cfg_scale=2.0, top_k=20, seed=5, score=False)
    assert torch.equal(again.tokens, g.tokens) and again.log_likelihood is None
    assert not torch.equal(pipelines.generate(tok, gen, 3, num_samples=3, cfg_scale=2.0, top_k=20, seed=6).tokens,
                           g.tokens)
    with pytest.raises(ValueError, match="unknown class"):
        pipelines.generate(tok, gen, "dragons")
    with pytest.raises(ValueError, match="at least 1"):
        pipelines.generate(tok, gen, 1, num_samples=0)


def test_generate_refuses_a_generator_of_another_tokenizer(gen):
    other = LARPTokenizer(TOKENIZER_PRESETS["tiny"]()).eval()
    with pytest.raises(ValueError, match="does not match"):
        pipelines.generate(other, gen, 1)


def test_predict_against_the_repeat_last_frame_baseline(tok, predictor):
    p = pipelines.predict(tok, predictor, CLIP, cond_frames=3, greedy=True)
    assert p.truth.shape == p.prediction.shape == p.baseline.shape == (1, 3, 8, 32, 32)
    assert torch.equal(p.baseline, repeat_last_frame(p.truth, 3))
    fut = slice(3, 8)
    m = p.metrics
    assert m["psnr_predicted_db"] == pytest.approx(float(psnr(p.prediction[:, :, fut], p.truth[:, :, fut])[0]),
                                                   abs=1e-6)
    assert m["psnr_repeat_last_db"] == pytest.approx(float(psnr(p.baseline[:, :, fut], p.truth[:, :, fut])[0]),
                                                     abs=1e-6)
    assert len(m["per_frame_psnr_db"]) == len(m["per_frame_psnr_repeat_last_db"]) == 8
    assert p.tokens.shape == p.cond_tokens.shape == (1, 16) and p.source.num_frames == 8
    with torch.no_grad():
        assert torch.equal(p.cond_tokens, tok.encode(p.baseline).indices)
    later = pipelines.predict(tok, predictor, CLIP, cond_frames=3, greedy=True, start_time=2.0)
    assert later.source.start_s == 2.0 and not torch.equal(later.truth, p.truth)
    with pytest.raises(ValueError, match="condition on 1 to 7"):
        pipelines.predict(tok, predictor, CLIP, cond_frames=8)


def test_predict_and_generate_refuse_the_wrong_kind_of_generator(tok, gen, predictor):
    with pytest.raises(ValueError, match="frame-prediction"):
        pipelines.predict(tok, gen, CLIP)
    with pytest.raises(ValueError, match="frame-prediction"):
        pipelines.generate(tok, predictor, 1)


def test_complete_by_the_prior_and_by_a_generator(tok, gen):
    r = pipelines.reconstruct(tok, CLIP)
    c = pipelines.complete(tok, r.tokens, 5, reference=r.original)
    assert c.method == "prior" and c.k == 5 and c.tokens.shape == (1, 16) and c.video.shape == (1, 3, 8, 32, 32)
    assert torch.equal(c.tokens, complete_with_prior(tok, r.tokens, 5))
    assert c.metrics["tokens_changed"] == int((c.tokens != r.tokens).sum())
    assert c.metrics["psnr_db"] == pytest.approx(float(psnr(c.video, r.original)[0]), abs=1e-6)
    full = pipelines.complete(tok, r.tokens[0].tolist(), 16)  # k = N keeps everything; (N,) lists work
    assert torch.equal(full.tokens, r.tokens) and full.metrics["tokens_changed"] == 0
    assert torch.allclose(full.video, r.reconstruction, atol=1e-5)
    g = pipelines.complete(tok, r.tokens, 4, generator=gen)
    assert g.method == "generator" and torch.equal(g.tokens[:, :4], r.tokens[:, :4])
    # greedy: the generator's own argmax continuation of the prefix under its null class
    seq = r.tokens.clone()
    with torch.no_grad():
        for i in range(4, 16):
            seq[:, i] = gen(seq[:, : i + 1], gen.null_condition(1))[:, i].argmax(-1)
    assert torch.equal(g.tokens, seq)
    with pytest.raises(ValueError, match="k must be between 1 and 16"):
        pipelines.complete(tok, r.tokens, 0)
    with pytest.raises(ValueError, match="shape"):
        pipelines.complete(tok, r.tokens[:, :5], 2)


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------


def test_save_helpers(tok, tmp_path):
    r = pipelines.reconstruct(tok, CLIP)
    files = pipelines.save_reconstruction(r, tmp_path / "rec", "micro")
    assert read_video(files["side_by_side"], 8).shape == (3, 8, 32, 66)  # original | 2-pixel gap | reconstruction
    assert read_video(files["reconstruction"], 8).shape == (3, 8, 32, 32)
    assert np.load(files["tokens_npy"]).tolist() == r.tokens[0].tolist()
    assert json.loads(files["tokens_json"].read_text()) == {"tokenizer": "micro", "tokens": r.tokens[0].tolist()}
    paths = pipelines.save_clips(tmp_path / "clips", torch.zeros(2, 3, 4, 16, 16))
    assert [p.name for p in paths] == ["sample_00.mp4", "sample_01.mp4"]
    with pytest.raises(ValueError, match=".npy or .json"):
        pipelines.save_tokens(tmp_path / "t.txt", r.tokens, "micro")
    with pytest.raises(ValueError, match="one clip at a time"):
        pipelines.save_video(tmp_path / "x.mp4", torch.zeros(2, 3, 4, 16, 16))
