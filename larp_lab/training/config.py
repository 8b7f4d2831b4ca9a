"""Training configurations (typed dataclasses, read from YAML or JSON files in ``configs/``).

A config file is a plain mapping; unknown keys are refused with their names. ``model`` may be a
preset name (a key of ``TOKENIZER_PRESETS`` / ``GENERATOR_PRESETS``) or a full model config
mapping; ``model_overrides`` changes fields of a preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import (
    GENERATOR_PRESETS,
    TOKENIZER_PRESETS,
    ConfigError,
    GeneratorConfig,
    TokenizerConfig,
    _ConfigBase,
)
from .gan import GANConfig


@dataclass
class SourceConfig(_ConfigBase):
    """One source of training clips.

    kind: ``synthetic`` (procedural, no files), ``photos`` (pans/zooms over bundled photographs),
    ``videos`` (random windows of the videos in a folder, ``path``), ``folder`` (labelled
    ``root/<class>/*.mp4``, ``path``), ``csv`` (official metadata CSV ``path`` with paths relative to
    ``root``).
    """

    kind: Literal["synthetic", "photos", "videos", "folder", "csv"] = "synthetic"
    weight: float = 1.0
    path: str | None = None
    root: str | None = None
    #: held-out split for evaluation (csv/folder/videos); default: the same path in eval mode
    val_path: str | None = None


@dataclass
class DataConfig(_ConfigBase):
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    frames: int = 16
    size: int = 64
    num_clips: int = 1_000_000  #: virtual size of procedural sources
    val_clips: int = 32  #: held-out clips for periodic evaluation
    num_workers: int = 0
    seed: int = 0

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("DataConfig.sources must name at least one source")
        for s in self.sources:
            if s.kind in ("videos", "folder", "csv") and not s.path:
                raise ConfigError(f"data source {s.kind!r} needs a path")
            if s.weight <= 0:
                raise ConfigError("data source weights must be positive")


@dataclass
class OptimConfig(_ConfigBase):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    #: fractions of max_steps where the step schedule multiplies the LR by 0.1 (official '0.9_0.95')
    step_milestones: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 0.0
    grad_accum: int = 1
    ema_decay: float = 0.0


@dataclass
class RunConfig(_ConfigBase):
    """Fields shared by both trainers."""

    batch_size: int = 8  #: global batch (all processes, one optimizer step, before accumulation split)
    max_steps: int = 1000
    precision: Literal["auto", "fp32", "bf16"] = "auto"  #: auto = bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    log_every: int = 10
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0


@dataclass
class TokenizerTrainConfig(_ConfigBase):
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

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        if (self.data.frames, self.data.size) != (self.model.frame_num, self.model.input_size):
            raise ConfigError(
                f"data clips are {self.data.frames}x{self.data.size}x{self.data.size} but the model is configured for "
                f"{self.model.frame_num}x{self.model.input_size}x{self.model.input_size}"
            )
        if self.lpips_weight > 0 and not (self.lpips_vgg_path and self.lpips_lin_path):
            raise ConfigError("lpips_weight > 0 needs lpips_vgg_path and lpips_lin_path (local weight files)")


@dataclass
class GeneratorTrainConfig(_ConfigBase):
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
