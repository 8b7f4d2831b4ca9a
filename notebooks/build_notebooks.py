"""Build the teaching notebooks (``notebooks/NN_*.ipynb``) from the cell sources below.

    python notebooks/build_notebooks.py            # (re)write every notebook, without outputs
    python notebooks/build_notebooks.py --check    # exit 1 if a notebook differs from this file

Edit the notebooks here, not in Jupyter: the committed ``.ipynb`` files are generated, carry no
outputs, and have stable cell ids (so a rebuild only changes what was edited). Each notebook has
the model choice at the top (the bundled small models by default; the official LARP-L weights by
changing one variable), thin cells that call ``larp_lab`` and show the result, and a closing
"What to try next" cell. ``tests/test_notebooks.py`` executes them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return ("md", text.strip("\n"))


def code(text: str):
    return ("code", text.strip("\n"))


# ------------------------------------------------------------------------------------------------
# Shared cells
# ------------------------------------------------------------------------------------------------

MODEL_NOTE = """\
# "default": the small models bundled in checkpoints/ (64x64x16 clips, 256 tokens, 1024 codes), offline.
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it)."""

TOKENIZER_VAR = 'TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights'
GENERATOR_VAR = 'GENERATOR = "default"  # or "hywang66/LARP-L-long-AR" / a local directory of the official weights'


def imp(module: str, *names: str) -> str:
    """``from module import names`` in isort / ruff order (CONSTANTS, Classes, functions), wrapped
    one name per line when longer than 110 characters."""
    names = sorted(set(names), key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    line = f"from {module} import {', '.join(names)}"
    return line if len(line) <= 110 else f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def _sorted(lines) -> str:
    """Import lines in isort order: plain imports, then from-imports, each by module name."""
    key = lambda line: (line.startswith("from "), line.split()[1].lower())
    return "\n".join(sorted(set(lines), key=key))


def setup(*, std=(), third=(), first=(), ipython="Image, Video", inference_only: bool = True, after: str = ""):
    """The second code cell: imports (stdlib / third-party / larp_lab lines; the data import must
    include ``save_frame_grid`` and ``write_video``), the repository path, an output folder, the
    device and two display helpers. ``after``: lines that need ``REPO``."""
    imports = "\n\n".join([
        _sorted(["import tempfile", "from pathlib import Path", *std]),
        _sorted(["import torch", f"from IPython.display import {ipython}", *third]),
        _sorted(["import larp_lab", *first]),
    ])
    grad = "torch.set_grad_enabled(False)  # inference only in this notebook\n" if inference_only else ""
    after = f"\n{after.strip()}\n" if after.strip() else ""
    return code(f"""
{imports}

# the repository (for examples/, configs/, experiments/): next to this notebook, else next to the package
REPO = Path("..").resolve() if Path("../larp_lab").is_dir() else Path(larp_lab.__file__).resolve().parents[1]
OUT = Path(tempfile.mkdtemp(prefix="larp_lab_nb_"))  # videos and pictures made by this notebook
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
{grad}{after}

def show_video(clip, name, width=384):
    \"\"\"Write a (3, T, H, W) clip in [-1, 1] as MP4 and embed it in the notebook.\"\"\"
    path = write_video(OUT / f"{{name}}.mp4", clip)
    return Video(str(path), embed=True, width=width, html_attributes="controls loop autoplay muted")


def show_frames(clips, name, frames=8):
    \"\"\"A PNG contact sheet: one row of evenly spaced frames per clip.\"\"\"
    return Image(filename=str(save_frame_grid(OUT / f"{{name}}.png", list(clips), frames=frames)))
""")


# ------------------------------------------------------------------------------------------------
# 00 quick start
# ------------------------------------------------------------------------------------------------

NB00 = [
    md("""
# 00 · Quick start: tokenize, reconstruct, generate, predict

**What this notebook teaches.** LARP turns a video clip into a short sequence of discrete tokens: a
ViT encoder reads the clip's 3-D patches together with *N learned holistic queries*, and each query's
output becomes one token (an id into a codebook). A ViT decoder turns the tokens back into pixels.
A Llama-style autoregressive **generator** models token sequences, so it can make new clips of a
class, and a **frame predictor** continues a clip from its first frames.

You will: load a tokenizer, reconstruct a real clip (Big Buck Bunny) and synthetic clips and measure
PSNR, sample class-conditional clips, and predict the future of a clip.

Everything runs offline on a CPU in about a minute with the small bundled models. To use the official
LARP-L weights, change the variables in the next cell (a GPU is recommended then).
"""),
    code(f"""
{MODEL_NOTE}
{TOKENIZER_VAR}
{GENERATOR_VAR}
FRAME_PREDICTOR = "larp-tiny-frame-predictor"  # the bundled one; or "hywang66/LARP-L-long-AR-FP" / a directory
"""),
    setup(first=[
        imp("larp_lab.bundled", "resolve_generator", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "read_video", "save_frame_grid", "side_by_side",
            "video_grid", "write_video"),
        imp("larp_lab.data.video", "repeat_last_frame"),
        imp("larp_lab.demo.generate", "check_compatible"),
        imp("larp_lab.evaluation", "per_frame_psnr", "psnr"),
        imp("larp_lab.viz", "per_frame_psnr_figure", "token_id_grid"),
    ]),
    md("## 1. The tokenizer"),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
print(f"clips of {cfg.frame_num} frames of {cfg.input_size}x{cfg.input_size} -> {cfg.num_tokens} tokens "
      f"from a codebook of {cfg.codebook_size}; {tok.num_parameters() / 1e6:.1f}M parameters (prior included)")
"""),
    md("""
## 2. Reconstruct a real clip

`read_video` decodes the first frames, resizes the short side and centre-crops to the model's size,
and returns a float tensor (3, T, H, W) in [-1, 1]. `encode` gives the token ids; `decode` rebuilds
the pixels from them. PSNR is measured on the [0, 1] scale (higher is better).
"""),
    code("""
EXAMPLE = REPO / "examples" / "bigbuckbunny_128.mp4"
clip = read_video(EXAMPLE, cfg.frame_num, size=cfg.input_size)  # (3, T, H, W) in [-1, 1]
enc = tok.encode(clip[None].to(DEVICE))
rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1).cpu()
print("token ids:", tuple(enc.indices.shape), "- the first twelve:", enc.indices[0, :12].tolist())
print(f"PSNR {psnr(rec, clip[None]).item():.2f} dB   (left: original, right: reconstruction)")
show_video(side_by_side([clip, rec[0]]), "bunny")
"""),
    code("""
per_frame_psnr_figure(per_frame_psnr(rec, clip[None])[0], title="Big Buck Bunny: PSNR per frame")
"""),
    code("""
token_id_grid(enc.indices[0].cpu(), cfg.codebook_size, title="the clip's token ids, in token order")
"""),
    md("""
## 3. Synthetic clips

`SyntheticVideos` renders 12 classes of procedural motion (bouncing, orbiting, zooming, ...) on the
fly, no files needed. Rows below alternate original / reconstruction.
"""),
    code("""
data = SyntheticVideos(num_clips=12, frames=cfg.frame_num, size=cfg.input_size, seed=0)
x = torch.stack([data[i]["video"] for i in range(6)])  # classes 0-5
rec_x = tok.reconstruct(x.to(DEVICE)).clamp(-1, 1).cpu()
for i, p in enumerate(psnr(rec_x, x)):
    print(f"{CLASS_NAMES[data[i]['label']]:<20} PSNR {p:.2f} dB")
show_frames([v for pair in zip(x, rec_x) for v in pair], "synthetic")
"""),
    code("""
show_video(video_grid([side_by_side([a, b]) for a, b in zip(x, rec_x)], nrow=3), "synthetic_side_by_side", width=640)
"""),
    md("""
## 4. Generate clips of a class

The generator samples the N token ids one after the other given a class label (with classifier-free
guidance `cfg_scale`), and the tokenizer decodes them.
"""),
    code("""
gen = resolve_generator(GENERATOR, DEVICE)
check_compatible(tok, gen)  # same number of tokens and codebook size
names = gen.config.class_names or [str(i) for i in range(gen.config.num_classes)]
labels = torch.tensor([0, 1, 6, 11])  # class ids (for the bundled generator: the synthetic classes)
ids = gen.sample(labels.to(DEVICE), cfg_scale=1.5, temperature=1.0,
                 generator=torch.Generator(gen.device).manual_seed(0))
samples = tok.decode_indices(ids).clamp(-1, 1).cpu()
print("classes:", [names[int(k)] for k in labels])
show_video(video_grid(list(samples), nrow=4), "generated", width=640)
"""),
    code("""
show_frames(samples, "generated_frames")
"""),
    md("""
## 5. Predict the future of a clip

The official frame-prediction recipe: keep the first `COND_FRAMES` frames, repeat the last of them to
the full length, tokenize that, and give those N tokens to the frame predictor as its condition; it
generates the tokens of the whole clip.
"""),
    code("""
fp = resolve_generator(FRAME_PREDICTOR, DEVICE)
check_compatible(tok, fp)
COND_FRAMES = 5
x = torch.stack([data[i]["video"] for i in (0, 6)])  # a bouncing and a falling clip
cond_clip = repeat_last_frame(x, COND_FRAMES)
cond = tok.encode(cond_clip.to(DEVICE)).indices
pred = tok.decode_indices(fp.sample(cond, generator=torch.Generator(fp.device).manual_seed(0))).clamp(-1, 1).cpu()
future = slice(COND_FRAMES, None)
print(f"PSNR of the predicted frames {psnr(pred[:, :, future], x[:, :, future]).mean():.2f} dB; "
      f"repeating the last frame: {psnr(cond_clip[:, :, future], x[:, :, future]).mean():.2f} dB")
print("columns: truth | condition (last frame repeated) | prediction")
show_video(video_grid([side_by_side([a, b, c]) for a, b, c in zip(x, cond_clip, pred)], nrow=1), "prediction")
"""),
    code("""
per_frame_psnr_figure(per_frame_psnr(pred, x).mean(0), cond_frames=COND_FRAMES, title="prediction: PSNR per frame")
"""),
    md("""
## What to try next

- Reconstruct your own clip: `read_video("my_clip.mp4", cfg.frame_num, size=cfg.input_size)`.
- Sample with other settings: `cfg_scale=1.0` (no guidance), `temperature=0.8`, `top_k=100`, other seeds.
- Condition the frame predictor on fewer or more frames (`COND_FRAMES`), or on the Big Buck Bunny clip.
- Switch to the official LARP-L weights in the first cell and compare PSNR at 128x128.
- The same from the command line: `larp-lab reconstruct`, `larp-lab sample` (see the README).
- Next notebook: `01_query_attention` — where do the holistic queries look?
"""),
]


# ------------------------------------------------------------------------------------------------
# 01 query attention
# ------------------------------------------------------------------------------------------------

NB01 = [
    md("""
# 01 · Where do the holistic queries look?

**What this notebook teaches.** LARP's encoder runs one transformer over the sequence
`[P patches ; N queries]`. The N query outputs become the N tokens, so the attention from a *query*
row to the *patch* columns shows where that token reads the clip. You will:

1. capture the encoder's attention probabilities (`encoder_attention`);
2. explore one query at a time with sliders (query, layer, head), drawn as plotly heatmaps over the
   temporal slots of the patch grid and over the clip's frames;
3. combine the layers with **attention rollout** (Abnar & Zuidema, 2020);
4. summarise every query by statistics (centroid, spread, entropy, share on the moving object) and ask:
   **do queries specialise by time, by place, or by object?** On synthetic clips a *motion mask*
   (pixels that differ from the temporal median) stands in for the object.
"""),
    code(f"""
{MODEL_NOTE}
{TOKENIZER_VAR}
"""),
    setup(third=["import ipywidgets as widgets", "import pandas as pd", "import plotly.express as px"],
          ipython="Image, Video, display", first=[
        imp("larp_lab.analysis", "attention_rollout", "encoder_attention", "motion_mask", "query_attention_maps",
            "query_statistics", "rollout_query_maps", "specialisation_summary"),
        imp("larp_lab.bundled", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "save_frame_grid", "side_by_side", "to_uint8_frames",
            "write_video"),
        imp("larp_lab.viz", "attention_grid", "layer_head_grid", "overlay_video", "query_centroid_scatter",
            "rollout_figure"),
    ]),
    md("""
## 1. Capture the encoder's attention

One clip per synthetic class. `query_attention_maps` stacks, for every layer and head, each query's
attention over the (t, h, w) patch grid: (B, layers, heads, N, t, h, w). The mass a query gives to the
other queries is left out, so a map sums to at most 1.
"""),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
n_clips = 12 if cfg.num_tokens <= 256 else 2  # LARP-L's attention tensors are large: keep two clips
data = SyntheticVideos(num_clips=12, frames=cfg.frame_num, size=cfg.input_size, seed=1)
videos = torch.stack([data[i]["video"] for i in range(n_clips)])
labels = [CLASS_NAMES[data[i]["label"]] for i in range(n_clips)]
enc, cache = encoder_attention(tok, videos.to(DEVICE))
maps = query_attention_maps(cache)  # (B, layers, heads, N, t, h, w)
B, L, H, N, t, h, w = maps.shape
T = cfg.frame_num
print(f"{B} clips, {L} layers x {H} heads, {N} queries over a {t}x{h}x{w} patch grid "
      f"(each temporal slot covers {T // t} frames)")
show_frames(videos[:4], "clips")
"""),
    md("""
## 2. Explore one query

Move the sliders: the heatmaps are the query's attention in each temporal slot of the patch grid
(same colour scale), and below, the same map blended over the middle frame of each slot. `head = mean`
averages the heads. The cell after the sliders draws the same view once without widgets, so the
figure is also there in an exported or headless run.
"""),
    code("""
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
"""),
    code("""
show_query(clip=0, query=N // 2, layer=L - 1, head=-1)
"""),
    md("## 3. One query in every layer and head (mean over time)"),
    code("""
layer_head_grid(maps, query=N // 2, clip=0)
"""),
    md("## 4. Several queries over the frames (last layer, heads averaged)"),
    code("""
attention_grid(maps[:, -1].mean(1), videos, clip=0, queries=list(range(0, N, N // 8)))
"""),
    md("""
## 5. Attention rollout

Rollout multiplies the layers' head-averaged attention, each mixed with the identity for the residual
path: `R = A_L ... A_1`. A query's row of `R` over the patch columns estimates how much each patch
contributes to that token after all layers; the mass left on the query columns is the contribution of
the learned query embeddings themselves (what the token "knows" before looking at the clip).
"""),
    code("""
roll = rollout_query_maps(attention_rollout(cache), cache.layout)  # (B, N, t, h, w)
rollout_figure(roll, videos, clip=0, queries=list(range(0, N, N // 8)), normalize="minmax")
"""),
    code("""
q = N // 2
print(f"clip | rollout of query {q} | last-layer attention of query {q}")
show_video(side_by_side([videos[0], overlay_video(videos[0], roll[0, q]),
                         overlay_video(videos[0], maps[0, -1].mean(0)[q])]), "overlay", width=600)
"""),
    md("""
## 6. Query statistics

`query_statistics` describes each query's map: its (t, y, x) centroid and spread, normalised entropies
(0 = one cell, 1 = uniform), and with a mask, the share of attention on the mask (`mask_mass`), the
same divided by what uniform attention would give (`mask_lift`, > 1 = looks at the object) and the
correlation between map and mask. The motion mask (white = moving pixels) is the object proxy:
"""),
    code("""
mask = motion_mask(videos)  # (B, T, H, W) bool
pick = [i for i in (0, 6) if i < B]
show_frames([v for i in pick for v in (videos[i], mask[i].float()[None].expand(3, -1, -1, -1) * 2 - 1)], "masks")
"""),
    code("""
stats = query_statistics(roll, mask=mask)
query_centroid_scatter(stats, clip=0, frame=videos[0, :, T // 2])
"""),
    code("""
pd.DataFrame(stats.table(clip=0)).set_index("query").round(3).head(12)
"""),
    md("""
## 7. Do the queries specialise?

- **by time**: low `temporal_entropy` = a query reads few temporal slots; high `temporal_coverage` =
  different queries cover different times;
- **by place**: the same for space (`spatial_entropy`, `spatial_coverage`);
- **fixed or content-driven**: small `centroid_consistency` = a query looks at the same place whatever
  the clip (positional); large = it follows the content;
- **by object**: `mask_lift` > 1, `object_queries` = share of queries with lift > 1.5.

Compare with the uniform baseline (entropies 1, lift 1). For the `background pan` class the "mask" is
most of the frame, so its lift says little.
"""),
    code("""
last = query_statistics(maps[:, -1].mean(1), mask=mask)
pd.DataFrame({"last layer (heads averaged)": specialisation_summary(last),
              "rollout": specialisation_summary(stats)}).round(3)
"""),
    code("""
pd.DataFrame({"class": labels, "moving share of the clip": mask.float().mean((1, 2, 3)).numpy(),
              "mask lift (rollout)": stats.mask_lift.mean(1), "mask lift (last layer)": last.mask_lift.mean(1),
              "object queries (last layer)": (last.mask_lift > 1.5).mean(1)}).round(3)
"""),
    md("""
## What to try next

- Compare layers: `query_statistics(maps[:, 0].mean(1), mask=mask)` — do early layers look more locally?
- Rollout variants: `attention_rollout(cache, head_fusion="max")`, or `rollout_query_maps(..., renormalize=True)`.
- Real footage: read `examples/bigbuckbunny_128.mp4` with `larp_lab.data.read_video` and explore it.
- Switch `TOKENIZER` to LARP-L (1024 queries over a 4x16x16 patch grid) and compare the summary.
- Next notebook: `02_token_order` — is the order of the tokens special?
"""),
]


# ------------------------------------------------------------------------------------------------
# 02 token order
# ------------------------------------------------------------------------------------------------

NB02 = [
    md("""
# 02 · Is LARP's token order special?

**What this notebook teaches.** LARP's tokens are *holistic*: no token belongs to a fixed patch. But
they come in an order, and the tokenizer's AR prior is trained (jointly, with scheduled sampling) to
predict them left to right, so the order is shaped during training. Three experiments:

1. **prior NLL under reordering**: the prior scores each clip's tokens in the learned order, reversed,
   and under random permutations;
2. **reconstruct from the first k tokens**: the remaining tokens are either replaced by a *neutral
   code* (the code nearest to the mean latent) or *completed by the generator*; PSNR vs k, and the
   decoded clips for a few k;
3. **position importance**: the PSNR drop when a single position is replaced by the neutral code.
"""),
    code(f"""
{MODEL_NOTE}
{TOKENIZER_VAR}
{GENERATOR_VAR}
"""),
    setup(first=[
        imp("larp_lab.analysis", "complete_prefix", "default_ks", "encode_dataset", "keep_prefix", "neutral_code",
            "position_importance", "prefix_reconstruction_curve", "token_order_nll"),
        imp("larp_lab.bundled", "resolve_generator", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "save_frame_grid", "video_grid", "write_video"),
        imp("larp_lab.demo.generate", "check_compatible"),
        imp("larp_lab.viz", "nll_order_curves", "position_importance_bar", "psnr_vs_k"),
    ]),
    md("## 1. Tokenize a few clips"),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
gen = resolve_generator(GENERATOR, DEVICE)
check_compatible(tok, gen)
cfg = tok.config
N = cfg.num_tokens
data = encode_dataset(tok, SyntheticVideos(24, frames=cfg.frame_num, size=cfg.input_size, seed=2), n=24)
# the bundled generator knows the synthetic classes; another one (e.g. LARP-L's, UCF-101) gets the null class
same_classes = tuple(gen.config.class_names or ()) == tuple(CLASS_NAMES)
cond = data.labels if same_classes else gen.null_condition(len(data)).cpu()
print(f"{len(data)} clips x {N} tokens; mean reconstruction PSNR {data.psnr.mean():.2f} dB; "
      f"generator conditioned on {'the clip classes' if same_classes else 'the null class'}")
"""),
    md("""
## 2. Prior NLL per position: learned order vs shuffled

Lower is easier to predict. If the learned order is special, its curve lies below the random
permutations (grey band) and the reverse order (orange).
"""),
    code("""
order = token_order_nll(tok, data.indices, num_random=8, seed=0)
print({k: round(v, 3) for k, v in order.means().items()})
nll_order_curves(order, smooth=max(1, N // 64))
"""),
    md("""
## 3. Reconstruction from the first k tokens

`neutral fill`: tokens k..N-1 become the neutral code. `generator completion`: the generator continues
the first k tokens greedily (argmax). At k = N both decode the clip's own tokens.
"""),
    code("""
ks = default_ks(N, steps=9)  # 0, N/8, ..., N
clips = slice(0, 12)  # one clip per class
neutral = prefix_reconstruction_curve(tok, data.videos[clips], data.indices[clips], ks, mode="neutral")
completed = prefix_reconstruction_curve(tok, data.videos[clips], data.indices[clips], ks, mode="generator",
                                        gen=gen, cond=cond[clips], batch_size=12)
print("neutral code:", int(neutral.fill[0]))
psnr_vs_k({"neutral fill": neutral, "generator completion (greedy)": completed})
"""),
    md("""
### What the decoder makes of k tokens

Top row: neutral fill; bottom row: generator completion. First column: the original clip.
"""),
    code("""
KS = [0, N // 16, N // 4, N // 2, N]
i = 6  # a clip (class "falling" in this dataset)
ids = data.indices[i : i + 1]
fill = neutral_code(tok, data.indices)
neutral_ids = torch.cat([keep_prefix(ids, k, fill) for k in KS])
completed_ids = torch.cat([complete_prefix(gen, ids[:, :k], cond[i : i + 1]).cpu() for k in KS])
decoded = tok.decode_indices(torch.cat([neutral_ids, completed_ids]).to(DEVICE)).clamp(-1, 1).cpu()
print(f"{CLASS_NAMES[int(data.labels[i])]}; columns: original, then k = {KS}")
show_video(video_grid([data.videos[i], *decoded[: len(KS)], data.videos[i], *decoded[len(KS):]], nrow=len(KS) + 1),
           "prefix_strip", width=700)
"""),
    code("""
print("rows: generator completion from k =", KS, "tokens")
show_frames(decoded[len(KS):], "prefix_completions", frames=8)
"""),
    md("""
## 4. Which positions matter?

One position at a time is replaced by the neutral code (every 4th position for the bundled model,
64 positions in all), over four clips.
"""),
    code("""
positions = list(range(0, N, max(1, N // 64)))
imp = position_importance(tok, data.videos[:4], data.indices[:4], positions=positions)
position_importance_bar(imp)
"""),
    code("""
position_importance_bar(imp, top=16)
"""),
    md("""
## What to try next

- Sampled instead of greedy completion: `prefix_reconstruction_curve(..., mode="generator", greedy=False, num_samples=4)`.
- A neutral code per position: `positional_neutral_codes(tok, data.indices)` as `fill=`.
- Complete with the tokenizer's own prior: `larp_lab.analysis.completion.complete_with_prior(tok, ids, k)`.
- Score *every* position with `position_importance(..., positions=None)` (one decode per position and clip).
- Next notebook: `03_prior_likelihoods` — which tokens and clips are surprising?
"""),
]


# ------------------------------------------------------------------------------------------------
# 03 prior likelihoods
# ------------------------------------------------------------------------------------------------

NB03 = [
    md("""
# 03 · Surprisal under the prior and the generator

**What this notebook teaches.** Two autoregressive models score LARP tokens: the tokenizer's small
**prior** (trained jointly with the tokenizer) and the second-stage **generator** (trained afterwards,
class-conditional). The *surprisal* of a token is `-log p(token | the tokens before it)` in nats. You
will look at surprisal token by token, per class and per position, check whether a clip's likelihood
goes with its reconstruction error, and look at the most and least likely clips.
"""),
    code(f"""
{MODEL_NOTE}
{TOKENIZER_VAR}
{GENERATOR_VAR}
"""),
    setup(third=["import numpy as np"], first=[
        imp("larp_lab.analysis", "encode_dataset", "extreme_clips", "per_class_table", "per_position_mean",
            "score_dataset"),
        imp("larp_lab.bundled", "resolve_generator", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "save_frame_grid", "write_video"),
        imp("larp_lab.demo.generate", "check_compatible"),
        imp("larp_lab.viz", "likelihood_error_scatter", "new_figure", "per_class_bars", "surprisal_heatmap",
            "surprisal_strip"),
    ]),
    md("## 1. Score 48 clips (4 per class)"),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
gen = resolve_generator(GENERATOR, DEVICE)
check_compatible(tok, gen)
cfg = tok.config
data = encode_dataset(tok, SyntheticVideos(48, frames=cfg.frame_num, size=cfg.input_size, seed=3), n=48)
same_classes = tuple(gen.config.class_names or ()) == tuple(CLASS_NAMES)  # else: the null class
report = score_dataset(tok, data, gen, cond=data.labels if same_classes else gen.null_condition(len(data)).cpu())
print(f"mean NLL per token: prior {report.prior_clip.mean():.3f} nats, generator {report.generator_clip.mean():.3f} "
      f"nats (uniform over the codebook: {np.log(cfg.codebook_size):.3f})")
"""),
    md("""
## 2. Surprisal of every token

Rows are clips, columns token positions. The prior scores positions 1..N-1 (position 0 has no
context); the generator scores all N given the class.
"""),
    code("""
fig = surprisal_heatmap(report.prior, labels=data.labels, class_names=CLASS_NAMES, max_rows=24)
fig.axes[0].set_title("prior: surprisal per token (bits)")
fig
"""),
    code("""
fig = surprisal_heatmap(report.generator, labels=data.labels, class_names=CLASS_NAMES, max_rows=24, first_position=0)
fig.axes[0].set_title("generator: surprisal per token (bits)")
fig
"""),
    code("""
surprisal_strip(report.prior[0], data.indices[0])
"""),
    md("## 3. Per class and per position"),
    code("""
per_class_bars(per_class_table(report.prior_clip, data.labels, CLASS_NAMES), ylabel="prior NLL per token (nats)", sort=True)
"""),
    code("""
per_class_bars(per_class_table(report.generator_clip, data.labels, CLASS_NAMES),
               ylabel="generator NLL per token (nats)", sort=True)
"""),
    code("""
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
"""),
    md("""
## 4. Likelihood vs reconstruction error

Is a clip that the prior finds likely also one the decoder reconstructs well? (Hover over the points.)
"""),
    code("""
print("correlation of clip NLL with reconstruction MSE:", report.correlations)
likelihood_error_scatter(report.prior_clip, report.error, labels=data.labels, class_names=CLASS_NAMES,
                         backend="plotly", xlabel="prior NLL per token (nats)")
"""),
    code("""
likelihood_error_scatter(report.generator_clip, report.error, labels=data.labels, class_names=CLASS_NAMES,
                         xlabel="generator NLL per token (nats)")
"""),
    md("## 5. The most and least likely clips (under the prior)"),
    code("""
ext = extreme_clips(report.prior_clip, k=4)
for row in ext.table():
    i = row["index"]
    print(f"{row['kind']:<13} clip {i:<3} {CLASS_NAMES[int(data.labels[i])]:<20} NLL {row['nll']:.3f}  "
          f"PSNR {data.psnr[i]:.2f} dB")
"""),
    code("""
print("most likely, one clip per row")
show_frames(data.videos[ext.most_likely], "most_likely")
"""),
    code("""
print("least likely, one clip per row")
show_frames(data.videos[ext.least_likely], "least_likely")
"""),
    md("""
## What to try next

- Score unconditionally: `cond=gen.null_condition(len(data)).cpu()` — how much does the class help?
- Bits instead of nats: `larp_lab.analysis.to_bits(report.prior_clip)`.
- Score real footage (`examples/bigbuckbunny_128.mp4`) or your own clips: `encode_dataset` also takes a
  tensor of clips (B, 3, T, H, W).
- Compare the prior's and the generator's per-class ranking: do they agree on what is hard?
- Next notebook: `04_latent_space` — what does the codebook look like?
"""),
]


# ------------------------------------------------------------------------------------------------
# 04 latent space
# ------------------------------------------------------------------------------------------------

NB04 = [
    md("""
# 04 · The latent space: codebook usage, maps, neighbours

**What this notebook teaches.** Each LARP token is one of K codebook vectors: unit vectors in a small
space (16-d for the bundled model and LARP-L). You will measure how much of the codebook is used
(usage, perplexity, dead codes), draw UMAP maps of the codebook and of clips (plotly, hover for
details), and find the clips nearest to a given one in token space.
"""),
    code(f"""
{MODEL_NOTE}
{TOKENIZER_VAR}
"""),
    setup(third=["import numpy as np"], first=[
        imp("larp_lab.analysis", "clip_embeddings", "clip_map", "codebook_map", "codebook_usage_stats",
            "encode_dataset", "nearest_clips"),
        imp("larp_lab.bundled", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "save_frame_grid", "write_video"),
        imp("larp_lab.viz", "codebook_usage_histogram", "embedding_scatter", "token_id_grid"),
    ]),
    md("## 1. Tokenize 120 clips (10 per class)"),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
K = cfg.codebook_size
data = encode_dataset(tok, SyntheticVideos(120, frames=cfg.frame_num, size=cfg.input_size, seed=4), n=120)
print(f"{len(data)} clips x {data.num_tokens} tokens, latent vectors of {data.latents.shape[-1]} dimensions")
"""),
    md("""
## 2. Codebook usage

Perplexity is `exp(entropy)` of the code frequencies: the number of equally used codes that would
give the same entropy (K when usage is uniform). Dead codes are never used on these clips.
"""),
    code("""
usage = codebook_usage_stats(data.indices, K)
print({k: round(usage[k], 3) if isinstance(usage[k], float) else usage[k]
       for k in ("used_codes", "num_dead_codes", "usage", "perplexity", "kl_from_uniform")})
codebook_usage_histogram(usage["counts"])
"""),
    code("""
token_id_grid(data.indices[:24], K, title="token ids of 24 clips (one row per clip)")
"""),
    md("""
## 3. A map of the codebook

UMAP (cosine metric) of all K code vectors, coloured by how often each code is used here. The first
call imports UMAP (numba), which takes a few seconds.
"""),
    code("""
cb = codebook_map(tok, data.indices, method="umap", seed=0)
embedding_scatter(cb["coords"], np.log1p(cb["count"]).astype(float), color_title="log(1 + uses)",
                  hover=[f"code {c}: used {n} times" for c, n in zip(cb["code"], cb["count"])],
                  title=f"the {K} codebook vectors (UMAP)")
"""),
    md("""
## 4. A map of the clips

One point per clip. `mode="mean"` averages a clip's token vectors (*which* codes it uses);
`mode="concat"` keeps them in order (*which code at which position*), which matters for holistic,
position-specialised tokens.
"""),
    code("""
clips = clip_map(data, mode="mean", method="umap", seed=0)
hover = [f"clip {i}: {CLASS_NAMES[c]}, PSNR {p:.1f} dB, motion {m:.3f}"
         for i, (c, p, m) in enumerate(zip(clips["label"], clips["psnr"], clips["motion"]))]
embedding_scatter(clips["coords"], clips["label"], class_names=CLASS_NAMES, hover=hover,
                  title="clips: mean of their token vectors (UMAP), by class")
"""),
    code("""
embedding_scatter(clips["coords"], clips["motion"], hover=hover, color_title="motion energy",
                  title="the same map, coloured by motion energy (mean frame difference)")
"""),
    code("""
ordered = clip_map(data, mode="concat", method="umap", seed=0)
embedding_scatter(ordered["coords"], ordered["label"], class_names=CLASS_NAMES, hover=hover,
                  title="clips: token vectors concatenated in order (UMAP), by class")
"""),
    md("""
## 5. Nearest clips in token space

Hamming distance counts the positions where two clips' token ids differ; cosine distance compares the
clip embeddings. The first row is the query clip, then its neighbours, nearest first.
"""),
    code("""
Q = 6  # the query clip
near = nearest_clips(Q, indices=data.indices, k=5, metric="hamming")
print(f"query: clip {Q} ({CLASS_NAMES[int(data.labels[Q])]})")
for r in near:
    print(f"  clip {r['index']:<4} {CLASS_NAMES[int(data.labels[r['index']])]:<20} "
          f"{r['fraction_differing']:.1%} of the tokens differ")
show_frames(data.videos[[Q] + [r["index"] for r in near]], "nearest_hamming")
"""),
    code("""
near = nearest_clips(Q, embeddings=clip_embeddings(data.latents, "mean"), k=5, metric="cosine")
for r in near:
    print(f"  clip {r['index']:<4} {CLASS_NAMES[int(data.labels[r['index']])]:<20} cosine distance {r['distance']:.4f}")
show_frames(data.videos[[Q] + [r["index"] for r in near]], "nearest_cosine")
"""),
    md("""
## What to try next

- PCA instead of UMAP (`method="pca"`): instant and deterministic; do the clusters survive?
- `clip_embeddings(data.latents, "histogram", indices=data.indices, codebook_size=K)`: a bag of codes.
- Every token as a point: `larp_lab.analysis.token_points(data.latents, data.labels, data.indices)`,
  coloured by position (subsample: it is n x N points).
- Compare the codebook usage of the bundled model and LARP-L (8192 codes).
- Next notebook: `05_train_your_own` — train a micro tokenizer on the CPU.
"""),
]


# ------------------------------------------------------------------------------------------------
# 05 train your own
# ------------------------------------------------------------------------------------------------

NB05 = [
    md("""
# 05 · Train your own (micro) tokenizer on the CPU

**What this notebook teaches.** How a LARP tokenizer is trained with `larp_lab.training`: a YAML config
(model preset, data, optimiser, run settings), `train_tokenizer` writing a *run directory*
(`config.yaml`, `log.jsonl`, `samples/`, `model/`, `checkpoints/last/`), and exact resume. The micro
model (32x32x8 clips, 16 tokens, 64 codes, with its AR prior) trains on the synthetic dataset in about a
minute. Training runs in chunks (`stop_after`, then `resume=True`); the loss plot is redrawn after each
chunk, so you watch it progress. Resuming is exact (model, optimiser, RNG streams and data position are
restored; a test checks the losses are bit-identical to an uninterrupted run).

The loss is L1 reconstruction + VQ loss (weight 0.1) + the prior's scheduled-sampling cross-entropy
(weight 0.06).
"""),
    code(f"""
CONFIG = "configs/tokenizer_micro.yaml"  # relative to the repository
STEPS = 300  # the config says 400; fewer keep this notebook short
CHUNKS = 5  # train in chunks, redrawing the loss plot after each
# the trained model to compare with at the end:
{TOKENIZER_VAR}
"""),
    setup(std=["import json"], ipython="Image, Markdown, Video, display", inference_only=False, first=[
        imp("larp_lab", "LARPTokenizer"),
        imp("larp_lab.bundled", "resolve_tokenizer"),
        imp("larp_lab.data", "CLASS_NAMES", "SyntheticVideos", "save_frame_grid", "side_by_side", "video_grid",
            "write_video"),
        imp("larp_lab.evaluation", "psnr"),
        imp("larp_lab.training.config", "load_train_config"),
        imp("larp_lab.training.run", "train_tokenizer"),
        imp("larp_lab.viz", "new_figure"),
    ]),
    md("## 1. The config"),
    code("""
cfg = load_train_config(REPO / CONFIG, "tokenizer")
cfg = cfg.replace(run=cfg.run.replace(max_steps=STEPS, log_every=10, eval_every=STEPS, save_every=STEPS // CHUNKS))
RUN = OUT / "tok_micro"  # the run directory
m = cfg.model
print(f"{m.frame_num}x{m.input_size}x{m.input_size} clips -> {m.num_tokens} tokens from {m.codebook_size} codes; "
      f"batch {cfg.run.batch_size}, lr {cfg.optim.lr}, {STEPS} steps; prior: {m.prior.n_layer} layers")
"""),
    md("## 2. Train, watching the loss"),
    code("""
def loss_figure(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    fig, axes = new_figure(1, 4, figsize=(13, 2.8))
    for ax, key, title in zip(axes[0], ("rec", "prior_ce", "psnr", "usage"),
                              ("reconstruction L1", "prior cross-entropy", "train PSNR (dB)", "codebook usage (batch)")):
        ax.plot([r["step"] for r in train], [r[key] for r in train], marker=".")
        ax.set(title=title, xlabel="step", xlim=(0, STEPS))
    return fig


plot = display(Markdown("*training...*"), display_id=True)
for chunk in range(1, CHUNKS + 1):
    train_tokenizer(cfg, RUN, stop_after=chunk * STEPS // CHUNKS, resume=chunk > 1, device=DEVICE, progress=False)
    plot.update(loss_figure(RUN))
"""),
    md("""
The last panel is the share of the 64 codes used in each training batch. In a run this short it can
fall to a handful of codes (codebook collapse), so the config restarts codes unused for 25 steps
(`dead_code_restart_every: 25`, not part of the official recipe); set it to 0 in "What to try next"
and compare the panel.
"""),
    code("""
print(sorted(p.name for p in RUN.iterdir()))
evals = [json.loads(line) for line in (RUN / "log.jsonl").read_text().splitlines()]
print("last evaluation:", {k: v for k, v in [r for r in evals if r["split"] == "eval"][-1].items() if k != "split"})
print("validation reconstructions written during training (pairs of rows: original, reconstruction):")
Image(filename=str(sorted((RUN / "samples").glob("*.png"))[-1]))
"""),
    md("## 3. Use the trained model"),
    code("""
mine = LARPTokenizer.from_pretrained(RUN / "model", device=DEVICE).eval()
mc = mine.config
x = torch.stack([SyntheticVideos(12, frames=mc.frame_num, size=mc.input_size, seed=123)[i]["video"] for i in range(12)])
with torch.no_grad():
    rec = mine.reconstruct(x.to(DEVICE)).clamp(-1, 1).cpu()
for name, p in zip(CLASS_NAMES, psnr(rec, x)):
    print(f"{name:<20} PSNR {p:.2f} dB")
show_frames([v for pair in zip(x[:6], rec[:6]) for v in pair], "micro_reconstructions")
"""),
    code("""
show_video(video_grid([side_by_side([a, b]) for a, b in zip(x, rec)], nrow=4), "micro_side_by_side", width=640)
"""),
    md("""
**What you should see: flat fields of (roughly) each clip's colour, no shapes yet.** This is not a bug
of this run: at this size and budget LARP's *holistic* query tokens sit on a plateau where the best
the decoder can do is paint each clip's mean colour. Every query starts out attending uniformly to all
patches, so all tokens carry the same average, and they learn *where to look* only slowly.
`experiments/plateau.py` measures it: the same encoder and decoder blocks with *patch* tokens instead
of holistic ones leave the flat-colour level after ~650 steps and draw blobs where the objects are,
while the holistic version stays there (see `experiments/README.md`). The official models train for
hundreds of thousands of steps on GPUs.
"""),
    md("""
### Compared with a fully trained tokenizer

The same classes at the other model's own size (the bundled model: 64x64x16 and 256 tokens).
"""),
    code("""
ref = resolve_tokenizer(TOKENIZER, DEVICE)
rc = ref.config
x_ref = torch.stack([SyntheticVideos(12, frames=rc.frame_num, size=rc.input_size, seed=123)[i]["video"] for i in range(12)])
with torch.no_grad():
    rec_ref = ref.reconstruct(x_ref.to(DEVICE)).clamp(-1, 1).cpu()
print(f"just trained (micro): {psnr(rec, x).mean():.2f} dB with {mc.num_tokens} tokens of {mc.codebook_size} codes")
print(f"{TOKENIZER}: {psnr(rec_ref, x_ref).mean():.2f} dB with {rc.num_tokens} tokens of {rc.codebook_size} codes")
show_video(video_grid([side_by_side([a, b]) for a, b in zip(x_ref[:4], rec_ref[:4])], nrow=4), "reference", width=640)
"""),
    md("""
## What to try next

- Train longer: raise `STEPS` (the resumed run continues exactly; `max_steps` may be extended on resume).
- Switch off dead-code restarts: `cfg = cfg.replace(dead_code_restart_every=0)` before training (use a
  new run directory: re-run from the config cell), and compare the codebook usage panel and the PSNR.
- Change the config: `cfg.replace(prior_loss_weight=0.0)` trains without the prior's loss;
  `cfg.replace(model=cfg.model.replace(prior=None))` without a prior at all (see notebook 06).
- The command line does the same: `larp-lab train-tokenizer --config configs/tokenizer_micro.yaml --out runs/tok_micro`
  (add `--resume` to continue), then `larp-lab train-generator --config configs/generator_micro.yaml --tokenizer runs/tok_micro/model --out runs/gen_micro`.
- Look at the run with TensorBoard: `tensorboard --logdir <run dir>/tb`.
- Inspect your model with notebooks 01-04: set `TOKENIZER` to the run's `model/` directory.
"""),
]


# ------------------------------------------------------------------------------------------------
# 06 what the prior does
# ------------------------------------------------------------------------------------------------

NB06 = [
    md("""
# 06 · What does the AR prior do?

**What this notebook teaches.** LARP's central claim (paper, Fig. 1b): training the tokenizer together
with a small autoregressive **prior** shapes its token space so that a second-stage AR generator models
it better (lower NLL, better generation FVD), at little cost in reconstruction.
`experiments/prior_ablation.py` tests it with three arms trained with otherwise identical settings:

- `with_prior`: the prior with two-round scheduled sampling (LARP);
- `no_scheduled_sampling`: the prior trained by teacher forcing only;
- `without_prior`: no prior at all.

Metrics per arm: reconstruction PSNR and proxy rFVD, the generator's validation NLL per token, proxy
gFVD and class accuracy of generated clips, and the gap gFVD - rFVD (mean and 95% interval over seeds).

This notebook plots the experiment's results when `experiments/results/prior_ablation_cpu.json`
exists. Otherwise it runs a **tiny demonstration** (one seed, very short training) that shows the
procedure, **not evidence either way**. Section 3 shows what a trained prior predicts.
"""),
    code(f"""
RESULTS = "experiments/results/prior_ablation_cpu.json"  # relative to the repository
# the tokenizer whose prior section 3 looks at:
{TOKENIZER_VAR}
"""),
    setup(std=["import json", "import math", "import sys"], third=["import pandas as pd"], inference_only=False,
          first=[
        imp("larp_lab.analysis", "encode_dataset"),
        imp("larp_lab.analysis.completion", "complete_with_prior"),
        imp("larp_lab.bundled", "resolve_tokenizer"),
        imp("larp_lab.data", "SyntheticVideos", "save_frame_grid", "video_grid", "write_video"),
        imp("larp_lab.evaluation", "psnr"),
        imp("larp_lab.viz", "category_colors", "new_figure"),
    ], after="""
sys.path.insert(0, str(REPO / "experiments"))
import prior_ablation  # noqa: E402  (experiments/prior_ablation.py)
"""),
    md("## 1. The results (or a tiny demonstration)"),
    code("""
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
"""),
    code("""
METRICS = {"psnr_db": "recon PSNR (dB) ↑", "proxy_rfvd": "proxy rFVD ↓", "val_nll_per_token": "generator NLL/token ↓",
           "proxy_gfvd": "proxy gFVD ↓", "class_accuracy": "class accuracy ↑", "gap_gfvd_minus_rfvd": "gFVD - rFVD ↓"}
arms = list(result["summary"])
def mean_ci(s):  # "mean ± 95% half-width" (no interval with one seed)
    return f"{s['mean']:.4g}" + ("" if math.isnan(s["ci95"]) else f" ± {s['ci95']:.2g}")


pd.DataFrame({arm: {m: mean_ci(s[m]) for m in METRICS} for arm, s in result["summary"].items()}).rename(index=METRICS)
"""),
    code("""
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
"""),
    md("""
## 2. Reading the numbers

If the prior helps as the paper says, `with_prior` has a lower generator NLL per token and a lower
gFVD / gap than `without_prior`, with similar reconstruction PSNR; `no_scheduled_sampling` tells how
much of the effect needs scheduled sampling. Only differences larger than the intervals count; with
one seed there is no interval at all, and the tiny demonstration is far too short to show anything.
A lower NLL alone is not the whole story: a tokenizer that uses few codes is also easy to predict,
so look at PSNR and codebook usage (`result["summary"][arm]["codebook_usage"]`) too.
"""),
    md("""
## 3. What a trained prior predicts

The prior predicts each token from the ones before it. Give it the first k tokens of a clip and let it
continue greedily (`complete_with_prior`): how many of the remaining tokens does it get right, and what
does the decoder make of its guess?
"""),
    code("""
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
N = cfg.num_tokens
data = encode_dataset(tok, SyntheticVideos(12, frames=cfg.frame_num, size=cfg.input_size, seed=5), n=4, batch_size=4)
KS = [N // 16, N // 4, N // 2]
with torch.no_grad():
    done = [complete_with_prior(tok, data.indices.to(DEVICE), k).cpu() for k in KS]
    decoded = [tok.decode_indices(d.to(DEVICE)).clamp(-1, 1).cpu() for d in done]
for k, d, v in zip(KS, done, decoded):
    print(f"k = {k:<4} the prior guesses {(d[:, k:] == data.indices[:, k:]).float().mean():.1%} of the other tokens "
          f"exactly; PSNR {psnr(v, data.videos).mean():.2f} dB (all tokens: {data.psnr.mean():.2f} dB)")
print("columns: original, then the prior's completion from k =", KS)
show_video(video_grid([c for i in range(len(data)) for c in (data.videos[i], *(v[i] for v in decoded))], nrow=len(KS) + 1),
           "prior_completion", width=560)
"""),
    md("""
## What to try next

- Run the full experiment (about an hour on a laptop CPU, three seeds):
  `python experiments/prior_ablation.py --scale cpu`, then re-run this notebook.
- On a GPU: `--scale gpu` (64x64x16 clips, the bundled model sizes, longer training).
- Sample the prior instead of taking its argmax: `complete_with_prior(tok, ids, k, greedy=False, temperature=1.0)`.
- Compare the prior's surprisal of the three arms' tokens with notebook 03's tools
  (`larp_lab.analysis.prior_surprisal`) on the tokenizers under the run directory.
"""),
]


NOTEBOOKS = {
    "00_quick_start": NB00,
    "01_query_attention": NB01,
    "02_token_order": NB02,
    "03_prior_likelihoods": NB03,
    "04_latent_space": NB04,
    "05_train_your_own": NB05,
    "06_what_the_prior_does": NB06,
}


def build(name: str, cells) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, src) in enumerate(cells):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell.id = f"{name[:2]}-{i:02d}"  # stable ids: a rebuild changes only what was edited
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a notebook differs from this script")
    args = p.parse_args()
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / f"{name}.ipynb"
        text = nbformat.writes(build(name, cells)) + "\n"
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python notebooks/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
