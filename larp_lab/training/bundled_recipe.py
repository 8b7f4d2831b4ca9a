"""Train every bundled model from nothing inside one wall-clock budget (``scripts/train_bundled.py``).

Stages, in order, each writing its model as soon as it is trained:

0. a pool of clips, generated once on the CPU (uint8, in memory, moved onto the accelerator when it
   fits; :mod:`.pool`): moving digits (``data="digits"``, the default of ``scripts/train_bundled.py``)
   or synthetic and photo-pan clips; and a held-out twin (other seeds; for digits, held-out digit images);
1. the tokenizer with its prior: the LARP recipe of ``configs/tokenizer_tiny.yaml`` (L1, cosine VQ,
   prior CE with scheduled sampling, dead-code restarts; for ``--size cpu`` the CPU recipe of
   ``configs/tokenizer_digits.yaml`` with its warm-up and locality phases scaled to the planned steps,
   :func:`scale_schedule`), on pool clips sampled with the config's source weights and random
   horizontal flips (not digits) / time reversals, with snapshots of the forming model
   (:func:`snapshot_steps`);
2. the tokens of the pool's labelled clips and of their mirror images (digits: time reversals), with
   the tokenizer exactly as shipped (fp16 weights, loaded back), plus the frame predictor's
   conditioning tokens;
3. the class-conditional generator and the frame predictor on those tokens
   (``configs/generator_tiny.yaml``, ``configs/generator_tiny_fp.yaml``);
4. the proxy classifier, only if it must change (decided, and retrained, right after stage 0: it
   needs only the pool, and so gets its whole share rather than what the other stages leave): the
   bundled one is kept when its clip shape and classes match the pool's and it recognises at least
   ``classifier_min_accuracy`` of the held-out clips; otherwise it is retrained on the pool.

Every training stage measures its seconds per step over its first steps (on a throwaway model),
then sets its step count so that its warm-up/cosine schedule ends inside its share of what is left
of the budget (:mod:`.budget`); a stage that still runs past its share by a margin is stopped
(:class:`~larp_lab.training.budget.BudgetExceeded`) and ships the weights it has. Training goes
through the normal loop (:func:`larp_lab.training.loop.train`: bf16 autocast on CUDA, fp32 on CPU,
optional ``torch.compile``, atomic checkpoints in the work directory about 8 times per stage).

The output directory holds one folder per model in the bundled format (``config.json`` +
``model.safetensors`` in fp16) and ``train_log.json`` (per stage: steps, clips seen, losses, wall
time; device name, torch version): at most ``max_files`` files of at most ``max_file_mb`` MB each,
checked before training (from the model sizes) and after every write.
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .budget import Budget, BudgetExceeded, Deadline, StagePlan, plan_steps, seconds_per_step
from .bundled_classifier import CLASSIFIER_NAME, decide_classifier, retrain_classifier
from .pool import ClipPool, PoolSpec, collate_indices, generate_pool
from .pool_tasks import TokenTask, make_pool_tokenizer_task, snapshot_steps, to_device

__all__ = [
    "CLASSIFIER_NAME",
    "SIZES",
    "BundleLimitError",
    "BundledRunConfig",
    "SizeRecipe",
    "check_bundle",
    "snapshot_steps",
    "stage_config",
    "train_bundled",
]

LOG_NAME = "train_log.json"
LOG_FORMAT = "larp_lab.bundled_run/1"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class BundleLimitError(RuntimeError):
    """The bundle would hold too many files, or a file larger than allowed."""


# ================================================================================================
#                                          sizes
# ================================================================================================


@dataclass(frozen=True)
class SizeRecipe:
    """What one ``--size`` trains: config files (with overrides), batches, learning rates, pools."""

    name: str
    tokenizer_config: str = "tokenizer_tiny.yaml"
    generator_config: str = "generator_tiny.yaml"
    predictor_config: str = "generator_tiny_fp.yaml"
    #: merged into the config files' ``model_overrides`` (tokenizer) / model fields (generators)
    tokenizer_overrides: dict[str, Any] = field(default_factory=dict)
    generator_overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer_batch: tuple[int, int] = (256, 8)  #: (CUDA, CPU) clips per step
    generator_batch: tuple[int, int] = (256, 16)  #: (CUDA, CPU) sequences per step
    #: (CUDA, CPU); None = the config's (3e-4 at batch 8 on the CPU); about sqrt-scaled for batch 256
    tokenizer_lr: tuple[float | None, float | None] = (6e-4, None)
    generator_lr: tuple[float | None, float | None] = (None, None)
    #: (CUDA, CPU) pools of (synthetic, photo-pan) clips: 72k clips are 13.5 GB of uint8 at 16x64x64
    pool: tuple[tuple[int, int], tuple[int, int]] = ((64_000, 8_000), (2_000, 400))
    heldout: tuple[tuple[int, int], tuple[int, int]] = ((256, 64), (48, 16))  #: (CUDA, CPU) held-out clips
    encode_batch: tuple[int, int] = (512, 32)
    classifier_clips: int = 240  #: held-out synthetic clips that decide whether the classifier must change


SIZES: dict[str, SizeRecipe] = {
    # the shipped models: the architectures of the config files, GPU batches
    "tiny": SizeRecipe("tiny"),
    # the CPU bundle (issue 18): moving digits at 32x32x8 with the CPU recipe (locality loss, codebook
    # warm-up) in configs/tokenizer_digits.yaml; sized so that every stage trains in two hours on 2 cores
    "cpu": SizeRecipe(
        "cpu", tokenizer_config="tokenizer_digits.yaml", generator_config="generator_digits.yaml",
        predictor_config="generator_digits_fp.yaml", tokenizer_batch=(256, 16), generator_batch=(256, 32),
        tokenizer_lr=(2e-3, None), pool=((60_000, 0), (24_000, 0)), heldout=((512, 0), (256, 0)),
        encode_batch=(1024, 128), classifier_clips=256,
    ),
    # the same clips (16x64x64, so the bundled classifier applies) with very small models: proves every
    # stage on a CPU in under a minute
    "micro": SizeRecipe(
        "micro",
        tokenizer_overrides={
            "encoder_hidden_size": 32, "decoder_hidden_size": 32, "encoder_num_heads": 2, "decoder_num_heads": 2,
            "encoder_depth": 1, "decoder_depth": 1, "num_tokens": 32, "patch_size": 16, "decoder_patch_size": 16,
            "codebook_size": 64,
            "prior": {"n_layer": 1, "n_head": 2, "n_embd": 32, "name": "gptc-micro", "max_positions": 64},
        },
        generator_overrides={"dim": 32, "n_layer": 1, "n_head": 2, "multiple_of": 32},
        tokenizer_batch=(64, 8), generator_batch=(128, 32), tokenizer_lr=(1e-3, 1e-3), generator_lr=(1e-3, 1e-3),
        pool=((4_000, 800), (160, 32)), heldout=((48, 8), (48, 8)), encode_batch=(256, 64), classifier_clips=48,
    ),
}


@dataclass
class BundledRunConfig:
    """Options of :func:`train_bundled` (the flags of ``scripts/train_bundled.py``)."""

    out: str
    budget_s: float
    device: str = "auto"
    size: str = "auto"  #: ``auto``: ``tiny`` on CUDA, ``cpu`` otherwise
    #: the clips every model trains on: ``digits`` (moving digits) or ``synthetic`` (12 motion classes);
    #: None: what the size's config files say
    data: Literal["digits", "synthetic"] | None = None
    work: str | None = None  #: run directories with checkpoints; default a new temporary directory
    resume: bool = False  #: continue the run in ``out`` / ``work`` (both given, as before) where it stopped
    pool_clips: int | None = None  #: training pool clips (synthetic + photos); default the size's
    photo_fraction: float | None = None  #: share of photo pans in the pool; default the size's
    workers: int | None = None  #: processes generating the pool; default the usable cores (<= 16)
    compile: bool = False
    classifier: Literal["auto", "keep", "retrain"] = "auto"
    classifier_min_accuracy: float = 0.9
    tokenizer_lr: float | None = None  #: overrides the size's learning rate
    max_files: int = 10
    max_file_mb: float = 16.0
    seed: int = 0
    progress: bool = False  #: the training loop's progress bars
    weights: dict[str, float] = field(default_factory=lambda: {
        "tokenizer": 0.52, "generator": 0.28, "frame_predictor": 0.15, "classifier": 0.05})

    def validate(self) -> None:
        if self.size != "auto" and self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose auto or one of {sorted(SIZES)}")
        if self.data not in (None, "digits", "synthetic"):
            raise ValueError(f"data must be digits or synthetic, got {self.data!r}")
        if self.resume and not self.work:
            raise ValueError("--resume needs the --work directory of the run it continues")
        if not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise ValueError(f"the budget must be a positive number of seconds, got {self.budget_s}")
        if self.classifier not in ("auto", "keep", "retrain"):
            raise ValueError(f"classifier must be auto, keep or retrain, got {self.classifier!r}")
        if self.pool_clips is not None and self.pool_clips < 24:
            raise ValueError(f"the pool needs at least 24 clips, got {self.pool_clips}")
        if self.photo_fraction is not None and not 0.0 <= self.photo_fraction < 1.0:
            raise ValueError(f"photo_fraction must be in [0, 1), got {self.photo_fraction}")
        if self.max_files < 1 or self.max_file_mb <= 0:
            raise ValueError("max_files and max_file_mb must be positive")


# ================================================================================================
#                                        the run log
# ================================================================================================


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from ..checkpoint import atomic_write_bytes

    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write_bytes(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _git_commit(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "env.json").read_text()).get("git_commit")
    except (OSError, ValueError):
        return None


def _log_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of the run's ``log.jsonl`` (train and eval); [] when it is missing or unreadable."""
    try:
        return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _curve(run_dir: Path, keys: tuple[str, ...], points: int = 60) -> list[dict[str, float]]:
    """The run's train log rows (a subset of ``keys``), thinned to about ``points`` rows."""
    rows = [r for r in _log_rows(run_dir) if r.get("split") == "train"]
    stride = max(1, math.ceil(len(rows) / points))
    keep = rows[::stride] + ([rows[-1]] if rows and (len(rows) - 1) % stride else [])
    return [{"step": r["step"], **{k: r[k] for k in keys if k in r}} for r in keep]


def _eval_curve(run_dir: Path) -> list[dict[str, Any]]:
    """The run's evaluation rows (held-out metrics during training)."""
    return [_rounded({k: v for k, v in r.items() if k != "split"}) for r in _log_rows(run_dir) if r.get("split") == "eval"]


def _rounded(d: dict[str, Any], digits: int = 5) -> dict[str, Any]:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in d.items()}


# ================================================================================================
#                                      training one stage
# ================================================================================================


def _calibrate(task, rt, cfg, *, compile_: bool) -> tuple[float, float]:
    """Seconds per optimizer step of ``task`` (a throwaway task: its model is trained a few steps and
    discarded), measured the way the loop steps: autocast, backward, clipping, AdamW."""
    model = task.model.to(rt.device).train()
    groups = task.param_groups()
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "lr_mult"} for g in groups], lr=cfg.optim.lr,
                            betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    fwd = torch.compile(model) if compile_ else model
    n, B = len(task.train_dataset), cfg.run.batch_size
    gen = torch.Generator().manual_seed(12345)

    def step(i: int) -> None:
        batch = to_device(collate_indices(torch.randint(0, n, (B,), generator=gen).tolist()), rt.device)
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            loss, _ = task.loss(fwd, batch, i, 1_000_000)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()

    cuda = rt.device.type == "cuda"
    warmup = (5 if compile_ else 3) if cuda else (3 if compile_ else 2)
    return seconds_per_step(step, rt.device, warmup=warmup, steps=5)


def scale_schedule(cfg, steps: int):
    """A tokenizer config whose step-counted phases (codebook warm-up, locality hold and anneal) are
    scaled from the config's ``run.max_steps`` to ``steps``: the recipe keeps its shape at any budget."""
    f = steps / max(1, cfg.run.max_steps)
    changes: dict[str, Any] = {}
    if getattr(cfg, "vq_warmup_steps", 0):
        changes["vq_warmup_steps"] = max(1, min(steps - 1, round(cfg.vq_warmup_steps * f)))
    loc = getattr(cfg, "locality", None)
    if loc is not None and loc.weight > 0:
        changes["locality"] = loc.replace(hold_steps=max(0, round(loc.hold_steps * f)),
                                          anneal_steps=max(1, round(loc.anneal_steps * f)))
    return cfg.replace(**changes) if changes else cfg



def stage_config(cfg, steps: int, run_dir: Path, resume: bool = False):
    """The config a stage of ``steps`` planned steps trains with: a tokenizer's step-counted phases
    scaled from the config's own ``run.max_steps`` (:func:`scale_schedule`), or, for a resumed stage,
    those it started with (its ``config.yaml``). Other configs are returned as they are."""
    if not hasattr(cfg, "vq_warmup_steps"):
        return cfg
    cfg = scale_schedule(cfg, steps)
    return _schedule_as_started(cfg, run_dir) if resume else cfg


def _schedule_as_started(cfg, run_dir: Path):
    """``cfg`` with the step-counted phases (codebook warm-up, locality hold and anneal) that the stage
    in ``run_dir`` started with (its ``config.yaml``): a resumed stage keeps its schedule, also when the
    recipe computes it otherwise now (the loop refuses to resume under another config)."""
    import yaml

    try:
        old = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return cfg
    changes: dict[str, Any] = {}
    if isinstance(old.get("vq_warmup_steps"), int):
        changes["vq_warmup_steps"] = old["vq_warmup_steps"]
    loc, before = getattr(cfg, "locality", None), old.get("locality")
    if loc is not None and isinstance(before, dict) and {"hold_steps", "anneal_steps"} <= before.keys():
        changes["locality"] = loc.replace(hold_steps=int(before["hold_steps"]), anneal_steps=int(before["anneal_steps"]))
    return cfg.replace(**changes) if changes else cfg


def _run_stage(name: str, task, cfg, plan: StagePlan, run_dir: Path, rt, progress: bool, *,
               evals: int = 1, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` for ``plan.steps`` through the shared loop (continuing the checkpoint in
    ``run_dir`` when ``resume``); evaluate ``evals`` times; stop early on the stage deadline."""
    from .loop import train

    cfg = cfg.replace(
        run=cfg.run.replace(max_steps=plan.steps, log_every=plan.log_every, save_every=plan.save_every,
                            eval_every=max(1, math.ceil(plan.steps / max(1, evals)))),
        optim=cfg.optim.replace(warmup_steps=plan.warmup_steps),
    )
    t0 = time.monotonic()
    stopped = False
    try:
        result = train(task, run=cfg.run, optim=cfg.optim, config=cfg, run_dir=run_dir, rt=rt, progress=progress,
                       resume=resume)
        last_eval = result.get("eval", {})
    except BudgetExceeded:
        stopped = True
        last_eval = task.evaluate(task.model, task.steps_done, run_dir)
    wall = time.monotonic() - t0
    steps = task.steps_done
    return {
        "steps": steps,
        "planned_steps": plan.steps,
        "batch_size": cfg.run.batch_size,
        "clips_seen": steps * cfg.run.batch_size,
        "lr": cfg.optim.lr,
        "warmup_steps": plan.warmup_steps,
        "precision": "bf16" if rt.dtype == torch.bfloat16 else "fp32",
        "compile": cfg.run.compile,
        "wall_s": round(wall, 2),
        "stopped_by_budget": stopped,
        "plan": _rounded(plan.to_dict()),
        "eval": _rounded(last_eval),
        "curve": _curve(run_dir, tuple(getattr(task, "display_keys", ("loss",))) + ("lr", "sec_per_step")),
        "eval_curve": _eval_curve(run_dir),
        "config": cfg.to_dict(),
        "run_dir": str(run_dir),
    }


MIN_STEPS = 4
CHECKPOINT_EVERY_S = 180.0  #: a stage checkpoints at least this often (exact resume after a kill)


def _stage_plan(name: str, budget: Budget, weight: float, after: list[float], reserve_s: float, sps: float,
                *, cuda: bool, fixed_s: float, squeeze: bool) -> tuple[StagePlan, float, bool]:
    """(plan, share_s, squeezed): the share is what is left for this stage now (after its calibration).

    When fewer than ``MIN_STEPS`` steps fit, the first stage fails (nothing is lost yet: raise the
    budget); a later stage (``squeeze``) runs ``MIN_STEPS`` steps anyway, past its share, rather than
    lose the models already trained."""
    share = budget.share(weight, after, reserve_s)
    overhead = 0.1 if cuda else 0.15
    checkpoints = max(8, math.ceil(share / CHECKPOINT_EVERY_S))  # a kill loses at most a few minutes
    try:
        return (plan_steps(share, sps, overhead=overhead, fixed_s=fixed_s, min_steps=MIN_STEPS,
                           checkpoints=checkpoints), share, False)
    except ValueError as exc:
        if not squeeze:
            raise ValueError(f"{name}: {budget.remaining():.1f} s of the budget left, {reserve_s:.1f} s of it kept for "
                             f"the work after the training stages (encoding the pool, writing): {exc} or lower "
                             "--pool-clips") from None
    need = fixed_s + (MIN_STEPS + 0.5) * sps * (1 + overhead)
    return plan_steps(need, sps, overhead=overhead, fixed_s=fixed_s, min_steps=MIN_STEPS), need, True


def _deadline(budget: Budget, share_s: float, reserve_s: float, name: str, squeezed: bool) -> Deadline:
    """Hard stop of a stage: 25% past its share, and never into the reserve of the stages after it
    (a squeezed stage, already past the budget: twice its share)."""
    now = time.monotonic()
    at = now + 2 * share_s if squeezed else min(now + 1.25 * share_s, budget.deadline - 0.5 * reserve_s)
    return Deadline(at, name)


# ================================================================================================
#                                   outputs and their limits
# ================================================================================================


def _params_bytes(model: nn.Module, bytes_per: int = 2) -> int:
    return sum(p.numel() * (bytes_per if p.is_floating_point() else p.element_size()) for p in model.state_dict().values())


def check_bundle(out: Path, max_files: int, max_file_mb: float) -> dict[str, int]:
    """{relative path: bytes} of every file under ``out``; raises :class:`BundleLimitError` when there are
    more than ``max_files`` files or one is larger than ``max_file_mb`` MB."""
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    big = {k: v for k, v in files.items() if v > max_file_mb * 2**20}
    if big:
        raise BundleLimitError(f"{out}: files over {max_file_mb:g} MB: "
                               + ", ".join(f"{k} ({v / 2**20:.1f} MB)" for k, v in big.items()))
    if len(files) > max_files:
        raise BundleLimitError(f"{out}: {len(files)} files, more than the {max_files} allowed: {sorted(files)}")
    return files


# ================================================================================================
#                                          configs
# ================================================================================================


def _load_configs(recipe: SizeRecipe, cuda: bool, run: BundledRunConfig):
    """(tokenizer, generator, frame predictor) training configs of ``recipe`` for this device."""
    import yaml

    from .config import train_config_from_dict

    def read(name: str) -> dict[str, Any]:
        path = CONFIGS / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the bundled recipe reads the config files of the larp_lab repository")
        return yaml.safe_load(path.read_text(encoding="utf-8"))

    k = 0 if cuda else 1
    t = read(recipe.tokenizer_config)
    if run.data is not None:  # --data: every model trains on that kind of clip
        t.setdefault("data", {})["sources"] = [{"kind": run.data}]
    t["model_overrides"] = {**t.get("model_overrides", {}), **recipe.tokenizer_overrides}
    t.setdefault("run", {}).update(batch_size=recipe.tokenizer_batch[k], seed=run.seed, precision="auto",
                                   compile=run.compile)
    lr = run.tokenizer_lr if run.tokenizer_lr is not None else recipe.tokenizer_lr[k]
    if lr is not None:
        t.setdefault("optim", {})["lr"] = lr
    t.setdefault("data", {})["num_workers"] = 0
    tok_cfg = train_config_from_dict(t, "tokenizer")
    gens = []
    for name in (recipe.generator_config, recipe.predictor_config):
        g = read(name)
        # the generators learn the tokens of the pool's labelled clips (not of photo pans): their classes
        g.setdefault("data", {})["sources"] = [{"kind": pool_data(tok_cfg)}]
        g.setdefault("run", {}).update(batch_size=recipe.generator_batch[k], seed=run.seed, precision="auto",
                                       compile=run.compile)
        if recipe.generator_lr[k] is not None:
            g.setdefault("optim", {})["lr"] = recipe.generator_lr[k]
        g["model_overrides"] = {**g.get("model_overrides", {}), **recipe.generator_overrides}
        g.setdefault("data", {})["num_workers"] = 0
        gens.append(train_config_from_dict(g, "generator"))
    m = tok_cfg.model
    for g in gens:
        if (g.data.frames, g.data.size) != (m.frame_num, m.input_size):
            raise ValueError(f"generator configs must use the tokenizer's clips ({m.frame_num}x{m.input_size})")
    return tok_cfg, gens[0], gens[1]


def _photo_weight(tok_cfg) -> float:
    weights = {s.kind: 0.0 for s in tok_cfg.data.sources}
    for s in tok_cfg.data.sources:
        weights[s.kind] += s.weight
    unknown = set(weights) - {"synthetic", "photos", "digits"}
    if unknown:
        raise ValueError(f"the clip pool makes synthetic, digit and photo clips only; the tokenizer config also names "
                         f"{sorted(unknown)}")
    if "digits" in weights and len(weights) > 1:
        raise ValueError("a moving-digits pool holds digits only; the tokenizer config mixes in "
                         f"{sorted(set(weights) - {'digits'})}")
    return weights.get("photos", 0.0) / sum(weights.values())


def pool_data(tok_cfg) -> str:
    """What the pool's labelled rows hold: ``digits`` or ``synthetic`` (from the tokenizer config's sources)."""
    return "digits" if {s.kind for s in tok_cfg.data.sources} == {"digits"} else "synthetic"


def class_names(data: str) -> tuple[str, ...]:
    """Class names of the pool's labels."""
    if data == "digits":
        from ..data.digits import DIGIT_NAMES

        return DIGIT_NAMES
    from ..data.synthetic import CLASS_NAMES

    return CLASS_NAMES


# ================================================================================================
#                                          the run
# ================================================================================================


def _say(msg: str, budget: Budget | None = None) -> None:
    at = f" t={budget.elapsed():.1f}s" if budget is not None else ""
    print(f"[train_bundled{at}] {msg}", flush=True)


def _pool_specs(recipe: SizeRecipe, run: BundledRunConfig, cuda: bool, tok_cfg, photo_weight: float):
    syn, ph = recipe.pool[0 if cuda else 1]
    if run.pool_clips is not None or run.photo_fraction is not None:
        total = run.pool_clips if run.pool_clips is not None else syn + ph
        frac = run.photo_fraction if run.photo_fraction is not None else ph / (syn + ph)
        ph = round(total * frac)
        syn = total - ph
    if photo_weight == 0.0:
        syn, ph = syn + ph, 0
    if syn < 20:
        raise ValueError(f"the pool needs at least 20 synthetic clips (the generators train on them), got {syn}")
    m = tok_cfg.model
    vs, vp = recipe.heldout[0 if cuda else 1]
    data = pool_data(tok_cfg)
    train = PoolSpec(syn, ph, m.frame_num, m.input_size, seed=run.seed, data=data, split="train")
    heldout = PoolSpec(vs, vp if ph else 0, m.frame_num, m.input_size, seed=run.seed + 10_000, data=data,
                       split="heldout")
    return train, heldout


def _new_dir(path: Path, what: str) -> Path:
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{what} {path} is not empty; give a new one")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class _Run:
    """What the stages of one :func:`train_bundled` call share."""

    cfg: BundledRunConfig
    budget: Budget
    rt: Any
    out: Path
    work: Path
    log: dict[str, Any]
    final_reserve: float  #: seconds kept for the last writes and checks
    meta: dict[str, Any]  #: metadata stored in every model's config.json

    @property
    def cuda(self) -> bool:
        return self.rt.device.type == "cuda"

    def save_log(self) -> None:
        self.log["elapsed_s"] = round(self.budget.elapsed(), 2)
        _write_json(self.out / LOG_NAME, self.log)

    def save_model(self, model, name: str, **metadata: Any) -> None:
        model.save_pretrained(self.out / name, metadata={**self.meta, "bundled": name, **metadata}, dtype=torch.float16)
        check_bundle(self.out, self.cfg.max_files, self.cfg.max_file_mb)

    def empty_cache(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()

    def say(self, msg: str) -> None:
        _say(msg, self.budget)


def _last_logged_step(run_dir: Path) -> int:
    return max((int(r["step"]) for r in _log_rows(run_dir) if "step" in r), default=0)


def _train_stage(r: _Run, key: str, make_task, cfg, weight: float, weights_after: list[float],
                 reserve: Callable[[float], float], eval_steps: float, squeeze: bool,
                 evals: int = 1) -> tuple[Any, dict[str, Any]]:
    """Calibrate on a throwaway task, plan the steps inside the stage's share (``reserve(sec_per_step)``
    seconds are kept for the work after the training stages), then train a fresh task through the
    loop in ``work/<key>``: (trained task, stage record).

    The plan is written to the run log before training starts; a ``--resume`` run finds it there
    and continues the stage's last checkpoint with the same plan (no new calibration), so the
    resumed stage trains exactly the steps it would have trained without the interruption."""
    from .state import find_state

    t0 = time.monotonic()
    prev = r.log["stages"].get(key) or {}
    run_dir = r.work / key
    if r.cfg.resume and prev.get("status") == "running":
        plan = StagePlan(**{k: prev["plan"][k] for k in StagePlan.__dataclass_fields__})
        share, reserve_s, squeezed = prev["planned_share_s"], prev["reserve_s"], prev["squeezed"]
        sps, spent = prev["calibration"]["sec_per_step"], prev["calibration"]["seconds"]
        resume = find_state(run_dir / "checkpoints" / "last") is not None
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        left = 1.0 - (_last_logged_step(run_dir) if resume else 0) / max(1, plan.steps)
        deadline = Deadline(min(time.monotonic() + 1.25 * share * left + 30.0, r.budget.deadline - 0.5 * reserve_s)
                            if not squeezed else time.monotonic() + 2 * share * left + 30.0, key)
        r.say(f"{key}: resuming the planned {plan.steps} steps" + (" from its last checkpoint" if resume else
                                                                   " from the start (no checkpoint was written)"))
    else:
        resume = False
        sps, spent = _calibrate(make_task(None), r.rt, cfg, compile_=r.cfg.compile)
        r.empty_cache()
        reserve_s = reserve(sps)
        plan, share, squeezed = _stage_plan(f"stage {key}", r.budget, weight, weights_after, reserve_s, sps,
                                            cuda=r.cuda, fixed_s=1.5 + evals * eval_steps * sps, squeeze=squeeze)
        r.say(f"{key}: {sps * 1000:.1f} ms/step at batch {cfg.run.batch_size} -> {plan.steps} steps in a "
              f"{share:.1f} s share" + (" (squeezed: past the budget)" if squeezed else ""))
        deadline = _deadline(r.budget, share, reserve_s, key, squeezed)
        if run_dir.exists():  # a stage killed during its calibration: start it afresh
            shutil.rmtree(run_dir)
        r.log["stages"][key] = {"status": "running", "plan": _rounded(plan.to_dict(), 8), "planned_share_s": share,
                                "reserve_s": reserve_s, "squeezed": squeezed,
                                "calibration": {"sec_per_step": sps, "seconds": round(spent, 2)}}
        r.save_log()
    scheduled = hasattr(cfg, "vq_warmup_steps")  # a tokenizer: its step-counted phases follow the plan
    cfg = stage_config(cfg, plan.steps, run_dir, resume)  # the task trains with exactly this config
    torch.manual_seed(r.cfg.seed)
    task = make_task(deadline, cfg) if scheduled else make_task(deadline)
    torch.manual_seed(r.cfg.seed * 1009 + 1)
    rec = _run_stage(key, task, cfg, plan, run_dir, r.rt, r.cfg.progress, evals=evals, resume=resume)
    rec.update(status="done", share_s=round(share + spent, 2), wall_s=round(time.monotonic() - t0, 2),
               reserve_s=round(reserve_s, 2), squeezed=squeezed, resumed=resume,
               calibration={"sec_per_step": round(sps, 5), "seconds": round(spent, 2)})
    return task, rec


@torch.no_grad()
def _encode_pool(tok, pool: ClipPool, cond_frames: int, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Stage 2: tokens (M, N) int32 of every labelled clip of ``pool`` and of its mirror image (digits:
    its time reversal: a mirrored digit is no digit), the tokens of their conditioning clips (the first
    ``cond_frames`` frames, the last one repeated), the labels, and the pool row ("clip") of each
    sequence; all on ``device``."""
    from ..data.video import repeat_last_frame

    flip_dim = 2 if pool.spec.data == "digits" else -1
    parts: dict[str, list[torch.Tensor]] = {"tokens": [], "cond": [], "labels": [], "clip": []}
    for flip in (False, True):
        for i in range(0, pool.num_synthetic, batch):
            rows = torch.arange(i, min(pool.num_synthetic, i + batch))
            x = pool.gather(rows).to(device)
            if flip:
                x = x.flip(flip_dim)
            parts["tokens"].append(tok.encode(x).indices.to(torch.int32))
            parts["cond"].append(tok.encode(repeat_last_frame(x, cond_frames)).indices.to(torch.int32))
            parts["labels"].append(pool.labels[rows.to(pool.labels.device)].to(device))
            parts["clip"].append(rows.to(device))
    return {k: torch.cat(v) for k, v in parts.items()}


TOKENIZER_EVALS = 8  #: held-out evaluations during the tokenizer stage (its learning curve)


def _resume_log(out: Path, work: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The run log a ``--resume`` continues; a clear error when there is nothing to resume or the
    options differ from the interrupted run's."""
    path = out / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no {LOG_NAME} in {out} (start the run without --resume)")
    if not work.is_dir():
        raise FileNotFoundError(f"--resume: the work directory {work} does not exist")
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"--resume: {path} is not valid JSON ({exc})") from None
    if log.get("format") != LOG_FORMAT:
        raise ValueError(f"--resume: {path} is not a run log of this recipe (format {log.get('format')!r})")
    before = log.get("run", {})
    diff = {k: (before.get(k), v) for k, v in identity.items() if before.get(k) != v}
    if diff:
        raise ValueError("--resume: give the options of the interrupted run; differing (then, now): "
                         + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()))
    if log.get("total_wall_s") is not None and all(v.get("status") == "done" for v in log["stages"].values()
                                                   if isinstance(v, dict) and "status" in v):
        raise ValueError(f"--resume: the run in {out} has finished; nothing to resume")
    log.setdefault("elapsed_s", 0.0)
    return log


def _check_disk(out: Path, work: Path, spec: PoolSpec) -> None:
    """Fail before training when the disks of ``out`` / ``work`` cannot hold the bundle and checkpoints."""
    need = {out: 64 * 2**20, work: 512 * 2**20}
    for path, n in need.items():
        free = shutil.disk_usage(path).free
        if free < n:
            raise OSError(f"{path}: {free / 2**20:.0f} MB free, the run needs about {n / 2**20:.0f} MB there "
                          "(models, checkpoints, logs); free some space or choose another directory")


def train_bundled(run: BundledRunConfig, *, started: float | None = None) -> dict[str, Any]:
    """Train every bundled model into ``run.out`` within ``run.budget_s`` seconds counted from
    ``started`` (a ``time.monotonic()`` value; default now). Returns the run log (also written to
    ``run.out/train_log.json`` after every stage)."""
    from ..bundled import DEFAULT_FRAME_PREDICTOR, DEFAULT_GENERATOR, DEFAULT_TOKENIZER
    from ..models.generator import LARPGenerator
    from ..models.tokenizer import LARPTokenizer
    from .run import fit_generator_to_tokenizer
    from .runtime import setup_runtime, teardown_runtime

    run.validate()
    want_cuda = run.device.startswith("cuda") or (run.device == "auto" and torch.cuda.is_available())
    size = run.size if run.size != "auto" else ("tiny" if want_cuda else "cpu")
    recipe = SIZES[size]
    identity = {"size": size, "data": run.data, "seed": run.seed, "budget_s": run.budget_s, "device": run.device,
                "pool_clips": run.pool_clips, "photo_fraction": run.photo_fraction, "tokenizer_lr": run.tokenizer_lr}
    if run.resume:
        out, work = Path(run.out), Path(run.work)  # type: ignore[arg-type]
        log = _resume_log(out, work, identity)
        budget = Budget(run.budget_s, start=(time.monotonic() if started is None else started) - log["elapsed_s"])
        log.setdefault("resumes", []).append({"at_elapsed_s": log["elapsed_s"], "argv": sys.argv,
                                              "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        _say(f"resuming {out} after {log['elapsed_s']:.0f} s of the {run.budget_s:.0f} s budget; done: "
             + (", ".join(k for k, v in log["stages"].items() if v.get("status") == "done") or "nothing yet"))
    else:
        budget = Budget(run.budget_s, start=started)
        out = _new_dir(Path(run.out), "--out")
        work = _new_dir(Path(run.work), "--work") if run.work else Path(tempfile.mkdtemp(prefix="larp-bundled-work-"))
        log = {
            "format": LOG_FORMAT, "size": size, "run": identity, "argv": sys.argv, "budget_s": run.budget_s,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
            "python": platform.python_version(), "work_dir": str(work), "stages": {},
        }
    tok_cfg, gen_cfg, fp_cfg = _load_configs(recipe, want_cuda, run)
    photo_weight = _photo_weight(tok_cfg)
    names = class_names(pool_data(tok_cfg))
    num_classes = len(names)
    log["data"] = {"kind": pool_data(tok_cfg), "classes": list(names)}
    w = run.weights

    def done(key: str, *paths: str) -> bool:
        return log["stages"].get(key, {}).get("status") == "done" and all((out / p).is_dir() for p in paths)

    # --- weight sizes, before anything is trained ---------------------------------------------------
    probe_tok = LARPTokenizer(tok_cfg.model)  # on the CPU: the meta device would import torch._dynamo (seconds)
    gen_cfg = fit_generator_to_tokenizer(gen_cfg, probe_tok)
    fp_cfg = fit_generator_to_tokenizer(fp_cfg, probe_tok)
    sizes = {DEFAULT_TOKENIZER: _params_bytes(probe_tok), DEFAULT_GENERATOR: _params_bytes(LARPGenerator(gen_cfg.model)),
             DEFAULT_FRAME_PREDICTOR: _params_bytes(LARPGenerator(fp_cfg.model))}
    del probe_tok
    big = {k: v for k, v in sizes.items() if v > run.max_file_mb * 2**20}
    if big:
        raise BundleLimitError(f"fp16 weights over {run.max_file_mb:g} MB: {big}")
    log["planned_weight_bytes"] = sizes

    # --- stage 0: the clip pools (CPU, before CUDA starts: the workers are forked) -------------------
    train_spec, held_spec = _pool_specs(recipe, run, want_cuda, tok_cfg, photo_weight)
    if not run.resume:
        _check_disk(out, work, train_spec)
    _say(f"stage 0: generating {train_spec.clips} + {held_spec.clips} held-out clips "
         f"({train_spec.nbytes / 2**20:.0f} MB) on {run.workers or 'all'} CPU workers", budget)
    pool = generate_pool(train_spec, run.workers)
    val = generate_pool(held_spec, run.workers)
    rt = setup_runtime(run.device, "auto")
    try:
        if rt.distributed:
            raise RuntimeError("train_bundled runs in one process (no torchrun)")
        if (rt.device.type == "cuda") != want_cuda:
            raise RuntimeError(f"device {rt.device} is not the kind the configs were chosen for")
        t_move = time.monotonic()
        if rt.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(rt.device)
            if train_spec.nbytes < 0.4 * free:
                pool = pool.to(rt.device)
            val = val.to(rt.device)
        precision = "bf16" if rt.dtype == torch.bfloat16 else "fp32"
        log.update(device=str(rt.device), device_name=device_name(rt.device), precision=precision, compile=run.compile)
        log["pool"] = {**pool.summary(), "photo_weight": round(photo_weight, 4),
                       "move_s": round(time.monotonic() - t_move, 2), "heldout": val.summary()}
        r = _Run(run, budget, rt, out, work, log, final_reserve=max(1.5, 0.01 * run.budget_s),
                 meta={"made_by": "scripts/train_bundled.py", "size": size, "data": log["data"]["kind"],
                       "device_name": log["device_name"], "torch": torch.__version__, "precision": precision})
        r.say(f"stage 0 done: {len(pool)} clips in {pool.seconds:.1f} s on {pool.workers} workers, pool on "
              f"{pool.device}; device {log['device_name']}, {precision}")
        try:  # the training loop logs to TensorBoard: import it before the stages are timed
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            pass

        # --- stage 4 decision first: a retrain that cannot fit the file limit fails before training --
        t4 = time.monotonic()
        if done("classifier", CLASSIFIER_NAME):
            decision = log["stages"]["classifier"]
        else:
            decision = decide_classifier(run.classifier, val, rt.device, clips=recipe.classifier_clips,
                                         min_accuracy=run.classifier_min_accuracy, num_classes=num_classes)
            decision["decide_s"] = round(time.monotonic() - t4, 2)
            log["stages"]["classifier"] = decision
        retrain = decision["decision"] == "retrain"
        log["planned_files"] = 2 * len(sizes) + 1 + (2 if retrain else 0)
        if log["planned_files"] > run.max_files:
            raise BundleLimitError(
                f"the proxy classifier must change ({decision['reason']}), and with it the bundle would hold "
                f"{log['planned_files']} files (> --max-files {run.max_files}); train it on its own "
                "(larp-lab train-classifier, it needs no GPU) or allow --max-files 9")
        r.say(f"stage 4 decision: {decision['decision']} the proxy classifier ({decision['reason']})")
        r.save_log()

        # --- stage 4, run first: the proxy classifier, when it must change. It needs only the pool, and
        # first it gets its whole share (last, it got what the stages before left over: 38 s once) ---
        if retrain and not done("classifier", CLASSIFIER_NAME):
            share = budget.share(w["classifier"], [w["tokenizer"], w["generator"], w["frame_predictor"]],
                                 r.final_reserve)
            clf, crec = retrain_classifier(pool, val, rt.device, share, num_classes, run.seed)
            clf.save_pretrained(out / CLASSIFIER_NAME, metadata={**r.meta, "bundled": CLASSIFIER_NAME,
                                                                 "val_accuracy": crec["heldout_accuracy"]})
            check_bundle(out, run.max_files, run.max_file_mb)
            log["stages"]["classifier"].update(trained=crec, share_s=round(share, 2), status="done")
            r.save_log()
            r.say(f"stage 4 done: classifier retrained, held-out accuracy {crec['heldout_accuracy']:.1%}")
            del clf

        # --- stage 1: tokenizer + prior -------------------------------------------------------------
        B, n_syn = tok_cfg.run.batch_size, pool.num_synthetic
        if done("tokenizer", DEFAULT_TOKENIZER):
            r.say("stage 1 (tokenizer) was done before the interruption: kept")
        else:
            torch.manual_seed(run.seed + 1)
            snapshots = work / "tokenizer_snapshots"

            def make_tok(dl, stage_cfg=None):
                # the calibration task (dl None) steps in the costliest phase (VQ + prior + locality), not
                # in the cheaper codebook warm-up its first steps would be in: the plan must fit the budget
                c = stage_cfg if stage_cfg is not None else tok_cfg.replace(vq_warmup_steps=0)
                return make_pool_tokenizer_task(c, rt.device, pool, val, photo_weight, dl,
                                                snapshots=snapshots if dl is not None else None)

            task, rec = _train_stage(
                r, "tokenizer", make_tok,
                tok_cfg, w["tokenizer"], [w["generator"], w["frame_predictor"]],
                # stage 2 encodes 4 clips per synthetic clip, each about 1/6 of a training step per clip
                lambda sps: 1.0 + 4 * n_syn * sps / B * 0.2 + r.final_reserve, len(val) / B, squeeze=False,
                evals=TOKENIZER_EVALS)
            log["git_commit"] = _git_commit(work / "tokenizer")
            rec["snapshots"] = str(snapshots)
            r.save_model(task.model, DEFAULT_TOKENIZER, steps=rec["steps"], clips_seen=rec["clips_seen"])
            log["stages"]["tokenizer"] = rec
            r.save_log()
            r.say(f"stage 1 done: {rec['steps']} steps, {rec['clips_seen']} clips, {rec['wall_s']} s; held-out PSNR "
                  f"{rec['eval'].get('psnr', float('nan')):.2f} dB, usage {rec['eval'].get('codebook_usage', 0):.0%}")
            del task
            r.empty_cache()

        # --- stage 2: tokens of the pool, with the tokenizer as shipped (fp16 weights loaded back) --
        t2 = time.monotonic()
        tok = LARPTokenizer.from_pretrained(out / DEFAULT_TOKENIZER, device=rt.device)
        data = _encode_pool(tok, pool, fp_cfg.cond_frames, recipe.encode_batch[0 if r.cuda else 1], rt.device)
        del tok
        n_val_clips = max(2, n_syn // 20)  # the last 5% of the synthetic clips (both mirror images) held out
        is_val = data["clip"] >= n_syn - n_val_clips
        rows = torch.arange(len(data["tokens"]), device=rt.device)
        train_rows, val_rows = rows[~is_val], rows[is_val]
        log["stages"]["encode"] = {"sequences": len(rows), "train_sequences": len(train_rows),
                                   "val_sequences": len(val_rows), "cond_frames": fp_cfg.cond_frames,
                                   "augmentation": "each synthetic clip and its mirror image",
                                   "codes_used": int(data["tokens"].unique().numel()),
                                   "wall_s": round(time.monotonic() - t2, 2)}
        r.save_log()
        r.say(f"stage 2 done: {len(rows)} token sequences in {log['stages']['encode']['wall_s']} s")

        # --- stage 3: class-conditional generator, then frame predictor -----------------------------
        stage3 = (("generator", gen_cfg, DEFAULT_GENERATOR, [w["frame_predictor"]]),
                  ("frame_predictor", fp_cfg, DEFAULT_FRAME_PREDICTOR, []))
        for key, gcfg, name, weights_after in stage3:
            if done(key, name):
                r.say(f"stage 3 {key} was done before the interruption: kept")
                continue
            torch.manual_seed(run.seed + 2)
            task, rec = _train_stage(
                r, key, lambda dl, c=gcfg: TokenTask(c, data, train_rows, val_rows, rt.device, dl), gcfg, w[key],
                weights_after, lambda sps: r.final_reserve, len(val_rows) / 256, squeeze=True)
            rec["sequences_seen"] = rec["clips_seen"]
            r.save_model(task.model, name, steps=rec["steps"], sequences_seen=rec["clips_seen"],
                         tokenizer=DEFAULT_TOKENIZER)  # the tokens it learned (app: handlers.check_pairing)
            log["stages"][key] = rec
            r.save_log()
            r.say(f"stage 3 {key} done: {rec['steps']} steps, {rec['wall_s']} s; val NLL "
                  f"{rec['eval'].get('val_nll', float('nan')):.3f} nats/token")
            del task
            r.empty_cache()

        log["total_wall_s"] = round(budget.elapsed(), 2)
        log["within_budget"] = budget.elapsed() <= run.budget_s
        log["files"] = {}
        r.save_log()
        log["files"] = check_bundle(out, run.max_files, run.max_file_mb)  # the log's own size: its last version
        r.save_log()
        log["files"] = check_bundle(out, run.max_files, run.max_file_mb)
        r.say(f"done in {log['total_wall_s']} s of a {run.budget_s:.0f} s budget: {out} ({len(log['files'])} files)")
        return log
    finally:
        teardown_runtime(rt)
