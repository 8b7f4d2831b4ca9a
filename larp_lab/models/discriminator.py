"""The GAN discriminator used to train the tokenizer: a ViT over 3-D patches with a CLS token.

Official facts (hywang66/LARP ``models/loss.py`` ``TransformerDiscriminator``, configured by
``cfgs/larp_tokenizer.yaml`` ``loss.args``; read, not copied):

* ``disc_type: 'transformer'`` with ``disc_tran_hidden_size: 384``, ``disc_tran_n_heads: 12``
  (head size 32), ``disc_tran_n_layers: 8``, ``disc_tran_temporal_patch_size: 4``,
  ``disc_tran_patch_size: 8``, on the tokenizer's clips (``input_size`` 128, ``frame_num`` 16), so
  4 x 16 x 16 = 1024 patches; ``spectral_norm: false``, ``r1_gp_weight: 0.0``.
* Patch embedding: Conv3d with kernel = stride = (pt, p, p) and bias (``x_embedder.proj``).
* Position table: a **fixed** 3-D sin-cos buffer ``encoder_pos_embed`` (1, n, D), the same
  construction as the tokenizer's patch table, added to the patch tokens only.
* A learned ``cls_token`` (1, 1, D), **prepended** after the position table (it gets no position).
* ``transformer_encoder.blocks``: timm ViT blocks (pre-LN, qkv without bias, MLP ratio 4, exact
  GELU, no dropout) -- :class:`~larp_lab.models.layers.ViTBlock` with LayerNorm eps 1e-5 (timm of
  2024, see official_layout.md section 0).
* Head: LayerNorm(eps 1e-6) ``norm_final`` on the CLS output, then ``fc`` Linear(D, 1): one logit
  per clip. The official module returns (B, 1); this one returns (B,).
* Init: Xavier-uniform on every Linear with zero biases, LayerNorms reset, the patch Conv3d
  Xavier-uniform on its weight viewed as (D, -1) with zero bias, ``cls_token`` Xavier-uniform.

The architecture is a :class:`~larp_lab.config.DiscriminatorConfig` (presets in
``larp_lab.config.DISCRIMINATOR_PRESETS``); the clip it judges (channels, frames, side) is the
tokenizer's and is given to the constructor.

State-dict names follow the official module, so an official discriminator state dict (from an
official training checkpoint) has the same keys. The official discriminator saw frames in [0, 1];
this project's videos are [-1, 1] (a discriminator trained here sees [-1, 1]; to run an official
one, feed it ``video * 0.5 + 0.5``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..config import DiscriminatorConfig
from .layers import PatchEmbed3D, ViTBlock, sincos_3d

__all__ = ["TransformerDiscriminator"]


class _Blocks(nn.Module):
    """``depth`` ViT blocks under the official name ``blocks``."""

    def __init__(self, c: DiscriminatorConfig) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *[ViTBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.layer_norm_eps) for _ in range(c.depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class TransformerDiscriminator(nn.Module):
    """ViT discriminator over 3-D patches: one real/fake logit per clip.

    Example::

        disc = TransformerDiscriminator(DISCRIMINATOR_PRESETS["micro"](), input_size=32, frame_num=8)
        logits = disc(torch.rand(2, 3, 8, 32, 32) * 2 - 1)   # (2,)
    """

    def __init__(
        self,
        config: DiscriminatorConfig | None = None,
        *,
        input_size: int = 128,
        frame_num: int = 16,
        in_channels: int = 3,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        config.validate()
        config.check_clip(in_channels, frame_num, input_size)
        self.config = c = config
        self.input_size, self.frame_num, self.in_channels = input_size, frame_num, in_channels
        self.grid = c.grid(frame_num, input_size)  # (t, h, w)
        t, h, w = self.grid
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            self.x_embedder = PatchEmbed3D(in_channels, c.hidden_size, c.temporal_patch_size, c.patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            self.register_buffer("encoder_pos_embed", torch.zeros(1, t * h * w, c.hidden_size))
            self.transformer_encoder = _Blocks(c)
            self.norm_final = nn.LayerNorm(c.hidden_size, eps=1e-6)
            self.fc = nn.Linear(c.hidden_size, 1)
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation (see the module docstring) and the fixed position table."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.xavier_uniform_(self.cls_token)
        if self.encoder_pos_embed.device.type != "meta":
            self.encoder_pos_embed.copy_(sincos_3d(self.config.hidden_size, *self.grid))

    def forward(self, video: Tensor) -> Tensor:
        """video (B, C, T, H, W) -> logits (B,)."""
        want = (self.in_channels, self.frame_num, self.input_size, self.input_size)
        if video.ndim != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(f"discriminator expects (B, {', '.join(map(str, want))}); got {tuple(video.shape)}")
        x = self.x_embedder(video) + self.encoder_pos_embed  # (B, n, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        z = self.transformer_encoder(torch.cat([cls, x], dim=1))  # (B, 1 + n, D)
        return self.fc(self.norm_final(z[:, 0])).squeeze(-1)  # (B,)
