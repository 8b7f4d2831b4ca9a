"""Reconstruction metrics on videos in [-1, 1].

All functions take (B, 3, T, H, W) or (3, T, H, W) float tensors in [-1, 1], clamp them, and measure
on the [0, 1] scale (PSNR with a peak of 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    x = x.float()
    if x.ndim == 4:
        x = x.unsqueeze(0)
    if x.ndim != 5:
        raise ValueError(f"expected (B, C, T, H, W) or (C, T, H, W); got {tuple(x.shape)}")
    return (x.clamp(-1, 1) + 1) * 0.5


def psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """PSNR in dB per clip: (B,). MSE over all pixels of the clip, peak 1."""
    p, t = _unit(pred), _unit(target)
    mse = (p - t).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / (mse + eps))


def per_frame_psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """PSNR in dB per clip and frame: (B, T)."""
    p, t = _unit(pred), _unit(target)
    mse = (p - t).pow(2).mean(dim=(1, 3, 4))
    return 10 * torch.log10(1.0 / (mse + eps))


def _gaussian(size: int, sigma: float, device) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per clip (B,), computed frame by frame on each channel with a Gaussian window
    (Wang et al. 2004 constants; window shrunk for frames smaller than it)."""
    p, t = _unit(pred), _unit(target)
    B, C, T, H, W = p.shape
    k = min(window, H, W)
    k = k if k % 2 else k - 1
    g = _gaussian(k, sigma, p.device)
    kernel = (g[:, None] * g[None, :]).expand(C, 1, k, k)
    p2 = p.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    t2 = t.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=C)

    mu_p, mu_t = blur(p2), blur(t2)
    var_p = blur(p2 * p2) - mu_p**2
    var_t = blur(t2 * t2) - mu_t**2
    cov = blur(p2 * t2) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return s.reshape(B, T, -1).mean(dim=(1, 2))
