"""Training configurations (typed dataclasses, read from YAML or JSON files in ``configs/``).

A config file is a plain mapping; unknown keys are refused with their names. ``model`` may be a
preset name (a key of ``TOKENIZER_PRESETS`` / ``GENERATOR_PRESETS``) or a full model config
mapping; ``model_overrides`` changes fields of a preset.

This module is the one home of the training configs (the GAN's included; the discriminator's
architecture is a model config, :class:`~larp_lab.config.DiscriminatorConfig`, nested in
:class:`GANConfig`). Every value that would break a run later (``log_every: 0``, ``grad_accum: 0``,
a zero learning rate, a warm-up longer than the run...) is refused when the config is read, with one
line naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..config import (
    GENERATOR_PRESETS,
    TOKENIZER_PRESETS,
    ConfigBase,
    ConfigError,
    DiscriminatorConfig,
    GeneratorConfig,
    TokenizerConfig,
    check_at_least,
    check_positive,
    check_range,
)
from .locality import LocalityConfig

__all__ = [
    "DataConfig",
    "DiscLoss",
    "GANConfig",
    "GeneratorTrainConfig",
    "OptimConfig",
    "RunConfig",
    "SourceConfig",
    "TokenizerTrainConfig",
    "load_train_config",
    "train_config_from_dict",
]


@dataclass
class SourceConfig(ConfigBase):
    """One source of training clips.

    kind: ``synthetic`` (procedural, no files), ``digits`` (moving digits, the teaching set of the
    bundled models: :mod:`larp_lab.data.digits`; held-out clips use unseen digit images),
    ``photos`` (pans/zooms over bundled photographs),
    ``videos`` (random windows of the videos in a folder, ``path``), ``folder`` (labelled
    ``root/<class>/*.mp4``, ``path``), ``csv`` (official metadata CSV ``path`` with paths relative to
    ``root``).
    """

    kind: Literal["synthetic", "digits", "photos", "videos", "folder", "csv"] = "synthetic"
    weight: float = 1.0
    path: str | None = None
    root: str | None = None
    #: held-out split for evaluation (csv/folder/videos); default: the same path in eval mode
    val_path: str | None = None

    def validate(self) -> None:
        check_positive("SourceConfig", "weight", self.weight)
        if self.kind in ("videos", "folder", "csv") and not self.path:
            raise ConfigError(f"SourceConfig.path: data source {self.kind!r} needs a path")


@dataclass
class DataConfig(ConfigBase):
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    frames: int = 16
    size: int = 64
    num_clips: int = 1_000_000  #: virtual size of procedural sources
    val_clips: int = 32  #: held-out clips for periodic evaluation
    num_workers: int = 0
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if not self.sources:
            raise ConfigError("DataConfig.sources must name at least one source")
        o = "DataConfig"
        for name in ("frames", "size", "num_clips", "val_clips"):
            check_at_least(o, name, getattr(self, name), 1)
        check_at_least(o, "num_workers", self.num_workers, 0)


@dataclass
class OptimConfig(ConfigBase):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    #: fractions of max_steps where the step schedule multiplies the LR by 0.1 (official '0.9_0.95')
    step_milestones: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 0.0  #: max gradient norm (0 = no clipping)
    grad_accum: int = 1
    ema_decay: float = 0.0  #: 0 = no EMA of the weights

    def validate(self) -> None:
        o = "OptimConfig"
        check_positive(o, "lr", self.lr)
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"{o}.betas[{i}] = {b!r} must lie in [0, 1)")
        check_positive(o, "weight_decay", self.weight_decay, allow_zero=True)
        check_at_least(o, "warmup_steps", self.warmup_steps, 0)
        check_range(o, "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        for m in self.step_milestones:
            check_range(o, "step_milestones", m, 0.0, 1.0)
        check_positive(o, "grad_clip", self.grad_clip, allow_zero=True)
        check_at_least(o, "grad_accum", self.grad_accum, 1)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"{o}.ema_decay = {self.ema_decay!r} must lie in [0, 1) (0 = no EMA)")


@dataclass
class RunConfig(ConfigBase):
    """Fields shared by both trainers."""

    batch_size: int = 8  #: global batch (all processes, one optimizer step, before accumulation split)
    max_steps: int = 1000
    precision: Literal["auto", "fp32", "bf16"] = "auto"  #: auto = bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    log_every: int = 10
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0

    def validate(self) -> None:
        for name in ("batch_size", "max_steps", "log_every", "eval_every", "save_every"):
            check_at_least("RunConfig", name, getattr(self, name), 1)


DiscLoss = Literal["ns_smooth", "ns", "hinge"]


@dataclass
class GANConfig(ConfigBase):
    """The adversarial part of the tokenizer loss and the discriminator's architecture; defaults =
    ``cfgs/larp_tokenizer.yaml`` (the reproduce script uses hidden 512, 8 heads, 12 blocks, d_lr 3e-5).

    The discriminator judges the tokenizer's clips: its clip size is the model's, not set here.
    See :mod:`larp_lab.training.gan` for what each field does in the official recipe.
    """

    disc_loss: DiscLoss = "ns_smooth"
    disc_weight: float = 0.3
    disc_factor: float = 1.0
    disc_start: int = 0  #: first epoch (or step, see ``start_unit``) of the generator's adversarial term
    disc_self_start: int | None = None  #: first epoch/step of D updates; None -> ``disc_start``
    start_unit: Literal["epoch", "step"] = "epoch"
    d_update_freq: int = 5
    d_update_loss_threshold: float = -1.0e6
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    lecam_weight_applied_twice: bool = True  #: the official effective LeCam weight is lecam_weight**2
    d_lr: float = 1e-4
    d_beta1: float = 0.5
    d_beta2: float = 0.9
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    #: files written before the sizes moved into ``discriminator``
    _renamed_keys: ClassVar[dict[str, str]] = {
        k: f"discriminator.{k}" for k in ("hidden_size", "num_heads", "depth", "temporal_patch_size", "patch_size")
    }

    def validate(self) -> None:
        super().validate()
        o = "GANConfig"
        check_at_least(o, "d_update_freq", self.d_update_freq, 1)
        for name in ("disc_weight", "disc_factor", "lecam_weight"):
            check_positive(o, name, getattr(self, name), allow_zero=True)
        check_positive(o, "d_lr", self.d_lr)
        for name in ("lecam_decay", "d_beta1", "d_beta2"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{o}.{name} = {v!r} must lie in [0, 1)")
        if not math.isfinite(self.d_update_loss_threshold):
            raise ConfigError(f"{o}.d_update_loss_threshold must be finite, got {self.d_update_loss_threshold!r}")

    @property
    def effective_lecam_weight(self) -> float:
        """The factor the LeCam penalty finally gets in the discriminator loss."""
        return self.lecam_weight**2 if self.lecam_weight_applied_twice else self.lecam_weight


def _check_schedule(run: RunConfig, optim: OptimConfig) -> None:
    """What must agree between the run and the optimizer."""
    if optim.warmup_steps > run.max_steps:
        raise ConfigError(
            f"OptimConfig.warmup_steps = {optim.warmup_steps} is larger than RunConfig.max_steps = {run.max_steps}; "
            "the learning rate would never reach its peak"
        )
    if run.batch_size % optim.grad_accum:
        raise ConfigError(
            f"RunConfig.batch_size = {run.batch_size} is not divisible by OptimConfig.grad_accum = {optim.grad_accum}"
        )


@dataclass
class TokenizerTrainConfig(ConfigBase):
    model: TokenizerConfig = field(default_factory=lambda: TOKENIZER_PRESETS["micro"]())
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rec_loss: Literal["l1", "l2"] = "l1"
    #: sample codes at the VQ temperature while training (official); False = argmax (deterministic)
    vq_sampling: bool = True
    #: every this many steps, codes unused since the last restart are re-initialised to random current
    #: encoder outputs (0 = off, the official recipe); guards small/short runs against codebook collapse
    dead_code_restart_every: int = 0
    loss_q_weight: float = 0.1
    #: linear warm-up of the VQ loss weight from loss_q_warmup_start * loss_q_weight over these steps
    loss_q_warmup_steps: int = 0
    loss_q_warmup_start: float = 1.0
    prior_loss_weight: float = 0.06
    prior_lr_mult: float = 1.0
    lpips_weight: float = 0.0
    lpips_vgg_path: str | None = None
    lpips_lin_path: str | None = None
    gan: GANConfig | None = None
    #: attention-locality auxiliary loss (``training/locality.py``); None = off (the official recipe)
    locality: LocalityConfig | None = None
    #: codebook warm-up (``training/codebook_init.py``): this many first steps train with continuous
    #: latents (no VQ, no prior), then the codebook is set by k-means over ``vq_init_clips`` clips; 0 = off
    vq_warmup_steps: int = 0
    vq_init_clips: int = 256

    def validate(self) -> None:
        super().validate()
        o = "TokenizerTrainConfig"
        if (self.data.frames, self.data.size) != (self.model.frame_num, self.model.input_size):
            raise ConfigError(
                f"data clips are {self.data.frames}x{self.data.size}x{self.data.size} but the model is configured for "
                f"{self.model.frame_num}x{self.model.input_size}x{self.model.input_size}"
            )
        _check_schedule(self.run, self.optim)
        check_at_least(o, "dead_code_restart_every", self.dead_code_restart_every, 0)
        check_at_least(o, "loss_q_warmup_steps", self.loss_q_warmup_steps, 0)
        check_at_least(o, "vq_warmup_steps", self.vq_warmup_steps, 0)
        check_at_least(o, "vq_init_clips", self.vq_init_clips, 1)
        for name in ("loss_q_weight", "loss_q_warmup_start", "prior_loss_weight", "prior_lr_mult", "lpips_weight"):
            check_positive(o, name, getattr(self, name), allow_zero=True)
        if self.lpips_weight > 0 and not (self.lpips_vgg_path and self.lpips_lin_path):
            raise ConfigError("lpips_weight > 0 needs lpips_vgg_path and lpips_lin_path (local weight files)")
        if self.gan is not None:
            m = self.model
            self.gan.discriminator.check_clip(m.in_channels, m.frame_num, m.input_size)


@dataclass
class GeneratorTrainConfig(ConfigBase):
    model: GeneratorConfig = field(default_factory=lambda: GENERATOR_PRESETS["micro"]())
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, weight_decay=0.05))
    run: RunConfig = field(default_factory=RunConfig)
    #: clips tokenised once and cached (the training set of the generator)
    num_train_clips: int = 20_000
    #: frame prediction: frames given as condition (the rest is predicted), official default 5 of 16
    cond_frames: int = 5
    #: CFG scale used for the periodic samples
    sample_cfg_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        o = "GeneratorTrainConfig"
        _check_schedule(self.run, self.optim)
        check_at_least(o, "num_train_clips", self.num_train_clips, 1)
        check_positive(o, "sample_cfg_scale", self.sample_cfg_scale, allow_zero=True)
        m = self.model
        if m.frame_prediction:
            check_range(o, "cond_frames", self.cond_frames, 1, self.data.frames)
        if self.sample_cfg_scale != 1.0 and (m.frame_prediction or m.class_dropout_prob == 0):
            raise ConfigError(
                f"{o}.sample_cfg_scale = {self.sample_cfg_scale} needs classifier-free guidance, which "
                + ("frame prediction does not have" if m.frame_prediction else
                   "needs a null class (model.class_dropout_prob > 0)")
                + "; use 1.0"
            )


def _model_from(value: Any, presets: dict, cls: type, overrides: dict | None):
    if isinstance(value, str):
        if value not in presets:
            raise ConfigError(f"unknown model preset {value!r}; choose one of {sorted(presets)}")
        cfg = presets[value]()
    elif isinstance(value, dict):
        cfg = cls.from_dict(value)
    else:
        raise ConfigError("model must be a preset name or a mapping of model config fields")
    if overrides:
        base = cfg.to_dict()
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ConfigError(f"model_overrides has unknown keys {unknown}")
        base.update(overrides)
        cfg = cls.from_dict(base)
    return cfg


def load_train_config(path: str | Path, kind: Literal["tokenizer", "generator"]):
    """Read a YAML/JSON training config file into a validated dataclass."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    if p.stat().st_size > 1_000_000:
        raise ConfigError(f"{p}: config file larger than 1 MB")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    return train_config_from_dict(data or {}, kind)


def train_config_from_dict(data: dict, kind: Literal["tokenizer", "generator"]):
    if not isinstance(data, dict):
        raise ConfigError("a training config must be a mapping")
    data = dict(data)
    overrides = data.pop("model_overrides", None)
    cls = TokenizerTrainConfig if kind == "tokenizer" else GeneratorTrainConfig
    presets = TOKENIZER_PRESETS if kind == "tokenizer" else GENERATOR_PRESETS
    mcls = TokenizerConfig if kind == "tokenizer" else GeneratorConfig
    model = _model_from(data.pop("model", "micro"), presets, mcls, overrides)
    cfg = cls.from_dict({**data, "model": model.to_dict()})
    cfg.validate()
    return cfg
