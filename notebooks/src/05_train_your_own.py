# %% [markdown]
# # 05 · Train your own (micro) tokenizer on the CPU
#
# **What this notebook teaches.** How a LARP tokenizer is trained with `larp_lab.training`: a YAML config
# (model preset, data, optimiser, run settings), `train_tokenizer` writing a *run directory*
# (`config.yaml`, `log.jsonl`, `samples/`, `model/`, `checkpoints/last/`), and exact resume. The micro
# model (32x32x8 clips, 16 tokens, 64 codes, with its AR prior) trains in about a minute on moving
# digits, the data the bundled models were trained on, so that at the end you can compare it with the
# bundled tokenizer on held-out clips of the same kind. Training runs in chunks (`stop_after`, then
# `resume=True`); the loss plot is redrawn after each chunk, so you watch it progress. Resuming is exact
# (model, optimiser, RNG streams and data position are restored; a test checks the losses are
# bit-identical to an uninterrupted run).
#
# The loss is L1 reconstruction + VQ loss (weight 0.1) + the prior's scheduled-sampling cross-entropy
# (weight 0.06).

# %%
CONFIG = "configs/tokenizer_micro.yaml"  # relative to the repository
DATA = "digits"  # what to train on, in place of the config's data: "digits" (moving digits) or "synthetic"
STEPS = 300  # the config says 400; fewer keep this notebook short
CHUNKS = 5  # train in chunks, redrawing the loss plot after each
# the trained model to compare with at the end:
TOKENIZER = "default"  # or "hywang66/LARP-L-long-tokenizer" / a local directory of the official weights

# %%
import json

from IPython.display import Image, Markdown, display

from larp_lab import LARPTokenizer, pipelines
from larp_lab.bundled import resolve_tokenizer
from larp_lab.evaluation import psnr
from larp_lab.training.config import SourceConfig, load_train_config
from larp_lab.training.run import train_tokenizer
from larp_lab.viz import new_figure
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
OUT = output_dir()  # a temporary folder for the run directory, and the videos and pictures shown
DEVICE = default_device()  # "cuda" when torch sees a GPU, else "cpu"

# %% [markdown]
# ## 1. The config

# %%
cfg = load_train_config(REPO / CONFIG, "tokenizer")
cfg = cfg.replace(run=cfg.run.replace(max_steps=STEPS, log_every=10, eval_every=STEPS, save_every=STEPS // CHUNKS),
                  data=cfg.data.replace(sources=(SourceConfig(kind=DATA),)))  # the config trains on synthetic clips
RUN = OUT / "tok_micro"  # the run directory
m = cfg.model
print(f"{DATA}: {m.frame_num}x{m.input_size}x{m.input_size} clips -> {m.num_tokens} tokens "
      f"from {m.codebook_size} codes; "
      f"batch {cfg.run.batch_size}, lr {cfg.optim.lr}, {STEPS} steps; prior: {m.prior.n_layer} layers")


# %% [markdown]
# ## 2. Train, watching the loss

# %%
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

# %% [markdown]
# The last panel is the share of the 64 codes used in each training batch. In a run this short it can
# fall to a handful of codes (codebook collapse), so the config restarts codes unused for 25 steps
# (`dead_code_restart_every: 25`, not part of the official recipe); set it to 0 in "What to try next"
# and compare the panel.

# %%
print(sorted(p.name for p in RUN.iterdir()))
evals = [json.loads(line) for line in (RUN / "log.jsonl").read_text().splitlines()]
print("last evaluation:", {k: v for k, v in [r for r in evals if r["split"] == "eval"][-1].items() if k != "split"})
print("validation reconstructions written during training (pairs of rows: original, reconstruction):")
Image(filename=str(sorted((RUN / "samples").glob("*.png"))[-1]))

# %% [markdown]
# ## 3. Use the trained model

# %%
mine = LARPTokenizer.from_pretrained(RUN / "model", device=DEVICE).eval()
mc = mine.config
# held-out clips of DATA (for digits: handwriting never trained on), one per class
x, y, class_names = bundled_clips(mine, 10, seed=123, kind=DATA)
rec = pipelines.reconstruct(mine, x).reconstruction  # (10, 3, T, H, W) in [-1, 1]
for k, p in zip(y, psnr(rec, x)):
    print(f"{class_names[k]:<20} PSNR {p:.2f} dB")
show_frames(interleave(x[:6], rec[:6]), "micro_reconstructions")

# %%
show_video(comparison_grid(x, rec, nrow=5), "micro_side_by_side", width=640)

# %% [markdown]
# **What you should see: (nearly) black frames, no digits yet.** This is not a bug of this run: at this
# size and budget LARP's *holistic* query tokens sit on a plateau where the best the decoder can do is
# paint each clip's mean colour, and a small digit on a black background averages to almost black
# (with `DATA = "synthetic"`, whose backgrounds are coloured, you see flat fields of each clip's colour).
# Every query starts out attending uniformly to all patches, so all tokens carry the same average, and
# they learn *where to look* only slowly. Because the digit covers a small part of the frame, an
# all-black guess already scores a fair PSNR: judge by the pictures, not by the number alone.
# `experiments/plateau.py` measures the plateau on the synthetic clips: the same encoder and decoder
# blocks with *patch* tokens instead of holistic ones leave the flat-colour level after ~650 steps and
# draw blobs where the objects are, while the holistic version stays there (see `experiments/README.md`).
# The official models train for hundreds of thousands of steps on GPUs.

# %% [markdown]
# ### Compared with a fully trained tokenizer
#
# The same kind of held-out clips at the other model's own clip size: when both work at the same size
# they are the very same clips, so the two rows of numbers compare directly. (With `DATA = "synthetic"`
# the bundled tokenizer sees clips unlike the digits it was trained on.) The bundled tokenizer was trained
# far longer, with the CPU recipe of `configs/tokenizer_digits.yaml`: a locality loss early on that
# teaches each query a region to read (annealed to zero later), a codebook started from the encoder's
# own latents, and more tokens and codes. That recipe is what gets a small LARP off the plateau.

# %%
ref = resolve_tokenizer(TOKENIZER, DEVICE)
rc = ref.config
x_ref, _, _ = bundled_clips(ref, 10, seed=123, kind=DATA)
rec_ref = pipelines.reconstruct(ref, x_ref).reconstruction
print(f"just trained (micro): {psnr(rec, x).mean():.2f} dB with {mc.num_tokens} tokens of {mc.codebook_size} codes")
print(f"{TOKENIZER}: {psnr(rec_ref, x_ref).mean():.2f} dB with {rc.num_tokens} tokens of {rc.codebook_size} codes")
show_video(comparison_grid(x_ref, rec_ref, nrow=5), "reference", width=640)

# %% [markdown]
# ## What to try next
#
# - Train longer: raise `STEPS` (the resumed run continues exactly; `max_steps` may be extended on resume).
# - Switch off dead-code restarts: `cfg = cfg.replace(dead_code_restart_every=0)` before training (use a
#   new run directory: re-run from the config cell), and compare the codebook usage panel and the PSNR.
# - Change the config: `cfg.replace(prior_loss_weight=0.0)` trains without the prior's loss;
#   `cfg.replace(model=cfg.model.replace(prior=None))` without a prior at all (see notebook 06).
# - Train on the other data: `DATA = "synthetic"` (the procedural shapes of `configs/tokenizer_micro.yaml`).
# - The command line trains what a config says (the micro configs: synthetic clips):
#   `larp-lab train-tokenizer --config configs/tokenizer_micro.yaml --out runs/tok_micro` (add `--resume` to
#   continue), then `larp-lab train-generator --config configs/generator_micro.yaml --tokenizer runs/tok_micro/model --out runs/gen_micro`.
#   `configs/tokenizer_digits.yaml` is the bundled tokenizer's recipe on moving digits (much longer).
# - Look at the run with TensorBoard: `tensorboard --logdir <run dir>/tb`.
# - Inspect your model with notebooks 01-04: set `TOKENIZER` to the run's `model/` directory.
