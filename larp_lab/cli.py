"""The ``larp-lab`` command (also ``python -m larp_lab``).

Subcommands: ``reconstruct``, ``sample``, ``train-tokenizer``, ``train-generator``, ``evaluate``,
``convert``, ``info``, ``bench``, ``snapshots``; ``--checkpoints DIR`` (before the subcommand) moves the bundled
models. ``reconstruct`` and ``sample`` run :mod:`larp_lab.pipelines`. Bad input (unreadable or wrong
files, missing weights, bad options) ends with exit status 2 and one line ``error: ...``; nothing
here prints a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one ``error:`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    #: called with the parser just before its help is formatted (help text that costs a file read)
    help_hooks: tuple = ()

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + error)
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def format_help(self) -> str:
        for hook in self.help_hooks:
            hook(self)
        return super().format_help()


#: the --checkpoints value of the command line being parsed (for help texts shown before it is applied)
_help_checkpoints: str | None = None


def _class_help(parser: argparse.ArgumentParser) -> None:
    """List the default generator's classes in ``sample --help`` (read from its config.json only)."""
    from .bundled import DEFAULT_GENERATOR, ENV_VAR
    from .checkpoint_info import bundled_class_names

    names = bundled_class_names(DEFAULT_GENERATOR, _help_checkpoints)
    if names:
        listed = "; ".join(names).replace("%", "%%")
        text = (f"class name or id. The default generator ({DEFAULT_GENERATOR}) has {len(names)} classes: "
                f"{listed} (quote names with spaces). Another generator's classes: larp-lab info GENERATOR")
    else:
        text = (f"class name or id. List a generator's classes with: larp-lab info GENERATOR (the bundled "
                f"{DEFAULT_GENERATOR} is not here: point at the repository's checkpoints/ with --checkpoints DIR "
                f"or ${ENV_VAR})")
    for action in parser._actions:
        if action.dest == "class_":
            action.help = text


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


def _model_name(spec: str, default_name: str) -> str:
    """How a --tokenizer / --generator argument is shown: the bundled name for "default"."""
    from .bundled import is_untrained

    if is_untrained(spec):
        return f"{spec} (UNTRAINED: random weights; outputs are noise)"
    return default_name if spec == "default" else spec


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .bundled import DEFAULT_TOKENIZER, describe_training, resolve_tokenizer, training_data
    from .pipelines import reconstruct, save_side_by_side, save_tokens, save_video

    out = Path(args.output)
    dev = _device(args.device)
    tok = resolve_tokenizer(args.tokenizer, dev)
    name = _model_name(args.tokenizer, DEFAULT_TOKENIZER)
    r = reconstruct(tok, args.input, start_time=args.start, frames=args.frames, size=args.size, stride=args.stride,
                    fps=args.fps)
    if args.side_by_side:
        save_side_by_side(out, r.original, r.reconstruction, fps=args.out_fps, gap=0)
    else:
        save_video(out, r.reconstruction, fps=args.out_fps)
    if args.tokens:
        save_tokens(args.tokens, r.tokens[0], name)
    cfg, m, t = tok.config, r.metrics, r.timings_ms
    _, _, T, H, W = r.original.shape
    print(f"tokenizer: {name}")
    trained = describe_training(training_data(args.tokenizer), cfg.frame_num, cfg.input_size)
    if trained:  # from its config.json: a poor result on other footage is then no surprise
        print(f"trained on: {trained} only (clips unlike those, such as real footage, reconstruct poorly)")
    print(f"used: {r.source.describe()}")
    print(
        f"{T}x{H}x{W} clip -> {cfg.num_tokens} tokens (codebook {cfg.codebook_size}) -> {out}\n"
        f"PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f} | encode {t['encode']:.0f} ms, decode {t['decode']:.0f} ms"
    )
    return 0


# ------------------------------------------------------------------------------------------------
# sample
# ------------------------------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    from .bundled import DEFAULT_GENERATOR, resolve_generator, resolve_tokenizer
    from .pipelines import generate, save_clips, save_tokens

    if not 1 <= args.num <= 256:
        raise CLIError("-n must be between 1 and 256")
    dev = _device(args.device)
    gen = resolve_generator(args.generator, dev)
    if gen.config.frame_prediction:
        raise CLIError("this is a frame-prediction generator; `sample` needs a class-conditional one")
    tok = resolve_tokenizer(args.tokenizer, dev)
    g = generate(tok, gen, args.class_, num_samples=args.num, cfg_scale=args.cfg_scale, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p, seed=args.seed, score=False, progress=True)
    out = Path(args.output)
    save_clips(out, g.videos, fps=args.out_fps)
    save_tokens(out / "tokens.npy", g.tokens, args.tokenizer)
    print(f"generator: {_model_name(args.generator, DEFAULT_GENERATOR)}")
    print(f"{args.num} samples of class {g.class_name!r} -> {out} (sampling {g.timings_ms['sample'] / 1000:.2f} s)")
    return 0


# ------------------------------------------------------------------------------------------------
# convert / info
# ------------------------------------------------------------------------------------------------


#: the --data kinds of ``evaluate`` (``digits``: held-out moving digits, digit images never trained on)
EVAL_DATA = ("digits", "synthetic", "photos", "videos:DIR", "folder:DIR", "csv:FILE[:ROOT]")
#: --data of ``evaluate`` when the tokenizer's config.json does not say what it was trained on
FALLBACK_EVAL_DATA = "synthetic"


def _default_eval_data(tokenizer: str, root: str | None = None) -> str:
    """The data ``tokenizer`` was trained on (its config.json metadata "data") when ``evaluate`` can
    build it, else ``synthetic``."""
    from .bundled import training_data

    data = training_data(tokenizer, root=root)
    return data if data in ("digits", "synthetic", "photos") else FALLBACK_EVAL_DATA


def _eval_data_help(parser: argparse.ArgumentParser) -> None:
    """Say in ``evaluate --help`` which data the bundled tokenizer's config.json names (no weights read)."""
    from .bundled import DEFAULT_TOKENIZER, training_data

    data = training_data("default", root=_help_checkpoints)
    here = (f"; for the bundled {DEFAULT_TOKENIZER} that is {_default_eval_data('default', _help_checkpoints)}"
            if data else f"; the bundled {DEFAULT_TOKENIZER} here names none, so {FALLBACK_EVAL_DATA}")
    text = (f"held-out clips to measure on: {', '.join(EVAL_DATA)} (digits: held-out moving digits, drawn from "
            "digit images never used in training). Default: the data the tokenizer was trained on (metadata "
            f"\"data\" of its config.json), else {FALLBACK_EVAL_DATA}{here}")
    for action in parser._actions:
        if action.dest == "data":
            action.help = text.replace("%", "%%")


def _eval_dataset(spec: str, frames: int, size: int, num_clips: int):
    """``digits``, ``synthetic``, ``photos``, ``videos:DIR``, ``folder:DIR`` or ``csv:FILE[:ROOT]`` (held-out
    clips; ``digits``: :class:`~larp_lab.data.digits.MovingDigits` with ``split="heldout"``)."""
    from .training.config import DataConfig, SourceConfig
    from .training.data import build_dataset

    kind, _, rest = spec.partition(":")
    if kind not in ("digits", "synthetic", "photos", "videos", "folder", "csv"):
        raise CLIError(f"unknown --data {spec!r}; use {', '.join(EVAL_DATA[:-1])} or {EVAL_DATA[-1]}")
    path, root = (rest.split(":", 1) + [None])[:2] if rest else (None, None)
    if kind in ("videos", "folder", "csv") and not path:
        raise CLIError(f"--data {kind} needs a path: {kind}:PATH")
    cfg = DataConfig(sources=(SourceConfig(kind=kind, path=path, root=root),), frames=frames, size=size,
                     val_clips=num_clips)
    return build_dataset(cfg, train=False, num_clips=num_clips)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .bundled import resolve_generator, resolve_tokenizer, training_data
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
    data_spec = args.data or _default_eval_data(args.tokenizer)
    data = _eval_dataset(data_spec, tok.config.frame_num, tok.config.input_size, args.num_clips)
    how = ("" if args.data else " (what the tokenizer was trained on, from its config.json)"
           if training_data(args.tokenizer) == data_spec else " (the default)")
    shown = repr(data) if type(data).__repr__ is not object.__repr__ else f"{len(data)} clips"
    print(f"data: {data_spec}{how}: {shown}")
    report = {"tokenizer": args.tokenizer, "data": data_spec}
    tm = evaluate_tokenizer(tok, data, s, dev)
    report["tokenizer_metrics"] = tm
    print(format_table(f"tokenizer {args.tokenizer} on {data_spec}", tm))
    if args.generator:
        gen = resolve_generator(args.generator, dev)
        gm = evaluate_generator(gen, tok, data, s, dev)
        report["generator"], report["generator_metrics"] = args.generator, gm
        print(format_table(f"generator {args.generator} (cfg {args.cfg_scale}, seed {args.seed})", gm))
    if args.json:
        write_json(args.json, report)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import detect_format, read_config_json, resolve_checkpoint_dir
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
    from .checkpoint_info import describe_checkpoint

    info = describe_checkpoint(args.source)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print("\n".join(info.lines()))
    return 0


# ------------------------------------------------------------------------------------------------
# snapshots: how the latent space forms
# ------------------------------------------------------------------------------------------------


def cmd_snapshots(args: argparse.Namespace) -> int:
    """Measure a tokenizer's training snapshots on the same held-out clips; write two figures and a JSON."""
    from .analysis.snapshots import list_snapshots, measure_snapshots
    from .bundled import DEFAULT_TOKENIZER, bundled_path, model_metadata, snapshots_path
    from .models.tokenizer import LARPTokenizer
    from .viz import save_figure, snapshot_curves, snapshot_grid
    from .viz.notebook import bundled_clips

    if not 1 <= args.clips <= 1000:
        raise CLIError("--clips must be between 1 and 1000")
    root = Path(args.snapshots) if args.snapshots else snapshots_path(DEFAULT_TOKENIZER)
    if args.final == "none":
        final = None
    elif args.final:
        final = Path(args.final)
    else:  # the bundled tokenizer closes the scrub when it says how many steps it was trained for
        final = bundled_path(DEFAULT_TOKENIZER) if not args.snapshots and model_metadata().get("steps") else None
    snaps = list_snapshots(root, final)
    data = args.data or (model_metadata(str(final)).get("data") if final else None) or "synthetic"
    if data not in ("digits", "synthetic"):
        raise CLIError(f"--data must be digits or synthetic; the final model says {data!r}")
    dev = _device(args.device)
    last = LARPTokenizer.from_pretrained(snaps[-1].path)
    clips, _, _ = bundled_clips(last, args.clips, args.seed, kind=data)
    rep = measure_snapshots(snaps, clips, dev, keep=min(args.keep, args.clips))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [save_figure(snapshot_grid(rep), out / "snapshots.png"),
               save_figure(snapshot_curves(rep), out / "snapshot_curves.png")]
    report = {"snapshots_dir": root.name, "data": data, "seed": args.seed, **rep.to_dict()}
    (out / "snapshots.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written.append(out / "snapshots.json")
    print(f"{sum(not s.final for s in snaps)} snapshots of {root}" + (f" + the final model {final}" if final else "")
          + f", on {args.clips} held-out {data} clips (seed {args.seed}):")
    print(f"{'step':>8} {'PSNR dB':>8} {'SSIM':>6} {'codes':>6} {'perplex':>8} {'bits/tok':>8} {'own cell':>8} {'entropy':>8}")
    for r in rep.table():
        print(f"{r['step']:>8} {r['psnr_db']:>8.2f} {r['ssim']:>6.3f} {r['used_codes']:>6} {r['perplexity']:>8.1f} "
              f"{r['prior_bits_per_token']:>8.2f} {r['own_cell_attention']:>8.3f} {r['attention_entropy']:>8.3f}")
    print(f"uniform prior: {rep.uniform_bits:.2f} bits/token; own-cell share by chance: {rep.own_cell_chance:.3f}")
    for path in written:
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def _clip_tokens(tok, path: str, start: float):
    """A file read at the tokenizer's clip size: (clip (1, 3, T, H, W), token ids (1, N), what was read)."""
    import torch

    from .pipelines import load_clip

    c = tok.config
    x, source = load_clip(path, frames=c.frame_num, size=c.input_size, start_time=start)
    with torch.no_grad():
        return x, tok.encode(x.to(tok.device)).indices.cpu(), source


def cmd_influence(args: argparse.Namespace) -> int:
    """Where each token of a clip acts: the influence mosaic (PNG), per-token numbers (JSON)."""
    import numpy as np

    from .analysis import token_influence
    from .bundled import resolve_tokenizer
    from .viz import influence_mosaic, new_figure, save_figure

    if not 1 <= args.codes <= 16:
        raise CLIError("--codes must be between 1 and 16")
    tok = resolve_tokenizer(args.tokenizer, _device(args.device)).eval()
    _, ids, source = _clip_tokens(tok, args.input, args.start)
    inf = token_influence(tok, ids[0], num_codes=args.codes, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = new_figure(figsize=(6, 6))
    ax[0, 0].imshow(influence_mosaic(inf.maps), interpolation="nearest")
    ax[0, 0].set_axis_off()
    ax[0, 0].set_title(f"where each of the {inf.num_tokens} tokens acts (token order, row-major)", fontsize=9)
    png = save_figure(fig, out / "influence.png")
    strength = inf.strength()
    size = tok.config.input_size
    conc = inf.concentration(4).tolist() if size % 4 == 0 else None
    report = {"input": Path(args.input).name, "used": source.describe(), "tokens": ids[0].tolist(),
              "replacement_codes": args.codes, "strength": [round(float(v), 6) for v in strength],
              "share_in_best_4x4_block": None if conc is None else [round(v, 4) for v in conc],
              "centroid_yx": [[round(float(v), 2) for v in row] for row in inf.centroids()]}
    (out / "influence.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    top = np.argsort(-strength)[:5].tolist()
    print(f"used: {source.describe()}")
    print(f"{inf.num_tokens} tokens; strongest {top}; mean change per token {strength.mean():.4f}"
          + (f"; share in the best 4x4 block {np.mean(conc):.2f} (uniform 0.06)" if conc else ""))
    print(f"wrote {png} and {out / 'influence.json'}")
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    """Clip A with clip B's tokens (or encoder query outputs) at some positions: A | B | patched (MP4), what moved."""
    import numpy as np
    import torch

    from .analysis import clip_properties, parse_positions, patch_query_outputs, swap_tokens
    from .bundled import resolve_tokenizer
    from .pipelines import save_side_by_side

    tok = resolve_tokenizer(args.tokenizer, _device(args.device)).eval()
    xa, ia, sa = _clip_tokens(tok, args.clip_a, args.start)
    xb, ib, _ = _clip_tokens(tok, args.clip_b, args.start)
    try:
        pos = parse_positions(args.positions, tok.config.num_tokens)
    except ValueError as exc:
        raise CLIError(f"--positions: {exc}") from None
    with torch.no_grad():
        rec = tok.decode_indices(torch.cat([ia, ib]).to(tok.device)).float().clamp(-1, 1).cpu()
        if args.method == "tokens":
            patched = tok.decode_indices(swap_tokens(ia, ib, pos).to(tok.device)).float().clamp(-1, 1).cpu()
        else:
            if not -tok.config.encoder_depth <= args.layer < tok.config.encoder_depth:
                raise CLIError(f"--layer must lie in 0..{tok.config.encoder_depth - 1}")
            _, patched = patch_query_outputs(tok, xa, xb, args.layer, pos)
    p = clip_properties(torch.cat([rec, patched]))
    out = Path(args.output)
    save_side_by_side(out, rec[0], rec[1], patched[0], gap=2)
    def rounded(v, n: int) -> list[float]:
        return [round(float(x), n) for x in v]

    centre = {k: rounded(np.nanmean(p.centre[i], 0), 2) for i, k in enumerate(("A", "B", "patched"))}
    colour = {k: rounded(p.colour[i], 3) for i, k in enumerate(("A", "B", "patched"))}
    print(f"used: {sa.describe()}")
    print(f"{args.method} at {len(pos)} positions from B into A -> {out} (A | B | patched)")
    print(f"object centre (y, x): {centre}")
    print(f"object colour (RGB in [-1, 1]): {colour}")
    return 0


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
    if args.sampling:
        from .bench_sampling import config_from_args, run_sampling_benchmarks

        out = args.out or f"benchmarks/sampling_{args.device.replace(':', '')}.json"
        run_sampling_benchmarks(config_from_args(args, args.device), out=out)
        return 0
    from .bench import run_benchmarks

    out = args.out or f"benchmarks/results_{args.device.replace(':', '')}.json"
    run_benchmarks(args.device, quick=args.quick, out=out, compile_=args.compile)
    return 0


def _csv(kind: type) -> Callable[[str], tuple]:
    return lambda s: tuple(kind(x) for x in s.split(",") if x)


def _sampling_bench_arguments(p) -> None:
    """Options of ``bench --sampling`` (larp_lab.bench_sampling.SamplingBenchConfig; no torch import here)."""
    p.add_argument("--model", default="tiny", help="generator preset (random weights) or checkpoint whose sizes to use")
    p.add_argument("--batches", type=_csv(int), default=(1, 8, 64), help="comma-separated (default 1,8,64)")
    p.add_argument("--lengths", type=_csv(int), default=(64, 256, 1024), help="comma-separated (default 64,256,1024)")
    p.add_argument("--cfg-scales", type=_csv(float), default=(1.0, 1.5), help="comma-separated (default 1.0,1.5)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per job (median; after one warm-up)")
    p.add_argument("--no-official", action="store_true", help="skip the comparison with the official LARP code")
    p.add_argument("--official-repo", default=None,
                   help="a copy of github.com/hywang66/LARP (git dir or checkout; default $LARP_OFFICIAL_REPO, "
                   "then /work/.mirror/hywang66+LARP/repo)")
    p.add_argument("--compiled", action="store_true", help="also time sample(compiled=True) (torch.compile)")
    p.add_argument("--profile", default="8,256,1.5", help="batch,length,cfg of the per-step profile, or 'none'")
    p.add_argument("--profile-only", action="store_true", help="only the per-step profile, no grid")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--micro-calls", type=int, default=200,
                   help="most calls per timing of a small kernel (GEMM shapes, profile parts); fewer = quicker, noisier")


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
    p.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="directory of the bundled models (default: the repository's checkpoints/)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("reconstruct", help="tokenize a video and decode it again")
    r.add_argument("input", help="video file (mp4, webm, mkv, avi, mov, gif)")
    r.add_argument("-o", "--output", required=True, help="output .mp4 or .gif")
    r.add_argument("--tokenizer", default="default", help="bundled name, directory, Hub repo id or untrained:<preset>")
    r.add_argument("--frames", type=int, default=None, help="frames to read (default: the model's; other values encode at a size the model was not trained on)")
    r.add_argument("--size", type=int, default=None, help="square crop size (default: the model's)")
    r.add_argument("--stride", type=int, default=1, help="keep every n-th frame")
    r.add_argument("--fps", type=float, default=None, help="sample at this frame rate instead of --stride")
    r.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                   help="start time in the video (the model sees the frames from there on)")
    r.add_argument("--tokens", default=None, help="also save the token ids (.npy or .json)")
    r.add_argument("--side-by-side", action="store_true", help="write original | reconstruction (no gap)")
    r.add_argument("--out-fps", type=float, default=8.0)
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("sample", help="generate class-conditional videos")
    s.add_argument("--class", dest="class_", metavar="CLASS", required=True, help="class name or id")  # listed by _class_help
    s.help_hooks = (_class_help,)
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
    e.add_argument("--data", default=None, metavar="DATA", help="held-out clips")  # written by _eval_data_help
    e.help_hooks = (_eval_data_help,)
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
    b.add_argument("--out", default=None, help="JSON file (default benchmarks/results_<device>.json, "
                   "benchmarks/sampling_<device>.json with --sampling)")
    b.add_argument("--sampling", action="store_true",
                   help="the sampling benchmark instead: tokens/s over batch x length x CFG, the FLOP floor, the "
                   "official code, a per-step profile (the options below)")
    _sampling_bench_arguments(b.add_argument_group("sampling benchmark (with --sampling)"))
    b.set_defaults(func=cmd_bench)

    n = sub.add_parser("snapshots", help="how the latent space forms: a tokenizer's training snapshots on the same "
                       "held-out clips (figures + JSON)")
    n.add_argument("--snapshots", default=None, metavar="DIR",
                   help="folder of step<N>/ tokenizer checkpoints (default: the bundled tokenizer's snapshots)")
    n.add_argument("--final", default=None, metavar="DIR",
                   help="the trained model, the last point (default: the bundled tokenizer with the bundled "
                   "snapshots; 'none' for the snapshots only)")
    n.add_argument("--data", choices=["digits", "synthetic"], default=None,
                   help="held-out clips (default: what the final model's config.json says it was trained on)")
    n.add_argument("--clips", type=int, default=40, help="held-out clips measured (the same for every snapshot)")
    n.add_argument("--keep", type=int, default=4, help="clips drawn in the figure")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--out", required=True, help="folder for snapshots.png, snapshot_curves.png, snapshots.json")
    n.add_argument("--device", default="cpu")
    n.set_defaults(func=cmd_snapshots)

    f = sub.add_parser("influence", help="where each token of a clip acts in the decoded video (PNG + JSON)")
    f.add_argument("input", help="a video file")
    f.add_argument("--out", required=True, help="folder for influence.png and influence.json")
    f.add_argument("--tokenizer", default="default")
    f.add_argument("--codes", type=int, default=4, help="replacement codes tried per token")
    f.add_argument("--start", type=float, default=0.0, help="start time (s)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="cpu")
    f.set_defaults(func=cmd_influence)

    q = sub.add_parser("patch", help="clip A with clip B's tokens at some positions: A | B | patched (MP4)")
    q.add_argument("clip_a")
    q.add_argument("clip_b")
    q.add_argument("-o", "--output", required=True, help="the MP4 to write")
    q.add_argument("--positions", default="all", help="token positions taken from B, e.g. 0-7,12 (default all)")
    q.add_argument("--method", choices=["tokens", "queries"], default="tokens",
                   help="swap token ids, or the encoder's query outputs after block --layer")
    q.add_argument("--layer", type=int, default=-1)
    q.add_argument("--tokenizer", default="default")
    q.add_argument("--start", type=float, default=0.0)
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=cmd_patch)

    i = sub.add_parser("info", help="describe a model: kind, clip size, tokens, parameters, classes, training",
                       description="Describe a model without loading its weights: kind, clip size, tokens, "
                       "codebook, parameter count, class names, the training summary and metrics of its "
                       "MODEL_CARD.md, and the file format.")
    i.add_argument("source", help="checkpoint directory, bundled model name (e.g. larp-tiny-generator) or Hub repo id")
    i.add_argument("--json", action="store_true", help="print the description as JSON")
    i.set_defaults(func=cmd_info)
    return p


def _use_checkpoints_dir(path: str) -> None:
    """``--checkpoints DIR``: read the bundled models from DIR (refused at once when DIR is missing)."""
    from .bundled import checkpoints_dir, set_checkpoints_dir

    set_checkpoints_dir(path)
    checkpoints_dir()  # raises CheckpointError naming the directory when it does not exist


def _peek_option(argv: list[str], name: str) -> str | None:
    """The value of ``name VALUE`` or ``name=VALUE`` in ``argv`` before the parser runs (None if absent)."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1 :]
    return None


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .training.loop import TrainingError

    global _help_checkpoints
    _help_checkpoints = _peek_option(sys.argv[1:] if argv is None else argv, "--checkpoints")
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
            if args.checkpoints is not None:
                _use_checkpoints_dir(args.checkpoints)
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
