#!/usr/bin/env python
"""Holistic vs patch tokens, measured (issue 19, item 4): the bundled holistic tokenizer and its
generator beside the patch-token twin (``scripts/train_patch_twin.py``: same clips, codebook, number
of tokens, steps, batches and recipe), on the same held-out moving-digit clips.

    python scripts/compare_tokens.py --patch runs/patch_twin/larp-tiny-patch-tokenizer \
        --patch-generator runs/patch_twin/larp-tiny-patch-generator --out docs/holistic_vs_patch

Writes into ``--out``: ``comparison.json`` (every number), ``comparison.png`` (prefix curves, position
importance, prior bits per position), ``clips.png`` (rows per clip: original, holistic and patch
reconstructions, then each decoded from its first N/4 tokens) and ``generated.png`` (one sample per
class from each generator). Measured:

* tokenizers, on ``--clips`` held-out clips (the bundle's held-out seed): PSNR, SSIM, codebook usage,
  prior bits per token, the digit read back by the proxy classifier from the reconstructions;
* on ``--detail-clips`` of them: the prefix-decoding curve, position importance and (on 4 clips)
  token influence maps (:func:`larp_lab.analysis.compare_tokenizers`);
* generators: class accuracy by the proxy classifier and proxy gFVD of ``--clips`` samples at CFG
  ``--cfg-scale`` (the bundle's default, 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from larp_lab import LARPGenerator, LARPTokenizer, pipelines  # noqa: E402
from larp_lab.analysis.compare import compare_tokenizers  # noqa: E402
from larp_lab.analysis.token_order import keep_prefix, neutral_code  # noqa: E402
from larp_lab.data.digits import MovingDigits  # noqa: E402
from larp_lab.data.video import side_by_side  # noqa: E402
from larp_lab.evaluation.classifier import VideoClassifier  # noqa: E402
from larp_lab.evaluation.runner import EvalSettings, evaluate_generator, evaluate_tokenizer  # noqa: E402
from larp_lab.viz import clip_rows_figure, comparison_figure, save_figure  # noqa: E402

HELD_OUT_SEED = 424242  #: the held-out clips of scripts/bundle_models.py


def heldout(n: int, tok: LARPTokenizer) -> MovingDigits:
    c = tok.config
    return MovingDigits(n, c.frame_num, c.input_size, seed=HELD_OUT_SEED, split="heldout")


@torch.inference_mode()
def read_rate(tok: LARPTokenizer, clf: VideoClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> float:
    """Share of clips whose digit the proxy classifier reads from the tokenizer's reconstruction."""
    hits = 0
    for i in range(0, len(x), batch):
        rec = pipelines.reconstruct(tok, x[i : i + batch]).reconstruction
        hits += int((clf(rec).argmax(-1) == y[i : i + batch]).sum())
    return hits / len(x)


@torch.inference_mode()
def prefix_clips(tok: LARPTokenizer, x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 3, T, H, W) decoded from the first k tokens, the rest the neutral code."""
    ids = tok.encode(x).indices.long()
    return tok.decode_indices(keep_prefix(ids, k, neutral_code(tok, ids))).clamp(-1, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--holistic", type=Path, default=ROOT / "checkpoints/larp-tiny-tokenizer")
    p.add_argument("--holistic-generator", type=Path, default=ROOT / "checkpoints/larp-tiny-generator")
    p.add_argument("--patch", type=Path, default=ROOT / "checkpoints/larp-tiny-patch-tokenizer")
    p.add_argument("--patch-generator", type=Path, default=None, help="the twin's generator (not bundled)")
    p.add_argument("--classifier", type=Path, default=ROOT / "checkpoints/larp-tiny-classifier")
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--detail-clips", type=int, default=64)
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, default=None,
                   help="also store the numbers as the 'holistic_vs_patch' section of this metrics.json (the bundle's)")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    a.out.mkdir(parents=True, exist_ok=True)
    toks = {"holistic": LARPTokenizer.from_pretrained(a.holistic).eval(),
            "patch": LARPTokenizer.from_pretrained(a.patch).eval()}
    gens = {"holistic": LARPGenerator.from_pretrained(a.holistic_generator).eval()}
    if a.patch_generator is not None:
        gens["patch"] = LARPGenerator.from_pretrained(a.patch_generator).eval()
    clf = VideoClassifier.from_pretrained(a.classifier).eval()
    data = heldout(a.clips, toks["holistic"])
    items = [data[i] for i in range(a.clips)]
    x, y = torch.stack([it["video"] for it in items]), torch.tensor([it["label"] for it in items])

    out: dict = {"clips": a.clips, "detail_clips": a.detail_clips, "cfg_scale": a.cfg_scale, "tokenizers": {},
                 "generators": {}}
    for name, tok in toks.items():
        s = EvalSettings(num_clips=a.clips, batch_size=16, progress=False)
        m = evaluate_tokenizer(tok, heldout(a.clips, tok), s)
        m["classifier_reads_reconstructions"] = read_rate(tok, clf, x, y)
        m["token_mode"] = tok.config.token_mode
        m["parameters"] = sum(p.numel() for p in tok.parameters())
        meta = json.loads((Path(a.holistic if name == "holistic" else a.patch) / "config.json").read_text())
        m["training_steps"] = meta.get("metadata", {}).get("steps")
        out["tokenizers"][name] = m
        print(f"{name} tokenizer: {m['psnr_db']:.2f} dB, prior {m.get('prior_bits_per_token', float('nan')):.2f} bits, "
              f"read {m['classifier_reads_reconstructions']:.1%}", flush=True)
    out["classifier_reads_originals"] = float((clf(x).argmax(-1) == y).float().mean())

    cmp = compare_tokenizers(toks, x[: a.detail_clips], influence_clips=4)
    out["detail"] = cmp.table()
    out["prefix_curves"] = {n: r.prefix.table() for n, r in cmp.reports.items()}
    out["prefix_gap_db"] = [round(float(v), 3) for v in cmp.prefix_gap("holistic", "patch")]
    save_figure(comparison_figure(cmp, title=f"holistic vs patch tokens on {a.detail_clips} held-out clips"),
                a.out / "comparison.png")
    for row in out["detail"]:
        print(row, flush=True)

    n_tok = toks["holistic"].config.num_tokens
    k = n_tok // 4
    rows = []
    with torch.inference_mode():
        for i in range(3):
            xi = x[i : i + 1]
            rows.append((f"clip {i}: original", xi[0]))
            for name, tok in toks.items():
                rows.append((f"{name}", pipelines.reconstruct(tok, xi).reconstruction[0]))
            for name, tok in toks.items():
                rows.append((f"{name}, first {k}", prefix_clips(tok, xi, k)[0]))
    save_figure(clip_rows_figure(rows, title=f"reconstructions, and decoded from the first {k} of {n_tok} tokens "
                                             "(the rest: the neutral code)"), a.out / "clips.png")
    out["clips_png"] = (f"per clip: original, holistic and patch reconstructions, each from its first {k} tokens")

    gallery = []
    for name, gen in gens.items():
        tok = toks[name]
        s = EvalSettings(num_clips=a.clips, batch_size=16, cfg_scale=a.cfg_scale, seed=0,
                         classifier_path=str(a.classifier), progress=False)
        m = evaluate_generator(gen, tok, heldout(a.clips, tok), s)
        out["generators"][name] = m
        print(f"{name} generator: class accuracy {m.get('class_accuracy', float('nan')):.1%}, "
              f"proxy gFVD {m.get('proxy_gfvd', float('nan')):.2f}", flush=True)
        with torch.inference_mode():
            vids = [pipelines.generate(tok, gen, c, num_samples=1, cfg_scale=a.cfg_scale, seed=7, score=False).videos[0]
                    for c in range(gen.config.num_classes)]
        gallery.append((f"{name} generator", side_by_side(vids)))
    save_figure(clip_rows_figure(gallery, frames=1, row_height=1.0,
                                 title=f"one sample per digit 0-9 from each generator (CFG {a.cfg_scale}), first frame"),
                a.out / "generated.png")
    out["generated_png"] = f"per generator: one sample per digit 0-9, CFG {a.cfg_scale}, first frame"
    out["seconds"] = round(time.monotonic() - t0, 1)
    (a.out / "comparison.json").write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    if a.metrics is not None:
        body = json.loads(a.metrics.read_text(encoding="utf-8")) if a.metrics.is_file() else {}
        body["holistic_vs_patch"] = {k: out[k] for k in ("clips", "detail_clips", "cfg_scale", "tokenizers", "generators",
                                                         "detail", "classifier_reads_originals", "prefix_gap_db")}
        a.metrics.write_text(json.dumps(body, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"wrote {a.out} in {out['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
