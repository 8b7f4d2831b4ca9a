"""Stochastic cosine vector quantizer (the official ``vq`` regularizer with ``l2_normalized`` and
``stochastic`` on) and the bottleneck around it.

Decision (official_layout.md section 4 item 3): in ``eval()`` the quantizer takes the **argmax** of
the cosine similarity, so a loaded tokenizer tokenizes deterministically; sampling at inference
is available by passing ``sample=True``. In training it samples
``multinomial(softmax(cos * (1 / temperature)))``, consuming the RNG exactly as the official code
(one ``torch.multinomial`` over (B*N, K) probabilities), so seeded runs replay the official draws.

Decision (item 6): the straight-through output is ``z + (q - z).detach()`` as in the official code;
``decode_indices`` uses the looked-up codebook rows, which differ from it by about 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import HookPoint


@dataclass
class Quantized:
    """Output of :class:`CosineVQ`. Shapes for B clips of N tokens, latent dim d, codebook K."""

    indices: Tensor  #: int64 (B, N)
    quantized: Tensor  #: (B, N, d) straight-through unit vectors (``regularized_z``)
    normalized: Tensor  #: (B, N, d) L2-normalised input (``unregularized_z``)
    cos_sim: Tensor  #: (B, N, K) cosine similarity to every code
    loss: Tensor  #: scalar: commitment_weight * commit + codebook_weight * codebook
    loss_commit: Tensor  #: scalar mean((q.detach() - z)^2)
    loss_codebook: Tensor  #: scalar mean((q - z.detach())^2)


class CosineVQ(nn.Module):
    """Codebook of K raw vectors (``embedding.weight``), compared after L2 normalisation."""

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        temperature: float = 0.03,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.temperature = temperature
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.kaiming_uniform_(self.embedding.weight)

    def normalized_codebook(self) -> Tensor:
        """(K, d) unit-norm codebook rows (float32)."""
        return F.normalize(self.embedding.weight.float(), dim=-1)

    def lookup(self, indices: Tensor) -> Tensor:
        """indices (...,) int32/int64 -> (..., d) unit-norm codebook rows."""
        self._check_indices(indices)
        return F.normalize(self.embedding(indices.long()).float(), dim=-1)

    def forward(self, z: Tensor, sample: bool | None = None, temperature: float | None = None) -> Quantized:
        """Quantize ``z`` (B, N, d).

        Args:
            sample: draw codes from ``softmax(cos / temperature)`` (default: only in training).
            temperature: sampling temperature (default: the configured one, 0.03 for LARP).
        """
        B, N, d = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)  # (B, N, d)
            emb = self.normalized_codebook()  # (K, d)
            cos = z.reshape(B * N, d) @ emb.t()  # (B*N, K)
            if (self.training if sample is None else sample):
                t = self.temperature if temperature is None else temperature
                probs = F.softmax(cos * (1.0 / t), dim=-1)
                idx = torch.multinomial(probs, 1).reshape(B, N)
            else:
                idx = cos.argmax(dim=-1).reshape(B, N)
            q = emb[idx]  # (B, N, d)
            loss_commit = F.mse_loss(q.detach(), z)
            loss_codebook = F.mse_loss(q, z.detach())
            loss = self.commitment_weight * loss_commit + self.codebook_weight * loss_codebook
            quantized = z + (q - z).detach()
        return Quantized(
            indices=idx,
            quantized=quantized,
            normalized=z,
            cos_sim=cos.reshape(B, N, -1),
            loss=loss,
            loss_commit=loss_commit,
            loss_codebook=loss_codebook,
        )

    def _check_indices(self, indices: Tensor) -> None:
        if indices.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8):
            raise TypeError(f"token indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"token indices must lie in [0, {self.codebook_size}); got values in "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )


class Bottleneck(nn.Module):
    """``in_linear`` (D -> d), the cosine VQ (as ``regularizer``), ``out_linear`` (d -> D)."""

    def __init__(
        self,
        hidden: int,
        dim: int,
        decoder_hidden: int,
        codebook_size: int,
        temperature: float,
        commitment_weight: float,
        codebook_weight: float,
    ) -> None:
        super().__init__()
        # registration order = the official state-dict order
        self.in_linear = nn.Linear(hidden, dim)
        self.out_linear = nn.Linear(dim, decoder_hidden)
        self.regularizer = CosineVQ(codebook_size, dim, temperature, commitment_weight, codebook_weight)
        self.hook_projected = HookPoint()  # (B, N, d) before normalisation
        self.hook_quantized = HookPoint()  # (B, N, d) straight-through quantized latents

    def forward(self, h: Tensor, sample: bool | None = None, temperature: float | None = None):
        """h: (B, N, D) encoder query outputs -> (projected (B, N, d), Quantized)."""
        projected = self.hook_projected(self.in_linear(h))
        q = self.regularizer(projected, sample=sample, temperature=temperature)
        q.quantized = self.hook_quantized(q.quantized)
        return projected, q
