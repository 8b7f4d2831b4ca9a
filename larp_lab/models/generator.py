"""LARPGenerator: the Llama-style second-stage AR model over LARP tokens.

Architecture (official ``LARP_AR`` with llama-abs sizes): RMSNorm, SwiGLU, causal attention with
fused qkv (optional grouped KV heads), *learned absolute* positions (no RoPE), untied output head.

Two modes:

* **class-conditional**: the sequence is ``[class embedding ; z_0 .. z_{N-2}]``; label
  ``num_classes`` is the null class used for classifier-free guidance (and dropped-out labels in
  training). Negative labels also mean "null" (official behaviour, section 4 item 10).
* **frame prediction** (``frame_prediction=True``): the condition is the tokenizer's N tokens of
  the conditioning clip (first frames, last one repeated to the full length) followed by a
  separator token (id ``vocab_size``), i.e. ``cls_token_num = N + 1`` positions; the generated N
  tokens describe the whole clip, conditioning frames included.

Decisions (official_layout.md section 4):

* :meth:`LARPGenerator.forward` returns, for a token sequence (B, L), the logits of *each* of its
  L tokens given the condition and the tokens before it: (B, L, V). Pass the full sequence; its
  last token is not fed. (The official call takes ``z[:, :-1]`` and gives the same logits.)
* CFG follows the official formula ``uncond + (cond - uncond) * scale`` on raw logits, before
  temperature and top-k/top-p, applied at the prefill and at every decode step until
  ``cfg_interval`` (counted from 0 over decode steps; -1 = always). The official code switches CFG
  on only for scale > 1; here any scale != 1 uses it (scale 0 = unconditional), identical for >= 1.
* Sampled tokens are returned as int64 (the official ``generate`` returns int32); the tokenizer
  decodes both.
* Sampling uses a preallocated KV cache of length ``cls_token_num + N`` (no rounding to 8 is
  needed since attention reads only the filled part), one batched forward for the cond and null
  halves, and no host synchronisation per step. Decode steps run through
  :class:`~larp_lab.models.decoding.FastDecoder` (the same kernels on the weights, no module calls)
  and :class:`~larp_lab.models.decoding.TokenPicker` (``torch.multinomial``'s own draw without its
  host-synchronising checks): bit-identical logits and ids to the module path, which still runs
  while hooks or :func:`~larp_lab.models.layers.plain_attention` are active.
"""

from __future__ import annotations

import contextlib
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import PretrainedMixin
from ..config import GeneratorConfig
from ..official import GENERATOR_FORMAT
from .capture import HookedMixin, name_hook_points
from .decoding import FastDecoder, KVCache, TokenPicker, compiled_static_step, fast_path_available
from .layers import HookPoint, RMSNorm, SwiGLU, attention, sincos_1d


def check_tokenizer_fit(config: GeneratorConfig, tok_config) -> None:
    """Raise ValueError (one line with both sets of sizes) unless a generator of ``config`` models
    the token sequences of a tokenizer of ``tok_config`` (a :class:`~larp_lab.config.TokenizerConfig`):
    ``num_tokens`` equal, ``vocab_size`` equal to ``codebook_size`` and, for frame prediction,
    ``cls_token_num`` equal to the tokenizer's ``num_tokens + 1`` (its tokens plus the separator)."""
    n, k = tok_config.num_tokens, tok_config.codebook_size
    fits = config.num_tokens == n and config.vocab_size == k
    if config.frame_prediction:
        fits = fits and config.cls_token_num == n + 1
    if not fits:
        cond = f", {config.cls_token_num} condition positions" if config.frame_prediction else ""
        need = f", {n + 1} condition positions" if config.frame_prediction else ""
        raise ValueError(
            f"generator ({config.num_tokens} tokens over {config.vocab_size} codes{cond}) does not match the "
            f"tokenizer ({n} tokens over {k} codes{need})"
        )


# ================================================================================================
#                                         KV cache
# ================================================================================================


# KVCache (static per-layer buffers written in place) lives in decoding.py with the fast decode step.


# ================================================================================================
#                                        Llama layers
# ================================================================================================


class CausalAttention(nn.Module):
    """Fused ``wqkv`` (no bias) -> causal attention -> ``wo`` (no bias), with optional GQA."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        total = (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, total, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)
        self.hook_attn = HookPoint()  # (B, H, L, L_ctx) probabilities, only while hooked
        self.hook_head_out = HookPoint()  # (B, H, L, hd) per-head outputs before ``wo``

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> Tensor:
        """x: (B, L, D) -> (B, L, D). With a cache, x holds positions [start, start + L)."""
        B, L, _ = x.shape
        hd = self.head_dim
        q, k, v = self.wqkv(x).split([self.n_head * hd, self.n_kv * hd, self.n_kv * hd], dim=-1)
        q = q.view(B, L, self.n_head, hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, self.n_kv, hd).transpose(1, 2)  # (B, H_kv, L, hd)
        v = v.view(B, L, self.n_kv, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, start, k, v)  # (B, H_kv, start + L, hd)
        if self.n_kv != self.n_head:
            rep = self.n_head // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        p = self.attn_dropout_p if self.training else 0.0
        Lk = k.shape[2]
        if L == Lk:
            y = attention(q, k, v, causal=True, dropout_p=p, record=self.hook_attn)
        elif L == 1:  # one new token attends to everything before it
            y = attention(q, k, v, dropout_p=p, record=self.hook_attn)
        else:  # a block of new tokens after a cached prefix
            mask = torch.ones(L, Lk, dtype=torch.bool, device=x.device).tril(diagonal=Lk - L)
            y = attention(q, k, v, mask=mask, dropout_p=p, record=self.hook_attn)
        y = self.hook_head_out(y)  # (B, H, L, hd)
        y = y.transpose(1, 2).reshape(B, L, self.n_head * hd)  # (B, L, H*hd)
        return self.resid_dropout(self.wo(y))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.attention = CausalAttention(cfg)
        self.feed_forward = SwiGLU(cfg.dim, cfg.ffn_hidden, cfg.ffn_dropout_p)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.hook_out = HookPoint()  # (B, L, D) residual stream after the block

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> Tensor:
        """x: (B, L, D) at positions [start, start + L) -> (B, L, D)."""
        h = x + self.attention(self.attention_norm(x), cache, layer, start)
        return self.hook_out(h + self.feed_forward(self.ffn_norm(h)))


class LabelEmbedder(nn.Module):
    """Class embeddings with an extra null row when label dropout is used (official layout)."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: Tensor) -> Tensor:
        """labels (B,) -> (B, 1, D). Negative labels and, in training, a random fraction -> null."""
        null = self.num_classes
        labels = torch.where(labels < 0, torch.full_like(labels, null), labels)
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, null), labels)
        return self.embedding_table(labels).unsqueeze(1)


# ================================================================================================
#                                         Sampling helpers
# ================================================================================================


def top_k_top_p_filter(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Official filtering on (B, V) logits; removed entries become -inf (returns a new tensor).

    top-k keeps every logit >= the k-th largest (ties survive); top-p keeps the smallest prefix of
    the sorted distribution whose mass exceeds ``top_p`` (the crossing token and the top-1 are
    always kept).
    """
    logits = logits.clone()
    V = logits.shape[-1]
    if top_k > 0:
        k = min(max(int(top_k), 1), V)
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def sample_from_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row of (B, V) logits -> int64 (B, 1)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = top_k_top_p_filter(logits, top_k, top_p)
    probs = F.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


# ================================================================================================
#                                          Generator
# ================================================================================================


@dataclass
class SamplingOptions:
    cfg_scale: float = 1.0
    cfg_interval: int = -1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False


class LARPGenerator(HookedMixin, PretrainedMixin, nn.Module):
    """Class-conditional or frame-prediction AR generator over N tokens from a K-code vocabulary.

    * ``gen(tokens, cond)`` -> teacher-forced logits (B, L, V) for tokens (B, L);
    * :meth:`sample` -> int64 (B, N) tokens (KV cache; CFG, temperature, top-k, top-p, greedy);
    * :meth:`token_log_likelihood` -> (B, L) log p(token_i | cond, tokens_<i);
    * :meth:`check_tokenizer`, :meth:`class_index`;
    * internals (:class:`~larp_lab.models.capture.HookedMixin`): ``run_with_cache(tokens, cond)``
      -> (logits, cache) with ``layers.{i}.attention.hook_attn`` (B, H, L, L), and
      :meth:`hooks` / :meth:`run_with_hooks` on ``hook_embed`` (B, L, D),
      ``layers.{i}.attention.hook_head_out`` (B, H, L, hd), ``layers.{i}.hook_out`` (B, L, D) and
      ``hook_logits`` (B, L, V); hooks also act inside :meth:`sample` (once per decode step).
    """

    def __init__(self, config: GeneratorConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            pe = torch.randn(1, c.pe_len, c.dim) * c.initializer_range
            if c.use_fixed_pe:
                self.register_buffer("abs_pe", pe)
            else:
                self.abs_pe = nn.Parameter(pe)
            self.cls_embedding = (
                None if c.frame_prediction else LabelEmbedder(c.num_classes, c.dim, c.class_dropout_prob)
            )
            self.tok_embeddings = nn.Embedding(c.vocab_size + int(c.frame_prediction), c.dim)
            self.tok_dropout = nn.Dropout(c.token_dropout_p)
            self.layers = nn.ModuleList([TransformerBlock(c) for _ in range(c.n_layer)])
            self.norm = RMSNorm(c.dim, c.norm_eps)
            self.output = nn.Linear(c.dim, c.vocab_size, bias=False)
            self.hook_embed = HookPoint()  # (B, L, D) input embeddings [condition ; tokens], before positions
            self.hook_logits = HookPoint()  # (B, L, V) float32 logits
            self._init_weights()
            self.reset_fixed_tables()
        name_hook_points(self)

    def _init_weights(self) -> None:
        """Official init: normal(0, initializer_range) for Linear and Embedding, zero output head."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.output.weight)

    @torch.no_grad()
    def reset_fixed_tables(self) -> None:
        """Fill the fixed sin-cos position table when ``use_fixed_pe`` (no-op otherwise)."""
        if self.config.use_fixed_pe and self.abs_pe.device.type != "meta":
            self.abs_pe.copy_(sincos_1d(self.config.dim, torch.arange(self.config.pe_len)).float().unsqueeze(0))

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    # -------------------------------------------------------------------------------------------
    # fitting a tokenizer, naming classes
    # -------------------------------------------------------------------------------------------
    def check_tokenizer(self, tok) -> None:
        """Raise ValueError (one line naming both sets of sizes) unless this generator models the
        token sequences of ``tok`` (a :class:`~larp_lab.models.tokenizer.LARPTokenizer`): the same
        N tokens over its K codes, and for frame prediction N + 1 condition positions."""
        check_tokenizer_fit(self.config, tok.config)

    def class_index(self, name_or_id: str | int) -> int:
        """A class id in [0, num_classes) from a name in ``config.class_names`` or a number (an int
        or a numeric string such as ``"3"``). Raises ValueError listing the valid names otherwise."""
        c = self.config
        if c.frame_prediction:
            raise ValueError("this is a frame-prediction generator: it is conditioned on clip tokens, not on a class")
        names = list(c.class_names or ())
        if isinstance(name_or_id, bool) or not isinstance(name_or_id, (str, int)):
            try:
                k = operator.index(name_or_id)  # numpy / torch integers
            except TypeError:
                raise ValueError(f"a class is a name or an integer id; got {type(name_or_id).__name__}") from None
        elif isinstance(name_or_id, int):
            k = name_or_id
        elif name_or_id.strip().lstrip("+-").isdigit():
            k = int(name_or_id.strip())
        elif name_or_id in names:
            k = names.index(name_or_id)
        else:
            folded = [i for i, n in enumerate(names) if n.casefold() == name_or_id.strip().casefold()]
            if len(folded) != 1:
                known = (f"; choose one of: {', '.join(names)}" if names
                         else f" (this generator has no class names; use a number in [0, {c.num_classes}))")
                raise ValueError(f"unknown class {name_or_id!r}{known}")
            k = folded[0]
        if not 0 <= k < c.num_classes:
            raise ValueError(f"class id {k} is outside [0, {c.num_classes})")
        return int(k)

    # -------------------------------------------------------------------------------------------
    # conditioning
    # -------------------------------------------------------------------------------------------
    def prepare_condition(self, cond: Tensor | list | int) -> Tensor:
        """Validate and normalise a condition.

        Class-conditional: labels (B,) ints in [0, num_classes], negative = null. Frame prediction:
        conditioning tokens (B, N) (the separator is appended) or (B, N + 1) ending with it.
        """
        c = self.config
        cond = torch.as_tensor(cond, device=self.device)
        if cond.is_floating_point():
            raise TypeError("the condition must hold integers (class labels or token ids)")
        cond = cond.long()
        if not c.frame_prediction:
            cond = cond.reshape(-1)
            if cond.numel() and int(cond.max()) > c.num_classes:
                raise ValueError(f"class labels must be < {c.num_classes} (or {c.num_classes} = null); got {int(cond.max())}")
            return cond
        if cond.ndim != 2:
            raise ValueError(f"frame prediction needs conditioning tokens of shape (B, {c.num_tokens}); got {tuple(cond.shape)}")
        if cond.shape[1] == c.num_tokens:
            sep = torch.full((cond.shape[0], 1), c.separator_token, dtype=torch.long, device=cond.device)
            cond = torch.cat([cond, sep], dim=1)
        if cond.shape[1] != c.cls_token_num:
            raise ValueError(
                f"frame prediction needs (B, {c.num_tokens}) conditioning tokens (or {c.cls_token_num} with the "
                f"separator); got {tuple(cond.shape)}"
            )
        if int(cond[:, :-1].min()) < 0 or int(cond[:, :-1].max()) >= c.vocab_size:
            raise ValueError(f"conditioning tokens must lie in [0, {c.vocab_size})")
        return cond

    def null_condition(self, batch: int) -> Tensor:
        return torch.full((batch,), self.config.num_classes, dtype=torch.long, device=self.device)

    def _embed_condition(self, cond: Tensor) -> Tensor:
        """(B,) labels or (B, cls_token_num) tokens -> (B, cls_token_num, D)."""
        if self.config.frame_prediction:
            return self.tok_embeddings(cond)
        return self.cls_embedding(cond)[:, : self.config.cls_token_num]

    # -------------------------------------------------------------------------------------------
    # the transformer
    # -------------------------------------------------------------------------------------------
    def _run(self, h: Tensor, start: int, cache: KVCache | None) -> Tensor:
        """Embedded inputs (B, L, D) at positions [start, start + L) -> logits (B, L, V)."""
        h = self.tok_dropout(self.hook_embed(h)) + self.abs_pe[:, start : start + h.shape[1]]
        for i, layer in enumerate(self.layers):
            h = layer(h, cache, i, start)
        return self.hook_logits(self.output(self.norm(h)).float())

    def forward(self, tokens: Tensor, cond: Tensor) -> Tensor:
        """Teacher-forced logits.

        Args:
            tokens: int (B, L), 1 <= L <= N: a (prefix of a) token sequence.
            cond: labels (B,) or frame-prediction tokens (B, N[+1]).
        Returns:
            float32 (B, L, V): row i is the distribution of ``tokens[:, i]`` given ``cond`` and
            ``tokens[:, :i]`` (the last token is never fed).
        """
        c = self.config
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= c.num_tokens:
            raise ValueError(f"tokens must have shape (B, L) with 1 <= L <= {c.num_tokens}; got {tuple(tokens.shape)}")
        cond = self.prepare_condition(cond)
        cond_h = self._embed_condition(cond)  # (B, C, D)
        tok_h = self.tok_embeddings(tokens[:, :-1].long())  # (B, L-1, D)
        h = torch.cat([cond_h, tok_h], dim=1)  # (B, C + L - 1, D)
        logits = self._run(h, 0, None)
        return logits[:, c.cls_token_num - 1 :]  # (B, L, V)

    def loss(self, tokens: Tensor, cond: Tensor) -> Tensor:
        """Mean next-token cross-entropy of ``tokens`` (B, N)."""
        logits = self(tokens, cond)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1).long())

    @torch.no_grad()
    def token_log_likelihood(self, tokens: Tensor, cond: Tensor) -> Tensor:
        """log p(tokens[:, i] | cond, tokens[:, :i]) for every i: float32 (B, L)."""
        logp = self(tokens, cond).log_softmax(-1)
        return logp.gather(-1, tokens[..., None].long()).squeeze(-1)

    # -------------------------------------------------------------------------------------------
    # sampling
    # -------------------------------------------------------------------------------------------
    def new_cache(self, batch: int, dtype: torch.dtype | None = None) -> KVCache:
        c = self.config
        return KVCache(
            c.n_layer, batch, c.kv_heads, c.cls_token_num + c.num_tokens, c.head_dim,
            self.device, dtype or self.output.weight.dtype,
        )

    def prefill(self, cond: Tensor, cache: KVCache) -> Tensor:
        """Run the condition through the cache: logits (B, cls_token_num, V); the last row predicts token 0."""
        return self._run(self._embed_condition(cond), 0, cache)

    def decode_step(self, tokens: Tensor, position: int, cache: KVCache) -> Tensor:
        """Feed tokens (B, L) occupying sequence positions [position, position + L): logits (B, L, V)."""
        return self._run(self.tok_embeddings(tokens.long()), position, cache)

    @torch.no_grad()
    def sample(
        self,
        cond: Tensor | list | int,
        cfg_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        cfg_interval: int = -1,
        greedy: bool = False,
        length: int | None = None,
        prefix: Tensor | None = None,
        use_cache: bool = True,
        progress: bool = False,
        compiled: bool = False,
    ) -> Tensor:
        """Generate token sequences, optionally continuing fixed first tokens.

        Args:
            cond: class labels (B,) (or one int), or frame-prediction conditioning tokens (B, N[+1]).
            cfg_scale: classifier-free guidance scale (1 = off; class-conditional only).
            temperature, top_k, top_p: sampling controls (applied after CFG); ``greedy`` = argmax.
            generator: a seeded ``torch.Generator`` for reproducible samples (else the global RNG).
            cfg_interval: decode step after which CFG stops (-1 = never stops); token j >= 1 comes
                from decode step j - 1, so CFG guides token j while ``j - 1 <= cfg_interval``.
            length: generate only the first ``length`` of the N tokens (default N).
            prefix: int (B, k), k <= length: tokens already fixed. They are prefilled (through the
                KV cache, both CFG halves) and sampling continues at position k; no random draw is
                spent on them.
            use_cache: False runs the full sequence at every step (the slow reference path).
            compiled: run the decode steps through ``torch.compile`` of the static-shape step
                (:meth:`~larp_lab.models.decoding.FastDecoder.step_static`; compiles on first use).
                Off by default: it samples from the same distribution, but its logits differ from
                the eager path's in the last bits, so the ids for a seed can differ.
        Returns:
            int64 (B, length), starting with ``prefix`` when given.
        """
        c = self.config
        cond = self.prepare_condition(cond)
        if cond.ndim == 1 and cond.numel() == 0:
            raise ValueError("empty condition")
        n = c.num_tokens if length is None else int(length)
        if not 1 <= n <= c.num_tokens:
            raise ValueError(f"length must be in [1, {c.num_tokens}]")
        use_cfg = cfg_scale != 1.0
        if use_cfg and c.frame_prediction:
            raise ValueError("classifier-free guidance is not available for frame prediction (cfg_scale must be 1)")
        if use_cfg and self.cls_embedding.embedding_table.num_embeddings <= c.num_classes:
            raise ValueError("this generator has no null class (class_dropout_prob = 0), so CFG is unavailable")
        if not math.isfinite(cfg_scale) or not math.isfinite(temperature) or temperature < 0:
            raise ValueError("cfg_scale and temperature must be finite (temperature >= 0)")
        B = cond.shape[0]
        prefix = self._check_prefix(prefix, B, n)  # (B, k)
        if prefix.shape[1] == n:
            return prefix.clone()
        opts = SamplingOptions(cfg_scale, cfg_interval, temperature, top_k, top_p, greedy or temperature == 0)
        if use_cfg:
            cond = torch.cat([cond, self.null_condition(B)])  # (2B,)
        was_training = self.training
        self.eval()
        try:
            if not use_cache:
                return self._sample_uncached(cond, prefix, n, use_cfg, opts, generator, progress)
            return self._sample_cached(cond, prefix, n, use_cfg, opts, generator, progress, compiled)
        finally:
            self.train(was_training)

    def _check_prefix(self, prefix: Tensor | None, batch: int, n: int) -> Tensor:
        """Validate fixed first tokens: None -> (B, 0); else int (B, k) with k <= n, ids in [0, V)."""
        if prefix is None:
            return torch.empty(batch, 0, dtype=torch.long, device=self.device)
        prefix = torch.as_tensor(prefix)
        if prefix.is_floating_point() or prefix.is_complex() or prefix.dtype == torch.bool:
            raise TypeError(f"prefix must hold integer token ids; got {prefix.dtype}")
        if prefix.ndim != 2 or prefix.shape[1] > n:
            raise ValueError(f"prefix must be (B, k) with k <= {n}; got {tuple(prefix.shape)}")
        if prefix.shape[0] != batch:
            raise ValueError(f"{batch} conditions for {prefix.shape[0]} prefixes")
        prefix = prefix.long().to(self.device)
        if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= self.config.vocab_size):
            raise ValueError(f"prefix tokens must lie in [0, {self.config.vocab_size})")
        return prefix

    @staticmethod
    def _cfg_guides(j: int, use_cfg: bool, opts: SamplingOptions) -> bool:
        """Whether CFG guides token j: token 0 (the prefill) and token j >= 1 while j - 1 <= cfg_interval."""
        return use_cfg and (j == 0 or opts.cfg_interval < 0 or j - 1 <= opts.cfg_interval)

    def _pick(self, logits: Tensor, B: int, cfg_on: bool, opts: SamplingOptions, generator) -> Tensor:
        """Last-position logits (B or 2B, V) -> tokens (B, 1) after CFG and filtering."""
        if cfg_on:
            cond_l, uncond_l = logits[:B], logits[B:]
            logits = uncond_l + (cond_l - uncond_l) * opts.cfg_scale
        else:
            logits = logits[:B]
        return sample_from_logits(
            logits, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p, greedy=opts.greedy,
            generator=generator,
        )

    def _sample_cached(self, cond, prefix, n, use_cfg, opts, generator, progress, compiled=False) -> Tensor:
        """KV-cache path: prefill the condition (B or 2B rows), then the prefix (B, k) as one block,
        then one decode step per new token. Returns int64 (B, n).

        The decode steps run through :class:`~larp_lab.models.decoding.FastDecoder` (bit-identical
        to :meth:`decode_step`) and tokens are picked by :class:`~larp_lab.models.decoding.TokenPicker`
        (the same draws as ``torch.multinomial``), unless hooks, plain attention or
        :func:`~larp_lab.models.decoding.module_decoding` are active; tokens are collected in a list
        and written once."""
        C = self.config.cls_token_num
        B, k = prefix.shape
        cache = self.new_cache(cond.shape[0])
        out = torch.empty(B, n, dtype=torch.long, device=self.device)
        out[:, :k] = prefix
        fast = fast_path_available(self)
        if fast:
            pick = TokenPicker(B, opts, generator)
        else:  # the module path as it always was (hooks, plain attention, module_decoding())
            def pick(logits: Tensor, cfg_on: bool) -> Tensor:
                return self._pick(logits, B, cfg_on, opts, generator)
        logits = self.prefill(cond, cache)[:, -1]  # (rows, V): predicts token 0
        cfg_on = self._cfg_guides(k, use_cfg, opts)
        if use_cfg and not cfg_on:
            cache.shrink(B)
        if k:
            feed = torch.cat([prefix, prefix]) if cfg_on else prefix  # (rows, k) at positions [C, C + k)
            logits = self.decode_step(feed, C, cache)[:, -1]  # predicts token k
        tok = pick(logits, cfg_on)  # (B, 1)
        toks = [tok]
        steps = range(k + 1, n)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="sampling", leave=False)
        step = self._decode_fn(cache, compiled)
        # the fast path under inference_mode (fewer dispatch layers per op; ``out`` stays a normal
        # tensor); the module path as before, so that what hooks record is a normal tensor too
        with torch.inference_mode() if fast else contextlib.nullcontext():
            for j in steps:  # token j, feeding token j - 1 at position C + j - 1
                if cfg_on and not self._cfg_guides(j, use_cfg, opts):
                    cfg_on = False
                    cache.shrink(B)
                inp = tok.view(-1)  # (B,)
                if cfg_on:
                    inp = torch.cat([inp, inp])  # (2B,): both halves see the same token
                tok = pick(step(inp, C + j - 1), cfg_on)
                toks.append(tok)
        out[:, k:] = torch.cat(toks, dim=1)
        return out

    def _decode_fn(self, cache: KVCache, compiled: bool):
        """The decode step ``(tokens (R,), position int) -> logits (R, V)`` for the sampling loop."""
        if compiled and fast_path_available(self):
            fast, fn = FastDecoder(self, cache), compiled_static_step()
            positions = list(torch.arange(cache.max_len, device=self.device).split(1))  # (1,) tensors
            return lambda tokens, position: fn(fast, tokens, positions[position])
        if fast_path_available(self):
            return FastDecoder(self, cache).step
        return lambda tokens, position: self.decode_step(tokens[:, None], position, cache)[:, -1]

    def _sample_uncached(self, cond, prefix, n, use_cfg, opts, generator, progress) -> Tensor:
        """Reference path: recompute the whole sequence at every step (no KV cache)."""
        B = prefix.shape[0]
        out = prefix.clone()  # (B, k)
        cfg_on = use_cfg
        cond_h = self._embed_condition(cond)
        for j in range(prefix.shape[1], n):
            if cfg_on and not self._cfg_guides(j, use_cfg, opts):
                cfg_on = False
                cond_h = cond_h[:B]
            seq = torch.cat([out, out]) if cfg_on else out
            h = torch.cat([cond_h, self.tok_embeddings(seq)], dim=1)  # (rows, C + j, D)
            logits = self._run(h, 0, None)[:, -1]
            tok = self._pick(logits, B, cfg_on, opts, generator)
            out = torch.cat([out, tok], dim=1)
        return out

    # -------------------------------------------------------------------------------------------
    # checkpoints: save_pretrained / from_pretrained come from larp_lab.checkpoint.PretrainedMixin
    # (this project's format or the official ``LARP_AR`` Hub format, detected); these attributes
    # tell it what this model is
    # -------------------------------------------------------------------------------------------
    config_class = GeneratorConfig
    checkpoint_kind = "generator"
    official_format = GENERATOR_FORMAT

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
