"""Metrics: PSNR, SSIM and friends (pure tensor functions)."""

from .metrics import per_frame_psnr, psnr, ssim

__all__ = ["per_frame_psnr", "psnr", "ssim"]
