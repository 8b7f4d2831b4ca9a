# %% [markdown]
# # 02 · Is LARP's token order special?
#
# **What this notebook teaches.** LARP's tokens are *holistic*: no token belongs to a fixed patch. But
# they come in an order, and the tokenizer's AR prior is trained (jointly, with scheduled sampling) to
# predict them left to right, so the order is shaped during training. Three experiments:
#
# 1. **prior NLL under reordering**: the prior scores each clip's tokens in the learned order, reversed,
#    and under random permutations;
# 2. **reconstruct from the first k tokens**: the remaining tokens are either replaced by a *neutral
#    code* (the code nearest to the mean latent) or *completed by the generator*; PSNR vs k, and the
#    decoded clips for a few k;
# 3. **position importance**: the PSNR drop when a single position is replaced by the neutral code.

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits (offline).
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it).
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights
GENERATOR = "default"  # or "hywang66/LARP-L-long-AR" / a local directory of the official weights

# %%
import torch

from larp_lab.analysis import (
    complete_prefix,
    default_ks,
    encode_dataset,
    keep_prefix,
    neutral_code,
    position_importance,
    prefix_reconstruction_curve,
    token_order_nll,
)
from larp_lab.bundled import resolve_generator, resolve_tokenizer
from larp_lab.data import video_grid
from larp_lab.viz import nll_order_curves, position_importance_bar, psnr_vs_k
from larp_lab.viz.notebook import (
    bundled_clips,
    default_device,
    generator_condition,
    output_dir,
    repo_root,
    show_frames,
    show_video,
)

REPO = repo_root()  # the repository (examples/, configs/, experiments/)
OUT = output_dir()  # a temporary folder: show_video and show_frames write this notebook's files there
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"
torch.set_grad_enabled(False)  # inference only in this notebook

# %% [markdown]
# ## 1. Tokenize a few clips
#
# 24 held-out clips of the data the models were trained on (moving digits, handwriting never seen in
# training), the digits 0-9 in turn: `bundled_clips` makes them at the tokenizer's clip size.

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
gen = resolve_generator(GENERATOR, DEVICE)
gen.check_tokenizer(tok)  # same number of tokens and codebook size
cfg = tok.config
N = cfg.num_tokens
x, y, class_names = bundled_clips(tok, 24, seed=2)  # clips (24, 3, T, H, W), labels, class names
data = encode_dataset(tok, list(zip(x, y)))  # (clip, label) pairs -> token ids, latents, reconstruction PSNR
# the bundled generator knows the digits; another one (e.g. LARP-L's, UCF-101) gets the null class
cond, same_classes = generator_condition(gen, data.labels, class_names)
print(f"{len(data)} clips x {N} tokens; mean reconstruction PSNR {data.psnr.mean():.2f} dB; "
      f"generator conditioned on {'the clip classes' if same_classes else 'the null class'}")

# %% [markdown]
# ## 2. Prior NLL per position: learned order vs shuffled
#
# Lower is easier to predict. If the learned order is special, its curve lies below the random
# permutations (grey band) and the reverse order (orange).

# %%
order = token_order_nll(tok, data.indices, num_random=8, seed=0)
print({k: round(v, 3) for k, v in order.means().items()})
nll_order_curves(order, smooth=max(1, N // 64))

# %% [markdown]
# ## 3. Reconstruction from the first k tokens
#
# `neutral fill`: tokens k..N-1 become the neutral code. `generator completion`: the generator continues
# the first k tokens greedily (argmax). At k = N both decode the clip's own tokens.

# %%
ks = default_ks(N, steps=9)  # 0, N/8, ..., N
clips = slice(0, len(class_names))  # one clip per class: the digits 0-9
neutral = prefix_reconstruction_curve(tok, data.videos[clips], data.indices[clips], ks, mode="neutral")
completed = prefix_reconstruction_curve(tok, data.videos[clips], data.indices[clips], ks, mode="generator",
                                        gen=gen, cond=cond[clips], batch_size=12)
print("neutral code:", int(neutral.fill[0]))
psnr_vs_k({"neutral fill": neutral, "generator completion (greedy)": completed})

# %% [markdown]
# ### What the decoder makes of k tokens
#
# Top row: neutral fill; bottom row: generator completion. First column: the original clip. Watch at
# which k the digit appears in the right place and colour, and at which k it becomes the *right* digit:
# a completion can draw a plausible digit that is not the one in the clip.

# %%
KS = [0, N // 16, N // 4, N // 2, N]
i = 3  # a clip (the digit 3)
ids = data.indices[i : i + 1]
fill = neutral_code(tok, data.indices)
neutral_ids = torch.cat([keep_prefix(ids, k, fill) for k in KS])
completed_ids = torch.cat([complete_prefix(gen, ids[:, :k], cond[i : i + 1]).cpu() for k in KS])
decoded = tok.decode_indices(torch.cat([neutral_ids, completed_ids]).to(DEVICE)).clamp(-1, 1).cpu()
print(f"class {class_names[int(data.labels[i])]}; columns: original, then k = {KS}")
show_video(video_grid([data.videos[i], *decoded[: len(KS)], data.videos[i], *decoded[len(KS):]], nrow=len(KS) + 1),
           "prefix_strip", width=700)

# %%
print("rows: generator completion from k =", KS, "tokens")
show_frames(decoded[len(KS):], "prefix_completions", frames=8)

# %% [markdown]
# ## 4. Which positions matter?
#
# One position at a time is replaced by the neutral code, over four clips: at most 64 positions (all of
# them when there are no more than 64 tokens, else evenly spaced ones).

# %%
positions = list(range(0, N, max(1, N // 64)))
imp = position_importance(tok, data.videos[:4], data.indices[:4], positions=positions)
position_importance_bar(imp)

# %%
position_importance_bar(imp, top=16)

# %% [markdown]
# ## What to try next
#
# - Sampled instead of greedy completion: `prefix_reconstruction_curve(..., mode="generator", greedy=False, num_samples=4)`.
# - A neutral code per position: `positional_neutral_codes(tok, data.indices)` as `fill=`.
# - Complete with the tokenizer's own prior: `larp_lab.pipelines.complete(tok, ids, k, reference=clips)` (see notebook 06).
# - Score *every* position with `position_importance(..., positions=None)` (one decode per position and clip).
# - Next notebook: `03_prior_likelihoods` — which tokens and clips are surprising?
