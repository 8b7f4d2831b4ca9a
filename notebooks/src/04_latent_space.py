# %% [markdown]
# # 04 · The latent space: codebook usage, maps, neighbours
#
# **What this notebook teaches.** Each LARP token is one of K codebook vectors: unit vectors in a small
# space (section 1 prints its size). You will measure how much of the codebook is used (usage,
# perplexity, dead codes), draw UMAP maps of the codebook and of clips (plotly, hover for details), and
# find the clips nearest to a given one in token space. The clips are held-out moving digits, the data
# the bundled models were trained on, so the maps can be coloured by digit.

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits, offline.
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it).
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights

# %%
import numpy as np
import torch

from larp_lab.analysis import (
    clip_embeddings,
    clip_map,
    codebook_map,
    codebook_usage_stats,
    encode_dataset,
    nearest_clips,
)
from larp_lab.bundled import resolve_tokenizer
from larp_lab.viz import codebook_usage_histogram, embedding_scatter, token_id_grid
from larp_lab.viz.notebook import bundled_clips, default_device, output_dir, repo_root, show_frames

REPO = repo_root()  # the repository (examples/, configs/, experiments/)
OUT = output_dir()  # a temporary folder: show_frames writes this notebook's pictures there
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"
torch.set_grad_enabled(False)  # inference only in this notebook

# %% [markdown]
# ## 1. Tokenize 120 clips (12 per digit)

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
K = cfg.codebook_size
x, y, class_names = bundled_clips(tok, 120, seed=4)  # held-out clips of the models' data, the classes in turn
data = encode_dataset(tok, list(zip(x, y)))  # (clip, label) pairs -> token ids, latents, reconstruction PSNR
print(f"{len(data)} clips x {data.num_tokens} tokens, latent vectors of {data.latents.shape[-1]} dimensions")

# %% [markdown]
# ## 2. Codebook usage
#
# Perplexity is `exp(entropy)` of the code frequencies: the number of equally used codes that would
# give the same entropy (K when usage is uniform). Dead codes are never used on these clips.

# %%
usage = codebook_usage_stats(data.indices, K)
print({k: round(usage[k], 3) if isinstance(usage[k], float) else usage[k]
       for k in ("used_codes", "num_dead_codes", "usage", "perplexity", "kl_from_uniform")})
codebook_usage_histogram(usage["counts"])

# %%
token_id_grid(data.indices[:24], K, title="token ids of 24 clips (one row per clip)")

# %% [markdown]
# ## 3. A map of the codebook
#
# UMAP (cosine metric) of all K code vectors, coloured by how often each code is used here. The first
# call imports UMAP (numba), which takes a few seconds.

# %%
cb = codebook_map(tok, data.indices, method="umap", seed=0)
embedding_scatter(cb["coords"], np.log1p(cb["count"]).astype(float), color_title="log(1 + uses)",
                  hover=[f"code {c}: used {n} times" for c, n in zip(cb["code"], cb["count"])],
                  title=f"the {K} codebook vectors (UMAP)")

# %% [markdown]
# ## 4. A map of the clips
#
# One point per clip. `mode="mean"` averages a clip's token vectors (*which* codes it uses);
# `mode="concat"` keeps them in order (*which code at which position*), which matters for holistic,
# position-specialised tokens.
#
# Coloured by digit: do the clips of one digit gather in one place? The tokenizer was never told the
# digit; it only had to redraw the clips. Every clip also has its own colour, position and motion, so the
# map may just as well sort the clips by colour or by where the digit is: hover over the points to see
# which.

# %%
clips = clip_map(data, mode="mean", method="umap", seed=0)
hover = [f"clip {i}: class {class_names[c]}, PSNR {p:.1f} dB, motion {m:.3f}"
         for i, (c, p, m) in enumerate(zip(clips["label"], clips["psnr"], clips["motion"]))]
embedding_scatter(clips["coords"], clips["label"], class_names=class_names, hover=hover,
                  title="clips: mean of their token vectors (UMAP), by digit")

# %%
embedding_scatter(clips["coords"], clips["motion"], hover=hover, color_title="motion energy",
                  title="the same map, coloured by motion energy (mean frame difference)")

# %%
ordered = clip_map(data, mode="concat", method="umap", seed=0)
embedding_scatter(ordered["coords"], ordered["label"], class_names=class_names, hover=hover,
                  title="clips: token vectors concatenated in order (UMAP), by digit")

# %% [markdown]
# ## 5. Nearest clips in token space
#
# Hamming distance counts the positions where two clips' token ids differ; cosine distance compares the
# clip embeddings. The first row is the query clip, then its neighbours, nearest first: are they the same
# digit, or clips whose digit has the same colour or is in the same place?

# %%
Q = 6  # the query clip (a 6)
near = nearest_clips(Q, indices=data.indices, k=5, metric="hamming")
print(f"query: clip {Q} (class {class_names[int(data.labels[Q])]})")
for r in near:
    print(f"  clip {r['index']:<4} class {class_names[int(data.labels[r['index']])]:<12} "
          f"{r['fraction_differing']:.1%} of the tokens differ")
show_frames(data.videos[[Q] + [r["index"] for r in near]], "nearest_hamming")

# %%
near = nearest_clips(Q, embeddings=clip_embeddings(data.latents, "mean"), k=5, metric="cosine")
for r in near:
    print(f"  clip {r['index']:<4} class {class_names[int(data.labels[r['index']])]:<12} "
          f"cosine distance {r['distance']:.4f}")
show_frames(data.videos[[Q] + [r["index"] for r in near]], "nearest_cosine")

# %% [markdown]
# ## What to try next
#
# - PCA instead of UMAP (`method="pca"`): instant and deterministic; do the clusters survive?
# - `clip_embeddings(data.latents, "histogram", indices=data.indices, codebook_size=K)`: a bag of codes.
# - Every token as a point: `larp_lab.analysis.token_points(data.latents, data.labels, data.indices)`,
#   coloured by position (subsample: it is n x N points).
# - Compare the codebook usage of the bundled model and LARP-L (8192 codes).
# - Colour the clip map by something other than the digit, e.g. the clip's strongest colour channel:
#   `embedding_scatter(clips["coords"], x.mean((2, 3, 4)).argmax(1).numpy(), class_names=["R", "G", "B"])`.
# - Next notebook: `05_train_your_own` — train a micro tokenizer on the CPU.
