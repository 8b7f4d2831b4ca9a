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

State-dict names follow the official module, so an official discriminator state dict (from an
official training checkpoint) has the same keys. The official discriminator saw frames in [0, 1];
this project's videos are [-1, 1] (a discriminator trained here sees [-1, 1]; to run an official
one, feed it ``video * 0.5 + 0.5``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .layers import ViTBlock, sincos_3d

__all__ = ["DISCRIMINATOR_PRESETS", "DiscriminatorConfig", "TransformerDiscriminator"]


@dataclass
class DiscriminatorConfig:
    """Sizes of a :class:`TransformerDiscriminator`; defaults = the official LARP-L configuration."""

    hidden_size: int = 384
    num_heads: int = 12
    depth: int = 8
    input_size: int = 128
    frame_num: int = 16
    temporal_patch_size: int = 4
    patch_size: int = 8
    in_channels: int = 3
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5

    def validate(self) -> None:
        for name in ("hidden_size", "num_heads", "depth", "input_size", "frame_num",
                     "temporal_patch_size", "patch_size", "in_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"DiscriminatorConfig.{name} must be a positive int, got {v!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.hidden_size % 4:
            raise ValueError("hidden_size must be divisible by 4 (3-D sin-cos table)")
        if self.input_size % self.patch_size or self.frame_num % self.temporal_patch_size:
            raise ValueError(
                f"clip {self.frame_num}x{self.input_size}x{self.input_size} is not divisible into "
                f"{self.temporal_patch_size}x{self.patch_size}x{self.patch_size} patches"
            )
        if self.hidden_size > 16384 or self.depth > 256 or self.num_patches > 1_000_000:
            raise ValueError("DiscriminatorConfig describes an absurdly large model")

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) patch grid."""
        s = self.input_size // self.patch_size
        return self.frame_num // self.temporal_patch_size, s, s

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DiscriminatorConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"DiscriminatorConfig: unknown keys {unknown}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def replace(self, **kw) -> DiscriminatorConfig:
        return dataclasses.replace(self, **kw)


def _official() -> DiscriminatorConfig:
    """The released tokenizer's discriminator: 384 wide, 12 heads, 8 blocks, 4x8x8 patches, 16x128x128."""
    return DiscriminatorConfig()


def _tiny() -> DiscriminatorConfig:
    """For the ``tiny`` tokenizer (64x64x16): 128 wide, 4 heads, 4 blocks."""
    return DiscriminatorConfig(hidden_size=128, num_heads=4, depth=4, input_size=64, frame_num=16)


def _micro() -> DiscriminatorConfig:
    """For the ``micro`` tokenizer (32x32x8) and tests: 64 wide, 2 heads, 2 blocks, 2x8x8 patches."""
    return DiscriminatorConfig(hidden_size=64, num_heads=2, depth=2, input_size=32, frame_num=8, temporal_patch_size=2)


DISCRIMINATOR_PRESETS = {"official": _official, "tiny": _tiny, "micro": _micro}


class _PatchEmbed3D(nn.Module):
    """Conv3d with kernel = stride = (pt, p, p) (official ``x_embedder``)."""

    def __init__(self, in_channels: int, hidden: int, pt: int, p: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, hidden, kernel_size=(pt, p, p), stride=(pt, p, p))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, t*h*w, D)"""
        return self.proj(x).flatten(2).transpose(1, 2)


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

        disc = TransformerDiscriminator(DISCRIMINATOR_PRESETS["micro"]())
        logits = disc(torch.rand(2, 3, 8, 32, 32) * 2 - 1)   # (2,)
    """

    def __init__(self, config: DiscriminatorConfig | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        config.validate()
        self.config = c = config
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            self.x_embedder = _PatchEmbed3D(c.in_channels, c.hidden_size, c.temporal_patch_size, c.patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            self.register_buffer("encoder_pos_embed", torch.zeros(1, c.num_patches, c.hidden_size))
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
            t, h, w_ = self.config.grid
            self.encoder_pos_embed.copy_(sincos_3d(self.config.hidden_size, t, h, w_))

    def forward(self, video: Tensor) -> Tensor:
        """video (B, C, T, H, W) -> logits (B,)."""
        c = self.config
        want = (c.in_channels, c.frame_num, c.input_size, c.input_size)
        if video.ndim != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(f"discriminator expects (B, {', '.join(map(str, want))}); got {tuple(video.shape)}")
        x = self.x_embedder(video) + self.encoder_pos_embed  # (B, n, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        z = self.transformer_encoder(torch.cat([cls, x], dim=1))  # (B, 1 + n, D)
        return self.fc(self.norm_final(z[:, 0])).squeeze(-1)  # (B,)
