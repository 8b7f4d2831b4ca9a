"""Property-based fuzzing (hypothesis, bounded and derandomized, so every CI run tries the same inputs).

* the video reader on mutated bytes of small valid MP4 / WebM / GIF files: always a float32 tensor of
  the requested shape in [-1, 1] or a ``VideoError``; never another exception, never a hang (each
  example runs under a ``faulthandler`` watchdog that kills the process after 60 s);
* the config parsers (``TokenizerConfig`` / ``GeneratorConfig`` / ``PriorConfig``: ``from_dict`` on
  generated dicts, ``from_json`` on generated JSON and text): always a valid config (that round-trips)
  or a ``ConfigError``;
* the safetensors header check on mutated checkpoint bytes: a listing or a ``CheckpointError``.
"""

from __future__ import annotations

import faulthandler
import json
import math
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larp_lab.checkpoint import CheckpointError, read_safetensors_header
from larp_lab.config import (
    GENERATOR_PRESETS,
    PRIOR_PRESETS,
    TOKENIZER_PRESETS,
    ConfigError,
    GeneratorConfig,
    PriorConfig,
    TokenizerConfig,
)
from larp_lab.data.video import VideoError, VideoLimits, read_video

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
VIDEO_FUZZ = settings(FUZZ, max_examples=300)
#: small limits: a mutated header cannot make the reader decode (or wait) for long
SMALL = VideoLimits(max_file_bytes=1_000_000, max_pixels=1024 * 1024, max_duration_s=3600.0, max_decoded_frames=200)
WATCHDOG_S = 60


@contextmanager
def watchdog(seconds: float = WATCHDOG_S):
    """Kill the test process (with every thread's traceback) if the body hangs: a hang fails CI loudly."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# ----------------------------------------------------------------------------------------------
# Video reader
# ----------------------------------------------------------------------------------------------


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return [np.stack([(xx * 16 + 20 * t) % 256, yy * 16 % 256, np.full_like(xx, 40 * t % 256)], -1).astype(np.uint8)
            for t in range(n)]


def _encode(path: Path, codec: str, pix_fmt: str, options: dict | None = None, muxer: dict | None = None) -> bytes:
    with av.open(str(path), "w", options=muxer or {}) as out:
        s = out.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = 24, 16, pix_fmt
        if options:
            s.options = options
        for a in _frames(6, 24, 16):
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path.read_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fuzz_seeds")
    return {
        "mp4": _encode(d / "s.mp4", "libx264", "yuv420p", {"preset": "ultrafast", "g": "3"}, {"movflags": "faststart"}),
        "webm": _encode(d / "s.webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
        "gif": _encode(d / "s.gif", "gif", "rgb8"),
    }


MUTATION = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]),
                     st.floats(0.0, 1.0), st.integers(0, 255), st.integers(1, 64))


def mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for kind, where, value, length in mutations:
        if not b:
            break
        i = min(int(where * len(b)), len(b) - 1)
        if kind == "flip":
            b[i] ^= 1 << (value % 8)
        elif kind == "set":
            b[i] = value
        elif kind == "insert":
            b[i:i] = bytes([value]) * length
        elif kind == "delete":
            del b[i : i + length]
        elif kind == "truncate":
            del b[i:]
        else:  # duplicate a slice (repeated boxes / packets)
            b[i:i] = b[i : i + length]
    return bytes(b)


def check_read(path: Path, n: int, size: int, **kw) -> str:
    with watchdog():
        try:
            v = read_video(path, n, size=size, limits=SMALL, **kw)
        except VideoError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg
            return "error"
    assert isinstance(v, torch.Tensor) and v.dtype == torch.float32
    assert v.shape == (3, n, size, size)
    assert bool(torch.isfinite(v).all()) and float(v.min()) >= -1.0 and float(v.max()) <= 1.0
    return "ok"


@pytest.mark.parametrize("kind", ["mp4", "webm", "gif"])
def test_seed_files_read(seeds, kind, tmp_path):
    """The unmutated seeds are readable (so the fuzzing below starts from valid files)."""
    p = tmp_path / f"seed.{kind}"
    p.write_bytes(seeds[kind])
    assert check_read(p, 4, 16) == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mp4", "webm", "gif"])
def test_video_reader_on_mutated_bytes(seeds, kind, tmp_path):
    outcomes = {"ok": 0, "error": 0}

    @VIDEO_FUZZ
    @given(mutations=st.lists(MUTATION, min_size=1, max_size=4),
           start_s=st.sampled_from([0.0, 0.0, 0.3, 5.0]), fps=st.sampled_from([None, None, 3.0]),
           n=st.integers(1, 5), size=st.sampled_from([8, 16]))
    def run(mutations, start_s, fps, n, size):
        p = tmp_path / f"fuzz.{kind}"
        p.write_bytes(mutate(seeds[kind], mutations))
        outcomes[check_read(p, n, size, start_s=start_s, fps=fps)] += 1

    run()
    # the fuzzer exercised both outcomes (mutations that are harmless and ones that break the file)
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


# ----------------------------------------------------------------------------------------------
# Config parsers
# ----------------------------------------------------------------------------------------------

JSON_SCALAR = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)
JSON_VALUE = st.recursive(JSON_SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                           max_size=3), max_leaves=8)
CLASSES = {"tokenizer": TokenizerConfig, "generator": GeneratorConfig, "prior": PriorConfig}
BASES = {
    "tokenizer": [TOKENIZER_PRESETS[k]().to_dict() for k in ("micro", "tiny", "larp-l")],
    "generator": [GENERATOR_PRESETS[k]().to_dict() for k in ("micro", "micro-fp", "llama-abs-L")],
    "prior": [PRIOR_PRESETS[k]().to_dict() for k in ("gptc-micro", "gptc-S")],
}


def _nudge(value, draw):
    """A plausible variant of a valid field value: scaled, negated, retyped, or arbitrary JSON."""
    choice = draw(st.integers(0, 5))
    if choice == 0 or isinstance(value, (dict, list, tuple)) or value is None:
        return draw(JSON_VALUE)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        out = value * draw(st.sampled_from([0, -1, 2, 3, 7, 1000, 10**6, 10**12, 0.5]))
        return float(out) if choice == 5 else out
    return draw(st.text(max_size=10))


@st.composite
def config_dicts(draw, kind: str):
    d = dict(draw(st.sampled_from(BASES[kind])))
    keys = sorted(d)
    for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        d[key] = _nudge(d[key], draw)
    for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
        d.pop(key, None)
    if draw(st.booleans()) and kind == "tokenizer" and isinstance(d.get("prior"), dict) and d["prior"]:
        prior = dict(d["prior"])
        k = draw(st.sampled_from(sorted(prior)))
        prior[k] = _nudge(prior[k], draw)
        d["prior"] = prior
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.text(min_size=1, max_size=8))] = draw(JSON_SCALAR)  # an unknown key
    return d


def check_config(cls, parse) -> str:
    try:
        cfg = parse()
    except ConfigError as exc:
        assert str(exc)
        return "error"
    assert isinstance(cfg, cls)
    cfg.validate()
    assert cls.from_dict(cfg.to_dict()) == cfg and cls.from_json(cfg.to_json()) == cfg
    return "ok"


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_config_from_dict_and_json_on_generated_dicts(kind):
    cls = CLASSES[kind]
    outcomes = {"ok": 0, "error": 0}

    @FUZZ
    @given(d=config_dicts(kind))
    def run(d):
        outcomes[check_config(cls, lambda: cls.from_dict(d))] += 1
        try:
            text = json.dumps(d)  # NaN / Infinity are written as such and must be refused
        except (ValueError, OverflowError):
            return
        check_config(cls, lambda: cls.from_json(text))

    run()
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_config_from_json_on_arbitrary_text(kind):
    cls = CLASSES[kind]

    @FUZZ
    @given(text=st.one_of(st.text(max_size=60), JSON_VALUE.map(lambda v: json.dumps(v)),
                          st.sampled_from(["[" * 50_000, "{" * 50_000, '{"a":' * 50_000, "1" + "0" * 5000,
                                           '{"dim": 1' + "0" * 5000 + "}", '{"mlp_ratio": 1' + "0" * 400 + "}",
                                           '{"norm_eps": NaN}', '{"n_layer": Infinity}', "\ud800", ""])))
    def run(text):
        check_config(cls, lambda: cls.from_json(text))

    run()


def test_config_edge_values_are_refused_with_config_error():
    """Values found by the fuzzer (regressions): each used to escape as another exception."""
    base = TOKENIZER_PRESETS["micro"]().to_dict()
    for bad in ({"mlp_ratio": 10**400}, {"vq_temperature": -(10**400)}, {"layer_norm_eps": math.nan},
                {"prior": {"latent_ce_temperature": 10**400}}):
        with pytest.raises(ConfigError):
            TokenizerConfig.from_dict(base | bad)
    for text in ("[" * 100_000, '{"input_size": 1' + "0" * 5000 + "}"):
        with pytest.raises(ConfigError, match="not valid JSON"):
            TokenizerConfig.from_json(text)


# ----------------------------------------------------------------------------------------------
# Safetensors header check
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_safetensors_header_check_on_mutated_bytes(tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / "w.safetensors"
    save_file({"a.weight": torch.ones(3, 4), "b.bias": torch.zeros(5, dtype=torch.float16),
               "c": torch.arange(6, dtype=torch.int64)}, str(src))
    data = src.read_bytes()
    n_header = int.from_bytes(data[:8], "little")
    outcomes = {"ok": 0, "error": 0}

    @FUZZ
    @given(mutations=st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]),
                                        st.floats(0.0, 1.0).map(lambda f: f * (8 + n_header) / len(data)),
                                        st.integers(0, 255), st.integers(1, 16)), min_size=1, max_size=4))
    def run(mutations):
        p = tmp_path / "m.safetensors"
        p.write_bytes(mutate(data, mutations))
        try:
            listing = read_safetensors_header(p)
        except CheckpointError:
            outcomes["error"] += 1
            return
        assert all(isinstance(k, str) and isinstance(v[0], str) and all(type(s) is int for s in v[1])
                   for k, v in listing.items())
        outcomes["ok"] += 1

    run()
    assert outcomes["error"] > 0, outcomes
    for header in (b'{"a":' + b"[" * 100_000, b'{"a": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}',
                   b'{"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',
                   b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}', b"[1, 2]"):
        p = tmp_path / "h.safetensors"
        p.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
        with pytest.raises(CheckpointError):
            read_safetensors_header(p)
