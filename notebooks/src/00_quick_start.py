# %% [markdown]
# # 00 · Quick start: tokenize, reconstruct, generate, predict
#
# **What this notebook teaches.** LARP turns a video clip into a short sequence of discrete tokens: a
# ViT encoder reads the clip's 3-D patches together with *N learned holistic queries*, and each query's
# output becomes one token (an id into a codebook). A ViT decoder turns the tokens back into pixels.
# A Llama-style autoregressive **generator** models token sequences, so it can make new clips of a
# class, and a **frame predictor** continues a clip from its first frames.
#
# You will: load a tokenizer, reconstruct a real clip (Big Buck Bunny) and clips of the data the models
# were trained on (moving digits) and measure PSNR, sample class-conditional clips (one per digit), and
# predict the future of a clip.
#
# The small models bundled with larp_lab were trained on a CPU on **moving digits**
# (`larp_lab.data.MovingDigits`): one handwritten digit of a random colour flying over a black
# background and bouncing off the walls, labelled by its digit. The clips shown here are *held out*:
# their handwriting was never seen in training. Everything runs offline on a CPU in about a minute. To
# use the official LARP-L weights, change the variables in the next cell (a GPU is recommended then).

# %%
# "default": the small models bundled in checkpoints/, trained on moving digits (offline).
# Official LARP-L: a Hub id (downloaded once) or a local directory with its config.json + model.safetensors
# (128x128x16 clips, 1024 tokens, 8192 codes; use a GPU for it).
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights
GENERATOR = "default"  # or "hywang66/LARP-L-long-AR" / a local directory of the official weights
FRAME_PREDICTOR = "larp-tiny-frame-predictor"  # the bundled one; or "hywang66/LARP-L-long-AR-FP" / a directory

# %%
import torch

from larp_lab import pipelines
from larp_lab.bundled import describe_training, resolve_generator, resolve_tokenizer
from larp_lab.data import side_by_side, video_grid
from larp_lab.evaluation import psnr
from larp_lab.viz import per_frame_psnr_figure, token_id_grid
from larp_lab.viz.notebook import (
    bundled_clips,
    comparison_grid,
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
# ## 1. The tokenizer

# %%
tok = resolve_tokenizer(TOKENIZER, DEVICE)
cfg = tok.config
print(f"clips of {cfg.frame_num} frames of {cfg.input_size}x{cfg.input_size} -> {cfg.num_tokens} tokens "
      f"from a codebook of {cfg.codebook_size}; {tok.num_parameters() / 1e6:.1f}M parameters (prior included)")
# what it was trained on, as its config.json's metadata says (the bundled models: "data": "digits")
print("trained on:", describe_training(tok.checkpoint_metadata.get("data"), cfg.frame_num, cfg.input_size)
      or "not recorded")

# %% [markdown]
# ## 2. Reconstruct a real clip
#
# `pipelines.reconstruct` reads the clip the way the tokenizer sees it (its first `frame_num` frames,
# the short side resized and centre-cropped to `input_size`: a float tensor (1, 3, T, H, W) in [-1, 1]),
# encodes it to token ids (`tok.encode`) and decodes them back to pixels (`tok.decode`). PSNR is measured
# on the [0, 1] scale (higher is better).
#
# **Expect blurs.** The bundled tokenizer has only ever seen coloured digits on black, so an animated
# film is far outside what it learned: it comes back as blurred smudges of colour at best, not as a
# picture, and a low PSNR says so. A tokenizer trained on natural video (LARP-L, first cell) draws it far
# better. The same pipeline on the kind of clip the bundled models were trained on follows in section 3.

# %%
EXAMPLE = REPO / "examples" / "bigbuckbunny_128.mp4"
r = pipelines.reconstruct(tok, EXAMPLE)  # r.original, r.reconstruction: (1, 3, T, H, W); r.tokens: (1, N)
print("the model sees", r.source.describe())
print("token ids:", tuple(r.tokens.shape), "- the first twelve:", r.tokens[0, :12].tolist())
print(f"PSNR {r.metrics['psnr_db']:.2f} dB, SSIM {r.metrics['ssim']:.3f}   (left: original, right: reconstruction)")
show_video(side_by_side([r.original[0], r.reconstruction[0]]), "bunny")

# %%
per_frame_psnr_figure(r.metrics["per_frame_psnr_db"], title="Big Buck Bunny: PSNR per frame")

# %%
token_id_grid(r.tokens[0], cfg.codebook_size, title="the clip's token ids, in token order")

# %% [markdown]
# ## 3. Moving digits: the data the models were trained on
#
# `bundled_clips(tok, n)` renders `n` held-out clips of the kind the tokenizer was trained on (it reads
# `"data"` in the checkpoint's metadata) at the tokenizer's clip size, cycling through the classes:
# here one clip per digit, 0 to 9, in handwriting the models never saw. Rows below alternate original /
# reconstruction. Look at whether the digit stays readable, keeps its colour and moves where it should;
# thin strokes and small loops are where a small tokenizer loses detail first.

# %%
x, y, class_names = bundled_clips(tok, 10, seed=0)  # (10, 3, T, H, W) clips, their labels, the class names
rec_x = pipelines.reconstruct(tok, x).reconstruction  # the same job on a batch of clips
for k, p in zip(y, psnr(rec_x, x)):
    print(f"{class_names[k]:<12} PSNR {p:.2f} dB")
show_frames(interleave(x, rec_x), "digits")

# %%
show_video(comparison_grid(x, rec_x, nrow=5), "digits_side_by_side", width=640)

# %% [markdown]
# ## 4. Generate clips of a class
#
# The generator samples the N token ids one after the other given a class label (with classifier-free
# guidance `cfg_scale`), and the tokenizer decodes them. `pipelines.generate` does both for one class
# and also scores each sampled token under the generator (its negative log-likelihood, in nats). The
# bundled generator's classes (`gen.config.class_names`) are the digits, so asking for class 3 asks for
# a moving "3": check whether the samples show the digit you asked for and whether it moves smoothly.

# %%
gen = resolve_generator(GENERATOR, DEVICE)
gen.check_tokenizer(tok)  # same number of tokens and codebook size
print("the generator's classes:", gen.config.class_names or f"{gen.config.num_classes} unnamed classes")
CLASSES = list(range(min(10, gen.config.num_classes)))  # class ids or names: for the bundled generator, digits 0-9
runs = [pipelines.generate(tok, gen, c, cfg_scale=1.5, temperature=1.0, seed=0) for c in CLASSES]
samples = torch.cat([g.videos for g in runs])  # (10, 3, T, H, W) in [-1, 1]
for g in runs:
    print(f"{g.class_name:<12} {g.metrics['mean_nll_per_token'][0]:.3f} nats per token under the generator")
show_video(video_grid(list(samples), nrow=5), "generated", width=640)

# %%
show_frames(samples, "generated_frames")

# %% [markdown]
# ## 5. Predict the future of a clip
#
# The official frame-prediction recipe: keep the first `COND_FRAMES` frames, repeat the last of them to
# the full length, tokenize that, and give those N tokens to the frame predictor as its condition; it
# generates the tokens of the whole clip. `pipelines.predict` runs these steps and measures the
# predicted frames against the truth and against simply repeating the last conditioning frame. A digit
# flies in a straight line and bounces off the walls, so the future is mostly determined by the first
# frames: a good prediction keeps the digit's shape and colour and carries on its motion, where the
# repeated frame stands still.

# %%
fp = resolve_generator(FRAME_PREDICTOR, DEVICE)
# the bundled predictor was trained on the first half of its clips, LARP-L's on the first 5 of 16 frames
COND_FRAMES = min(5, cfg.frame_num // 2)
p = pipelines.predict(tok, fp, x[:2], cond_frames=COND_FRAMES, seed=0)  # two held-out digits
# p.truth, p.baseline (the last conditioning frame repeated), p.prediction: (2, 3, T, H, W)
print(f"PSNR of the predicted frames {p.metrics['psnr_predicted_db']:.2f} dB; "
      f"repeating the last frame: {p.metrics['psnr_repeat_last_db']:.2f} dB")
print("columns: truth | condition (last frame repeated) | prediction")
show_video(comparison_grid(p.truth, p.baseline, p.prediction, nrow=1), "prediction")

# %%
per_frame_psnr_figure(p.metrics["per_frame_psnr_db"], cond_frames=COND_FRAMES, title="prediction: PSNR per frame")

# %% [markdown]
# ## What to try next
#
# - Reconstruct your own clip, from any second of it: `pipelines.reconstruct(tok, "my_clip.mp4", start_time=2.0)`.
# - Sample with other settings: `cfg_scale=1.0` (no guidance), `temperature=0.8`, `top_k=100`, other seeds,
#   several clips of a class (`num_samples=4`).
# - Condition the frame predictor on fewer or more frames (`COND_FRAMES`), or on the Big Buck Bunny clip.
# - Harder clips: two digits at once, `larp_lab.data.MovingDigits(8, frames=cfg.frame_num, size=cfg.input_size,
#   split="heldout", num_digits=2)` (the models saw one digit per clip).
# - Switch to the official LARP-L weights in the first cell and compare PSNR at 128x128.
# - The same from the command line: `larp-lab reconstruct`, `larp-lab sample` (see the README).
# - Next notebook: `01_query_attention` — where do the holistic queries look?
