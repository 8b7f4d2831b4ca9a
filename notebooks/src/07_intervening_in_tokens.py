# %% [markdown]
# # 07 · Intervening in the tokens: surgery, influence maps and patching
#
# **What this notebook teaches.** The other notebooks *look* at LARP's latent space; this one *changes*
# it and watches what happens, the way activation patching is used on language models:
#
# 1. **token surgery**: set one token of a clip to another code (the prior's favourite alternatives, or
#    a random one) and decode: original, edited and their difference, frame by frame;
# 2. **influence maps**: replace every token in turn by a few other codes and record *where* the decoded
#    clip changes: a heatmap per token, and "which tokens control this pixel". Do holistic tokens own a
#    fixed region, like patch tokens, or does their region depend on the clip?
# 3. **patching between clips**: put clip B's tokens (or its encoder query outputs) into clip A at chosen
#    positions and measure, over many pairs, what moved from B into A: the digit (read by the proxy
#    classifier), the position, the motion and the colour. Which positions carry what?
# 4. **the generator**: swap its class embedding or one position's residual stream and see which later
#    predictions change.
#
# The same tools are in the app's **Surgery** tab (and its API: `/edit_tokens`, `/swap_tokens`,
# `/token_influence`).

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits (offline).
TOKENIZER = "default"  # or a local directory / Hub id of another LARP tokenizer
GENERATOR = "default"
PAIRS = 32  # clip pairs per patching measurement (more: tighter numbers, slower)

# %%
import numpy as np
import torch
from IPython.display import display
from PIL import Image

from larp_lab.analysis import (
    clip_properties,
    decode_edit,
    edit_tokens,
    generator_patch_effect,
    influence_consistency,
    patching_sweep,
    prior_alternatives,
    token_influence,
)
from larp_lab.bundled import bundled_path, has_bundled, resolve_generator, resolve_tokenizer
from larp_lab.evaluation.classifier import VideoClassifier
from larp_lab.viz import (
    difference_clip,
    energy_figure,
    influence_frames,
    influence_mosaic,
    new_figure,
    patching_bars,
    token_grid_image,
)
from larp_lab.viz.notebook import bundled_clips, default_device, output_dir, show_frames

OUT = output_dir()  # a temporary folder for this notebook's files
DEVICE = default_device()
torch.set_grad_enabled(False)

tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
N, K = cfg.num_tokens, cfg.codebook_size
x, y, class_names = bundled_clips(tok, 60, seed=4)  # held-out clips, digits 0-9 in turn
clf = None  # the proxy classifier reads the digit, when the bundled one fits these clips
if has_bundled("larp-tiny-classifier"):
    c = VideoClassifier.from_pretrained(bundled_path("larp-tiny-classifier")).eval()
    if (c.config.frames, c.config.size, c.config.num_classes) == (cfg.frame_num, cfg.input_size, len(class_names)):
        clf = c.to(DEVICE)
ids = tok.encode(x.to(DEVICE)).indices.cpu()  # (60, N)
print(f"{len(x)} clips of {cfg.frame_num}x{cfg.input_size}x{cfg.input_size} -> {N} tokens from {K} codes; "
      f"proxy classifier: {'yes' if clf is not None else 'none fits these clips'}")

# %% [markdown]
# ## 1. Token surgery on one clip
#
# The tokens of clip 3 as a grid (token order left to right, top to bottom; the number is the code).
# We change the token whose replacement moves the clip most (found in section 2; here we simply take
# the prior's favourite alternatives at position 10 and a random code).

# %%
clip = 3
show_frames([x[clip]], "clip")
Image.fromarray(token_grid_image(ids[clip], codebook_size=K, selected=10))  # the grid, as a picture

# %%
codes, probs, kind = prior_alternatives(tok, ids[clip], 10, k=5)
print(f"position 10 holds code {int(ids[clip, 10])}; the prior's top-5 there ({kind}):",
      ", ".join(f"{c} (p={p:.3f})" for c, p in zip(codes.tolist(), probs.tolist())))
likely = int(codes[0]) if int(codes[0]) != int(ids[clip, 10]) else int(codes[1])
rand = int(torch.randint(K, (1,), generator=torch.Generator().manual_seed(0)))
edits = {f"prior's choice {likely}": likely, f"random code {rand}": rand}
for name, code in edits.items():
    e = decode_edit(tok, ids[clip], edit_tokens(ids[clip], {10: code}))
    print(f"{name}: mean squared change {e.total_energy:.5f}, largest pixel change {float(e.difference.max()):.3f}")
    show_frames([e.original, e.edited, difference_clip(e.difference, vmax=1.0)], f"edit_{code}")
    display(energy_figure(e.energy, title=f"position 10 -> {name}"))

# %% [markdown]
# ## 2. Influence maps: where does each token act?
#
# For each of the N positions, 4 random codes the clip does not use replace the token in turn, and the
# mean absolute pixel change is recorded for every (t, y, x). The mosaic shows every token's map (summed
# over time, each scaled to its own maximum), in grid order.

# %%
maps = [token_influence(tok, ids[i], num_codes=4, seed=i) for i in range(6)]
img = influence_mosaic(maps[clip % 6].maps)
fig, ax = new_figure(figsize=(6, 6))
ax[0, 0].imshow(img, interpolation="nearest")
ax[0, 0].set_axis_off()
ax[0, 0].set_title(f"where each of the {N} tokens of clip {clip % 6} acts")
fig

# %% [markdown]
# **Which tokens control this pixel?** Take the brightest pixel of the digit in frame 3 and rank the
# tokens by their share of the change there.

# %%
m = maps[3]
frame = m.reconstruction[:, 3].max(0).values  # (H, W) brightest channel
py, px = divmod(int(frame.argmax()), frame.shape[1])
share = m.pixel_control(3, py, px, radius=1)
top = np.argsort(-share)[:5]
print(f"pixel (y={py}, x={px}) of frame 3: tokens {top.tolist()} hold {share[top].sum():.0%} of the change there")
display(Image.fromarray(token_grid_image(ids[3], share, marks=top.tolist())))  # red: the top 5
influence_frames(m.reconstruction, m.maps[int(top[0])], title=f"token {int(top[0])}, frame by frame")

# %% [markdown]
# **Holistic, or patches in disguise?** Two numbers per token:
#
# * *concentration*: the share of its influence inside the one block (of a 4x4 split of the frame) where
#   it acts most: 1/16 = everywhere, 1 = one block;
# * *consistency*: the correlation of its map between different clips: 1 = always the same region (what a
#   patch tokenizer's token does by construction), 0 = the region depends on the clip.

# %%
conc = np.stack([mm.concentration(4) for mm in maps]).mean(0)
cons = influence_consistency(maps)
print(f"concentration: mean {conc.mean():.2f} (uniform 0.06, one block 1.00); "
      f"consistency across 6 clips: mean {cons.mean():.2f}, min {cons.min():.2f}, max {cons.max():.2f}")
fig, ax = new_figure(figsize=(6, 3.2))
ax[0, 0].scatter(conc, cons, s=14)
for n in np.argsort(cons)[:3]:
    ax[0, 0].annotate(str(n), (conc[n], cons[n]), fontsize=7)
ax[0, 0].set_xlabel("concentration (share in its best 4x4 block)")
ax[0, 0].set_ylabel("consistency across clips")
ax[0, 0].set_title("each dot is a token position")
fig

# %% [markdown]
# ## 3. Patching between clips: which positions carry what?
#
# For each position alone, clip B's token replaces clip A's over PAIRS pairs of clips showing different
# digits. For each property we report how far the patched clip moved from A towards B (0 = stayed A,
# 1 = became B): identity (the classifier's probability of B's digit), position (the object's centre),
# motion (its velocity) and colour.

# %%
sweep = patching_sweep(tok, x, clf, y, num_pairs=PAIRS, seed=0)
means = sweep.means()
patching_bars(means)

# %%
for what in ("identity", "position", "motion", "colour"):
    if np.isnan(means[what]).all():
        continue
    best = sweep.top(what, k=5)
    print(f"{what:9s}: top positions {best}, moved {np.nanmean(means[what][best]):.2f} of the way to B "
          f"(mean over all positions {np.nanmean(means[what]):.3f})")

# %% [markdown]
# A single holistic token rarely carries a whole property. Patch *groups*: the 8 positions that moved
# each property most (found above), 8 random positions, the first and the second half, and all of them.
# A group's effect is measured on fresh pairs (another seed), so this is not the same data that chose it.

# %%
rng = np.random.default_rng(1)
groups = {f"top-8 {w}": sweep.top(w, k=8) for w in ("identity", "position", "colour")
          if not np.isnan(means[w]).all()}
groups |= {"8 random": sorted(rng.choice(N, 8, replace=False).tolist()), "first half": list(range(N // 2)),
           "second half": list(range(N // 2, N)), "all": list(range(N))}
fresh = patching_sweep(tok, x, clf, y, groups=list(groups.values()), num_pairs=PAIRS, seed=1)
gm = fresh.means()
print(f"{'group':16s} identity position motion colour flip-rate")
for i, g in enumerate(groups):
    print(f"{g:16s} {gm['identity'][i]:8.2f} {gm['position'][i]:8.2f} {gm['motion'][i]:6.2f} "
          f"{gm['colour'][i]:6.2f} {gm['flip_rate'][i]:9.0%}")

# %% [markdown]
# **Tokens or queries?** The same groups, patched one step earlier: the encoder's query outputs after its
# first block (layer 0) instead of the final tokens. The later blocks then mix the patched queries with
# the rest of clip A, so a property that survives was already carried by those queries at layer 0.

# %%
q0 = patching_sweep(tok, x, clf, y, groups=list(groups.values()), num_pairs=PAIRS, seed=1, method="queries",
                    layer=0)
qm = q0.means()
for i, g in enumerate(groups):
    print(f"{g:16s} tokens: position {gm['position'][i]:.2f} colour {gm['colour'][i]:.2f} | "
          f"queries at layer 0: position {qm['position'][i]:.2f} colour {qm['colour'][i]:.2f}")

# %% [markdown]
# ## 4. Patching the generator
#
# A class-conditional generator predicts token i from the class and tokens 0..i-1. Take 8 samples of the
# digit 3, then (a) give the same sequences the class embedding of 8: every prediction may change; (b)
# replace the residual stream of token 20 after the first block by its value in a sample of 8: only the
# predictions *after* token 20 can change (causality), and how far the change travels shows which later
# tokens read token 20.

# %%
gen = resolve_generator(GENERATOR, DEVICE)
gen.check_tokenizer(tok)
names = list(gen.config.class_names or [str(i) for i in range(gen.config.num_classes)])
a_cls, b_cls = names.index("3") if "3" in names else 0, names.index("8") if "8" in names else 1
g = torch.Generator(device=DEVICE).manual_seed(0)
xa = gen.sample(torch.full((8,), a_cls), cfg_scale=3.0, generator=g)
xb = gen.sample(torch.full((8,), b_cls), cfg_scale=3.0, generator=g)
cls_patch = generator_patch_effect(gen, xa, torch.full((8,), a_cls), class_from=torch.full((8,), b_cls))
res_patch = generator_patch_effect(gen, xa, torch.full((8,), a_cls), layer=0, position=20, source_tokens=xb)
fig, ax = new_figure(figsize=(7, 3))
ax[0, 0].plot(cls_patch.kl.mean(0), label="class embedding 3 -> 8")
ax[0, 0].plot(res_patch.kl.mean(0), label="token 20's residual stream (block 0)")
ax[0, 0].axvline(20, color="grey", ls=":")
ax[0, 0].set_xlabel("token position predicted")
ax[0, 0].set_ylabel("KL(clean || patched), nats")
ax[0, 0].set_yscale("symlog", linthresh=1e-3)
ax[0, 0].legend(fontsize=8)
fig

# %%
print(f"class patch: argmax changes at {cls_patch.changed.mean():.0%} of positions; "
      f"residual patch: first affected position {res_patch.first_affected()}, argmax changes at "
      f"{res_patch.changed[:, 21:].mean():.0%} of the positions after 20 (and {res_patch.changed[:, :21].mean():.0%} "
      "before: causality)")
tok_a = tok.decode_indices(xa[:4])
props = clip_properties(tok_a, clf)
if clf is not None:
    print("the proxy classifier reads the samples of 3 as:", props.digit.tolist())

# %% [markdown]
# ## What to take away
#
# * Edits to one token change the clip *somewhere*, often spread over several frames: a token is not a
#   patch of pixels.
# * The influence maps say how local the bundled tokens are; their consistency across clips says
#   whether a token owns a region of the frame (the CPU recipe's locality loss pushes them that way
#   during training, see `configs/tokenizer_digits.yaml`) or follows the content.
# * Patching measures, with numbers over many pairs, which positions carry the digit's colour, its
#   position and motion, and its identity; groups of positions carry what single positions cannot.
# * The generator's predictions depend on its class embedding everywhere, but on one token's residual
#   stream only after it: the test that a patch is wired correctly, and a map of what reads what.
