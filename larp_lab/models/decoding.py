"""Fast autoregressive decoding for :class:`~larp_lab.models.generator.LARPGenerator`.

Three parts, each exact (bit-identical logits and ids) against the module path of the generator:

* :class:`KVCache`: one static buffer per layer, (B, L_max, 2, H_kv, hd), written in place. A decode
  step writes the new key *and* value of all heads with one copy (they sit next to each other in the
  output of ``wqkv``); attention reads strided views (B, H_kv, :end, hd) of the same memory.
* :class:`FastDecoder`: one new token per row through every layer on 2-D (rows, D) activations,
  calling the kernels directly on the weights: no module calls, no hook points, no dropout, no
  (B, 1, D) reshapes (each of which costs a dispatch on a CPU). Used only while no hook and no
  :func:`~larp_lab.models.layers.plain_attention` is active, in ``eval()``.
* :class:`TokenPicker`: CFG mix, temperature, top-k / top-p and the draw. The draw is what
  ``torch.multinomial(probs, 1)`` computes (``argmax(probs / q)``, ``q ~ Exp(1)`` drawn by
  ``exponential_`` on a (B, V) tensor, the same generator calls) without its input checks, which are
  two host synchronisations per call on a GPU.

:meth:`FastDecoder.step_static` is the static-shape variant (position as a tensor, the whole cache
attended under a mask): the same shapes at every step, which is what ``torch.compile`` and CUDA
graphs need. Its logits agree with the exact step to float tolerance, not bit for bit (a masked
attention over L_max keys sums in another order), so it is used only when asked
(``sample(..., compiled=True)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import _PLAIN, ScopedValue, active_hooks

_MODULE_DECODING: ScopedValue[bool] = ScopedValue("larp_lab_module_decoding", False)

# ================================================================================================
#                                         KV cache
# ================================================================================================


class KVCache:
    """Static per-layer key/value memory, filled left to right; not a module, never in a state dict.

    ``buf``: (n_layer, B, L_max, 2, H_kv, hd), one allocation. Per layer ``kv[i]`` (B, L_max,
    2*H_kv*hd) is what a decode step writes (its ``[k | v]`` row), ``k[i]`` and ``v[i]`` (B, H_kv,
    L_max, hd) are strided views of the same memory that attention reads.
    """

    def __init__(self, n_layer: int, batch: int, n_kv: int, max_len: int, head_dim: int, device, dtype) -> None:
        self.buf = torch.zeros(n_layer, batch, max_len, 2, n_kv, head_dim, device=device, dtype=dtype)
        self.max_len = max_len
        self.n_layer = n_layer
        self.width = 2 * n_kv * head_dim
        self._views(batch)

    def _views(self, batch: int) -> None:
        buf = self.buf[:, :batch]
        self.batch = batch
        self.kv = [buf[i].view(batch, self.max_len, self.width) for i in range(self.n_layer)]  # (B, L_max, 2*H_kv*hd)
        self.k = [buf[i, :, :, 0].transpose(1, 2) for i in range(self.n_layer)]  # (B, H_kv, L_max, hd)
        self.v = [buf[i, :, :, 1].transpose(1, 2) for i in range(self.n_layer)]

    def update(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H_kv, L, hd) at positions [start, start+L); return the filled prefix."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: position {end} > {self.max_len}")
        B = k.shape[0]
        self.k[layer][:B, :, start:end] = k
        self.v[layer][:B, :, start:end] = v
        return self.k[layer][:B, :, :end], self.v[layer][:B, :, :end]

    def shrink(self, batch: int) -> None:
        """Keep only the first ``batch`` rows (e.g. drop the null half when CFG stops)."""
        self._views(batch)


# ================================================================================================
#                                        Decode step
# ================================================================================================


@dataclass
class LayerWeights:
    """The tensors of one Llama block, as the decode step reads them."""

    attn_norm: Tensor  #: (D,)
    wqkv: Tensor  #: (D, (H + 2 H_kv) hd): ``wqkv.weight.t()``, a view; ``x @ w.t()`` is what F.linear runs
    wo: Tensor  #: (D, D), transposed likewise
    ffn_norm: Tensor  #: (D,)
    w1: Tensor  #: (D, F)
    w3: Tensor  #: (D, F)
    w2: Tensor  #: (F, D)

    @classmethod
    def of(cls, block) -> LayerWeights:
        """The weights of a :class:`~larp_lab.models.generator.TransformerBlock` (views, no copies)."""
        a, f = block.attention, block.feed_forward
        return cls(block.attention_norm.weight, a.wqkv.weight.t(), a.wo.weight.t(), block.ffn_norm.weight,
                   f.w1.weight.t(), f.w3.weight.t(), f.w2.weight.t())


def fast_path_available(model) -> bool:
    """True when :class:`FastDecoder` computes what the modules would: eval mode, no hook and no
    explicit-softmax attention active in this context (and no :func:`module_decoding`)."""
    return not model.training and active_hooks() is None and not _PLAIN.get() and not _MODULE_DECODING.get()


@contextlib.contextmanager
def module_decoding() -> Iterator[None]:
    """Within this context (this thread only) sampling runs as before :class:`FastDecoder` existed:
    decode steps through the modules, tokens drawn by ``torch.multinomial``; the reference that tests
    and the step profile compare with."""
    with _MODULE_DECODING.scope(True):
        yield


class FastDecoder:
    """Decode steps of a :class:`~larp_lab.models.generator.LARPGenerator` over a :class:`KVCache`.

    ``step(tokens, position)``: tokens int64 (R,) at sequence position ``position`` -> float32
    logits (R, V), bit-identical to ``gen.decode_step(tokens[:, None], position, cache)[:, -1]``.
    R is the cache's current batch (2B while CFG runs both halves).
    """

    def __init__(self, gen, cache: KVCache) -> None:
        c = gen.config
        self.cache = cache
        self.n_head, self.n_kv, self.hd = c.n_head, c.kv_heads, c.head_dim
        self.q_width = c.n_head * c.head_dim
        self.eps = c.norm_eps
        self.embed = gen.tok_embeddings.weight  # (V [+1], D)
        self.pe = gen.abs_pe[0]  # (pe_len, D)
        self.norm = gen.norm.weight
        self.head = gen.output.weight.t()  # (D, V)
        self.layers = [LayerWeights.of(b) for b in gen.layers]
        # F.rms_norm is the same arithmetic as RMSNorm (pow, mean, add, rsqrt, mul, mul) on the CPU, in
        # one dispatch; other devices may fuse it differently, so they keep the explicit formula
        self._fused_norm = self.head.device.type == "cpu"
        self._mask_positions: Tensor | None = None  # (L_max,) for step_static

    def _rms(self, x: Tensor, weight: Tensor) -> Tensor:
        """RMSNorm of (R, D) exactly as :class:`~larp_lab.models.layers.RMSNorm` computes it."""
        if self._fused_norm and x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * weight

    def _block(self, x: Tensor, w: LayerWeights, layer: int, attend: Callable[[Tensor, int, Tensor], Tensor]) -> Tensor:
        """One block on (R, D): x + attn(norm(x)), then + SwiGLU(norm(.)). ``attend`` writes the cache
        and returns the attention output (R, H, 1, hd) for the queries (R, H, 1, hd).

        ``a @ w.t()`` is the very matmul ``F.linear(a, w)`` dispatches to (no bias), minus two layers of
        dispatch: the same bits. The residual adds, SiLU and the gate product run in place on tensors
        this step made (``x`` included: the embedding sum or the previous block's output), the same
        arithmetic with fewer allocations."""
        R = x.shape[0]
        qkv = self._rms(x, w.attn_norm) @ w.wqkv  # (R, (H + 2 H_kv) hd)
        q = qkv[:, : self.q_width].view(R, self.n_head, 1, self.hd)  # (R, H, 1, hd)
        y = attend(qkv, layer, q)  # (R, H, 1, hd)
        h = x.add_(y.reshape(R, self.q_width) @ w.wo)  # (R, D)
        m = self._rms(h, w.ffn_norm)
        return h.add_(F.silu(m @ w.w1, inplace=True).mul_(m @ w.w3) @ w.w2)

    def _logits(self, h: Tensor) -> Tensor:
        return (self._rms(h, self.norm) @ self.head).float()  # (R, V)

    def _repeat_kv(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.n_kv != self.n_head:  # grouped KV heads, as the module path expands them
            rep = self.n_head // self.n_kv
            return k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return k, v

    def step(self, tokens: Tensor, position: int) -> Tensor:
        """tokens int64 (R,) at ``position`` -> logits float32 (R, V); writes the cache at ``position``."""
        cache, end = self.cache, position + 1
        if end > cache.max_len:
            raise ValueError(f"KV cache overflow: position {end} > {cache.max_len}")

        def attend(qkv: Tensor, layer: int, q: Tensor) -> Tensor:
            cache.kv[layer].select(1, position).copy_(qkv[:, self.q_width :])  # [k | v] of every head
            k, v = self._repeat_kv(cache.k[layer].narrow(2, 0, end), cache.v[layer].narrow(2, 0, end))  # (R, H, end, hd)
            return F.scaled_dot_product_attention(q, k, v)

        h = F.embedding(tokens, self.embed) + self.pe[position]  # (R, D)
        for i, w in enumerate(self.layers):
            h = self._block(h, w, i, attend)
        return self._logits(h)

    def step_static(self, tokens: Tensor, position: Tensor) -> Tensor:
        """Static-shape step for ``torch.compile`` / CUDA graphs: ``position`` is an int64 (1,)
        tensor, the cache is written with ``index_copy_`` and all L_max keys are attended under a
        mask (keys after ``position`` excluded). Logits (R, V) agree with :meth:`step` to float
        tolerance (another summation order over the keys)."""
        cache = self.cache
        if self._mask_positions is None:
            self._mask_positions = torch.arange(cache.max_len, device=tokens.device)
        mask = (self._mask_positions <= position).view(1, 1, 1, -1)  # (1, 1, 1, L_max)

        def attend(qkv: Tensor, layer: int, q: Tensor) -> Tensor:
            cache.kv[layer].index_copy_(1, position, qkv[:, None, self.q_width :])
            k, v = self._repeat_kv(cache.k[layer], cache.v[layer])  # (R, H, L_max, hd)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        h = F.embedding(tokens, self.embed) + self.pe.index_select(0, position)  # (R, D)
        for i, w in enumerate(self.layers):
            h = self._block(h, w, i, attend)
        return self._logits(h)


# ================================================================================================
#                                         Token picking
# ================================================================================================


def draw_one(probs: Tensor, generator: torch.Generator | None, noise: Tensor | None = None) -> Tensor:
    """One index per row of (B, V) probabilities -> int64 (B, 1), the same draw as
    ``torch.multinomial(probs, 1, generator=generator)``: ``argmax(probs / q)`` with ``q ~ Exp(1)``
    from one ``exponential_`` call on a (B, V) tensor (torch's own algorithm for one sample). Unlike
    multinomial it does not check ``probs`` (those checks are host synchronisations); ``noise`` is an
    optional (B, V) buffer to reuse."""
    q = torch.empty_like(probs) if noise is None else noise
    q.exponential_(1, generator=generator)
    return torch.div(probs, q, out=q).argmax(dim=-1, keepdim=True)


class TokenPicker:
    """Last-position logits (R, V) -> tokens (B, 1): CFG mix, greedy or temperature, top-k / top-p,
    draw. The same arithmetic as ``LARPGenerator._pick`` followed by ``sample_from_logits``, so the
    same ids for the same generator state."""

    def __init__(self, batch: int, opts, generator: torch.Generator | None) -> None:
        self.batch = batch
        self.opts = opts
        self.generator = generator
        self._noise: Tensor | None = None
        from .generator import top_k_top_p_filter  # (generator.py imports this module)

        self._filter = top_k_top_p_filter

    def __call__(self, logits: Tensor, cfg_on: bool) -> Tensor:
        o, B = self.opts, self.batch
        if cfg_on:
            cond_l, uncond_l = logits[:B], logits[B:]
            logits = uncond_l + (cond_l - uncond_l) * o.cfg_scale
        elif logits.shape[0] != B:
            logits = logits[:B]
        if o.greedy:
            return logits.argmax(dim=-1, keepdim=True)
        if o.temperature != 1.0:  # x / 1.0 == x exactly: skipping the division changes nothing
            logits = logits / max(o.temperature, 1e-5)
        if o.top_k > 0 or o.top_p < 1.0:
            logits = self._filter(logits, o.top_k, o.top_p)
        probs = F.softmax(logits.float(), dim=-1)
        if self._noise is None or self._noise.shape != probs.shape or self._noise.dtype != probs.dtype:
            self._noise = torch.empty_like(probs)
        return draw_one(probs, self.generator, self._noise)


# ================================================================================================
#                                     torch.compile (opt-in)
# ================================================================================================


def _static_step(decoder: FastDecoder, tokens: Tensor, position: Tensor) -> Tensor:
    return decoder.step_static(tokens, position)


_COMPILED: dict[str, Callable[[FastDecoder, Tensor, Tensor], Tensor]] = {}


def compiled_static_step(mode: str | None = None) -> Callable[[FastDecoder, Tensor, Tensor], Tensor]:
    """``torch.compile`` of :meth:`FastDecoder.step_static`, built once per process (and ``mode``):
    later calls with the same shapes (model size, rows, L_max) reuse the compiled code, whatever
    cache or weights they pass. The first call per shape compiles (tens of seconds on a CPU)."""
    key = mode or "default"
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_static_step, dynamic=False, mode=mode)
    return _COMPILED[key]
