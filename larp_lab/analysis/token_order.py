"""Token-order effects: is LARP's token order special, and which tokens matter for the pixels?

Three experiments on a batch of clips (token ids (B, N), clips (B, 3, T, H, W)):

* **prior NLL under reordering** (:func:`token_order_nll`): the tokenizer's AR prior scores the
  token sequence in its learned order, reversed, and under random permutations (the permuted
  sequence of quantized latents is fed to the prior). LARP trains the prior with the tokenizer, so
  the learned order should be the easiest to predict.
* **prefix reconstruction** (:func:`prefix_reconstruction_curve`): keep the first k tokens and
  either replace the rest with a *neutral code* or let the *generator* complete them (greedy or
  sampled, through its KV cache); PSNR against the clip as a function of k.
* **position importance** (:func:`position_importance`): replace one token at a time with the
  neutral code and measure the PSNR drop.

Neutral code (decision). The default, :func:`neutral_code` with ``method="mean_latent"``, is the
code whose unit vector is closest (cosine) to the mean of the dataset's quantized latents. For unit
vectors ``argmin_c mean_i |z_i - c|^2 = argmax_c c . mean_i z_i``, so it is the single code that is
on average nearest to the tokens the clips actually use: it removes a token's information while
moving the decoder's input as little as possible (mean imputation, in code space). The
alternative ``method="most_frequent"`` (the mode) depends on ties and on a few common codes of the
background; it is offered for comparison. :func:`positional_neutral_codes` gives one such code per
position (holistic tokens often specialise by position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..evaluation.metrics import psnr as psnr_metric
from ._util import as_long_indices, batches, evaluating, to_numpy

__all__ = [
    "OrderNLL",
    "PositionImportance",
    "PrefixCurve",
    "complete_prefix",
    "default_ks",
    "keep_prefix",
    "neutral_code",
    "position_importance",
    "positional_neutral_codes",
    "prefix_reconstruction_curve",
    "prior_nll_under_order",
    "token_order_nll",
]


# ================================================================================================
#                                 Prior NLL under reordering
# ================================================================================================


@torch.no_grad()
def prior_nll_under_order(tok, indices: Tensor, order=None, batch_size: int = 64) -> Tensor:
    """Per-position NLL (nats) of ``indices`` reordered by ``order`` under the tokenizer's prior.

    Args:
        indices: int (B, N) token ids in the tokenizer's order.
        order: a permutation (N,) shared by all clips, or (B, N) one per clip; None = identity.
            The prior reads the sequence ``indices[:, order]`` (i.e. the permuted quantized latents).
    Returns:
        float32 (B, N-1): ``-log p(s_i | s_<i)`` for positions i = 1..N-1 of the reordered sequence.
    """
    if tok.prior_model is None:
        raise ValueError("this tokenizer has no prior (its checkpoint had no prior_model.* weights)")
    idx = as_long_indices(indices, tok.config.num_tokens).cpu()
    B, N = idx.shape
    if order is not None:
        o = torch.as_tensor(order).long().cpu()
        if o.ndim == 1:
            o = o.unsqueeze(0).expand(B, N)
        if o.shape != (B, N) or not torch.equal(o.sort(-1).values, torch.arange(N).expand(B, N)):
            raise ValueError(f"order must be a permutation of range({N}) (shape (N,) or (B, N))")
        idx = idx.gather(1, o)
    out = []
    with evaluating(tok):
        for sl in batches(B, batch_size):
            out.append(-tok.prior_log_likelihood(idx[sl].to(tok.device)).float().cpu())
    return torch.cat(out)


@dataclass
class OrderNLL:
    """What :func:`token_order_nll` returns (nats; positions 1..N-1 of each ordered sequence)."""

    positions: np.ndarray  #: (N-1,) int, 1..N-1
    learned: np.ndarray  #: (N-1,) mean NLL over clips, the tokenizer's order
    reverse: np.ndarray  #: (N-1,) reversed order
    random: np.ndarray  #: (R, N-1) one curve per random permutation
    permutations: np.ndarray  #: (R, N) the random permutations
    learned_per_clip: np.ndarray  #: (B,) mean NLL of each clip in the learned order

    def means(self) -> dict[str, float]:
        """Mean NLL per token: learned, reverse, random (mean and std over permutations)."""
        r = self.random.mean(1) if self.random.size else np.array([np.nan])
        return {
            "learned": float(self.learned.mean()),
            "reverse": float(self.reverse.mean()),
            "random": float(r.mean()),
            "random_std": float(r.std()),
        }

    def table(self) -> list[dict]:
        """One row per position: learned, reverse, random mean / min / max."""
        rows = []
        for j, pos in enumerate(self.positions):
            rnd = self.random[:, j] if self.random.size else np.array([np.nan])
            rows.append({
                "position": int(pos), "learned": float(self.learned[j]), "reverse": float(self.reverse[j]),
                "random_mean": float(rnd.mean()), "random_min": float(rnd.min()), "random_max": float(rnd.max()),
            })
        return rows


def token_order_nll(tok, indices: Tensor, num_random: int = 8, seed: int = 0, batch_size: int = 64) -> OrderNLL:
    """Prior NLL per position for the learned order, the reverse order and ``num_random`` random
    permutations (drawn from ``torch.Generator().manual_seed(seed)``, shared by all clips).

    Args:
        indices: int (B, N) token ids of B clips.
    """
    idx = as_long_indices(indices, tok.config.num_tokens)
    N = idx.shape[1]
    learned = prior_nll_under_order(tok, idx, None, batch_size)  # (B, N-1)
    reverse = prior_nll_under_order(tok, idx, torch.arange(N - 1, -1, -1), batch_size)
    g = torch.Generator().manual_seed(int(seed))
    perms = torch.stack([torch.randperm(N, generator=g) for _ in range(num_random)]) if num_random else \
        torch.empty(0, N, dtype=torch.long)
    rand = [prior_nll_under_order(tok, idx, p, batch_size).mean(0) for p in perms]
    return OrderNLL(
        positions=np.arange(1, N),
        learned=to_numpy(learned.mean(0)).astype(np.float64),
        reverse=to_numpy(reverse.mean(0)).astype(np.float64),
        random=to_numpy(torch.stack(rand)).astype(np.float64) if rand else np.zeros((0, N - 1)),
        permutations=to_numpy(perms),
        learned_per_clip=to_numpy(learned.mean(1)).astype(np.float64),
    )


# ================================================================================================
#                                         Neutral code
# ================================================================================================


def _codebook(tok) -> Tensor:
    return tok.bottleneck.regularizer.normalized_codebook().detach()  # (K, d)


@torch.no_grad()
def neutral_code(tok, indices: Tensor | None = None, method: str = "mean_latent") -> int:
    """The code used to "blank out" a token (see the module docstring for the choice).

    Args:
        indices: token ids (any shape) of the clips that define "typical"; None = every code
            counts once (the mean of the codebook's unit vectors).
        method: ``"mean_latent"`` (default): the code nearest (cosine) to the mean quantized
            latent; ``"most_frequent"``: the most common code in ``indices`` (lowest id on ties).
    """
    cb = _codebook(tok)  # (K, d)
    K = cb.shape[0]
    if indices is None:
        if method == "most_frequent":
            raise ValueError("method='most_frequent' needs indices")
        counts = torch.ones(K, dtype=torch.float64, device=cb.device)
    else:
        flat = torch.as_tensor(indices).reshape(-1).long().cpu()
        counts = torch.bincount(flat, minlength=K).double().to(cb.device)
    if method == "most_frequent":
        return int(torch.argmax(counts))  # first maximum = lowest id
    if method != "mean_latent":
        raise ValueError(f"method must be 'mean_latent' or 'most_frequent'; got {method!r}")
    mean = (counts[:, None] * cb.double()).sum(0) / counts.sum()  # (d,)
    return int(torch.argmax(cb.double() @ mean))


@torch.no_grad()
def positional_neutral_codes(tok, indices: Tensor) -> Tensor:
    """One mean-latent neutral code per position: int64 (N,), from token ids (B, N)."""
    idx = as_long_indices(indices, tok.config.num_tokens).cpu()
    cb = _codebook(tok).double().cpu()  # (K, d)
    mean = cb[idx].mean(0)  # (N, d)
    return (mean @ cb.t()).argmax(-1)  # (N,)


def _fill_row(fill, N: int) -> Tensor:
    """An int or (N,) tensor of fill codes -> int64 (N,)."""
    f = torch.as_tensor(fill).long().cpu()
    if f.ndim == 0:
        f = f.expand(N)
    if f.shape != (N,):
        raise ValueError(f"fill must be one code or one per position ({N},); got shape {tuple(f.shape)}")
    return f


def keep_prefix(indices: Tensor, k: int, fill) -> Tensor:
    """Keep the first ``k`` tokens of (B, N) ids and put ``fill`` (one code or (N,) codes) elsewhere."""
    idx = as_long_indices(indices)
    N = idx.shape[1]
    if not 0 <= k <= N:
        raise ValueError(f"k must be in [0, {N}]; got {k}")
    f = _fill_row(fill, N).to(idx.device)
    out = f.expand_as(idx).clone()
    out[:, :k] = idx[:, :k]
    return out


# ================================================================================================
#                                 Generator completion of a prefix
# ================================================================================================


@torch.no_grad()
def complete_prefix(
    gen,
    prefix: Tensor,
    cond,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    cfg_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Complete token prefixes with the generator: :meth:`LARPGenerator.sample(prefix=...)
    <larp_lab.models.generator.LARPGenerator.sample>` (KV cache: one prefill of the condition and
    the prefix, then decode steps).

    Args:
        gen: a :class:`~larp_lab.models.generator.LARPGenerator`.
        prefix: int (B, k) kept tokens, 0 <= k <= N (a (B, 0) tensor = sample from scratch).
        cond: class labels (B,) (class-conditional models; required) or frame-prediction tokens.
        greedy: argmax continuation (default); otherwise sample with temperature / top-k / top-p.
        cfg_scale: classifier-free guidance on raw logits (class-conditional models with a null
            class), as :meth:`~larp_lab.models.generator.LARPGenerator.sample`.
    Returns:
        int64 (B, N): the prefix followed by N - k generated tokens.
    """
    return gen.sample(cond, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p,
                      generator=generator, greedy=greedy, prefix=torch.as_tensor(prefix))


# ================================================================================================
#                                   PSNR when keeping k tokens
# ================================================================================================


@dataclass
class PrefixCurve:
    """What :func:`prefix_reconstruction_curve` returns."""

    ks: np.ndarray  #: (K,) prefix lengths
    psnr: np.ndarray  #: (K, B) PSNR (dB) of each clip (mean over samples for sampled completions)
    mode: str  #: "neutral" or "generator"
    fill: np.ndarray | None = None  #: (N,) the fill codes of mode "neutral"

    @property
    def mean(self) -> np.ndarray:
        """(K,) mean PSNR over clips."""
        return self.psnr.mean(1)

    @property
    def std(self) -> np.ndarray:
        """(K,) std of PSNR over clips."""
        return self.psnr.std(1)

    def table(self) -> list[dict]:
        return [{"k": int(k), "psnr_mean": float(m), "psnr_std": float(s)}
                for k, m, s in zip(self.ks, self.mean, self.std)]


def default_ks(num_tokens: int, steps: int = 9) -> list[int]:
    """About ``steps`` prefix lengths from 0 to N (always including 0 and N)."""
    return sorted({int(round(v)) for v in np.linspace(0, num_tokens, steps)})


@torch.no_grad()
def _decode_psnr(tok, ids: Tensor, videos: Tensor, batch_size: int) -> Tensor:
    """PSNR (B,) of decode_indices(ids (B, N)) against videos (B, 3, T, H, W)."""
    out = []
    shape = tuple(videos.shape[2:])
    for sl in batches(ids.shape[0], batch_size):
        rec = tok.decode_indices(ids[sl].to(tok.device), shape)
        out.append(psnr_metric(rec, videos[sl].to(rec.device)).float().cpu())
    return torch.cat(out)


def prefix_reconstruction_curve(
    tok,
    videos: Tensor,
    indices: Tensor,
    ks: list[int] | None = None,
    *,
    mode: str = "neutral",
    fill=None,
    gen=None,
    cond=None,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    cfg_scale: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 8,
) -> PrefixCurve:
    """Reconstruction PSNR (against ``videos``) when only the first k tokens are kept.

    Args:
        videos: float (B, 3, T, H, W) in [-1, 1]; indices: int (B, N) their token ids.
        ks: prefix lengths (default :func:`default_ks`).
        mode: ``"neutral"``: the other tokens become ``fill`` (one code or (N,) codes; default
            :func:`neutral_code` of ``indices``); ``"generator"``: ``gen`` completes the prefix
            (:func:`complete_prefix`) given ``cond`` (class labels (B,), required for
            class-conditional models); sampled completions (``greedy=False``) are averaged over
            ``num_samples`` draws seeded from ``seed``.
    Returns:
        :class:`PrefixCurve`; at k = N both modes decode the clip's own tokens.
    """
    idx = as_long_indices(indices, tok.config.num_tokens).cpu()
    B, N = idx.shape
    if videos.shape[0] != B:
        raise ValueError(f"{videos.shape[0]} clips for {B} token sequences")
    ks = default_ks(N) if ks is None else [int(k) for k in ks]
    rows, fill_row = [], None
    with evaluating(tok, gen):
        if mode == "neutral":
            fill_row = _fill_row(neutral_code(tok, idx) if fill is None else fill, N)
            for k in ks:
                rows.append(_decode_psnr(tok, keep_prefix(idx, k, fill_row), videos, batch_size))
        elif mode == "generator":
            if gen is None:
                raise ValueError("mode='generator' needs gen=")
            gen.check_tokenizer(tok)
            if cond is None and not gen.config.frame_prediction:
                raise ValueError("a class-conditional generator needs cond= (class labels (B,))")
            cond_t = torch.as_tensor(cond)
            reps = 1 if greedy else max(1, int(num_samples))
            g = torch.Generator(device=gen.device).manual_seed(int(seed))
            for k in ks:
                acc = torch.zeros(B)
                for _ in range(reps):
                    done = torch.cat([
                        complete_prefix(gen, idx[sl, :k], cond_t[sl], greedy=greedy, temperature=temperature,
                                        top_k=top_k, top_p=top_p, cfg_scale=cfg_scale, generator=g).cpu()
                        for sl in batches(B, batch_size)
                    ])
                    acc += _decode_psnr(tok, done, videos, batch_size)
                rows.append(acc / reps)
        else:
            raise ValueError(f"mode must be 'neutral' or 'generator'; got {mode!r}")
    return PrefixCurve(
        ks=np.asarray(ks), psnr=to_numpy(torch.stack(rows)).astype(np.float64), mode=mode,
        fill=None if fill_row is None else to_numpy(fill_row),
    )


# ================================================================================================
#                                      Position importance
# ================================================================================================


@dataclass
class PositionImportance:
    """What :func:`position_importance` returns (dB)."""

    positions: np.ndarray  #: (P,) ablated positions
    baseline: np.ndarray  #: (B,) PSNR with every token kept
    ablated: np.ndarray  #: (P, B) PSNR with that one position replaced
    fill: np.ndarray  #: (N,) the fill codes

    @property
    def drop(self) -> np.ndarray:
        """(P, B) baseline - ablated (positive = the token mattered)."""
        return self.baseline[None, :] - self.ablated

    @property
    def mean_drop(self) -> np.ndarray:
        """(P,) mean drop over clips."""
        return self.drop.mean(1)

    def table(self) -> list[dict]:
        d = self.drop
        return [{"position": int(p), "psnr_drop_mean": float(d[j].mean()), "psnr_drop_std": float(d[j].std())}
                for j, p in enumerate(self.positions)]


@torch.no_grad()
def position_importance(
    tok,
    videos: Tensor,
    indices: Tensor,
    *,
    fill=None,
    positions: list[int] | None = None,
    batch_size: int = 16,
) -> PositionImportance:
    """PSNR drop when one token at a time is replaced by ``fill`` (default: :func:`neutral_code`).

    Costs one decode per (clip, position): with N = 1024 tokens pass a subset in ``positions``.
    Args:
        videos: float (B, 3, T, H, W); indices: int (B, N).
    """
    idx = as_long_indices(indices, tok.config.num_tokens).cpu()
    B, N = idx.shape
    pos = list(range(N)) if positions is None else [int(p) for p in positions]
    if any(not 0 <= p < N for p in pos):
        raise ValueError(f"positions must lie in [0, {N})")
    with evaluating(tok):
        fill_row = _fill_row(neutral_code(tok, idx) if fill is None else fill, N)
        base = _decode_psnr(tok, idx, videos, batch_size)  # (B,)
        abl = torch.empty(len(pos), B)
        for b in range(B):
            ids = idx[b].expand(len(pos), N).clone()  # (P, N)
            ar = torch.arange(len(pos))
            ids[ar, torch.tensor(pos)] = fill_row[torch.tensor(pos)]
            abl[:, b] = _decode_psnr(tok, ids, videos[b : b + 1].expand(len(pos), *videos.shape[1:]), batch_size)
    return PositionImportance(
        positions=np.asarray(pos), baseline=to_numpy(base).astype(np.float64),
        ablated=to_numpy(abl).astype(np.float64), fill=to_numpy(fill_row),
    )

