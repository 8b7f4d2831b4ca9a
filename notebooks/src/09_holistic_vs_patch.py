# %% [markdown]
# # 09 · What holistic tokens buy: LARP beside a patch tokenizer
#
# **What this notebook teaches.** LARP's tokens are the outputs of N learned *queries* that read the
# whole clip ("holistic" tokens). The usual alternative cuts the clip into patches and makes one token
# per patch. To see what the queries change, the kit bundles a **patch-token twin** of the bundled
# tokenizer, `checkpoints/larp-tiny-patch-tokenizer`, trained by `scripts/train_patch_twin.py` with
# *everything else held equal*: the same moving-digit clips, the same encoder/decoder sizes, the same
# 1024-code codebook and 8-d bottleneck, the same 64 tokens per clip (so the same bits per clip), the
# same prior, the same recipe, seeds, batch and number of steps. Its 64 tokens are the encoder's outputs at its
# 4x4x4 patches (2 frames x 8x8 pixels each), in raster order (frame pair, row, column).
#
# We measure, on the same held-out clips:
#
# 1. reconstruction quality (PSNR, and whether the proxy classifier still reads the digit);
# 2. **the prefix curve**: decode from the first k tokens only (the rest set to a neutral code). This is
#    where the two kinds should differ most: a patch tokenizer's first tokens are the top-left corner of
#    the first frames; LARP's first tokens can hold anything;
# 3. how the clip is spread over the positions (the PSNR drop when one token is replaced);
# 4. how predictable each token is for the prior (bits per token: what a generator pays);
# 5. where each token acts in the decoded clip (token influence maps), and whether that place stays
#    put from clip to clip;
# 6. generation: a class-conditional generator of the same size and steps on each tokenizer's tokens
#    (measured by `scripts/compare_tokens.py`; the patch one is not bundled, to keep the bundle small).
#
# Every number in the text is printed by the code above it; the conclusion at the end is computed, not
# written in advance.

# %%
# "default": the bundled models. Your own: checkpoint directories (the twin of your own bundled run is made
# by scripts/train_patch_twin.py --bundle-log <your run>/train_log.json).
HOLISTIC = "default"
PATCH = "default"
N_CLIPS = 40  # held-out clips for the measurements (4 per digit)
SEED = 0

# %%
import json

import numpy as np
import pandas as pd
import torch

from larp_lab import LARPTokenizer, pipelines
from larp_lab.analysis import compare_tokenizers, token_influence
from larp_lab.analysis.token_order import keep_prefix, neutral_code
from larp_lab.bundled import DEFAULT_TOKENIZER, bundled_path, checkpoints_dir
from larp_lab.evaluation.metrics import psnr
from larp_lab.viz import clip_rows_figure, comparison_figure, influence_mosaic
from larp_lab.viz.notebook import bundled_clips, default_device, show_frames

PATCH_NAME = "larp-tiny-patch-tokenizer"
DEVICE = default_device()
torch.set_grad_enabled(False)  # inference only in this notebook

# %% [markdown]
# ## 1. The two tokenizers and the clips

# %%
hol = LARPTokenizer.from_pretrained(bundled_path(DEFAULT_TOKENIZER) if HOLISTIC == "default" else HOLISTIC,
                                    device=DEVICE).eval()
pat = LARPTokenizer.from_pretrained(bundled_path(PATCH_NAME) if PATCH == "default" else PATCH, device=DEVICE).eval()
toks = {"holistic": hol, "patch": pat}
for name, tok in toks.items():
    c = tok.config
    print(f"{name:>8}: token_mode={c.token_mode}, {c.num_tokens} tokens from a codebook of {c.codebook_size}, "
          f"encoder patches {c.temporal_patch_size}x{c.patch_size}x{c.patch_size} -> grid {c.patch_grid}, "
          f"{tok.num_parameters():,} parameters")
clips, labels, class_names = bundled_clips(hol, N_CLIPS, seed=SEED)
clips = clips.to(DEVICE)
show_frames(clips[:5].cpu(), "clips")

# %% [markdown]
# ## 2. Reconstructions, and decoding from the first 16 tokens
#
# For three clips: the original, each tokenizer's reconstruction from all 64 tokens, and each decoded from
# its first 16 tokens only (the other 48 set to the *neutral code*: the code nearest, on average, to the
# tokens the clips use; `larp_lab.analysis.token_order.neutral_code`).

# %%
K = hol.config.num_tokens // 4
rows = []
for i in range(3):
    x = clips[i : i + 1]
    rows.append((f"clip {i} ({class_names[int(labels[i])]})", x[0]))
    for name, tok in toks.items():
        rows.append((name, pipelines.reconstruct(tok, x).reconstruction[0]))
    for name, tok in toks.items():
        ids = tok.encode(x).indices
        rows.append((f"{name}, first {K}", tok.decode_indices(keep_prefix(ids, K, neutral_code(tok, ids))).clamp(-1, 1)[0]))
clip_rows_figure([(label, v.cpu()) for label, v in rows], title=f"reconstructions, then from the first {K} tokens")

# %% [markdown]
# ## 3. The measurements
#
# `compare_tokenizers` runs both tokenizers through the same code on the same clips: reconstruction PSNR,
# the prior's bits per token, the prefix curve (PSNR with the first k tokens kept), position importance
# (the PSNR drop when one token is replaced; `importance_top_quarter_share` is the share of the total drop
# carried by the most important quarter of the positions) and, on 4 clips, token influence maps
# (`influence_concentration`: the share of a token's effect inside its best 4x4 block of the frame;
# `influence_consistency`: how well its region correlates from clip to clip). A minute or two on a CPU.

# %%
cmp = compare_tokenizers(toks, clips, influence_clips=4, influence_codes=2, seed=SEED)
table = pd.DataFrame(cmp.table()).set_index("tokenizer")
table.T

# %%
comparison_figure(cmp, title=f"holistic vs patch tokens on {N_CLIPS} held-out clips")

# %% [markdown]
# ## 4. Reading the prefix curve
#
# The gap between the two curves at each k: positive where LARP's first k tokens reconstruct more of the
# clip than the patch tokenizer's first k.

# %%
gap = cmp.prefix_gap("holistic", "patch")
ks = cmp.reports["holistic"].prefix.ks
for k, g, h, p in zip(ks, gap, cmp.reports["holistic"].prefix.mean, cmp.reports["patch"].prefix.mean):
    print(f"k = {int(k):>2}: holistic {h:5.2f} dB, patch {p:5.2f} dB, gap {g:+5.2f} dB")
best = int(np.argmax(gap))
print(f"largest gap: {gap[best]:+.2f} dB at k = {int(ks[best])}")

# %% [markdown]
# ## 5. Where each token acts
#
# One clip, every token replaced by two other codes in turn: one map per token (in token order, row by
# row; bright = the decoded clip changes there). A patch token should act on its own patch; a holistic
# token wherever the content it encodes lies.

# %%
maps = {name: token_influence(tok, tok.encode(clips[:1]).indices[0], num_codes=2, seed=SEED) for name, tok in toks.items()}
mosaics = [(name, torch.from_numpy(influence_mosaic(m.maps)).permute(2, 0, 1)[:, None] * 2 - 1)  # (3, 1, H, W)
           for name, m in maps.items()]
clip_rows_figure(mosaics, frames=1, row_height=3.0, title="each token's influence on clip 0 (time-summed), tokens in order")

# %%
for name, rep in cmp.reports.items():
    conc = rep.concentration.mean(0)
    print(f"{name:>8}: {conc.mean():.0%} of a token's effect falls in its best 4x4 block (uniform: {1 / 16:.0%}); "
          f"its region correlates r = {np.nanmean(rep.consistency):.2f} from clip to clip")

# %% [markdown]
# ## 6. Generation
#
# `scripts/compare_tokens.py` trained nothing; it measured a class-conditional generator of the bundled
# generator's size and number of steps on each tokenizer's tokens (the patch one by
# `scripts/train_patch_twin.py`) with the proxy classifier: which share of 256 samples shows the digit
# asked for, at CFG 3, and a proxy Fréchet distance to real clips (lower is better). Its numbers are stored
# in the bundle's `metrics.json`.

# %%
metrics_path = checkpoints_dir() / "metrics.json"
gen = json.loads(metrics_path.read_text()).get("holistic_vs_patch", {}).get("generators", {}) if metrics_path.is_file() else {}
if gen:
    print(pd.DataFrame(gen).T[["class_accuracy", "proxy_gfvd"]].to_string())
else:
    print("no holistic_vs_patch section in metrics.json: run scripts/compare_tokens.py")

# %% [markdown]
# ## 7. What the numbers say
#
# Computed from the measurements above (rerun after retraining and it updates itself).

# %%
h, p = cmp.reports["holistic"].summary(), cmp.reports["patch"].summary()
print(f"reconstruction from all {hol.config.num_tokens} tokens: holistic {h['psnr_db']:.2f} dB, patch {p['psnr_db']:.2f} dB "
      f"({h['psnr_db'] - p['psnr_db']:+.2f} dB for holistic)")
print(f"prior: holistic {h['prior_bits_per_token']:.2f} bits/token, patch {p['prior_bits_per_token']:.2f} "
      f"(uniform {h['uniform_bits_per_token']:.0f}): the {'holistic' if h['prior_bits_per_token'] < p['prior_bits_per_token'] else 'patch'} "
      "tokens are the easier sequence to model")
print(f"prefix curve, mean over k: holistic {h['prefix_area_db']:.2f} dB, patch {p['prefix_area_db']:.2f} dB")
print(f"importance carried by the top quarter of positions: holistic {h['importance_top_quarter_share']:.0%}, "
      f"patch {p['importance_top_quarter_share']:.0%}")
print(f"locality: holistic {h['influence_concentration']:.0%} in one block (consistency {h['influence_consistency']:.2f}), "
      f"patch {p['influence_concentration']:.0%} (consistency {p['influence_consistency']:.2f})")
if gen:
    print(f"generation: holistic {gen['holistic']['class_accuracy']:.0%} of samples show the digit asked for, "
          f"patch {gen['patch']['class_accuracy']:.0%}")

# %% [markdown]
# **Going further.** Retrain both and compare again: `scripts/train_bundled.py` makes a new bundle,
# `scripts/train_patch_twin.py --bundle-log <its train_log.json>` its patch twin with the same clips, steps
# and seeds, and `scripts/compare_tokens.py` measures the pair (add `--metrics` to store the numbers). The
# app's Tokenizer menu switches between the bundled two in the Reconstruct, Explore and Surgery tabs;
# notebook 07 intervenes in the tokens of either.
