"""Token surgery: edit a clip's tokens by hand and see what each token controls in the decoded video.

Three tools on one clip's token ids (N,) (a batch dimension of one is accepted everywhere):

* :func:`edit_tokens` / :func:`decode_edit`: set the code at some positions (a typed id, the code
  at the same position in a second clip, or one of :func:`prior_alternatives`), decode both
  sequences and return original, edited and their difference with its energy per frame;
* :func:`token_influence`: for every position, replace its code by a few other codes and average
  where (t, y, x) the decoded video changes: an :class:`InfluenceMap` (N, T, H, W). Its
  :meth:`~InfluenceMap.pixel_control` answers "which tokens control this pixel", and
  :func:`influence_consistency` measures how much a token's region moves from clip to clip (a
  patch tokenizer's token always owns the same region; a holistic one's need not);
* :func:`prior_alternatives`: the codes the tokenizer's AR prior finds most likely at a position
  given the tokens before it (position 0, which the prior does not predict, gets the codes nearest
  to the current one on the unit sphere).

Replacement codes (decision): :func:`token_influence` draws them from the codes the clip itself
does not use, uniformly with a fixed seed, so that the average is over "other" content rather than
near-duplicates; ``codes="nearest"`` uses the cosine-nearest codes instead (small edits), and an
explicit (K,) tensor fixes them. Differences are mean absolute pixel differences over the three
channels, in the [-1, 1] range of the clips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._util import as_long_indices, batches, evaluating, to_numpy

__all__ = [
    "InfluenceMap",
    "TokenEdit",
    "decode_edit",
    "edit_tokens",
    "influence_consistency",
    "nearest_codes",
    "parse_edits",
    "parse_positions",
    "prior_alternatives",
    "token_influence",
]


def _one_clip(tok, indices) -> Tensor:
    idx = as_long_indices(indices, tok.config.num_tokens)
    if idx.shape[0] != 1:
        raise ValueError(f"token surgery works on one clip at a time; got {idx.shape[0]} sequences")
    _check_codes(tok, idx)
    return idx


def _check_codes(tok, idx: Tensor) -> None:
    K = tok.config.codebook_size
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= K):
        raise ValueError(f"token ids must lie in [0, {K}); got values in [{int(idx.min())}, {int(idx.max())}]")


# ================================================================================================
#                                          edits
# ================================================================================================


def edit_tokens(indices, edits: Mapping[int, int] | Sequence[tuple[int, int]], num_codes: int | None = None) -> Tensor:
    """A copy of ``indices`` (B, N) or (N,) with ``edits`` {position: code} applied to every row.

    Raises ValueError for a position outside [0, N) or a code outside [0, num_codes).
    Returns int64 (B, N).
    """
    idx = as_long_indices(indices).clone()
    N = idx.shape[1]
    pairs = list(edits.items()) if isinstance(edits, Mapping) else [tuple(e) for e in edits]
    for pos, code in pairs:
        pos, code = int(pos), int(code)
        if not 0 <= pos < N:
            raise ValueError(f"position {pos} is outside the {N} tokens (0..{N - 1})")
        if code < 0 or (num_codes is not None and code >= num_codes):
            raise ValueError(f"code {code} is outside the codebook (0..{(num_codes or 1) - 1})")
        idx[:, pos] = code
    return idx


@dataclass
class TokenEdit:
    """Original and edited token sequences of one clip, decoded.

    ``original`` / ``edited``: float32 (3, T, H, W) in [-1, 1] (clamped); ``difference``: float32
    (T, H, W) mean |edited - original| over channels; ``energy``: (T,) mean squared difference per
    frame; ``changed``: the positions whose code differs.
    """

    indices: np.ndarray  # (N,)
    edited_indices: np.ndarray  # (N,)
    original: Tensor
    edited: Tensor
    difference: Tensor
    energy: np.ndarray
    changed: list[int]

    @property
    def total_energy(self) -> float:
        return float(self.energy.mean())

    def table(self) -> list[dict]:
        return [{"frame": t, "energy": float(e)} for t, e in enumerate(self.energy)]


@torch.no_grad()
def decode_edit(tok, indices, edited) -> TokenEdit:
    """Decode one clip's ``indices`` (N,) and ``edited`` (N,) and compare them (see :class:`TokenEdit`)."""
    a, b = _one_clip(tok, indices), _one_clip(tok, edited)
    with evaluating(tok):
        vids = tok.decode_indices(torch.cat([a, b]).to(tok.device)).float().clamp(-1, 1).cpu()  # (2, 3, T, H, W)
    diff = (vids[1] - vids[0]).abs().mean(0)  # (T, H, W)
    energy = (vids[1] - vids[0]).pow(2).mean(dim=(0, 2, 3))  # (T,)
    changed = torch.nonzero(a[0] != b[0]).flatten().tolist()
    return TokenEdit(to_numpy(a[0]), to_numpy(b[0]), vids[0], vids[1], diff, to_numpy(energy), changed)


# ================================================================================================
#                                    alternative codes
# ================================================================================================


def _unit_codebook(tok) -> Tensor:
    return tok.bottleneck.regularizer.normalized_codebook().detach().float()  # (K, d)


@torch.no_grad()
def nearest_codes(tok, code: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` codes (other than ``code``) nearest to it on the unit sphere: (codes (k,), cosines (k,))."""
    cb = _unit_codebook(tok)
    K = cb.shape[0]
    if not 0 <= int(code) < K:
        raise ValueError(f"code {code} is outside the codebook (0..{K - 1})")
    sim = cb @ cb[int(code)]
    sim[int(code)] = -float("inf")
    top = sim.topk(min(k, K - 1))
    return to_numpy(top.indices), to_numpy(top.values)


@torch.no_grad()
def prior_alternatives(tok, indices, position: int, k: int = 5) -> tuple[np.ndarray, np.ndarray, str]:
    """The prior's ``k`` most likely codes at ``position`` given the tokens before it.

    Returns (codes (k,), scores (k,), kind): ``kind="prior"`` with probabilities for positions >= 1;
    ``kind="nearest"`` with cosine similarities for position 0 (the prior does not predict the first
    token) or when the tokenizer has no prior.
    """
    idx = _one_clip(tok, indices)
    N = idx.shape[1]
    if not 0 <= position < N:
        raise ValueError(f"position {position} is outside the {N} tokens (0..{N - 1})")
    if position == 0 or tok.prior_model is None:
        codes, sims = nearest_codes(tok, int(idx[0, position]), k)
        return codes, sims, "nearest"
    reg = tok.bottleneck.regularizer
    with evaluating(tok):
        z = reg.lookup(idx[:, : position + 1].to(tok.device))  # (1, p+1, d)
        logits = tok.prior_model.logits(z, reg.normalized_codebook())[0, -1].float()  # (K,): predicts z_p
    p = logits.softmax(-1)
    top = p.topk(min(k, p.numel()))
    return to_numpy(top.indices), to_numpy(top.values), "prior"


# ================================================================================================
#                                       influence maps
# ================================================================================================


@dataclass
class InfluenceMap:
    """Where in the decoded clip each token position matters.

    ``maps``: float32 (N, T, H, W), mean |decode(replaced) - decode(original)| over channels and
    over the replacement codes; ``codes``: int64 (N, K) the codes tried at each position;
    ``reconstruction``: float32 (3, T, H, W) the decoded original.
    """

    maps: Tensor
    codes: Tensor
    reconstruction: Tensor

    @property
    def num_tokens(self) -> int:
        return self.maps.shape[0]

    def strength(self) -> np.ndarray:
        """(N,) mean change of the whole clip when the token is replaced."""
        return to_numpy(self.maps.mean(dim=(1, 2, 3)))

    def pixel_control(self, t: int, y: int, x: int, radius: int = 0) -> np.ndarray:
        """(N,) each token's share of the change at pixel (t, y, x) (a (2r+1)^2 window; sums to 1)."""
        _, T, H, W = self.maps.shape
        if not (0 <= t < T and 0 <= y < H and 0 <= x < W):
            raise ValueError(f"pixel (t={t}, y={y}, x={x}) is outside the clip (T={T}, H={H}, W={W})")
        win = self.maps[:, t, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        v = win.mean(dim=(1, 2))
        s = float(v.sum())
        return to_numpy(v / s) if s > 0 else np.full(self.num_tokens, 1.0 / self.num_tokens, np.float32)

    def spatial(self) -> Tensor:
        """(N, H, W) influence summed over time, each map normalised to sum 1."""
        m = self.maps.sum(1)
        return m / m.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)

    def temporal(self) -> np.ndarray:
        """(N, T) share of each token's influence per frame."""
        m = self.maps.sum(dim=(2, 3))
        return to_numpy(m / m.sum(1, keepdim=True).clamp_min(1e-12))

    def concentration(self, cells: int = 4) -> np.ndarray:
        """(N,) share of each token's (time-summed) influence inside the one block, of the frame split
        into ``cells`` x ``cells`` equal blocks, where it acts most: 1/cells^2 for a token that acts
        everywhere equally, 1 for one that acts inside a single block."""
        sp = self.spatial()
        N, H, W = sp.shape
        if H % cells or W % cells:
            raise ValueError(f"{H}x{W} frames do not split into {cells}x{cells} blocks")
        blocks = sp.reshape(N, cells, H // cells, cells, W // cells).sum(dim=(2, 4)).reshape(N, -1)
        return to_numpy(blocks.max(-1).values)

    def centroids(self) -> np.ndarray:
        """(N, 2) influence-weighted (y, x) centre of each token, in pixels."""
        sp = self.spatial()
        _, H, W = sp.shape
        ys = torch.arange(H, dtype=sp.dtype)
        xs = torch.arange(W, dtype=sp.dtype)
        cy = (sp.sum(2) * ys).sum(1)
        cx = (sp.sum(1) * xs).sum(1)
        return to_numpy(torch.stack([cy, cx], -1))


def _replacement_codes(tok, idx: Tensor, codes, num_codes: int, seed: int) -> Tensor:
    """(N, K) codes to try at each position."""
    N, K = idx.shape[1], tok.config.codebook_size
    if isinstance(codes, Tensor) or (not isinstance(codes, str) and codes is not None):
        c = torch.as_tensor(codes).long().flatten()
        if c.numel() == 0:
            raise ValueError("give at least one replacement code")
        _check_codes(tok, c[None])
        return c[None].expand(N, -1).clone()
    if codes == "nearest":
        rows = [torch.as_tensor(nearest_codes(tok, int(idx[0, n]), num_codes)[0]) for n in range(N)]
        return torch.stack(rows).long()
    if codes != "random":
        raise ValueError(f"codes must be 'random', 'nearest' or a tensor of code ids; got {codes!r}")
    unused = torch.ones(K, dtype=torch.bool)
    unused[idx[0]] = False
    pool = torch.nonzero(unused).flatten()
    if len(pool) == 0:
        pool = torch.arange(K)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(pool), (N, num_codes), generator=g)
    return pool[pick]


@torch.no_grad()
def token_influence(
    tok, indices, num_codes: int = 4, codes="random", seed: int = 0, positions: Sequence[int] | None = None,
    batch_size: int = 64,
) -> InfluenceMap:
    """Replace each token in turn by ``num_codes`` other codes and average where the clip changes.

    Args:
        indices: one clip's token ids (N,) or (1, N).
        codes: ``"random"`` (codes the clip does not use, seeded), ``"nearest"`` (cosine-nearest
            codes of each position's own code) or explicit ids (K,) used at every position.
        positions: only these positions (the others' maps stay zero); default all.
    Returns:
        :class:`InfluenceMap` with maps (N, T, H, W). Cost: N * K decodes of one clip.
    """
    idx = _one_clip(tok, indices)
    N = idx.shape[1]
    rep = _replacement_codes(tok, idx, codes, num_codes, seed)  # (N, K)
    pos = list(range(N)) if positions is None else [int(p) for p in positions]
    if any(not 0 <= p < N for p in pos):
        raise ValueError(f"positions must lie in [0, {N})")
    jobs = [(p, int(c)) for p in pos for c in rep[p]]
    with evaluating(tok):
        base = tok.decode_indices(idx.to(tok.device)).float().clamp(-1, 1).cpu()[0]  # (3, T, H, W)
        maps = torch.zeros(N, *base.shape[1:])
        counts = torch.zeros(N)
        for sl in batches(len(jobs), batch_size):
            chunk = jobs[sl]
            seqs = idx.repeat(len(chunk), 1)
            for i, (p, c) in enumerate(chunk):
                seqs[i, p] = c
            out = tok.decode_indices(seqs.to(tok.device)).float().clamp(-1, 1).cpu()  # (b, 3, T, H, W)
            d = (out - base).abs().mean(1)  # (b, T, H, W)
            for i, (p, _) in enumerate(chunk):
                maps[p] += d[i]
                counts[p] += 1
    maps = maps / counts.clamp_min(1)[:, None, None, None]
    return InfluenceMap(maps=maps, codes=rep, reconstruction=base)


def influence_consistency(maps: Sequence[InfluenceMap]) -> np.ndarray:
    """(N,) how much each token's region stays put across clips: the mean Pearson correlation of its
    time-summed, normalised influence map between every pair of clips. Near 1: the token always acts
    on the same pixels (a patch token); near 0: where it acts depends on the clip (a holistic token)."""
    if len(maps) < 2:
        raise ValueError("influence_consistency needs the maps of at least two clips")
    sp = torch.stack([m.spatial().flatten(1) for m in maps])  # (C, N, HW)
    sp = sp - sp.mean(-1, keepdim=True)
    sp = sp / sp.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    C = sp.shape[0]
    corr = torch.einsum("anp,bnp->abn", sp, sp)  # (C, C, N)
    off = ~torch.eye(C, dtype=torch.bool)
    return to_numpy(corr[off].mean(0))


# ================================================================================================
#                                 positions and edits as text
# ================================================================================================


def parse_positions(text: str | None, num_tokens: int) -> list[int]:
    """``"0-7, 12, 40-47"`` -> sorted positions; ``"all"`` -> every position; a clear error otherwise."""
    s = (text or "").strip().lower()
    if not s:
        raise ValueError("Give the token positions to use, e.g. 0-7, 12 (or all).")
    if s == "all":
        return list(range(num_tokens))
    out: set[int] = set()
    for part in s.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        if not m:
            raise ValueError(f"cannot read {part!r} as a token position or a range like 4-7")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if a > b or b >= num_tokens:
            raise ValueError(f"positions must lie in 0..{num_tokens - 1}; got {part!r}")
        out.update(range(a, b + 1))
    return sorted(out)


def parse_edits(text: str | None, num_tokens: int, codebook_size: int) -> dict[int, int]:
    """``"3:17, 5:200"`` (position:code) -> {3: 17, 5: 200}; a clear error otherwise."""
    s = (text or "").strip()
    if not s:
        raise ValueError("Give at least one edit as position:code, e.g. 3:17.")
    edits: dict[int, int] = {}
    for part in s.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if not m:
            raise ValueError(f"cannot read {part.strip()!r} as position:code (e.g. 3:17)")
        p, c = int(m.group(1)), int(m.group(2))
        if p >= num_tokens:
            raise ValueError(f"position {p} is outside the {num_tokens} tokens (0..{num_tokens - 1})")
        if c >= codebook_size:
            raise ValueError(f"code {c} is outside the codebook (0..{codebook_size - 1})")
        edits[p] = c
    return edits
