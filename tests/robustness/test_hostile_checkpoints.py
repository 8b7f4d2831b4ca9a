"""Hostile checkpoints, for the tokenizer and the generator, through ``from_pretrained`` and through the
CLI (``info``, ``convert``, ``reconstruct`` / ``sample``): pickles whose unpickling runs code, truncated
and mis-shaped safetensors, configs with unknown or missing keys, absurd sizes, and tiny files whose
config asks for huge recomputed tables. All are refused with a clear message, nothing in them is
executed (a marker file the payload would create stays absent) and nothing large is allocated."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from measure import peak_rss_growth_mb, run_cli
from safetensors.torch import load_file, save_file

from larp_lab import CheckpointError, ConfigError, LARPGenerator, LARPTokenizer
from larp_lab.cli import main
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS

CLS = {"tokenizer": LARPTokenizer, "generator": LARPGenerator}
#: CLI subprocess peak RSS bound for refusals (interpreter + torch + larp_lab are ~300-400 MB)
CLI_RSS_MB = 800


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """Valid micro checkpoints in this project's format."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    LARPTokenizer(TOKENIZER_PRESETS["micro"]()).save_pretrained(root / "tokenizer")
    LARPGenerator(GENERATOR_PRESETS["micro"]()).save_pretrained(root / "generator")
    return {"tokenizer": root / "tokenizer", "generator": root / "generator"}


def clone(src: Path, dest: Path, *, weights: bool = True) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(src / "config.json", dest / "config.json")
    if weights:
        shutil.copy(src / "model.safetensors", dest / "model.safetensors")
    return dest


def cli_in_process(capsys, *args) -> tuple[int, list[str]]:
    """Run the CLI in this process: (exit status, non-warning stderr lines)."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    return rc, [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]


def cli_commands(kind: str, d: Path, tmp: Path) -> list[list]:
    """The CLI commands that read a checkpoint of this kind."""
    use = (["reconstruct", REPO_CLIP, "-o", tmp / "o.mp4", "--tokenizer", d] if kind == "tokenizer"
           else ["sample", "--class", "1", "-n", "1", "-o", tmp / "s", "--generator", d, "--tokenizer", "untrained:micro"])
    return [["info", d], ["convert", d, tmp / "converted"], use]


REPO_CLIP = Path(__file__).resolve().parents[2] / "examples" / "bigbuckbunny_128.mp4"


# ----------------------------------------------------------------------------------------------
# Pickles that run code
# ----------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this *runs code*: ``exec`` (a builtin, so it resolves in any process) writes a marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_payload(d: Path, name: str, marker: Path) -> Path:
    path = d / name
    if name == "model.safetensors" or name.endswith(".bin"):
        path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}, protocol=2))  # a raw pickle
    else:
        torch.save({"model": Payload(marker)}, path)  # a torch zip checkpoint with the pickle inside
    return path


PAYLOAD_FILES = ["model.pt", "pytorch_model.bin", "model.pth", "model.safetensors"]


def test_the_payload_is_live(tmp_path):
    """Control: these files really do run code when unpickled without protection."""
    marker = tmp_path / "RAN"
    for name in PAYLOAD_FILES:
        p = write_payload(tmp_path, name, marker)
        if name == "model.safetensors" or name.endswith(".bin"):
            pickle.loads(p.read_bytes())
        else:  # the pickle inside the torch zip checkpoint, unpickled without protection
            with zipfile.ZipFile(p) as z:
                pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
        assert marker.read_text() == "pwned", name
        marker.unlink()


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
@pytest.mark.parametrize("name", PAYLOAD_FILES)
def test_pickle_payload_is_refused_and_never_run(kind, name, good, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    d = clone(good[kind], tmp_path / "ckpt", weights=False)
    write_payload(d, name, marker)
    with pytest.raises(CheckpointError, match="weights_only|safetensors") as err:
        CLS[kind].from_pretrained(d)
    assert "nothing in it was run" in str(err.value) or "not a" in str(err.value)
    assert not marker.exists()
    for args in cli_commands(kind, d, tmp_path):
        rc, lines = cli_in_process(capsys, *args)
        assert not marker.exists(), args
        if args[0] == "info" and name != "model.safetensors":
            assert rc == 0  # info reads config.json and the safetensors header only: the pickle is not opened
            continue
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, lines)
        assert "safetensors" in lines[0] or "weights_only" in lines[0], lines


@pytest.mark.slow
def test_pickle_payload_in_cli_subprocesses(good, tmp_path):
    """The same through real ``python -m larp_lab`` processes (a process of its own could be exploited
    differently): refused with one line, marker absent."""
    marker = tmp_path / "PWNED"
    tok = clone(good["tokenizer"], tmp_path / "tok", weights=False)
    write_payload(tok, "model.pt", marker)
    gen = clone(good["generator"], tmp_path / "gen", weights=False)
    write_payload(gen, "model.safetensors", marker)
    for args in (["convert", tok, tmp_path / "c1"], ["reconstruct", REPO_CLIP, "-o", tmp_path / "o.mp4", "--tokenizer", tok],
                 ["info", gen], ["convert", gen, tmp_path / "c2"]):
        res = run_cli(*args)
        assert res.returncode == 2 and len(res.error_lines()) == 1, (args, res.stderr)
        assert res.error_lines()[0].startswith("error: ") and "Traceback" not in res.stderr
        assert not marker.exists()
        assert res.peak_rss_mb < CLI_RSS_MB, res.peak_rss_mb


# ----------------------------------------------------------------------------------------------
# Broken safetensors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
def test_truncated_safetensors(kind, good, tmp_path, capsys):
    d = clone(good[kind], tmp_path / "t")
    data = (d / "model.safetensors").read_bytes()
    for cut in (0, 7, 8, 100, len(data) // 2, len(data) - 1):
        (d / "model.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a valid|too short|corrupt|not a safetensors"):
            CLS[kind].from_pretrained(d)
        for args in cli_commands(kind, d, tmp_path):
            rc, lines = cli_in_process(capsys, *args)
            assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (cut, args, lines)
    (d / "model.safetensors").write_bytes(data + b"\x00" * 16)  # trailing garbage is refused too
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        CLS[kind].from_pretrained(d)


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
def test_shape_mismatched_safetensors(kind, good, tmp_path, capsys):
    d = clone(good[kind], tmp_path / "m")
    sd = load_file(str(d / "model.safetensors"))
    key = "tok_embeddings.weight" if kind == "generator" else "x_embedder.proj.weight"
    sd[key] = torch.zeros(*[s + 1 for s in sd[key].shape])
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"shape mismatches.*{key}"):
        CLS[kind].from_pretrained(d)
    for args in cli_commands(kind, d, tmp_path)[1:]:  # info only lists the header
        rc, lines = cli_in_process(capsys, *args)
        assert rc == 2 and len(lines) == 1 and key in lines[0], (args, lines)


# ----------------------------------------------------------------------------------------------
# Bad configs
# ----------------------------------------------------------------------------------------------


def edit_config(d: Path, fn) -> None:
    body = json.loads((d / "config.json").read_text())
    fn(body)
    (d / "config.json").write_text(json.dumps(body))


BAD_CONFIGS = {
    # name: (edit of the larp_lab-format config.json, error class, message)
    "unknown key": (lambda b: b["config"].update(mystery_knob=3), ConfigError, "unknown keys \\['mystery_knob'\\]"),
    "missing config object": (lambda b: b.pop("config"), CheckpointError, "no \"config\" object"),
    "config not an object": (lambda b: b.update(config=[1, 2]), CheckpointError, "no \"config\" object"),
    "wrong type": (lambda b: b["config"].update(norm_eps="tiny", layer_norm_eps="tiny"), ConfigError, "expected a number"),
    "huge integer": (lambda b: b["config"].update(initializer_range=10**400, vq_temperature=10**400), ConfigError,
                     "finite number"),
    "unknown format version": (lambda b: b.update(larp_lab_format=99), CheckpointError, "this version reads 1"),
}


def _drop_sizes(b: dict) -> None:
    for k in ("num_tokens", "codebook_size", "dim", "vocab_size", "max_seq_len"):
        b["config"].pop(k, None)  # missing fields fall back to the (large) defaults, which the weights do not match


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused(kind, case, good, tmp_path, capsys):
    edit, exc, match = BAD_CONFIGS[case]
    if case == "wrong type":  # only one of the two keys exists per kind: drop the other
        def edit(b, _e=edit):
            _e(b)
            b["config"].pop("norm_eps" if kind == "tokenizer" else "layer_norm_eps")
    if case == "huge integer":
        def edit(b, _k=kind):
            b["config"]["initializer_range" if _k == "generator" else "vq_temperature"] = 10**400
    d = clone(good[kind], tmp_path / "c")
    edit_config(d, edit)
    with pytest.raises(exc, match=match):
        CLS[kind].from_pretrained(d)
    for args in cli_commands(kind, d, tmp_path):
        rc, lines = cli_in_process(capsys, *args)
        if args[0] == "info" and exc is ConfigError:
            assert rc == 0  # info does not parse the model config
            continue
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, lines)


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
def test_config_with_missing_fields_does_not_match_the_weights(kind, good, tmp_path, capsys):
    d = clone(good[kind], tmp_path / "c")
    edit_config(d, _drop_sizes)
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        CLS[kind].from_pretrained(d)
    rc, lines = cli_in_process(capsys, "convert", d, tmp_path / "out")
    assert rc == 2 and "weights do not match" in lines[0]
    assert not (tmp_path / "out").exists()


def test_official_configs_with_malformed_fields(official_tokenizer_dir, official_generator_dir, tmp_path, capsys):
    tok, _, _ = official_tokenizer_dir
    gen, _, _ = official_generator_dir
    cases = [
        (tok, lambda b: b.pop("patch_size"), "missing or has a malformed field"),
        (tok, lambda b: b.update(input_size="large"), "malformed field"),
        (tok, lambda b: b.update(latent_pe_scale_factor=float("inf"), input_size=float("inf")), "malformed field"),
        (tok, lambda b: b["bottleneck"].update(args=None), "malformed field"),
        (gen, lambda b: b.update(wings=2), "unknown keys \\['wings'\\]"),
        (gen, lambda b: b.update(drop_path_rate="lots"), "drop_path_rate must be a number"),
        (gen, lambda b: b.update(dim=float("inf")), "expected an integer"),
    ]
    for i, (src, edit, match) in enumerate(cases):
        d = clone(src, tmp_path / f"o{i}")
        edit_config(d, edit)
        cls = LARPTokenizer if src == tok else LARPGenerator
        with pytest.raises(ConfigError, match=match):
            cls.from_pretrained(d)
        rc, lines = cli_in_process(capsys, "convert", d, tmp_path / f"out{i}")
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines


ABSURD = {
    "tokenizer": {"encoder_hidden_size": 16384, "encoder_depth": 256, "decoder_hidden_size": 16384,
                  "decoder_depth": 256},
    "generator": {"dim": 65536, "n_layer": 512, "n_head": 512, "multiple_of": 256},
}


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
def test_absurd_sizes_are_refused_before_allocation(kind, good, tmp_path, capsys):
    """~800B-parameter configs with a 16-byte weights file: refused by the config check; neither Python
    (tracemalloc) nor the process as a whole (peak RSS) allocates anything sizeable."""
    d = clone(good[kind], tmp_path / "absurd", weights=False)
    edit_config(d, lambda b: b["config"].update(ABSURD[kind]))
    (d / "model.safetensors").write_bytes(b"\x00" * 16)
    tracemalloc.start()
    try:
        err, grew_mb = peak_rss_growth_mb(lambda: CLS[kind].from_pretrained(d))
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(err, ConfigError) and "parameters" in str(err), err
    assert py_peak < 20e6 and grew_mb < 50, (py_peak, grew_mb)
    rc, lines = cli_in_process(capsys, "convert", d, tmp_path / "out")
    assert rc == 2 and "parameters" in lines[0]


def _tiny_file_huge_tables(kind: str, official_tokenizer_dir, official_generator_dir, dest: Path) -> Path:
    """An official-format checkpoint of ~2 MB whose config asks for recomputed fixed tables of hundreds
    of millions of elements (they may be absent from official files). Before the limit
    ``checkpoint.MAX_RECOMPUTED_ELEMENTS``, loading the tokenizer one allocated ~1-5 GB."""
    src = (official_tokenizer_dir if kind == "tokenizer" else official_generator_dir)[0]
    d = clone(src, dest)
    sd = load_file(str(d / "model.safetensors"))
    if kind == "tokenizer":
        for k in ("encoder_patch_pe", "decoder_latent_pe", "decoder_patch_query_embed"):
            sd.pop(k, None)
        edit_config(d, lambda b: b.update(input_size=4096, frame_num=16))  # 2 x 1M patches x 64 dims
    else:
        sd.pop("abs_pe", None)
        edit_config(d, lambda b: b.update(use_fixed_pe=True, max_seq_len=1 << 20))  # 1M positions x 64 dims
    save_file(sd, str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize("kind", ["tokenizer", "generator"])
def test_tiny_file_cannot_request_huge_recomputed_tables(kind, official_tokenizer_dir, official_generator_dir,
                                                          tmp_path, capsys):
    d = _tiny_file_huge_tables(kind, official_tokenizer_dir, official_generator_dir, tmp_path / "bomb")
    assert (d / "model.safetensors").stat().st_size < 3_000_000
    err, grew_mb = peak_rss_growth_mb(lambda: CLS[kind].from_pretrained(d))
    assert isinstance(err, CheckpointError) and "fixed tables" in str(err), err
    assert grew_mb < 100, grew_mb
    rc, lines = cli_in_process(capsys, "convert", d, tmp_path / "out")
    assert rc == 2 and "fixed tables" in lines[0]


@pytest.mark.slow
def test_absurd_checkpoints_in_cli_subprocesses(good, official_tokenizer_dir, official_generator_dir, tmp_path):
    """Peak RSS of real CLI processes refusing absurd checkpoints stays at the interpreter's baseline."""
    absurd = clone(good["generator"], tmp_path / "absurd", weights=False)
    edit_config(absurd, lambda b: b["config"].update(ABSURD["generator"]))
    (absurd / "model.safetensors").write_bytes(b"\x00" * 16)
    bomb = _tiny_file_huge_tables("tokenizer", official_tokenizer_dir, official_generator_dir, tmp_path / "bomb")
    for d, expect in ((absurd, "parameters"), (bomb, "fixed tables")):
        res = run_cli("convert", d, tmp_path / "out")
        assert res.returncode == 2 and len(res.error_lines()) == 1 and expect in res.error_lines()[0], res.stderr
        assert res.peak_rss_mb < CLI_RSS_MB, res.peak_rss_mb
        print(f"convert {d.name}: refused in {res.wall_s:.1f} s, peak RSS {res.peak_rss_mb:.0f} MB", file=sys.stderr)
