"""Training under faults: ``kill -9`` at seeded random moments, non-finite losses, a full disk.

* A micro tokenizer run (``python -m larp_lab train-tokenizer``, ``save_every: 1``, EMA on) is killed
  with SIGKILL 10 times; after every kill each checkpoint on disk loads (``load_state`` and
  ``LARPTokenizer.from_pretrained`` of ``model/`` and ``model_ema/``), then ``--resume`` finishes the
  run, and its logged losses, weights, EMA weights and optimizer state equal, bit for bit, those of an
  uninterrupted run of the same config.
* NaN / inf losses are skipped (the step makes no update) or stop the run, as configured.
* A save that fails with ENOSPC leaves the previous checkpoint intact and loadable, says so, and the
  run resumes from it.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from measure import cli_env
from safetensors.torch import load_file

from larp_lab import LARPTokenizer
from larp_lab.training.config import train_config_from_dict
from larp_lab.training.loop import TrainingError
from larp_lab.training.run import train_tokenizer
from larp_lab.training.state import find_state, flatten_state, load_state

MAX_STEPS = 48  #: 10 kills advance the run by at most ~4 steps each
CFG = {
    "model": "micro",
    "data": {"sources": [{"kind": "synthetic"}], "frames": 8, "size": 32, "val_clips": 4},
    "optim": {"lr": 0.002, "warmup_steps": 2, "grad_clip": 1.0, "ema_decay": 0.9},
    "run": {"batch_size": 4, "max_steps": MAX_STEPS, "log_every": 1, "eval_every": 1000, "save_every": 1, "seed": 0},
}
KILLS = 10


def train_cmd(cfg: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "larp_lab", "train-tokenizer", "--config", str(cfg), "--out", str(out), "--device",
            "cpu", *(["--resume"] if resume else [])]


def new_steps(run: Path, ckpt_step: int, since: float) -> int:
    """Steps this process has logged: rows after the checkpoint, in a log written since it started
    (on start the log is rewritten without the rows after the checkpoint)."""
    log = run / "log.jsonl"
    if not log.exists() or log.stat().st_mtime < since:
        return 0
    return sum(1 for r in log_rows(run) if r["step"] > ckpt_step)


def log_rows(run: Path) -> list[dict]:
    if not (run / "log.jsonl").exists():
        return []
    rows = []
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by the kill: dropped on resume
            continue
    return [r for r in rows if r.get("split") == "train"]


def check_checkpoints_load(run: Path, last_step: int) -> int:
    """Every checkpoint on disk loads; returns the training state's step (0 when none was saved yet)."""
    ckpt = run / "checkpoints" / "last"
    if find_state(ckpt) is None:
        assert last_step == 0, "a checkpoint disappeared"
        return 0
    state = load_state(ckpt)
    step = int(state["step"])
    assert last_step <= step <= MAX_STEPS, (last_step, step)
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())
    for name in ("model", "model_ema"):
        d = run / name
        if (d / "config.json").exists() and (d / "model.safetensors").exists():
            tok = LARPTokenizer.from_pretrained(d)
            saved_at = json.loads((d / "config.json").read_text())["metadata"]["step"]
            assert step - 1 <= saved_at <= step, (name, saved_at, step)  # exported right after the state
            if saved_at == step:
                ref = state["ema"] if name == "model_ema" else state["model"]
                own = tok.state_dict()
                assert all(torch.equal(own[k], ref[k]) for k in ref), name
        else:  # only while its very first export was being written
            assert step <= 1, (name, step, sorted(p.name for p in d.iterdir()) if d.exists() else None)
    return step


@pytest.mark.slow
def test_kill_9_ten_times_then_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    env = cli_env()
    # the uninterrupted reference, in parallel with the killed run
    ref = subprocess.Popen(train_cmd(cfg, tmp_path / "ref", False), env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    run = tmp_path / "killed"
    rng = np.random.default_rng(20250101)
    step, report = 0, []
    try:
        for kill in range(KILLS):
            proc = subprocess.Popen(train_cmd(cfg, run, resume=step > 0 or find_state(run / "checkpoints/last") is not None),
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0, wall0 = time.monotonic(), time.time()
            # seeded kill points: 3 in 10 at any moment from the start (imports, loading, resuming; at
            # most 3 steps in), the others 1-3 steps into training plus a fraction of a step (saves
            # take a large part of each step with save_every: 1)
            if rng.random() < 0.3:
                deadline, steps_wanted = t0 + rng.uniform(0.0, 3.0), 3
            else:
                deadline, steps_wanted = None, int(rng.integers(1, 4))
            extra = rng.uniform(0.0, 0.15)
            while proc.poll() is None and time.monotonic() - t0 < 120:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if new_steps(run, step, wall0) >= steps_wanted:
                    time.sleep(extra)
                    break
                time.sleep(0.01)
            if proc.poll() is not None:
                pytest.fail(f"the run ended before kill {kill + 1} (rc {proc.returncode})")
            os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
            proc.wait()
            step = check_checkpoints_load(run, step)
            report.append(f"{time.monotonic() - t0:.2f}s->step {step}")
        final = subprocess.run(train_cmd(cfg, run, True), env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-2000:]
        assert ref.wait(timeout=300) == 0, ref.stderr.read()[-2000:]
    finally:
        if ref.poll() is None:
            ref.kill()
            ref.wait()
    print(f"kill -9 at (seconds after start -> checkpoint step): {', '.join(report)}", file=sys.stderr)
    assert 0 < step < MAX_STEPS  # the kills interrupted real training
    assert check_checkpoints_load(run, step) == MAX_STEPS
    # the same losses at every step, each step logged exactly once
    a, b = log_rows(tmp_path / "ref"), log_rows(run)
    assert [r["step"] for r in b] == list(range(1, MAX_STEPS + 1)) == [r["step"] for r in a]
    for ra, rb in zip(a, b):
        for k in ra:
            if k != "sec_per_step":
                assert ra[k] == rb[k], (ra["step"], k, ra[k], rb[k])
    # bit-identical weights, EMA weights and training state (optimizer moments, RNG streams, counters)
    for name in ("model", "model_ema"):
        wa, wb = load_file(str(tmp_path / "ref" / name / "model.safetensors")), load_file(str(run / name / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    sa, ta = flatten_state(load_state(tmp_path / "ref" / "checkpoints" / "last"))
    sb, tb = flatten_state(load_state(run / "checkpoints" / "last"))
    assert sa == sb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    # nothing left over from the killed saves
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last"]
    for name in ("model", "model_ema"):
        assert sorted(p.name for p in (run / name).iterdir()) == ["config.json", "model.safetensors"]


# ----------------------------------------------------------------------------------------------
# Non-finite losses
# ----------------------------------------------------------------------------------------------


def small_cfg(**run):
    d = json.loads(json.dumps(CFG))
    d["optim"].pop("ema_decay")
    d["run"].update(max_steps=4, save_every=1000)
    d["run"].update(run)
    return train_config_from_dict(d, "tokenizer")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_loss_step_makes_no_update(bad, tmp_path, monkeypatch):
    from larp_lab.training import tokenizer_task

    cfg = small_cfg()
    train_tokenizer(cfg, tmp_path / "clean", device="cpu", progress=False, stop_after=2)
    orig = tokenizer_task.TokenizerTask.loss

    def poisoned(self, model, batch, step, max_steps):
        loss, m = orig(self, model, batch, step, max_steps)
        return (loss * bad if step == 2 else loss), m

    monkeypatch.setattr(tokenizer_task.TokenizerTask, "loss", poisoned)
    train_tokenizer(cfg, tmp_path / "skip", device="cpu", progress=False, stop_after=3)  # step 3 is skipped
    before = load_file(str(tmp_path / "clean/model/model.safetensors"))
    after = load_file(str(tmp_path / "skip/model/model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update, nothing non-finite
    rows = [json.loads(x) for x in (tmp_path / "skip/log.jsonl").read_text().splitlines()]
    assert rows[2]["skipped_nonfinite"] == 1.0 and "skipped_nonfinite" not in rows[1]
    with pytest.raises(TrainingError, match="non-finite loss at step 2"):
        train_tokenizer(cfg, tmp_path / "stop", device="cpu", progress=False, on_nan="stop")
    assert find_state(tmp_path / "stop/checkpoints/last") is None  # nothing of the poisoned step is saved


def test_on_nan_stop_through_the_cli(tmp_path, monkeypatch, capsys):
    from larp_lab.cli import main
    from larp_lab.training import tokenizer_task

    orig = tokenizer_task.TokenizerTask.loss
    monkeypatch.setattr(tokenizer_task.TokenizerTask, "loss",
                        lambda self, model, batch, step, m: (orig(self, model, batch, step, m)[0] * float("nan"), {}))
    cfg = tmp_path / "c.yaml"
    d = json.loads(json.dumps(CFG))
    d["run"]["max_steps"] = 2
    cfg.write_text(yaml.safe_dump(d))
    rc = main(["train-tokenizer", "--config", str(cfg), "--out", str(tmp_path / "r"), "--device", "cpu", "--on-nan", "stop"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert rc == 2 and err == ["error: non-finite loss at step 0; stopping (on_nan='stop')"]


# ----------------------------------------------------------------------------------------------
# A full disk
# ----------------------------------------------------------------------------------------------


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["safetensors writer", "rename"])
def test_failed_save_keeps_the_previous_checkpoint(where, tmp_path, monkeypatch, capsys):
    import safetensors.torch

    from larp_lab.cli import main

    cfg = small_cfg(save_every=2, max_steps=6)
    run = tmp_path / "run"
    train_tokenizer(cfg, run, device="cpu", progress=False, stop_after=2)
    good_state = load_state(run / "checkpoints/last")
    good_model = load_file(str(run / "model/model.safetensors"))
    # the disk is full from now on: the save at step 4 fails
    if where == "rename":
        real_replace = os.replace

        def replace(src, dst, *a, **k):  # renames into the checkpoint directory fail
            if "checkpoints" in str(dst):
                enospc()
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", enospc)
    with pytest.raises(OSError) as err:
        train_tokenizer(cfg, run, device="cpu", progress=False, resume=True)
    assert err.value.errno == errno.ENOSPC
    msg = str(err.value)
    assert "could not write the training checkpoint" in msg and "No space left on device" in msg
    assert "the previous checkpoint is kept" in msg
    # the previous checkpoint is intact and loads; no temporary directory is left
    state = load_state(run / "checkpoints/last")
    assert state["step"] == 2
    sa, ta = flatten_state(good_state)
    sb, tb = flatten_state(state)
    assert sa == sb and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last"]
    back = LARPTokenizer.from_pretrained(run / "model")
    assert all(torch.equal(back.state_dict()[k], good_model[k]) for k in good_model)
    # through the CLI: one clear line, exit 2
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
    rc = main(["train-tokenizer", "--config", str(cfg_file), "--out", str(run), "--device", "cpu", "--resume"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert rc == 2 and len(lines) == 1 and "No space left on device" in lines[0] and "previous checkpoint is kept" in lines[0]
    # space is back: the run resumes from step 2 and finishes
    monkeypatch.undo()
    res = train_tokenizer(cfg, run, device="cpu", progress=False, resume=True)
    assert res["step"] == 6 and load_state(run / "checkpoints/last")["step"] == 6

