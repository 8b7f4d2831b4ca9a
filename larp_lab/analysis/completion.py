"""Completing a token sequence from its first k tokens, by the tokenizer's prior or a generator.

This makes LARP's token order visible: the first tokens carry the coarse content, and a model of the
token sequence can fill in the rest. Both completions are greedy by default (argmax), or sampled.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(indices: Tensor, k: int) -> tuple[int, int]:
    if indices.ndim != 2:
        raise ValueError(f"indices must be (B, N); got {tuple(indices.shape)}")
    B, N = indices.shape
    if not 0 <= k <= N:
        raise ValueError(f"k must lie in [0, {N}], got {k}")
    return B, N


@torch.no_grad()
def complete_with_prior(
    tok, indices: Tensor, k: int, *, greedy: bool = True, temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Keep ``indices[:, :k]`` (k >= 1) and let the tokenizer's AR prior predict the others one by one.

    At each position the prior's logits (cosines to the codebook / ``latent_ce_temperature``) give
    the next code: the argmax, or a sample at ``temperature``. Returns int64 (B, N).
    """
    B, N = _check(indices, k)
    if tok.prior_model is None:
        raise ValueError("this tokenizer has no prior to complete tokens with")
    if k == 0:
        raise ValueError("the prior needs at least the first token (k >= 1)")
    reg = tok.bottleneck.regularizer
    codebook = reg.normalized_codebook()
    out = indices.clone().long()
    z = reg.lookup(out)  # (B, N, d)
    for i in range(k, N):
        logits = tok.prior_model.logits(z[:, : i + 1], codebook)[:, -1]  # predicts position i from z_<i
        if greedy:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial((logits / max(temperature, 1e-5)).softmax(-1), 1, generator=generator)[:, 0]
        out[:, i] = nxt
        z[:, i] = codebook[nxt]
    return out


def complete_with_generator(
    gen, indices: Tensor, k: int, cond: Tensor | None = None, *, greedy: bool = True, temperature: float = 1.0,
    top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
) -> Tensor:
    """Keep ``indices[:, :k]`` and let the generator continue (see
    :func:`larp_lab.analysis.token_order.complete_prefix`).

    ``cond``: class labels (B,) for a class-conditional generator (default: the null class, i.e.
    unconditional, which the generator learned through label dropout), or conditioning tokens for a
    frame-prediction one. Returns int64 (B, N).
    """
    from .token_order import complete_prefix

    B, N = _check(indices, k)
    if N != gen.config.num_tokens:
        raise ValueError(f"the generator models {gen.config.num_tokens} tokens, got sequences of {N}")
    if cond is None:
        if gen.config.frame_prediction:
            raise ValueError("a frame-prediction generator needs its conditioning tokens")
        cond = gen.null_condition(B)
    return complete_prefix(gen, indices[:, :k], cond, greedy=greedy, temperature=temperature, top_k=top_k,
                           top_p=top_p, generator=generator)
