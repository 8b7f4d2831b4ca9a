"""larp_lab in the browser: reconstruct clips, generate class-conditional videos, predict the future,
and look inside LARP's tokens.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--tokenizer NAME|DIR|REPO_ID]
                  [--generator ...] [--predictor ...] [--device cpu] [--checkpoints DIR]

Models: bundled names (checkpoints/), checkpoint directories, official Hub repo ids (e.g.
hywang66/LARP-L-long-tokenizer, -AR, -AR-FP) or untrained:<preset>. API endpoints:
``/reconstruct`` (a video file in; the reconstruction MP4 and metrics out), ``/generate``
(class, CFG scale, temperature, top-k, top-p, seed in; an MP4 out), ``/edit_tokens``, ``/swap_tokens``,
``/token_influence`` (token surgery) and ``/snapshots`` (a training snapshot's numbers and pictures).

This file is the UI layout and wiring only: the handlers live in ``larp_lab.app`` (calling
``larp_lab.pipelines``), the figures in ``larp_lab.viz``.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

# Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR, read when gradio is imported. Unless
# the user chose one, a running app gets a private one, removed at exit like the app's work directory,
# so a stopped app leaves no files behind and two apps never delete each other's files.
if __name__ == "__main__" and "GRADIO_TEMP_DIR" not in os.environ:
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="larp_lab_gradio_")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], True)

import gradio as gr  # noqa: E402

from larp_lab import __version__, viz  # noqa: E402
from larp_lab.analysis import parse_edits, parse_positions  # noqa: E402
from larp_lab.app import figures, handlers, surgery  # noqa: E402
from larp_lab.app import snapshots as snap_app  # noqa: E402  (the Training tab)
from larp_lab.app.cache import ModelCache, default_choices, label  # noqa: E402
from larp_lab.app.examples import example_clips, examples_label, training_note  # noqa: E402
from larp_lab.bundled import DATA_NAMES, training_data  # noqa: E402
from larp_lab.data.video import VideoError  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
MAX_UPLOAD = "200mb"
#: Gradio's cache of uploads and served files: every 15 minutes, the files older than 30 minutes are deleted
DELETE_CACHE = (900, 1800)
#: sessions kept in memory. Gradio keeps a session for every page visit *and every API call* (its own copy of
#: the page's configuration, ~0.4 MB here, plus the tab's state: a clip and its tokens), by default 10,000
#: of them: measured on the bundled models, each 150 API calls grew the server by ~58 MB, without end
#: (~4 GB at 10,000; benchmarks/soak.py found it). The oldest session is dropped first; its tab then asks
#: for the clip again ("Reconstruct a clip first.").
MAX_SESSIONS = 100
VIDEO_H = 300  #: px: video boxes keep this height whatever the clip's size (a 64x64 clip would fill the width)
MENU_W = 260  #: px: the model menus take a line each on a phone rather than being squeezed side by side
#: the samples gallery: no empty band under one row of samples; two columns on a phone (four do not fit)
CSS = """
#gallery .fixed-height { min-height: 0; }
@media (max-width: 600px) { #gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
"""


def _guard(fn):
    """Turn bad input into a visible gr.Error (one sentence); the app keeps serving. TypeError and
    OverflowError are bad input too: Gradio passes some malformed API values through to the handler
    unchecked (a list for a number, an infinite number where an integer is expected)."""

    @functools.wraps(fn)  # keeps the signature: Gradio passes gr.SelectData by its annotation
    def wrapped(*args):
        try:
            return fn(*args)
        except (ValueError, TypeError, OverflowError, VideoError, OSError, KeyError) as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            for a in args:  # show an upload by its name, not by the server's temporary path
                if isinstance(a, str) and len(a) > 1 and a in msg:
                    msg = msg.replace(a, Path(a).name)
            raise gr.Error(msg) from None

    return wrapped


def build_app(models: ModelCache, choices: dict[str, list[str]], ws: handlers.Workspace) -> gr.Blocks:
    if not choices["tokenizer"]:
        raise ValueError("no tokenizer: pass --tokenizer (a directory, a Hub repo id or untrained:<preset>)")
    tok0 = models.tokenizer(choices["tokenizer"][0])  # fail fast, and warm up
    figures.warm_up(tok0)  # the codebook UMAP for the Explore tab, in the background
    gen_names, pred_names = choices["generator"], choices["predictor"]
    classes = handlers.generator_classes(models, gen_names[0]) if gen_names else {"names": [], "data": None}
    class_names: list[str] = classes["names"]
    cfg = tok0.config
    data0 = training_data(choices["tokenizer"][0])  # what the first tokenizer was trained on (config.json)
    examples = example_clips(EXAMPLES, data0)  # its kind of clip first, then real footage

    def tokens_note(c) -> str:
        """What a patch-token tokenizer's tokens are (the baseline of notebook 09, issue 19); "" for LARP's."""
        if getattr(c, "token_mode", "holistic") != "patch":
            return ""
        t, h, w = c.patch_grid
        return (f"**Patch tokens**: token i is the encoder's output at patch i ({c.temporal_patch_size} frames "
                f"x {c.patch_size}x{c.patch_size} pixels; a {t}x{h}x{w} grid in raster order), not a learned "
                "query: the baseline LARP is compared with (notebook 09). Generate and Predict need the "
                "holistic tokenizer; Explore shows where each patch token looks.")

    def saw(used: str, trained_on: str | None, tok_name: str | None = None) -> str:
        notes = [n for n in (tokens_note(models.tokenizer(tok_name).config) if tok_name else "",
                             training_note(trained_on)) if n]
        return f"**The model saw:** {used}" + "".join(f"\n\n{n}" for n in notes)

    # -------------------------------------------------------------------------------- handlers
    @_guard
    def on_reconstruct(tok_name, gen_name, path, start):
        r = handlers.reconstruct(models, ws, tok_name, path, start)
        res = r["result"]
        figs = figures.reconstruction_figures(res)
        state = {"indices": res.tokens[0].tolist(), "video": res.original, "tokenizer": tok_name}
        return (str(r["side_by_side"]), saw(r["used"], r["trained_on"], tok_name), r["metrics"], figs["psnr"], figs["tokens"],
                [str(r["reconstruction"]), str(r["tokens_npy"]), str(r["tokens_json"])], state,
                gr.update(maximum=len(state["indices"]), value=len(state["indices"])))

    @_guard
    def on_prefix(tok_name, gen_name, state, k, method):
        if not state:
            raise ValueError("Reconstruct a clip first.")
        r = handlers.reconstruct_from_prefix(models, ws, tok_name, gen_name, state["indices"], state["video"], k,
                                             method)
        return str(r["video"]), r["metrics"]

    @_guard
    def api_reconstruct(video):
        """Reconstruct a clip: returns the reconstruction (MP4) and metrics."""
        r = handlers.reconstruct(models, ws, choices["tokenizer"][0], video)
        res = r["result"]
        return str(r["reconstruction"]), {**r["metrics"],
                                           "per_frame_psnr_db": [round(v, 3) for v in res.metrics["per_frame_psnr_db"]],
                                           "tokens": res.tokens[0].tolist(), "used": r["used"],
                                           "trained_on": r["trained_on"]}

    @_guard
    def api_edit_tokens(video, edits):
        """Edit a clip's tokens ("3:17, 5:200" = position:code): original | edited | difference (MP4) and numbers."""
        name = choices["tokenizer"][0]
        c = models.tokenizer(name).config
        clip = surgery.tokenize(models, name, video)
        r = surgery.edit(models, ws, name, clip, parse_edits(edits, c.num_tokens, c.codebook_size))
        return str(r["video"]), {**r["info"], "tokens": clip.indices, "edited_tokens": r["indices"]}

    @_guard
    def api_swap_tokens(video_a, video_b, positions, method, layer):
        """Clip A with clip B's tokens ("tokens") or encoder query outputs ("queries", at ``layer``) at
        ``positions`` ("0-7, 12" or "all"): A | B | patched (MP4) and what moved."""
        name = choices["tokenizer"][0]
        a = surgery.tokenize(models, name, video_a)
        b = surgery.tokenize(models, name, video_b)
        r = surgery.swap(models, ws, name, a, b, parse_positions(positions, len(a.indices)),
                         (method or "tokens").strip(), int(layer if layer is not None else -1))
        return str(r["video"]), r["info"]

    @_guard
    def api_token_influence(video, num_codes):
        """Every token's influence map (a mosaic image, token order row-major) and per-token numbers."""
        name = choices["tokenizer"][0]
        clip = surgery.tokenize(models, name, video)
        r = surgery.influence(models, name, clip, int(num_codes or 4))
        inf = clip.influence
        return r["mosaic"], {**r["info"], "tokens": clip.indices,
                             "strength": [round(float(v), 5) for v in inf.strength()]}

    @_guard
    def on_generate(tok_name, gen_name, class_name, n, cfg_scale, temperature, top_k, top_p, seed):
        if not gen_name:
            raise ValueError("No generator is loaded (pass --generator).")
        r = handlers.generate(models, ws, tok_name, gen_name, class_name, n, cfg_scale, temperature, top_k, top_p,
                              seed)
        gallery = [(str(p), f"{r['info']['class']} #{i}: {nll:.2f} nats/token")
                   for i, (p, nll) in enumerate(zip(r["paths"], r["info"]["mean_nll_per_token"]))]
        return gallery, figures.likelihood_figure(r["result"].log_likelihood), r["info"]

    @_guard
    def api_generate(class_name, cfg_scale, temperature, top_k, top_p, seed):
        """Generate one clip of a class: returns an MP4."""
        if not gen_names:
            raise ValueError("No generator is loaded (pass --generator).")
        r = handlers.generate(models, ws, choices["tokenizer"][0], gen_names[0], class_name, 1, cfg_scale,
                              temperature, top_k, top_p, seed)
        return str(r["paths"][0])

    @_guard
    def on_predict(tok_name, pred_name, path, start, cond_frames, seed):
        if not pred_name:
            raise ValueError("No frame-prediction model is loaded (pass --predictor).")
        r = handlers.predict(models, ws, tok_name, pred_name, path, cond_frames, seed, start)
        return (str(r["video"]), saw(r["used"], r["trained_on"], tok_name), r["metrics"],
                figures.per_frame_figure(r["per_frame_psnr"], int(cond_frames)))

    @_guard
    def on_explore(tok_name, path, start, query, layer, head):
        r = handlers.explore(models, ws, tok_name, path, int(query), int(layer),
                             None if head == "mean" else int(head), start)
        return (str(r["overlay"]), saw(r["used"], r["trained_on"], tok_name), r["heatmap"], r["surprisal"], r["umap"],
                r["info"])

    # -------------------------------------------------------------------------------- layout
    def sees_text(c, trained_on: str | None) -> str:
        note = "\n\n".join(n for n in (tokens_note(c), training_note(trained_on)) if n)
        return (f"The model sees {c.frame_num} frames from the start time, at a {c.input_size}x{c.input_size} "
                "centre crop (the short side resized first)." + (f"\n\n{note}" if note else ""))

    sees = sees_text(cfg, handlers.trained_on(models, choices["tokenizer"][0]))

    def clip_input(label: str, elem: str, sources=("upload",)):
        """A video input with its start-time box (elem_id ``<elem>_start``)."""
        v = gr.Video(label=label, sources=list(sources), height=VIDEO_H, elem_id=f"{elem}_in")
        t = gr.Number(0, minimum=0, label="Start at (seconds into the clip)", elem_id=f"{elem}_start")
        return v, t

    def result_video(label: str, elem: str):
        """A result video and the line saying what the model saw (elem_id ``<elem>_used``)."""
        v = gr.Video(label=label, autoplay=True, loop=True, height=VIDEO_H, elem_id=f"{elem}_out")
        used = gr.Markdown(sees, elem_id=f"{elem}_used")
        return v, used

    def figure(label: str, component, **kw):
        """A figure under a caption of its own (Gradio's floating label would hide the figure's title)."""
        gr.Markdown(f"**{label}**", elem_classes=["fig-caption"])
        return component(show_label=False, **kw)

    with gr.Blocks(title="larp_lab: LARP video tokenizer", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# larp_lab: look inside LARP\n"
            f"Tokenizer **{label(choices['tokenizer'][0])}**: {cfg.frame_num} frames of {cfg.input_size}x"
            f"{cfg.input_size} -> **{cfg.num_tokens} holistic tokens** from a codebook of {cfg.codebook_size}. "
            "Uploads: the model sees only its frames from the start time you give, at a centre crop; each "
            "result says what it saw."
            + (f" It was trained on **{DATA_NAMES.get(data0, data0)}** only ({cfg.input_size}x{cfg.input_size}, "
               f"{cfg.frame_num} frames): try the examples of that kind first; real footage comes back poorly."
               if data0 else ""),
            elem_id="header",
        )
        with gr.Row():
            tok_dd = gr.Dropdown(choices["tokenizer"], value=choices["tokenizer"][0], label="Tokenizer",
                                 min_width=MENU_W, elem_id="tok_dd")
            gen_dd = gr.Dropdown(gen_names, value=gen_names[0] if gen_names else None, label="Generator",
                                 min_width=MENU_W)
            pred_dd = gr.Dropdown(pred_names, value=pred_names[0] if pred_names else None, label="Frame predictor",
                                  min_width=MENU_W)
        state = gr.State(None)
        with gr.Tab("Reconstruct"):
            with gr.Row():
                with gr.Column():
                    inp, start = clip_input("Clip (upload, webcam or example)", "rec", ("upload", "webcam"))
                with gr.Column():
                    both, used = result_video("Original | reconstruction", "rec")
            go = gr.Button("Reconstruct", variant="primary", elem_id="rec_btn")
            gr.Examples(examples, inputs=[inp], label=examples_label(data0), elem_id="rec_examples")
            with gr.Row():
                metrics = gr.JSON(label="Metrics")
                with gr.Column():
                    psnr_plot = figure("PSNR per frame", gr.Image, type="numpy", elem_id="rec_psnr")
            tokens_plot = figure("The clip's token ids, in order (hover a cell for its id)", gr.Plot,
                                 elem_id="rec_tokens")
            files = gr.File(label="Downloads: reconstruction (MP4), tokens (.npy, .json)", file_count="multiple")
            gr.Markdown("### Token order: decode from the first k tokens only, the rest filled in by a model")
            with gr.Row():
                k = gr.Slider(1, cfg.num_tokens, value=cfg.num_tokens, step=1, label="k (tokens kept)")
                method = gr.Radio(["prior", "generator"], value="prior", label="Completed by")
                go_k = gr.Button("Decode from k tokens", elem_id="prefix_btn")
            with gr.Row():
                prefix_video = gr.Video(label="From the first k tokens", autoplay=True, loop=True, height=VIDEO_H,
                                        elem_id="prefix_out")
                prefix_metrics = gr.JSON(label="Prefix metrics", elem_id="prefix_metrics")
            go.click(on_reconstruct, [tok_dd, gen_dd, inp, start],
                     [both, used, metrics, psnr_plot, tokens_plot, files, state, k], api_visibility="private")
            go_k.click(on_prefix, [tok_dd, gen_dd, state, k, method], [prefix_video, prefix_metrics],
                       api_visibility="private")
        with gr.Tab("Generate"):
            gen_text = gr.Markdown(generate_text(gen_names[0] if gen_names else None, classes),
                                   elem_id="gen_classes")
            with gr.Row():
                cls = gr.Dropdown(class_names, value=class_names[0] if class_names else None, label="Class",
                                  min_width=MENU_W)
                n = gr.Slider(1, 8, value=4, step=1, label="Samples")
                seed = gr.Number(0, precision=0, label="Seed")
            with gr.Row():
                cfg_scale = gr.Slider(0.0, 5.0, value=1.5, step=0.05, label="CFG scale")
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature (0 = greedy)")
                top_k = gr.Slider(0, 1024, value=0, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, label="Top-p")
            go_g = gr.Button("Generate", variant="primary", elem_id="gen_btn")
            gallery = gr.Gallery(label="Samples (mean NLL per token)", columns=4, height="auto", elem_id="gallery")
            ll_plot = figure("Surprisal of each token under the generator (bits; one row per sample)", gr.Image,
                             type="numpy", elem_id="gen_surprisal")
            gen_info = gr.JSON(label="Sampling")
            go_g.click(on_generate, [tok_dd, gen_dd, cls, n, cfg_scale, temperature, top_k, top_p, seed],
                       [gallery, ll_plot, gen_info], api_visibility="private")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column():
                    p_inp, p_start = clip_input("Clip", "pred")
                with gr.Column():
                    p_out, p_used = result_video("Truth | prediction", "pred")
            with gr.Row():
                cond = gr.Slider(1, cfg.frame_num - 1, value=min(5, cfg.frame_num - 1), step=1,
                                 label="Conditioning frames")
                p_seed = gr.Number(0, precision=0, label="Seed")
                go_p = gr.Button("Predict", variant="primary", elem_id="pred_btn")
            gr.Examples(examples, inputs=[p_inp], label=examples_label(data0))
            with gr.Row():
                p_metrics = gr.JSON(label="Prediction vs. repeating the last frame")
                with gr.Column():
                    p_plot = figure("PSNR per frame (conditioning frames shaded)", gr.Image, type="numpy",
                                    elem_id="pred_psnr")
            go_p.click(on_predict, [tok_dd, pred_dd, p_inp, p_start, cond, p_seed], [p_out, p_used, p_metrics, p_plot],
                       api_visibility="private")
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column():
                    e_inp, e_start = clip_input("Clip", "exp")
                with gr.Column():
                    e_overlay, e_used = result_video("Where the query looks (attention over the frames)", "exp")
            with gr.Row():
                query = gr.Slider(0, last_index(cfg.num_tokens), value=0, step=1, label="Query token",
                                  interactive=cfg.num_tokens > 1)
                layer = gr.Slider(0, last_index(cfg.encoder_depth), value=cfg.encoder_depth - 1, step=1,
                                  label="Encoder layer", interactive=cfg.encoder_depth > 1)
                head = gr.Dropdown(["mean"] + [str(h) for h in range(cfg.encoder_num_heads)], value="mean",
                                   label="Head")
                go_e = gr.Button("Explore", variant="primary", elem_id="exp_btn")
            gr.Examples(examples, inputs=[e_inp], label=examples_label(data0))
            heat = figure("Attention of the query over the patch grid, frame by frame", gr.Image, type="numpy",
                          elem_id="exp_heat")
            surprisal = figure("Surprisal of each token under the prior (bits)", gr.Image, type="numpy",
                               elem_id="exp_surprisal")
            umap = figure("The clip's tokens in a UMAP of the codebook", gr.Plot, elem_id="exp_umap")
            e_info = gr.JSON(label="Summary")
            go_e.click(on_explore, [tok_dd, e_inp, e_start, query, layer, head],
                       [e_overlay, e_used, heat, surprisal, umap, e_info], api_visibility="private")
        # ---------------------------------------------------------------- token surgery (issue 19)
        with gr.Tab("Surgery"):
            gr.Markdown(surgery.NOTICE, elem_id="sur_notice")
            sur_a, sur_b = gr.State(None), gr.State(None)
            with gr.Row():
                with gr.Column():
                    s_inp, s_start = clip_input("Clip A (the one to edit)", "sur")
                    s_go = gr.Button("Tokenize clip A", variant="primary", elem_id="sur_btn")
                with gr.Column():
                    s_grid = figure("Its tokens: click a cell to pick a position", gr.Image, type="numpy",
                                    elem_id="sur_grid", interactive=False)
            gr.Examples(examples, inputs=[s_inp], label=examples_label(data0))
            with gr.Row():
                s_pos = gr.Number(0, precision=0, minimum=0, label="Position", elem_id="sur_pos", min_width=120)
                s_alt = gr.Dropdown([], label="Code: the prior's top choices here (or type below)",
                                    elem_id="sur_alt", allow_custom_value=True, min_width=MENU_W)
                s_edits = gr.Textbox(label="Edits (position:code, comma separated)", placeholder="3:17, 5:200",
                                     elem_id="sur_edits", min_width=MENU_W)
                s_apply = gr.Button("Decode the edit", variant="primary", elem_id="sur_apply")
            s_out = gr.Video(label="original | edited | difference", autoplay=True, loop=True, height=VIDEO_H,
                             elem_id="sur_out")
            with gr.Row():
                s_energy = figure("How much each frame changed", gr.Image, type="numpy", elem_id="sur_energy")
                s_info = gr.JSON(label="Edit")
            gr.Markdown("**Token influence map**: each token replaced by a few other codes; where the clip moves.")
            with gr.Row():
                s_ncodes = gr.Slider(1, surgery.MAX_INFLUENCE_CODES, value=4, step=1, label="Replacement codes per token")
                s_inf_go = gr.Button("Map every token's influence", elem_id="sur_inf_btn")
            with gr.Row():
                s_mosaic = figure("Where each token acts (one map per token, in grid order; bright = changes)",
                                  gr.Image, type="numpy", elem_id="sur_mosaic", interactive=False)
                with gr.Column():
                    s_frame_t = gr.Slider(0, cfg.frame_num - 1, value=0, step=1, label="Frame")
                    s_frame = figure("Click a pixel: which tokens control it?", gr.Image, type="numpy",
                                     elem_id="sur_frame", interactive=False)
            s_inf_info = gr.JSON(label="Influence")
            gr.Markdown("**Swap between clips**: put clip B's tokens (or its encoder query outputs) into clip A.")
            with gr.Row():
                with gr.Column():
                    s_inp_b, s_start_b = clip_input("Clip B (the donor)", "surb")
                    gr.Examples(examples, inputs=[s_inp_b], label=examples_label(data0))
                with gr.Column():
                    s_positions = gr.Textbox(f"0-{max(cfg.num_tokens // 2 - 1, 0)}", label="Positions to take from B (e.g. 0-7, 12 or all)",
                                             elem_id="sur_positions")
                    s_method = gr.Radio(["tokens", "queries"], value="tokens", label="Swap")
                    s_layer = gr.Slider(0, last_index(cfg.encoder_depth), value=cfg.encoder_depth - 1, step=1,
                                        label="Encoder layer (queries)", interactive=cfg.encoder_depth > 1)
                    s_swap = gr.Button("Swap", variant="primary", elem_id="sur_swap")
            s_swap_out = gr.Video(label="A | B | A with B's positions", autoplay=True, loop=True, height=VIDEO_H,
                                  elem_id="sur_swap_out")
            s_swap_info = gr.JSON(label="What moved")

            @_guard
            def on_tokenize(tok_name, path, start):
                clip = surgery.tokenize(models, tok_name, path, start)
                codes = surgery.alternatives(models, tok_name, clip, 0)
                return (clip, surgery.grid(models, clip, selected=0), gr.update(value=0),
                        gr.update(choices=codes, value=codes[0][1]), "", None)

            @_guard
            def on_pick(tok_name, clip, img, evt: gr.SelectData):
                if clip is None or img is None:
                    raise ValueError("Tokenize a clip first.")
                n = viz.grid_cell_at(evt.index[0], evt.index[1], img.shape, len(clip.indices))
                codes = surgery.alternatives(models, tok_name, clip, n)
                return surgery.grid(models, clip, selected=n), n, gr.update(choices=codes, value=codes[0][1])

            @_guard
            def on_position(tok_name, clip, pos):
                if clip is None:
                    return gr.update(), gr.update()
                n = int(pos or 0)
                codes = surgery.alternatives(models, tok_name, clip, n)
                return surgery.grid(models, clip, selected=n), gr.update(choices=codes, value=codes[0][1])

            def on_code(pos, code, edits):
                if code is None or pos is None:
                    return edits
                kept = [e for e in (edits or "").split(",") if e.strip() and e.split(":")[0].strip() != str(int(pos))]
                return ", ".join([*(e.strip() for e in kept), f"{int(pos)}:{int(str(code).split()[0])}"])

            @_guard
            def on_apply(tok_name, clip, edits):
                if clip is None:
                    raise ValueError("Tokenize a clip first.")
                c = models.tokenizer(tok_name).config
                r = surgery.edit(models, ws, tok_name, clip, parse_edits(edits, c.num_tokens, c.codebook_size))
                return str(r["video"]), r["energy"], r["info"]

            @_guard
            def on_influence(tok_name, clip, ncodes, t):
                r = surgery.influence(models, tok_name, clip, int(ncodes))
                return r["mosaic"], r["grid"], surgery.reconstruction_frame(clip, int(t)), r["info"], clip

            @_guard
            def on_frame(clip, t):
                return surgery.reconstruction_frame(clip, int(t)) if clip is not None else None

            @_guard
            def on_pixel(clip, t, img, evt: gr.SelectData):
                if img is None:
                    raise ValueError("Compute the influence map first.")
                r = surgery.pixel_control(models, clip, int(t), evt.index[0], evt.index[1], img.shape)
                return r["grid"], r["info"]

            @_guard
            def on_swap(tok_name, clip_a, path_b, start_b, positions, method, layer):
                if clip_a is None:
                    raise ValueError("Tokenize clip A first.")
                clip_b = surgery.tokenize(models, tok_name, path_b, start_b)
                n = len(clip_a.indices) if clip_a is not None else 0
                r = surgery.swap(models, ws, tok_name, clip_a, clip_b, parse_positions(positions, n),
                                 method, int(layer))
                return str(r["video"]), r["info"], r["grid"], clip_b

            s_go.click(on_tokenize, [tok_dd, s_inp, s_start], [sur_a, s_grid, s_pos, s_alt, s_edits, s_out],
                       api_visibility="private")
            s_grid.select(on_pick, [tok_dd, sur_a, s_grid], [s_grid, s_pos, s_alt], api_visibility="private")
            s_pos.submit(on_position, [tok_dd, sur_a, s_pos], [s_grid, s_alt], api_visibility="private")
            s_alt.input(on_code, [s_pos, s_alt, s_edits], [s_edits], api_visibility="private")
            s_apply.click(on_apply, [tok_dd, sur_a, s_edits], [s_out, s_energy, s_info], api_visibility="private")
            s_inf_go.click(on_influence, [tok_dd, sur_a, s_ncodes, s_frame_t],
                           [s_mosaic, s_grid, s_frame, s_inf_info, sur_a], api_visibility="private")
            s_frame_t.change(on_frame, [sur_a, s_frame_t], [s_frame], api_visibility="private")
            s_frame.select(on_pixel, [sur_a, s_frame_t, s_frame], [s_grid, s_inf_info], api_visibility="private")
            s_swap.click(on_swap, [tok_dd, sur_a, s_inp_b, s_start_b, s_positions, s_method, s_layer],
                         [s_swap_out, s_swap_info, s_grid, sur_b], api_visibility="private")

        # ---------------------------------------------------------------- training snapshots (issue 19, item 3)
        with gr.Tab("Training") as snap_tab:
            try:
                n_snaps, snap_note = len(snap_app.snapshot_list()), snap_app.INTRO
                snap_app.warm_up(device=models.device)  # measured in the background: the tab answers at once
            except (ValueError, OSError) as exc:  # no snapshots beside the bundled tokenizer: say so
                n_snaps, snap_note = 0, f"No training snapshots to show: {' '.join(str(exc).split())}"
            gr.Markdown(snap_note, elem_id="snap_intro")
            with gr.Row():
                snap_i = gr.Slider(0, last_index(n_snaps), value=max(n_snaps - 1, 0), step=1, elem_id="snap_slider",
                                   label="Snapshot (left: the first; right end: the final model)",
                                   interactive=n_snaps > 1)
                snap_go = gr.Button("Show", variant="primary", elem_id="snap_btn")
            snap_text = gr.Markdown(elem_id="snap_step")
            snap_grid = figure("The same held-out clips: originals, then this snapshot's reconstructions; right: "
                               "where two queries look", gr.Image, type="numpy", elem_id="snap_grid")
            snap_curves = figure("How the latent space forms, step by step (log axis)", gr.Image, type="numpy",
                                 elem_id="snap_curves")
            snap_info = gr.JSON(label="Numbers at this snapshot", elem_id="snap_info")

            @_guard
            def on_scrub(i):
                r = snap_app.scrub(i, device=models.device)
                return r["text"], r["grid"], r["curves"], r["info"]

            @_guard
            def api_snapshots(step):
                """One training snapshot of the bundled tokenizer by its step (-1: the last): its numbers (and
                every snapshot's steps) and its reconstructions and query maps on the same held-out clips."""
                r = snap_app.scrub(snap_app.index_of_step(step, device=models.device), device=models.device)
                return r["info"], r["grid"]

            outs = [snap_text, snap_grid, snap_curves, snap_info]
            for ev in (snap_go.click, snap_tab.select):
                ev(on_scrub, [snap_i], outs, api_visibility="private")
            snap_i.change(on_scrub, [snap_i], outs, api_visibility="private", trigger_mode="always_last",
                          show_progress="minimal")
            with gr.Column(visible=False):
                a_step, a_json, a_img = gr.Number(label="step", precision=0), gr.JSON(label="numbers"), gr.Image(
                    label="snapshot", type="numpy")
                gr.Button("api snapshots").click(api_snapshots, [a_step], [a_json, a_img], api_name="snapshots")

        def on_tokenizer_change(tok_name):
            c = models.tokenizer(tok_name).config
            trained = handlers.trained_on(models, tok_name)
            return (gr.update(maximum=c.num_tokens, value=c.num_tokens),
                    gr.update(maximum=last_index(c.num_tokens), value=0, interactive=c.num_tokens > 1),
                    gr.update(maximum=last_index(c.encoder_depth), value=c.encoder_depth - 1,
                              interactive=c.encoder_depth > 1),
                    gr.update(choices=["mean"] + [str(h) for h in range(c.encoder_num_heads)], value="mean"),
                    gr.update(maximum=c.frame_num - 1, value=min(5, c.frame_num - 1)), None,
                    *[sees_text(c, trained)] * 3)

        def on_generator_change(gen_name):
            if not gen_name:
                return gr.update(choices=[], value=None), generate_text(None, {})
            c = handlers.generator_classes(models, gen_name)
            return gr.update(choices=c["names"], value=c["names"][0]), generate_text(gen_name, c)

        gen_dd.change(_guard(on_generator_change), [gen_dd], [cls, gen_text], api_visibility="private")
        tok_dd.change(_guard(on_tokenizer_change), [tok_dd], [k, query, layer, head, cond, state, used, p_used, e_used],
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
            # token surgery (issue 19): one call each, nothing kept between calls
            e_vid, e_edits = gr.Video(label="video"), gr.Textbox(label="edits")
            e_res, e_json = gr.Video(label="original | edited | difference"), gr.JSON(label="edit")
            gr.Button("api edit_tokens").click(api_edit_tokens, [e_vid, e_edits], [e_res, e_json],
                                               api_name="edit_tokens")
            w_a, w_b, w_pos = gr.Video(label="video_a"), gr.Video(label="video_b"), gr.Textbox(label="positions")
            w_method, w_layer = gr.Textbox(label="method"), gr.Number(label="layer", precision=0)
            w_res, w_json = gr.Video(label="a | b | patched"), gr.JSON(label="what moved")
            gr.Button("api swap_tokens").click(api_swap_tokens, [w_a, w_b, w_pos, w_method, w_layer], [w_res, w_json],
                                               api_name="swap_tokens")
            i_vid, i_codes = gr.Video(label="video"), gr.Number(label="num_codes", precision=0)
            i_img, i_json = gr.Image(label="influence mosaic", type="numpy"), gr.JSON(label="influence")
            gr.Button("api token_influence").click(api_token_influence, [i_vid, i_codes], [i_img, i_json],
                                                   api_name="token_influence")
        gr.Markdown(
            "LARP: Wang et al., ICLR 2025 ([arXiv:2410.21264](https://arxiv.org/abs/2410.21264)); official code "
            "[hywang66/LARP](https://github.com/hywang66/LARP) (MIT). Example clips: moving digits made by larp_lab "
            "from scikit-learn's handwritten digits (UCI, CC BY 4.0); Big Buck Bunny (c) 2008 Blender Foundation, "
            f"CC-BY 3.0. This app is part of larp_lab {__version__} (MIT); the README.md of its repository "
            "describes the kit.",
            elem_id="footer",
        )
    return demo


def _finite(obj):
    """``obj`` with every NaN or infinite float written as text (JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def exception_handlers() -> dict:
    """Two malformed requests that Gradio 6.31 and FastAPI answer with a bare "500 Internal Server Error"
    (found by tests/app_ui/test_app_http.py): a body that fails validation with NaN or infinity in it
    (FastAPI's answer quotes the input and cannot write it as JSON), and a queue request naming an event
    the page does not have (a KeyError in Gradio's queue). Both become a 4xx with a JSON reason."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse

    async def invalid_request(request, exc):
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)

    async def unknown_key(request, exc):
        if request.url.path.rstrip("/").endswith("/queue/join"):
            return JSONResponse({"detail": f"no event {exc} on this page"}, status_code=400)
        traceback.print_exception(exc)  # anything else is a server error, as before
        return PlainTextResponse("Internal Server Error", status_code=500)

    return {RequestValidationError: invalid_request, KeyError: unknown_key}


def last_index(n: int) -> int:
    """The upper end of a slider over the indices 0..n-1: Gradio refuses a slider whose ends meet, so a
    single index (a one-layer encoder) gets 0..1, shown fixed at 0 (``interactive=n > 1``)."""
    return max(n - 1, 1)


def generate_text(gen_name: str | None, classes: dict) -> str:
    """The line above the Generate tab's class menu: the generator's classes and what it was trained on."""
    if not gen_name:
        return "No class-conditional generator is loaded (pass --generator)."
    names, data = classes["names"], classes["data"]
    trained = f", trained on **{DATA_NAMES.get(data, data)}**" if data else ""
    listed = ", ".join(names[:20]) + (f" ... ({len(names) - 20} more)" if len(names) > 20 else "")
    return f"Generator **{label(gen_name)}**{trained}: {len(names)} classes ({listed})."


def prune_empty_dirs(root: str | Path, min_age_s: float) -> int:
    """Remove the directories under ``root`` that are empty and untouched for ``min_age_s`` seconds; returns
    how many. Gradio's ``delete_cache`` deletes the files it cached but not the directory it made for each
    one (a hash), so without this an app would keep one empty directory per upload and result, without
    end (10 minutes of steady use made ~800 directories, benchmarks/soak.py)."""
    now, n = time.time(), 0
    for d in sorted(Path(root).rglob("*"), key=lambda p: len(p.parts), reverse=True):  # the deepest first
        try:
            if d.is_dir() and not d.is_symlink() and now - d.stat().st_mtime > min_age_s:
                d.rmdir()  # only when empty
                n += 1
        except OSError:  # not empty, or gone
            continue
    return n


def release_font_files() -> None:
    """Let matplotlib close the font files it holds. It caches an open font per (font, thread), up to 64,
    and Gradio's worker threads come and go, so the files of finished threads stayed open: the server's
    open descriptors crept up by ~3 a minute under steady use (benchmarks/soak.py). A figure being drawn
    keeps its own reference; the next one opens its font again (a millisecond)."""
    from matplotlib import font_manager

    clear = getattr(getattr(font_manager, "_get_font", None), "cache_clear", None)
    if clear is not None:
        clear()
        gc.collect()  # the figures drawn meanwhile are cycles that still hold their fonts


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas (``M_ARENA_MAX``) unless ``MALLOC_ARENA_MAX`` says
    otherwise; False where that is not possible (not glibc). By default glibc gives each new thread up to
    8 per core, and the worker threads of Gradio that come and go left the server's RSS creeping up
    (+247 MB over the second half of a 10-minute soak, flat with 2 arenas: benchmarks/soak.py)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, arenas))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def _housekeeping(gradio_cache: str | None, every_s: float = 60.0) -> None:
    """In a daemon thread, every ``every_s`` seconds: prune the empty directories of Gradio's cache (a walk
    over at most a few thousand entries) and let matplotlib close its font files."""

    def loop() -> None:
        while not stop.wait(every_s):
            if gradio_cache:
                prune_empty_dirs(gradio_cache, min_age_s=60)
            release_font_files()

    stop = threading.Event()
    threading.Thread(target=loop, name="larp-lab-housekeeping", daemon=True).start()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="larp_lab app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio link (off unless asked)")
    p.add_argument("--tokenizer", default=None, help="bundled name, directory, Hub repo id or untrained:<preset>")
    p.add_argument("--generator", default=None, help="class-conditional generator (same forms)")
    p.add_argument("--predictor", default=None, help="frame-prediction generator (same forms)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="directory of the bundled models (default: the repository's checkpoints/)")
    p.add_argument("--max-concurrency", type=int, default=2, help="requests processed at once")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most (then 'queue full')")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                   help="sessions whose state is kept in memory, the oldest dropped first (every API call is one)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_malloc_arenas()  # before the server's threads start
    import torch

    from larp_lab.bundled import checkpoints_dir, set_checkpoints_dir

    ws = handlers.Workspace()
    atexit.register(ws.clear)
    # `kill` / `docker stop` (SIGTERM) stop the app like Ctrl-C: the server closes, then the atexit
    # handlers remove the work directories (the default SIGTERM action would skip them)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.checkpoints is not None:
            set_checkpoints_dir(args.checkpoints)
            checkpoints_dir()  # a missing directory is refused now, with its name
        models = ModelCache(torch.device(args.device))
        demo = build_app(models, default_choices(args.tokenizer, args.generator, args.predictor), ws)
    except Exception as exc:  # missing weights, bad directory: one line, exit 2
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    _housekeeping(os.environ.get("GRADIO_TEMP_DIR"))
    demo.queue(default_concurrency_limit=args.max_concurrency, max_size=args.max_queue).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
        allowed_paths=[str(EXAMPLES)], show_error=True, css=CSS, state_session_capacity=args.max_sessions,
        app_kwargs={"exception_handlers": exception_handlers()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
