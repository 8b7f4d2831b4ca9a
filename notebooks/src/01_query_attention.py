# %% [markdown]
# # 01 · Where do the holistic queries look?
#
# **What this notebook teaches.** LARP's encoder runs one transformer over the sequence
# `[P patches ; N queries]`. The N query outputs become the N tokens, so the attention from a *query*
# row to the *patch* columns shows where that token reads the clip. You will:
#
# 1. capture the encoder's attention probabilities (`encoder_attention`);
# 2. explore one query at a time with sliders (query, layer, head), drawn as plotly heatmaps over the
#    temporal slots of the patch grid and over the clip's frames;
# 3. combine the layers with **attention rollout** (Abnar & Zuidema, 2020);
# 4. summarise every query by statistics (centroid, spread, entropy, share on the object) and ask:
#    **do queries specialise by time, by place, or by object?**
#
# The clips are held-out moving digits, the data the bundled models were trained on: one digit of a
# random colour over a black background, so **the digit's pixels are the object**, and a mask of the
# pixels that are not black marks it in every frame. The question to keep in mind: does a query look at a
# fixed region of the frame whatever is there, or does it find the digit and follow it as it moves?

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits (offline).
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it).
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights

# %%
import ipywidgets as widgets
import pandas as pd
import plotly.express as px
import torch
from IPython.display import display

from larp_lab.analysis import (
    attention_rollout,
    encoder_attention,
    motion_mask,
    query_attention_maps,
    query_statistics,
    rollout_query_maps,
    specialisation_summary,
)
from larp_lab.bundled import resolve_tokenizer
from larp_lab.data import side_by_side, to_uint8_frames
from larp_lab.viz import (
    attention_grid,
    layer_head_grid,
    overlay_video,
    query_centroid_scatter,
    rollout_figure,
)
from larp_lab.viz.notebook import (
    bundled_clips,
    data_kind,
    default_device,
    interleave,
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
# ## 1. Capture the encoder's attention
#
# One held-out clip per digit (`bundled_clips`: clips of the kind the tokenizer was trained on, at its
# size). `query_attention_maps` stacks, for every layer and head, each query's attention over the
# (t, h, w) patch grid: (B, layers, heads, N, t, h, w). The mass a query gives to the other queries is
# left out, so a map sums to at most 1.

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
n_clips = 10 if cfg.num_tokens <= 256 else 2  # LARP-L's attention tensors are large: keep two clips
videos, y, class_names = bundled_clips(tok, n_clips, seed=1)  # (B, 3, T, H, W) clips, labels, class names
labels = [f"digit {class_names[k]}" if data_kind(tok) == "digits" else class_names[k] for k in y]
enc, cache = encoder_attention(tok, videos.to(DEVICE))
maps = query_attention_maps(cache)  # (B, layers, heads, N, t, h, w)
B, L, H, N, t, h, w = maps.shape
T = cfg.frame_num
print(f"{B} clips, {L} layers x {H} heads, {N} queries over a {t}x{h}x{w} patch grid "
      f"(each temporal slot covers {T // t} frames)")
show_frames(videos[:4], "clips")

# %% [markdown]
# ## 2. Explore one query
#
# Move the sliders: the heatmaps are the query's attention in each temporal slot of the patch grid
# (same colour scale), and below, the same map blended over the middle frame of each slot. `head = mean`
# averages the heads. The cell after the sliders draws the same view once without widgets, so the
# figure is also there in an exported or headless run.
#
# What to look for: a bright region that sits on the digit in every temporal slot (the query reads the
# object, and its map moves with it), a region that stays in the same place while the digit flies
# elsewhere (the query reads a fixed part of the frame, black or not), or a map spread thin over
# everything (the query collects a summary). Try several queries on one clip, then one query on
# several clips: a query that follows the digit lands somewhere else in every clip.

# %%
middle_frames = [s * (T // t) + T // t // 2 for s in range(t)]


def show_query(clip=0, query=0, layer=L - 1, head=-1):
    m = maps[clip, layer].mean(0)[query] if head < 0 else maps[clip, layer, head, query]  # (t, h, w)
    which = "heads averaged" if head < 0 else f"head {head}"
    fig = px.imshow(m.numpy(), facet_col=0, color_continuous_scale="inferno", labels={"color": "attention"},
                    title=f"{labels[clip]}: query {query}, layer {layer}, {which} (mass on patches {m.sum():.2f})")
    fig.for_each_annotation(lambda a: a.update(text=a.text.replace("facet_col=", "temporal slot ")))
    display(fig)
    frames = to_uint8_frames(overlay_video(videos[clip], m))[middle_frames]  # (t, H, W, 3)
    over = px.imshow(frames, facet_col=0, title="over the clip (middle frame of each slot)")
    over.for_each_annotation(lambda a: a.update(text=f"frame {middle_frames[int(a.text.split('=')[1])]}"))
    display(over.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False))


display(widgets.interactive(
    show_query,
    clip=widgets.IntSlider(value=0, min=0, max=B - 1, description="clip"),
    query=widgets.IntSlider(value=0, min=0, max=N - 1, description="query"),
    layer=widgets.IntSlider(value=L - 1, min=0, max=L - 1, description="layer"),
    head=widgets.Dropdown(options=[("mean", -1)] + [(str(i), i) for i in range(H)], value=-1, description="head"),
))

# %%
show_query(clip=0, query=N // 2, layer=L - 1, head=-1)

# %% [markdown]
# ## 3. One query in every layer and head (mean over time)

# %%
layer_head_grid(maps, query=N // 2, clip=0)

# %% [markdown]
# ## 4. Several queries over the frames (last layer, heads averaged)

# %%
attention_grid(maps[:, -1].mean(1), videos, clip=0, queries=list(range(0, N, N // 8)))

# %% [markdown]
# ## 5. Attention rollout
#
# Rollout multiplies the layers' head-averaged attention, each mixed with the identity for the residual
# path: `R = A_L ... A_1`. A query's row of `R` over the patch columns estimates how much each patch
# contributes to that token after all layers; the mass left on the query columns is the contribution of
# the learned query embeddings themselves (what the token "knows" before looking at the clip).

# %%
roll = rollout_query_maps(attention_rollout(cache), cache.layout)  # (B, N, t, h, w)
rollout_figure(roll, videos, clip=0, queries=list(range(0, N, N // 8)), normalize="minmax")

# %%
q = N // 2
print(f"clip | rollout of query {q} | last-layer attention of query {q}")
show_video(side_by_side([videos[0], overlay_video(videos[0], roll[0, q]),
                         overlay_video(videos[0], maps[0, -1].mean(0)[q])]), "overlay", width=600)

# %% [markdown]
# ## 6. Query statistics
#
# `query_statistics` describes each query's map: its (t, y, x) centroid and spread, normalised entropies
# (0 = one cell, 1 = uniform), and with a mask, the share of attention on the mask (`mask_mass`), the
# same divided by what uniform attention would give (`mask_lift`, > 1 = looks at the object) and the
# correlation between map and mask. The object mask (white) is the digit: the pixels that are not black.
# (On clips with a coloured background, e.g. the synthetic set of earlier bundles, a *motion mask* of the
# pixels that differ from the temporal median stands in for the object.)

# %%
if data_kind(tok) == "digits":  # a digit over black: the pixels that are not black are the object
    mask = (videos > -0.5).any(dim=1)  # (B, T, H, W) bool: some channel above a quarter of full brightness
else:
    mask = motion_mask(videos)  # (B, T, H, W) bool
pick = [i for i in (0, 6) if i < B]
show_frames(interleave(videos[pick], mask[pick, None].float().expand(-1, 3, -1, -1, -1) * 2 - 1), "masks")

# %%
stats = query_statistics(roll, mask=mask)
query_centroid_scatter(stats, clip=0, frame=videos[0, :, T // 2])

# %%
pd.DataFrame(stats.table(clip=0)).set_index("query").round(3).head(12)

# %% [markdown]
# ## 7. Do the queries specialise?
#
# - **by time**: low `temporal_entropy` = a query reads few temporal slots; high `temporal_coverage` =
#   different queries cover different times;
# - **by place**: the same for space (`spatial_entropy`, `spatial_coverage`);
# - **fixed or content-driven**: small `centroid_consistency` = a query looks at the same place whatever
#   the clip (positional); large = it follows the content;
# - **by object**: `mask_lift` > 1, `object_queries` = share of queries with lift > 1.5.
#
# Compare with the uniform baseline (entropies 1, lift 1). A query that *follows the digit* has a lift
# well above 1 in every clip and a large centroid consistency (its centroid goes wherever the digit is);
# a query tied to a *region* has a small consistency and a lift near 1, except in clips where the digit
# happens to pass through its region. The digit covers a small part of the frame, so even modest
# attention on it gives a large lift: read the lift together with the maps above.

# %%
last = query_statistics(maps[:, -1].mean(1), mask=mask)
pd.DataFrame({"last layer (heads averaged)": specialisation_summary(last),
              "rollout": specialisation_summary(stats)}).round(3)

# %%
pd.DataFrame({"clip": labels, "object share of the clip": mask.float().mean((1, 2, 3)).numpy(),
              "mask lift (rollout)": stats.mask_lift.mean(1), "mask lift (last layer)": last.mask_lift.mean(1),
              "object queries (last layer)": (last.mask_lift > 1.5).mean(1)}).round(3)

# %% [markdown]
# ## What to try next
#
# - Compare layers: `query_statistics(maps[:, 0].mean(1), mask=mask)` — do early layers look more locally?
# - Rollout variants: `attention_rollout(cache, head_fusion="max")`, or `rollout_query_maps(..., renormalize=True)`.
# - Two digits at once (`larp_lab.data.MovingDigits(..., split="heldout", num_digits=2)`): do queries split
#   between the digits, or all go to one?
# - Real footage: read `examples/bigbuckbunny_128.mp4` with `larp_lab.data.read_video` and explore it (the
#   bundled tokenizer never saw anything like it).
# - Switch `TOKENIZER` to LARP-L (1024 queries over a 4x16x16 patch grid) and compare the summary.
# - Next notebook: `02_token_order` — is the order of the tokens special?
