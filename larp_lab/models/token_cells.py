"""Where each holistic token "lives": a cell grid of the N tokens laid over the patch grid (pure geometry).

LARP's tokens have no position on the frame, but a training recipe may give each one a *home cell*
(the attention-locality loss of :mod:`larp_lab.training.locality` does, then anneals it away), and an
analysis may ask afterwards whether query i still reads the patches of its cell
(:func:`larp_lab.analysis.locality.own_cell_share`). Both use the geometry here:

* :func:`token_grid`: the cell grid (gt, gh, gw), gt*gh*gw = N, shaped like the patch grid;
* :func:`cell_centres`: (G, 3) centres in [0, 1] per axis, row-major over (t, h, w) like the patch sequence;
* :func:`locality_weights`: w = exp(-d^2) (N, P), d = a patch's distance from a token's cell centre in cell widths;
* :func:`own_cell_mask`: the patches with w >= 0.5, a token's own patches: bool (N, t, h, w).

No model is needed: everything is a function of N and the grids.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["OWN_CELL_WEIGHT", "cell_centres", "locality_weights", "own_cell_mask", "token_grid"]

#: a patch is in a token's own cell when its locality weight exp(-d^2) is at least this
OWN_CELL_WEIGHT = 0.5


def token_grid(num_tokens: int, patch_grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """A cell grid (gt, gh, gw) of ``num_tokens`` cells shaped like ``patch_grid`` (t, h, w).

    Among all factorisations gt*gh*gw = N, picks the one closest to the patch grid in log-ratio,
    spatial axes counting twice as much as time: 16 tokens over (2, 4, 4) -> (1, 4, 4), 256 over
    (4, 8, 8) -> (4, 8, 8), 64 over (2, 8, 8) -> (1, 8, 8).
    """
    if num_tokens < 1 or len(patch_grid) != 3 or min(patch_grid) < 1:
        raise ValueError(f"token_grid needs num_tokens >= 1 and a (t, h, w) patch grid; got {num_tokens}, {patch_grid}")
    best, best_score = None, float("inf")
    for gt in range(1, num_tokens + 1):
        if num_tokens % gt:
            continue
        rest = num_tokens // gt
        for gh in range(1, rest + 1):
            if rest % gh:
                continue
            gw = rest // gh
            score = (abs(math.log(gt / patch_grid[0])) + 2 * abs(math.log(gh / patch_grid[1]))
                     + 2 * abs(math.log(gw / patch_grid[2])) + 0.01 * abs(math.log(gh / gw)))
            if score < best_score - 1e-9:
                best, best_score = (gt, gh, gw), score
    assert best is not None
    return best


def cell_centres(grid: tuple[int, int, int]) -> Tensor:
    """float64 (G, 3) cell centres in [0, 1] per axis, row-major over (t, h, w) like the patch sequence."""
    axes = [(torch.arange(g, dtype=torch.float64) + 0.5) / g for g in grid]
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([t.flatten(), h.flatten(), w.flatten()], dim=1)


def locality_weights(cells: tuple[int, int, int], patches: tuple[int, int, int]) -> Tensor:
    """float32 (N, P): w = exp(-d^2), d = distance of patch j from token i's cell centre, in cell widths."""
    scale = torch.tensor(cells, dtype=torch.float64)
    d = (cell_centres(patches)[None, :, :] - cell_centres(cells)[:, None, :]) * scale  # (N, P, 3)
    return torch.exp(-(d**2).sum(-1)).float()


def own_cell_mask(num_tokens: int, patch_grid: tuple[int, int, int],
                  cells: tuple[int, int, int] | None = None) -> Tensor:
    """bool (N, t, h, w): True on the patches of token i's own cell (locality weight >= 0.5).

    ``cells``: the token cell grid (default :func:`token_grid`); its cells must number ``num_tokens``.
    """
    cells = token_grid(num_tokens, patch_grid) if cells is None else tuple(int(c) for c in cells)
    if math.prod(cells) != num_tokens:
        raise ValueError(f"a cell grid {list(cells)} has {math.prod(cells)} cells but there are {num_tokens} tokens")
    w = locality_weights(cells, tuple(patch_grid))  # (N, P)
    return (w >= OWN_CELL_WEIGHT).reshape(num_tokens, *patch_grid)
