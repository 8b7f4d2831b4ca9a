# %% [markdown]
# # 08 · How the latent space forms: scrubbing through training
#
# **What this notebook teaches.** The bundled tokenizer was saved a handful of times while it trained, at
# steps spaced evenly on a log scale (`larp_lab.training.pool_tasks.snapshot_steps`), as small fp16
# checkpoints in `checkpoints/larp-tiny-tokenizer-snapshots/step<N>/`. Every snapshot is a complete
# tokenizer (with its prior), so we can run **the same held-out clips** through each one and watch
# the latent space take shape:
#
# 1. reconstructions sharpening (PSNR, SSIM, beside painting each clip in its mean colour);
# 2. the codebook filling up (codes used on these clips, perplexity);
# 3. the prior learning to predict the tokens (bits per token, beside the `log2 K` of a uniform guess);
# 4. the holistic queries' attention localising (share on the query's "home cell", attention entropy);
# 5. whether a clip's token ids settle early or keep changing until the end.
#
# Every number in the text below is printed by the code above it: rerun the notebook after retraining
# and the story updates itself.

# %%
# "default": the bundled tokenizer's snapshots, then the bundled tokenizer itself (offline).
# Your own run: the folder of step<N>/ snapshots the recipe wrote (e.g. "runs/bundled_work/tokenizer_snapshots")
# and FINAL = the trained model's directory, or None to scrub the snapshots only.
SNAPSHOTS = "default"
FINAL = "default"
N_CLIPS = 50  # held-out clips measured at every snapshot (5 per digit)
SEED = 0

# %%
import json

import ipywidgets as widgets
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from larp_lab import LARPTokenizer
from larp_lab.analysis import bundled_snapshots, list_snapshots, measure_snapshots
from larp_lab.bundled import DEFAULT_TOKENIZER, checkpoints_dir
from larp_lab.evaluation.metrics import psnr
from larp_lab.viz import snapshot_curves, snapshot_grid
from larp_lab.viz.notebook import bundled_clips, data_kind, default_device, output_dir, show_frames

OUT = output_dir()  # a temporary folder: show_frames writes this notebook's pictures there
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"
torch.set_grad_enabled(False)  # inference only in this notebook

# %% [markdown]
# ## 1. The snapshots and the clips
#
# `bundled_snapshots()` lists the snapshot folders sorted by step (the step is in the folder's name and in
# its `config.json`), and closes the list with the trained model, at the step its `config.json` says it
# reached. The clips are held-out moving digits (handwriting never trained on), one digit after another.

# %%
if SNAPSHOTS == "default":
    snaps = bundled_snapshots(DEFAULT_TOKENIZER, include_final=FINAL == "default")
else:
    snaps = list_snapshots(SNAPSHOTS, None if FINAL in (None, "default") else FINAL)
final_tok = LARPTokenizer.from_pretrained(snaps[-1].path)
kind = data_kind(final_tok) if snaps[-1].final else "digits"  # snapshots do not record their data; the final model does
clips, labels, class_names = bundled_clips(final_tok, N_CLIPS, seed=SEED, kind=kind)
cfg = final_tok.config
print(f"{len(snaps)} points: " + ", ".join(s.label for s in snaps))
print(f"{N_CLIPS} held-out {kind} clips of {cfg.frame_num} frames at {cfg.input_size}x{cfg.input_size}; "
      f"{cfg.num_tokens} tokens per clip from a codebook of {cfg.codebook_size}")
show_frames(clips[:5], "clips")

# %% [markdown]
# What the training recipe did on the way, read from the bundle's `train_log.json` when it is there: the
# schedule's length and the attention-locality loss, which gives every query a home cell early in training
# and is then annealed to zero (`larp_lab.training.locality`), so the trained model is plain LARP.

# %%
log_path = checkpoints_dir() / "train_log.json"
locality = None
if SNAPSHOTS == "default" and log_path.is_file():
    stage = json.loads(log_path.read_text())["stages"]["tokenizer"]
    locality = stage["config"].get("locality")
    print(f"tokenizer training: {stage.get('steps')} steps of batch {stage.get('batch_size')} "
          f"(planned {stage.get('planned_steps')})")
    if locality:
        end = locality["hold_steps"] + locality["anneal_steps"]
        print(f"locality loss: weight {locality['weight']} held until step {locality['hold_steps']}, "
              f"then annealed to 0 by step {end}")
else:
    print("no train_log.json for these snapshots: the training schedule is not known here")

# %% [markdown]
# ## 2. Measure every snapshot on the same clips
#
# `measure_snapshots` loads one snapshot at a time, encodes and decodes the clips, and records the
# numbers of the table below (one row per snapshot), a few reconstructions and the last encoder layer's
# attention maps of two queries. A few seconds on a CPU for the bundled tokenizer.

# %%
rep = measure_snapshots(snaps, clips, DEVICE, keep=5)
table = pd.DataFrame(rep.table()).set_index("step").drop(columns=["label", "final"])
print(f"uniform prior: {rep.uniform_bits:.2f} bits per token; own-cell share of uniform attention: "
      f"{rep.own_cell_chance:.4f} (token cells {rep.cells})")
table

# %% [markdown]
# ## 3. Scrub through training
#
# Rows are snapshots, top to bottom; the first row holds the originals. Left: the middle frame of five
# held-out clips as each snapshot reconstructs them. Right: where two queries look on the first clip
# (last encoder layer, heads averaged, summed over time, each map scaled to its own maximum), with the
# query's home cell outlined in cyan. The slider below shows one snapshot at a time, with the curves of
# section 4 marked at its step.

# %%
snapshot_grid(rep)


# %%
LAST = len(rep) - 1  # the final model


def show_snapshot(i=LAST):
    display(snapshot_grid(rep, rows=[i], title=f"{rep.labels[i]}: PSNR {rep.psnr[i]:.2f} dB"))
    display(snapshot_curves(rep, highlight=i))


display(widgets.interactive(show_snapshot, i=widgets.IntSlider(value=LAST, min=0, max=LAST, description="snapshot")))

# %% [markdown]
# ## 4. The curves
#
# Four panels against the training step (log axis; the final model starred): reconstruction quality,
# codebook use on these clips, the prior's bits per token and the queries' attention.

# %%
snapshot_curves(rep)

# %% [markdown]
# ## 5. Reading the curves
#
# **Reconstructions.** A tokenizer that paints each clip in its mean colour is the first thing to beat.

# %%
flat = clips.mean(dim=(2, 3, 4), keepdim=True).expand_as(clips)  # each clip painted in its mean colour
flat_psnr = float(psnr(flat, clips).mean())
above = [int(s) for s, p in zip(rep.steps, rep.psnr) if p > flat_psnr]
print(f"PSNR: {rep.psnr[0]:.2f} dB at step {rep.steps[0]} -> {rep.psnr[-1]:.2f} dB at step {rep.steps[-1]}; "
      f"SSIM {rep.ssim[0]:.3f} -> {rep.ssim[-1]:.3f}")
print(f"mean-colour painting: {flat_psnr:.2f} dB; first snapshot above it: "
      + (f"step {above[0]}" if above else "none"))
gains = np.diff(rep.psnr)
j = int(np.argmax(gains))
print(f"largest gain between neighbouring snapshots: {gains[j]:+.2f} dB, from step {rep.steps[j]} to {rep.steps[j + 1]}")

# %% [markdown]
# **Codebook.** On these clips there are `N_CLIPS x tokens` token slots, so at most that many codes can be
# used; the perplexity counts how many codes are used *evenly*.

# %%
slots = N_CLIPS * cfg.num_tokens
for i in range(len(rep)):
    print(f"{rep.labels[i]:>20}: {rep.used_codes[i]:>5} codes used ({100 * rep.usage[i]:5.1f}% of "
          f"{rep.codebook_size}; {slots} token slots), perplexity {rep.perplexity[i]:7.1f}")

# %% [markdown]
# **Prior.** The prior predicts token i from tokens 0..i-1. Knowing nothing, it would pay `log2 K` bits per
# token; every bit below that line is structure it has found in the token sequences. Early on it can pay
# *more* than the uniform guess: a confident prior that is wrong costs more than no prior.

# %%
below = [int(s) for s, b in zip(rep.steps, rep.prior_bits) if b < rep.uniform_bits]
print(f"bits per token: {rep.prior_bits[0]:.2f} at step {rep.steps[0]} -> {rep.prior_bits[-1]:.2f} at step "
      f"{rep.steps[-1]} (uniform {rep.uniform_bits:.2f}); first below uniform: "
      + (f"step {below[0]}" if below else "none"))
print(f"the final prior saves {rep.uniform_bits - rep.prior_bits[-1]:.2f} bits per token, "
      f"{cfg.num_tokens * (rep.uniform_bits - rep.prior_bits[-1]):.0f} bits per clip")

# %% [markdown]
# **Queries.** At initialisation every query attends almost uniformly (normalised entropy near 1, own-cell
# share near chance). The own-cell share says how much of a query's attention sits on its home cell; the
# entropy says how concentrated it is, wherever it is. When the locality loss is annealed away, the
# queries are free to look elsewhere: does their attention stay on the home cell, spread, or move?

# %%
for i in range(len(rep)):
    phase = ""
    if locality:
        s = int(rep.steps[i])
        phase = ("locality loss on" if s <= locality["hold_steps"] else
                 "locality loss fading" if s < locality["hold_steps"] + locality["anneal_steps"] else "locality loss off")
    print(f"{rep.labels[i]:>20}: own-cell share {rep.own_cell[i]:.3f} ({rep.own_cell[i] / rep.own_cell_chance:5.1f}x "
          f"chance), entropy {rep.attention_entropy[i]:.3f}  {phase}")

# %% [markdown]
# ## 6. Do a clip's token ids settle early?
#
# The share of token slots (over all clips and positions) that already hold the code the final model
# picks. A code's *id* has no meaning of its own: while the codebook is still being reorganised (dead
# codes are restarted on live encoder outputs every few steps), ids can change even where the clip is
# encoded the same way.

# %%
agree = (rep.indices == rep.indices[-1]).mean(axis=(1, 2))
for i in range(len(rep)):
    print(f"{rep.labels[i]:>20}: {100 * agree[i]:5.1f}% of the token ids are the final model's")

# %% [markdown]
# ## What to try next
#
# - Other clips: `bundled_clips(final_tok, 50, seed=1)`, or real footage (`larp_lab.data.read_video` on
#   `examples/bigbuckbunny_128.mp4`): when do the snapshots stop improving on data they never saw?
# - Other queries: `measure_snapshots(snaps, clips, queries=[0, 31, 63])`, or the first encoder layer
#   (`layer=0`).
# - Train your own tokenizer with snapshots (`scripts/train_bundled.py`, notebook `05_train_your_own`) and
#   point `SNAPSHOTS` at the `tokenizer_snapshots` folder it writes.
# - The same from the command line: `larp-lab snapshots --out DIR` writes both figures and a JSON of the
#   numbers; the app's **Training** tab has the slider.
