"""Evaluation: Fréchet distance, feature statistics, the I3D detector interface (with a stand-in
TorchScript module), LPIPS-VGG16 (random weights), codebook statistics and the proxy classifier."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

from larp_lab.evaluation.classifier import (
    ClassifierConfig,
    VideoClassifier,
    class_accuracy,
    proxy_fvd,
    train_classifier,
)
from larp_lab.evaluation.codebook import CodebookStats, code_counts, codebook_usage, perplexity
from larp_lab.evaluation.fvd import (
    DetectorNotFoundError,
    FeatureStats,
    I3DDetector,
    compute_fvd,
    compute_stats,
    frechet_distance,
)
from larp_lab.evaluation.lpips import LPIPS, LPIPSWeightsError, video_lpips

# ================================================================================================
#                                       Fréchet distance
# ================================================================================================


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_frechet_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 8))
    mu, sigma = a.mean(0), np.cov(a, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9
    b = rng.normal(size=(50, 8)) * 2 + 1
    mu2, sigma2 = b.mean(0), np.cov(b, rowvar=False)
    d12, d21 = frechet_distance(mu, sigma, mu2, sigma2), frechet_distance(mu2, sigma2, mu, sigma)
    assert d12 > 1.0 and d12 == pytest.approx(d21, rel=1e-9)


def test_frechet_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 10)), rng.normal(size=(40, 10)) @ rng.normal(size=(10, 10)) * 0.3
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(s1 @ s2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7)


def test_frechet_rank_deficient_matches_svd_reference():
    # fewer samples than features (the usual FVD case: covariances are singular)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 12)), rng.normal(size=(7, 12)) + 0.3
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False, bias=True)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False, bias=True)

    def sym_sqrt(m):  # the TF-GAN style root used by the official code: SVD, tiny values kept as is
        u, s, vt = np.linalg.svd(m)
        return u @ np.diag(np.where(s < 1e-10, s, np.sqrt(s))) @ vt

    r = sym_sqrt(s1)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(sym_sqrt(r @ s2 @ r))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.full((3, 3), np.nan))


# ================================================================================================
#                                       Feature statistics
# ================================================================================================


def test_feature_stats_streaming_equals_batch(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 5)) * 3 + 100.0  # a large mean: the centred update must stay exact
    stats = FeatureStats("demo")
    for chunk in np.array_split(x, [4, 5, 20]):
        stats.update(torch.from_numpy(chunk))
    mu, sigma = stats.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, bias=True), rtol=1e-9, atol=1e-10)

    other = FeatureStats().update(x[:10])
    other.merge(FeatureStats().update(x[10:]))
    np.testing.assert_allclose(other.mean_cov()[1], sigma, rtol=1e-9, atol=1e-10)

    path = stats.save(tmp_path / "stats.npz")
    back = FeatureStats.load(path, expected_description="demo")
    assert back.num_items == 37 and back.description == "demo"
    np.testing.assert_array_equal(back.mean_cov()[1], sigma)
    with pytest.raises(ValueError, match="demo"):
        FeatureStats.load(path, expected_description="another dataset")
    with pytest.raises(ValueError):
        stats.update(np.zeros((2, 4)))


# ================================================================================================
#                                   I3D detector (stand-in)
# ================================================================================================


class _StandInI3D(torch.nn.Module):
    """Same call convention as i3d_torchscript.pt; deterministic 16-d features."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.arange(24 * 16, dtype=torch.float32).reshape(24, 16)
        self.register_buffer("proj", torch.sin(k * 0.37))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if not return_features:
            raise RuntimeError("FVD must ask for features")
        if rescale:
            if x.dtype != torch.uint8:
                raise RuntimeError("rescale=True expects uint8 input")
            x = x.float() / 127.5 - 1.0
        elif bool(x.min() < -1.0) or bool(x.max() > 1.0):
            raise RuntimeError("input must lie in [-1, 1]")
        if resize:
            x = torch.nn.functional.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        if x.shape[-1] != 224 or x.shape[-2] != 224:
            raise RuntimeError("the detector needs 224x224 frames")
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (2, 2, 2)).flatten(1)  # (B, 24)
        return torch.tanh(pooled @ self.proj * 3.0)  # (B, 16)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated in recent torch; the real I3D file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_StandInI3D()), str(path))
    return path


def _clips(seed: int, n: int, shift: float = 0.0, frames: int = 10) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(4, 3, frames, 16, 16, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1) for _ in range(n)]


def test_i3d_missing_file_error(tmp_path):
    with pytest.raises(DetectorNotFoundError, match="i3d_torchscript.pt") as e:
        I3DDetector(tmp_path / "nowhere" / "i3d_torchscript.pt")
    assert str(tmp_path / "nowhere") in str(e.value)


def test_i3d_call_convention_and_fvd(i3d_path, tmp_path):
    det = I3DDetector(i3d_path, batch_size=3)
    feats = det(_clips(0, 1)[0])
    assert feats.shape == (4, 16) and feats.dtype == torch.float32
    # batching inside the detector does not change the features
    torch.testing.assert_close(I3DDetector(i3d_path, batch_size=8)(_clips(0, 1)[0]), feats)
    # out-of-range values are clamped to [-1, 1] before the call (the stand-in checks the range)
    det(_clips(0, 1)[0] * 3)
    with pytest.raises(ValueError, match="at least 10 frames"):
        det(torch.zeros(1, 3, 8, 16, 16))

    real, same, fake = _clips(1, 3), _clips(1, 3), _clips(2, 3, shift=0.5)
    assert compute_fvd(real, same, det, progress=False) < 1e-9
    fvd = compute_fvd(real, fake, det, progress=False)
    ref_real = torch.cat([det(v) for v in real]).double().numpy()
    ref_fake = torch.cat([det(v) for v in fake]).double().numpy()
    ref = frechet_distance(ref_real.mean(0), np.cov(ref_real, rowvar=False, bias=True),
                           ref_fake.mean(0), np.cov(ref_fake, rowvar=False, bias=True))
    assert fvd > 0.01 and fvd == pytest.approx(ref, rel=1e-8)

    # real statistics are cached and reused (the second real iterable must never be read)
    cache = tmp_path / "real.npz"
    assert compute_fvd(real, fake, det, real_stats_cache=cache, real_description="toy", progress=False) == pytest.approx(fvd)
    assert cache.is_file()

    def boom():
        raise AssertionError("the cache should have been used")
        yield

    assert compute_fvd(boom(), fake, det, real_stats_cache=cache, real_description="toy", progress=False) == pytest.approx(fvd)
    with pytest.raises(ValueError, match="toy"):
        compute_fvd(real, fake, det, real_stats_cache=cache, real_description="other data", progress=False)


def test_i3d_stylegan_convention_quantises(i3d_path):
    det = I3DDetector(i3d_path, convention="stylegan-v")
    clip = _clips(3, 1)[0]
    assert det.preprocess(clip).dtype == torch.uint8
    f_sg = det(clip)
    f_larp = I3DDetector(i3d_path)(clip)
    assert (f_sg - f_larp).abs().max() < 0.05  # same features up to 8-bit quantisation


def test_compute_stats_accepts_tuples_and_max_items(i3d_path):
    det = I3DDetector(i3d_path)
    batches = [(v, torch.zeros(4)) for v in _clips(4, 3)]
    stats = compute_stats(batches, det, max_items=6, progress=False)
    assert stats.num_items == 6


# ================================================================================================
#                                         LPIPS (VGG16)
# ================================================================================================


@pytest.fixture(scope="module")
def lpips_model():
    torch.manual_seed(0)
    m = LPIPS()
    with torch.no_grad():
        for k in range(5):  # the real linear heads are non-negative
            getattr(m, f"lin{k}").model[1].weight.abs_()
    return m


def test_lpips_layout(lpips_model):
    keys = set(lpips_model.state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert keys == {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")} | {
        f"lin{k}.model.1.weight" for k in range(5)
    }
    assert lpips_model.state_dict()["lin3.model.1.weight"].shape == (1, 512, 1, 1)
    assert not any(p.requires_grad for p in lpips_model.parameters())
    parent = torch.nn.Sequential(lpips_model).train()  # a training-mode parent keeps LPIPS in eval
    assert not parent[0].training and not lpips_model.lin0.model[0].training


def test_lpips_values(lpips_model):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1, torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    d = lpips_model(x, y)
    assert d.shape == (3,) and bool((d > 0).all())
    assert torch.equal(lpips_model(x, x), torch.zeros(3))
    torch.testing.assert_close(lpips_model(y, x), d, rtol=1e-5, atol=1e-7)
    # closer images are nearer
    assert bool((lpips_model(x, x + 0.01 * (y - x)) < d).all())
    # gradients reach the input (perceptual loss)
    xr = x.clone().requires_grad_(True)
    lpips_model(xr, y).sum().backward()
    assert xr.grad is not None and xr.grad.abs().sum() > 0

    video_a = torch.rand(2, 3, 4, 32, 32, generator=g) * 2 - 1
    video_b = torch.rand(2, 3, 4, 32, 32, generator=g) * 2 - 1
    per_frame = video_lpips(video_a, video_b, lpips_model, chunk=3)
    assert per_frame.shape == (2, 4)
    frame = lpips_model(video_a[:, :, 2], video_b[:, :, 2])
    torch.testing.assert_close(per_frame[:, 2], frame, rtol=1e-5, atol=1e-7)


def test_lpips_from_files(lpips_model, tmp_path):
    from safetensors.torch import save_file

    state = lpips_model.state_dict()
    vgg = {k: v.clone() for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    torch.save(vgg, tmp_path / "vgg16.pth")
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("lin")}, str(tmp_path / "vgg.safetensors"))
    loaded = LPIPS.from_files(tmp_path / "vgg16.pth", tmp_path / "vgg.safetensors")
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded(x, y), lpips_model(x, y))

    with pytest.raises(LPIPSWeightsError, match="vgg.pth") as e:
        LPIPS.from_files(tmp_path / "vgg16.pth", tmp_path / "absent" / "vgg.pth")
    assert "absent" in str(e.value) and "vgg16-397923af" not in str(e.value)
    with pytest.raises(LPIPSWeightsError, match="vgg16-397923af.pth"):
        LPIPS.from_files(tmp_path / "none.pth", tmp_path / "vgg.safetensors")

    bad = dict(vgg)
    bad["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(LPIPSWeightsError, match="features.0.weight"):
        LPIPS.from_files(tmp_path / "bad.pth", tmp_path / "vgg.safetensors")


# ================================================================================================
#                                           Codebook
# ================================================================================================


def test_codebook_stats():
    stats = CodebookStats(8)
    stats.update(torch.tensor([[0, 1, 1], [3, 3, 3]]))
    stats.update(torch.tensor([0, 3], dtype=torch.int32))
    assert stats.counts.tolist() == [2, 2, 0, 4, 0, 0, 0, 0]
    assert stats.total == 8 and stats.usage() == 3 / 8
    assert stats.dead_codes().tolist() == [2, 4, 5, 6, 7]
    p = np.array([2, 2, 4]) / 8
    entropy = -(p * np.log(p)).sum()
    assert stats.perplexity() == pytest.approx(math.exp(entropy), rel=1e-12)
    assert stats.kl_from_uniform() == pytest.approx(math.log(8) - entropy)
    # the official formula (with +1e-10 inside the log) agrees
    official = math.exp(-sum(q * math.log(q + 1e-10) for q in stats.probabilities().tolist()))
    assert stats.perplexity() == pytest.approx(official, rel=1e-8)
    idx, cnt = stats.top_codes(2)
    assert idx.tolist() == [3, 0] and cnt.tolist() == [4, 2]
    freq, edges = stats.histogram(bins=4)
    assert freq.sum() == 8 and edges.shape == (5,)
    s = stats.summary()
    assert s["used_codes"] == 3 and s["dead_codes"] == 5

    back = CodebookStats(8)
    back.load_state_dict(stats.state_dict())
    assert torch.equal(back.counts, stats.counts)
    with pytest.raises(ValueError):
        stats.update(torch.tensor([8]))
    with pytest.raises(TypeError):
        stats.update(torch.tensor([0.5]))


def test_codebook_functions_extremes():
    uniform = torch.arange(16).repeat(3)
    assert perplexity(uniform, 16) == pytest.approx(16.0)
    assert codebook_usage(uniform, 32) == 0.5
    assert perplexity(torch.full((10,), 5), 16) == pytest.approx(1.0)
    assert code_counts(torch.tensor([], dtype=torch.int64), 4).tolist() == [0, 0, 0, 0]


# ================================================================================================
#                                   Proxy classifier and metrics
# ================================================================================================


class _MovingSquares(torch.utils.data.Dataset):
    """Class 0: a bright square moving right; class 1: moving down. (3, 8, 16, 16) in [-1, 1]."""

    num_classes = 2

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            label = i % 2
            x0, y0 = (int(v) for v in torch.randint(0, 6, (2,), generator=g))
            v = -torch.ones(3, 8, 16, 16)
            for t in range(8):
                x, y = (x0 + t, y0) if label == 0 else (x0, y0 + t)
                v[:, t, y : y + 4, x : x + 4] = 1.0
            v += 0.1 * torch.randn(v.shape, generator=g)
            self.items.append((v.clamp(-1, 1), label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_classifier_training_and_metrics(tmp_path):
    data = _MovingSquares(40, seed=0)
    res = train_classifier(data, steps=30, batch_size=8, lr=3e-3, seed=0, out_dir=tmp_path / "clf",
                           width=4, val_fraction=0.25, progress=False)
    assert len(res.losses) == 30 and len(res.val_indices) == 10
    assert np.mean(res.losses[-5:]) < 0.7 * np.mean(res.losses[:5])
    assert res.val_accuracy >= 0.7  # the two motions are easy to tell apart
    clf = res.model
    assert clf.feature_dim == 32

    # save/load round trip is exact
    back = VideoClassifier.from_pretrained(tmp_path / "clf")
    assert back.config == clf.config
    x = torch.stack([data[i][0] for i in range(6)])
    assert torch.equal(back.features(x), clf.features(x)) and torch.equal(back(x), clf(x))
    assert (tmp_path / "clf" / "train_log.json").is_file()

    labels = torch.tensor([data[i][1] for i in range(6)])
    acc = class_accuracy(x, labels, clf, batch_size=4)
    assert acc == float((clf(x).argmax(-1) == labels).float().mean())

    real = [torch.stack([data[i][0] for i in range(j, j + 10)]) for j in (0, 10, 20, 30)]
    assert proxy_fvd(real, real, clf) < 1e-9
    noise = [torch.rand(10, 3, 8, 16, 16, generator=torch.Generator().manual_seed(j)) * 2 - 1 for j in range(4)]
    assert proxy_fvd(real, noise, clf) > 0.0


def test_classifier_shapes_and_determinism():
    cfg = ClassifierConfig(num_classes=3, frames=8, size=16, width=4)
    a = VideoClassifier(cfg)
    assert a(torch.zeros(2, 3, 8, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="classifier expects"):
        a(torch.zeros(2, 3, 8, 32, 32))
    with pytest.raises(ValueError):
        ClassifierConfig.from_dict({**cfg.to_dict(), "depth": 3})
    data = _MovingSquares(8, seed=1)
    r1 = train_classifier(data, steps=2, batch_size=4, seed=5, width=4, progress=False)
    r2 = train_classifier(data, steps=2, batch_size=4, seed=5, width=4, progress=False)
    assert r1.losses == r2.losses
