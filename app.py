"""larp_lab in the browser: reconstruct clips, generate class-conditional videos, predict the future,
and look inside LARP's tokens.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--tokenizer NAME|DIR|REPO_ID]
                  [--generator ...] [--predictor ...] [--device cpu]

Models: bundled names (checkpoints/), checkpoint directories, official Hub repo ids (e.g.
hywang66/LARP-L-long-tokenizer, -AR, -AR-FP) or untrained:<preset>. API endpoints:
``/reconstruct`` (a video file in; the reconstruction MP4 and metrics out) and ``/generate``
(class, CFG scale, temperature, top-k, top-p, seed in; an MP4 out).

This file is the UI only: the handlers live in ``larp_lab.demo``, the figures in ``larp_lab.viz``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

# Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR, read when gradio is imported. Unless
# the user chose one, a running app gets a private one, removed at exit like the app's work directory,
# so a stopped app leaves no files behind and two apps never delete each other's files.
if __name__ == "__main__" and "GRADIO_TEMP_DIR" not in os.environ:
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="larp_lab_gradio_")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], True)

import gradio as gr  # noqa: E402

from larp_lab.data.video import VideoError  # noqa: E402
from larp_lab.demo import explore, handlers  # noqa: E402
from larp_lab.demo.models import ModelHub, default_choices, label  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
MAX_UPLOAD = "200mb"


def _guard(fn):
    """Turn bad input into a visible gr.Error (one sentence); the app keeps serving."""

    def wrapped(*args):
        try:
            return fn(*args)
        except (ValueError, VideoError, OSError, KeyError) as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            for a in args:  # show an upload by its name, not by the server's temporary path
                if isinstance(a, str) and len(a) > 1 and a in msg:
                    msg = msg.replace(a, Path(a).name)
            raise gr.Error(msg) from None

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def example_clips() -> list[str]:
    return [str(p) for p in sorted(EXAMPLES.glob("*.mp4"))]


def build_app(hub: ModelHub, choices: dict[str, list[str]], ws: handlers.Workspace) -> gr.Blocks:
    if not choices["tokenizer"]:
        raise ValueError("no tokenizer: pass --tokenizer (a directory, a Hub repo id or untrained:<preset>)")
    tok0 = hub.tokenizer(choices["tokenizer"][0])  # fail fast, and warm up
    explore.warm_up(tok0)  # the codebook UMAP for the Explore tab, in the background
    gen_names, pred_names = choices["generator"], choices["predictor"]
    class_names: list[str] = []
    if gen_names:
        g = hub.generator(gen_names[0])
        class_names = list(g.config.class_names or [str(i) for i in range(g.config.num_classes)])
    cfg = tok0.config

    # -------------------------------------------------------------------------------- handlers
    @_guard
    def on_reconstruct(tok_name, gen_name, path):
        r = handlers.reconstruct(hub, ws, tok_name, path)
        figs = explore.reconstruction_figures(r)
        state = {"indices": r["indices"].tolist(), "video": r["video"], "tokenizer": tok_name}
        return (str(r["side_by_side"]), r["metrics"], figs["psnr"], figs["tokens"],
                [str(r["reconstruction"]), str(r["tokens_npy"]), str(r["tokens_json"])], state,
                gr.update(maximum=len(state["indices"]), value=len(state["indices"])))

    @_guard
    def on_prefix(tok_name, gen_name, state, k, method):
        if not state:
            raise ValueError("Reconstruct a clip first.")
        r = handlers.reconstruct_from_prefix(hub, ws, tok_name, gen_name, state["indices"], state["video"], k, method)
        return str(r["video"]), r["metrics"]

    @_guard
    def api_reconstruct(video):
        """Reconstruct a clip: returns the reconstruction (MP4) and metrics."""
        r = handlers.reconstruct(hub, ws, choices["tokenizer"][0], video)
        return str(r["reconstruction"]), {**r["metrics"], "per_frame_psnr_db": [round(v, 3) for v in r["per_frame_psnr"]],
                                           "tokens": r["indices"].tolist()}

    @_guard
    def on_generate(tok_name, gen_name, class_name, n, cfg_scale, temperature, top_k, top_p, seed):
        if not gen_name:
            raise ValueError("No generator is loaded (pass --generator).")
        r = handlers.generate(hub, ws, tok_name, gen_name, class_name, n, cfg_scale, temperature, top_k, top_p, seed)
        gallery = [(str(s.path), f"{r['info']['class']} #{i}: {s.mean_nll:.2f} nats/token")
                   for i, s in enumerate(r["samples"])]
        return gallery, explore.likelihood_figure(r["samples"]), r["info"]

    @_guard
    def api_generate(class_name, cfg_scale, temperature, top_k, top_p, seed):
        """Generate one clip of a class: returns an MP4."""
        if not gen_names:
            raise ValueError("No generator is loaded (pass --generator).")
        r = handlers.generate(hub, ws, choices["tokenizer"][0], gen_names[0], class_name, 1, cfg_scale, temperature,
                              top_k, top_p, seed)
        return str(r["samples"][0].path)

    @_guard
    def on_predict(tok_name, pred_name, path, cond_frames, seed):
        if not pred_name:
            raise ValueError("No frame-prediction model is loaded (pass --predictor).")
        r = handlers.predict(hub, ws, tok_name, pred_name, path, cond_frames, seed)
        return str(r["video"]), r["metrics"], explore.per_frame_figure(r["per_frame_psnr"], int(cond_frames))

    @_guard
    def on_explore(tok_name, path, query, layer, head):
        r = explore.explore_clip(hub, ws, tok_name, path, int(query), int(layer), None if head == "mean" else int(head))
        return str(r["overlay"]), r["heatmap"], r["surprisal"], r["umap"], r["info"]

    # -------------------------------------------------------------------------------- layout
    with gr.Blocks(title="larp_lab: LARP video tokenizer", delete_cache=(900, 1800)) as demo:
        gr.Markdown(
            "# larp_lab: look inside LARP\n"
            f"Tokenizer **{label(choices['tokenizer'][0])}**: {cfg.frame_num} frames of {cfg.input_size}x"
            f"{cfg.input_size} -> **{cfg.num_tokens} holistic tokens** from a codebook of {cfg.codebook_size}."
        )
        with gr.Row():
            tok_dd = gr.Dropdown(choices["tokenizer"], value=choices["tokenizer"][0], label="Tokenizer")
            gen_dd = gr.Dropdown(gen_names, value=gen_names[0] if gen_names else None, label="Generator")
            pred_dd = gr.Dropdown(pred_names, value=pred_names[0] if pred_names else None, label="Frame predictor")
        state = gr.State(None)
        with gr.Tab("Reconstruct"):
            with gr.Row():
                inp = gr.Video(label="Clip (upload, webcam or example)", sources=["upload", "webcam"])
                both = gr.Video(label="Original | reconstruction", autoplay=True, loop=True, elem_id="rec_out")
            go = gr.Button("Reconstruct", variant="primary", elem_id="rec_btn")
            gr.Examples(example_clips(), inputs=[inp], label="Example (Big Buck Bunny, CC-BY 3.0 Blender Foundation)")
            with gr.Row():
                metrics = gr.JSON(label="Metrics")
                psnr_plot = gr.Image(label="PSNR per frame", type="numpy")
            tokens_plot = gr.Image(label="The clip's token ids (in order)", type="numpy")
            files = gr.File(label="Downloads: reconstruction (MP4), tokens (.npy, .json)", file_count="multiple")
            gr.Markdown("### Token order: decode from the first k tokens only, the rest filled in by a model")
            with gr.Row():
                k = gr.Slider(1, cfg.num_tokens, value=cfg.num_tokens, step=1, label="k (tokens kept)")
                method = gr.Radio(["prior", "generator"], value="prior", label="Completed by")
                go_k = gr.Button("Decode from k tokens")
            with gr.Row():
                prefix_video = gr.Video(label="From the first k tokens", autoplay=True, loop=True)
                prefix_metrics = gr.JSON(label="Prefix metrics")
            go.click(on_reconstruct, [tok_dd, gen_dd, inp],
                     [both, metrics, psnr_plot, tokens_plot, files, state, k], api_visibility="private")
            go_k.click(on_prefix, [tok_dd, gen_dd, state, k, method], [prefix_video, prefix_metrics],
                       api_visibility="private")
        with gr.Tab("Generate"):
            with gr.Row():
                cls = gr.Dropdown(class_names, value=class_names[0] if class_names else None, label="Class")
                n = gr.Slider(1, 8, value=4, step=1, label="Samples")
                seed = gr.Number(0, precision=0, label="Seed")
            with gr.Row():
                cfg_scale = gr.Slider(0.0, 5.0, value=1.5, step=0.05, label="CFG scale")
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature (0 = greedy)")
                top_k = gr.Slider(0, 1024, value=0, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, label="Top-p")
            go_g = gr.Button("Generate", variant="primary", elem_id="gen_btn")
            gallery = gr.Gallery(label="Samples (mean NLL per token)", columns=4, elem_id="gallery")
            with gr.Row():
                ll_plot = gr.Image(label="Surprisal of each token under the generator (bits)", type="numpy")
                gen_info = gr.JSON(label="Sampling")
            go_g.click(on_generate, [tok_dd, gen_dd, cls, n, cfg_scale, temperature, top_k, top_p, seed],
                       [gallery, ll_plot, gen_info], api_visibility="private")
        with gr.Tab("Predict"):
            with gr.Row():
                p_inp = gr.Video(label="Clip", sources=["upload"])
                p_out = gr.Video(label="Truth | prediction", autoplay=True, loop=True)
            with gr.Row():
                cond = gr.Slider(1, cfg.frame_num - 1, value=min(5, cfg.frame_num - 1), step=1,
                                 label="Conditioning frames")
                p_seed = gr.Number(0, precision=0, label="Seed")
                go_p = gr.Button("Predict", variant="primary")
            gr.Examples(example_clips(), inputs=[p_inp])
            with gr.Row():
                p_metrics = gr.JSON(label="Prediction vs. repeating the last frame")
                p_plot = gr.Image(label="PSNR per frame", type="numpy")
            go_p.click(on_predict, [tok_dd, pred_dd, p_inp, cond, p_seed], [p_out, p_metrics, p_plot],
                       api_visibility="private")
        with gr.Tab("Explore"):
            with gr.Row():
                e_inp = gr.Video(label="Clip", sources=["upload"])
                e_overlay = gr.Video(label="Where the query looks (attention over the frames)", autoplay=True,
                                     loop=True)
            with gr.Row():
                query = gr.Slider(0, cfg.num_tokens - 1, value=0, step=1, label="Query token")
                layer = gr.Slider(0, cfg.encoder_depth - 1, value=cfg.encoder_depth - 1, step=1, label="Encoder layer")
                head = gr.Dropdown(["mean"] + [str(h) for h in range(cfg.encoder_num_heads)], value="mean",
                                   label="Head")
                go_e = gr.Button("Explore", variant="primary")
            gr.Examples(example_clips(), inputs=[e_inp])
            heat = gr.Image(label="Attention of the query over the patch grid, frame by frame", type="numpy")
            surprisal = gr.Image(label="Surprisal of each token under the prior", type="numpy")
            umap = gr.Plot(label="The clip's tokens in a UMAP of the codebook")
            e_info = gr.JSON(label="Summary")
            go_e.click(on_explore, [tok_dd, e_inp, query, layer, head], [e_overlay, heat, surprisal, umap, e_info],
                       api_visibility="private")
        def on_tokenizer_change(tok_name):
            c = hub.tokenizer(tok_name).config
            return (gr.update(maximum=c.num_tokens, value=c.num_tokens), gr.update(maximum=c.num_tokens - 1, value=0),
                    gr.update(maximum=c.encoder_depth - 1, value=c.encoder_depth - 1),
                    gr.update(choices=["mean"] + [str(h) for h in range(c.encoder_num_heads)], value="mean"),
                    gr.update(maximum=c.frame_num - 1, value=min(5, c.frame_num - 1)), None)

        tok_dd.change(_guard(on_tokenizer_change), [tok_dd], [k, query, layer, head, cond, state],
                      api_visibility="private")

        # API endpoints with exactly the documented signatures (hidden components carry the files)
        with gr.Column(visible=False):
            a_in = gr.Video(label="video")
            a_out, a_metrics = gr.Video(label="reconstruction"), gr.JSON(label="metrics")
            a_btn = gr.Button("api reconstruct")
            a_btn.click(api_reconstruct, [a_in], [a_out, a_metrics], api_name="reconstruct")
            g_cls = gr.Textbox(label="class")
            g_cfg, g_temp = gr.Number(label="cfg_scale"), gr.Number(label="temperature")
            g_k, g_p, g_seed = gr.Number(label="top_k", precision=0), gr.Number(label="top_p"), gr.Number(
                label="seed", precision=0)
            g_out = gr.Video(label="video")
            g_btn = gr.Button("api generate")
            g_btn.click(api_generate, [g_cls, g_cfg, g_temp, g_k, g_p, g_seed], [g_out], api_name="generate")
        gr.Markdown(
            "LARP: Wang et al., ICLR 2025 ([arXiv:2410.21264](https://arxiv.org/abs/2410.21264)); official code "
            "[hywang66/LARP](https://github.com/hywang66/LARP) (MIT). Example clip: Big Buck Bunny (c) 2008 Blender "
            "Foundation, CC-BY 3.0. Made with [larp_lab](https://github.com/)."
        )
    return demo


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="larp_lab app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio link (off unless asked)")
    p.add_argument("--tokenizer", default=None, help="bundled name, directory, Hub repo id or untrained:<preset>")
    p.add_argument("--generator", default=None, help="class-conditional generator (same forms)")
    p.add_argument("--predictor", default=None, help="frame-prediction generator (same forms)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-concurrency", type=int, default=2, help="requests processed at once")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most (then 'queue full')")
    args = p.parse_args(argv)
    import torch

    ws = handlers.Workspace()
    atexit.register(ws.clear)
    # `kill` / `docker stop` (SIGTERM) stop the app like Ctrl-C: the server closes, then the atexit
    # handlers remove the work directories (the default SIGTERM action would skip them)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        hub = ModelHub(torch.device(args.device))
        demo = build_app(hub, default_choices(args.tokenizer, args.generator, args.predictor), ws)
    except Exception as exc:  # missing weights, bad directory: one line, exit 2
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    demo.queue(default_concurrency_limit=args.max_concurrency, max_size=args.max_queue).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
        allowed_paths=[str(EXAMPLES)], show_error=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
