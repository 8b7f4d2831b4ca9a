# %% [markdown]
# # 03 · Surprisal under the prior and the generator
#
# **What this notebook teaches.** Two autoregressive models score LARP tokens: the tokenizer's small
# **prior** (trained jointly with the tokenizer) and the second-stage **generator** (trained afterwards,
# class-conditional). The *surprisal* of a token is `-log p(token | the tokens before it)` in nats. You
# will look at surprisal token by token, per class (per digit, for the bundled models, which were trained
# on moving digits) and per position, check whether a clip's likelihood goes with its reconstruction
# error, and look at the most and least likely clips. The clips are held out: handwriting the models
# never saw, so a surprising clip may be an unusual way of writing its digit.

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits, offline.
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it).
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights
GENERATOR = "default"  # or "hywang66/LARP-L-long-AR" / a local directory of the official weights

# %%
import numpy as np
import torch

from larp_lab.analysis import encode_dataset, extreme_clips, per_class_table, per_position_mean, score_dataset
from larp_lab.bundled import resolve_generator, resolve_tokenizer
from larp_lab.viz import (
    likelihood_error_scatter,
    new_figure,
    per_class_bars,
    surprisal_heatmap,
    surprisal_strip,
)
from larp_lab.viz.notebook import (
    bundled_clips,
    default_device,
    generator_condition,
    output_dir,
    repo_root,
    show_frames,
)

REPO = repo_root()  # the repository (examples/, configs/, experiments/)
OUT = output_dir()  # a temporary folder: show_frames writes this notebook's pictures there
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"
torch.set_grad_enabled(False)  # inference only in this notebook

# %% [markdown]
# ## 1. Score 40 clips (4 per digit)

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
gen = resolve_generator(GENERATOR, DEVICE)
gen.check_tokenizer(tok)  # same number of tokens and codebook size
cfg = tok.config
x, y, class_names = bundled_clips(tok, 40, seed=3)  # held-out clips of the models' data, the classes in turn
data = encode_dataset(tok, list(zip(x, y)))  # (clip, label) pairs -> token ids, latents, reconstruction PSNR
cond, _ = generator_condition(gen, data.labels, class_names)  # the clip classes, or the null class
report = score_dataset(tok, data, gen, cond=cond)
print(f"mean NLL per token: prior {report.prior_clip.mean():.3f} nats, generator {report.generator_clip.mean():.3f} "
      f"nats (uniform over the codebook: {np.log(cfg.codebook_size):.3f})")

# %% [markdown]
# ## 2. Surprisal of every token
#
# Rows are clips, columns token positions. The prior scores positions 1..N-1 (position 0 has no
# context); the generator scores all N given the class.

# %%
fig = surprisal_heatmap(report.prior, labels=data.labels, class_names=class_names, max_rows=24)
fig.axes[0].set_title("prior: surprisal per token (bits)")
fig

# %%
fig = surprisal_heatmap(report.generator, labels=data.labels, class_names=class_names, max_rows=24, first_position=0)
fig.axes[0].set_title("generator: surprisal per token (bits)")
fig

# %%
surprisal_strip(report.prior[0], data.indices[0])

# %% [markdown]
# ## 3. Per class and per position
#
# Which digits are harder to predict? The generator is told the digit, the prior is not: a digit that
# stays hard for the generator varies more in what its tokens have to say (handwriting, colour, motion)
# than the class alone pins down.

# %%
per_class_bars(per_class_table(report.prior_clip, data.labels, class_names), ylabel="prior NLL per token (nats)", sort=True)

# %%
per_class_bars(per_class_table(report.generator_clip, data.labels, class_names),
               ylabel="generator NLL per token (nats)", sort=True)

# %%
fig, axes = new_figure(figsize=(7, 3.2))
ax = axes[0, 0]
for name, values, first in (("prior", report.prior, 1), ("generator", report.generator, 0)):
    s = per_position_mean(values)  # mean, std and standard error over clips, per position
    x = np.arange(first, first + len(s["mean"]))
    ax.plot(x, s["mean"], label=name)
    ax.fill_between(x, s["mean"] - s["sem"], s["mean"] + s["sem"], alpha=0.3)
ax.set(xlabel="token position", ylabel="mean surprisal (nats)", title="surprisal along the sequence (band: +-1 s.e.)")
ax.legend()
fig

# %% [markdown]
# ## 4. Likelihood vs reconstruction error
#
# Is a clip that the prior finds likely also one the decoder reconstructs well? (Hover over the points.)

# %%
print("correlation of clip NLL with reconstruction MSE:", report.correlations)
likelihood_error_scatter(report.prior_clip, report.error, labels=data.labels, class_names=class_names,
                         backend="plotly", xlabel="prior NLL per token (nats)")

# %%
likelihood_error_scatter(report.generator_clip, report.error, labels=data.labels, class_names=class_names,
                         xlabel="generator NLL per token (nats)")

# %% [markdown]
# ## 5. The most and least likely clips (under the prior)
#
# Compare the two sets: does the prior find some digits, colours, speeds or bounces easier than others?

# %%
ext = extreme_clips(report.prior_clip, k=4)
for row in ext.table():
    i = row["index"]
    print(f"{row['kind']:<13} clip {i:<3} class {class_names[int(data.labels[i])]:<12} NLL {row['nll']:.3f}  "
          f"PSNR {data.psnr[i]:.2f} dB")

# %%
print("most likely, one clip per row")
show_frames(data.videos[ext.most_likely], "most_likely")

# %%
print("least likely, one clip per row")
show_frames(data.videos[ext.least_likely], "least_likely")

# %% [markdown]
# ## What to try next
#
# - Score unconditionally: `cond=gen.null_condition(len(data)).cpu()` — how much does the class help?
# - Bits instead of nats: `larp_lab.analysis.to_bits(report.prior_clip)`.
# - Score real footage (`examples/bigbuckbunny_128.mp4`) or your own clips: `encode_dataset` also takes a
#   tensor of clips (B, 3, T, H, W).
# - Compare the prior's and the generator's per-class ranking: do they agree on what is hard?
# - Next notebook: `04_latent_space` — what does the codebook look like?
