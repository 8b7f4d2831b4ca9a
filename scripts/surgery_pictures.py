"""Draw docs/surgery.png: token surgery, influence maps and patching on the bundled tokenizer.

    python scripts/surgery_pictures.py [--out docs/surgery.png] [--pairs 48] [--json docs/surgery.json]

Top: one held-out clip, its edit (the token that moves it most, set to a random unused code) and the
difference, every frame. Bottom left: where each token acts (influence maps in token order). Bottom
right: patching groups of positions from clip B into clip A over ``--pairs`` pairs (the groups chosen
on one set of pairs, measured on another): how far identity, position, motion and colour moved to B.
The numbers go to ``--json``. Deterministic: the same bundle gives the same picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure_and_draw(out: Path, pairs: int = 48, json_out: Path | None = None) -> dict:
    import numpy as np
    import torch

    from larp_lab import load_default_tokenizer
    from larp_lab.analysis import (
        decode_edit,
        edit_tokens,
        influence_consistency,
        patching_sweep,
        token_influence,
    )
    from larp_lab.bundled import bundled_path, has_bundled
    from larp_lab.evaluation.classifier import VideoClassifier
    from larp_lab.viz import difference_clip, influence_mosaic, new_figure, save_figure
    from larp_lab.viz.figure import to_image
    from larp_lab.viz.notebook import bundled_clips

    torch.set_grad_enabled(False)
    tok = load_default_tokenizer().eval()
    c = tok.config
    N = c.num_tokens
    x, y, names = bundled_clips(tok, 60, seed=4)
    clf = None
    if has_bundled("larp-tiny-classifier"):
        clf = VideoClassifier.from_pretrained(bundled_path("larp-tiny-classifier")).eval()
    ids = tok.encode(x).indices
    maps = [token_influence(tok, ids[i], num_codes=4, seed=i) for i in range(6)]
    clip = 3
    strongest = int(np.argmax(maps[clip].strength()))
    code = int(maps[clip].codes[strongest, 0])
    e = decode_edit(tok, ids[clip], edit_tokens(ids[clip], {strongest: code}))
    single = patching_sweep(tok, x, clf, y, num_pairs=pairs, seed=0)
    sm = single.means()
    whats = [w for w in ("identity", "position", "colour") if not np.isnan(sm[w]).all()]
    groups = {f"top-8 {w}": single.top(w, k=8) for w in whats}
    rng = np.random.default_rng(1)
    groups |= {"8 random": sorted(rng.choice(N, 8, replace=False).tolist()),
               "first half": list(range(N // 2)), "second half": list(range(N // 2, N))}
    fresh = patching_sweep(tok, x, clf, y, groups=list(groups.values()), num_pairs=pairs, seed=1)
    gm = fresh.means()
    conc = np.stack([m.concentration(4) for m in maps]).mean(0)
    cons = influence_consistency(maps)

    T = c.frame_num
    fig = new_figure(figsize=(13, 9.2), layout=None)[0]
    fig.clear()
    outer = fig.add_gridspec(2, 1, height_ratios=[1, 1.45], hspace=0.28, left=0.09, right=0.98, top=0.95,
                             bottom=0.09)
    top = outer[0].subgridspec(1, 2, width_ratios=[T, 3.2], wspace=0.12)
    frames = top[0].subgridspec(3, T, wspace=0.04, hspace=0.08)
    rows = [("original", e.original), (f"token {strongest}\n-> code {code}", e.edited),
            ("difference", difference_clip(e.difference, vmax=1.0))]
    for r, (label, v) in enumerate(rows):
        for t in range(T):
            ax = fig.add_subplot(frames[r, t])
            ax.imshow(to_image(v[:, t].numpy()), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(f"t={t}", fontsize=7)
    ax = fig.add_subplot(top[1])
    ax.plot(e.energy, "o-", color="#d95f02")
    ax.set_title("the edit's change per frame\n(mean squared difference)", fontsize=9)
    ax.set_xlabel("frame", fontsize=8)
    ax.tick_params(labelsize=7)
    bottom = outer[1].subgridspec(1, 2, width_ratios=[1, 1.25], wspace=0.2)
    ax = fig.add_subplot(bottom[0])
    ax.imshow(influence_mosaic(maps[clip].maps), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"where each of the {N} tokens acts (clip above; token order left to right, top to bottom)\n"
                 f"share in its best 4x4 block {conc.mean():.2f} (uniform 0.06); same region across clips "
                 f"r = {cons.mean():.2f}", fontsize=8)
    ax = fig.add_subplot(bottom[1])
    labels = list(groups)
    width = 0.8 / len(whats + ["motion"])
    for k, w in enumerate(whats + ["motion"]):
        ax.bar(np.arange(len(labels)) + k * width, np.nan_to_num(gm[w]), width, label=w)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=25, fontsize=7, ha="right")
    ax.axhline(1, color="grey", lw=0.5, ls=":")
    ax.set_ylabel("moved from A towards B (1 = became B)", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"patching B's tokens into A ({pairs} pairs of different digits; groups chosen on other pairs)",
                 fontsize=8)
    save_figure(fig, out)
    result = {
        "tokenizer": str(bundled_path("larp-tiny-tokenizer")), "pairs": pairs, "edit": {
            "clip": clip, "position": strongest, "code": code, "energy_per_frame": [float(v) for v in e.energy]},
        "influence": {"concentration_best_4x4_block_mean": float(conc.mean()),
                      "consistency_across_6_clips_mean": float(cons.mean()),
                      "consistency_min": float(cons.min()), "consistency_max": float(cons.max())},
        "single_positions": {w: {"top5": single.top(w, 5), "top5_mean": float(np.nanmean(sm[w][single.top(w, 5)])),
                                 "mean": float(np.nanmean(sm[w]))} for w in (*whats, "motion")},
        "groups": {g: {"positions": groups[g], **{k: float(v[i]) for k, v in gm.items()}}
                   for i, g in enumerate(labels)},
    }
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "surgery.png")
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "surgery.json")
    p.add_argument("--pairs", type=int, default=48)
    a = p.parse_args(argv)
    r = measure_and_draw(a.out, a.pairs, a.json)
    print(json.dumps(r["groups"], indent=1))
    print(f"wrote {a.out} and {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
