"""The app's token-surgery handlers: edit a clip's tokens, map what each token controls, and swap
tokens (or encoder query outputs) between two clips. Plain functions of (models, inputs) ->
(files, images, numbers), like :mod:`.handlers`; the page keeps a clip's tokens in a
:class:`SurgeryClip` (``gr.State``), so clicking cells and trying codes never re-encodes.

What a user should notice is said in :data:`NOTICE` (shown above the controls).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import pipelines, viz
from ..analysis import (
    InfluenceMap,
    clip_properties,
    decode_edit,
    edit_tokens,
    parse_edits,
    parse_positions,
    patch_query_outputs,
    prior_alternatives,
    swap_tokens,
    token_influence,
)
from ..bundled import bundled_path, has_bundled
from ..viz.figure import to_image
from .cache import ModelCache
from .handlers import APP_LIMITS, Workspace, _need_video, _start

__all__ = [
    "NOTICE",
    "SurgeryClip",
    "alternatives",
    "edit",
    "grid",
    "influence",
    "parse_edits",
    "parse_positions",
    "pixel_control",
    "reconstruction_frame",
    "swap",
    "tokenize",
]

NOTICE = (
    "**What to notice.** LARP's tokens are *holistic*: token 5 is not \"the patch at row 0, column 5\". "
    "Edit one and watch the difference clip: the change can spread over the frame or follow the object. "
    "The influence map shows, for every token, where the decoded clip moves when that token is replaced; "
    "click a pixel of the reconstruction to see which tokens control it. Swapping tokens between two "
    "clips shows which positions carry the digit's colour, its shape (identity) and where it is and goes."
)
MAX_INFLUENCE_CODES = 8
CLASSIFIER = "larp-tiny-classifier"
_CLF: dict[str, Any] = {}
_CLF_LOCK = threading.Lock()


@dataclass
class SurgeryClip:
    """One clip as the surgery tab holds it: the tokenizer's name, the clip (1, 3, T, H, W) in [-1, 1],
    its token ids (N,), what was read from the file, and its influence map once computed."""

    tokenizer: str
    video: torch.Tensor
    indices: list[int]
    used: str
    influence: InfluenceMap | None = None


def _scale(size: int) -> int:
    """Pixel repetition for the page's clips: small clips are drawn at about 128 px."""
    return max(1, 128 // max(size, 1))


def _ranges(positions: list[int]) -> str:
    """[0, 1, 2, 3, 7, 10, 11] -> "0-3, 7, 10-11" (what parse_positions reads back)."""
    out: list[str] = []
    for p in sorted(set(positions)):
        if out and p == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ", ".join(out)


def _check(models: ModelCache, clip: SurgeryClip | None, tokenizer: str, what: str = "Tokenize a clip first."):
    if clip is None:
        raise ValueError(what)
    if clip.tokenizer != tokenizer:
        raise ValueError("The tokenizer changed since this clip was tokenized: tokenize it again.")
    return models.tokenizer(tokenizer)


# ------------------------------------------------------------------------------------------------
# tokenize / edit
# ------------------------------------------------------------------------------------------------


def tokenize(models: ModelCache, tokenizer: str, video_path: str | None, start_time: float | None = 0.0,
             limits=APP_LIMITS) -> SurgeryClip:
    """Read a clip as the tokenizer sees it and keep its token ids."""
    tok = models.tokenizer(tokenizer)
    c = tok.config
    x, source = pipelines.load_clip(_need_video(video_path), frames=c.frame_num, size=c.input_size,
                                    start_time=_start(start_time), limits=limits)
    with torch.no_grad():
        ids = tok.encode(x.to(tok.device)).indices[0].cpu()
    return SurgeryClip(tokenizer, x, ids.tolist(), source.describe())


def grid(models: ModelCache, clip: SurgeryClip, selected: int | None = None, values=None,
         marks: list[int] | None = None) -> np.ndarray:
    """The clip's clickable token grid."""
    tok = models.tokenizer(clip.tokenizer)
    return viz.token_grid_image(clip.indices, values, selected=selected, codebook_size=tok.config.codebook_size,
                                marks=marks)


def alternatives(models: ModelCache, tokenizer: str, clip: SurgeryClip | None, position: int, k: int = 8
                 ) -> list[tuple[str, int]]:
    """(label, code) choices for one position: the prior's top-k given the tokens before it
    (position 0: the nearest codes), the clip's own code first."""
    tok = _check(models, clip, tokenizer)
    N = tok.config.num_tokens
    if not 0 <= int(position) < N:
        raise ValueError(f"position must lie in 0..{N - 1}")
    codes, scores, kind = prior_alternatives(tok, torch.tensor(clip.indices), int(position), k=k)
    own = clip.indices[int(position)]
    out = [(f"{own} (this clip's code)", own)]
    for cde, s in zip(codes.tolist(), scores.tolist()):
        if cde == own:
            continue
        out.append((f"{cde} (prior p={s:.3f})" if kind == "prior" else f"{cde} (cosine {s:.2f} to {own})", cde))
    return out


def edit(models: ModelCache, ws: Workspace, tokenizer: str, clip: SurgeryClip | None, edits: dict[int, int]
         ) -> dict[str, Any]:
    """Original | edited | difference (one MP4, in sync), the energy per frame (figure and numbers)."""
    tok = _check(models, clip, tokenizer)
    K = tok.config.codebook_size
    new = edit_tokens(torch.tensor(clip.indices), edits, num_codes=K)
    e = decode_edit(tok, torch.tensor(clip.indices), new)
    f = _scale(tok.config.input_size)
    panels = [viz.upscale_clip(v, f) for v in (e.original, e.edited, viz.difference_clip(e.difference))]
    path = pipelines.save_side_by_side(ws.new("edit") / "original_edited_difference.mp4", *panels, gap=4)
    info = {"edits": {str(p): c for p, c in edits.items()}, "changed_positions": e.changed,
            "energy_per_frame": [round(float(v), 6) for v in e.energy],
            "mean_energy": round(e.total_energy, 6),
            "max_abs_difference": round(float(e.difference.max()), 4)}
    return {"video": path, "energy": viz.figure_to_array(viz.energy_figure(e.energy)), "info": info,
            "indices": e.edited_indices.tolist()}


# ------------------------------------------------------------------------------------------------
# influence
# ------------------------------------------------------------------------------------------------


def influence(models: ModelCache, tokenizer: str, clip: SurgeryClip | None, num_codes: int = 4,
              seed: int = 0) -> dict[str, Any]:
    """Every token's influence map (a mosaic in token order), its strength on the grid, and numbers."""
    tok = _check(models, clip, tokenizer)
    if not 1 <= int(num_codes) <= MAX_INFLUENCE_CODES:
        raise ValueError(f"the number of replacement codes must lie in 1..{MAX_INFLUENCE_CODES}")
    inf = token_influence(tok, torch.tensor(clip.indices), num_codes=int(num_codes), seed=int(seed))
    clip.influence = inf
    strength = inf.strength()
    conc = inf.concentration(4) if tok.config.input_size % 4 == 0 else None
    info = {"replacement_codes": int(num_codes),
            "strongest_tokens": [int(i) for i in np.argsort(-strength)[:8]],
            "weakest_tokens": [int(i) for i in np.argsort(strength)[:4]],
            "mean_change_per_token": round(float(strength.mean()), 5)}
    if conc is not None:
        info["share_in_best_4x4_block_mean"] = round(float(conc.mean()), 4)
    mosaic = viz.influence_mosaic(inf.maps)
    return {"mosaic": (mosaic * 255).astype(np.uint8), "grid": grid(models, clip, values=strength), "info": info,
            "frame": reconstruction_frame(clip, 0)}


def reconstruction_frame(clip: SurgeryClip, t: int) -> np.ndarray | None:
    """Frame ``t`` of the decoded clip behind the influence map, upscaled (uint8 (H, W, 3)), to click on."""
    if clip.influence is None:
        return None
    rec = clip.influence.reconstruction  # (3, T, H, W)
    f = _scale(rec.shape[-1])
    img = to_image(viz.upscale_clip(rec, f)[:, int(t)].numpy())
    return (img * 255).astype(np.uint8)


def pixel_control(models: ModelCache, clip: SurgeryClip | None, t: int, x: float, y: float,
                  image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Which tokens control the pixel clicked at (x, y) of frame ``t``'s image: shares on the grid."""
    if clip is None or clip.influence is None:
        raise ValueError("Compute the influence map first.")
    _, T, H, W = clip.influence.maps.shape
    if not 0 <= int(t) < T:
        raise ValueError(f"frame must lie in 0..{T - 1}")
    py = int(min(H - 1, max(0, y * H // image_shape[0])))
    px = int(min(W - 1, max(0, x * W // image_shape[1])))
    share = clip.influence.pixel_control(int(t), py, px, radius=1)
    top = [int(i) for i in np.argsort(-share)[:5]]
    info = {"frame": int(t), "pixel": [py, px], "top_tokens": top,
            "their_share": [round(float(share[i]), 4) for i in top],
            "share_of_top_5": round(float(share[top].sum()), 4)}
    return {"grid": grid(models, clip, values=share, marks=top), "info": info}


# ------------------------------------------------------------------------------------------------
# swap between clips
# ------------------------------------------------------------------------------------------------


def _classifier(tok):
    """The bundled proxy classifier when it reads this tokenizer's clips (digits), else None."""
    if not has_bundled(CLASSIFIER):
        return None
    path = bundled_path(CLASSIFIER)
    with _CLF_LOCK:
        if str(path) not in _CLF:
            from ..evaluation.classifier import VideoClassifier

            try:
                _CLF[str(path)] = VideoClassifier.from_pretrained(path).eval()
            except (OSError, ValueError):
                _CLF[str(path)] = None
        clf = _CLF[str(path)]
    c = tok.config
    if clf is None or (clf.config.frames, clf.config.size) != (c.frame_num, c.input_size):
        return None
    return clf


def swap(models: ModelCache, ws: Workspace, tokenizer: str, clip_a: SurgeryClip | None, clip_b: SurgeryClip | None,
         positions: list[int], method: str = "tokens", layer: int = -1) -> dict[str, Any]:
    """A | B | A with B's tokens (or encoder query outputs) at ``positions`` (one MP4), and what moved:
    the object's position, motion and colour, and the digit read by the proxy classifier."""
    tok = _check(models, clip_a, tokenizer, "Tokenize clip A first.")
    _check(models, clip_b, tokenizer, "Tokenize clip B first.")
    if method not in ("tokens", "queries"):
        raise ValueError("method must be tokens or queries")
    ids_a, ids_b = torch.tensor([clip_a.indices]), torch.tensor([clip_b.indices])
    with torch.no_grad():
        rec = tok.decode_indices(torch.cat([ids_a, ids_b]).to(tok.device)).float().clamp(-1, 1).cpu()
        if method == "tokens":
            new = swap_tokens(ids_a, ids_b, positions)
            patched = tok.decode_indices(new.to(tok.device)).float().clamp(-1, 1).cpu()
        else:
            D = tok.config.encoder_depth
            if not -D <= int(layer) < D:
                raise ValueError(f"layer must lie in 0..{D - 1}")
            new, patched = patch_query_outputs(tok, clip_a.video, clip_b.video, int(layer), positions)
    clf = _classifier(tok)
    props = clip_properties(torch.cat([rec, patched]), clf)
    f = _scale(tok.config.input_size)
    path = pipelines.save_side_by_side(ws.new("swap") / "a_b_patched.mp4",
                                       *[viz.upscale_clip(v, f) for v in (rec[0], rec[1], patched[0])], gap=4)

    def where(i: int) -> list[float]:
        c = np.nanmean(props.centre[i], axis=0)
        return [round(float(v), 2) for v in np.nan_to_num(c)]

    info: dict[str, Any] = {
        "method": method, "positions": _ranges(positions), "tokens_changed": int((new[0] != ids_a[0]).sum()),
        "centre_yx": {"A": where(0), "B": where(1), "patched": where(2)},
        "velocity_yx_px_per_frame": {k: [round(float(v), 2) for v in props.velocity[i]]
                                     for i, k in enumerate(("A", "B", "patched"))},
        "colour_rgb": {k: [round(float(v), 3) for v in props.colour[i]] for i, k in enumerate(("A", "B", "patched"))},
    }
    if method == "queries":
        info["layer"] = int(layer) % tok.config.encoder_depth
    if clf is not None:
        info["digit_read"] = {k: int(props.digit[i]) for i, k in enumerate(("A", "B", "patched"))}
        info["probability_of_B_digit"] = round(float(props.probs[2, props.digit[1]]), 4)
    return {"video": path, "info": info, "grid": grid(models, clip_a, marks=positions)}
