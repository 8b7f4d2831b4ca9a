"""Why a micro LARP tokenizer reconstructs flat colour fields for thousands of steps.

    python experiments/plateau.py [--steps 1500] [--seed 0] [--name plateau_cpu]

Two autoencoders built from the *same* larp_lab parts (patch embedding, sin-cos tables, ViT blocks,
16-d bottleneck, decoder with sin-cos patch queries, final layer) at the micro size (32x32x8 clips,
width 64, 2 + 2 blocks), trained with identical settings on the synthetic dataset. They differ in one
thing: what the encoder hands to the decoder.

* ``holistic``: LARP. N learned query tokens are appended to the patches and only their outputs
  are kept (``--tokens``, 16 by default), as in :class:`larp_lab.LARPTokenizer`.
* ``patch``: the encoder's *patch* outputs (32 of them, one per 8x8x4 patch) go to the decoder,
  each with its patch's sin-cos position (a ViT autoencoder without holistic tokens).

Both skip the vector quantizer (the bottleneck output is L2-normalised, as the cosine VQ does before
its lookup) and train with MSE, so that what is measured is the token design and not the codebook
or the prior. Reported: held-out PSNR against training steps, next to the PSNR of the best *flat*
reconstruction (each clip's mean colour, the MSE optimum of a decoder that ignores position), and a
linear probe: how much of each clip's coarse 4x4 layout (with the mean colour removed) a ridge
regression reads from the tokens, before and after training.

Result on this CPU (``experiments/results/plateau_cpu.json``): the holistic autoencoder reaches the
flat-colour PSNR in a few hundred steps and stays there, while the patch autoencoder passes it and
keeps improving; training *lowers* the layout information in the holistic tokens. Larger query
initialisation, 32 or 64 tokens, L1 loss, learning rates 3e-4 to 5e-3, deeper blocks and smaller
decoder patches were tried by hand and did not leave the plateau within 1,500 steps either (see the
README next to this file). At the paper's scale the official model trains for hundreds of thousands
of steps; the plateau is a property of holistic query tokens at toy budgets, not of this code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VARIANTS = ("holistic", "patch")


def build(tokens: int, seed: int):
    from larp_lab import LARPTokenizer
    from larp_lab.config import TOKENIZER_PRESETS

    cfg = TOKENIZER_PRESETS["micro"]()
    cfg.prior = None
    cfg.num_tokens = tokens
    torch.manual_seed(seed)
    return LARPTokenizer(cfg, device="cpu")


def tokens_of(model, video: torch.Tensor, variant: str) -> torch.Tensor:
    """(B, 3, T, H, W) -> the L2-normalised bottleneck codes handed to the decoder, (B, n, 16)."""
    if variant == "holistic":  # the tokenizer's own encoder; its codes just before the VQ lookup
        return model.encode(video, sample=False).normalized  # (B, N, 16)
    enc_grid, _ = model.grids(model.check_video(video))
    p = model.x_embedder(video)  # (B, P, D)
    p = p + model._table("enc", enc_grid, p)
    h = model.encoder(p, keep_last=p.shape[1])  # (B, P, D): the patch outputs, no queries
    return F.normalize(model.bottleneck.in_linear(h), dim=-1)


def reconstruct(model, video: torch.Tensor, variant: str) -> torch.Tensor:
    z = tokens_of(model, video, variant)
    shape = tuple(video.shape[2:])
    if variant == "holistic":
        return model.decode(model.bottleneck.out_linear(z), shape)
    _, dec_grid = model.grids(shape)
    e = model.bottleneck.out_linear(z)  # (B, P, D): encoder and decoder grids are the same here
    e = e + model._table("dec", dec_grid, e)
    pq = model._table("dec", dec_grid, e) + model.decoder_patch_query_token_type_embed  # (1, M, D)
    h = model.decoder(torch.cat([e, pq.expand(e.shape[0], -1, -1)], dim=1), keep_last=pq.shape[1])
    return model.unpatchify(model.final_layer(h), dec_grid)


def psnr(rec: torch.Tensor, ref: torch.Tensor) -> float:
    from larp_lab.evaluation.metrics import psnr as clip_psnr

    return float(clip_psnr(rec.clamp(-1, 1), ref).mean())


def layout_r2(model, videos: torch.Tensor, variant: str, n_train: int) -> float:
    """Ridge probe: R^2 of each clip's 4x4 mean-removed layout read linearly from its tokens."""
    with torch.no_grad():
        z = torch.cat([tokens_of(model, v, variant).flatten(1) for v in videos.split(100)])
    coarse = F.adaptive_avg_pool3d(videos, (1, 4, 4)).flatten(2)  # (B, 3, 16)
    y = (coarse - coarse.mean(-1, keepdim=True)).flatten(1)  # (B, 48)
    a = torch.cat([z, torch.ones(len(z), 1)], dim=1).double()
    y = y.double()
    w = torch.linalg.solve(a[:n_train].T @ a[:n_train] + 1e-2 * torch.eye(a.shape[1], dtype=a.dtype),
                           a[:n_train].T @ y[:n_train])
    pred, truth = a[n_train:] @ w, y[n_train:]
    return float(1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())


def train(variant: str, args, train_set, val: torch.Tensor, probe: torch.Tensor) -> dict:
    from tqdm.auto import tqdm

    model = build(args.tokens, args.seed)
    r2_init = layout_r2(model, probe, variant, args.probe_train)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    curve, t0 = [], time.perf_counter()
    for step in tqdm(range(args.steps + 1), desc=variant, dynamic_ncols=True):
        if step % args.eval_every == 0:
            model.eval()
            with torch.no_grad():
                curve.append((step, psnr(reconstruct(model, val, variant), val)))
            model.train()
        if step == args.steps:
            break
        idx = torch.randint(0, len(train_set), (args.batch,), generator=g)
        x = torch.stack([train_set[int(i)]["video"] for i in idx])
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)
        loss = F.mse_loss(reconstruct(model, x, variant), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        shown = reconstruct(model, val[:8], variant).clamp(-1, 1)
    return {
        "curve": curve,
        "final_psnr": curve[-1][1],
        "layout_r2_init": r2_init,
        "layout_r2_trained": layout_r2(model, probe, variant, args.probe_train),
        "seconds": time.perf_counter() - t0,
        "_shown": shown,
    }


def plot(results: dict, flat: float, val: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(11, 4.2))
    ax = fig.add_axes([0.06, 0.13, 0.36, 0.78])
    for name, r in results.items():
        s, p = zip(*r["curve"])
        ax.plot(s, p, marker="o", ms=3, label=f"{name} tokens")
    ax.axhline(flat, color="k", ls="--", lw=1, label="flat: each clip's mean colour")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title("micro autoencoders, same blocks, MSE")
    ax.legend(fontsize=8)

    def strip(v: torch.Tensor) -> np.ndarray:  # middle frame of 8 clips side by side
        f = v[:8, :, v.shape[2] // 2].permute(0, 2, 3, 1).add(1).mul(127.5).clamp(0, 255).byte().numpy()
        return np.concatenate(list(f), axis=1)

    rows = [("input", strip(val))] + [(f"{k}", strip(r["_shown"])) for k, r in results.items()]
    for i, (label, img) in enumerate(rows):
        a = fig.add_axes([0.47, 0.66 - i * 0.27, 0.52, 0.25])
        a.imshow(img, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        a.set_ylabel(label, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tokens", type=int, default=16, help="holistic query tokens (LARP's N)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-train", type=int, default=1000)
    ap.add_argument("--name", default="plateau_cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)

    from larp_lab.data.synthetic import SyntheticVideos

    train_set = SyntheticVideos(num_clips=100_000, frames=8, size=32, seed=args.seed)
    held = SyntheticVideos(num_clips=args.probe_train + 200 + 32, frames=8, size=32, seed=args.seed + 10_000)
    val = torch.stack([held[i]["video"] for i in range(32)])
    probe = torch.stack([held[32 + i]["video"] for i in range(args.probe_train + 200)])
    flat = psnr(val.mean(dim=(2, 3, 4), keepdim=True).expand_as(val), val)

    results = {v: train(v, args, train_set, val, probe) for v in VARIANTS}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, flat, val, args.out / f"{args.name}.png")
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "flat_mean_colour_psnr": flat,
        "variants": {k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")} for k, r in results.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"flat (mean colour) PSNR {flat:.2f} dB")
    print(f"{'tokens':10s} {'PSNR':>7s} {'layout R2 init':>15s} {'trained':>8s} {'seconds':>8s}")
    for k, r in results.items():
        print(f"{k:10s} {r['final_psnr']:7.2f} {r['layout_r2_init']:15.3f} {r['layout_r2_trained']:8.3f} "
              f"{r['seconds']:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
