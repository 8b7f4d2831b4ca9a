"""Building blocks shared by the tokenizer, the prior and the generator.

* fixed sin-cos position tables (1-D, 2-D, 3-D) in the official layout;
* :class:`HookPoint`, an identity module where hooks read or replace activations (TransformerLens
  style); the active hooks live in a context variable, never on the modules;
* :func:`attention`, the one attention kernel of the project: fused SDPA on the normal path, and
  an explicit softmax that hands the probabilities to a hook only while one is active on them;
* the 3-D patch embedding and the ViT block of the tokenizer and the discriminator (pre-LN, qkv
  without bias, exact GELU); RMSNorm and SwiGLU.

State-dict names mirror the official modules (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``) so official checkpoints load without renaming.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_T = TypeVar("_T")

# ================================================================================================
#                                     Fixed sin-cos tables
# ================================================================================================


def sincos_1d(dim: int, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Official 1-D table: all sines first, then all cosines, both by increasing frequency.

    Args:
        dim: even embedding size D.
        positions: (L,) positions (any numeric dtype).
    Returns:
        float64 (L, D): ``out[p, k] = sin(p w_k)``, ``out[p, D/2 + k] = cos(p w_k)``,
        ``w_k = base ** (-k / (D/2))``.
    """
    if dim % 2:
        raise ValueError(f"sin-cos dimension must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / base**omega  # (D/2,)
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)  # (L, D/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """2-D table over an (h, w) grid, flattened row-major (index r*w + c).

    The first half of the channels encodes the column (w) index and the second half the row (h)
    index (the MAE convention the official code follows). Returns float64 (h*w, D).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos dimension must be divisible by 4, got {dim}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # (h*w,)
    cols = torch.arange(grid_w).repeat(grid_h)  # (h*w,)
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int) -> Tensor:
    """3-D table over (t, h, w), flattened as t*h*w + r*w + c; float32 (1, t*h*w, D).

    ``table[t, r, c] = 2d[r, c] + sincos_1d(D, t)``: the temporal part is *added* at full width.
    Computed in float64 and cast once, like the official buffers (bit-identical to them).
    """
    spatial = sincos_2d(dim, grid_h, grid_w)  # (h*w, D)
    temporal = sincos_1d(dim, torch.arange(grid_t))  # (t, D)
    table = temporal[:, None, :] + spatial[None, :, :]  # (t, h*w, D)
    return table.reshape(1, grid_t * grid_h * grid_w, dim).to(torch.float32)


def _overlap(size: int, enc: int, dec: int) -> Tensor:
    """(size/enc, size/dec) float64: the share of encoder patch i (length ``enc``) that decoder patch j
    (length ``dec``) covers along one axis of ``size`` pixels or frames; rows sum to 1."""
    a = torch.arange(size)
    return torch.nn.functional.one_hot(a // enc).double().T @ torch.nn.functional.one_hot(a // dec).double() / enc


def patch_token_pe(decoder_table: Tensor, clip: tuple[int, int, int], patch: tuple[int, int],
                   decoder_patch: tuple[int, int]) -> Tensor:
    """The decoder's table over *patch* tokens (``token_mode="patch"``): each token's entry is the mean of
    the decoder's 3-D table (1, Td*Hd*Wd, D) over the pixels its encoder patch covers, so a token carries
    its place in the decoder's own coordinates (a 1-D table over the token index would leave the decoder
    to learn, from nothing, where each patch lies). ``clip`` is (T, H, W); ``patch`` and
    ``decoder_patch`` are (temporal, spatial) patch sizes that divide it. Returns float32
    (1, Te*He*We, D) in the encoder's raster order (t, h, w)."""
    (T, H, W), (pt, p), (dt, dp) = clip, patch, decoder_patch
    at, ah, aw = _overlap(T, pt, dt), _overlap(H, p, dp), _overlap(W, p, dp)
    D = decoder_table.shape[-1]
    table = decoder_table.double().reshape(T // dt, H // dp, W // dp, D)
    out = torch.einsum("it,jh,kw,thwd->ijkd", at, ah, aw, table)
    return out.reshape(1, -1, D).to(torch.float32)


def sincos_latent(dim: int, num_tokens: int, base: float = 10000.0) -> Tensor:
    """The decoder's 1-D table over token positions; float32 (1, N, D)."""
    return sincos_1d(dim, torch.arange(num_tokens), base=base).to(torch.float32).unsqueeze(0)


# ================================================================================================
#                                 Hook points and attention core
# ================================================================================================

#: A hook function: ``fn(tensor, hook_name)`` returns None (read only) or a replacement tensor of
#: the same shape, dtype and device.
HookFn = Callable[[Tensor, str], "Tensor | None"]
#: The hooks active in one context: for each hook point, its (full name, fn) pairs in call order.
ActiveHooks = Mapping["HookPoint", tuple[tuple[str, HookFn], ...]]


class ScopedValue(Generic[_T]):
    """A value scoped to the current thread / asyncio context, set only inside :meth:`scope`.

    The value lives in a :class:`contextvars.ContextVar`, so a scope opened in one thread or
    request never changes what a concurrent one sees. A process-wide count of open scopes is the
    fast path: while no scope is open anywhere, :meth:`get` is one integer test and returns the
    default (``torch.compile`` traces that as a guarded constant instead of breaking its graph on
    the ContextVar lookup).
    """

    def __init__(self, name: str, default: _T) -> None:
        self._var: ContextVar[_T] = ContextVar(name, default=default)
        self._default = default
        self._open = 0
        self._lock = threading.Lock()

    def get(self) -> _T:
        if not self._open:
            return self._default
        return self._var.get()

    @contextlib.contextmanager
    def scope(self, value: _T) -> Iterator[None]:
        """Within this context (this thread / task only) :meth:`get` returns ``value``."""
        with self._lock:
            self._open += 1
        token = self._var.set(value)
        try:
            yield
        finally:
            self._var.reset(token)
            with self._lock:
                self._open -= 1


_HOOKS: ScopedValue[ActiveHooks | None] = ScopedValue("larp_lab_active_hooks", None)
_PLAIN: ScopedValue[bool] = ScopedValue("larp_lab_plain_attention", False)


def active_hooks() -> ActiveHooks | None:
    """The hooks active in the current context (None when there are none)."""
    return _HOOKS.get()


def use_hooks(hooks: ActiveHooks) -> contextlib.AbstractContextManager[None]:
    """Make ``hooks`` the active hooks of the current context until the returned context exits.

    Low level: :func:`larp_lab.models.capture.hooks` resolves names, merges with the hooks already
    active and calls this.
    """
    return _HOOKS.scope(hooks)


class HookPoint(nn.Module):
    """Identity module: a named place where hooks can read or replace a tensor (TransformerLens style).

    ``name`` is the full module path in the owning model (e.g. ``"encoder.blocks.3.attn.hook_attn"``),
    set by :func:`larp_lab.models.capture.name_hook_points`. Hooks are not attached to the module:
    they live in a context variable (see :func:`use_hooks`), so hooking a model in one thread never
    affects another thread running the same model, and nothing stays behind after the context.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.name = name

    @property
    def active(self) -> bool:
        """True when a hook on this point is active in the current context."""
        hooks = _HOOKS.get()
        return hooks is not None and self in hooks

    def forward(self, x: Tensor) -> Tensor:
        hooks = _HOOKS.get()
        if hooks is None:
            return x
        fns = hooks.get(self)
        if not fns:
            return x
        for name, fn in fns:
            out = fn(x, name)
            if out is None or out is x:
                continue
            if not isinstance(out, Tensor) or out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
                got = (f"{tuple(out.shape)} {out.dtype} on {out.device}" if isinstance(out, Tensor)
                       else type(out).__name__)
                raise ValueError(
                    f"the hook on {name!r} returned {got}; return None or a tensor of shape {tuple(x.shape)}, "
                    f"dtype {x.dtype} on {x.device}"
                )
            x = out
        return x

    def extra_repr(self) -> str:
        return repr(self.name) if self.name else ""


@contextlib.contextmanager
def plain_attention() -> Iterator[None]:
    """Within this context :func:`attention` uses an explicit softmax(q k^T / sqrt(d)) v instead of
    fused SDPA: the reference path that benchmarks compare against. Scoped to the current thread /
    context (a concurrent request on the same model keeps the fused path); restored on exit."""
    with _PLAIN.scope(True):
        yield


def _masked_scores(q: Tensor, k: Tensor, causal: bool, mask: Tensor | None) -> Tensor:
    """q k^T / sqrt(hd) (B, H, Lq, Lk) in the dtype of ``q``, -inf where a key is masked (see :func:`attention`)."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if causal:
        lq, lk = scores.shape[-2:]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def _explicit_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, mask: Tensor | None) -> Tensor:
    return _masked_scores(q, k, causal, mask).softmax(dim=-1) @ v


def attention_probabilities(q: Tensor, k: Tensor, *, causal: bool = False, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(hd)) in float32, masked like :func:`attention`.

    Args:
        q: (B, H, Lr, hd); k: (B, H, Lk, hd); with ``causal`` row i sees keys <= i + Lk - Lr.
        mask: optional boolean (B or 1, 1 or H, Lr, Lk), True = attend.
    Returns:
        float32 (B, H, Lr, Lk), rows summing to 1.
    """
    return _masked_scores(q.float(), k.float(), causal, mask).softmax(dim=-1)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    record: HookPoint | None = None,
    record_q: Tensor | None = None,
) -> Tensor:
    """Scaled dot-product attention with scale 1/sqrt(head_dim), through fused SDPA.

    Args:
        q: (B, H, Lq, hd); k, v: (B, H, Lk, hd).
        causal: causal mask (row i sees keys <= i + Lk - Lq).
        mask: optional boolean (B or 1, 1 or H, Lq, Lk), True = attend.
        record: a hook point for the attention probabilities. Only while a hook on it is active (in
            this context) are they computed explicitly (:func:`attention_probabilities`) and passed
            through it: (B, H, Lr, Lk) with Lr the rows of ``record_q`` (default ``q``; ``q`` must be
            its last Lq rows). If the hooks leave the probabilities as they are (return None or the
            same tensor) the output is the fused result, bit-identical to an unhooked call; if they
            return new probabilities, the output is ``new[..., -Lq:, :] @ v`` (no dropout).
    Returns:
        (B, H, Lq, hd)
    """
    if dropout_p > 0 or not _PLAIN.get():
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
    else:
        out = _explicit_attention(q, k, v, causal, mask)
    if record is not None and record.active:
        qr = q if record_q is None else record_q
        probs = attention_probabilities(qr, k, causal=causal, mask=mask)  # (B, H, Lr, Lk)
        new = record(probs)
        if new is not probs:
            out = new[..., new.shape[-2] - q.shape[-2] :, :].to(v.dtype) @ v  # (B, H, Lq, hd)
    return out


# ================================================================================================
#                                    ViT block (tokenizer)
# ================================================================================================


class PatchEmbed3D(nn.Module):
    """Conv3d with kernel = stride = (pt, p, p) (official ``x_embedder``)."""

    def __init__(self, in_channels: int, hidden: int, pt: int, p: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, hidden, kernel_size=(pt, p, p), stride=(pt, p, p))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, t*h*w, D)"""
        return self.proj(x).flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention; qkv without bias, output projection with bias."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.hook_attn = HookPoint()  # (B, H, L, L) probabilities, only while hooked
        self.hook_head_out = HookPoint()  # (B, H, Lq, hd) per-head outputs before ``proj``

    def forward(self, x: Tensor, num_query_rows: int | None = None) -> Tensor:
        """x: (B, L, D) -> (B, Lq, D); ``num_query_rows`` keeps only the last Lq rows as queries.

        While ``hook_attn`` is hooked it still records the probabilities of *all* L rows.
        """
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q_all, k, v = qkv.unbind(0)  # each (B, H, L, hd)
        q = q_all
        if num_query_rows is not None and num_query_rows < L:
            q = q_all[:, :, L - num_query_rows :]  # (B, H, Lq, hd)
        y = attention(q, k, v, record=self.hook_attn, record_q=q_all)  # (B, H, Lq, hd)
        y = self.hook_head_out(y)  # (B, H, Lq, hd)
        y = y.transpose(1, 2).reshape(B, q.shape[2], D)  # (B, Lq, D)
        return self.proj(y)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.hook_out = HookPoint()  # (B, L, D) residual stream after the block

    def forward(self, x: Tensor, keep_last: int | None = None) -> Tensor:
        """x: (B, L, D) -> (B, L, D), or (B, keep_last, D) holding only the last rows.

        ``keep_last`` is the fast path for a final block whose other rows are thrown away: only those
        rows are used as attention queries and go through the MLP (keys and values still come from
        every row), so the kept rows are the same as in the full computation.
        """
        h = self.attn(self.norm1(x), num_query_rows=keep_last)
        if keep_last is not None and keep_last < x.shape[1]:
            x = x[:, x.shape[1] - keep_last :]
        x = x + h
        x = x + self.mlp(self.norm2(x))
        return self.hook_out(x)


class ViTStack(nn.Module):
    """``depth`` ViT blocks under the official name ``blocks``."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ViTBlock(dim, num_heads, mlp_ratio, eps) for _ in range(depth)])

    def forward(self, x: Tensor, keep_last: int) -> Tensor:
        """x: (B, L, D) -> (B, keep_last, D), the last ``keep_last`` rows after every block.

        The last block computes only the kept rows (its other rows would be thrown away), so its
        ``hook_out`` records (B, keep_last, D); its attention probabilities are still recorded in full.
        """
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, keep_last=keep_last if i == last else None)
        return x[:, x.shape[1] - keep_last :]


# ================================================================================================
#                                   Llama parts (generator)
# ================================================================================================


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps), computed in float32 and cast back, then scaled by ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x) with dropout on the output."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.ffn_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))
