"""The latent space: codebook usage, 2-D maps of codes and clips, nearest clips in token space.

* :func:`codebook_usage_stats`: counts, usage, perplexity and dead codes (through
  :class:`~larp_lab.evaluation.codebook.CodebookStats`);
* :func:`embed_2d`: UMAP (``umap-learn``, imported only when asked: about 20 s cold) or PCA (numpy,
  instant, deterministic) of any (n, D) points;
* :func:`codebook_points`: the L2-normalised d-dimensional code vectors, for a map of the codebook;
* :func:`clip_embeddings`: one vector per clip from its quantized latents (B, N, d). Decision: the
  default is ``"mean"``, the mean of the clip's unit latents (d values), which compares *what*
  codes a clip uses, independent of their order and cheap for any N; ``"concat"`` (N*d values)
  also compares *where* (at which position) they are used, which matters for LARP's holistic,
  position-specialised tokens; ``"histogram"`` is the normalised code histogram (K values);
* :func:`token_points`: every token of every clip with its position and clip label, for a map
  coloured by position;
* :func:`motion_energy`: a per-clip motion score for colouring;
* :func:`nearest_clips`, :func:`hamming_distances`, :func:`cosine_distances`: neighbours in token
  space (Hamming on token ids; cosine on clip embeddings).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ..evaluation.codebook import CodebookStats
from ._util import as_long_indices, to_numpy

__all__ = [
    "clip_embeddings",
    "clip_map",
    "codebook_map",
    "codebook_points",
    "codebook_usage_stats",
    "cosine_distances",
    "embed_2d",
    "hamming_distances",
    "motion_energy",
    "nearest_clips",
    "token_points",
]


# ================================================================================================
#                                        Codebook usage
# ================================================================================================


def codebook_usage_stats(indices, codebook_size: int) -> dict:
    """Usage of the K codes in ``indices`` (any shape).

    Returns ``{"counts": int64 (K,), "probabilities": float64 (K,), "dead_codes": int64 (D,),
    "usage", "perplexity", "entropy", "kl_from_uniform", "used_codes", "total", ...}`` (the scalar
    entries are :meth:`CodebookStats.summary`; arrays are numpy).
    """
    s = CodebookStats(codebook_size).update(torch.as_tensor(indices))
    out = s.summary()
    out["num_dead_codes"] = out.pop("dead_codes")
    out.update(counts=to_numpy(s.counts), probabilities=to_numpy(s.probabilities()),
               dead_codes=to_numpy(s.dead_codes()))
    return out


# ================================================================================================
#                                       2-D embeddings
# ================================================================================================


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (centred SVD), sign fixed so each axis' largest loading is
    positive: deterministic for a given input. Fewer than 2 dimensions are zero-padded."""
    xc = x - x.mean(0, keepdims=True)
    if xc.shape[0] < 2:
        return np.zeros((xc.shape[0], 2))
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(1)])
    signs[signs == 0] = 1
    y = xc @ (comps * signs[:, None]).T
    if y.shape[1] < 2:
        y = np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    return y


def embed_2d(
    points,
    method: str = "umap",
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int = 0,
) -> np.ndarray:
    """(n, D) points -> (n, 2) coordinates by UMAP or PCA.

    Args:
        method: ``"umap"`` (``umap-learn``, imported lazily; seeded, hence single-threaded and
            reproducible) or ``"pca"`` (numpy SVD; fast, for tests and quick looks).
        n_neighbors: UMAP's neighbourhood size (clipped to n - 1).
        min_dist, metric: UMAP's; ``metric="cosine"`` suits unit-norm latents.
    """
    x = np.asarray(to_numpy(points), dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"points must be (n, D); got {x.shape}")
    n = x.shape[0]
    if method == "pca":
        return _pca_2d(x)
    if method != "umap":
        raise ValueError(f"method must be 'umap' or 'pca'; got {method!r}")
    if n < 4:
        raise ValueError(f"UMAP needs at least 4 points; got {n} (use method='pca')")
    import umap  # slow import (numba): only here

    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(int(n_neighbors), n - 1)), min_dist=float(min_dist),
        metric=metric, random_state=int(seed), init="spectral" if n > 10 else "random",
    )
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": intended
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        return np.asarray(reducer.fit_transform(x.astype(np.float32)), dtype=np.float64)


def codebook_points(tok) -> np.ndarray:
    """The codebook as unit vectors: float64 (K, d)."""
    return to_numpy(tok.bottleneck.regularizer.normalized_codebook().detach()).astype(np.float64)


def clip_embeddings(latents, mode: str = "mean", *, indices=None, codebook_size: int | None = None) -> np.ndarray:
    """One vector per clip (see the module docstring for the choice).

    Args:
        latents: (B, N, d) quantized latents (``EncodedDataset.latents``).
        mode: ``"mean"`` -> (B, d); ``"concat"`` -> (B, N*d); ``"histogram"`` -> (B, K) normalised
            code counts (needs ``indices`` (B, N) and ``codebook_size``).
    """
    z = np.asarray(to_numpy(latents), dtype=np.float64)
    if z.ndim != 3:
        raise ValueError(f"latents must be (B, N, d); got {z.shape}")
    if mode == "mean":
        return z.mean(1)
    if mode == "concat":
        return z.reshape(z.shape[0], -1)
    if mode == "histogram":
        if indices is None or codebook_size is None:
            raise ValueError("mode='histogram' needs indices= and codebook_size=")
        idx = to_numpy(as_long_indices(indices))
        h = np.stack([np.bincount(r, minlength=codebook_size) for r in idx]).astype(np.float64)
        return h / idx.shape[1]
    raise ValueError(f"mode must be 'mean', 'concat' or 'histogram'; got {mode!r}")


def codebook_map(tok, indices=None, *, method: str = "umap", only_used: bool = False, **kwargs) -> dict:
    """2-D map of the codebook's unit vectors: ``{"coords": (K', 2), "code": (K',), "count": (K',)}``.

    ``count`` is each code's number of uses in ``indices`` (zeros without them); ``only_used`` keeps
    the codes used at least once. ``kwargs`` go to :func:`embed_2d` (UMAP uses the cosine metric by
    default here, since the codes are compared by cosine).
    """
    pts = codebook_points(tok)
    K = pts.shape[0]
    counts = np.zeros(K, dtype=np.int64) if indices is None else codebook_usage_stats(indices, K)["counts"]
    keep = np.arange(K) if not only_used else np.flatnonzero(counts > 0)
    kwargs.setdefault("metric", "cosine")
    return {"coords": embed_2d(pts[keep], method, **kwargs), "code": keep, "count": counts[keep]}


def clip_map(data, *, mode: str = "mean", method: str = "umap", **kwargs) -> dict:
    """2-D map of the clips of an :class:`~larp_lab.analysis.dataset.EncodedDataset`.

    Returns ``{"coords": (n, 2), "label": (n,), "motion": (n,) (NaN without videos), "psnr": (n,)
    (NaN without reconstructions), "index": (n,)}``; ``mode`` as :func:`clip_embeddings`.
    """
    emb = clip_embeddings(data.latents, mode, indices=data.indices,
                          codebook_size=int(data.indices.max()) + 1 if mode == "histogram" else None)
    n = emb.shape[0]
    return {
        "coords": embed_2d(emb, method, **kwargs),
        "label": to_numpy(data.labels),
        "motion": motion_energy(data.videos) if data.videos is not None else np.full(n, np.nan),
        "psnr": to_numpy(data.psnr).astype(np.float64) if data.psnr is not None else np.full(n, np.nan),
        "index": np.arange(n),
    }


def token_points(latents, labels=None, indices=None) -> dict[str, np.ndarray]:
    """Every token of every clip as a point: ``{"points": (B*N, d), "position": (B*N,), "clip":
    (B*N,), "label": (B*N,) (-1 without labels), "code": (B*N,) (-1 without indices)}``."""
    z = np.asarray(to_numpy(latents), dtype=np.float64)
    B, N, d = z.shape
    lab = np.full(B, -1) if labels is None else to_numpy(labels).reshape(B)
    code = np.full((B, N), -1) if indices is None else to_numpy(as_long_indices(indices))
    return {
        "points": z.reshape(B * N, d),
        "position": np.tile(np.arange(N), B),
        "clip": np.repeat(np.arange(B), N),
        "label": np.repeat(lab, N),
        "code": code.reshape(-1),
    }


def motion_energy(videos: Tensor) -> np.ndarray:
    """Mean absolute difference between consecutive frames, per clip: (B,) from (B, 3, T, H, W)
    in [-1, 1] (0 for a still clip; on the [-1, 1] scale)."""
    v = torch.as_tensor(videos).float()
    if v.ndim != 5:
        raise ValueError(f"videos must be (B, 3, T, H, W); got {tuple(v.shape)}")
    if v.shape[2] < 2:
        return np.zeros(v.shape[0])
    return to_numpy((v[:, :, 1:] - v[:, :, :-1]).abs().flatten(1).mean(1)).astype(np.float64)


# ================================================================================================
#                                     Nearest clips
# ================================================================================================


def hamming_distances(indices, other=None) -> np.ndarray:
    """Number of positions where token ids differ: int64 (B, B') between (B, N) and (B', N)."""
    a = as_long_indices(indices)
    b = a if other is None else as_long_indices(other)
    if a.shape[1] != b.shape[1]:
        raise ValueError("token sequences differ in length")
    return to_numpy((a[:, None, :] != b[None, :, :]).sum(-1))


def cosine_distances(emb, other=None) -> np.ndarray:
    """1 - cosine similarity: float64 (B, B') between (B, D) and (B', D) embeddings."""
    a = np.asarray(to_numpy(emb), dtype=np.float64)
    b = a if other is None else np.asarray(to_numpy(other), dtype=np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - an @ bn.T


def nearest_clips(
    query: int, *, indices=None, embeddings=None, k: int = 5, metric: str = "hamming"
) -> list[dict]:
    """The ``k`` clips nearest to clip ``query`` (itself excluded), nearest first.

    ``metric="hamming"`` uses ``indices`` (B, N) (distance = differing positions, also reported as a
    fraction of N); ``metric="cosine"`` uses ``embeddings`` (B, D) (e.g. :func:`clip_embeddings`).
    Ties are broken by the lower clip index. Returns rows ``{"rank", "index", "distance"}``.
    """
    if metric == "hamming":
        if indices is None:
            raise ValueError("metric='hamming' needs indices=")
        idx = as_long_indices(indices)
        d = hamming_distances(idx[query : query + 1], idx)[0].astype(np.float64)
        n_tok = idx.shape[1]
    elif metric == "cosine":
        if embeddings is None:
            raise ValueError("metric='cosine' needs embeddings=")
        e = np.asarray(to_numpy(embeddings), dtype=np.float64)
        d = cosine_distances(e[query : query + 1], e)[0]
        n_tok = None
    else:
        raise ValueError(f"metric must be 'hamming' or 'cosine'; got {metric!r}")
    order = [i for i in np.argsort(d, kind="stable") if i != query][: int(k)]
    rows = []
    for r, i in enumerate(order):
        row = {"rank": r, "index": int(i), "distance": float(d[i])}
        if n_tok:
            row["fraction_differing"] = float(d[i]) / n_tok
        rows.append(row)
    return rows
