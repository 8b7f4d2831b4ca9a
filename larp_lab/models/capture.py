"""Reading model internals: a ``run_with_cache``-style capture over :class:`HookPoint` modules.

Every interesting tensor in the models passes through a named :class:`~.layers.HookPoint`
(attention probabilities, block outputs, patch embeddings, encoder/decoder outputs, latents).
:func:`capture` attaches forward hooks to the hook points whose names pass a filter, stores what
flows through them in an :class:`ActivationCache`, and removes every hook on exit, also on error.
Nothing is global: an uncaptured model runs the fused path and pays nothing.

Attention probabilities are only materialised while their hook point is captured; the model's
outputs are the same with and without capture (see :func:`~.layers.attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .layers import HookPoint

NameFilter = Callable[[str], bool]


@dataclass(frozen=True)
class SequenceLayout:
    """Where patches and tokens sit in the tokenizer's two transformer sequences.

    Encoder sequence: ``[patches (P) ; queries (N)]``. Decoder sequence: ``[latent tokens (N) ;
    patch queries (M)]``. Patch p of a (t, h, w) grid is row ``t_i*h*w + h_i*w + w_i``.
    """

    num_patches: int
    num_tokens: int
    num_decoder_patches: int
    patch_grid: tuple[int, int, int]
    decoder_patch_grid: tuple[int, int, int]

    @property
    def encoder_patches(self) -> slice:
        return slice(0, self.num_patches)

    @property
    def encoder_queries(self) -> slice:
        return slice(self.num_patches, self.num_patches + self.num_tokens)

    @property
    def decoder_latents(self) -> slice:
        return slice(0, self.num_tokens)

    @property
    def decoder_patches(self) -> slice:
        return slice(self.num_tokens, self.num_tokens + self.num_decoder_patches)


@dataclass
class ActivationCache:
    """Tensors recorded during a captured forward pass, by hook-point name.

    Names look like ``"encoder.blocks.3.attn.hook_attn"`` (attention probabilities (B, H, L, L)) or
    ``"encoder.blocks.3.hook_out"`` (residual stream (B, L, D)). A hook point hit several times in
    one capture (e.g. an encode and then a decode, or the prior's two rounds) keeps every call, in
    order, under ``all(name)``; ``cache[name]`` is the last one.
    """

    store: dict[str, list[Tensor]] = field(default_factory=dict)
    layout: SequenceLayout | None = None

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.store:
            raise KeyError(f"{name!r} was not captured; captured: {sorted(self.store)}")
        return self.store[name][-1]

    def __contains__(self, name: str) -> bool:
        return name in self.store

    def keys(self) -> list[str]:
        return list(self.store)

    def all(self, name: str) -> list[Tensor]:
        return list(self.store.get(name, []))

    def attention(self, stack: str, layer: int) -> Tensor:
        """Attention probabilities of ``stack`` ("encoder", "decoder", "prior.blocks" or "layers")
        block ``layer``: (B, H, Lq, Lk)."""
        for name in (f"{stack}.blocks.{layer}.attn.hook_attn", f"{stack}.{layer}.attn.hook_attn",
                     f"{stack}.{layer}.attention.hook_attn"):
            if name in self.store:
                return self[name]
        raise KeyError(f"no attention captured for {stack} layer {layer}; captured: {sorted(self.store)}")

    def query_to_patch_attention(self, layer: int) -> Tensor:
        """Encoder attention from each holistic query to each patch, on the patch grid.

        Returns:
            (B, H, N, t, h, w): row n is how query n distributes its attention over the patches
            (the part of its attention that goes to other queries is left out, so rows sum to <= 1).
        """
        if self.layout is None:
            raise ValueError("this cache has no sequence layout (was it made by a tokenizer?)")
        lay = self.layout
        att = self.attention("encoder", layer)[:, :, lay.encoder_queries, lay.encoder_patches]
        B, H, N, _ = att.shape
        return att.reshape(B, H, N, *lay.patch_grid)

    def patch_to_token_attention(self, layer: int) -> Tensor:
        """Decoder attention from each output patch query to each latent token: (B, H, t, h, w, N)."""
        if self.layout is None:
            raise ValueError("this cache has no sequence layout (was it made by a tokenizer?)")
        lay = self.layout
        att = self.attention("decoder", layer)[:, :, lay.decoder_patches, lay.decoder_latents]
        B, H, M, N = att.shape
        return att.reshape(B, H, *lay.decoder_patch_grid, N)


def hook_point_names(model: nn.Module) -> list[str]:
    """Every hook-point name of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, HookPoint)]


@contextlib.contextmanager
def capture(
    model: nn.Module,
    names: NameFilter | list[str] | None = None,
    *,
    detach: bool = True,
    to_cpu: bool = False,
    layout: SequenceLayout | None = None,
) -> Iterator[ActivationCache]:
    """Record what flows through the hook points of ``model`` selected by ``names``.

    Args:
        names: a predicate on hook-point names, a list of exact names, or None for all of them.
        detach: store detached tensors (default) so the cache holds no autograd graph.
        to_cpu: move recorded tensors to the CPU as they are recorded.
    """
    if names is None:
        wanted: NameFilter = lambda n: True
    elif callable(names):
        wanted = names
    else:
        requested = set(names)
        known = set(hook_point_names(model))
        missing = sorted(requested - known)
        if missing:
            raise KeyError(f"unknown hook points {missing}; see hook_point_names(model)")
        wanted = requested.__contains__
    cache = ActivationCache(layout=layout)
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            t = output.detach() if detach else output
            cache.store.setdefault(name, []).append(t.cpu() if to_cpu else t)

        return hook

    try:
        for name, module in model.named_modules():
            if isinstance(module, HookPoint) and wanted(name):
                handles.append(module.register_forward_hook(make_hook(name)))
        yield cache
    finally:
        for h in handles:
            h.remove()
