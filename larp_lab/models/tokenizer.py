"""LARPTokenizer: holistic video tokenizer (ViT encoder with learned queries, cosine VQ, ViT decoder).

Data flow for a clip (B, 3, T, H, W) with patch sizes (pt, p, p), grid (t, h, w), P = t*h*w patches,
N holistic tokens, hidden D, latent d = 16, codebook K::

    video -> Conv3d patchify (B, P, D) + 3-D sin-cos -> [patches ; queries (N)] -> encoder blocks
          -> last N rows (B, N, D) -> in_linear (B, N, d) -> cosine VQ -> indices (B, N), z_q (B, N, d)
          -> out_linear (B, N, D) + 1-D sin-cos -> [tokens ; patch queries (M)] -> decoder blocks
          -> last M rows -> LayerNorm + Linear (B, M, pt*p*p*3) -> unpatchify (B, 3, T, H, W)

The state dict uses the official names, so the released checkpoints load as they are. Decisions on
the official model's open points are recorded in :class:`~larp_lab.config.TokenizerConfig` and in
the quantizer and prior modules.

Clips must have the configured frame_num x input_size x input_size: :meth:`LARPTokenizer.encode`
refuses other sizes (resize and crop first, e.g. with :func:`larp_lab.data.video.read_video`). With
``any_size=True`` any clip whose frames and sides divide into patches is encoded: the fixed sin-cos
tables are recomputed (and cached) for other grids, a size the model never saw in training. The
learned queries fix N.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..checkpoint import PretrainedMixin
from ..config import TokenizerConfig
from ..official import TOKENIZER_FORMAT
from .capture import (
    ActivationCache,
    HookedMixin,
    NameFilter,
    SequenceLayout,
    capture,
    hook_filter,
    name_hook_points,
)
from .layers import HookPoint, PatchEmbed3D, ViTStack, patch_token_pe, sincos_3d, sincos_latent
from .prior import LARPPrior, PriorLoss
from .quantizer import Bottleneck

# ================================================================================================
#                                          Outputs
# ================================================================================================


@dataclass
class TokenizerEncoding:
    """What :meth:`LARPTokenizer.encode` returns (B clips, N tokens, latent d, hidden D, codebook K)."""

    indices: Tensor  #: int64 (B, N) token ids
    latents: Tensor  #: (B, N, d) quantized unit latents (straight-through; official ``regularized_z``)
    embeddings: Tensor  #: (B, N, D) ``out_linear(latents)``, the decoder input (official ``encoded``)
    projected: Tensor  #: (B, N, d) encoder output after ``in_linear`` (official ``projected_z``)
    normalized: Tensor  #: (B, N, d) L2-normalised ``projected`` (official ``unregularized_z``)
    cos_sim: Tensor  #: (B, N, K) cosine similarity of every token to every code
    loss_q: Tensor  #: scalar VQ loss (commitment and codebook terms, weighted)
    loss_commit: Tensor
    loss_codebook: Tensor
    video_shape: tuple[int, int, int]  #: (T, H, W) of the encoded clip


@dataclass
class TokenizerOutput:
    """What :meth:`LARPTokenizer.forward` (training) returns."""

    reconstruction: Tensor  #: (B, 3, T, H, W) in [-1, 1] (unclamped)
    encoding: TokenizerEncoding
    prior: PriorLoss | None  #: the prior's scheduled-sampling loss, when the model has a prior


class FinalLayer(nn.Module):
    """LayerNorm (eps 1e-6) then Linear D -> pt*p*p*C (official ``final_layer``)."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, eps=1e-6)
        self.linear = nn.Linear(hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.norm_final(x))


# ================================================================================================
#                                         Tokenizer
# ================================================================================================


class LARPTokenizer(HookedMixin, PretrainedMixin, nn.Module):
    """The LARP video tokenizer, with its training-time prior as ``prior_model`` (may be None).

    Public API (videos are float32 (B, 3, T, H, W) in [-1, 1]):

    * :meth:`encode` -> :class:`TokenizerEncoding` (``.indices`` int64 (B, N));
    * :meth:`decode` (decoder input (B, N, D)), :meth:`decode_latents` ((B, N, d)),
      :meth:`decode_indices` ((B, N) ints) -> video;
    * :meth:`reconstruct`;
    * reading and editing internals (:class:`~larp_lab.models.capture.HookedMixin`):
      :meth:`run_with_cache` / :meth:`capture` record hook points, :meth:`hooks` /
      :meth:`run_with_hooks` (``fwd_hooks=[(name_or_predicate, fn)]``, reconstructing) read or
      replace them, e.g. ``hook_decoder_in`` (B, N, D) to change one token's embedding or
      ``decoder.blocks.1.attn.hook_head_out`` (B, H, L, hd) to ablate a head;
    * ``forward(video, step, max_steps)`` for training.
    """

    def __init__(self, config: TokenizerConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        De, Dd = c.encoder_hidden_size, c.decoder_hidden_size
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            # parameters and buffers in the official state-dict order
            # patch tokens (token_mode "patch") have no queries: an empty, frozen table keeps the layout
            nq = c.num_tokens if c.token_mode == "holistic" else 0
            self.encoder_latent_query_embed = nn.Parameter(torch.randn(nq, De) * c.query_init_std,
                                                           requires_grad=nq > 0)
            self.decoder_patch_query_token_type_embed = nn.Parameter(torch.randn(1, 1, Dd) * c.query_init_std)
            self.register_buffer("encoder_patch_pe", torch.zeros(1, c.num_patches, De))
            self.register_buffer("decoder_latent_pe", torch.zeros(1, c.num_tokens, Dd))
            self.register_buffer("decoder_patch_query_embed", torch.zeros(1, c.num_decoder_patches, Dd))
            self.x_embedder = PatchEmbed3D(c.in_channels, De, c.temporal_patch_size, c.patch_size)
            self.encoder = ViTStack(De, c.encoder_depth, c.encoder_num_heads, c.mlp_ratio, c.layer_norm_eps)
            self.decoder = ViTStack(Dd, c.decoder_depth, c.decoder_num_heads, c.mlp_ratio, c.layer_norm_eps)
            self.bottleneck = Bottleneck(
                De, c.bottleneck_dim, Dd, c.codebook_size, c.vq_temperature,
                c.commitment_loss_weight, c.codebook_loss_weight,
            )
            out = c.decoder_temporal_patch_size * c.decoder_patch_size**2 * c.in_channels
            self.final_layer = FinalLayer(Dd, out)
            self.prior_model = LARPPrior(c.prior, c.bottleneck_dim) if c.prior is not None else None
            self.hook_patch_embed = HookPoint()  # (B, P, D) patchify output, before the position table
            self.hook_encoder_out = HookPoint()  # (B, N, D) encoder query outputs
            self.hook_decoder_in = HookPoint()  # (B, N, D) quantized token embeddings entering the decoder
            self.hook_decoder_out = HookPoint()  # (B, M, D) decoder patch-query outputs
            self.hook_final_out = HookPoint()  # (B, M, pt*p*p*C) before unpatchify
            self._init_weights()
            self.reset_fixed_tables()
        self._table_cache: dict[tuple, Tensor] = {}
        name_hook_points(self)

    # -------------------------------------------------------------------------------------------
    # initialisation
    # -------------------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        """The official init: Xavier-uniform on every Linear (prior included), zero biases; Xavier
        on the patch conv seen as (D, -1); zero output layer. Queries keep randn * query_init_std."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    @torch.no_grad()
    def reset_fixed_tables(self) -> None:
        """(Re)compute the three fixed sin-cos buffers for the configured size."""
        c = self.config
        dev = self.encoder_patch_pe.device
        if dev.type == "meta":
            return
        self.encoder_patch_pe.copy_(sincos_3d(c.encoder_hidden_size, *c.patch_grid))
        self.decoder_patch_query_embed.copy_(sincos_3d(c.decoder_hidden_size, *c.decoder_patch_grid))
        if c.token_mode == "patch":
            self.decoder_latent_pe.copy_(patch_token_pe(
                self.decoder_patch_query_embed, (c.frame_num, c.input_size, c.input_size),
                (c.temporal_patch_size, c.patch_size), (c.decoder_temporal_patch_size, c.decoder_patch_size)))
        else:
            self.decoder_latent_pe.copy_(sincos_latent(c.decoder_hidden_size, c.num_tokens, c.latent_pe_scale_factor))
        self._table_cache = {}

    def _table(self, kind: str, grid: tuple[int, int, int], like: Tensor) -> Tensor:
        """The 3-D table for ``grid``: the stored buffer at the configured size, else cached."""
        c = self.config
        buf = self.encoder_patch_pe if kind == "enc" else self.decoder_patch_query_embed
        default = c.patch_grid if kind == "enc" else c.decoder_patch_grid
        if grid == default:
            return buf
        key = (kind, grid, buf.device, buf.dtype)
        if key not in self._table_cache:
            dim = c.encoder_hidden_size if kind == "enc" else c.decoder_hidden_size
            self._table_cache[key] = sincos_3d(dim, *grid).to(device=buf.device, dtype=buf.dtype)
        return self._table_cache[key]

    # -------------------------------------------------------------------------------------------
    # geometry and ranges
    # -------------------------------------------------------------------------------------------
    @property
    def prior(self) -> LARPPrior | None:
        return self.prior_model

    @property
    def device(self) -> torch.device:
        return self.encoder_latent_query_embed.device

    def grids(self, video_shape: tuple[int, int, int] | None = None):
        """Encoder and decoder patch grids (t, h, w) for a clip of (T, H, W) frames."""
        c = self.config
        T, H, W = video_shape or (c.frame_num, c.input_size, c.input_size)
        enc = (T // c.temporal_patch_size, H // c.patch_size, W // c.patch_size)
        dec = (T // c.decoder_temporal_patch_size, H // c.decoder_patch_size, W // c.decoder_patch_size)
        return enc, dec

    def layout(self, video_shape: tuple[int, int, int] | None = None) -> SequenceLayout:
        """Which rows of the encoder/decoder sequences are patches and which are tokens."""
        enc, dec = self.grids(video_shape)
        return SequenceLayout(
            num_patches=enc[0] * enc[1] * enc[2],
            num_tokens=self.config.num_tokens,
            num_decoder_patches=dec[0] * dec[1] * dec[2],
            patch_grid=enc,
            decoder_patch_grid=dec,
            tokens_are_patches=self.config.token_mode == "patch",
        )

    def check_video(self, video: Tensor, *, any_size: bool = False) -> tuple[int, int, int]:
        """Validate a (B, C, T, H, W) clip; returns (T, H, W). Raises ValueError with the reason.

        (T, H, W) must be the configured (frame_num, input_size, input_size), unless ``any_size``,
        which accepts any clip whose frames and sides divide into the encoder's and decoder's patches.
        """
        c = self.config
        if not isinstance(video, Tensor):
            raise TypeError(f"video must be a torch.Tensor, got {type(video).__name__}")
        if video.ndim != 5:
            raise ValueError(f"video must have shape (B, {c.in_channels}, T, H, W); got {tuple(video.shape)}")
        if video.shape[1] != c.in_channels:
            raise ValueError(
                f"video must have {c.in_channels} channels in dim 1 (B, C, T, H, W); got shape {tuple(video.shape)}"
            )
        if not video.is_floating_point():
            raise TypeError(f"video must be a float tensor in [-1, 1], got {video.dtype}")
        T, H, W = video.shape[2:]
        for p, pt in (
            (c.patch_size, c.temporal_patch_size),
            (c.decoder_patch_size, c.decoder_temporal_patch_size),
        ):
            if T % pt or H % p or W % p or T == 0 or H == 0:
                raise ValueError(
                    f"a {T}x{H}x{W} clip (frames x height x width) does not divide into {pt}x{p}x{p} patches; "
                    f"this tokenizer was trained on {c.frame_num}x{c.input_size}x{c.input_size}"
                )
        if c.token_mode == "patch" and (T, H, W) != (c.frame_num, c.input_size, c.input_size):
            raise ValueError(f"a patch-token tokenizer has one token per patch: it takes only "
                             f"{c.frame_num}x{c.input_size}x{c.input_size} clips; got {T}x{H}x{W}")
        if not any_size and (T, H, W) != (c.frame_num, c.input_size, c.input_size):
            raise ValueError(
                f"this tokenizer takes {c.frame_num}x{c.input_size}x{c.input_size} clips (frames x height x width); "
                f"got {T}x{H}x{W}. Read files with larp_lab.data.video.read_video(path, num_frames={c.frame_num}, "
                f"size={c.input_size}) (short side resized, centre crop), resize tensors with "
                f"torch.nn.functional.interpolate(video, size=({c.frame_num}, {c.input_size}, {c.input_size}), "
                "mode='trilinear'), or pass any_size=True to encode at a size it was not trained on"
            )
        return int(T), int(H), int(W)

    def _to_model_range(self, video: Tensor) -> Tensor:
        return (video + 1.0) * 0.5 if self.config.pixel_range == "zero_one" else video

    def _from_model_range(self, video: Tensor) -> Tensor:
        return video * 2.0 - 1.0 if self.config.pixel_range == "zero_one" else video

    # -------------------------------------------------------------------------------------------
    # encode
    # -------------------------------------------------------------------------------------------
    def encode(
        self, video: Tensor, *, sample: bool | None = None, temperature: float | None = None, any_size: bool = False
    ) -> TokenizerEncoding:
        """Tokenize clips.

        Args:
            video: float (B, 3, T, H, W) in [-1, 1], (T, H, W) = (frame_num, input_size, input_size).
            sample: draw codes at ``temperature`` instead of the argmax (default: only in training).
            any_size: accept other (T, H, W) that divide into patches (see :meth:`check_video`).
        Returns:
            :class:`TokenizerEncoding`; ``.indices`` is int64 (B, N).
        """
        shape = self.check_video(video, any_size=any_size)
        x = self._to_model_range(video.to(self.encoder_latent_query_embed.dtype))
        B = x.shape[0]
        enc_grid, _ = self.grids(shape)
        patches = self.hook_patch_embed(self.x_embedder(x))  # (B, P, D)
        patches = patches + self._table("enc", enc_grid, patches)
        if self.config.token_mode == "patch":  # the patches' own outputs are the tokens
            seq = patches  # (B, P, D), P == N
        else:
            queries = self.encoder_latent_query_embed.unsqueeze(0).expand(B, -1, -1)  # (B, N, D)
            seq = torch.cat([patches, queries], dim=1)  # (B, P + N, D)
        h = self.hook_encoder_out(self.encoder(seq, keep_last=self.config.num_tokens))  # (B, N, D)
        projected, q = self.bottleneck(h, sample=sample, temperature=temperature)
        embeddings = self.bottleneck.out_linear(q.quantized)  # (B, N, D)
        return TokenizerEncoding(
            indices=q.indices,
            latents=q.quantized,
            embeddings=embeddings,
            projected=projected,
            normalized=q.normalized,
            cos_sim=q.cos_sim,
            loss_q=q.loss,
            loss_commit=q.loss_commit,
            loss_codebook=q.loss_codebook,
            video_shape=shape,
        )

    # -------------------------------------------------------------------------------------------
    # decode
    # -------------------------------------------------------------------------------------------
    def decode(self, embeddings: Tensor, video_shape: tuple[int, int, int] | None = None) -> Tensor:
        """Decode decoder inputs (B, N, D) (``TokenizerEncoding.embeddings``) into a clip.

        Args:
            video_shape: (T, H, W) to produce; the configured size by default.
        Returns:
            float (B, 3, T, H, W), roughly in [-1, 1] (not clamped).
        """
        c = self.config
        if embeddings.ndim != 3 or embeddings.shape[1:] != (c.num_tokens, c.decoder_hidden_size):
            raise ValueError(
                f"decode expects (B, {c.num_tokens}, {c.decoder_hidden_size}) token embeddings; "
                f"got {tuple(embeddings.shape)}"
            )
        T, H, W = video_shape or (c.frame_num, c.input_size, c.input_size)
        _, dec_grid = self.grids((T, H, W))
        B = embeddings.shape[0]
        z = self.hook_decoder_in(embeddings) + self.decoder_latent_pe  # (B, N, D)
        pq = self._table("dec", dec_grid, z) + self.decoder_patch_query_token_type_embed  # (1, M, D)
        seq = torch.cat([z, pq.expand(B, -1, -1)], dim=1)  # (B, N + M, D)
        M = pq.shape[1]
        h = self.hook_decoder_out(self.decoder(seq, keep_last=M))  # (B, M, D)
        out = self.hook_final_out(self.final_layer(h))  # (B, M, pt*p*p*C)
        return self._from_model_range(self.unpatchify(out, dec_grid))

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, t*h*w, pt*p*p*C), last dim ordered (pt, p1, p2, c) -> (B, C, t*pt, h*p, w*p)."""
        c = self.config
        t, h, w = grid
        pt, p, C = c.decoder_temporal_patch_size, c.decoder_patch_size, c.in_channels
        B = x.shape[0]
        x = x.reshape(B, t, h, w, pt, p, p, C)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, t, pt, h, p, w, p)
        return x.reshape(B, C, t * pt, h * p, w * p)

    def decode_latents(self, latents: Tensor, video_shape: tuple[int, int, int] | None = None) -> Tensor:
        """Decode quantized latents (B, N, d) into a clip (B, 3, T, H, W)."""
        return self.decode(self.bottleneck.out_linear(latents.to(self.decoder_latent_pe.dtype)), video_shape)

    def decode_indices(self, indices: Tensor, video_shape: tuple[int, int, int] | None = None) -> Tensor:
        """Decode token ids (B, N) (int32 or int64) into a clip (B, 3, T, H, W) in [-1, 1]."""
        if not isinstance(indices, Tensor):
            indices = torch.as_tensor(indices)
        if indices.ndim != 2 or indices.shape[1] != self.config.num_tokens:
            raise ValueError(f"expected token ids of shape (B, {self.config.num_tokens}); got {tuple(indices.shape)}")
        latents = self.bottleneck.regularizer.lookup(indices.to(self.device))
        return self.decode_latents(latents, video_shape)

    def reconstruct(self, video: Tensor, *, sample: bool | None = None, any_size: bool = False) -> Tensor:
        """encode + decode: (B, 3, T, H, W) in [-1, 1] -> same shape, unclamped."""
        enc = self.encode(video, sample=sample, any_size=any_size)
        return self.decode(enc.embeddings, enc.video_shape)

    # -------------------------------------------------------------------------------------------
    # training forward
    # -------------------------------------------------------------------------------------------
    def forward(self, video: Tensor, step: int = 0, max_steps: int = 1, *, sample: bool | None = None) -> TokenizerOutput:
        """Training pass: encode (sampling codes in train mode unless ``sample=False``), decode, and
        the prior's loss. ``step`` / ``max_steps`` drive the scheduled-sampling ramp of the prior.
        """
        enc = self.encode(video, sample=sample)
        rec = self.decode(enc.embeddings, enc.video_shape)
        prior_loss = None
        if self.prior_model is not None:
            prior_loss = self.prior_model.scheduled_sampling_loss(
                enc.latents, enc.indices, self.bottleneck.regularizer.normalized_codebook(), step, max_steps
            )
        return TokenizerOutput(reconstruction=rec, encoding=enc, prior=prior_loss)

    def prior_log_likelihood(self, indices: Tensor) -> Tensor:
        """Per-token log-likelihood log p(token_i | tokens_<i) under the prior, (B, N-1) for i >= 1."""
        if self.prior_model is None:
            raise ValueError("this tokenizer has no prior (its checkpoint had no prior_model.* weights)")
        reg = self.bottleneck.regularizer
        return self.prior_model.token_log_likelihood(reg.lookup(indices), indices, reg.normalized_codebook())

    # -------------------------------------------------------------------------------------------
    # reading and editing internals (hooks: see larp_lab.models.capture)
    # -------------------------------------------------------------------------------------------
    def capture(
        self,
        names: NameFilter | list[str] | None = None,
        *,
        attention: bool = True,
        activations: bool = True,
        to_cpu: bool = False,
        detach: bool = True,
        video_shape: tuple[int, int, int] | None = None,
    ) -> contextlib.AbstractContextManager[ActivationCache]:
        """Context manager recording hook points while it is open (this thread / context only).

        ``attention`` selects the attention probabilities of every encoder/decoder/prior block
        (``*.attn.hook_attn``); ``activations`` selects every other hook point. ``names`` (a
        predicate or a list of names) overrides both. The cache's ``layout`` describes clips of
        ``video_shape`` (T, H, W) (default: the configured size). Hooks are gone on exit.
        """
        return capture(self, hook_filter(names, attention, activations), detach=detach, to_cpu=to_cpu,
                       layout=self.layout(video_shape))

    @torch.no_grad()
    def run_with_cache(
        self, video: Tensor, *, names: NameFilter | list[str] | None = None, attention: bool = True,
        activations: bool = True, to_cpu: bool = False, any_size: bool = False,
    ) -> tuple[Tensor, ActivationCache]:
        """Reconstruct ``video`` (B, 3, T, H, W) while recording internals: (reconstruction, cache)."""
        shape = self.check_video(video, any_size=any_size)
        with self.capture(names, attention=attention, activations=activations, to_cpu=to_cpu,
                          video_shape=shape) as cache:
            rec = self.reconstruct(video, any_size=any_size)
        return rec, cache

    def _hooked_run(self, video: Tensor, **kwargs) -> Tensor:
        """What :meth:`run_with_hooks` runs: :meth:`reconstruct` (B, 3, T, H, W) -> same shape."""
        return self.reconstruct(video, **kwargs)

    # -------------------------------------------------------------------------------------------
    # checkpoints: save_pretrained / from_pretrained come from larp_lab.checkpoint.PretrainedMixin
    # (this project's format or the official Hub format, detected; ``prior_sizes=`` for an official
    # prior name outside the official table); these attributes tell it what this model is
    # -------------------------------------------------------------------------------------------
    config_class = TokenizerConfig
    checkpoint_kind = "tokenizer"
    official_format = TOKENIZER_FORMAT

    def num_parameters(self, include_prior: bool = True) -> int:
        return sum(
            p.numel() for n, p in self.named_parameters() if include_prior or not n.startswith("prior_model.")
        )
