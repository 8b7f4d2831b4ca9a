"""Entry points behind ``larp-lab train-tokenizer`` and ``larp-lab train-generator``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .config import GeneratorTrainConfig, TokenizerTrainConfig, load_train_config
from .loop import train
from .runtime import setup_runtime, teardown_runtime


def _with_steps(cfg, max_steps: int | None):
    """``cfg`` with ``run.max_steps`` set (``--max-steps``); a warm-up longer than the shortened run is
    shortened to it, with a warning (a config's own warm-up must fit its own run)."""
    if max_steps is None:
        return cfg
    optim = cfg.optim
    if optim.warmup_steps > max_steps:
        warnings.warn(
            f"--max-steps {max_steps} is shorter than the config's warm-up ({optim.warmup_steps} steps); "
            f"the warm-up is shortened to {max_steps} steps",
            stacklevel=3,
        )
        optim = optim.replace(warmup_steps=max_steps)
    return cfg.replace(run=cfg.run.replace(max_steps=max_steps), optim=optim)


def fit_generator_to_tokenizer(cfg: GeneratorTrainConfig, tok) -> GeneratorTrainConfig:
    """Set the generator's sequence length and vocabulary from the tokenizer (as the official trainer
    does), the conditioning length for frame prediction, and the class names of the data."""
    from .data import dataset_class_names

    n, k = tok.config.num_tokens, tok.config.codebook_size
    m = cfg.model
    names = dataset_class_names(cfg.data)
    changes: dict[str, Any] = {"num_tokens": n, "vocab_size": k, "cls_token_num": n + 1 if m.frame_prediction else 1}
    if names is not None and not m.frame_prediction:
        changes.update(num_classes=len(names), class_names=tuple(names))
    return cfg.replace(model=m.replace(**changes))


def train_tokenizer(
    config: str | Path | TokenizerTrainConfig, out: str | Path, *, max_steps: int | None = None, resume: bool = False,
    device: str = "auto", stop_after: int | None = None, progress: bool = True, on_nan: str = "skip",
) -> dict[str, Any]:
    """Train a tokenizer (with its prior) from a config file or object into the run directory ``out``."""
    from .tokenizer_task import TokenizerTask

    cfg = config if isinstance(config, TokenizerTrainConfig) else load_train_config(config, "tokenizer")
    cfg = _with_steps(cfg, max_steps)
    rt = setup_runtime(device, cfg.run.precision)
    try:
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every process
        task = TokenizerTask(cfg, rt.device)
        torch.manual_seed(cfg.run.seed * 1009 + rt.rank)  # independent VQ / scheduled-sampling draws
        return train(task, run=cfg.run, optim=cfg.optim, config=cfg, run_dir=Path(out), rt=rt, resume=resume,
                     stop_after=stop_after, progress=progress, on_nan=on_nan)
    finally:
        teardown_runtime(rt)


def train_generator(
    config: str | Path | GeneratorTrainConfig, out: str | Path, *, tokenizer: str, max_steps: int | None = None,
    resume: bool = False, device: str = "auto", stop_after: int | None = None, progress: bool = True,
    on_nan: str = "skip",
) -> dict[str, Any]:
    """Train a generator on tokens of ``tokenizer`` (directory, Hub id or bundled name)."""
    from ..bundled import resolve_tokenizer
    from .generator_task import GeneratorTask

    cfg = config if isinstance(config, GeneratorTrainConfig) else load_train_config(config, "generator")
    cfg = _with_steps(cfg, max_steps)
    rt = setup_runtime(device, cfg.run.precision)
    try:
        tok = resolve_tokenizer(tokenizer, rt.device)
        cfg = fit_generator_to_tokenizer(cfg, tok)
        torch.manual_seed(cfg.run.seed)
        task = GeneratorTask(cfg, tok, Path(out), rt.device, is_main=rt.is_main, barrier=rt.barrier,
                             progress=progress and rt.is_main)
        torch.manual_seed(cfg.run.seed * 1009 + rt.rank)
        return train(task, run=cfg.run, optim=cfg.optim, config=cfg, run_dir=Path(out), rt=rt, resume=resume,
                     stop_after=stop_after, progress=progress, on_nan=on_nan)
    finally:
        teardown_runtime(rt)
