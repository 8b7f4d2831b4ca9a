"""The patch-token twin of a bundled run (issue 19: what do holistic tokens buy?).

:func:`train_patch_twin` reads a finished bundled run's ``train_log.json`` and trains, on *the same
clips* (the pool is regenerated from the run's seed and sizes), with *the same step counts and
batches* (the plans the run logged), the same seeds and the same recipe:

1. a tokenizer whose tokens are the encoder's outputs at its patches (``token_mode="patch"``,
   ``configs/tokenizer_digits_patch.yaml``: 4x4x4 patches of 2 frames x 8x8 pixels = 64 tokens, the
   same 1024-code codebook, bottleneck and decoder) instead of learned holistic queries, with its
   prior (the step-counted phases scaled exactly as the bundled tokenizer's were; no locality loss:
   a patch token is tied to its patch already);
2. a class-conditional generator of the bundled generator's config and step count on its tokens.

Only the budget *in steps* is matched: the patch encoder reads 64 tokens where the holistic one reads
512 patches + 64 queries, so the twin's steps are cheaper; ``train_log.json`` records both walls.
The output directory holds ``larp-tiny-patch-tokenizer`` (bundled format, fp16), the generator
``larp-tiny-patch-generator`` (measured, not shipped: the bundle's size budget) and its own log.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .budget import Deadline, StagePlan
from .bundled_recipe import (
    SIZES,
    BundledRunConfig,
    _encode_pool,
    _load_configs,
    _photo_weight,
    _pool_specs,
    _run_stage,
    _write_json,
    stage_config,
)
from .pool import generate_pool
from .pool_tasks import TokenTask, make_pool_tokenizer_task

__all__ = ["PATCH_GENERATOR", "PATCH_TOKENIZER", "TWIN_CONFIG", "train_patch_twin"]

PATCH_TOKENIZER = "larp-tiny-patch-tokenizer"
PATCH_GENERATOR = "larp-tiny-patch-generator"
TWIN_CONFIG = "tokenizer_digits_patch.yaml"
TWIN_LOG = "patch_twin_log.json"
TWIN_FORMAT = "larp_lab.patch_twin/1"


def _plan(stage: dict[str, Any]) -> StagePlan:
    return StagePlan(**{k: stage["plan"][k] for k in StagePlan.__dataclass_fields__})


def twin_run_config(log: dict[str, Any], out: Path, device: str = "cpu") -> BundledRunConfig:
    """The :class:`BundledRunConfig` of the run that wrote ``log`` (its pool, seed and learning rate)."""
    ident = log["run"]
    return BundledRunConfig(out=str(out), budget_s=float(ident["budget_s"]), device=device, size=log["size"],
                            data=ident.get("data"), seed=int(ident["seed"]), pool_clips=ident.get("pool_clips"),
                            photo_fraction=ident.get("photo_fraction"), tokenizer_lr=ident.get("tokenizer_lr"))


def train_patch_twin(bundle_log: Path, out: Path, work: Path, *, device: str = "cpu", progress: bool = False,
                     resume: bool = False) -> dict[str, Any]:
    """Train the patch twin of the run that wrote ``bundle_log`` into ``out`` (run folders with
    checkpoints in ``work``; ``resume`` continues them exactly). Returns the twin's log, also written
    to ``out/patch_twin_log.json`` after each stage."""
    from ..models.generator import LARPGenerator  # noqa: F401  (TokenTask builds it)
    from ..models.tokenizer import LARPTokenizer
    from .run import fit_generator_to_tokenizer
    from .runtime import setup_runtime, teardown_runtime
    from .state import find_state

    src = json.loads(Path(bundle_log).read_text(encoding="utf-8"))
    for key in ("tokenizer", "generator"):
        if src.get("stages", {}).get(key, {}).get("status") != "done":
            raise ValueError(f"{bundle_log}: its {key} stage did not finish; the twin copies finished plans only")
    run = twin_run_config(src, out, device)
    recipe = dataclasses.replace(SIZES[run.size], tokenizer_config=TWIN_CONFIG)
    cuda = device.startswith("cuda")
    tok_cfg, gen_cfg, _ = _load_configs(recipe, cuda, run)
    if tok_cfg.model.token_mode != "patch":
        raise ValueError(f"configs/{TWIN_CONFIG} must set token_mode: patch")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log_path = out / TWIN_LOG
    log: dict[str, Any] = (json.loads(log_path.read_text(encoding="utf-8")) if resume and log_path.is_file() else
                           {"format": TWIN_FORMAT, "twin_of": str(bundle_log), "argv": sys.argv, "stages": {},
                            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def save() -> None:
        _write_json(log_path, log)

    train_spec, held_spec = _pool_specs(SIZES[run.size], run, cuda, tok_cfg, _photo_weight(tok_cfg))
    pool, val = generate_pool(train_spec, run.workers), generate_pool(held_spec, run.workers)
    rt = setup_runtime(device, "auto")
    no_deadline = Deadline(math.inf, "twin")
    try:
        # --- the patch tokenizer: the bundled tokenizer's plan, step for step ----------------------
        if log["stages"].get("tokenizer", {}).get("status") != "done":
            plan = _plan(src["stages"]["tokenizer"])
            run_dir = work / "tokenizer"
            again = resume and find_state(run_dir / "checkpoints" / "last") is not None
            cfg = stage_config(tok_cfg, plan.steps, run_dir, again)
            torch.manual_seed(run.seed)
            task = make_pool_tokenizer_task(cfg, rt.device, pool, val, 0.0, no_deadline)
            torch.manual_seed(run.seed * 1009 + 1)
            rec = _run_stage("tokenizer", task, cfg, plan, run_dir, rt, progress, evals=8, resume=again)
            task.model.save_pretrained(out / PATCH_TOKENIZER, dtype=torch.float16, metadata={
                "made_by": "larp_lab.training.patch_twin", "bundled": PATCH_TOKENIZER, "twin_of": "larp-tiny-tokenizer",
                "steps": rec["steps"], "clips_seen": rec["clips_seen"], "data": train_spec.data})
            rec.update(status="done", holistic_wall_s=src["stages"]["tokenizer"]["wall_s"])
            log["stages"]["tokenizer"] = rec
            save()
            del task

        # --- its tokens, then the generator with the bundled generator's plan ----------------------
        if log["stages"].get("generator", {}).get("status") != "done":
            tok = LARPTokenizer.from_pretrained(out / PATCH_TOKENIZER, device=rt.device)
            gcfg = fit_generator_to_tokenizer(gen_cfg, tok)
            data = _encode_pool(tok, pool, 1, SIZES[run.size].encode_batch[0 if cuda else 1], rt.device)
            del tok
            n_syn = pool.num_synthetic
            is_val = data["clip"] >= n_syn - max(2, n_syn // 20)  # the split of train_bundled's stage 2
            rows = torch.arange(len(data["tokens"]), device=rt.device)
            plan = _plan(src["stages"]["generator"])
            run_dir = work / "generator"
            again = resume and find_state(run_dir / "checkpoints" / "last") is not None
            torch.manual_seed(run.seed)
            task = TokenTask(gcfg, data, rows[~is_val], rows[is_val], rt.device, no_deadline)
            torch.manual_seed(run.seed * 1009 + 1)
            rec = _run_stage("generator", task, gcfg, plan, run_dir, rt, progress, evals=1, resume=again)
            task.model.save_pretrained(out / PATCH_GENERATOR, dtype=torch.float16, metadata={
                "made_by": "larp_lab.training.patch_twin", "twin_of": "larp-tiny-generator",
                "tokenizer": PATCH_TOKENIZER, "steps": rec["steps"]})
            rec.update(status="done", holistic_wall_s=src["stages"]["generator"]["wall_s"],
                       codes_used=int(data["tokens"].unique().numel()))
            log["stages"]["generator"] = rec
            save()
        log["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        save()
        return log
    finally:
        teardown_runtime(rt)
