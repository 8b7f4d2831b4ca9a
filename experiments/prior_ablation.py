"""Does training the tokenizer with an AR prior make its tokens easier to generate? (paper Fig. 1b)

    python experiments/prior_ablation.py [--name NAME] [--seeds 0 1 2] [--scale cpu|gpu] [--device cpu]

Three arms, trained with identical settings apart from the prior:

* ``with_prior``: the prior with two-round scheduled sampling (LARP);
* ``no_scheduled_sampling``: the prior trained by teacher forcing only (one round);
* ``without_prior``: no prior (a plain holistic VQ tokenizer).

For each arm and seed: a tokenizer on the synthetic dataset, then a class-conditional generator on
its tokens with the same settings for every arm; then reconstruction PSNR and proxy rFVD on
held-out clips, the generator's validation NLL per token, proxy gFVD and the class accuracy of
generated samples (a classifier trained once on the same data, shared by all arms), and the gap
gFVD - rFVD. Results (every seed and means with 95% t-intervals) go to
``experiments/results/<name>.json`` with a plot next to it; notebook 06 reads them.

The settings below were fixed before running and are not tuned towards any outcome. ``--scale cpu``
is a reduced version (32x32x8 clips, small models, short training) that runs on a laptop CPU;
``--scale gpu`` is the full version (64x64x16, the bundled model sizes, longer training).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

ARMS = ("with_prior", "no_scheduled_sampling", "without_prior")

SCALES = {
    "cpu": {
        "frames": 8, "size": 32, "tokens": 32, "codebook": 256, "hidden": 96, "depth": 2, "heads": 4,
        "prior": {"n_layer": 2, "n_head": 2, "n_embd": 64},
        "tok_steps": 600, "tok_batch": 16, "tok_lr": 1e-3,
        "gen": {"dim": 128, "n_layer": 4, "n_head": 4}, "gen_clips": 4000, "gen_steps": 500, "gen_batch": 32,
        "gen_lr": 1e-3, "eval_clips": 240, "cfg_scale": 1.5, "clf_steps": 600, "clf_width": 12,
    },
    "gpu": {
        "frames": 16, "size": 64, "tokens": 256, "codebook": 1024, "hidden": 192, "depth": 4, "heads": 4,
        "prior": {"n_layer": 4, "n_head": 4, "n_embd": 128},
        "tok_steps": 20000, "tok_batch": 64, "tok_lr": 6e-4,
        "gen": {"dim": 384, "n_layer": 8, "n_head": 6}, "gen_clips": 50000, "gen_steps": 20000, "gen_batch": 128,
        "gen_lr": 6e-4, "eval_clips": 2048, "cfg_scale": 1.5, "clf_steps": 3000, "clf_width": 16,
    },
}


def tokenizer_config(arm: str, s: dict, seed: int):
    from larp_lab.training.config import train_config_from_dict

    prior = {**s["prior"], "embd_pdrop": 0.1, "resid_pdrop": 0.1, "attn_pdrop": 0.1}
    if arm == "no_scheduled_sampling":
        prior.update(n_rounds=1)
    model = {
        "input_size": s["size"], "frame_num": s["frames"], "num_tokens": s["tokens"], "codebook_size": s["codebook"],
        "encoder_hidden_size": s["hidden"], "decoder_hidden_size": s["hidden"], "encoder_depth": s["depth"],
        "decoder_depth": s["depth"], "encoder_num_heads": s["heads"], "decoder_num_heads": s["heads"],
        "prior": None if arm == "without_prior" else prior,
    }
    return train_config_from_dict({
        "model": "micro", "model_overrides": model,
        "data": {"sources": [{"kind": "synthetic"}], "frames": s["frames"], "size": s["size"], "val_clips": 32,
                 "seed": seed},
        "optim": {"lr": s["tok_lr"], "warmup_steps": s["tok_steps"] // 20, "grad_clip": 1.0},
        "run": {"batch_size": s["tok_batch"], "max_steps": s["tok_steps"], "log_every": 25,
                "eval_every": s["tok_steps"], "save_every": s["tok_steps"], "seed": seed},
        # identical in every arm: short runs of small models collapse their codebook without it
        "dead_code_restart_every": 25,
    }, "tokenizer")


def generator_config(s: dict, seed: int):
    from larp_lab.training.config import train_config_from_dict

    return train_config_from_dict({
        "model": "micro", "model_overrides": {**s["gen"], "multiple_of": 32},
        "data": {"sources": [{"kind": "synthetic"}], "frames": s["frames"], "size": s["size"], "seed": 10_000 + seed},
        "num_train_clips": s["gen_clips"],
        "optim": {"lr": s["gen_lr"], "weight_decay": 0.05, "warmup_steps": s["gen_steps"] // 20, "grad_clip": 1.0},
        "run": {"batch_size": s["gen_batch"], "max_steps": s["gen_steps"], "log_every": 25,
                "eval_every": s["gen_steps"], "save_every": s["gen_steps"], "seed": seed},
        "sample_cfg_scale": s["cfg_scale"],
    }, "generator")


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and the 95% t-interval half-width over seeds."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return {"mean": m, "ci95": float("nan"), "n": n}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 8: 2.365, 10: 2.262}.get(n, 1.96)
    return {"mean": m, "ci95": t * sd / math.sqrt(n), "n": n}


def run(name: str, seeds: list[int], scale: str, device: str, out_root: Path) -> dict:
    import torch

    from larp_lab import LARPGenerator, LARPTokenizer
    from larp_lab.data.synthetic import SyntheticVideos
    from larp_lab.evaluation.classifier import train_classifier
    from larp_lab.evaluation.runner import EvalSettings, evaluate_generator, evaluate_tokenizer
    from larp_lab.training.run import train_generator, train_tokenizer

    s = SCALES[scale]
    work = out_root / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    clf_dir = work / "classifier"
    if not (clf_dir / "model.safetensors").is_file():
        data = SyntheticVideos(num_clips=4000, frames=s["frames"], size=s["size"], seed=777)
        res = train_classifier(data, s["clf_steps"], batch_size=16, width=s["clf_width"], seed=0, out_dir=clf_dir,
                               device=device, progress=False)
        print(f"classifier held-out accuracy {res.val_accuracy:.3f}", flush=True)
    clf_acc = json.loads((clf_dir / "train_log.json").read_text())["val_accuracy"]
    held_out = SyntheticVideos(num_clips=s["eval_clips"], frames=s["frames"], size=s["size"], seed=999)
    settings = EvalSettings(num_clips=s["eval_clips"], batch_size=32, seed=0, cfg_scale=s["cfg_scale"],
                            classifier_path=str(clf_dir), progress=False)
    per_seed: dict[str, list[dict]] = {a: [] for a in ARMS}
    for seed in seeds:
        for arm in ARMS:
            t0 = time.time()
            tdir, gdir = work / f"{arm}_s{seed}" / "tokenizer", work / f"{arm}_s{seed}" / "generator"
            if not (tdir / "model" / "model.safetensors").is_file():
                train_tokenizer(tokenizer_config(arm, s, seed), tdir, device=device, progress=False)
            if not (gdir / "model" / "model.safetensors").is_file():
                train_generator(generator_config(s, seed), gdir, tokenizer=str(tdir / "model"), device=device,
                                progress=False)
            tok = LARPTokenizer.from_pretrained(tdir / "model", device=device)
            gen = LARPGenerator.from_pretrained(gdir / "model", device=device)
            rec = evaluate_tokenizer(tok, held_out, settings, device)
            smp = evaluate_generator(gen, tok, held_out, settings, device)
            val_nll = [json.loads(line) for line in (gdir / "log.jsonl").read_text().splitlines()]
            val_nll = [r["val_nll"] for r in val_nll if r["split"] == "eval"][-1]
            row = {"seed": seed, "psnr_db": rec["psnr_db"], "proxy_rfvd": rec["proxy_rfvd"],
                   "codebook_usage": rec["codebook_usage"], "val_nll_per_token": val_nll,
                   "proxy_gfvd": smp["proxy_gfvd"], "class_accuracy": smp["class_accuracy"],
                   "gap_gfvd_minus_rfvd": smp["proxy_gfvd"] - rec["proxy_rfvd"], "minutes": (time.time() - t0) / 60}
            per_seed[arm].append(row)
            print(f"{arm:<22} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "seed"),
                  flush=True)
            del tok, gen
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    metrics = [k for k in per_seed[ARMS[0]][0] if k not in ("seed", "minutes")]
    summary = {arm: {m: mean_ci([r[m] for r in per_seed[arm]]) for m in metrics} for arm in ARMS}
    result = {"name": name, "scale": scale, "device": device, "seeds": seeds, "settings": s,
              "classifier_val_accuracy": clf_acc, "arms": per_seed, "summary": summary}
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("psnr_db", "recon PSNR (dB) ↑"), ("proxy_rfvd", "proxy rFVD ↓"), ("val_nll_per_token", "generator NLL/token ↓"),
            ("proxy_gfvd", "proxy gFVD ↓"), ("class_accuracy", "class accuracy ↑"), ("gap_gfvd_minus_rfvd", "gFVD - rFVD ↓")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
    colors = {"with_prior": "#1f77b4", "no_scheduled_sampling": "#ff7f0e", "without_prior": "#7f7f7f"}
    for ax, (k, title) in zip(axes, keys):
        for i, arm in enumerate(ARMS):
            st = result["summary"][arm][k]
            ax.bar(i, st["mean"], yerr=0 if math.isnan(st["ci95"]) else st["ci95"], color=colors[arm], capsize=4)
            ax.scatter([i] * len(result["arms"][arm]), [r[k] for r in result["arms"][arm]], color="k", s=8, zorder=3)
        ax.set_xticks(range(len(ARMS)), ["prior+SS", "prior", "no prior"], rotation=20)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"AR-prior ablation ({result['scale']} scale, {len(result['seeds'])} seeds; bars: mean, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    name = a.name or f"prior_ablation_{a.scale}"
    out_root = ROOT
    result = run(name, a.seeds, a.scale, a.device, out_root)
    (ROOT / "results").mkdir(exist_ok=True)
    path = ROOT / "results" / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    plot(result, ROOT / "results" / f"{name}.png")
    print(json.dumps(result["summary"], indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
