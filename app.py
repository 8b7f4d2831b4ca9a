"""larp_lab in the browser: reconstruct clips with a LARP tokenizer.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--tokenizer NAME_DIR_OR_REPO_ID]

This file is the UI only; the work happens in ``larp_lab.demo``. API endpoint:
``/reconstruct`` (a video file in; the reconstruction (MP4) and metrics (JSON) out).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import gradio as gr

from larp_lab.bundled import is_untrained, resolve_tokenizer
from larp_lab.data.video import VideoError
from larp_lab.demo.reconstruct import reconstruct_file

EXAMPLES = Path(__file__).resolve().parent / "examples"
WORK = Path(tempfile.gettempdir()) / "larp_lab_app"


def build_app(tokenizer_spec: str = "default") -> gr.Blocks:
    tok = resolve_tokenizer(tokenizer_spec)
    label = f"UNTRAINED {tokenizer_spec} (random weights: reconstructions are noise)" if is_untrained(
        tokenizer_spec) else tokenizer_spec
    cfg = tok.config

    def reconstruct(path: str | None):
        if not path:
            raise gr.Error("Upload a video first.")
        out = Path(tempfile.mkdtemp(prefix="rec_", dir=WORK))
        try:
            r = reconstruct_file(tok, path, out_dir=out)
        except VideoError as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise gr.Error(str(exc)) from None
        return str(r.reconstruction_path), r.metrics

    with gr.Blocks(title="larp_lab", delete_cache=(600, 1800)) as demo:
        gr.Markdown(
            f"# larp_lab: LARP video tokenizer\nTokenizer: **{label}** -- {cfg.frame_num}x{cfg.input_size}x"
            f"{cfg.input_size} clips -> {cfg.num_tokens} tokens from a codebook of {cfg.codebook_size}."
        )
        with gr.Tab("Reconstruct"):
            with gr.Row():
                inp = gr.Video(label="Input clip", sources=["upload"])
                out = gr.Video(label="Reconstruction", autoplay=True, loop=True)
            metrics = gr.JSON(label="Metrics and tokens")
            go = gr.Button("Reconstruct", variant="primary")
            gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.mp4"))], inputs=[inp])
            go.click(reconstruct, inputs=[inp], outputs=[out, metrics], api_name="reconstruct")
        gr.Markdown(
            "LARP: Wang et al., ICLR 2025 ([arXiv:2410.21264](https://arxiv.org/abs/2410.21264)); official code "
            "[hywang66/LARP](https://github.com/hywang66/LARP). Example clip: Big Buck Bunny (c) 2008 Blender "
            "Foundation, CC-BY 3.0."
        )
    return demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio link (off unless asked)")
    p.add_argument("--tokenizer", default="default", help="bundled name, directory, Hub repo id or untrained:<preset>")
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        demo = build_app(args.tokenizer)
    except Exception as exc:  # missing weights, bad directory: one line, exit 2
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    demo.queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size="200mb",
        allowed_paths=[str(EXAMPLES)],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
