"""An in-memory pool of training clips: made once, in parallel on the CPU cores, stored as uint8, and
sampled in batches with augmentation where the model trains, so the accelerator never waits for data.

A pool holds ``clips`` uint8 (N, 3, T, S, S) (the models' layout; byte v stands for v / 127.5 - 1)
and ``labels`` int64 (N,): rows ``0 .. num_synthetic - 1`` are the labelled procedural clips
(``data="synthetic"``: class ``i % 12``, :mod:`larp_lab.data.synthetic`; ``data="digits"``: moving
digits of the spec's ``split``, :class:`larp_lab.data.digits.MovingDigits`, label = the digit), the
remaining rows pans/zooms over the bundled photographs (:class:`larp_lab.data.natural.PhotoPans`,
label -1; never in a digits pool). Clip ``i`` of a source is the same pure function of ``(seed, i)``
as in those datasets, so a pool is reproducible and its held-out twin (other seeds; for digits also
the held-out digit images) never shares a clip with it.

Generation forks worker processes that write straight into one anonymous shared mapping (not
``/dev/shm``, whose size containers often cap); workers run torch with one thread. A digits pool is
rendered in the calling process instead (:meth:`MovingDigits.render` is vectorised). Call
:func:`generate_pool` before the process starts CUDA (a CUDA context does not survive ``fork``).

Training tasks read a pool through :class:`IndexDataset` (the training loop's sampler hands out
virtual indices, cheap to batch) and gather the clips on the device in their loss
(:meth:`ClipPool.gather`, :func:`augment`).
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["ClipPool", "IndexDataset", "PoolSpec", "augment", "collate_indices", "generate_pool", "mixture_rows"]

#: the array workers write into (set in the parent right before forking; inherited by the children)
_SHARED: np.ndarray | None = None


@dataclass(frozen=True)
class PoolSpec:
    """What a pool holds: ``synthetic`` + ``photos`` clips of ``frames`` x ``size`` x ``size``.

    The synthetic clips use seed ``seed``, the photo pans ``seed + 1``.
    """

    synthetic: int
    photos: int = 0
    frames: int = 16
    size: int = 64
    seed: int = 0
    #: what the labelled rows hold: ``synthetic`` (12 motion classes) or ``digits`` (moving digits)
    data: str = "synthetic"
    #: digits only: ``train`` or ``heldout`` digit images (:class:`~larp_lab.data.digits.MovingDigits`)
    split: str = "train"

    def validate(self) -> None:
        if self.data not in ("synthetic", "digits"):
            raise ValueError(f"pool data must be 'synthetic' or 'digits', got {self.data!r}")
        if self.split not in ("train", "heldout"):
            raise ValueError(f"pool split must be 'train' or 'heldout', got {self.split!r}")
        if self.data == "digits" and self.photos:
            raise ValueError("a moving-digits pool holds no photo clips")
        if self.synthetic < 0 or self.photos < 0 or self.synthetic + self.photos < 1:
            raise ValueError(f"a pool needs at least one clip; got {self.synthetic} synthetic + {self.photos} photo clips")
        if self.frames < 1 or self.size < 4:
            raise ValueError(f"pool clips need frames >= 1 and size >= 4; got {self.frames} x {self.size}")
        if self.seed < 0:
            raise ValueError(f"pool seed must be >= 0, got {self.seed}")

    @property
    def clips(self) -> int:
        return self.synthetic + self.photos

    @property
    def clip_bytes(self) -> int:
        return 3 * self.frames * self.size * self.size

    @property
    def nbytes(self) -> int:
        return self.clips * self.clip_bytes


@dataclass
class ClipPool:
    """Clips and labels of a pool (see the module docstring), on one device."""

    clips: Tensor  #: uint8 (N, 3, T, S, S)
    labels: Tensor  #: int64 (N,), -1 for unlabelled clips
    num_synthetic: int
    spec: PoolSpec
    seconds: float = 0.0  #: wall time of the generation
    workers: int = 1

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    @property
    def num_photos(self) -> int:
        return len(self) - self.num_synthetic

    @property
    def device(self) -> torch.device:
        return self.clips.device

    def to(self, device: torch.device | str) -> ClipPool:
        return ClipPool(self.clips.to(device), self.labels.to(device), self.num_synthetic, self.spec, self.seconds,
                        self.workers)

    def gather(self, rows: Tensor) -> Tensor:
        """float32 (B, 3, T, S, S) in [-1, 1] of the clips at ``rows`` (int64 (B,), any device)."""
        return to_float(self.clips[rows.to(self.clips.device)])

    def summary(self) -> dict[str, float | int | str]:
        return {"data": self.spec.data, "split": self.spec.split, "clips": len(self), "synthetic": self.num_synthetic, "photos": self.num_photos,
                "frames": self.spec.frames, "size": self.spec.size, "seed": self.spec.seed,
                "megabytes": round(self.clips.numel() / 2**20, 1), "seconds": round(self.seconds, 2),
                "workers": self.workers, "device": str(self.device)}


def to_uint8(video: Tensor) -> np.ndarray:
    """float (3, T, S, S) in [-1, 1] -> uint8 array of the same shape (nearest byte)."""
    v = video.detach().cpu().numpy()
    return np.clip(np.rint((v + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_float(clips: Tensor) -> Tensor:
    """uint8 clips -> float32 in [-1, 1] (same shape, same device)."""
    return clips.float().div_(127.5).sub_(1.0)


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------


def _source(kind: str, spec: PoolSpec):
    if kind == "synthetic" and spec.data == "digits":
        from ..data.digits import MovingDigits

        return MovingDigits(num_clips=max(1, spec.synthetic), frames=spec.frames, size=spec.size, seed=spec.seed,
                            split=spec.split)  # type: ignore[arg-type]
    if kind == "synthetic":
        from ..data.synthetic import SyntheticVideos

        return SyntheticVideos(num_clips=max(1, spec.synthetic), frames=spec.frames, size=spec.size, seed=spec.seed)
    from ..data.natural import PhotoPans

    return PhotoPans(num_clips=max(1, spec.photos), frames=spec.frames, size=spec.size, seed=spec.seed + 1)


def _render(job: tuple[str, PoolSpec, int, int, int]) -> list[int]:
    """Render clips ``start .. stop - 1`` of one source into rows ``row0 ..`` of the shared array."""
    kind, spec, start, stop, row0 = job
    assert _SHARED is not None
    ds = _source(kind, spec)
    labels = []
    for i in range(start, stop):
        item = ds[i]
        _SHARED[row0 + i - start] = to_uint8(item["video"])
        labels.append(int(item.get("label", -1)))
    return labels


def _worker_init() -> None:
    torch.set_num_threads(1)  # a forked child must not start its own OpenMP pool


def default_workers() -> int:
    """CPU cores this process may use (at most 16)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


def generate_pool(spec: PoolSpec, workers: int | None = None) -> ClipPool:
    """Render every clip of ``spec`` once into a uint8 pool on the CPU, with ``workers`` processes.

    The result is identical for any number of workers.
    """
    global _SHARED
    spec.validate()
    workers = default_workers() if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    if spec.data == "digits":  # vectorised: one process renders thousands of clips per second
        ds = _source("synthetic", spec)
        parts = [ds.render(range(i, min(spec.synthetic, i + 2048))) for i in range(0, spec.synthetic, 2048)]
        clips = torch.from_numpy(np.concatenate([c for c, _ in parts]))
        labels = torch.from_numpy(np.concatenate([y for _, y in parts])).to(torch.int64)
        return ClipPool(clips, labels, spec.synthetic, spec, time.perf_counter() - t0, 1)
    shape = (spec.clips, 3, spec.frames, spec.size, spec.size)
    buf = mmap.mmap(-1, spec.nbytes)  # MAP_SHARED | MAP_ANONYMOUS: written by the forked workers
    arr = np.frombuffer(buf, dtype=np.uint8).reshape(shape)
    jobs = []
    chunk = max(8, math.ceil(spec.clips / (workers * 6)))
    for kind, count, row0 in (("synthetic", spec.synthetic, 0), ("photos", spec.photos, spec.synthetic)):
        for start in range(0, count, chunk):
            jobs.append((kind, spec, start, min(count, start + chunk), row0 + start))
    use_fork = workers > 1 and len(jobs) > 1 and "fork" in multiprocessing.get_all_start_methods()
    _SHARED = arr
    try:
        if use_fork:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                     initializer=_worker_init) as ex:
                label_lists = list(ex.map(_render, jobs))
        else:
            workers = 1
            label_lists = [_render(j) for j in jobs]
    finally:
        _SHARED = None
    labels = torch.tensor([y for part in label_lists for y in part], dtype=torch.int64)
    clips = torch.from_numpy(arr)  # keeps ``arr`` (and so the mapping) alive
    return ClipPool(clips, labels, spec.synthetic, spec, time.perf_counter() - t0, workers)


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------


def mixture_rows(num_synthetic: int, num_photos: int, photo_weight: float) -> Tensor:
    """Pool rows of a virtual index space in which photo clips make up ``photo_weight`` of the
    indices, whatever their share of the pool (photo rows repeat, or only some are used).

    Returns int64 (V,): ``V = num_synthetic + round(num_synthetic * w / (1 - w))`` when both kinds
    are present; the first ``num_synthetic`` entries are the synthetic rows in order.
    """
    if not 0.0 <= photo_weight < 1.0:
        raise ValueError(f"photo_weight must be in [0, 1), got {photo_weight}")
    syn = torch.arange(num_synthetic)
    if num_photos == 0 or photo_weight == 0.0:
        if num_synthetic == 0:
            raise ValueError("the pool has no clips to sample")
        return syn
    if num_synthetic == 0:
        return num_synthetic + torch.arange(num_photos)
    n_virtual = max(1, round(num_synthetic * photo_weight / (1.0 - photo_weight)))
    return torch.cat([syn, num_synthetic + torch.arange(n_virtual) % num_photos])


def augment(clips: Tensor, *, hflip: bool = True, reverse: bool = True) -> Tensor:
    """Random horizontal flips and time reversals, each with probability 1/2 per clip, drawn from
    the global torch RNG of ``clips``' device. Any dtype; shape (B, C, T, H, W) is kept."""
    B = clips.shape[0]
    out = clips
    for on, dim in ((hflip, -1), (reverse, 2)):
        if on:
            m = (torch.rand(B, device=clips.device) < 0.5).view(B, *([1] * (clips.ndim - 1)))
            out = torch.where(m, out.flip(dim), out)
    return out


class IndexDataset(torch.utils.data.Dataset):
    """``dataset[i] -> i`` for ``i < n``: what the training loop's sampler batches; a task's loss turns
    the indices into clips or tokens on its device."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("IndexDataset needs n >= 1")
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n}")
        return i


def collate_indices(batch: list[int]) -> dict[str, Tensor]:
    """A list of indices -> ``{"index": int64 (B,)}`` (CPU, so the loader may pin it)."""
    return {"index": torch.tensor(batch, dtype=torch.int64)}
