"""Encode a dataset once and keep what the analyses need: token ids, latents, labels, clips, errors.

Shapes for n clips of (3, T, H, W), N tokens, latent dimension d::

    data = encode_dataset(tok, SyntheticVideos(64, frames=8, size=32), n=48, batch_size=16)
    data.indices      # int64 (n, N)
    data.latents      # float32 (n, N, d)  unit codebook vectors of the tokens
    data.labels       # int64 (n,)         -1 where the dataset gives no label
    data.videos       # float32 (n, 3, T, H, W) in [-1, 1], or None (keep_videos=False)
    data.psnr         # float32 (n,) reconstruction PSNR in dB (None with reconstruct=False)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..evaluation.metrics import psnr as psnr_metric
from ._util import batches, evaluating

__all__ = ["EncodedDataset", "encode_dataset"]


@dataclass
class EncodedDataset:
    """What :func:`encode_dataset` returns; every tensor is on the CPU."""

    indices: Tensor  #: int64 (n, N) token ids
    latents: Tensor  #: float32 (n, N, d) unit-norm quantized latents (codebook rows of ``indices``)
    labels: Tensor  #: int64 (n,) class labels, -1 when unknown
    videos: Tensor | None = None  #: float32 (n, 3, T, H, W) in [-1, 1]
    psnr: Tensor | None = None  #: float32 (n,) reconstruction PSNR (dB, peak 1 on [0, 1])
    mse: Tensor | None = None  #: float32 (n,) reconstruction MSE on the [0, 1] scale
    dataset_indices: Tensor | None = None  #: int64 (n,) the item index of each clip in the dataset

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.indices.shape[1])


def _item(item) -> tuple[Tensor, int]:
    """A dataset item -> ((3, T, H, W) float video, label or -1)."""
    if isinstance(item, dict):
        video, label = item["video"], item.get("label", -1)
    elif isinstance(item, (tuple, list)):
        video, label = item[0], (item[1] if len(item) > 1 else -1)
    else:
        video, label = item, -1
    video = torch.as_tensor(video)
    if video.ndim != 4:
        raise ValueError(f"dataset items must hold a (3, T, H, W) video; got shape {tuple(video.shape)}")
    return video.float(), int(label) if label is not None else -1


@torch.no_grad()
def encode_dataset(
    tok,
    dataset,
    n: int | None = None,
    batch_size: int = 8,
    *,
    keep_videos: bool = True,
    reconstruct: bool = True,
    device: torch.device | str | None = None,
) -> EncodedDataset:
    """Tokenize the first ``n`` clips of ``dataset`` in ``eval()`` mode (argmax VQ).

    Args:
        tok: a :class:`~larp_lab.models.tokenizer.LARPTokenizer`.
        dataset: anything indexable whose items are ``{"video": (3, T, H, W), "label": int}`` dicts
            (:class:`~larp_lab.data.synthetic.SyntheticVideos`), ``(video, label)`` tuples or bare
            videos; or a float tensor of clips (B, 3, T, H, W).
        n: number of clips (default: all of them).
        keep_videos: keep the clips (needed by the reconstruction analyses and figures).
        reconstruct: also decode each clip and record its PSNR and MSE against the original.
        device: where to run the model (default: the tokenizer's device).
    Returns:
        :class:`EncodedDataset` with CPU tensors.
    """
    dev = torch.device(device) if device is not None else tok.device
    total = len(dataset)
    n = total if n is None else int(n)
    if not 0 < n <= total:
        raise ValueError(f"n must be in [1, {total}] for a dataset of {total} clips; got {n}")
    indices, latents, labels, videos, psnrs, mses = [], [], [], [], [], []
    with evaluating(tok):
        for sl in batches(n, batch_size):
            if isinstance(dataset, Tensor):
                x = dataset[sl].float()
                lab = [-1] * x.shape[0]
            else:
                items = [_item(dataset[i]) for i in range(sl.start, sl.stop)]
                x = torch.stack([v for v, _ in items])
                lab = [label for _, label in items]
            x = x.to(dev)
            enc = tok.encode(x)
            indices.append(enc.indices.cpu())
            latents.append(enc.latents.float().cpu())
            labels.append(torch.tensor(lab, dtype=torch.long))
            if keep_videos:
                videos.append(x.cpu())
            if reconstruct:
                rec = tok.decode(enc.embeddings, enc.video_shape)
                psnrs.append(psnr_metric(rec, x).float().cpu())
                diff = (rec.float().clamp(-1, 1) - x.float().clamp(-1, 1)) * 0.5  # on the [0, 1] scale
                mses.append(diff.pow(2).flatten(1).mean(1).cpu())
    return EncodedDataset(
        indices=torch.cat(indices),
        latents=torch.cat(latents),
        labels=torch.cat(labels),
        videos=torch.cat(videos) if keep_videos else None,
        psnr=torch.cat(psnrs) if reconstruct else None,
        mse=torch.cat(mses) if reconstruct else None,
        dataset_indices=torch.arange(n, dtype=torch.long),
    )
