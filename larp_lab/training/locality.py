"""Attention-locality auxiliary loss for training LARP tokenizers from nothing on small budgets.

At toy budgets LARP's holistic query tokens sit on a flat-colour plateau: their attention over the
patches starts uniform, every query sees the same average, and the decoder learns to paint each
clip's mean colour (``experiments/plateau.py``). This loss gives every query token a *home cell*
early in training and is annealed to zero, so the trained model is plain LARP (same architecture,
same state dict, no attention bias at inference).

The N tokens are laid on a cell grid (gt, gh, gw), gt*gh*gw = N, shaped like the patch grid
((1, 4, 4) for 16 tokens over a (2, 4, 4) patch grid). With positions in [0, 1] per axis (cell and
patch centres) and d the distance from a token's cell centre in *cell widths*, w = exp(-d^2):

* encoder, every block: query token i attending to patches j: ``-log(sum_j w_ij * A[i, j])``;
* decoder, every block: patch query m attending to tokens j: ``-log(sum_j w_mj * A[m, j])``;

averaged over heads, rows, clips and blocks (encoder and decoder blocks count alike). The weight
is held for ``hold_steps`` and then falls linearly to 0 over ``anneal_steps``; once it is 0 no hook
is attached and training costs exactly what plain LARP costs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import ConfigBase, ConfigError, check_at_least, check_positive
from ..models.token_cells import locality_weights, token_grid  # the one token-cell geometry (also analysis's)


@dataclass
class LocalityConfig(ConfigBase):
    """Schedule and geometry of the attention-locality loss (a training option, off by default)."""

    weight: float = 0.05
    hold_steps: int = 600  #: steps at full weight
    anneal_steps: int = 1200  #: then a linear fall to 0 over this many steps
    #: token cell grid (gt, gh, gw) with gt*gh*gw = num_tokens; empty = chosen from the patch grid
    grid: tuple[int, ...] = ()

    def validate(self) -> None:
        o = "LocalityConfig"
        check_positive(o, "weight", self.weight, allow_zero=True)
        check_at_least(o, "hold_steps", self.hold_steps, 0)
        check_at_least(o, "anneal_steps", self.anneal_steps, 0)
        if self.grid and (len(self.grid) != 3 or min(self.grid) < 1):
            raise ConfigError(f"locality.grid must be three positive sizes (t, h, w), got {list(self.grid)}")

    def weight_at(self, step: int) -> float:
        """The loss weight at optimizer step ``step`` (0-based)."""
        if step < self.hold_steps:
            return self.weight
        if self.anneal_steps <= 0:
            return 0.0
        frac = (step - self.hold_steps) / self.anneal_steps
        return self.weight * max(0.0, 1.0 - frac)

    @property
    def end_step(self) -> int:
        """First step at which the weight is 0."""
        return self.hold_steps + self.anneal_steps


class AttentionLocality:
    """Collects the attention probabilities of a :class:`~larp_lab.LARPTokenizer` and scores them.

    Use ``with loc.recording(model): ...forward...; loss = loc.loss()``. Shapes for an encoder
    sequence [P patches; N queries] and a decoder sequence [N tokens; M patch queries].
    """

    def __init__(self, cfg: LocalityConfig, num_tokens: int, patch_grid: tuple[int, int, int],
                 decoder_patch_grid: tuple[int, int, int]) -> None:
        cfg.validate()
        self.cfg = cfg
        cells = tuple(cfg.grid) if cfg.grid else token_grid(num_tokens, patch_grid)
        if math.prod(cells) != num_tokens:
            raise ConfigError(f"locality.grid {list(cells)} has {math.prod(cells)} cells but the model has "
                              f"{num_tokens} tokens")
        self.cells: tuple[int, int, int] = cells  # type: ignore[assignment]
        self.enc_w = locality_weights(self.cells, patch_grid)  # (N, P)
        self.dec_w = locality_weights(self.cells, decoder_patch_grid).t().contiguous()  # (M, N)
        self._enc: list[Tensor] = []
        self._dec: list[Tensor] = []

    @contextlib.contextmanager
    def recording(self, model: nn.Module) -> Iterator[None]:
        """Attach hooks recording (with gradients) every encoder/decoder block's attention."""
        from ..models.capture import hooks

        self._enc, self._dec = [], []
        spec = []
        for stack, store in (("encoder", self._enc), ("decoder", self._dec)):
            for i in range(len(getattr(model, stack).blocks)):
                spec.append((f"{stack}.blocks.{i}.attn.hook_attn", lambda a, _name, store=store: store.append(a)))
        with hooks(model, spec):
            yield

    def loss(self) -> Tensor:
        """Scalar locality loss of the last recorded forward pass (mean over blocks)."""
        N, P = self.enc_w.shape
        M = self.dec_w.shape[0]
        terms = []
        for a in self._enc:  # (B, H, P + N, P + N)
            if a.shape[-1] != P + N:
                raise ValueError(f"encoder attention over {a.shape[-1]} rows; expected {P + N} (other clip size?)")
            mass = (a[:, :, P:, :P] * self.enc_w.to(a)).sum(-1)  # (B, H, N)
            terms.append(-mass.clamp_min(1e-6).log().mean())
        for a in self._dec:  # (B, H, N + M, N + M)
            if a.shape[-1] != N + M:
                raise ValueError(f"decoder attention over {a.shape[-1]} rows; expected {N + M} (other clip size?)")
            mass = (a[:, :, N:, :N] * self.dec_w.to(a)).sum(-1)  # (B, H, M)
            terms.append(-mass.clamp_min(1e-6).log().mean())
        if not terms:
            raise RuntimeError("AttentionLocality.loss() called without a recorded forward pass")
        self._enc, self._dec = [], []
        return torch.stack(terms).mean()

    @torch.no_grad()
    def own_cell_attention(self, model: nn.Module, video: Tensor) -> dict[str, float]:
        """Mean attention mass of each encoder query on the patches of its own cell (w >= 0.5), per
        encoder block, and the chance value (share of such patches): a diagnostic, no gradients."""
        own = (self.enc_w >= 0.5).float()  # (N, P)
        out = {}
        with self.recording(model):
            model.encode(video, sample=False)
        N, P = own.shape
        for i, a in enumerate(self._enc):
            out[f"enc{i}"] = float((a[:, :, P:, :P] * own.to(a)).sum(-1).mean())
        out["chance"] = float(own.sum(-1).mean() / (P + N))
        self._enc, self._dec = [], []
        return out
