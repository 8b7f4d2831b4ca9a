"""scripts/train_bundled.py: the one command that trains every bundled model inside a budget.

The CPU micro run is done for real in a subprocess in which ``import av``, ``import gradio`` and
the other dependencies missing from the GPU image fail; the pieces (pool, budget planning, file limits, classifier stage)
are tested on their own.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from larp_lab.training.budget import Budget, BudgetExceeded, Deadline, plan_steps, seconds_per_step
from larp_lab.training.bundled_classifier import decide_classifier, retrain_classifier
from larp_lab.training.bundled_recipe import BundledRunConfig, BundleLimitError, check_bundle, train_bundled
from larp_lab.training.pool import PoolSpec, augment, generate_pool, mixture_rows

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_bundled.py"
NAMES = ("larp-tiny-tokenizer", "larp-tiny-generator", "larp-tiny-frame-predictor")

CLASSIFIER = "larp-tiny-classifier"


#: dependencies of larp_lab that the GPU image lacks (it has torch, safetensors, numpy, tqdm, pyyaml,
#: scikit-image, matplotlib, tensorboard): the run must never import them
NOT_ON_THE_GPU_IMAGE = ("av", "gradio", "huggingface_hub", "plotly", "umap", "ipywidgets")


def _blockers(root: Path) -> tuple[Path, Path]:
    """A folder of fake packages (:data:`NOT_ON_THE_GPU_IMAGE`) whose import writes a marker and fails."""
    marker = root / "blocked_imports.txt"
    for name in NOT_ON_THE_GPU_IMAGE:
        pkg = root / "blockers" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(
            "import os, traceback\n"
            f"with open(os.environ['BLOCKED_IMPORT_MARKER'], 'a') as f:\n"
            f"    f.write('{name}\\n' + ''.join(traceback.format_stack()) + '\\n')\n"
            f"raise ImportError('{name} is blocked in this test (the GPU image has no {name})')\n"
        )
    return root / "blockers", marker


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """The CPU micro run, for real: (output dir, run log, benchmark JSON, marker file, wall seconds)."""
    root = tmp_path_factory.mktemp("bundled")
    blockers, marker = _blockers(root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blockers), str(REPO)]),
           "BLOCKED_IMPORT_MARKER": str(marker), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    probe = subprocess.run([sys.executable, "-c", "import gradio"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr and marker.exists()  # the blockers work
    marker.unlink()
    out, bench = root / "out", root / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--budget-minutes", "0.5", "--size", "micro",
           "--out", str(out), "--work", str(root / "work"), "--threads", "1", "--workers", "2",
           "--then-bench", "--bench-seconds", "10", "--bench-out", str(bench)]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = json.loads((out / "train_log.json").read_text())
    return out, log, json.loads(bench.read_text()), marker, proc.stdout


@pytest.mark.slow  # the real micro run of scripts/train_bundled.py (~30 s)
def test_micro_run_never_imports_av_gradio_or_hub(micro_run):
    _, _, _, marker, _ = micro_run
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow  # the real micro run of scripts/train_bundled.py (~30 s)
def test_micro_run_outputs_load_and_fit_the_limits(micro_run):
    from larp_lab import LARPGenerator, LARPTokenizer
    from larp_lab.checkpoint import read_safetensors_header

    out, log, _, _, _ = micro_run
    files = check_bundle(out, 9, 16)  # the micro clips (16x64 digits) are not the bundled classifier's: retrained
    assert set(files) == {"train_log.json"} | {f"{n}/{f}" for n in (*NAMES, CLASSIFIER)
                                               for f in ("config.json", "model.safetensors")}
    assert log["files"].keys() == files.keys()
    for n in NAMES:  # fp16 storage
        dtypes = {d for d, _ in read_safetensors_header(out / n / "model.safetensors").values()}
        assert "F16" in dtypes and "F32" not in dtypes, (n, dtypes)
    tok = LARPTokenizer.from_pretrained(out / NAMES[0])
    gen = LARPGenerator.from_pretrained(out / NAMES[1])
    fp = LARPGenerator.from_pretrained(out / NAMES[2])
    c = tok.config
    assert (c.frame_num, c.input_size, c.num_tokens, c.codebook_size) == (16, 64, 32, 64)
    assert gen.config.num_classes == 10 and gen.config.class_names[:3] == ("0", "1", "2")  # moving digits
    assert not gen.config.frame_prediction
    assert fp.config.frame_prediction and fp.config.num_tokens == c.num_tokens
    with torch.no_grad():  # the three work together
        idx = gen.sample(torch.tensor([0, 5]), cfg_scale=1.5, generator=torch.Generator().manual_seed(0))
        video = tok.decode_indices(idx)
        pred = fp.sample(tok.encode(video).indices, generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 16, 64, 64) and torch.isfinite(video).all()
    assert pred.shape == (2, c.num_tokens) and int(pred.max()) < c.codebook_size
    meta = json.loads((out / NAMES[0] / "config.json").read_text())["metadata"]
    assert meta["steps"] == log["stages"]["tokenizer"]["steps"] and meta["made_by"] == "scripts/train_bundled.py"


@pytest.mark.slow  # the real micro run of scripts/train_bundled.py (~30 s)
def test_micro_run_log(micro_run):
    out, log, _, _, stdout = micro_run
    assert log["format"] == "larp_lab.bundled_run/1" and log["size"] == "micro"
    assert log["device"] == "cpu" and log["torch"] == torch.__version__ and log["precision"] == "fp32"
    assert "CPU" in log["device_name"]
    # the whole run, imports included, inside its 30 s budget (a little slack for the last writes)
    assert log["total_wall_s"] <= 30 * 1.1 and log["within_budget"], log["total_wall_s"]
    pool = log["pool"]
    # digits (the default): 160 + 32 labelled clips, rendered in-process, no photo pans
    assert log["data"]["kind"] == "digits" and log["data"]["classes"] == [str(i) for i in range(10)]
    assert pool["data"] == "digits" and pool["clips"] == 192 and pool["synthetic"] == 192 and pool["photos"] == 0
    assert pool["photo_weight"] == 0.0
    clf = log["stages"]["classifier"]  # the bundled classifier takes 8x32x32 clips: retrained, before the tokenizer
    assert clf["decision"] == "retrain" and clf["status"] == "done" and clf["trained"]["steps"] >= 4
    assert 0 < clf["share_s"] < 0.1 * 30 and stdout.index("stage 4 done") < stdout.index("stage 1 done")
    assert log["stages"]["encode"]["sequences"] == 2 * pool["synthetic"]
    for key in ("tokenizer", "generator", "frame_predictor"):
        s = log["stages"][key]
        assert s["steps"] >= 1 and s["clips_seen"] == s["steps"] * s["batch_size"], (key, s)
        assert s["calibration"]["sec_per_step"] > 0 and s["plan"]["steps"] == s["planned_steps"] >= 4
        assert s["plan"]["warmup_steps"] >= 1 and s["wall_s"] > 0
        assert s["curve"] and all(math.isfinite(r["loss"]) for r in s["curve"])
        if s["stopped_by_budget"]:  # the machine slowed down under the plan: stopped at its hard deadline
            assert s["steps"] < s["planned_steps"]
        else:  # the warm-up/cosine schedule ran to its end inside the share
            assert s["steps"] == s["planned_steps"] and s["curve"][-1]["step"] == s["steps"]
            assert s["curve"][-1]["lr"] < 0.2 * s["lr"]
            assert s["wall_s"] <= s["share_s"] * 1.6 + 3, (key, s["wall_s"], s["share_s"])
    ev = log["stages"]["tokenizer"]["eval"]
    assert math.isfinite(ev["psnr"]) and 0 < ev["codebook_usage"] <= 1 and ev["prior_bits_per_token"] > 0
    assert math.isfinite(log["stages"]["generator"]["eval"]["val_nll"])
    assert "stage 3 frame_predictor done" in stdout


@pytest.mark.slow  # the real micro run of scripts/train_bundled.py (~30 s)
def test_micro_run_benchmarks(micro_run):
    _, _, bench, _, _ = micro_run
    names = [r["name"] for r in bench["rows"]]
    assert bench["device"] == "cpu" and bench["precision"] == "fp32"
    assert any(n.startswith("bundled tokenizer encode") for n in names)
    assert any(n.startswith("bundled generator sample") for n in names)
    assert any(n.startswith("train step tokenizer+prior") for n in names)
    assert bench["skipped"] == [{"item": "train step, torch.compile", "reason": "compiled only on CUDA"}]
    assert bench["elapsed_s"] <= 10 + 5


# ------------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------------


def test_pool_is_the_datasets_in_uint8_whatever_the_workers():
    from larp_lab.data.natural import PhotoPans
    from larp_lab.data.synthetic import SyntheticVideos

    spec = PoolSpec(synthetic=14, photos=3, frames=4, size=16, seed=7)
    a, b = generate_pool(spec, workers=2), generate_pool(spec, workers=1)
    assert a.clips.dtype == torch.uint8 and a.clips.shape == (17, 3, 4, 16, 16)
    assert torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels)
    assert a.labels.tolist() == [i % 12 for i in range(14)] + [-1, -1, -1]
    syn = SyntheticVideos(14, 4, 16, seed=7)[9]["video"]
    pho = PhotoPans(3, 4, 16, seed=8)[2]["video"]
    assert (a.gather(torch.tensor([9]))[0] - syn).abs().max() <= 1 / 127.5 + 1e-6
    assert (a.gather(torch.tensor([16]))[0] - pho).abs().max() <= 1 / 127.5 + 1e-6
    with pytest.raises(ValueError, match="at least one clip"):
        PoolSpec(0, 0).validate()


def test_mixture_rows_weighs_photos_whatever_their_count():
    rows = mixture_rows(100, 7, 0.35)
    photo = (rows >= 100).float().mean().item()
    assert abs(photo - 0.35) < 0.01 and rows[:100].tolist() == list(range(100))
    assert set(rows[100:].tolist()) == set(range(100, 107))
    assert mixture_rows(10, 5, 0.0).tolist() == list(range(10))
    with pytest.raises(ValueError):
        mixture_rows(10, 5, 1.0)


def test_augment_flips_and_reverses_whole_clips():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (64, 3, 4, 5, 6), dtype=torch.uint8)
    y = augment(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    kinds = set()
    for a, b in zip(x, y):
        options = {"id": a, "h": a.flip(-1), "t": a.flip(1), "ht": a.flip(-1).flip(1)}
        kinds |= {k for k, v in options.items() if torch.equal(v, b)}
    assert kinds == {"id", "h", "t", "ht"}


def test_plan_steps_ends_inside_the_share():
    for share, sps, cal in ((270.0, 0.031, 2.0), (8.0, 0.16, 0.5), (60.0, 0.009, 0.1)):
        p = plan_steps(share, sps, calibration_s=cal, fixed_s=1.0)
        assert cal + 1.0 + p.planned_s <= share
        assert (p.steps + 1) * sps * (1 + p.overhead) + cal + 1.0 > share  # and uses it
        assert 1 <= p.warmup_steps < p.steps and 1 <= p.save_every <= p.steps and p.log_every >= 1
        assert p.save_every * sps >= min(20.0, p.steps * sps) - 1e-9  # checkpoints at most every 20 s
    assert plan_steps(270.0, 0.031).save_every * 8 >= plan_steps(270.0, 0.031).steps  # about 8 checkpoints
    with pytest.raises(ValueError, match="too small"):
        plan_steps(1.0, 0.5)


def test_budget_shares_and_deadlines_follow_the_clock():
    now = [100.0]
    clock = lambda: now[0]
    b = Budget(60.0, clock=clock)
    assert b.share(2.0, [1.0, 1.0], reserve_s=20.0) == pytest.approx(20.0)
    now[0] = 150.0
    assert b.remaining() == pytest.approx(10.0) and b.share(1.0, [], reserve_s=20.0) == 0.0
    d = Deadline(155.0, "stage x", clock=clock)
    d.check()
    now[0] = 156.0
    with pytest.raises(BudgetExceeded, match="stage x"):
        d.check()
    with pytest.raises(ValueError):
        Budget(0.0)


def test_seconds_per_step_is_the_median_after_warmup():
    now = [0.0]
    costs = [5.0, 5.0, 1.0, 3.0, 1.0]  # two slow warm-up steps, then 1, 3, 1

    def step(i):
        now[0] += costs[i]

    sps, spent = seconds_per_step(step, torch.device("cpu"), warmup=2, steps=3, clock=lambda: now[0])
    assert sps == 1.0 and spent == 15.0


def test_check_bundle_fails_loudly(tmp_path):
    for i in range(3):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "w.bin").write_bytes(b"x" * 1000)
    assert len(check_bundle(tmp_path, 3, 1)) == 3
    with pytest.raises(BundleLimitError, match="4 files, more than the 3"):
        (tmp_path / "log.json").write_text("{}")
        check_bundle(tmp_path, 3, 1)
    with pytest.raises(BundleLimitError, match="m0/w.bin"):
        check_bundle(tmp_path, 8, 0.0005)


def test_classifier_must_change_for_other_clips_and_retrains(tmp_path):
    val = generate_pool(PoolSpec(24, 0, frames=4, size=16, seed=3), workers=1)
    d = decide_classifier("auto", val, torch.device("cpu"), clips=24, min_accuracy=0.9, num_classes=12)
    assert d["decision"] == "retrain" and "4x16" in d["reason"]
    with pytest.raises(ValueError, match="--classifier keep"):
        decide_classifier("keep", val, torch.device("cpu"), clips=24, min_accuracy=0.9, num_classes=12)
    assert decide_classifier("retrain", val, torch.device("cpu"), clips=24, min_accuracy=0.9,
                             num_classes=12)["decision"] == "retrain"
    pool = generate_pool(PoolSpec(48, 0, frames=4, size=16, seed=4), workers=1)
    clf, rec = retrain_classifier(pool, val, torch.device("cpu"), 3.0, 12)
    assert (clf.config.frames, clf.config.size, clf.config.num_classes, clf.config.width) == (4, 16, 12, 16)
    assert rec["steps"] >= 4 and rec["clips_seen"] == rec["steps"] * rec["batch_size"]
    assert 0.0 <= rec["heldout_accuracy"] <= 1.0 and math.isfinite(rec["final_loss"])


def test_a_retrain_that_cannot_fit_the_file_limit_fails_before_training(tmp_path):
    run = BundledRunConfig(out=str(tmp_path / "out"), budget_s=60, device="cpu", size="micro",
                           work=str(tmp_path / "work"), classifier="retrain", pool_clips=30, workers=1, max_files=8)
    with pytest.raises(BundleLimitError, match="9 files"):
        train_bundled(run)
    assert not any((tmp_path / "out").iterdir())  # nothing was trained or written


def test_refuses_a_non_empty_out_and_bad_options(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        train_bundled(BundledRunConfig(out=str(tmp_path / "out"), budget_s=60, device="cpu", size="micro"))
    with pytest.raises(ValueError, match="unknown size"):
        BundledRunConfig(out="x", budget_s=60, size="huge").validate()
    with pytest.raises(ValueError, match="budget"):
        BundledRunConfig(out="x", budget_s=-1).validate()


@pytest.mark.slow
def test_model_cards_are_written_from_the_run_log(micro_run, tmp_path):
    out, log, _, _, _ = micro_run
    dest = tmp_path / "checkpoints"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "bundle_models.py"), "--bundle", str(out), "--dest", str(dest),
           "--clips", "16", "--pictures", str(tmp_path / "pictures")]  # never the repository's docs/bundle
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name, key in zip(NAMES, ("tokenizer", "generator", "frame_predictor")):
        card = (dest / name / "MODEL_CARD.md").read_text()
        assert "python scripts/train_bundled.py --device cpu --budget-minutes 0.5" in card
        assert f"- Steps: {log['stages'][key]['steps']}\n" in card and log["device_name"] in card
    # retrained by the run (stage 4): shipped from the run with a card of its own
    assert (dest / CLASSIFIER / "model.safetensors").read_bytes() == (out / CLASSIFIER / "model.safetensors").read_bytes()
    shipped, trained = (json.loads((d / CLASSIFIER / "config.json").read_text()) for d in (dest, out))
    assert shipped["config"] == trained["config"] and shipped["metadata"]["data"] == "digits"
    clf_card = (dest / CLASSIFIER / "MODEL_CARD.md").read_text()
    assert "moving digits" in clf_card and f"- Steps: {log['stages']['classifier']['trained']['steps']}\n" in clf_card
    metrics = json.loads((dest / "metrics.json").read_text())
    assert metrics["data"] == "digits" and metrics["predictor"]["clips"] == 64
    held = metrics["tokenizer"]["heldout"]
    assert math.isfinite(held["psnr_db"]) and held["clips"] == 16 and held["uniform_bits_per_token"] == 6.0
    # the run's training snapshots ship beside the tokenizer (issue 19), steps as in their names
    # (the one at the tokenizer's last step is the bundled tokenizer itself: not shipped twice)
    final = f"step{log['stages']['tokenizer']['steps']:06d}"
    made = sorted(p.name for p in Path(log["stages"]["tokenizer"]["snapshots"]).glob("step*") if p.name != final)
    if made:  # (a micro run stopped by its deadline before the first snapshot step has none)
        snaps = sorted(p.name for p in (dest / "larp-tiny-tokenizer-snapshots").iterdir())
        assert snaps == made == [f"step{s:06d}" for s in metrics["snapshots"]["steps"]]  # all fit the limit


def test_bundle_models_picks_snapshots_inside_the_size_limit():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundle_models", REPO / "scripts" / "bundle_models.py")
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    steps = [25, 58, 134, 310, 718, 1663, 3849, 8911]
    assert bm.pick_snapshots(steps, [2] * 8, 100) == steps
    six = bm.pick_snapshots(steps, [2] * 8, 12)
    assert len(six) == 6 and six[0] == 25 and six[-1] == 8911 and six == sorted(six)
    assert bm.pick_snapshots(steps, [2] * 8, 3) == [25] and bm.pick_snapshots(steps, [2] * 8, 1) == []


def test_a_later_stage_that_does_not_fit_is_squeezed_the_first_fails():
    from larp_lab.training.bundled_recipe import MIN_STEPS, _stage_plan

    b = Budget(10.0)
    with pytest.raises(ValueError, match="stage tokenizer: .* too small .* --pool-clips"):
        _stage_plan("stage tokenizer", b, 0.6, [0.4], 2.0, 1.0, cuda=False, fixed_s=1.0, squeeze=False)
    plan, share, squeezed = _stage_plan("stage x", b, 0.6, [0.4], 2.0, 1.0, cuda=False, fixed_s=1.0, squeeze=True)
    assert squeezed and plan.steps == MIN_STEPS and share == pytest.approx(1.0 + (MIN_STEPS + 0.5) * 1.15)
    plan, share, squeezed = _stage_plan("stage x", b, 1.0, [], 0.0, 0.01, cuda=True, fixed_s=0.5, squeeze=True)
    assert not squeezed and plan.steps > 500 and share <= 10.0
