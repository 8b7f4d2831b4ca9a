"""The Gradio app: `python app.py` on a free port, its API through gradio_client, and an end-to-end
run in a real headless Chromium driven by Playwright (skipped with a reason where Chromium is
absent; CI installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, save_micro_tokenizer

from larp_lab.data.video import read_video

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], env_extra: dict | None = None):
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {proc.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("app did not start within 120 s")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return save_micro_tokenizer(tmp_path_factory.mktemp("app") / "tok", noise=0.05)


@pytest.fixture(scope="module")
def app_url(tok_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("appwork")
    proc, url = start_app(["--tokenizer", str(tok_dir), "--generator", "untrained:micro", "--predictor",
                           "untrained:micro-fp"], {"TMPDIR": str(work)})
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_reconstruct_endpoint(app_url):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    video, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
    path = video["video"] if isinstance(video, dict) else video
    assert read_video(path, 8).shape == (3, 8, 32, 32)
    assert metrics["num_tokens"] == 16 and len(metrics["tokens"]) == 16
    assert 0 < metrics["psnr_db"] < 100 and len(metrics["per_frame_psnr_db"]) == 8


def test_generate_endpoint(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict("3", 1.5, 1.0, 0, 1.0, 7, api_name="/generate")
    path = out["video"] if isinstance(out, dict) else out
    assert read_video(path, 8).shape == (3, 8, 32, 32)
    with pytest.raises(Exception, match="unknown class|outside"):
        client.predict("99", 1.5, 1.0, 0, 1.0, 7, api_name="/generate")


def test_bad_upload_gives_a_clear_error_and_the_app_keeps_serving(app_url, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notavideo.mp4"
    bad.write_text("this is text")
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(handle_file(str(bad)), api_name="/reconstruct")
    _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
    assert metrics["num_tokens"] == 16


def test_app_refuses_missing_weights_with_one_line():
    res = subprocess.run([sys.executable, str(REPO / "app.py"), "--tokenizer", "/no/such/dir"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it: apt-get install chromium)")
def test_browser_end_to_end(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("LARP_LAB_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(app_url, wait_until="domcontentloaded")
            page.locator("#rec_btn").wait_for(state="visible", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(CLIP))
            page.wait_for_timeout(500)
            page.click("#rec_btn")
            video = page.locator("#rec_out video")
            video.wait_for(state="attached", timeout=60_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('#rec_out video');"
                " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=60_000)
            page.evaluate("() => document.querySelector('#rec_out video').play()")
            page.wait_for_function("() => document.querySelector('#rec_out video').currentTime > 0", timeout=30_000)
            w, h = page.evaluate("() => { const v = document.querySelector('#rec_out video');"
                                 " return [v.videoWidth, v.videoHeight]; }")
            assert (w, h) == (66, 32)  # original | 2-pixel gap | reconstruction, at the model's 32x32
            page.screenshot(path=str(shots / "app_reconstruct.png"), full_page=True)
            # an invalid upload shows the error, and the app keeps serving
            bad = tmp_path / "broken.mp4"
            bad.write_bytes(b"\x00\x01 definitely not a video" * 100)
            page.reload(wait_until="domcontentloaded")
            page.locator("#rec_btn").wait_for(state="visible", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(bad))
            page.wait_for_timeout(500)
            page.click("#rec_btn")
            page.get_by_text("not a readable video").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "app_error.png"), full_page=True)
        finally:
            browser.close()
    from gradio_client import Client, handle_file

    _, metrics = Client(app_url, verbose=False).predict(handle_file(str(CLIP)), api_name="/reconstruct")
    assert metrics["num_tokens"] == 16
