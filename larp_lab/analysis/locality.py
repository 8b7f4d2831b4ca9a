"""Does each holistic query read "its own" part of the clip? Own-cell attention share and its chance level.

The N tokens are laid on a cell grid over the patch grid (:func:`larp_lab.models.token_cells.token_grid`);
the patches of token i's own cell are :func:`~larp_lab.models.token_cells.own_cell_mask`. The own-cell
share of a query is the attention it gives to those patches, out of its whole attention row (patches and
queries): what ``scripts/bundle_models.py`` reports for the bundled tokenizer and what the CPU recipe's
locality loss pushes up early in training (then anneals to 0). Uniform attention over the whole encoder
sequence gives :func:`own_cell_chance`.

Typical use::

    enc, cache = encoder_attention(tok, video)
    maps = query_attention_maps(cache, layers=[encoder_layers(cache)[-1]])[:, 0]   # (B, heads, N, t, h, w)
    mask = own_cell_mask(tok.config.num_tokens, tok.config.patch_grid)            # (N, t, h, w)
    own_cell_share(maps.mean(1), mask).mean()                                     # heads averaged, a float
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._util import to_numpy

__all__ = ["own_cell_chance", "own_cell_share"]


def own_cell_share(maps: Tensor, mask: Tensor) -> np.ndarray:
    """Each query's attention on the patches of its own cell.

    Args:
        maps: query-to-patch attention (..., N, t, h, w) (e.g. (B, N, t, h, w) heads averaged, or
            (B, heads, N, t, h, w)), as :func:`~larp_lab.analysis.query_attention_maps` gives it: not
            renormalised, so the mass a query gives to the other queries counts as "not own".
        mask: bool (N, t, h, w) from :func:`~larp_lab.models.token_cells.own_cell_mask`.
    Returns:
        float64 (..., N): the share in [0, 1]; its mean over heads equals the share of the heads' mean map.
    """
    m = torch.as_tensor(maps).detach().double().cpu()
    k = torch.as_tensor(mask).bool().cpu()
    if m.shape[-4:] != k.shape:
        raise ValueError(f"maps end with {tuple(m.shape[-4:])} but the own-cell mask is {tuple(k.shape)}")
    return to_numpy((m * k.double()).sum(dim=(-3, -2, -1)))


def own_cell_chance(mask: Tensor) -> float:
    """The own-cell share of uniform attention over the whole encoder sequence ``[P patches ; N queries]``:
    the mean number of own patches per query / (P + N)."""
    k = torch.as_tensor(mask).bool()
    N, P = k.shape[0], int(np.prod(k.shape[1:]))
    return float(k.reshape(N, P).sum(-1).double().mean()) / (P + N)
