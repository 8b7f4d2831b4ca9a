# %% [markdown]
# # 06 · What does the AR prior do?
#
# **What this notebook teaches.** LARP's central claim (paper, Fig. 1b): training the tokenizer together
# with a small autoregressive **prior** shapes its token space so that a second-stage AR generator models
# it better (lower NLL, better generation FVD), at little cost in reconstruction.
# `experiments/prior_ablation.py` tests it with three arms trained with otherwise identical settings:
#
# - `with_prior`: the prior with two-round scheduled sampling (LARP);
# - `no_scheduled_sampling`: the prior trained by teacher forcing only;
# - `without_prior`: no prior at all.
#
# Metrics per arm: reconstruction PSNR and proxy rFVD, the generator's validation NLL per token, proxy
# gFVD and class accuracy of generated clips, and the gap gFVD - rFVD (mean and 95% interval over seeds).
#
# This notebook plots the experiment's results when `experiments/results/prior_ablation_cpu.json`
# exists. Otherwise it runs a **tiny demonstration** (one seed, very short training) that shows the
# procedure, **not evidence either way**. Section 3 shows what a trained prior predicts.

# %%
RESULTS = "experiments/results/prior_ablation_cpu.json"  # relative to the repository
# the tokenizer whose prior section 3 looks at ("default": the bundled one, trained on moving digits):
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights

# %%
import json
import math
import sys

import pandas as pd

from larp_lab import pipelines
from larp_lab.analysis import encode_dataset
from larp_lab.bundled import resolve_tokenizer
from larp_lab.data import video_grid
from larp_lab.viz import category_colors, new_figure
from larp_lab.viz.notebook import bundled_clips, default_device, interleave, output_dir, repo_root, show_video

REPO = repo_root()  # the repository (examples/, configs/, experiments/)
OUT = output_dir()  # a temporary folder for the demonstration's runs, and the videos shown
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"

sys.path.insert(0, str(REPO / "experiments"))
import prior_ablation  # noqa: E402  (experiments/prior_ablation.py)

# %% [markdown]
# ## 1. The results (or a tiny demonstration)

# %%
path = REPO / RESULTS
if path.is_file():
    result = json.loads(path.read_text())
    LABEL = f"{path.name}: {result['scale']} scale, {len(result['seeds'])} seeds"
else:  # no results yet: the same procedure, tiny (1 seed, 100 steps per model): 1-2 minutes on a CPU
    prior_ablation.SCALES["notebook_demo"] = {**prior_ablation.SCALES["cpu"], "tok_steps": 100, "gen_steps": 100,
                                              "gen_clips": 512, "eval_clips": 64, "clf_steps": 100}
    result = prior_ablation.run("notebook_demo", [0], "notebook_demo", DEVICE, OUT)
    LABEL = "TINY DEMONSTRATION (1 seed, 100 steps per model): not evidence"
print(LABEL)

# %%
METRICS = {"psnr_db": "recon PSNR (dB) ↑", "proxy_rfvd": "proxy rFVD ↓", "val_nll_per_token": "generator NLL/token ↓",
           "proxy_gfvd": "proxy gFVD ↓", "class_accuracy": "class accuracy ↑", "gap_gfvd_minus_rfvd": "gFVD - rFVD ↓"}
arms = list(result["summary"])
def mean_ci(s):  # "mean ± 95% half-width" (no interval with one seed)
    return f"{s['mean']:.4g}" + ("" if math.isnan(s["ci95"]) else f" ± {s['ci95']:.2g}")


pd.DataFrame({arm: {m: mean_ci(s[m]) for m in METRICS} for arm, s in result["summary"].items()}).rename(index=METRICS)

# %%
fig, axes = new_figure(1, len(METRICS), figsize=(2.6 * len(METRICS), 3.4))
for ax, (key, title) in zip(axes[0], METRICS.items()):
    for i, (arm, colour) in enumerate(zip(arms, category_colors(len(arms)))):
        s = result["summary"][arm][key]
        ax.bar(i, s["mean"], yerr=0 if math.isnan(s["ci95"]) else s["ci95"], color=colour, capsize=4)
        ax.scatter([i] * len(result["arms"][arm]), [r[key] for r in result["arms"][arm]], color="k", s=8, zorder=3)
    ax.set_xticks(range(len(arms)), [a.replace("_", " ") for a in arms], rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
fig.suptitle(f"{LABEL}  (bars: mean, error bars: 95% CI over seeds, dots: seeds)", fontsize=10)
fig

# %% [markdown]
# ## 2. Reading the numbers
#
# If the prior helps as the paper says, `with_prior` has a lower generator NLL per token and a lower
# gFVD / gap than `without_prior`, with similar reconstruction PSNR; `no_scheduled_sampling` tells how
# much of the effect needs scheduled sampling. Only differences larger than the intervals count; with
# one seed there is no interval at all, and the tiny demonstration is far too short to show anything.
# A lower NLL alone is not the whole story: a tokenizer that uses few codes is also easy to predict,
# so look at PSNR and codebook usage (`result["summary"][arm]["codebook_usage"]`) too.

# %% [markdown]
# ## 3. What a trained prior predicts
#
# The prior predicts each token from the ones before it. Give it the first k tokens of a clip and let it
# continue greedily (`pipelines.complete`, which decodes the completed tokens and measures them against
# the clip): how many of the remaining tokens does it get right, and what does the decoder make of its guess?
# The clips are four held-out moving digits (the bundled models' training data, unseen handwriting). The
# prior is never told the digit: from a short prefix it can place and colour a blob, but whether it
# draws the *right* digit depends on how much of the digit's shape the first k tokens already hold.

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
N = cfg.num_tokens
x, y, _ = bundled_clips(tok, 4, seed=5)  # clips of the tokenizer's own data: classes 0-3 (the digits 0-3)
data = encode_dataset(tok, list(zip(x, y)), batch_size=4)
KS = [N // 16, N // 4, N // 2]
done = [pipelines.complete(tok, data.indices, k, reference=data.videos) for k in KS]  # by the prior, greedy
for c in done:
    right = (c.tokens[:, c.k:] == data.indices[:, c.k:]).float().mean()
    print(f"k = {c.k:<4} the prior guesses {right:.1%} of the other tokens exactly; "
          f"PSNR {c.metrics['psnr_db']:.2f} dB (all tokens: {data.psnr.mean():.2f} dB)")
print("columns: original, then the prior's completion from k =", KS)
show_video(video_grid(interleave(data.videos, *(c.video for c in done)), nrow=len(KS) + 1), "prior_completion",
           width=560)

# %% [markdown]
# ## What to try next
#
# - Run the full experiment (about an hour on a laptop CPU, three seeds):
#   `python experiments/prior_ablation.py --scale cpu`, then re-run this notebook.
# - On a GPU: `--scale gpu` (64x64x16 clips, larger models, longer training).
# - Sample the prior instead of taking its argmax: `pipelines.complete(tok, ids, k, greedy=False, temperature=1.0, seed=1)`.
# - Complete with the second-stage generator instead of the prior: `pipelines.complete(tok, ids, k, generator=gen)`.
# - Compare the prior's surprisal of the three arms' tokens with notebook 03's tools
#   (`larp_lab.analysis.prior_surprisal`) on the tokenizers under the run directory.
