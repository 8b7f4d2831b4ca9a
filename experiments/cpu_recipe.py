"""Searching for a LARP tokenizer recipe that learns shapes on a 2-core CPU (issue 15).

    python experiments/cpu_recipe.py --arms recipe baseline [--steps N] [--evals 800 1200] [--threads 1]
    python experiments/cpu_recipe.py --measure RUN_DIR     # a run of `larp-lab train-tokenizer`

Every arm trains a full LARP tokenizer (holistic queries, cosine VQ, AR prior) from nothing through
the normal ``train_tokenizer`` path (the same code ``larp-lab train-tokenizer`` runs), on the
synthetic set at 32x32x8, and is measured with one protocol on the same held-out clips
(``SyntheticVideos(seed=10_000)``):

* full PSNR and the flat-colour baseline (each clip's mean colour);
* coarse PSNR: frames pooled to 8x8 before comparing, against the same flat baseline pooled;
* layout R2 of a ridge probe (the one of ``plateau.py``: each clip's 4x4 mean-removed layout read
  linearly from the tokens) on the *quantized* tokens (argmax codes, eval mode), and on the
  continuous latents for comparison; 4,000 probe-training clips, 500 probe-test clips;
* codebook usage and perplexity on the held-out clips;
* own-cell attention of the encoder queries (the diagnostic of ``training/locality.py``);
* a PNG of reconstructions (first, middle and last frame of 6 clips).

Arms differ only in the options named in ``ARMS``; results go to ``results/cpu_recipe.json``
(merged across invocations, one entry per arm), ``results/cpu_recipe_<arm>_<steps>.png`` and the
summary plot ``results/cpu_recipe.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

#: the shipped recipe, ``configs/tokenizer_cpu.yaml``: every arm below is a change to it
RECIPE = ROOT.parent / "configs" / "tokenizer_cpu.yaml"

#: arm name -> changes to the recipe (dicts are merged one level deep; None removes a key)
ARMS: dict[str, dict] = {
    "recipe": {},
    # the same model, optimizer and steps, trained as plain LARP (no locality loss, no codebook warm-up)
    "baseline": {"locality": None, "vq_warmup_steps": None},
    "no_locality": {"locality": None},  # codebook warm-up only
    "no_warmup": {"vq_warmup_steps": None},  # locality loss only, VQ + prior from the first step
    # 128 tokens on a (2, 8, 8) cell grid (time halves get their own tokens), locality weight doubled
    "tokens128": {"model_overrides": {"num_tokens": 128}, "locality": {"weight": 0.2}},
    # the first try (run before the recipe was fixed): 16-d codes sampled at the VQ temperature
    # (official), warm-up 600 and locality 600 + 600 steps, 1,500 steps
    "v1_sampled_16d": {"model_overrides": {"bottleneck_dim": 16}, "vq_sampling": None,
                       "locality": {"weight": 0.1, "hold_steps": 600, "anneal_steps": 600}, "vq_warmup_steps": 600},
}


def arm_config(name: str, steps: int) -> dict:
    """The recipe with arm ``name``'s changes, ``steps`` optimizer steps (0: the recipe's), no periodic
    evaluation or checkpoints (the protocol measures at the end and at ``--evals``)."""
    import yaml

    d = yaml.safe_load(RECIPE.read_text())
    for k, v in ARMS[name].items():
        if v is None:
            d.pop(k, None)
        elif isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = copy.deepcopy(v)
    d["run"].update(log_every=50, eval_every=100_000, save_every=100_000)
    if steps:
        d["run"]["max_steps"] = steps
    return d


def held_out(n_val: int, n_probe: int):
    from larp_lab.data.synthetic import SyntheticVideos

    held = SyntheticVideos(num_clips=n_val + n_probe, frames=8, size=32, seed=10_000)
    clips = torch.stack([held[i]["video"] for i in range(n_val + n_probe)])
    return clips[:n_val], clips[n_val:]


def coarse(v: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3, T, 8, 8): every frame pooled to 8x8."""
    return F.adaptive_avg_pool3d(v, (v.shape[2], 8, 8))


def psnrs(rec: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    from larp_lab.evaluation.metrics import psnr

    rec = rec.clamp(-1, 1)
    return float(psnr(rec, ref).mean()), float(psnr(coarse(rec), coarse(ref)).mean())


def ridge_r2(z: torch.Tensor, videos: torch.Tensor, n_train: int, lam: float = 1e-2) -> float:
    """plateau.py's probe: R^2 of each clip's 4x4 mean-removed layout read linearly from ``z`` (B, F)."""
    c = F.adaptive_avg_pool3d(videos, (1, 4, 4)).flatten(2)  # (B, 3, 16)
    y = (c - c.mean(-1, keepdim=True)).flatten(1).double()  # (B, 48)
    a = torch.cat([z.flatten(1), torch.ones(len(z), 1)], dim=1).double()
    w = torch.linalg.solve(a[:n_train].T @ a[:n_train] + lam * torch.eye(a.shape[1], dtype=a.dtype),
                           a[:n_train].T @ y[:n_train])
    pred, truth = a[n_train:] @ w, y[n_train:]
    return float(1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())


@torch.no_grad()
def measure(model, val: torch.Tensor, probe: torch.Tensor, n_probe_train: int, locality=None) -> dict:
    model.eval()
    recs, idx, cont = [], [], []
    for v in val.split(64):
        enc = model.encode(v)
        recs.append(model.decode(enc.embeddings).clamp(-1, 1))
        cont.append(model.decode(model.bottleneck.out_linear(enc.normalized)).clamp(-1, 1))  # no VQ
        idx.append(enc.indices)
    rec, idx = torch.cat(recs), torch.cat(idx)
    full, crs = psnrs(rec, val)
    full_c, crs_c = psnrs(torch.cat(cont), val)
    flat = val.mean(dim=(2, 3, 4), keepdim=True).expand_as(val)
    flat_full, flat_coarse = psnrs(flat, val)
    zq, zc = [], []
    for v in probe.split(100):
        enc = model.encode(v)
        zq.append(enc.latents.flatten(1))
        zc.append(enc.normalized.flatten(1))
    counts = torch.bincount(idx.flatten(), minlength=model.config.codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    out = {
        "psnr": full, "flat_psnr": flat_full, "coarse_psnr": crs, "flat_coarse_psnr": flat_coarse,
        "psnr_continuous": full_c, "coarse_psnr_continuous": crs_c,
        "layout_r2_quantized": ridge_r2(torch.cat(zq), probe, n_probe_train),
        "layout_r2_continuous": ridge_r2(torch.cat(zc), probe, n_probe_train),
        "codebook_usage": float((counts > 0).float().mean()),
        "perplexity": float(torch.exp(-(p * p.log()).sum())),
    }
    if locality is not None:
        out["own_cell_attention"] = locality.own_cell_attention(model, val[:32])
    out["_rec"] = rec[:6]
    return out


def picture(val: torch.Tensor, rec: torch.Tensor, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def row(v: torch.Tensor) -> np.ndarray:  # 6 clips x (first, middle, last frame), 1-px gaps
        tiles = []
        for clip in v:
            for t in (0, clip.shape[1] // 2, clip.shape[1] - 1):
                f = clip[:, t].permute(1, 2, 0).add(1).mul(127.5).clamp(0, 255).byte().numpy()
                tiles.append(np.pad(f, ((0, 0), (0, 1), (0, 0)), constant_values=255))
            tiles.append(np.full((f.shape[0], 4, 3), 255, np.uint8))
        return np.concatenate(tiles, axis=1)

    img = np.concatenate([row(val[:6]), np.full((2, row(val[:6]).shape[1], 3), 255, np.uint8), row(rec[:6])])
    fig = plt.figure(figsize=(12, 2.6))
    ax = fig.add_axes([0.01, 0.02, 0.98, 0.8])
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title + "\n(top: held-out clips, frames 0 / 4 / 7; bottom: reconstructions)", fontsize=8)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def read_log(run_dir: Path) -> list[dict]:
    p = run_dir / "log.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def run_arm(name: str, args, val, probe) -> dict:
    from larp_lab import LARPTokenizer
    from larp_lab.training.config import train_config_from_dict
    from larp_lab.training.locality import AttentionLocality
    from larp_lab.training.run import train_tokenizer

    d = arm_config(name, args.steps)
    cfg = train_config_from_dict(copy.deepcopy(d), "tokenizer")
    loc = None
    if cfg.locality is not None:
        m = cfg.model
        loc = AttentionLocality(cfg.locality, m.num_tokens, m.patch_grid, m.decoder_patch_grid)
    milestones = {}
    seconds = cpu_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.keep) / name if args.keep else Path(tmp) / name
        end = args.until if 0 < args.until < args.steps else args.steps
        stops = sorted({s for s in args.evals if 0 < s < end}) + [end]
        for i, stop in enumerate(stops):  # exact resume between the milestone measurements
            t0, c0 = time.perf_counter(), time.process_time()
            train_tokenizer(cfg, run_dir, device="cpu", progress=False, stop_after=stop, resume=i > 0)
            seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0  # core-seconds: independent of other load
            model = LARPTokenizer.from_pretrained(run_dir / "model")
            if stop < end:
                r = measure(model, val, probe, args.probe_train, loc)
                r.pop("_rec")
                milestones[stop] = r
                print(f"  {name} step {stop}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                             if isinstance(v, float)), flush=True)
        log = read_log(run_dir)
    res = measure(model, val, probe, args.probe_train, loc)
    res["milestones"] = milestones
    picture(val, res.pop("_rec"), f"{name}: {end} of {args.steps} steps, PSNR {res['psnr']:.2f} (flat {res['flat_psnr']:.2f}), "
            f"coarse {res['coarse_psnr']:.2f} (flat {res['flat_coarse_psnr']:.2f}), "
            f"R2(q) {res['layout_r2_quantized']:.2f}", ROOT / "results" / f"cpu_recipe_{name}_{end}.png")
    keep = ("rec", "psnr", "prior_ce", "usage", "locality", "locality_weight", "sec_per_step")
    res.update({
        "config": d, "steps": end, "schedule_steps": args.steps, "seconds": seconds, "sec_per_step": seconds / end,
        "cpu_seconds": cpu_seconds, "cpu_sec_per_step": cpu_seconds / end,
        "threads": torch.get_num_threads(),
        "train_log": [{k: r[k] for k in ("step", *keep) if k in r} for r in log if "step" in r],
    })
    return res


def plot_summary(results: dict, path: Path) -> None:
    """Training curves (train-batch PSNR from the run logs) and the held-out measures per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    flat = None
    for name, r in results["arms"].items():
        log = [x for x in r["train_log"] if "rec" in x]
        a1.plot([x["step"] for x in log], [x["psnr"] for x in log], label=name, lw=1)
        pts = sorted((int(s), m) for s, m in r.get("milestones", {}).items()) + [(r["steps"], r)]
        a2.plot([s for s, _ in pts], [m["layout_r2_quantized"] for _, m in pts], marker="o", label=name)
        flat = r["flat_psnr"]
    a1.axhline(flat, color="k", ls="--", lw=1, label="flat (held-out)")
    a1.set_xlabel("optimizer step")
    a1.set_ylabel("train-batch PSNR (dB)")
    a1.legend(fontsize=7)
    a2.axhline(0.8, color="k", ls="--", lw=1, label="bar")
    a2.set_xlabel("optimizer step")
    a2.set_ylabel("layout R2 from quantized tokens (held-out)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure_run_dir(run_dir: Path, args, val, probe) -> dict:
    """The protocol on a run directory written by ``larp-lab train-tokenizer`` (its exported model)."""
    import yaml

    from larp_lab import LARPTokenizer
    from larp_lab.training.config import train_config_from_dict
    from larp_lab.training.locality import AttentionLocality

    cfg = train_config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()), "tokenizer")
    model = LARPTokenizer.from_pretrained(run_dir / "model")
    loc = None
    if cfg.locality is not None:
        m = cfg.model
        loc = AttentionLocality(cfg.locality, m.num_tokens, m.patch_grid, m.decoder_patch_grid)
    res = measure(model, val, probe, args.probe_train, loc)
    log = read_log(run_dir)
    steps = max((r["step"] for r in log if "step" in r), default=0)
    picture(val, res.pop("_rec"), f"{run_dir.name} (larp-lab train-tokenizer): {steps} steps, PSNR {res['psnr']:.2f} "
            f"(flat {res['flat_psnr']:.2f}), coarse {res['coarse_psnr']:.2f} (flat {res['flat_coarse_psnr']:.2f}), "
            f"R2(q) {res['layout_r2_quantized']:.2f}", ROOT / "results" / f"cpu_recipe_cli_{run_dir.name}.png")
    keep = ("rec", "psnr", "prior_ce", "usage", "locality", "locality_weight", "sec_per_step")
    res.update({"config": cfg.to_dict(), "steps": steps, "milestones": {},
                "train_log": [{k: r[k] for k in ("step", *keep) if k in r} for r in log if "step" in r]})
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=[])
    ap.add_argument("--measure", type=Path, help="measure a finished run directory (e.g. one the CLI wrote) instead")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (default: the recipe's run.max_steps)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--evals", type=int, nargs="*", default=[], help="also measure at these steps")
    ap.add_argument("--until", type=int, default=0,
                    help="stop after this many steps (the schedules still span --steps); the arm is recorded as "
                         "name@until/steps")
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--probe-train", type=int, default=4000)
    ap.add_argument("--probe-test", type=int, default=500)
    ap.add_argument("--keep", default="", help="keep run directories under this folder")
    ap.add_argument("--name", default="cpu_recipe")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.steps <= 0:
        import yaml

        args.steps = int(yaml.safe_load(RECIPE.read_text())["run"]["max_steps"])
    val, probe = held_out(args.val, args.probe_train + args.probe_test)
    out = ROOT / "results" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{args.until}/{args.steps}" if 0 < args.until < args.steps else f"{args.steps}"
    jobs = [(f"{n}@{tag}", lambda n=n: run_arm(n, args, val, probe)) for n in args.arms]
    if args.measure:
        jobs.append((f"cli_{args.measure.name}", lambda: measure_run_dir(args.measure, args, val, probe)))
    if not jobs:
        ap.error("name --arms or --measure")
    for name, job in jobs:
        res = job()
        allres = json.loads(out.read_text()) if out.exists() else {"arms": {}}
        allres["arms"][name] = res
        allres["torch"] = torch.__version__
        out.write_text(json.dumps(allres, indent=1) + "\n")
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items() if isinstance(v, float)),
              flush=True)
        plot_summary(allres, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
