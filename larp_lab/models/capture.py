"""Reading and editing model internals: hooks on named :class:`HookPoint` modules (TransformerLens style).

Every interesting tensor in the models passes through a named :class:`~.layers.HookPoint`
(attention probabilities, per-head attention outputs, block outputs, patch and token embeddings,
encoder/decoder outputs, logits). Two ways in, on any model with :class:`HookedMixin`:

* :meth:`HookedMixin.hooks` / :meth:`HookedMixin.run_with_hooks`: ``fwd_hooks=[(name_or_predicate,
  fn)]`` where ``fn(tensor, hook_name)`` returns None (read only) or a replacement tensor of the
  same shape and dtype (ablate a head, zero a token's embedding, patch an activation);
* :meth:`HookedMixin.capture` / :meth:`HookedMixin.run_with_cache`: record what flows through the
  selected hook points in an :class:`ActivationCache`.

Nothing is attached to the modules: the active hooks live in a context variable (per thread and
asyncio task), are keyed by hook-point object (two models never share hooks) and are gone when the
context exits, also on error. A model run with no hook active anywhere pays one integer test per
hook point and takes the fused attention path. Attention probabilities are only materialised
while a hook on them is active; reading them never changes the outputs (see
:func:`~.layers.attention`).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .layers import HookFn, HookPoint, active_hooks, use_hooks

NameFilter = Callable[[str], bool]


@dataclass(frozen=True)
class SequenceLayout:
    """Where patches and tokens sit in the tokenizer's two transformer sequences.

    Encoder sequence: ``[patches (P) ; queries (N)]``, or ``[patches (P = N)]`` for patch tokens
    (``tokens_are_patches``: the token rows are the patch rows). Decoder sequence: ``[latent tokens (N) ;
    patch queries (M)]``. Patch p of a (t, h, w) grid is row ``t_i*h*w + h_i*w + w_i``.
    """

    num_patches: int
    num_tokens: int
    num_decoder_patches: int
    patch_grid: tuple[int, int, int]
    decoder_patch_grid: tuple[int, int, int]
    tokens_are_patches: bool = False

    @property
    def encoder_patches(self) -> slice:
        return slice(0, self.num_patches)

    @property
    def encoder_queries(self) -> slice:
        if self.tokens_are_patches:
            return slice(0, self.num_tokens)
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


# ================================================================================================
#                                    Naming and resolving hooks
# ================================================================================================


class UnknownHookPointError(KeyError, ValueError):
    """A hook-point name the model does not have (a ValueError, and a KeyError for older callers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of ``model`` by full name (module path), in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def hook_point_names(model: nn.Module) -> list[str]:
    """Every hook-point name of ``model``."""
    return list(hook_points(model))


def name_hook_points(model: nn.Module) -> None:
    """Set each hook point's ``name`` to its full module path in ``model`` (done by the models at init)."""
    for name, hp in hook_points(model).items():
        hp.name = name


def _unknown(model_name: str, missing: list[str], known: list[str]) -> UnknownHookPointError:
    close = sorted({c for m in missing for c in difflib.get_close_matches(m, known, n=4, cutoff=0.6)})
    hint = f"close names: {', '.join(close)}" if close else f"{len(known)} hook points, e.g. {', '.join(known[:4])}"
    return UnknownHookPointError(
        f"unknown hook points {missing} on {model_name}; {hint} (list them with hook_point_names(model))"
    )


def resolve_hooks(model: nn.Module, fwd_hooks: Iterable[tuple[str | NameFilter, HookFn]]) -> dict[HookPoint, list]:
    """``[(name_or_predicate, fn)]`` -> {hook point: [(full name, fn), ...]} for ``model``.

    A name must be a hook point of ``model`` (else :class:`UnknownHookPointError`, a ValueError
    listing close names); a predicate selects every hook point whose name it accepts.
    """
    points = hook_points(model)
    out: dict[HookPoint, list] = {}
    for item in fwd_hooks:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"fwd_hooks holds (name_or_predicate, fn) pairs; got {item!r}")
        spec, fn = item
        if not callable(fn):
            raise TypeError(f"the hook for {spec!r} is not callable: {fn!r}")
        if isinstance(spec, str):
            if spec not in points:
                raise _unknown(type(model).__name__, [spec], list(points))
            names = [spec]
        elif callable(spec):
            names = [n for n in points if spec(n)]
        else:
            raise TypeError(f"a hook is selected by a name or a predicate on names; got {spec!r}")
        for n in names:
            out.setdefault(points[n], []).append((n, fn))
    return out


@contextlib.contextmanager
def hooks(model: nn.Module, fwd_hooks: Iterable[tuple[str | NameFilter, HookFn]] = ()) -> Iterator[None]:
    """Activate ``fwd_hooks`` on ``model`` in the current thread / context until the block exits.

    ``fn(tensor, hook_name)`` returns None (read only) or a replacement tensor of the same shape,
    dtype and device. Hooks already active (an enclosing context) keep running, before these.
    """
    resolved = resolve_hooks(model, fwd_hooks)
    merged = dict(active_hooks() or {})
    for hp, fns in resolved.items():
        merged[hp] = tuple(merged.get(hp, ())) + tuple(fns)
    with use_hooks(merged):
        yield


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
    cache = ActivationCache(layout=layout)

    def record(t: Tensor, name: str) -> None:
        t = t.detach() if detach else t
        cache.store.setdefault(name, []).append(t.cpu() if to_cpu else t)

    if names is None or callable(names):
        spec: list = [(names or (lambda n: True), record)]
    else:
        names = list(names)
        known = hook_points(model)
        missing = [n for n in names if n not in known]
        if missing:
            raise _unknown(type(model).__name__, missing, list(known))
        spec = [(n, record) for n in dict.fromkeys(names)]
    with hooks(model, spec):
        yield cache


# ================================================================================================
#                                          The mixin
# ================================================================================================


class HookedMixin:
    """Hook and capture API for an ``nn.Module`` with :class:`HookPoint` submodules.

    Subclasses call :func:`name_hook_points` at the end of ``__init__`` and may override
    :meth:`_hooked_run` (what :meth:`run_with_hooks` and :meth:`run_with_cache` run; default
    ``self(*args, **kwargs)``).
    """

    def hook_point_names(self) -> list[str]:
        """Every hook-point name of this model."""
        return hook_point_names(self)

    def hooks(self, fwd_hooks: Iterable[tuple[str | NameFilter, HookFn]] = ()) -> contextlib.AbstractContextManager[None]:
        """Context manager activating ``fwd_hooks`` (``[(name_or_predicate, fn)]``) in the current
        thread / context; ``fn(tensor, hook_name)`` returns None or a same-shape replacement.

        Example: zero token 3's embedding at the tokenizer's decoder input::

            def zero3(x, name):  # x: (B, N, D)
                x = x.clone(); x[:, 3] = 0; return x

            with tok.hooks([("hook_decoder_in", zero3)]):
                clip = tok.decode_indices(ids)
        """
        return hooks(self, fwd_hooks)

    def run_with_hooks(self, *args: Any, fwd_hooks: Iterable[tuple[str | NameFilter, HookFn]] = (), **kwargs: Any):
        """Run the model (:meth:`_hooked_run`) with ``fwd_hooks`` active; the hooks are gone afterwards."""
        with hooks(self, fwd_hooks):
            return self._hooked_run(*args, **kwargs)

    def capture(
        self,
        names: NameFilter | list[str] | None = None,
        *,
        attention: bool = True,
        activations: bool = True,
        to_cpu: bool = False,
        detach: bool = True,
    ) -> contextlib.AbstractContextManager[ActivationCache]:
        """Context manager recording hook points while it is open (this thread / context only).

        ``attention`` selects the attention probabilities of every block (``*.hook_attn``);
        ``activations`` every other hook point; ``names`` (a predicate or a list of names)
        overrides both.
        """
        return capture(self, hook_filter(names, attention, activations), detach=detach, to_cpu=to_cpu)

    @torch.no_grad()
    def run_with_cache(
        self,
        *args: Any,
        names: NameFilter | list[str] | None = None,
        attention: bool = True,
        activations: bool = True,
        to_cpu: bool = False,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run the model (:meth:`_hooked_run`, without gradients) while recording: (output, cache)."""
        with self.capture(names, attention=attention, activations=activations, to_cpu=to_cpu) as cache:
            out = self._hooked_run(*args, **kwargs)
        return out, cache

    def _hooked_run(self, *args: Any, **kwargs: Any) -> Any:
        return self(*args, **kwargs)  # type: ignore[operator]


def hook_filter(
    names: NameFilter | list[str] | None, attention: bool = True, activations: bool = True
) -> NameFilter | list[str]:
    """``names`` when given; else a predicate taking attention probabilities (``*hook_attn``) when
    ``attention`` and every other hook point when ``activations``."""
    if names is not None:
        return names

    def wanted(n: str) -> bool:
        return attention if n.endswith("hook_attn") else activations

    return wanted
