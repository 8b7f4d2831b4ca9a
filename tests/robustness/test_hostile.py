"""Hostile media (``tests/hostile_media.py``, made once per session) through every entry point:

* the Python API: ``read_video`` + ``LARPTokenizer.encode`` on a micro tokenizer;
* the CLI: ``larp-lab reconstruct`` in this process for every file, and as real subprocesses (with
  their own peak RSS and wall time) for a representative subset, the 8K and 20-minute clips included;
* the app's ``/reconstruct`` API on a running ``app.py`` (small ``--max-concurrency`` and
  ``--max-queue``), then 20 concurrent calls (p50/p95 latency, queue-full answers), then SIGTERM: the
  app exits cleanly and leaves no files in its TMPDIR.

Every file gives either a sensible result or a clear one-sentence error within seconds, never a
traceback, and memory stays bounded (the 8K clip costs about what the 8 frames used cost). Measured
figures are printed to stderr (``pytest -s``) and recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hostile_media import HOSTILE, LONG_FPS, long_clip_frame_number, make_all
from measure import REPO, peak_rss_growth_mb, percentile, run_cli

from larp_lab import LARPTokenizer
from larp_lab.cli import main
from larp_lab.config import TOKENIZER_PRESETS
from larp_lab.data import video as video_mod
from larp_lab.data.video import VideoError, VideoLimits, probe_video, read_video, to_uint8_frames

BY_KEY = {h.key: h for h in HOSTILE}
KEYS = [h.key for h in HOSTILE]
CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"
FRAMES, SIZE, TOKENS, CODES = 8, 32, 16, 64  # the micro tokenizer
CALL_S = 20  #: every file is answered within this (API, CLI, app), generous for slow shared CI machines
CLI_RSS_MB = 1500  #: peak RSS bound of one CLI process (the 8K clip included)
APP_RSS_MB = 2000  #: peak RSS bound of the app process after every hostile upload


def log(msg: str) -> None:
    print(msg, file=sys.stderr)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> dict[str, Path]:
    paths, seconds = make_all(tmp_path_factory.mktemp("hostile_media"))
    log(f"hostile media made in {sum(seconds.values()):.2f} s (8K clip {seconds['huge_8k']:.2f} s, "
        f"20-minute clip {seconds['long_20min']:.2f} s)")
    return paths


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]())
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("hostile_tok") / "tok"
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tok(tok_dir) -> LARPTokenizer:
    return LARPTokenizer.from_pretrained(tok_dir)


def check_outcome(key: str, outcome: str, message: str, *, app: bool = False) -> None:
    expect, match = BY_KEY[key].expect_app if app else (BY_KEY[key].expect, BY_KEY[key].match)
    if expect == "either":
        return
    assert outcome == expect, (key, outcome, message)
    if expect == "error":
        assert match in message, (key, message)


# ----------------------------------------------------------------------------------------------
# Python API
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_python_api(key, hostile, tok):
    path = hostile[key]
    t0 = time.perf_counter()
    try:
        video = read_video(path, FRAMES, size=SIZE)
    except VideoError as exc:
        msg = str(exc)
        assert msg.endswith(".") and "\n" not in msg and path.name in msg  # one sentence naming the file
        check_outcome(key, "error", msg)
        return
    finally:
        assert time.perf_counter() - t0 < CALL_S
    check_outcome(key, "ok", "")
    assert video.shape == (3, FRAMES, SIZE, SIZE) and video.dtype == torch.float32
    assert bool(torch.isfinite(video).all()) and -1.0 <= float(video.min()) <= float(video.max()) <= 1.0
    with torch.inference_mode():
        enc = tok.encode(video.unsqueeze(0))
    assert enc.indices.shape == (1, TOKENS) and 0 <= int(enc.indices.min()) and int(enc.indices.max()) < CODES
    u8 = to_uint8_frames(video)
    if key.startswith("gray"):  # gray becomes R = G = B
        assert (u8[..., 0] == u8[..., 1]).all() and (u8[..., 1] == u8[..., 2]).all()
    if key == "one_frame":  # looped
        assert all(torch.equal(video[:, 0], video[:, t]) for t in range(FRAMES))
    if key == "two_frames":
        assert torch.equal(video[:, 0], video[:, 2]) and not torch.equal(video[:, 0], video[:, 1])
    if key == "vfr":  # sampling by timestamps across the bursts and gaps works too
        assert read_video(path, 4, size=SIZE, fps=4.0, start_s=0.9).shape == (3, 4, SIZE, SIZE)


def test_long_clip_seeks_deep_quickly(hostile):
    path = hostile["long_20min"]
    info = probe_video(path)
    assert info.num_frames == 20 * 60 * LONG_FPS and abs(info.duration_s - 1200.0) < 1.0
    # a keyframe every 10 s: reaching 1100 s must not decode more than a few dozen frames (2200 without
    # seeking), so a decode limit of 60 proves the seek; the frames carry their own numbers
    few = VideoLimits(max_decoded_frames=60)
    for start, expect in ((0.0, [0, 1, 2, 3]), (1100.0, [2200, 2201, 2202, 2203]), (599.5, [1199, 1200, 1201, 1202]),
                          (1198.5, [2397, 2398, 2399, 2397])):  # the last one loops at the end
        t0 = time.perf_counter()
        v = read_video(path, 4, start_s=start, limits=few)
        elapsed = time.perf_counter() - t0
        assert [long_clip_frame_number(f) for f in to_uint8_frames(v)] == expect, start
        assert elapsed < 2.0, (start, elapsed)
        log(f"20-minute clip: 4 frames from {start:.1f} s in {1000 * elapsed:.0f} ms")
    v = read_video(path, 4, fps=0.5, start_s=1000.0, limits=few)  # by timestamps, deep inside
    assert [long_clip_frame_number(f) for f in to_uint8_frames(v)] == [2000, 2004, 2008, 2012]
    with pytest.raises(VideoError, match="decoded 60 frames without finishing"):
        read_video(path, 61, limits=few)  # the limit is real


def test_8k_clip_costs_about_the_frames_used(hostile, monkeypatch):
    path = hostile["huge_8k"]
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames) == (7680, 4320, 300)  # 300 x 50 MB of YUV if all decoded
    # exactly the frames used are decoded: 8 frames pass a limit of 8 decoded frames
    read_video(path, FRAMES, size=SIZE, limits=VideoLimits(max_decoded_frames=FRAMES))
    # decoder threads are capped by frame size: on a 64-core machine FFmpeg's default would keep ~65
    # 8K frames in flight (several GB); the cap keeps it to what the memory budget allows
    calls = []
    real = video_mod._decoder_threads
    monkeypatch.setattr(video_mod.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(video_mod, "_decoder_threads", lambda w, h: calls.append(real(w, h)) or calls[-1])
    timings = {}
    for n in (FRAMES, 4 * FRAMES):
        t0 = time.perf_counter()
        v, grew = peak_rss_growth_mb(lambda n=n: read_video(path, n, size=SIZE))
        timings[n] = time.perf_counter() - t0
        assert isinstance(v, torch.Tensor) and v.shape == (3, n, SIZE, SIZE), v
        assert grew < 600, (n, grew)
        log(f"8K clip: {n} frames read in {timings[n]:.2f} s, peak RSS growth {grew:.0f} MB")
    assert calls and all(c <= 2 for c in calls), calls
    assert real(1920, 1080) == 8 and real(64, 48) == 8
    assert timings[FRAMES] < 10


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_cli_in_process(key, hostile, tok_dir, tmp_path, capsys):
    out = tmp_path / "rec.mp4"
    t0 = time.perf_counter()
    rc = main(["reconstruct", str(hostile[key]), "-o", str(out), "--tokenizer", str(tok_dir)])
    assert time.perf_counter() - t0 < CALL_S
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    if rc == 0:
        check_outcome(key, "ok", "")
        assert lines == [] and "PSNR" in captured.out
        assert read_video(out, FRAMES).shape == (3, FRAMES, SIZE, SIZE)
    else:
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
        check_outcome(key, "error", lines[0])
        assert not out.exists()


SUBPROCESS = {
    "huge_8k": [],
    "long_20min": ["--start", "1100"],
    "truncated": [],
    "bitflip_header": [],
    "audio_aac": [],
    "png_renamed": [],
    "unicode_name": ["--side-by-side", "--tokens", "tokens.json"],
}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SUBPROCESS))
def test_cli_subprocess(key, hostile, tok_dir, tmp_path):
    out = tmp_path / "rec ü.mp4"
    res = run_cli("reconstruct", hostile[key], "-o", out, "--tokenizer", tok_dir, *SUBPROCESS[key],
                  timeout=CALL_S * 3, cwd=tmp_path)
    log(f"CLI reconstruct {key}: exit {res.returncode} in {res.wall_s:.2f} s, peak RSS {res.peak_rss_mb:.0f} MB")
    assert not res.timed_out and "Traceback" not in res.stderr
    assert res.peak_rss_mb < CLI_RSS_MB
    if res.returncode == 0:
        check_outcome(key, "ok", "")
        assert read_video(out, FRAMES).shape[1:] == (FRAMES, SIZE, SIZE * (2 if "--side-by-side" in SUBPROCESS[key] else 1))
        if key == "unicode_name":
            assert (tmp_path / "tokens.json").exists() and "tokens.json" not in res.stderr
    else:
        lines = res.error_lines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        check_outcome(key, "error", lines[0])


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------


@dataclass
class RunningApp:
    proc: subprocess.Popen
    url: str
    tmpdir: Path  #: the app's TMPDIR
    log_path: Path

    def client(self, dl: Path):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=str(dl))

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # what `kill` and `docker stop` send
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_app(args: list[str], tmpdir: Path, log_path: Path) -> RunningApp:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(tmpdir), OMP_NUM_THREADS="1")
    with open(log_path, "w") as logf:  # a file, not a pipe: a chatty server cannot block on a full pipe
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), *args], cwd=REPO, env=env,
                                stdout=logf, stderr=subprocess.STDOUT)
    app = RunningApp(proc, f"http://127.0.0.1:{port}/", tmpdir, log_path)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return app
        except OSError:
            time.sleep(0.3)
    app.stop()
    raise RuntimeError("the app did not start within 180 s")


MAX_CONCURRENCY, MAX_QUEUE = 2, 4


@pytest.fixture(scope="module")
def app(tok_dir, tmp_path_factory):
    tmpdir = tmp_path_factory.mktemp("app_tmpdir")
    running = start_app(["--tokenizer", str(tok_dir), "--max-concurrency", str(MAX_CONCURRENCY),
                         "--max-queue", str(MAX_QUEUE)], tmpdir, tmp_path_factory.mktemp("app_log") / "app.log")
    with pytest.MonkeyPatch.context() as mp:
        # gradio_client leaves an empty directory in the temporary directory for every file it downloads:
        # keep them in pytest's tmp rather than /tmp
        mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("client_tmp")))
        yield running
    running.stop()


@pytest.mark.slow
def test_app_answers_every_hostile_upload_and_keeps_serving(app, hostile, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = app.client(tmp_path / "dl")
    times = {}
    for key in KEYS:
        t0 = time.perf_counter()
        try:
            video, metrics = client.predict(handle_file(str(hostile[key])), api_name="/reconstruct")
        except AppError as exc:  # a gr.Error: the message shown to the user
            msg = str(exc)
            assert msg and "Traceback" not in msg and str(app.tmpdir) not in msg, (key, msg)  # no server paths
            check_outcome(key, "error", msg, app=True)
        else:
            check_outcome(key, "ok", "", app=True)
            assert metrics["num_tokens"] == TOKENS and len(metrics["tokens"]) == TOKENS
            assert len(metrics["per_frame_psnr_db"]) == FRAMES
            path = video["video"] if isinstance(video, dict) else video
            assert read_video(path, FRAMES).shape == (3, FRAMES, SIZE, SIZE)
        times[key] = time.perf_counter() - t0
        assert times[key] < CALL_S, (key, times[key])
    _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")  # still serving
    assert server_exceptions(app.log_path.read_text()) <= {"gradio.exceptions.Error"}  # nothing crashed
    assert metrics["num_tokens"] == TOKENS
    rss = app.peak_rss_mb()
    slowest = max(times, key=times.get)
    log(f"app: {len(times)} hostile uploads answered, slowest {slowest} {times[slowest]:.2f} s; "
        f"app peak RSS {rss:.0f} MB")
    assert rss < APP_RSS_MB


@pytest.mark.slow
def test_app_under_load(app, tmp_path):
    """20 concurrent calls from 20 threads: each completes or is told the queue is full."""
    from gradio_client import handle_file

    client = app.client(tmp_path / "dl")
    client.predict(handle_file(str(CLIP)), api_name="/reconstruct")  # warm

    def call(i: int):
        t0 = time.perf_counter()
        try:
            _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
            assert metrics["num_tokens"] == TOKENS
            return "ok", time.perf_counter() - t0, ""
        except Exception as exc:
            return "refused", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))
    ok = [t for kind, t, _ in results if kind == "ok"]
    refused = [(t, m) for kind, t, m in results if kind == "refused"]
    assert len(ok) + len(refused) == 20
    assert all("Queue is full" in m for _, m in refused), refused
    assert len(ok) >= MAX_CONCURRENCY
    log(f"app under load (max-concurrency {MAX_CONCURRENCY}, max-queue {MAX_QUEUE}): {len(ok)} completed, "
        f"{len(refused)} queue full; completed p50 {percentile(ok, 50):.2f} s p95 {percentile(ok, 95):.2f} s"
        + (f"; refusals p50 {percentile([t for t, _ in refused], 50):.2f} s" if refused else ""))
    assert percentile(ok, 95) < 60
    _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")  # and it keeps serving
    assert metrics["num_tokens"] == TOKENS


@pytest.mark.slow
def test_app_refuses_an_upload_above_max_file_size(app, tmp_path):
    """Above 200 MB an upload is refused by the client (from the app's config) and by the server (413),
    before anything is decoded."""
    import httpx
    from gradio_client import handle_file

    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:  # sparse: 210 MB that take no disk space
        f.truncate(210 * 1024**2)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 209715200 bytes"):
        app.client(tmp_path / "dl").predict(handle_file(str(big)), api_name="/reconstruct")
    with open(big, "rb") as f:
        r = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.mp4", f, "video/mp4")}, timeout=120)
    assert r.status_code == 413 and "maximum allowed size of 209715200 bytes" in r.text, (r.status_code, r.text)


@pytest.mark.slow
def test_app_stops_cleanly_and_leaves_no_files(app):
    """SIGTERM: exit status 0, the work directory (TMPDIR/larp_lab_app) and Gradio's private cache are
    removed; the only thing left in TMPDIR is PyTorch's (empty) compile-cache directory, which
    ``torch`` creates when a model is built on the meta device."""
    from gradio_client import handle_file

    app.client(app.tmpdir.parent / "dl_stop").predict(handle_file(str(CLIP)), api_name="/reconstruct")
    assert (app.tmpdir / "larp_lab_app").is_dir()  # in use while the app runs
    assert app.stop() == 0
    left = sorted(str(p.relative_to(app.tmpdir)) for p in app.tmpdir.rglob("*"))
    assert all(name.startswith("torchinductor_") for name in left), left
    assert not [p for p in app.tmpdir.rglob("*") if p.is_file()], left
    # the server log holds a traceback for each gr.Error (Gradio logs the user errors it shows), and
    # must hold no other exception
    assert server_exceptions(app.log_path.read_text()) <= {"gradio.exceptions.Error"}


def server_exceptions(log_text: str) -> set[str]:
    """The exception types ending the tracebacks in a log."""
    found, in_tb = set(), False
    for line in log_text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
        elif in_tb and line and not line[0].isspace():
            found.add(line.split(":")[0])
            in_tb = False
    return found
