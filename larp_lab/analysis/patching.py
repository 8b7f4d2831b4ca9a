"""Patching between clips: move tokens (or encoder query outputs) from clip B into clip A and measure
what moved with them; patch the generator's class embedding or one position's residual stream.

Clip side (tokenizer):

* :func:`swap_tokens` -- A's token ids with the ids of B at chosen positions;
* :func:`patch_query_outputs` -- encode A while its encoder's query rows at one block (the residual
  stream after block ``layer``) are replaced, at chosen positions, by B's (through the writable
  hooks of :mod:`larp_lab.models.capture`); then quantize and decode as usual;
* :func:`clip_properties` -- what a person reads in a moving-digit clip: the object's mask, its
  centre per frame, its velocity and colour (bright object on a dark ground), and, with a
  classifier, the digit;
* :func:`patching_sweep` -- over many (A, B) pairs, for each position (or group of positions):
  how far the patched clip moved from A towards B in identity (classifier probability of B's
  digit), position, motion and colour; the numbers behind "which tokens carry what".

Generator side: :func:`generator_patch_effect` runs the teacher-forced generator on a token
sequence with condition A, then again with (a) the class embedding of B, or (b) the residual
stream of one position at one layer taken from a run on another sequence, and reports per later
position the KL divergence of the next-token distributions and whether the argmax changed.

"Moved towards B" (decision): for a property p, ``(p(patched) - p(A)) . (p(B) - p(A)) / |p(B) -
p(A)|^2``: 0 = stayed A, 1 = became B (a projection, so a change in an unrelated direction scores
near 0). Pairs whose A and B differ too little in p are left out of that property's mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ._util import as_long_indices, batches, evaluating, to_numpy

__all__ = [
    "ClipProperties",
    "GeneratorPatch",
    "PatchingSweep",
    "clip_properties",
    "generator_patch_effect",
    "patch_query_outputs",
    "patching_sweep",
    "swap_tokens",
]


# ================================================================================================
#                                      token ids and hooks
# ================================================================================================


def swap_tokens(indices_a, indices_b, positions: Sequence[int]) -> Tensor:
    """A's ids (B, N) with B's ids at ``positions`` (the same positions for every row). int64 (B, N)."""
    a, b = as_long_indices(indices_a), as_long_indices(indices_b)
    if a.shape != b.shape:
        raise ValueError(f"clips A and B must have token ids of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    N = a.shape[1]
    pos = [int(p) for p in positions]
    if any(not 0 <= p < N for p in pos):
        raise ValueError(f"positions must lie in [0, {N}); got {pos}")
    out = a.clone()
    if pos:
        out[:, pos] = b[:, pos]
    return out


def _encoder_block_names(tok) -> list[str]:
    names = [n for n in tok.hook_point_names() if n.startswith("encoder.blocks.") and n.endswith(".hook_out")]
    return sorted(names, key=lambda n: int(n.split(".")[2]))


@torch.no_grad()
def patch_query_outputs(tok, video_a: Tensor, video_b: Tensor, layer: int, positions: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Encode ``video_a`` with the query rows at ``positions`` of encoder block ``layer``'s output
    replaced by those of ``video_b`` (same batch size); decode.

    Args:
        video_a, video_b: float (B, 3, T, H, W) in [-1, 1].
        layer: encoder block index (0 = first; -1 = last).
    Returns:
        (indices int64 (B, N), reconstruction float32 (B, 3, T, H, W), clamped), on the CPU.
    """
    if video_a.shape != video_b.shape:
        raise ValueError(f"clips A and B must have the same shape; got {tuple(video_a.shape)} and {tuple(video_b.shape)}")
    names = _encoder_block_names(tok)
    if not names:
        raise ValueError("this tokenizer exposes no encoder block hook points")
    if not -len(names) <= layer < len(names):
        raise ValueError(f"layer {layer} is outside the encoder's {len(names)} blocks")
    name = names[layer]
    N = tok.config.num_tokens
    pos = torch.as_tensor([int(p) for p in positions], dtype=torch.long)
    if len(pos) and (int(pos.min()) < 0 or int(pos.max()) >= N):
        raise ValueError(f"positions must lie in [0, {N})")
    dev = tok.device
    with evaluating(tok):
        with tok.capture([name]) as cache:
            tok.encode(video_b.to(dev))
        src = cache[name]  # (B, L, D): [patches ; queries], or only the N queries at the last block

        def put(x: Tensor, _name: str) -> Tensor:
            x = x.clone()  # same shape as src; the queries are the last N rows of both
            rows = x.shape[1] - N + pos.to(x.device)
            x[:, rows] = src[:, rows].to(x.dtype)
            return x

        with tok.hooks([(name, put)]):
            enc = tok.encode(video_a.to(dev))
        rec = tok.decode(enc.embeddings, enc.video_shape)
    return enc.indices.cpu(), rec.float().clamp(-1, 1).cpu()


# ================================================================================================
#                                     what a person reads
# ================================================================================================


@dataclass
class ClipProperties:
    """Per clip (B,): ``centre`` (B, T, 2) object centre (y, x) in pixels per frame (NaN where the
    frame shows no object), ``velocity`` (B, 2) mean pixels per frame, ``colour`` (B, 3) mean RGB of
    the object in [-1, 1], ``area`` (B,) object pixels per frame, ``digit`` (B,) classifier argmax
    and ``probs`` (B, C) its probabilities (None without a classifier)."""

    centre: np.ndarray
    velocity: np.ndarray
    colour: np.ndarray
    area: np.ndarray
    digit: np.ndarray | None = None
    probs: np.ndarray | None = None


@torch.no_grad()
def clip_properties(video: Tensor, classifier=None, threshold: float = -0.5, batch_size: int = 64) -> ClipProperties:
    """Object centre, velocity, colour (and digit) of clips (B, 3, T, H, W) in [-1, 1] showing a bright
    object on a dark ground: the object is where the brightest channel exceeds ``threshold``."""
    v = video.detach().float().cpu().clamp(-1, 1)
    if v.ndim != 5 or v.shape[1] != 3:
        raise ValueError(f"expected clips of shape (B, 3, T, H, W); got {tuple(v.shape)}")
    B, _, T, H, W = v.shape
    bright = v.max(1).values  # (B, T, H, W)
    w = (bright - threshold).clamp_min(0)  # soft mask
    mass = w.sum(dim=(2, 3))  # (B, T)
    ys = torch.arange(H, dtype=torch.float32)[:, None]
    xs = torch.arange(W, dtype=torch.float32)[None, :]
    cy = (w * ys).sum(dim=(2, 3)) / mass.clamp_min(1e-6)
    cx = (w * xs).sum(dim=(2, 3)) / mass.clamp_min(1e-6)
    centre = torch.stack([cy, cx], -1)  # (B, T, 2)
    centre[mass < 1e-3] = float("nan")
    vel = torch.nanmean(centre[:, 1:] - centre[:, :-1], dim=1) if T > 1 else torch.zeros(B, 2)
    ww = w[:, None]  # (B, 1, T, H, W)
    colour = (v * ww).sum(dim=(2, 3, 4)) / ww.sum(dim=(2, 3, 4)).clamp_min(1e-6)  # (B, 3)
    area = (bright > threshold).float().sum(dim=(2, 3)).mean(1)
    props = ClipProperties(to_numpy(centre), to_numpy(torch.nan_to_num(vel)), to_numpy(colour), to_numpy(area))
    if classifier is not None:
        dev = next(classifier.parameters()).device
        was = classifier.training
        classifier.eval()
        try:
            probs = torch.cat([classifier(v[s].to(dev)).float().softmax(-1).cpu() for s in batches(B, batch_size)])
        finally:
            classifier.train(was)
        props.probs = to_numpy(probs)
        props.digit = to_numpy(probs.argmax(-1))
    return props


def _towards(p_a: np.ndarray, p_b: np.ndarray, p_x: np.ndarray, min_gap: float) -> np.ndarray:
    """Per row: projection of (x - a) on (b - a), divided by |b - a|^2; NaN where |b - a| < min_gap."""
    d = (p_b - p_a).reshape(len(p_a), -1)
    m = (p_x - p_a).reshape(len(p_a), -1)
    gap2 = (d * d).sum(1)
    out = (m * d).sum(1) / np.maximum(gap2, 1e-12)
    out[np.sqrt(gap2) < min_gap] = np.nan
    return out


# ================================================================================================
#                                          the sweep
# ================================================================================================


@dataclass
class PatchingSweep:
    """Over P pairs and G groups of positions: how far each patched clip moved from A towards B.

    Arrays (G, P): ``identity`` (classifier probability of B's digit, patched minus A's, divided by
    B's own minus A's; NaN where A and B show the same digit or no classifier), ``position``
    (object centre over all frames), ``motion`` (velocity), ``colour``; ``flipped`` (G, P) bool: the
    classifier reads B's digit in the patched clip. ``groups``: the positions of each group.
    """

    groups: list[list[int]]
    identity: np.ndarray
    position: np.ndarray
    motion: np.ndarray
    colour: np.ndarray
    flipped: np.ndarray
    pairs: np.ndarray  # (P, 2) clip indices (a, b)
    method: str = "tokens"
    layer: int | None = None
    extra: dict = field(default_factory=dict)

    def means(self) -> dict[str, np.ndarray]:
        """(G,) nan-means of each property over the pairs (and the flip rate)."""
        with warnings.catch_warnings():  # a group whose pairs were all left out has mean NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            means = {k: np.nanmean(getattr(self, k), axis=1) for k in ("identity", "position", "motion", "colour")}
        return means | {"flip_rate": self.flipped.mean(1)}

    def table(self) -> list[dict]:
        m = self.means()
        return [{"positions": g, **{k: float(v[i]) for k, v in m.items()}} for i, g in enumerate(self.groups)]

    def top(self, what: str, k: int = 5) -> list[int]:
        """Indices of the ``k`` groups that move ``what`` (identity, position, motion, colour) most."""
        v = np.nan_to_num(self.means()[what], nan=-np.inf)
        return [int(i) for i in np.argsort(-v)[:k]]


def _pairs(n: int, num_pairs: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    tries = 0
    while len(out) < num_pairs and tries < 100 * num_pairs:
        a, b = rng.choice(n, 2, replace=False)
        tries += 1
        if labels is not None and labels[a] == labels[b]:
            continue
        out.append((int(a), int(b)))
    if not out:
        raise ValueError("no pair of clips with different labels")
    return np.asarray(out)


@torch.no_grad()
def patching_sweep(
    tok, videos: Tensor, classifier=None, labels=None, groups: Sequence[Sequence[int]] | None = None,
    num_pairs: int = 32, seed: int = 0, method: str = "tokens", layer: int = -1, batch_size: int = 64,
    min_gap: float = 1.0,
) -> PatchingSweep:
    """Patch groups of positions from B into A over ``num_pairs`` random pairs of ``videos``.

    Args:
        videos: float (C, 3, T, H, W) in [-1, 1], C >= 2 clips.
        labels: (C,) classes; pairs then show different classes (identity can move).
        groups: lists of positions patched together; default each position alone.
        method: ``"tokens"`` (swap token ids) or ``"queries"`` (swap encoder query outputs after
            block ``layer``).
        min_gap: pairs whose A and B positions / colours / velocities differ by less are left out of
            that property's mean (pixels; colour in [-1, 1] units x 10; pixels per frame).
    """
    if method not in ("tokens", "queries"):
        raise ValueError(f"method must be 'tokens' or 'queries'; got {method!r}")
    C = videos.shape[0]
    if C < 2:
        raise ValueError("patching needs at least two clips")
    N = tok.config.num_tokens
    groups = [[p] for p in range(N)] if groups is None else [[int(p) for p in g] for g in groups]
    lab = None if labels is None else np.asarray(to_numpy(torch.as_tensor(labels)))
    pairs = _pairs(C, num_pairs, seed, lab)
    a_i, b_i = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    dev = tok.device
    with evaluating(tok):
        ids = torch.cat([tok.encode(videos[s].to(dev)).indices.cpu() for s in batches(C, batch_size)])
        recs = torch.cat([tok.decode_indices(ids[s].to(dev)).float().clamp(-1, 1).cpu() for s in batches(C, batch_size)])
    base = clip_properties(recs, classifier)  # of the reconstructions: what A and B look like through the tokenizer
    P, G = len(pairs), len(groups)
    out = {k: np.full((G, P), np.nan, np.float32) for k in ("identity", "position", "motion", "colour")}
    flipped = np.zeros((G, P), bool)
    for g, pos in enumerate(groups):
        if method == "tokens":
            patched_ids = swap_tokens(ids[a_i], ids[b_i], pos)
            with evaluating(tok):
                vids = torch.cat([tok.decode_indices(patched_ids[s].to(dev)).float().clamp(-1, 1).cpu()
                                  for s in batches(P, batch_size)])
        else:
            vids = torch.cat([patch_query_outputs(tok, videos[a_i[s]], videos[b_i[s]], layer, pos)[1]
                              for s in batches(P, batch_size)])
        pr = clip_properties(vids, classifier)
        out["position"][g] = _towards(base.centre[pairs[:, 0]], base.centre[pairs[:, 1]], pr.centre, min_gap)
        out["motion"][g] = _towards(base.velocity[pairs[:, 0]], base.velocity[pairs[:, 1]], pr.velocity, min_gap)
        out["colour"][g] = _towards(10 * base.colour[pairs[:, 0]], 10 * base.colour[pairs[:, 1]], 10 * pr.colour, min_gap)
        if classifier is not None and lab is not None:
            yb = lab[pairs[:, 1]]
            pa = base.probs[pairs[:, 0], yb]
            pb = base.probs[pairs[:, 1], yb]
            px = pr.probs[np.arange(P), yb]
            gap = pb - pa
            ident = (px - pa) / np.where(np.abs(gap) < 1e-6, np.nan, gap)
            ident[np.abs(gap) < 0.1] = np.nan  # the tokenizer's own reconstruction of B is not read as B
            out["identity"][g] = ident
            flipped[g] = pr.digit == yb
    return PatchingSweep(groups=groups, pairs=pairs, flipped=flipped, method=method,
                         layer=layer if method == "queries" else None, **out)


# ================================================================================================
#                                        the generator
# ================================================================================================


@dataclass
class GeneratorPatch:
    """Teacher-forced effect of one patch on a generator's next-token predictions.

    ``kl`` (B, N): KL(clean || patched) of each position's next-token distribution (nats);
    ``changed`` (B, N) bool: the argmax differs; ``logp_clean`` / ``logp_patched`` (B, N): log
    probability of the sequence's own token. ``site``: what was patched.
    """

    kl: np.ndarray
    changed: np.ndarray
    logp_clean: np.ndarray
    logp_patched: np.ndarray
    site: str

    def first_affected(self, threshold: float = 1e-4) -> int | None:
        """The first position whose prediction moves by more than ``threshold`` nats (any row)."""
        hit = np.nonzero((self.kl > threshold).any(0))[0]
        return int(hit[0]) if len(hit) else None


@torch.no_grad()
def generator_patch_effect(
    gen, tokens, cond, *, class_from=None, layer: int | None = None, position: int | None = None,
    source_tokens=None,
) -> GeneratorPatch:
    """Patch a class-conditional generator and compare its teacher-forced predictions on ``tokens``.

    Either ``class_from`` (labels (B,)): the condition rows of the input embedding come from these
    classes instead of ``cond``; or ``layer`` and ``position``: the residual stream after block
    ``layer`` at the row holding token ``position`` comes from a run on ``source_tokens`` (same
    condition). Only predictions of tokens after the patched one can change (causality): the test
    of a correct patch.

    Args:
        tokens: int (B, N) sequences (e.g. samples of class ``cond``); cond: labels (B,).
    """
    c = gen.config
    if c.frame_prediction:
        raise ValueError("generator_patch_effect works on class-conditional generators")
    x = as_long_indices(tokens, c.num_tokens).to(gen.device)
    cond = gen.prepare_condition(cond)
    C = c.cls_token_num
    with evaluating(gen):
        clean = gen(x, cond).float().log_softmax(-1)  # (B, N, V)
        if class_from is not None:
            if layer is not None or position is not None:
                raise ValueError("patch either the class (class_from) or a residual stream (layer, position)")
            other = gen._embed_condition(gen.prepare_condition(class_from))  # (B, C, D)

            def put_class(h: Tensor, _n: str) -> Tensor:
                h = h.clone()
                h[:, :C] = other.to(h.dtype)
                return h

            with gen.hooks([("hook_embed", put_class)]):
                patched = gen(x, cond).float().log_softmax(-1)
            site = "class embedding"
        else:
            if layer is None or position is None or source_tokens is None:
                raise ValueError("a residual patch needs layer, position and source_tokens")
            names = sorted([n for n in gen.hook_point_names() if n.startswith("layers.") and n.endswith(".hook_out")],
                           key=lambda n: int(n.split(".")[1]))
            if not -len(names) <= layer < len(names):
                raise ValueError(f"layer {layer} is outside the generator's {len(names)} blocks")
            if not 0 <= position < c.num_tokens - 1:
                raise ValueError(f"position must lie in [0, {c.num_tokens - 1}) (the last token is never fed)")
            name = names[layer]
            src_x = as_long_indices(source_tokens, c.num_tokens).to(gen.device)
            with gen.capture([name]) as cache:
                gen(src_x, cond)
            src = cache[name]
            row = C + position  # the row holding token ``position`` (row C - 1 + i predicts token i)

            def put_row(h: Tensor, _n: str) -> Tensor:
                h = h.clone()
                h[:, row] = src[:, row].to(h.dtype)
                return h

            with gen.hooks([(name, put_row)]):
                patched = gen(x, cond).float().log_softmax(-1)
            site = f"residual stream after block {layer % len(names)}, token {position}"
    kl = (clean.exp() * (clean - patched)).sum(-1).clamp_min(0)  # (B, N)
    own_c = clean.gather(-1, x[..., None]).squeeze(-1)
    own_p = patched.gather(-1, x[..., None]).squeeze(-1)
    return GeneratorPatch(kl=to_numpy(kl), changed=to_numpy(clean.argmax(-1) != patched.argmax(-1)),
                          logp_clean=to_numpy(own_c), logp_patched=to_numpy(own_p), site=site)
