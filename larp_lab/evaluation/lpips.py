"""LPIPS (VGG16, v0.1) in this project's own code, with weights read only from local files.

The network (Zhang et al. 2018, the ``lpips`` package v0.1, ``net='vgg'``), described from the
package and re-written here:

1. scaling layer: ``(x - shift) / scale`` per channel with the fixed constants
   shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450); input in [-1, 1];
2. the VGG16 ``features`` convolution stack (torchvision layout, layers 0..29, i.e. without the last
   max-pool), read after the ReLUs at indices 3, 8, 15, 22, 29 (relu1_2 .. relu5_3; 64, 128, 256,
   512, 512 channels);
3. each tap is unit-normalised over channels (``x / (sqrt(sum x^2) + 1e-10)``), the two images'
   taps are subtracted and squared, passed through a 1x1 convolution to one channel without bias
   (``lin{k}.model.1.weight``, (1, C, 1, 1); ``model.0`` is a dropout, inactive in eval), averaged
   over space and summed over the five taps.

How LARP uses it (hywang66/LARP ``models/loss.py`` and ``eval/rfvd_evaluator.py``):
``lpips.LPIPS(net='vgg')`` in eval mode with frozen parameters, called frame by frame on
``(B*T, C, H, W)`` frames in [0, 1] with ``normalize=True`` (which maps them to [-1, 1]); the value
reported and the perceptual loss (weight 1.0) are means over all frames. larp_lab's videos are
already in [-1, 1], so no ``normalize`` step is needed.

Weights (never downloaded here; fetch them once):

* ``vgg16-397923af.pth`` -- torchvision's ImageNet VGG16 (``features.{i}.weight/bias`` keys; the
  ``classifier.*`` keys are ignored), https://download.pytorch.org/models/vgg16-397923af.pth;
* ``vgg.pth`` -- the LPIPS v0.1 linear layers (``lin{k}.model.1.weight``),
  https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth.

Both are read with ``torch.load(weights_only=True)`` (or as ``.safetensors``), never unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "LIN_URL",
    "LPIPS",
    "LPIPSWeightsError",
    "VGG16_URL",
    "load_state_file",
    "video_lpips",
]

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"

#: VGG16 ``features`` configuration: conv output channels, "M" = 2x2 max-pool (torchvision "D").
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: ``features`` indices whose outputs (after ReLU) are the five LPIPS taps.
_TAPS = (3, 8, 15, 22, 29)
CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSWeightsError(FileNotFoundError):
    """A required LPIPS weight file is missing or is not what it should be."""


def _missing_message(vgg_path: Path | None, lin_path: Path | None) -> str:
    parts = []
    if vgg_path is not None:
        parts.append(f"torchvision's VGG16 ImageNet weights (vgg16-397923af.pth, {VGG16_URL}) at {vgg_path}")
    if lin_path is not None:
        parts.append(f"the LPIPS v0.1 linear layers (vgg.pth, {LIN_URL}) at {lin_path}")
    return "LPIPS weights missing: download " + " and ".join(parts) + " (larp_lab never downloads them itself)."


def load_state_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a ``.pth``/``.pt`` file (``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise LPIPSWeightsError(f"{path} is not a state dict of tensors")
    return dict(obj)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` layout: Conv3x3(pad 1) + ReLU blocks and max-pools."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    return nn.Sequential(*layers)  # 30 modules: indices 0..29


class _LinHead(nn.Module):
    """The LPIPS ``NetLinLayer``: ``model = [Dropout, Conv2d(C, 1, 1, bias=False)]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _unit_normalize(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance (VGG16, v0.1) between images in [-1, 1].

    A freshly built module has random weights (useful for tests only); use :meth:`from_files` for
    the real metric. Parameters never require gradients, but gradients flow to the inputs, so the
    module serves as the perceptual loss of tokenizer training.

    State-dict keys: ``features.{i}.weight/bias`` (torchvision) and ``lin{k}.model.1.weight``
    (lpips v0.1); the scaling constants are non-persistent buffers.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE, device=device).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features().to(device)
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (_LinHead(c).to(device) for c in CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode (the heads' dropout off), even inside a module put in training
        mode, like the official loss, which keeps its LPIPS in eval."""
        return super().train(False)

    # -------------------------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls, vgg_path: str | os.PathLike, lin_path: str | os.PathLike, device: torch.device | str = "cpu"
    ) -> LPIPS:
        """Build the metric from the two local weight files (see the module docstring)."""
        vgg_path, lin_path = Path(vgg_path), Path(lin_path)
        missing_vgg = None if vgg_path.is_file() else vgg_path
        missing_lin = None if lin_path.is_file() else lin_path
        if missing_vgg or missing_lin:
            raise LPIPSWeightsError(_missing_message(missing_vgg, missing_lin))
        model = cls()
        model.load_vgg_state(load_state_file(vgg_path), source=str(vgg_path))
        model.load_lin_state(load_state_file(lin_path), source=str(lin_path))
        return model.to(device)

    def load_vgg_state(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Copy ``features.*`` tensors (torchvision naming; other keys such as ``classifier.*`` are
        ignored). Every convolution of ``features[:30]`` must be present with its exact shape."""
        self._copy_strict({k: v for k, v in state.items() if k.startswith("features.")}, "features.", source)

    def load_lin_state(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Copy the five ``lin{k}.model.1.weight`` tensors (lpips v0.1 layout); nothing else allowed."""
        self._copy_strict(state, "lin", source)

    def _copy_strict(self, state: dict[str, Tensor], prefix: str, source: str) -> None:
        own = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        # torchvision's file holds the last max-pool too (no tensors) and nothing past index 29
        unexpected = sorted(set(state) - set(own))
        missing = sorted(set(own) - set(state))
        bad = sorted(k for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
        if missing or unexpected or bad:
            details = []
            if missing:
                details.append(f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}")
            if unexpected:
                details.append(f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")
            if bad:
                details.append(
                    "mis-shaped " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in bad[:6])
                )
            raise LPIPSWeightsError(f"{source} does not match LPIPS-VGG16 ({'; '.join(details)})")
        with torch.no_grad():
            for k, t in own.items():
                t.copy_(state[k].to(t.dtype))

    # -------------------------------------------------------------------------------------------
    def taps(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) in [-1, 1] -> the five VGG activations (after the scaling layer)."""
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _TAPS:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS between image batches x, y: (N, 3, H, W) in [-1, 1] -> (N,)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) batches of one shape; got {tuple(x.shape)}, {tuple(y.shape)}")
        n = x.shape[0]
        feats = self.taps(torch.cat([x, y]))  # one pass for both images
        heads = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        total = x.new_zeros(n)
        for f, head in zip(feats, heads):
            f0, f1 = _unit_normalize(f[:n]), _unit_normalize(f[n:])
            total = total + head((f0 - f1).pow(2)).mean(dim=(1, 2, 3))  # (N,)
        return total


def video_lpips(pred: Tensor, target: Tensor, model: LPIPS, *, chunk: int = 32) -> Tensor:
    """Frame-wise LPIPS of videos (B, 3, T, H, W) in [-1, 1] -> (B, T) (values clamped first).

    The official evaluation reports the mean over all frames: ``video_lpips(...).mean()``.
    ``chunk`` frames are measured per network call.
    """
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(f"expected two (B, 3, T, H, W) videos of one shape; got {tuple(pred.shape)}, {tuple(target.shape)}")
    B, C, T, H, W = pred.shape
    dev = model.shift.device
    p = pred.clamp(-1, 1).transpose(1, 2).reshape(B * T, C, H, W)
    t = target.clamp(-1, 1).transpose(1, 2).reshape(B * T, C, H, W)
    out = [model(a.to(dev, torch.float32), b.to(dev, torch.float32)) for a, b in zip(p.split(chunk), t.split(chunk))]
    return torch.cat(out).reshape(B, T)
