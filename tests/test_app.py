"""The Gradio app: start `python app.py` on a free port and call its API through gradio_client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from larp_lab.data.video import read_video


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from larp_lab import LARPTokenizer
    from larp_lab.config import TOKENIZER_PRESETS

    torch.manual_seed(0)
    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]())
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(0.02 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("app") / "tok"
    tok.save_pretrained(d)
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--tokenizer", str(d)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {proc.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("app did not start within 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_reconstruct_endpoint(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    video, metrics = client.predict(handle_file(str(REPO / "examples" / "bigbuckbunny_128.mp4")),
                                    api_name="/reconstruct")
    path = video["video"] if isinstance(video, dict) else video
    clip = read_video(path, 8)
    assert clip.shape == (3, 8, 32, 32)
    assert metrics["num_tokens"] == 16 and len(metrics["tokens"]) == 16
    assert 0 < metrics["psnr_db"] < 100 and len(metrics["per_frame_psnr_db"]) == 8


def test_bad_upload_gives_a_clear_error(app_url, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notavideo.mp4"
    bad.write_text("this is text")
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(handle_file(str(bad)), api_name="/reconstruct")
    # and the app keeps serving
    _, metrics = client.predict(handle_file(str(REPO / "examples" / "bigbuckbunny_128.mp4")), api_name="/reconstruct")
    assert metrics["num_tokens"] == 16


def test_app_refuses_missing_weights_with_one_line():
    res = subprocess.run([sys.executable, str(REPO / "app.py"), "--tokenizer", "/no/such/dir"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
