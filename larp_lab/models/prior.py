"""The training-time AR prior (the official "GPTC") and its two-round scheduled-sampling loss.

The prior is a small causal GPT over *continuous* inputs: it reads the quantized unit vectors
z_0 .. z_{n-2} (B, n-1, d) and predicts a unit vector for each next token. Its logits over the
codebook are cosines between the prediction and the L2-normalised codebook (detached) divided by
``latent_ce_temperature``; the loss is the cross-entropy against the tokenizer's indices.

Decision (official_layout.md section 4 item 2): the official attention dropout is applied even in
``eval()`` (it is passed straight to SDPA). Here *all* of the prior's dropout follows
``self.training``; in ``eval()`` the prior is deterministic. This does not affect encode/decode.

Two-round scheduled sampling (``scheduled_sampling_loss``) follows the official order of RNG
draws, so a seeded run with dropout 0 reproduces the official numbers exactly:
``torch.rand(B, n-1, 1)`` for the mask, the round-1 forward, ``torch.multinomial`` over
(B*(n-1), K) round-1 probabilities, the round-2 forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import PriorConfig
from .layers import HookPoint, attention


class PriorAttention(nn.Module):
    """Causal self-attention with separate ``query``/``key``/``value`` linears (with bias)."""

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        d = cfg.n_embd
        self.n_head = cfg.n_head
        self.key = nn.Linear(d, d)
        self.query = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.attn_pdrop = cfg.attn_pdrop
        self.resid_drop = nn.Dropout(cfg.resid_pdrop)
        self.hook_attn = HookPoint()  # (B, nh, L, L) probabilities, only while hooked
        self.hook_head_out = HookPoint()  # (B, nh, L, hs) per-head outputs before ``proj``

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, C) -> (B, L, C)"""
        B, L, C = x.shape
        hs = C // self.n_head
        q = self.query(x).view(B, L, self.n_head, hs).transpose(1, 2)  # (B, nh, L, hs)
        k = self.key(x).view(B, L, self.n_head, hs).transpose(1, 2)
        v = self.value(x).view(B, L, self.n_head, hs).transpose(1, 2)
        p = self.attn_pdrop if self.training else 0.0
        y = attention(q, k, v, causal=True, dropout_p=p, record=self.hook_attn)  # (B, nh, L, hs)
        y = self.hook_head_out(y)
        y = y.transpose(1, 2).reshape(B, L, C)  # (B, L, C)
        return self.resid_drop(self.proj(y))


class PriorBlock(nn.Module):
    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        d = cfg.n_embd
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.attn = PriorAttention(cfg)
        # official layout: mlp.0 Linear, mlp.1 GELU, mlp.2 Linear, mlp.3 Dropout
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(cfg.resid_pdrop))
        self.hook_out = HookPoint()  # (B, L, C) residual stream after the block

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, C) -> (B, L, C)"""
        x = x + self.attn(self.ln1(x))
        return self.hook_out(x + self.mlp(self.ln2(x)))


@dataclass
class PriorLoss:
    """Result of :meth:`LARPPrior.scheduled_sampling_loss`."""

    loss: Tensor  #: scalar cross-entropy (mean over rounds, or last round)
    logits: Tensor  #: (R, B, n-1, K) logits of every round
    labels: Tensor  #: (B, n-1) int64 targets
    ss_ratio: float  #: scheduled-sampling ratio used
    mask: Tensor  #: (B, n-1) bool: positions replaced by prior samples in later rounds
    sampled_indices: Tensor  #: (R-1, B, n-1) codes drawn from each earlier round's logits
    top1: Tensor  #: scalar, round-1 top-1 accuracy in percent
    top5: Tensor  #: scalar, round-1 top-5 accuracy in percent


def scheduled_sampling_ratio(step: int, max_steps: int, peak_ratio: float = 0.3, max_ratio: float = 0.5) -> float:
    """Ramp ``min(step / (max_steps * peak_ratio) * max_ratio, max_ratio)``, in float32 like the official code."""
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    r = torch.tensor(float(step), dtype=torch.float32) / float(max_steps * peak_ratio) * max_ratio
    return float(torch.clamp(r, max=max_ratio))


class LARPPrior(nn.Module):
    """Continuous-input causal transformer (official GPTC), state-dict compatible."""

    def __init__(self, cfg: PriorConfig, latent_dim: int) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.n_embd
        self.pos_emb = nn.Parameter(torch.randn(1, cfg.max_positions, d) * 0.02)
        self.input_proj = nn.Linear(latent_dim, d)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.blocks = nn.ModuleList([PriorBlock(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, latent_dim)

    # -------------------------------------------------------------------------------------------
    def predict(self, z: Tensor) -> Tensor:
        """Next-latent predictions (official ``ar_predict``).

        Args:
            z: (B, n, d) quantized unit latents.
        Returns:
            (B, n, d): row 0 is (normalised) z_0, row i >= 1 the prediction of z_i from z_<i.
        """
        B, n, d = z.shape
        if n - 1 > self.pos_emb.shape[1]:
            raise ValueError(f"the prior holds {self.pos_emb.shape[1]} positions; got {n - 1}")
        x = z[:, :-1]  # (B, n-1, d)
        h = self.drop(self.input_proj(x) + self.pos_emb[:, : n - 1])
        for block in self.blocks:
            h = block(h)
        pred = self.head(self.ln_f(h))  # (B, n-1, d)
        full = torch.cat([x[:, :1], pred], dim=1)  # (B, n, d)
        return F.normalize(full, dim=-1) if self.config.l2_normalized else full

    def logits(self, z: Tensor, codebook: Tensor) -> Tensor:
        """Cosine logits for tokens 1..n-1.

        Args:
            z: (B, n, d) quantized latents; codebook: (K, d) unit-norm codebook.
        Returns:
            (B, n-1, K) = (predict(z) @ codebook.T)[:, 1:] / latent_ce_temperature.
        """
        full = self.predict(z)
        return (full @ codebook.detach().t())[:, 1:] / self.config.latent_ce_temperature

    def token_log_likelihood(self, z: Tensor, indices: Tensor, codebook: Tensor) -> Tensor:
        """log p(index_i | z_<i) for i >= 1 under the prior: (B, n-1)."""
        logp = self.logits(z, codebook).float().log_softmax(-1)
        return logp.gather(-1, indices[:, 1:, None].long()).squeeze(-1)

    # -------------------------------------------------------------------------------------------
    def scheduled_sampling_loss(
        self,
        z: Tensor,
        indices: Tensor,
        codebook: Tensor,
        step: int,
        max_steps: int,
        *,
        mask: Tensor | None = None,
        sampled_indices: Tensor | None = None,
    ) -> PriorLoss:
        """The official two-round scheduled-sampling loss (``n_rounds`` general).

        Round 1 predicts from the tokenizer's quantized latents ``z`` (B, n, d). In each later round,
        positions where ``mask`` is set take the codebook vector of a code sampled (temperature 1)
        from the previous round's logits; the others keep ``z`` (and its gradient). The loss is the
        cross-entropy of every round against ``indices[:, 1:]``, averaged over rounds
        (``avg_loss_over_rounds``) or of the last round only.

        ``mask`` (B, n-1) bool and ``sampled_indices`` (R-1, B, n-1) may be given to replay recorded
        draws; otherwise they are drawn in the official order.
        """
        cfg = self.config
        B, n, _ = z.shape
        labels = indices[:, 1:].long()  # (B, n-1)
        ratio = (
            scheduled_sampling_ratio(step, max_steps, cfg.mix_ss_peak_steps_ratio, cfg.mix_ss_max_ratio)
            if cfg.use_mix_ss
            else 1.0
        )
        if mask is None:
            mask = (torch.rand(B, n - 1, 1, device=z.device) < ratio).squeeze(-1)
        mask = mask.bool().reshape(B, n - 1)
        cb = codebook.detach()
        all_logits: list[Tensor] = []
        draws: list[Tensor] = []
        inp = z
        for r in range(cfg.n_rounds):
            last = r == cfg.n_rounds - 1
            with torch.set_grad_enabled(torch.is_grad_enabled() and (last or not cfg.no_grad_before_last_round)):
                logits = self.logits(inp, cb)  # (B, n-1, K)
            all_logits.append(logits)
            if last:
                break
            if sampled_indices is None:
                with torch.no_grad():
                    probs = F.softmax(logits.float(), dim=-1).reshape(B * (n - 1), -1)
                    drawn = torch.multinomial(probs, 1).reshape(B, n - 1)
            else:
                drawn = sampled_indices[r].reshape(B, n - 1).long()
            draws.append(drawn)
            replaced = torch.where(mask[..., None], cb[drawn], z[:, 1:])  # (B, n-1, d)
            inp = torch.cat([z[:, :1], replaced], dim=1)
        stacked = torch.stack(all_logits)  # (R, B, n-1, K)
        K = stacked.shape[-1]
        if cfg.avg_loss_over_rounds:
            loss = F.cross_entropy(stacked.reshape(-1, K), labels.repeat(len(all_logits), 1).reshape(-1))
        else:
            loss = F.cross_entropy(all_logits[-1].reshape(-1, K), labels.reshape(-1))
        with torch.no_grad():
            first = all_logits[0]
            top5 = first.topk(min(5, K), dim=-1).indices
            top1 = (top5[..., 0] == labels).float().mean() * 100
            top5_acc = (top5 == labels[..., None]).any(-1).float().mean() * 100
        return PriorLoss(
            loss=loss,
            logits=stacked,
            labels=labels,
            ss_ratio=ratio,
            mask=mask,
            sampled_indices=torch.stack(draws) if draws else labels.new_empty(0, B, n - 1),
            top1=top1,
            top5=top5_acc,
        )
