"""Fréchet Video Distance (FVD) with the standard I3D TorchScript detector, and the Fréchet distance
of any feature set.

The pieces:

* :func:`frechet_distance` -- the distance between two Gaussians, in float64;
* :class:`FeatureStats` -- streaming mean and covariance of feature vectors, saved as ``.npz``
  (a cache of real-data statistics, with a description string stored inside);
* :class:`I3DDetector` -- the I3D network used by StyleGAN-V and by the official LARP evaluation,
  loaded from a local ``i3d_torchscript.pt``;
* :func:`compute_stats`, :func:`compute_fvd` -- statistics of an iterable of video batches (with a
  progress bar), and FVD between two such iterables.

Facts this module follows (read in the official code, never copied):

* hywang66/LARP ``utils`` ``FVDCalculator`` (used by ``eval/rfvd_evaluator.py`` and the trainers):
  the detector is ``torch.jit.load(i3d_torchscript.pt)``; videos are (B, C, T, H, W) floats, mapped
  from the dataset's [0, 1] to **[-1, 1]** (``(x - 0.5) * 2``; reconstructions clamped to [0, 1]
  first) and passed as ``i3d(x, resize=True, return_features=True)`` -- ``rescale`` left False,
  because it would expect [0, 255]. Features are appended as float32 and summed in float64; the
  covariance is the population one (``sum(x x^T) / n - mu mu^T``, divided by n, not n - 1).
  FVD = ``|mu_1 - mu_2|^2 + tr(S_1 + S_2) - 2 tr(sqrt(sqrt(S_1) S_2 sqrt(S_1)))`` (the TF-GAN
  ``trace_sqrt_product``, in float64). ``eval/rfvd_evaluator.py`` keeps at most 16 frames, only
  computes FVD for clips of at least 12 frames (the trainer: at least 10), and runs batches of 4.
* universome/stylegan-v ``src/metrics/frechet_video_distance.py`` and ``metric_utils.py``: the same
  detector file; ``detector_kwargs = dict(rescale=True, resize=True, return_features=True)`` with
  **uint8** (B, C, T, H, W) input in [0, 255] (generated frames mapped by ``x * 127.5 + 128``,
  clamped, cast to uint8); ``128 // num_frames`` clips per detector call at resolution 128 or 256
  (8 clips of 16 frames); the returned features are the 400 raw logits before the softmax.

Decisions:

* The default ``convention="larp"`` reproduces the official LARP numbers (float input in [-1, 1],
  no quantisation). ``convention="stylegan-v"`` quantises to uint8 first, like StyleGAN-V.
* The matrix square root uses symmetric eigen-decompositions (``numpy.linalg.eigh``) rather than
  ``scipy.linalg.sqrtm``: ``sqrt(S_1) S_2 sqrt(S_1)`` is symmetric positive semi-definite, so this is
  exact up to rounding, never returns complex values, and needs no dependency beyond numpy. Tiny
  negative eigenvalues from rounding are clipped to 0 (the TF-GAN code used by LARP does the same
  with a 1e-10 threshold). It equals the official value to ~1e-10 relative.
* The streaming covariance merges per-batch centred sums (Chan et al.) instead of accumulating
  ``sum(x x^T)``: the same quantity, without the cancellation of ``E[x x^T] - mu mu^T`` when the
  features have a large mean.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DetectorNotFoundError",
    "FeatureStats",
    "I3DDetector",
    "I3D_URL",
    "compute_fvd",
    "compute_stats",
    "frechet_distance",
    "fvd_from_stats",
    "video_batches",
]

#: Where the I3D TorchScript file used by StyleGAN-V and LARP is published (download it yourself).
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
_STATS_FORMAT = 1


# ================================================================================================
#                                       Fréchet distance
# ================================================================================================


def _as_f64(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues -> 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``.

    Args:
        mu1, mu2: (D,) means (numpy arrays, tensors or sequences).
        sigma1, sigma2: (D, D) covariances (symmetrised before use).
    Returns:
        the distance, a float >= 0 (values below 0 from rounding are returned as 0).
    """
    m1, m2 = _as_f64(mu1, "mu1"), _as_f64(mu2, "mu2")
    s1, s2 = _as_f64(sigma1, "sigma1"), _as_f64(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"means must be (D,) vectors of one size; got {m1.shape} and {m2.shape}")
    d = m1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}); got {s1.shape} and {s2.shape}")
    s1 = (s1 + s1.T) * 0.5
    s2 = (s2 + s2.T) * 0.5
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1  # (D, D), symmetric PSD
    eig = np.linalg.eigvalsh((inner + inner.T) * 0.5)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = m1 - m2
    fd = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace_sqrt
    return max(fd, 0.0)


# ================================================================================================
#                                  Streaming feature statistics
# ================================================================================================


class FeatureStats:
    """Streaming mean and covariance of feature vectors, in float64.

    Example::

        stats = FeatureStats("i3d larp ucf101-test 16x128")
        for feats in batches:            # (N, D)
            stats.update(feats)
        mu, sigma = stats.mean_cov()     # (D,), (D, D) population covariance
        stats.save("real_stats.npz")
    """

    def __init__(self, description: str = "") -> None:
        self.description = str(description)
        self.num_items = 0
        self._mean: np.ndarray | None = None  # (D,)
        self._m2: np.ndarray | None = None  # (D, D) sum of centred outer products

    @property
    def num_features(self) -> int | None:
        return None if self._mean is None else int(self._mean.shape[0])

    def update(self, feats: Tensor | np.ndarray) -> FeatureStats:
        """Add a batch of feature vectors (N, D); returns self."""
        x = _as_f64(feats, "features")
        if x.ndim != 2:
            raise ValueError(f"features must be (N, D); got shape {x.shape}")
        n = x.shape[0]
        if n == 0:
            return self
        if self._mean is None:
            self._mean = np.zeros(x.shape[1])
            self._m2 = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self._mean.shape[0]:
            raise ValueError(f"feature size changed from {self._mean.shape[0]} to {x.shape[1]}")
        assert self._m2 is not None
        b_mean = x.mean(axis=0)
        xc = x - b_mean
        b_m2 = xc.T @ xc
        total = self.num_items + n
        delta = b_mean - self._mean
        self._m2 += b_m2 + np.outer(delta, delta) * (self.num_items * n / total)
        self._mean += delta * (n / total)
        self.num_items = total
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's items (e.g. from another process); returns self."""
        if other.num_items == 0:
            return self
        assert other._mean is not None and other._m2 is not None
        if self._mean is None:
            self._mean, self._m2, self.num_items = other._mean.copy(), other._m2.copy(), other.num_items
            return self
        if other._mean.shape != self._mean.shape:
            raise ValueError("cannot merge statistics of different feature sizes")
        assert self._m2 is not None
        total = self.num_items + other.num_items
        delta = other._mean - self._mean
        self._m2 += other._m2 + np.outer(delta, delta) * (self.num_items * other.num_items / total)
        self._mean += delta * (other.num_items / total)
        self.num_items = total
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu (D,), sigma (D, D)), float64; sigma is the population covariance (divided by N)."""
        if self._mean is None or self.num_items == 0:
            raise ValueError("no features were added")
        assert self._m2 is not None
        return self._mean.copy(), self._m2 / self.num_items

    # -------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the statistics (mean, centred sums, count, description) to ``.npz``, atomically."""
        if self._mean is None:
            raise ValueError("no features were added; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            mu, sigma = self.mean_cov()
            np.savez(
                tmp, format=np.array(_STATS_FORMAT), description=np.array(self.description),
                num_items=np.array(self.num_items, dtype=np.int64), mean=self._mean, m2=self._m2,
                mu=mu, sigma=sigma,
            )
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, expected_description: str | None = None) -> FeatureStats:
        """Read a file written by :meth:`save` (``allow_pickle=False``).

        Raises ``ValueError`` when ``expected_description`` is given and differs from the stored one
        (the cache belongs to another dataset, detector or preprocessing).
        """
        with np.load(Path(path), allow_pickle=False) as z:
            missing = {"format", "description", "num_items", "mean", "m2"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a larp_lab feature-statistics file (missing {sorted(missing)})")
            if int(z["format"]) != _STATS_FORMAT:
                raise ValueError(f"{path}: unsupported statistics format {int(z['format'])}")
            out = cls(str(z["description"]))
            out.num_items = int(z["num_items"])
            out._mean = z["mean"].astype(np.float64)
            out._m2 = z["m2"].astype(np.float64)
        if expected_description is not None and out.description != expected_description:
            raise ValueError(
                f"{path} holds statistics for {out.description!r}, not {expected_description!r}; "
                "delete it or pass another cache path"
            )
        return out


def fvd_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two accumulated feature sets."""
    mu1, s1 = a.mean_cov()
    mu2, s2 = b.mean_cov()
    return frechet_distance(mu1, s1, mu2, s2)


# ================================================================================================
#                                          I3D detector
# ================================================================================================


class DetectorNotFoundError(FileNotFoundError):
    """The I3D TorchScript file is not where it was said to be."""


class I3DDetector:
    """The I3D feature extractor of FVD (Kinetics-400, the TF-Hub network ported to TorchScript).

    ``i3d_torchscript.pt`` is a **TorchScript archive** loaded with :func:`torch.jit.load`: it holds
    the network's serialized TorchScript code and tensors, not a Python pickle of arbitrary objects,
    so loading it does not run arbitrary Python. It is never downloaded at run time; fetch it once
    from :data:`I3D_URL` and pass its path.

    Call convention (see the module docstring for the sources): input (B, 3, T, H, W); the detector
    is called as ``detector(x, rescale=..., resize=True, return_features=True)`` and returns
    (B, 400) features; ``resize=True`` makes it resize frames to 224 x 224 itself.

    Args:
        path: the ``i3d_torchscript.pt`` file.
        device: where to run it.
        batch_size: clips per detector call (StyleGAN-V: 128 // 16 = 8 clips of 16 frames).
        convention: ``"larp"`` (float [-1, 1], ``rescale=False``; the official LARP evaluation) or
            ``"stylegan-v"`` (quantised to uint8 [0, 255], ``rescale=True``).
        min_frames: refuse shorter clips (the official LARP trainer requires >= 10 frames).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 8,
        convention: Literal["larp", "stylegan-v"] = "larp",
        min_frames: int = 10,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise DetectorNotFoundError(
                f"I3D detector not found at {path}: download i3d_torchscript.pt (the FVD detector of "
                f"StyleGAN-V and LARP) from {I3D_URL} and save it at that path."
            )
        if convention not in ("larp", "stylegan-v"):
            raise ValueError(f"convention must be 'larp' or 'stylegan-v', got {convention!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.path = path
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.convention = convention
        self.min_frames = int(min_frames)
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=self.device).eval()

    @property
    def description(self) -> str:
        """What the features depend on; stored with cached statistics."""
        return f"i3d:{self.path.name}:{self.convention}:resize224"

    def preprocess(self, videos: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> the detector's input, on ``device``."""
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"expected videos (B, 3, T, H, W); got {tuple(videos.shape)}")
        if videos.shape[2] < self.min_frames:
            raise ValueError(f"FVD needs clips of at least {self.min_frames} frames; got {videos.shape[2]}")
        x = videos.to(self.device, torch.float32).clamp(-1.0, 1.0)
        if self.convention == "stylegan-v":
            return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return x

    @torch.inference_mode()
    def __call__(self, videos: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> float32 (B, F) features on the CPU (F = 400 for I3D)."""
        rescale = self.convention == "stylegan-v"
        out = []
        for chunk in videos.split(self.batch_size):
            x = self.preprocess(chunk)
            feats = self.model(x, rescale=rescale, resize=True, return_features=True)
            out.append(feats.float().reshape(x.shape[0], -1).cpu())
        return torch.cat(out)


# ================================================================================================
#                                 Statistics of video iterables
# ================================================================================================


def video_batches(batches: Iterable[Any]) -> Iterable[Tensor]:
    """Yield the video tensor of each batch: a tensor itself, the first item of a tuple/list
    (``(video, label)``), or the ``"video"`` entry of a dict."""
    for b in batches:
        if isinstance(b, Tensor):
            yield b
        elif isinstance(b, (tuple, list)) and b and isinstance(b[0], Tensor):
            yield b[0]
        elif isinstance(b, dict) and isinstance(b.get("video"), Tensor):
            yield b["video"]
        else:
            raise TypeError(f"cannot find a video tensor in a batch of type {type(b).__name__}")


def compute_stats(
    videos: Iterable[Any],
    feature_fn: Callable[[Tensor], Tensor],
    *,
    description: str = "",
    max_items: int | None = None,
    progress: bool = True,
    desc: str = "features",
) -> FeatureStats:
    """Accumulate ``feature_fn`` features of an iterable of video batches (B, 3, T, H, W) in [-1, 1].

    Args:
        feature_fn: e.g. an :class:`I3DDetector` or a classifier's ``features``; (B, ...) -> (B, F).
        max_items: stop after this many clips (the last batch is truncated).
    """
    from tqdm.auto import tqdm

    stats = FeatureStats(description)
    with tqdm(total=max_items, desc=desc, unit="clip", disable=not progress) as bar:
        for v in video_batches(videos):
            if max_items is not None:
                left = max_items - stats.num_items
                if left <= 0:
                    break
                v = v[:left]
            feats = feature_fn(v)
            stats.update(feats)
            bar.update(v.shape[0])
    return stats


def compute_fvd(
    real_videos: Iterable[Any] | FeatureStats,
    fake_videos: Iterable[Any] | FeatureStats,
    detector: I3DDetector | Callable[[Tensor], Tensor],
    *,
    real_stats_cache: str | os.PathLike | None = None,
    real_description: str | None = None,
    max_items: int | None = None,
    progress: bool = True,
) -> float:
    """FVD between two iterables of video batches (B, 3, T, H, W) in [-1, 1].

    Args:
        real_videos, fake_videos: iterables of batches (see :func:`video_batches`) or already
            accumulated :class:`FeatureStats`.
        detector: an :class:`I3DDetector` (or any (B, 3, T, H, W) -> (B, F) callable).
        real_stats_cache: an ``.npz`` file for the real statistics: read when it exists and its
            description matches, written after computing otherwise.
        real_description: identifies the real data in the cache (dataset, split, frames, size); it
            is combined with the detector's own description.
        max_items: at most this many clips from each side.
    """
    det_desc = getattr(detector, "description", type(detector).__name__)
    desc = json.dumps({"data": real_description or "", "detector": det_desc, "max_items": max_items}, sort_keys=True)
    if isinstance(real_videos, FeatureStats):
        real = real_videos
    elif real_stats_cache is not None and Path(real_stats_cache).is_file():
        real = FeatureStats.load(real_stats_cache, expected_description=desc)
    else:
        real = compute_stats(real_videos, detector, description=desc, max_items=max_items, progress=progress, desc="real")
        if real_stats_cache is not None:
            real.save(real_stats_cache)
    if isinstance(fake_videos, FeatureStats):
        fake = fake_videos
    else:
        fake = compute_stats(fake_videos, detector, description="fake", max_items=max_items, progress=progress, desc="fake")
    return fvd_from_stats(real, fake)
