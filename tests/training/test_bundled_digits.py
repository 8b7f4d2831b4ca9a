"""The moving-digits side of the bundled recipe: digits pools, the pool tokenizer task's augmentation,
warm-up clips and snapshots, the scaled schedule, and ``--resume`` (its errors, and, slow, a real
kill and resume of ``scripts/train_bundled.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from larp_lab.data.digits import DIGIT_NAMES, MovingDigits
from larp_lab.training.budget import StagePlan
from larp_lab.training.bundled_recipe import (
    LOG_FORMAT,
    LOG_NAME,
    SIZES,
    BundledRunConfig,
    _load_configs,
    _photo_weight,
    _pool_specs,
    _resume_log,
    _run_stage,
    class_names,
    pool_data,
    scale_schedule,
    snapshot_steps,
    stage_config,
    train_bundled,
)
from larp_lab.training.config import train_config_from_dict
from larp_lab.training.pool import PoolSpec, generate_pool
from larp_lab.training.pool_tasks import make_pool_tokenizer_task

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_bundled.py"

# ------------------------------------------------------------------------------------------------
# digits pools
# ------------------------------------------------------------------------------------------------


def test_a_digits_pool_is_moving_digits_rendered():
    spec = PoolSpec(synthetic=2100, frames=2, size=8, seed=3, data="digits")  # two render chunks of 2048
    pool = generate_pool(spec, workers=2)
    clips, labels = MovingDigits(2100, frames=2, size=8, seed=3).render(range(2100))
    assert pool.clips.dtype == torch.uint8 and pool.clips.shape == (2100, 3, 2, 8, 8)
    assert np.array_equal(pool.clips.numpy(), clips) and np.array_equal(pool.labels.numpy(), labels)
    assert pool.labels.dtype == torch.int64 and set(pool.labels.tolist()) == set(range(10))
    assert pool.num_synthetic == 2100 and pool.num_photos == 0
    s = pool.summary()
    assert (s["data"], s["split"], s["clips"], s["synthetic"], s["photos"]) == ("digits", "train", 2100, 2100, 0)
    # float view: byte v stands for v / 127.5 - 1, as MovingDigits' items
    assert torch.equal(pool.gather(torch.tensor([7]))[0], MovingDigits(2100, frames=2, size=8, seed=3)[7]["video"])


def test_a_heldout_digits_pool_uses_the_heldout_images():
    held = generate_pool(PoolSpec(40, frames=4, size=32, seed=10_000, data="digits", split="heldout"))
    clips, labels = MovingDigits(40, frames=4, size=32, seed=10_000, split="heldout").render(range(40))
    assert np.array_equal(held.clips.numpy(), clips) and np.array_equal(held.labels.numpy(), labels)
    train = generate_pool(PoolSpec(40, frames=4, size=32, seed=10_000, data="digits"))
    assert not torch.equal(held.clips, train.clips) and held.summary()["split"] == "heldout"


@pytest.mark.parametrize("spec, match", [
    (PoolSpec(10, data="mnist"), "pool data must be 'synthetic' or 'digits'"),
    (PoolSpec(10, data="digits", split="val"), "pool split must be 'train' or 'heldout'"),
    (PoolSpec(10, 2, data="digits"), "holds no photo clips"),
])
def test_bad_digits_pool_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        spec.validate()
    with pytest.raises(ValueError, match=match):
        generate_pool(spec)


def test_the_cpu_size_trains_on_digits_pools_with_a_heldout_twin():
    run = BundledRunConfig(out="unused", budget_s=60, device="cpu", size="cpu", data="digits")
    tok_cfg, gen_cfg, fp_cfg = _load_configs(SIZES["cpu"], False, run)
    assert [s.kind for s in tok_cfg.data.sources] == ["digits"] and pool_data(tok_cfg) == "digits"
    assert [s.kind for s in gen_cfg.data.sources] == [s.kind for s in fp_cfg.data.sources] == ["digits"]
    assert class_names("digits") == DIGIT_NAMES and len(class_names("synthetic")) == 12
    assert _photo_weight(tok_cfg) == 0.0
    train, held = _pool_specs(SIZES["cpu"], run, False, tok_cfg, 0.0)
    m = tok_cfg.model
    assert (m.frame_num, m.input_size) == (8, 32)
    assert train == PoolSpec(24_000, 0, 8, 32, seed=0, data="digits", split="train")
    assert held == PoolSpec(256, 0, 8, 32, seed=10_000, data="digits", split="heldout")
    syn = _load_configs(SIZES["cpu"], False, BundledRunConfig(out="unused", budget_s=60, data="synthetic"))[0]
    assert pool_data(syn) == "synthetic" and _pool_specs(SIZES["cpu"], run, False, syn, 0.0)[0].data == "synthetic"


def test_the_generators_learn_the_classes_of_the_pools_labelled_clips():
    """Tokenizer sources of synthetic clips and photo pans (configs/tokenizer_tiny.yaml): the generators
    train on the tokens of the labelled (synthetic) clips only, so they get the 12 motion classes."""
    from larp_lab.training.run import fit_generator_to_tokenizer

    for data, kinds, n in ((None, ["synthetic"], 12), ("synthetic", ["synthetic"], 12), ("digits", ["digits"], 10)):
        run = BundledRunConfig(out="unused", budget_s=60, device="cpu", size="micro", data=data)
        tok_cfg, gen_cfg, fp_cfg = _load_configs(SIZES["micro"], False, run)
        assert [s.kind for s in gen_cfg.data.sources] == [s.kind for s in fp_cfg.data.sources] == kinds, data
        probe = SimpleNamespace(config=tok_cfg.model)
        assert fit_generator_to_tokenizer(gen_cfg, probe).model.num_classes == n == len(class_names(pool_data(tok_cfg)))
    mixed = _load_configs(SIZES["micro"], False, BundledRunConfig(out="unused", budget_s=60, size="micro"))[0]
    assert {s.kind for s in mixed.data.sources} == {"synthetic", "photos"}  # the tokenizer still sees photos


def test_a_digits_pool_cannot_mix_in_other_clips():
    d = yaml.safe_load((REPO / "configs" / "tokenizer_digits.yaml").read_text())
    d["data"]["sources"] = [{"kind": "digits"}, {"kind": "photos", "weight": 0.5}]
    with pytest.raises(ValueError, match="holds digits only.*photos"):
        _photo_weight(train_config_from_dict(d, "tokenizer"))


# ------------------------------------------------------------------------------------------------
# the pool tokenizer task: augmentation, warm-up clips, snapshots
# ------------------------------------------------------------------------------------------------


def _tiny_tokenizer_config(**changes):
    """configs/tokenizer_digits.yaml with a very small model (a CPU second per few dozen steps)."""
    d = yaml.safe_load((REPO / "configs" / "tokenizer_digits.yaml").read_text())
    d["model_overrides"].update(input_size=16, frame_num=4, encoder_hidden_size=32, decoder_hidden_size=32, encoder_num_heads=2,
                                decoder_num_heads=2, encoder_depth=1, decoder_depth=1, num_tokens=16,
                                patch_size=8, decoder_patch_size=8, codebook_size=32,
                                prior={"n_layer": 1, "n_head": 2, "n_embd": 32, "name": "gptc-micro",
                                       "max_positions": 32})
    d["data"].update(frames=4, size=16)
    d.update(changes)
    return train_config_from_dict(d, "tokenizer")


def _pools(data: str):
    if data == "digits":
        return (generate_pool(PoolSpec(32, frames=4, size=16, seed=0, data="digits")),
                generate_pool(PoolSpec(8, frames=4, size=16, seed=10_000, data="digits", split="heldout")))
    return (generate_pool(PoolSpec(32, frames=4, size=16, seed=0), workers=1),
            generate_pool(PoolSpec(8, frames=4, size=16, seed=10_000), workers=1))


@pytest.mark.parametrize("data", ["digits", "synthetic"])
def test_the_pool_task_never_mirrors_digits(data):
    pool, val = _pools(data)
    task = make_pool_tokenizer_task(_tiny_tokenizer_config(), torch.device("cpu"), pool, val, 0.0, None)
    torch.manual_seed(0)
    kinds = set()
    for _ in range(4):
        index = torch.arange(32)
        x = task.clips(index)  # (32, 3, T, S, S) in [-1, 1]
        for a, b in zip(pool.gather(index), x):
            options = {"id": a, "h": a.flip(-1), "t": a.flip(1), "ht": a.flip(-1).flip(1)}
            found = {k for k, v in options.items() if torch.equal(v, b)}
            assert found, "every clip is the pool clip, flipped and/or reversed"
            kinds |= found
    if data == "digits":  # a mirrored digit is no digit: time reversal only
        assert kinds == {"id", "t"}
    else:
        assert kinds == {"id", "h", "t", "ht"}


def test_the_codebook_warmup_reads_the_pools_labelled_clips_unaugmented():
    pool, val = _pools("digits")
    task = make_pool_tokenizer_task(_tiny_tokenizer_config(), torch.device("cpu"), pool, val, 0.0, None)
    ds = task.warmup_dataset()
    assert len(ds) == 32
    for i in (0, 5, 31):
        assert torch.equal(ds[i]["video"], pool.gather(torch.tensor([i]))[0])


def test_snapshots_are_saved_at_log_spaced_steps(tmp_path):
    from larp_lab import LARPTokenizer
    from larp_lab.checkpoint import read_safetensors_header

    pool, val = _pools("digits")
    cfg = _tiny_tokenizer_config(vq_warmup_steps=0, locality=None, dead_code_restart_every=0)
    snaps = tmp_path / "snapshots"
    task = make_pool_tokenizer_task(cfg, torch.device("cpu"), pool, val, 0.0, None, snapshots=snaps)
    quiet = make_pool_tokenizer_task(cfg, torch.device("cpu"), pool, val, 0.0, None)  # no snapshots
    steps = 28
    with torch.no_grad():
        for step in range(steps):
            batch = {"index": torch.tensor([step % 32, (step + 1) % 32])}
            for t in (task, quiet):
                t.loss(t.model, batch, step, steps)
                t.after_step(batch, step)
    want = snapshot_steps(steps)
    assert want == [25, 26, 27, 28]
    assert sorted(p.name for p in snaps.iterdir()) == [f"step{s:06d}" for s in want]
    for s in want:
        d = snaps / f"step{s:06d}"
        meta = json.loads((d / "config.json").read_text())["metadata"]
        assert meta["snapshot_step"] == s and meta["max_steps"] == steps
        assert {dt for dt, _ in read_safetensors_header(d / "model.safetensors").values()} == {"F16"}
    tok = LARPTokenizer.from_pretrained(snaps / "step000028")
    assert tok.config == cfg.model
    assert task.steps_done == steps and not any(tmp_path.glob("step*"))


# ------------------------------------------------------------------------------------------------
# snapshot steps, the scaled schedule
# ------------------------------------------------------------------------------------------------


def test_snapshot_steps_are_log_spaced_distinct_and_end_at_the_last_step():
    s = snapshot_steps(8911)
    assert len(s) == 8 and s[0] == 25 and s[-1] == 8911 and s == sorted(set(s))
    ratios = np.diff(np.log(s))
    assert np.allclose(ratios, ratios.mean(), rtol=0.01)  # equal ratios: log-spaced
    for steps in (26, 30, 33, 100, 1000):
        s = snapshot_steps(steps)
        assert s == sorted(set(s)) and s[-1] == steps and s[0] >= 25 and 2 <= len(s) <= 8, (steps, s)
    assert snapshot_steps(30) == [25, 26, 27, 28, 29, 30]
    for small in (1, 4, 25):  # small counts: one snapshot, the trained model
        assert snapshot_steps(small) == [small]
    assert snapshot_steps(1000, count=3) == [25, 158, 1000]
    assert snapshot_steps(100, count=4, first=1) == [1, 5, 22, 100]


def _digits_config():
    return train_config_from_dict(yaml.safe_load((REPO / "configs" / "tokenizer_digits.yaml").read_text()), "tokenizer")


def test_scale_schedule_keeps_the_recipes_proportions():
    cfg = _digits_config()
    assert cfg.run.max_steps == 10_000 and cfg.vq_warmup_steps == 1200
    assert (cfg.locality.hold_steps, cfg.locality.anneal_steps) == (1200, 1000)
    for steps, (warm, hold, anneal) in ((2000, (240, 240, 200)), (8911, (1069, 1069, 891)),
                                        (20_000, (2400, 2400, 2000)), (10_000, (1200, 1200, 1000))):
        c = scale_schedule(cfg, steps)
        assert (c.vq_warmup_steps, c.locality.hold_steps, c.locality.anneal_steps) == (warm, hold, anneal), steps
        assert c.locality.weight == cfg.locality.weight and c.run == cfg.run  # nothing else changes
    tiny = scale_schedule(cfg, 5)  # a handful of steps: every phase at least one step, warm-up before the end
    assert tiny.vq_warmup_steps == 1 and tiny.locality.anneal_steps >= 1 and tiny.locality.hold_steps >= 0
    assert scale_schedule(cfg, 600).vq_warmup_steps == 72
    plain = train_config_from_dict(yaml.safe_load((REPO / "configs" / "tokenizer_tiny.yaml").read_text()), "tokenizer")
    assert scale_schedule(plain, 123) is plain  # no warm-up, no locality: nothing to scale
    off = cfg.replace(locality=cfg.locality.replace(weight=0.0), vq_warmup_steps=0)
    assert scale_schedule(off, 123) is off


def test_a_stage_trains_with_the_schedule_scaled_to_its_planned_steps(monkeypatch, tmp_path):
    """The bundled recipe sets run.max_steps to the plan; the warm-up and locality phases must scale
    from the config's max_steps (10,000 in configs/tokenizer_digits.yaml), not stay at their numbers,
    in the config the task trains with as well as in the one the loop writes (config.yaml)."""
    seen = {}

    def fake_train(task, *, run, optim, config, run_dir, rt, progress, resume):
        seen.update(run=run, optim=optim, config=config)
        task.steps_done = run.max_steps
        return {"eval": {}}

    monkeypatch.setattr("larp_lab.training.loop.train", fake_train)
    plan = StagePlan(share_s=300.0, calibration_s=0.0, sec_per_step=0.1, steps=2000, warmup_steps=100, log_every=40,
                     save_every=250, overhead=0.15)
    staged = stage_config(_digits_config(), plan.steps, tmp_path / "run")
    assert (staged.vq_warmup_steps, staged.locality.hold_steps, staged.locality.anneal_steps) == (240, 240, 200)
    assert staged.run.max_steps == 10_000  # the loop's max_steps is set by _run_stage, after the scaling
    rec = _run_stage("tokenizer", SimpleNamespace(steps_done=0), staged, plan, tmp_path / "run",
                     SimpleNamespace(dtype=torch.float32), False, evals=8)
    c = seen["config"]
    assert c.run.max_steps == 2000 and c.run.save_every == 250 and c.run.eval_every == 250
    assert seen["optim"].warmup_steps == 100
    assert (c.vq_warmup_steps, c.locality.hold_steps, c.locality.anneal_steps) == (240, 240, 200)
    assert rec["steps"] == rec["planned_steps"] == 2000 and rec["config"]["vq_warmup_steps"] == 240
    # a resumed stage keeps the schedule it started with (its config.yaml), whatever is computed now
    (tmp_path / "run").mkdir()
    started = {**_digits_config().to_dict(), "vq_warmup_steps": 300}
    started["locality"] = {**started["locality"], "hold_steps": 310, "anneal_steps": 320}
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(started))))
    c = stage_config(_digits_config(), plan.steps, tmp_path / "run", resume=True)
    assert (c.vq_warmup_steps, c.locality.hold_steps, c.locality.anneal_steps) == (300, 310, 320)
    assert c.locality.weight == 0.1
    assert stage_config(c.replace(vq_warmup_steps=0, locality=None), 99, tmp_path).vq_warmup_steps == 0


def test_the_tokenizer_task_trains_with_the_scaled_schedule(tmp_path):
    """make_pool_tokenizer_task gets the staged config: its warm-up ends where config.yaml says."""
    from larp_lab.training.pool import PoolSpec, generate_pool
    from larp_lab.training.pool_tasks import make_pool_tokenizer_task

    pool = generate_pool(PoolSpec(data="digits", synthetic=24, photos=0, frames=8, size=32, seed=0), 1)
    staged = stage_config(_digits_config(), 2000, tmp_path)
    task = make_pool_tokenizer_task(staged, torch.device("cpu"), pool, pool, 0.0, None)
    assert task.cfg.vq_warmup_steps == 240 and task.cfg.locality.hold_steps == 240


# ------------------------------------------------------------------------------------------------
# --resume: its errors
# ------------------------------------------------------------------------------------------------

IDENTITY = {"size": "micro", "data": "digits", "seed": 0, "budget_s": 60.0, "device": "cpu", "pool_clips": None,
            "photo_fraction": None, "tokenizer_lr": None}


def _interrupted(tmp_path: Path, **changes) -> tuple[Path, Path]:
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir(parents=True)
    work.mkdir()
    log = {"format": LOG_FORMAT, "size": "micro", "run": dict(IDENTITY), "elapsed_s": 12.5,
           "stages": {"classifier": {"decision": "retrain", "reason": "x"},
                      "tokenizer": {"status": "running", "plan": {}}}}
    log.update(changes)
    (out / LOG_NAME).write_text(json.dumps(log))
    return out, work


def test_resume_continues_an_interrupted_run_log(tmp_path):
    out, work = _interrupted(tmp_path)
    log = _resume_log(out, work, dict(IDENTITY))
    assert log["elapsed_s"] == 12.5 and log["stages"]["tokenizer"]["status"] == "running"


def test_resume_without_a_run_log_says_to_start_without_resume(tmp_path):
    (tmp_path / "work").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--resume: no train_log.json in .*start the run without --resume"):
        _resume_log(tmp_path / "out", tmp_path / "work", dict(IDENTITY))
    out, _ = _interrupted(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="the work directory .*nowhere does not exist"):
        _resume_log(out, tmp_path / "nowhere", dict(IDENTITY))


def test_resume_with_other_options_names_them(tmp_path):
    out, work = _interrupted(tmp_path)
    with pytest.raises(ValueError, match=r"give the options of the interrupted run; differing \(then, now\): "
                                         r"seed 0 -> 1, budget_s 60.0 -> 90.0"):
        _resume_log(out, work, {**IDENTITY, "seed": 1, "budget_s": 90.0})
    with pytest.raises(ValueError, match="data 'digits' -> 'synthetic'"):
        _resume_log(out, work, {**IDENTITY, "data": "synthetic"})


def test_resume_of_a_finished_run_is_refused(tmp_path):
    out, work = _interrupted(tmp_path, total_wall_s=58.0, stages={
        "classifier": {"decision": "keep", "reason": "fits"}, "tokenizer": {"status": "done"},
        "encode": {"sequences": 4}, "generator": {"status": "done"}, "frame_predictor": {"status": "done"}})
    with pytest.raises(ValueError, match=r"--resume: the run in .* has finished; nothing to resume"):
        _resume_log(out, work, dict(IDENTITY))


@pytest.mark.parametrize("text, match", [("{not json", "is not valid JSON"),
                                         (json.dumps({"format": "other/1"}), "not a run log of this recipe")])
def test_resume_of_a_foreign_log_is_refused(tmp_path, text, match):
    out, work = _interrupted(tmp_path)
    (out / LOG_NAME).write_text(text)
    with pytest.raises(ValueError, match=match):
        _resume_log(out, work, dict(IDENTITY))


def test_resume_errors_reach_the_command_line_as_one_line(tmp_path, capsys):
    import importlib.util

    with pytest.raises(ValueError, match="--resume needs the --work directory"):
        train_bundled(BundledRunConfig(out=str(tmp_path / "out"), budget_s=60, device="cpu", size="micro", resume=True))
    spec = importlib.util.spec_from_file_location("train_bundled_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "work").mkdir()
    rc = script.main(["--device", "cpu", "--size", "micro", "--budget-minutes", "1", "--out", str(tmp_path / "out"),
                      "--work", str(tmp_path / "work"), "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("[train_bundled] error: --resume: no train_log.json in") and "without --resume" in err


# ------------------------------------------------------------------------------------------------
# a real kill and resume (slow)
# ------------------------------------------------------------------------------------------------

#: scripts/train_bundled.py with checkpoints at least every second (the recipe's floor is 20 s, longer
#: than a whole micro stage): the same code, so that a micro run has checkpoints to resume from
FREQUENT_CHECKPOINTS = (
    "import functools, runpy, sys\n"
    "import larp_lab.training.bundled_recipe as r\n"
    "r.plan_steps = functools.partial(r.plan_steps, min_checkpoint_interval_s=1.0)\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _checkpoint_step(run_dir: Path) -> int | None:
    from larp_lab.training.state import find_state

    state = find_state(run_dir / "checkpoints" / "last")
    if state is None:
        return None
    try:  # state.json: {"__dict__": [["step", N], ...]} (larp_lab.training.state)
        return int(dict(json.loads((state / "state.json").read_text())["__dict__"])["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written: look again


@pytest.mark.slow  # two micro runs of scripts/train_bundled.py, one killed (~1 min on one core)
def test_a_killed_run_resumes_and_trains_exactly_its_plan(tmp_path):
    from larp_lab import LARPGenerator, LARPTokenizer

    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    args = [str(SCRIPT), "--device", "cpu", "--budget-minutes", "0.6", "--size", "micro", "--data", "digits",
            "--out", str(out), "--work", str(work), "--threads", "1", "--workers", "1"]
    cmd = [sys.executable, "-c", FREQUENT_CHECKPOINTS, *args]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_at = None
    t0 = time.monotonic()
    try:
        while first.poll() is None and time.monotonic() - t0 < 240:
            step = _checkpoint_step(work / "tokenizer")
            if step is not None:
                first.send_signal(signal.SIGKILL)  # as hard as a power cut: no cleanup runs
                killed_at = step
                break
            time.sleep(0.05)
    finally:
        if first.poll() is None and killed_at is None:
            first.kill()
        output = first.communicate()[0]
    assert killed_at is not None, output[-3000:]
    before = json.loads((out / LOG_NAME).read_text())
    plan = before["stages"]["tokenizer"]["plan"]
    assert before["stages"]["tokenizer"]["status"] == "running" and 0 < killed_at < plan["steps"], (killed_at, plan)
    assert not (out / "larp-tiny-tokenizer").exists()

    proc = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tokenizer: resuming the planned" in proc.stdout and "from its last checkpoint" in proc.stdout
    log = json.loads((out / LOG_NAME).read_text())
    assert len(log["resumes"]) == 1 and log["resumes"][0]["at_elapsed_s"] == before["elapsed_s"]
    assert log["run"] == before["run"] and log["total_wall_s"] > 0
    tok = log["stages"]["tokenizer"]
    assert tok["status"] == "done" and tok["resumed"] is True
    ints = ("steps", "warmup_steps", "log_every", "save_every")
    assert {k: tok["plan"][k] for k in ints} == {k: plan[k] for k in ints}  # the plan it had, not a new one
    assert tok["plan"]["sec_per_step"] == pytest.approx(plan["sec_per_step"], rel=1e-3)
    assert not tok["stopped_by_budget"] and tok["steps"] == tok["planned_steps"] == plan["steps"]
    rows = [json.loads(x) for x in (work / "tokenizer" / "log.jsonl").read_text().splitlines() if x.strip()]
    steps = [r["step"] for r in rows if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == plan["steps"]  # one log, no step twice
    for key in ("generator", "frame_predictor"):
        assert log["stages"][key]["status"] == "done" and log["stages"][key]["resumed"] is False
    t = LARPTokenizer.from_pretrained(out / "larp-tiny-tokenizer")
    g = LARPGenerator.from_pretrained(out / "larp-tiny-generator")
    assert json.loads((out / "larp-tiny-tokenizer" / "config.json").read_text())["metadata"]["steps"] == plan["steps"]
    assert g.config.num_classes == 10 and list(g.config.class_names) == list(DIGIT_NAMES)
    assert t.config.frame_num == 16 and LARPGenerator.from_pretrained(out / "larp-tiny-frame-predictor").config.frame_prediction
    assert log["data"] == {"kind": "digits", "classes": list(DIGIT_NAMES)}
