"""The training loop shared by the tokenizer and generator trainers.

A *task* (``tokenizer_task.TokenizerTask``, ``generator_task.GeneratorTask``) owns the model, the
datasets and the loss; this loop owns everything else: optimizer and LR schedule, gradient
accumulation and clipping, DDP, autocast, EMA, progress bar, logging, periodic evaluation, atomic
checkpoints and exact resume.

Run directory layout::

    run_dir/config.yaml        the resolved training config (enough to reproduce the run)
    run_dir/env.json           machine, versions, git commit, command line
    run_dir/log.jsonl          one JSON object per logged step (train and eval)
    run_dir/tb/                TensorBoard scalars
    run_dir/samples/           periodic videos (MP4) and frame grids (PNG)
    run_dir/checkpoints/last/  training state for --resume (JSON + safetensors, no pickle)
    run_dir/model/             the model in the larp_lab checkpoint format (EMA weights in model_ema/)
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..checkpoint import CheckpointError
from .config import OptimConfig, RunConfig
from .ema import EMA
from .run_log import RunLogger, environment_info
from .runtime import Runtime
from .sampler import EpochView, StepBatchSampler
from .schedule import lr_multiplier
from .state import find_state, load_state, rng_state, save_state, set_rng_state


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss with ``on_nan='stop'``, bad run directory...)."""


class Task(Protocol):
    model: nn.Module
    train_dataset: torch.utils.data.Dataset
    shuffle: bool

    def param_groups(self) -> list[dict[str, Any]]: ...
    def collate(self, batch: list) -> Any: ...
    def loss(self, model: nn.Module, batch: Any, step: int, max_steps: int) -> tuple[torch.Tensor, dict[str, float]]: ...
    def after_step(self, batch: Any, step: int) -> dict[str, float]: ...
    def evaluate(self, model: nn.Module, step: int, run_dir: Path) -> dict[str, float]: ...
    def extra_state(self) -> dict[str, Any]: ...
    def load_extra_state(self, state: dict[str, Any]) -> None: ...


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def prepare_run_dir(run_dir: Path, config: Any, resume: bool, rt: Runtime) -> int:
    """Create/validate the run directory; returns the step to resume from (0 for a new run)."""
    ckpt = run_dir / "checkpoints" / "last"
    has_ckpt = find_state(ckpt) is not None
    if has_ckpt and not resume:
        raise TrainingError(f"{run_dir} already holds a training checkpoint; pass --resume to continue it or use a new --out")
    if resume and not has_ckpt:
        raise TrainingError(f"--resume: no checkpoint in {ckpt}")
    if rt.is_main:
        import yaml

        run_dir.mkdir(parents=True, exist_ok=True)
        plain = json.loads(json.dumps(config.to_dict()))
        text = yaml.safe_dump(plain, sort_keys=False)
        if resume and (run_dir / "config.yaml").exists():
            old = yaml.safe_load((run_dir / "config.yaml").read_text())
            # a resumed run may be extended (run.max_steps), nothing else may change
            old.get("run", {}).pop("max_steps", None)
            new = json.loads(json.dumps(plain))
            new.get("run", {}).pop("max_steps", None)
            if old != new:
                raise TrainingError(f"{run_dir}/config.yaml differs from the config given now; resume needs the same config")
        (run_dir / "config.yaml").write_text(text)
        (run_dir / "env.json").write_text(json.dumps(environment_info(rt.device), indent=2))
    return 0


def train(
    task: Task,
    *,
    run: RunConfig,
    optim: OptimConfig,
    config: Any,
    run_dir: str | Path,
    rt: Runtime,
    resume: bool = False,
    stop_after: int | None = None,
    on_nan: str = "skip",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``task.model`` for ``run.max_steps`` optimizer steps (see module docstring).

    Args:
        stop_after: stop (with a checkpoint) after this many steps in total, as if interrupted; the
            LR schedule still spans ``run.max_steps``.
        on_nan: a non-finite loss either skips the step (``"skip"``, logged) or stops (``"stop"``).
    Returns:
        {"step": last step, "train": last logged train metrics, "eval": last eval metrics}.
    """
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, config, resume, rt)
    model = task.model.to(rt.device)
    groups = task.param_groups()
    for g in groups:
        g.setdefault("lr_mult", 1.0)
    opt = torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    ema = EMA(model, optim.ema_decay) if optim.ema_decay > 0 else None
    start = 0
    if resume:
        state = load_state(run_dir / "checkpoints" / "last")
        missing = set(model.state_dict()) ^ set(state["model"])
        if missing:
            raise CheckpointError(f"resume: model keys differ from the checkpoint: {sorted(missing)[:8]}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        task.load_extra_state(state.get("extra", {}))
        rngs = state["rng"]
        if len(rngs) == rt.world_size:
            set_rng_state(rngs[rt.rank])
        else:  # resumed on another number of processes: deterministic, but not the old streams
            torch.manual_seed(run.seed * 1009 + rt.rank * 7919 + int(state["step"]))
        start = int(state["step"])
        if rt.is_main:  # a kill between the state and the exports leaves these behind: bring them level
            _export(run_dir, model, ema, start, only_stale=True)
        rt.barrier()
    if start >= run.max_steps:
        return {"step": start, "train": {}, "eval": {}}

    fwd_model: nn.Module = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd_model = DDP(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if run.compile:
        fwd_model = torch.compile(fwd_model)

    sampler = StepBatchSampler(
        len(task.train_dataset), run.batch_size, rank=rt.rank, world=rt.world_size, grad_accum=optim.grad_accum,
        seed=run.seed, start_step=start, max_steps=run.max_steps, shuffle=task.shuffle,
    )
    loader = torch.utils.data.DataLoader(
        EpochView(task.train_dataset), batch_sampler=sampler, collate_fn=task.collate,
        num_workers=getattr(config.data, "num_workers", 0), pin_memory=rt.device.type == "cuda",
        persistent_workers=getattr(config.data, "num_workers", 0) > 0,
        # its own generator: creating the iterator must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(run.seed),
    )
    batches = iter(loader)
    logger = RunLogger(run_dir, rt.is_main, resume_step=start)
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    window: dict[str, list[float]] = {}
    window_steps = 0
    t_last = time.perf_counter()
    end = run.max_steps if stop_after is None else min(run.max_steps, stop_after)
    bar = None
    if progress and rt.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.max_steps, initial=start, desc=type(task).__name__.replace("Task", " training"),
                   dynamic_ncols=True)
    try:
        for step in range(start, end):
            mult = lr_multiplier(step, run.max_steps, optim)
            for g in opt.param_groups:
                g["lr"] = optim.lr * g["lr_mult"] * mult
            opt.zero_grad(set_to_none=True)
            model.train()
            step_metrics: dict[str, float] = {}
            finite = True
            for a in range(optim.grad_accum):
                batch = _to_device(next(batches), rt.device)
                sync = contextlib.nullcontext()
                if rt.distributed and a < optim.grad_accum - 1:
                    sync = fwd_model.no_sync()
                with sync:
                    with rt.autocast():
                        loss, metrics = task.loss(fwd_model, batch, step, run.max_steps)
                    if not torch.isfinite(loss):
                        finite = False
                    (loss / optim.grad_accum).backward()
                for k, v in metrics.items():
                    step_metrics[k] = step_metrics.get(k, 0.0) + float(v) / optim.grad_accum
            if rt.distributed:
                finite = rt.all_reduce_mean(1.0 if finite else 0.0) == 1.0
            if not finite:
                if on_nan == "stop":
                    raise TrainingError(f"non-finite loss at step {step}; stopping (on_nan='stop')")
                opt.zero_grad(set_to_none=True)
                step_metrics = {"skipped_nonfinite": 1.0}
            else:
                if optim.grad_clip > 0:
                    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
                    step_metrics["grad_norm"] = float(gn)
                opt.step()
                step_metrics.update(task.after_step(batch, step))
                if ema is not None:
                    ema.update(model)
            step_metrics["lr"] = optim.lr * mult
            for k, v in step_metrics.items():
                window.setdefault(k, []).append(v)
            window_steps += 1
            done = step + 1
            if done % run.log_every == 0 or done == end:
                now = time.perf_counter()
                avg = {k: rt.all_reduce_mean(sum(v) / len(v)) for k, v in window.items()}
                avg["sec_per_step"] = (now - t_last) / max(1, window_steps)
                t_last, window, window_steps = now, {}, 0
                logger.log(done, avg)
                last_train = avg
                if bar is not None:
                    shown = {k: f"{v:.4g}" for k, v in avg.items() if k in task_display_keys(task)}
                    bar.set_postfix(shown)
            if bar is not None:
                bar.update(1)
            if rt.is_main and (done % run.eval_every == 0 or done == run.max_steps):
                eval_model = model
                if ema is not None:
                    eval_model = _ema_copy(model, ema)
                last_eval = task.evaluate(eval_model, done, run_dir)
                model.train()
                logger.log(done, last_eval, prefix="eval")
            if done % run.save_every == 0 or done == end:
                _save(run_dir, model, opt, ema, task, done, rt)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    return {"step": end, "train": last_train, "eval": last_eval}


def task_display_keys(task: Task) -> tuple[str, ...]:
    return getattr(task, "display_keys", ("loss",))


def _ema_copy(model: nn.Module, ema: EMA) -> nn.Module:
    import copy

    m = copy.deepcopy(model)
    ema.copy_to(m)
    return m


def _gather_rng(rt: Runtime) -> list[dict[str, Any]]:
    """Every process's RNG state, in rank order (collected on all ranks)."""
    mine = rng_state()
    if not rt.distributed:
        return [mine]
    import torch.distributed as dist

    out: list[Any] = [None] * rt.world_size
    dist.all_gather_object(out, {k: (v if k != "torch" else v.tolist()) for k, v in mine.items() if k == "torch"})
    return [{"torch": torch.tensor(o["torch"], dtype=torch.uint8)} for o in out]


def _save(run_dir: Path, model, opt, ema, task, step: int, rt: Runtime) -> None:
    rngs = _gather_rng(rt)
    if rt.is_main:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": rngs,
            "extra": task.extra_state(),
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        save_state(run_dir / "checkpoints" / "last", state)
        _export(run_dir, model, ema, step)
    rt.barrier()


def _exported_step(d: Path) -> int | None:
    """The training step recorded in an exported model's config.json (None when absent or unreadable)."""
    try:
        meta = json.loads((d / "config.json").read_text()).get("metadata", {})
        return int(meta["step"]) if (d / "model.safetensors").exists() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _export(run_dir: Path, model, ema, step: int, only_stale: bool = False) -> None:
    """Write ``run_dir/model`` (and ``model_ema``) for ``step``, after the training state.

    With ``only_stale``, rewrite only the exports whose recorded step differs from ``step`` (a run
    killed between saving its state and its exports, perhaps several times in a row, is brought level
    on resume; the exports always describe the state a resume starts from).
    """
    meta = {"step": step, "run_dir": str(run_dir)}
    targets = [(run_dir / "model", lambda: model, meta)]
    if ema is not None:  # the averaged weights (not the live ones)
        targets.append((run_dir / "model_ema", lambda: _ema_copy(model, ema), {**meta, "ema_decay": ema.decay}))
    for d, make, md in targets:
        # temporary files of a save that was killed: ours (.NAME.XXXX.tmp) and the safetensors
        # writer's own (.tmpXXXXXX, made next to its target)
        for stale in [*d.glob(".*.tmp"), *d.glob(".tmp*")]:
            if stale.is_file():
                stale.unlink(missing_ok=True)
        if only_stale and _exported_step(d) == step:
            continue
        make().save_pretrained(d, metadata=md)

