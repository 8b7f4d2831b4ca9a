"""Training end to end at micro size on the CPU: loss falls, exact resume, DDP agrees, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO

from larp_lab.training.config import train_config_from_dict
from larp_lab.training.run import train_generator, train_tokenizer

MICRO_TOK = {
    "model": "micro",
    "data": {"sources": [{"kind": "synthetic"}], "frames": 8, "size": 32, "val_clips": 8},
    "optim": {"lr": 0.002, "warmup_steps": 2, "grad_clip": 1.0},
    "run": {"batch_size": 8, "max_steps": 30, "log_every": 1, "eval_every": 1000, "save_every": 1000},
}


def tok_cfg(**changes):
    d = json.loads(json.dumps(MICRO_TOK))
    for k, v in changes.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return train_config_from_dict(d, "tokenizer")


def read_log(run_dir, split="train"):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def test_tokenizer_training_lowers_the_loss_and_writes_a_run_dir(tmp_path):
    res = train_tokenizer(tok_cfg(run={"eval_every": 30, "save_every": 30}), tmp_path / "run", device="cpu",
                          progress=False)
    log = read_log(tmp_path / "run")
    assert len(log) == 30
    first = sum(r["rec"] for r in log[:5]) / 5
    last = sum(r["rec"] for r in log[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    for key in ("loss", "rec", "loss_q", "prior_ce", "psnr", "usage", "lr", "ss_ratio"):
        assert key in log[-1]
    ev = read_log(tmp_path / "run", "eval")
    assert len(ev) == 1 and {"psnr", "ssim", "codebook_usage", "perplexity"} <= set(ev[0])
    run = tmp_path / "run"
    for p in ("config.yaml", "env.json", "model/config.json", "model/model.safetensors",
              "checkpoints/last/state.json", "samples/reconstruction_step0000030.mp4",
              "samples/reconstruction_step0000030.png"):
        assert (run / p).exists(), p
    assert any((run / "tb").iterdir())
    # the run dir's config reproduces the run's config
    again = train_config_from_dict(yaml.safe_load((run / "config.yaml").read_text()), "tokenizer")
    assert again == tok_cfg(run={"eval_every": 30, "save_every": 30})
    assert res["step"] == 30
    from larp_lab import LARPTokenizer

    tok = LARPTokenizer.from_pretrained(run / "model")
    assert tok.config.num_tokens == 16


def test_interrupted_run_resumes_exactly(tmp_path):
    cfg = tok_cfg(run={"max_steps": 8, "save_every": 2}, optim={"ema_decay": 0.9})
    train_tokenizer(cfg, tmp_path / "a", device="cpu", progress=False)
    train_tokenizer(cfg, tmp_path / "b", device="cpu", progress=False, stop_after=5)  # "killed" after step 5
    assert json.loads((tmp_path / "b/checkpoints/last/state.json").read_text())  # a checkpoint exists
    with pytest.raises(Exception, match="--resume"):
        train_tokenizer(cfg, tmp_path / "b", device="cpu", progress=False)
    train_tokenizer(cfg, tmp_path / "b", device="cpu", progress=False, resume=True)
    la, lb = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in lb] == list(range(1, 9))
    for ra, rb in zip(la, lb):
        for k in ("loss", "rec", "loss_q", "prior_ce"):
            assert ra[k] == rb[k], (ra["step"], k, ra[k], rb[k])
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a/model/model.safetensors"))
    wb = load_file(str(tmp_path / "b/model/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ea = load_file(str(tmp_path / "a/model_ema/model.safetensors"))
    eb = load_file(str(tmp_path / "b/model_ema/model.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def test_resume_brings_stale_exports_level_with_the_state(tmp_path):
    """A run killed (perhaps repeatedly) between its training state and its exports resumes with
    model/ and model_ema/ rewritten from the state it resumes from."""
    from safetensors.torch import load_file

    from larp_lab.training.state import load_state

    cfg = tok_cfg(run={"max_steps": 8, "save_every": 2}, optim={"ema_decay": 0.9})
    run = tmp_path / "run"
    train_tokenizer(cfg, run, device="cpu", progress=False, stop_after=4)
    # simulate two kills in a row after the state was written: exports two steps behind, one missing
    conf = json.loads((run / "model/config.json").read_text())
    conf["metadata"]["step"] = 2
    (run / "model/config.json").write_text(json.dumps(conf))
    (run / "model_ema/model.safetensors").unlink()
    train_tokenizer(cfg, run, device="cpu", progress=False, resume=True, stop_after=4)  # resumes, trains nothing
    state = load_state(run / "checkpoints/last")
    assert state["step"] == 4
    for name, ref in (("model", state["model"]), ("model_ema", state["ema"])):
        assert json.loads((run / name / "config.json").read_text())["metadata"]["step"] == 4, name
        w = load_file(str(run / name / "model.safetensors"))
        assert all(torch.equal(w[k], ref[k]) for k in ref), name


def test_nonfinite_loss_is_skipped_or_stops(tmp_path, monkeypatch):
    from larp_lab.training import tokenizer_task
    from larp_lab.training.loop import TrainingError

    orig = tokenizer_task.TokenizerTask.loss

    def poisoned(self, model, batch, step, max_steps):
        loss, m = orig(self, model, batch, step, max_steps)
        return (loss * float("nan") if step == 2 else loss), m

    monkeypatch.setattr(tokenizer_task.TokenizerTask, "loss", poisoned)
    cfg = tok_cfg(run={"max_steps": 4})
    train_tokenizer(cfg, tmp_path / "skip", device="cpu", progress=False)
    log = read_log(tmp_path / "skip")
    assert log[2].get("skipped_nonfinite") == 1.0 and "skipped_nonfinite" not in log[3]
    with pytest.raises(TrainingError, match="non-finite"):
        train_tokenizer(cfg, tmp_path / "stop", device="cpu", progress=False, on_nan="stop")


def _det_cfg_dict(tmp_path):
    """Deterministic training (argmax VQ, one prior round, no dropout) so processes can be compared."""
    d = json.loads(json.dumps(MICRO_TOK))
    d["model_overrides"] = {"prior": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_rounds": 1, "embd_pdrop": 0.0,
                                      "resid_pdrop": 0.0, "attn_pdrop": 0.0}}
    d["vq_sampling"] = False
    d["run"].update(max_steps=4, batch_size=8)
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.slow  # two torchrun processes
def test_ddp_two_processes_agree_with_one(tmp_path):
    cfg_path = _det_cfg_dict(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    single = subprocess.run([sys.executable, "-m", "larp_lab", "train-tokenizer", "--config", str(cfg_path), "--out",
                             str(tmp_path / "one"), "--device", "cpu"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                          "larp_lab", "train-tokenizer", "--config", str(cfg_path), "--out", str(tmp_path / "two"),
                          "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    l1, l2 = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert len(l1) == len(l2) == 4
    for a, b in zip(l1, l2):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"])), (a, b)
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "one/model/model.safetensors"))
    w2 = load_file(str(tmp_path / "two/model/model.safetensors"))
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-4, worst


def test_generator_training_and_frame_prediction(tmp_path):
    tok_run = tmp_path / "tok"
    train_tokenizer(tok_cfg(run={"max_steps": 10}), tok_run, device="cpu", progress=False)
    base = {
        "model": "micro",
        "data": {"sources": [{"kind": "synthetic"}], "frames": 8, "size": 32},
        "num_train_clips": 96,
        "optim": {"lr": 0.003, "warmup_steps": 2},
        "run": {"batch_size": 16, "max_steps": 40, "log_every": 1, "eval_every": 40, "save_every": 40},
    }
    res = train_generator(train_config_from_dict(base, "generator"), tmp_path / "gen", tokenizer=str(tok_run / "model"),
                          device="cpu", progress=False)
    log = read_log(tmp_path / "gen")
    assert log[-1]["loss"] < log[0]["loss"] - 0.3, (log[0]["loss"], log[-1]["loss"])
    assert "val_nll" in res["eval"]
    from larp_lab import LARPGenerator
    from larp_lab.data.synthetic import CLASS_NAMES

    gen = LARPGenerator.from_pretrained(tmp_path / "gen" / "model")
    assert gen.config.class_names == tuple(CLASS_NAMES) and gen.config.num_tokens == 16
    assert (tmp_path / "gen/token_cache/tokens.safetensors").exists()
    fp = dict(base, model="micro-fp", cond_frames=3)
    res = train_generator(train_config_from_dict(fp, "generator"), tmp_path / "fp", tokenizer=str(tok_run / "model"),
                          device="cpu", progress=False)
    assert "token_accuracy" in res["eval"]
    assert (tmp_path / "fp/samples/samples_step0000040.mp4").exists()


def test_cli_training_commands(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "larp_lab", "train-tokenizer", "--config", str(REPO / "configs/tokenizer_micro.yaml"),
           "--out", str(out), "--max-steps", "3", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "trained to step 3" in res.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: micro\nbogus: 1\n")
    res = subprocess.run([sys.executable, "-m", "larp_lab", "train-tokenizer", "--config", str(bad), "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "bogus" in res.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_parse(name):
    kind = "tokenizer" if name.startswith("tokenizer") else "generator"
    cfg = train_config_from_dict(yaml.safe_load((REPO / "configs" / name).read_text()), kind)
    assert cfg.run.max_steps > 0


def test_gan_training_resumes_exactly(tmp_path):
    gan = {"discriminator": {"hidden_size": 32, "num_heads": 2, "depth": 1, "temporal_patch_size": 4, "patch_size": 8},
           "d_update_freq": 2, "start_unit": "step", "disc_start": 0}
    cfg = tok_cfg(run={"max_steps": 6, "save_every": 3}, gan=gan)
    train_tokenizer(cfg, tmp_path / "a", device="cpu", progress=False)
    train_tokenizer(cfg, tmp_path / "b", device="cpu", progress=False, stop_after=3)
    train_tokenizer(cfg, tmp_path / "b", device="cpu", progress=False, resume=True)
    la, lb = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [("d_loss" in r) for r in la] == [False, True, False, True, False, True]  # D every 2nd step
    assert all("g_adv" in r for r in la)
    for ra, rb in zip(la, lb):
        assert ra["loss"] == rb["loss"] and ra.get("d_loss") == rb.get("d_loss"), ra["step"]


def test_max_steps_shortens_a_longer_warmup(tmp_path):
    cfg = tok_cfg(optim={"warmup_steps": 20})  # a 30-step run with a 20-step warm-up
    with pytest.warns(UserWarning, match="warm-up is shortened to 2 steps"):
        res = train_tokenizer(cfg, tmp_path / "r", max_steps=2, device="cpu", progress=False)
    assert res["step"] == 2
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["optim"]["warmup_steps"], saved["run"]["max_steps"]) == (2, 2)
    assert [r["lr"] for r in read_log(tmp_path / "r")] == pytest.approx([0.001, 0.002])  # (step + 1) / 2 * lr


@pytest.mark.parametrize("bad,field", [("run: {log_every: 0}", "RunConfig.log_every"),
                                       ("optim: {grad_accum: 0}", "OptimConfig.grad_accum")])
def test_cli_refuses_configs_that_would_crash_later(tmp_path, capsys, bad, field):
    from larp_lab.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"model: micro\ndata: {{frames: 8, size: 32}}\n{bad}\n")
    assert main(["train-tokenizer", "--config", str(cfg), "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and field in last
    assert not (tmp_path / "x").exists()


def test_evaluate_command_prints_a_table(tmp_path):
    from larp_lab.cli import main
    from larp_lab.data.synthetic import SyntheticVideos
    from larp_lab.evaluation.classifier import train_classifier

    tok_run = tmp_path / "tok"
    train_tokenizer(tok_cfg(run={"max_steps": 3}), tok_run, device="cpu", progress=False)
    clf = train_classifier(SyntheticVideos(num_clips=64, frames=8, size=32, seed=5), steps=3, batch_size=8,
                           width=8, progress=False)
    clf.model.save_pretrained(tmp_path / "clf")
    out = tmp_path / "metrics.json"
    rc = main(["evaluate", "--tokenizer", str(tok_run / "model"), "--num-clips", "16", "--batch-size", "8",
               "--classifier", str(tmp_path / "clf"), "--generator", "untrained:micro", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    tm, gm = report["tokenizer_metrics"], report["generator_metrics"]
    assert tm["clips"] == 16 and 0 < tm["codebook_usage"] <= 1 and tm["psnr_db"] > 0 and tm["proxy_rfvd"] >= 0
    assert gm["samples"] == 16 and 0 <= gm["class_accuracy"] <= 1 and gm["proxy_gfvd"] >= 0


def test_step_sampler_is_a_function_of_the_step():
    from larp_lab.training.sampler import EpochView, StepBatchSampler

    one = list(StepBatchSampler(10, 4, max_steps=6, seed=3))
    two = [list(StepBatchSampler(10, 4, rank=r, world=2, max_steps=6, seed=3)) for r in range(2)]
    assert [a + b for a, b in zip(*two)] == one  # the same global batches, split across processes
    resumed = list(StepBatchSampler(10, 4, max_steps=6, seed=3, start_step=4))
    assert resumed == one[4:]
    flat = [v for b in one for v in b]
    assert sorted(v % 10 for v in flat[:10]) == list(range(10))  # each epoch is a permutation
    assert {v // 10 for v in flat[10:20]} == {1}  # tagged with its epoch

    class Rec(torch.utils.data.Dataset):
        epoch = 0

        def __len__(self):
            return 10

        def set_epoch(self, e):
            self.epoch = e

        def __getitem__(self, i):
            return (self.epoch, i)

    view = EpochView(Rec())
    assert view[23] == (2, 3) and view[7] == (0, 7)
