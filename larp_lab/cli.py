"""The ``larp-lab`` command (also ``python -m larp_lab``).

Subcommands: ``reconstruct``, ``sample``, ``train-tokenizer``, ``train-generator``, ``evaluate``,
``convert``, ``info``. Bad input (unreadable or wrong
files, missing weights, bad options) ends with exit status 2 and one line ``error: ...``; nothing
here prints a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one ``error:`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + error)
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CLIError(f"unknown device {name!r} (use cpu, cuda, cuda:0 or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("CUDA was requested but no GPU is available; use --device cpu")
    return dev


# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .bundled import is_untrained, resolve_tokenizer
    from .data.video import read_video, write_video

    dev = _device(args.device)
    tok = resolve_tokenizer(args.tokenizer, dev)
    cfg = tok.config
    frames = args.frames or cfg.frame_num
    size = args.size or cfg.input_size
    video = read_video(args.input, frames, size=size, stride=args.stride, fps=args.fps, start_s=args.start)
    x = video.unsqueeze(0).to(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        enc = tok.encode(x)
        t1 = time.perf_counter()
        rec = tok.decode(enc.embeddings, enc.video_shape).clamp(-1, 1)
    t2 = time.perf_counter()
    mse = torch.mean(((rec - x) / 2) ** 2).item()
    psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
    out = Path(args.output)
    shown = torch.cat([x[0], rec[0]], dim=-1) if args.side_by_side else rec[0]
    write_video(out, shown.cpu(), fps=args.out_fps)
    if args.tokens:
        tp = Path(args.tokens)
        tp.parent.mkdir(parents=True, exist_ok=True)
        if tp.suffix == ".json":
            tp.write_text(json.dumps(enc.indices[0].tolist()))
        else:
            np.save(tp, enc.indices[0].cpu().numpy())
    label = "UNTRAINED model (random weights; output is not a reconstruction)" if is_untrained(args.tokenizer) else args.tokenizer
    print(f"tokenizer: {label}")
    print(
        f"{frames}x{size}x{size} clip -> {cfg.num_tokens} tokens (codebook {cfg.codebook_size}) -> {out}\n"
        f"PSNR {psnr:.2f} dB | encode {1000 * (t1 - t0):.0f} ms, decode {1000 * (t2 - t1):.0f} ms"
    )
    return 0


# ------------------------------------------------------------------------------------------------
# sample
# ------------------------------------------------------------------------------------------------


def _class_id(spec: str, gen) -> int:
    names = gen.config.class_names
    if spec.lstrip("-").isdigit():
        k = int(spec)
    elif names and spec in names:
        k = names.index(spec)
    else:
        known = f"; known names: {', '.join(names)}" if names else " (this generator has no class names; use a number)"
        raise CLIError(f"unknown class {spec!r}{known}")
    if not 0 <= k < gen.config.num_classes:
        raise CLIError(f"class id {k} is outside [0, {gen.config.num_classes})")
    return k


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .bundled import resolve_generator, resolve_tokenizer
    from .data.video import write_video

    dev = _device(args.device)
    gen = resolve_generator(args.generator, dev)
    if gen.config.frame_prediction:
        raise CLIError("this is a frame-prediction generator; `sample` needs a class-conditional one")
    tok = resolve_tokenizer(args.tokenizer, dev)
    if tok.config.num_tokens != gen.config.num_tokens or tok.config.codebook_size != gen.config.vocab_size:
        raise CLIError(
            f"generator ({gen.config.num_tokens} tokens over {gen.config.vocab_size} codes) does not match the "
            f"tokenizer ({tok.config.num_tokens} tokens over {tok.config.codebook_size} codes)"
        )
    if not 1 <= args.num <= 256:
        raise CLIError("-n must be between 1 and 256")
    k = _class_id(args.class_, gen)
    g = torch.Generator(device=dev).manual_seed(args.seed)
    labels = torch.full((args.num,), k, dtype=torch.long, device=dev)
    t0 = time.perf_counter()
    idx = gen.sample(
        labels, cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        generator=g, progress=True,
    )
    t1 = time.perf_counter()
    with torch.inference_mode():
        videos = tok.decode_indices(idx).clamp(-1, 1).cpu()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(videos):
        write_video(out / f"sample_{i:02d}.mp4", v, fps=args.out_fps)
    np.save(out / "tokens.npy", idx.cpu().numpy())
    name = gen.config.class_names[k] if gen.config.class_names else str(k)
    print(f"{args.num} samples of class {name!r} -> {out} (sampling {t1 - t0:.2f} s)")
    return 0


# ------------------------------------------------------------------------------------------------
# convert / info
# ------------------------------------------------------------------------------------------------


def _eval_dataset(spec: str, frames: int, size: int, num_clips: int):
    """``synthetic``, ``photos``, ``videos:DIR``, ``folder:DIR`` or ``csv:FILE[:ROOT]`` (held-out clips)."""
    from .training.config import DataConfig, SourceConfig
    from .training.data import build_dataset

    kind, _, rest = spec.partition(":")
    if kind not in ("synthetic", "photos", "videos", "folder", "csv"):
        raise CLIError(f"unknown --data {spec!r}; use synthetic, photos, videos:DIR, folder:DIR or csv:FILE[:ROOT]")
    path, root = (rest.split(":", 1) + [None])[:2] if rest else (None, None)
    if kind in ("videos", "folder", "csv") and not path:
        raise CLIError(f"--data {kind} needs a path: {kind}:PATH")
    cfg = DataConfig(sources=(SourceConfig(kind=kind, path=path, root=root),), frames=frames, size=size,
                     val_clips=num_clips)
    return build_dataset(cfg, train=False, num_clips=num_clips)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .bundled import resolve_generator, resolve_tokenizer
    from .evaluation.runner import (
        EvalSettings,
        evaluate_generator,
        evaluate_tokenizer,
        format_table,
        write_json,
    )

    dev = _device(args.device)
    tok = resolve_tokenizer(args.tokenizer, dev)
    s = EvalSettings(
        num_clips=args.num_clips, batch_size=args.batch_size, seed=args.seed, cfg_scale=args.cfg_scale,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, i3d_path=args.i3d,
        classifier_path=args.classifier, lpips_vgg_path=args.lpips_vgg, lpips_lin_path=args.lpips_lin,
        real_stats_cache=args.real_stats_cache,
    )
    data = _eval_dataset(args.data, tok.config.frame_num, tok.config.input_size, args.num_clips)
    report = {"tokenizer": args.tokenizer, "data": args.data}
    tm = evaluate_tokenizer(tok, data, s, dev)
    report["tokenizer_metrics"] = tm
    print(format_table(f"tokenizer {args.tokenizer} on {args.data}", tm))
    if args.generator:
        gen = resolve_generator(args.generator, dev)
        gm = evaluate_generator(gen, tok, data, s, dev)
        report["generator"], report["generator_metrics"] = args.generator, gm
        print(format_table(f"generator {args.generator} (cfg {args.cfg_scale}, seed {args.seed})", gm))
    if args.json:
        write_json(args.json, report)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .hub import detect_format, read_config_json, resolve_checkpoint_dir
    from .models.generator import LARPGenerator
    from .models.tokenizer import LARPTokenizer

    src = resolve_checkpoint_dir(args.source)
    source, kind = detect_format(read_config_json(src))
    cls = LARPTokenizer if kind == "tokenizer" else LARPGenerator
    model = cls.from_pretrained(src)
    import torch

    dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    model.save_pretrained(args.output, metadata={"converted_from": str(args.source), "source_format": source}, dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    print(f"{source} {kind} ({n / 1e6:.1f}M parameters) -> {args.output}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .hub import detect_format, read_config_json, read_safetensors_header, resolve_checkpoint_dir

    d = resolve_checkpoint_dir(args.source)
    raw = read_config_json(d)
    source, kind = detect_format(raw)
    header = read_safetensors_header(d / "model.safetensors") if (d / "model.safetensors").is_file() else {}
    n = 0
    for _dtype, shape in header.values():
        c = 1
        for s in shape:
            c *= s
        n += c
    print(json.dumps({"directory": str(d), "format": source, "model": kind, "tensors": len(header), "elements": n}, indent=2))
    return 0


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from .training.run import train_tokenizer

    res = train_tokenizer(args.config, args.out, max_steps=args.max_steps, resume=args.resume, device=args.device,
                          on_nan=args.on_nan)
    _print_result(res, args.out)
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from .training.run import train_generator

    res = train_generator(args.config, args.out, tokenizer=args.tokenizer, max_steps=args.max_steps,
                          resume=args.resume, device=args.device, on_nan=args.on_nan)
    _print_result(res, args.out)
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    import torch

    from .data.synthetic import SyntheticVideos
    from .evaluation.classifier import train_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    data = SyntheticVideos(num_clips=args.clips, frames=args.frames, size=args.size, seed=args.seed)
    res = train_classifier(data, args.steps, batch_size=args.batch_size, lr=args.lr, device=_device(args.device),
                           seed=args.seed, out_dir=args.out, width=args.width)
    print(f"proxy classifier -> {args.out}; held-out accuracy {res.val_accuracy:.3f} on {len(res.val_indices)} clips")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmarks

    out = args.out or f"benchmarks/results_{args.device.replace(':', '')}.json"
    run_benchmarks(args.device, quick=args.quick, out=out, compile_=args.compile)
    return 0


def _print_result(res: dict, out: str) -> None:
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return
    ev = ", ".join(f"{k} {v:.4g}" for k, v in res.get("eval", {}).items())
    print(f"trained to step {res['step']}; model in {Path(out) / 'model'}" + (f"; eval: {ev}" if ev else ""))


# ------------------------------------------------------------------------------------------------
# parser and entry point
# ------------------------------------------------------------------------------------------------


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="larp-lab", description="Train, run and look inside LARP video tokenizers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("reconstruct", help="tokenize a video and decode it again")
    r.add_argument("input", help="video file (mp4, webm, mkv, avi, mov, gif)")
    r.add_argument("-o", "--output", required=True, help="output .mp4 or .gif")
    r.add_argument("--tokenizer", default="default", help="bundled name, directory, Hub repo id or untrained:<preset>")
    r.add_argument("--frames", type=int, default=None, help="frames to read (default: the model's)")
    r.add_argument("--size", type=int, default=None, help="square crop size (default: the model's)")
    r.add_argument("--stride", type=int, default=1, help="keep every n-th frame")
    r.add_argument("--fps", type=float, default=None, help="sample at this frame rate instead of --stride")
    r.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    r.add_argument("--tokens", default=None, help="also save the token ids (.npy or .json)")
    r.add_argument("--side-by-side", action="store_true", help="write original | reconstruction")
    r.add_argument("--out-fps", type=float, default=8.0)
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("sample", help="generate class-conditional videos")
    s.add_argument("--class", dest="class_", required=True, help="class name or id")
    s.add_argument("-n", "--num", type=int, default=4)
    s.add_argument("-o", "--output", required=True, help="output directory")
    s.add_argument("--generator", default="default")
    s.add_argument("--tokenizer", default="default")
    _sampling_args(s)
    s.add_argument("--out-fps", type=float, default=8.0)
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("convert", help="convert an official checkpoint (dir or Hub id) to this project's format")
    c.add_argument("source")
    c.add_argument("output")
    c.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="storage dtype")
    c.set_defaults(func=cmd_convert)

    for name, func, helptext in (
        ("train-tokenizer", cmd_train_tokenizer, "train a tokenizer with its AR prior"),
        ("train-generator", cmd_train_generator, "train an AR generator on a tokenizer's tokens"),
    ):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("--config", required=True, help="YAML/JSON training config (see configs/)")
        t.add_argument("--out", required=True, help="run directory")
        if name == "train-generator":
            t.add_argument("--tokenizer", required=True, help="tokenizer directory, Hub repo id or bundled name")
        t.add_argument("--max-steps", type=int, default=None, help="override run.max_steps")
        t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
        t.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1...")
        t.add_argument("--on-nan", choices=["skip", "stop"], default="skip", help="what a non-finite loss does")
        t.set_defaults(func=func)

    k = sub.add_parser("train-classifier", help="train the small video classifier of the offline proxy metrics")
    k.add_argument("--out", required=True, help="output directory (config.json + model.safetensors)")
    k.add_argument("--steps", type=int, default=1500)
    k.add_argument("--batch-size", type=int, default=16)
    k.add_argument("--lr", type=float, default=1e-3)
    k.add_argument("--clips", type=int, default=6000, help="synthetic clips (20%% held out)")
    k.add_argument("--frames", type=int, default=16)
    k.add_argument("--size", type=int, default=64)
    k.add_argument("--width", type=int, default=16)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    k.add_argument("--device", default="cpu")
    k.set_defaults(func=cmd_train_classifier)

    e = sub.add_parser("evaluate", help="reconstruction and generation metrics")
    e.add_argument("--tokenizer", default="default")
    e.add_argument("--generator", default=None, help="also sample from this class-conditional generator")
    e.add_argument("--data", default="synthetic", help="synthetic, photos, videos:DIR, folder:DIR, csv:FILE[:ROOT]")
    e.add_argument("--num-clips", type=int, default=256)
    e.add_argument("--batch-size", type=int, default=16)
    _sampling_args(e)
    e.add_argument("--i3d", default=None, help="path to i3d_torchscript.pt for rFVD/gFVD")
    e.add_argument("--classifier", default=None, help="proxy classifier directory (proxy FVD, class accuracy)")
    e.add_argument("--lpips-vgg", default=None, help="VGG16 weights file for LPIPS")
    e.add_argument("--lpips-lin", default=None, help="LPIPS linear-layer weights file")
    e.add_argument("--real-stats-cache", default=None, help="prefix of cached real-feature statistics")
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="speed and memory benchmarks (table + JSON)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--quick", action="store_true", help="fewer repeats and shorter sequences")
    b.add_argument("--compile", action="store_true", help="also measure torch.compile (GPU)")
    b.add_argument("--out", default=None, help="JSON file (default benchmarks/results_<device>.json)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="describe a checkpoint directory")
    i.add_argument("source")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .hub import CheckpointError
    from .training.loop import TrainingError

    args = build_parser().parse_args(argv)
    try:
        from .data.video import VideoError
    except ImportError:  # pragma: no cover - av is a dependency
        VideoError = CLIError  # type: ignore[misc,assignment]
    previous_format = warnings.formatwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
            return int(args.func(args) or 0)
    except (CLIError, CheckpointError, ConfigError, VideoError, TrainingError, ValueError, TypeError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous_format


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
