"""Codebook warm-up for the cosine VQ: continuous latents first, then a k-means-initialised codebook.

A tokenizer trained from nothing through the VQ learns codes and encoder at once; at small budgets
the codebook collapses onto a handful of codes before the encoder has anything to say. The warm-up
trains the first ``vq_warmup_steps`` with the L2-normalised encoder outputs handed straight to the
decoder (no quantization, no VQ loss, no prior loss); then the codebook rows are set to the
centroids of a spherical k-means over the latents of ``vq_init_clips`` training clips, and from
there training is the normal LARP objective (VQ + prior). The model and its state dict are
unchanged: only the order in which the parts are trained differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def spherical_kmeans(x: Tensor, k: int, iters: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """k-means under cosine similarity.

    Args:
        x: (n, d) vectors (normalised inside); n >= 1.
        k: number of centroids; when k > n the missing ones are noisy copies of random points.
    Returns:
        (k, d) unit-norm centroids (k-means++ seeding). Empty clusters are re-seeded to the points farthest from their
        centroid, so every centroid ends up used by at least one point when n >= k.
    """
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"spherical_kmeans expects (n, d) vectors with n >= 1, got {tuple(x.shape)}")
    x = F.normalize(x.float(), dim=-1)
    n = x.shape[0]
    c = _kmeans_pp(x, min(k, n), generator)
    if k > n:
        extra = x[torch.randint(0, n, (k - n,), generator=generator)]
        c = torch.cat([c, extra + 0.05 * torch.randn(extra.shape, generator=generator)])
    c = F.normalize(c, dim=-1)
    for _ in range(iters):
        sim = x @ c.t()  # (n, k)
        best, assign = sim.max(dim=1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        new = torch.where(counts[:, None] > 0, sums, c)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel() and n >= k:
            far = best.argsort()[: empty.numel()]  # least well represented points
            new[empty] = x[far]
        c = F.normalize(new, dim=-1)
    return c


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ seeding under the cosine distance 1 - cos: (n, d) unit vectors -> (k, d)."""
    n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    chosen = [first]
    dist = (1 - x @ x[first]).clamp_min(0)  # (n,) distance to the nearest chosen centre
    for _ in range(k - 1):
        total = float(dist.sum())
        if total <= 0:  # fewer distinct points than k: the rest are random points
            nxt = int(torch.randint(0, n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(dist / total, 1, generator=generator))
        chosen.append(nxt)
        dist = torch.minimum(dist, (1 - x @ x[nxt]).clamp_min(0))
    return x[chosen]


@torch.no_grad()
def collect_latents(model, dataset, num_clips: int, batch: int, seed: int, device: torch.device) -> Tensor:
    """(num_clips * N, d) L2-normalised encoder latents of ``num_clips`` clips drawn (seeded) from ``dataset``."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(dataset), (num_clips,), generator=g).tolist()
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(idx), batch):
        x = torch.stack([dataset[j]["video"] for j in idx[i : i + batch]]).to(device)
        z = model.encode(x, sample=False).normalized  # (b, N, d)
        out.append(z.reshape(-1, z.shape[-1]).float())
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def init_codebook_from_latents(model, latents: Tensor, seed: int, iters: int = 20) -> None:
    """Set the VQ codebook rows to spherical k-means centroids of ``latents`` (n, d)."""
    emb = model.bottleneck.regularizer.embedding.weight
    g = torch.Generator().manual_seed(seed)
    c = spherical_kmeans(latents.cpu(), emb.shape[0], iters=iters, generator=g)
    emb.copy_(c.to(emb.device, emb.dtype))


def continuous_forward(model, video: Tensor):
    """Training pass without quantization: (B, 3, T, H, W) -> TokenizerOutput whose reconstruction is
    decoded from the L2-normalised encoder latents (what the VQ would look up), with a zero VQ loss
    and no prior loss. ``model`` is a :class:`~larp_lab.LARPTokenizer` (not a DDP wrapper)."""
    import dataclasses

    from ..models.tokenizer import TokenizerOutput

    enc = model.encode(video, sample=False)
    rec = model.decode(model.bottleneck.out_linear(enc.normalized), enc.video_shape)
    zero = enc.normalized.new_zeros(())
    enc = dataclasses.replace(enc, loss_q=zero, loss_commit=zero, loss_codebook=zero)
    return TokenizerOutput(reconstruction=rec, encoding=enc, prior=None)
