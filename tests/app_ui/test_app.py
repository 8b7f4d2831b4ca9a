"""The Gradio app: `python app.py` on a free port, its API through gradio_client, and end-to-end
runs in a real headless Chromium driven by Playwright (skipped with a reason where Chromium is
absent; CI installs it): every tab at a desktop and a phone window size, screenshotted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, save_micro_bundle, save_micro_tokenizer
from snapshot_helpers import add_snapshots_to_bundle

from larp_lab.app import tour
from larp_lab.app.tour import BROWSER_ARGS, running_app
from larp_lab.data.digits import DIGIT_NAMES
from larp_lab.data.video import read_video

CLIP = REPO / "examples" / "bigbuckbunny_128.mp4"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A micro bundle laid out like checkpoints/, trained (it says in its config.json) on moving digits, with
    three training snapshots of its tokenizer (steps 10, 40, 160; the tokenizer itself: step 200)."""
    root = save_micro_bundle(tmp_path_factory.mktemp("app") / "ckpts", data="digits")
    add_snapshots_to_bundle(root, steps=(10, 40, 160), final_steps=200)
    # the patch-token twin (issue 19): 1x4x4 patches of 8 frames = the 16 tokens of the micro tokenizer
    save_micro_tokenizer(root / "larp-tiny-patch-tokenizer", metadata={"bundled": "larp-tiny-patch-tokenizer",
                         "data": "digits"}, seed=4, encoder_depth=1, token_mode="patch", temporal_patch_size=8)
    return root


@pytest.fixture(scope="module")
def app_url(bundle_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("appwork")
    with running_app(REPO / "app.py", ["--checkpoints", str(bundle_dir)], env={"TMPDIR": str(work)}) as url:
        yield url


def _components(url: str) -> dict:
    """The page's components by elem_id (and examples by label) from Gradio's /config."""
    import json
    import urllib.request

    with urllib.request.urlopen(url + "config", timeout=30) as f:
        cfg = json.load(f)
    out: dict = {"examples": [], "dropdowns": {}, "sliders": {}}
    for c in cfg["components"]:
        p = c.get("props", {})
        if p.get("elem_id"):
            out[p["elem_id"]] = p
        if c["type"] == "dataset":
            out["examples"].append(p)
        if c["type"] in ("dropdown", "slider"):
            out[c["type"] + "s"][p["label"]] = p
    return out


def test_the_page_opens_on_moving_digits(app_url):
    """With a bundle trained on moving digits: its held-out digits are the first examples of every tab,
    Generate lists the digits, and the page says what the models were trained on (and the clip size)."""
    from pathlib import Path

    page = _components(app_url)
    assert len(page["examples"]) == 5  # Reconstruct, Predict, Explore, Surgery (clip A and clip B)
    for ex in page["examples"]:
        names = [Path(row[0]["path"] if isinstance(row[0], dict) else row[0]).name for row in ex["samples"]]
        assert names[:5] == ["digits_3.mp4", "digits_5.mp4", "digits_7.mp4", "digits_9.mp4", "bigbuckbunny_128.mp4"]
        assert ex["label"].startswith("Examples: moving digits first")
    classes = page["dropdowns"]["Class"]
    assert [c[0] for c in classes["choices"]] == list(DIGIT_NAMES) and classes["value"] == "0"
    assert page["gen_classes"]["value"] == ("Generator **larp-tiny-generator**, trained on **moving digits**: "
                                            "10 classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9).")
    assert "It was trained on **moving digits** only (32x32, 8 frames)" in page["header"]["value"]
    for elem in ("rec_used", "pred_used", "exp_used"):
        assert page[elem]["value"].endswith("**The tokenizer was trained on:** moving digits, 32x32, 8 frames, "
                                            "nothing else; clips unlike those, such as real footage, come back "
                                            "blurred or wrong.")
    assert "synthetic" not in page["header"]["value"] + page["gen_classes"]["value"]
    # a one-layer encoder (the micro bundle's): the layer slider is fixed at 0 rather than refused by Gradio
    layer = page["sliders"]["Encoder layer"]
    assert (layer["minimum"], layer["maximum"], layer["value"], layer["interactive"]) == (0, 1, 0, False)
    assert page["sliders"]["Query token"]["maximum"] == 15 and page["sliders"]["k (tokens kept)"]["maximum"] == 16


def test_reconstruct_endpoint(app_url):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    video, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
    path = video["video"] if isinstance(video, dict) else video
    assert read_video(path, 8).shape == (3, 8, 32, 32)
    assert metrics["num_tokens"] == 16 and len(metrics["tokens"]) == 16
    assert 0 < metrics["psnr_db"] < 100 and len(metrics["per_frame_psnr_db"]) == 8
    assert metrics["used"].startswith("8 frames (0.00-0.64 s") and "resized to 32x32" in metrics["used"]
    assert metrics["trained_on"] == "moving digits, 32x32, 8 frames"  # real footage: the API says so too


def test_generate_endpoint(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict("3", 1.5, 1.0, 0, 1.0, 7, api_name="/generate")  # the digit 3
    path = out["video"] if isinstance(out, dict) else out
    assert read_video(path, 8).shape == (3, 8, 32, 32)
    with pytest.raises(Exception, match="unknown class|outside"):
        client.predict("99", 1.5, 1.0, 0, 1.0, 7, api_name="/generate")


def test_surgery_endpoints(app_url):
    """/edit_tokens, /swap_tokens and /token_influence through gradio_client (issue 19)."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    a, b = (handle_file(str(REPO / "examples" / f"digits_{d}.mp4")) for d in (3, 7))
    video, info = client.predict(a, "2:5, 4:9", api_name="/edit_tokens")
    path = video["video"] if isinstance(video, dict) else video
    assert read_video(path, 8).shape == (3, 8, 128, 3 * 128 + 8)  # original | edited | difference
    assert info["edited_tokens"][2] == 5 and info["edited_tokens"][4] == 9 and len(info["energy_per_frame"]) == 8
    assert set(info["changed_positions"]) <= {2, 4}
    video, moved = client.predict(a, b, "all", "tokens", -1, api_name="/swap_tokens")
    assert moved["centre_yx"]["patched"] == moved["centre_yx"]["B"] and moved["positions"] == "0-15"
    mosaic, inf = client.predict(a, 2, api_name="/token_influence")
    assert len(inf["strength"]) == 16 and inf["replacement_codes"] == 2 and mosaic
    with pytest.raises(Exception, match="position:code"):
        client.predict(a, "nonsense", api_name="/edit_tokens")


def test_snapshots_endpoint(app_url):
    """/snapshots (issue 19, training snapshots): one snapshot by its step, its numbers and its figure."""
    from gradio_client import Client
    from PIL import Image

    page = _components(app_url)  # the Training tab: a slider over the 3 snapshots and the final model, at the end
    slider = page["snap_slider"]
    assert (slider["minimum"], slider["maximum"], slider["value"], slider["interactive"]) == (0, 3, 3, True)
    assert "the same held-out digits" in page["snap_intro"]["value"]
    client = Client(app_url, verbose=False)
    info, img = client.predict(40, api_name="/snapshots")
    assert info["step"] == 40 and info["steps"] == [10, 40, 160, 200] and info["index"] == 1 and not info["final"]
    assert 0 < info["psnr_db"] < 100 and 0 < info["codebook_usage"] <= 1 and info["uniform_bits_per_token"] == 6.0
    with Image.open(img if isinstance(img, str) else img["path"]) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    last, _ = client.predict(-1, api_name="/snapshots")
    assert last["step"] == 200 and last["final"] and last["checkpoint"] == "larp-tiny-tokenizer"
    with pytest.raises(Exception, match="no snapshot at step 41"):
        client.predict(41, api_name="/snapshots")


def test_bad_upload_gives_a_clear_error_and_the_app_keeps_serving(app_url, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notavideo.mp4"
    bad.write_text("this is text")
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(handle_file(str(bad)), api_name="/reconstruct")
    _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
    assert metrics["num_tokens"] == 16


@pytest.mark.parametrize("args,expect", [
    (["--tokenizer", "/no/such/dir"], "/no/such/dir"),
    (["--checkpoints", "/no/such/checkpoints"], "/no/such/checkpoints"),  # the bundled models' directory
])
def test_app_refuses_missing_weights_with_one_line(args, expect):
    res = subprocess.run([sys.executable, str(REPO / "app.py"), *args], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert expect in res.stderr


needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="Chromium is not installed (CI installs it: apt-get install chromium)")


@pytest.mark.slow
@needs_chromium
def test_browser_end_to_end(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("LARP_LAB_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(BROWSER_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(app_url, wait_until="domcontentloaded")
            page.locator("#rec_btn").wait_for(state="visible", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(CLIP))
            page.locator("#rec_start input").fill("2")  # start 2 s into the clip
            page.wait_for_timeout(500)
            page.click("#rec_btn")
            # what the model saw is said next to the result
            page.locator("#rec_used").get_by_text("8 frames (2.00-2.64 s").wait_for(timeout=60_000)
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


@pytest.mark.slow
@needs_chromium
def test_every_tab_at_desktop_and_phone_width(app_url, tmp_path):
    """Each tab's action runs in the browser; then every tab is shown at 1280x800 and 390x844 and
    screenshotted, with no page or console error, no error message, no sideways scrolling, video
    boxes of bounded height, no label over a figure, and what the model saw next to each result."""
    from PIL import Image

    shots = Path(os.environ.get("LARP_LAB_SCREENSHOTS", tmp_path)) / "tabs"
    res = tour.tour(app_url, CLIP, shots, sizes=(tour.DESKTOP, tour.PHONE), chromium=CHROMIUM, start_s=2.0)
    assert res.problems == []
    names = sorted(p.name for p in res.screenshots)
    sizes = (tour.DESKTOP, tour.PHONE)
    assert names == sorted([f"{t.lower()}_{w}x{h}.png" for t in tour.TABS for w, h in sizes]
                           + [f"reconstruct_patch_{w}x{h}.png" for w, h in sizes])
    for w, h in sizes:  # the Tokenizer menu switched to the patch twin, at both sizes: it says what its tokens are
        line = res.patch_tokens[f"{w}x{h}"]
        assert "Patch tokens" in line and "1x4x4 grid" in line and "The model saw: 8 frames (2.00-2.64 s" in line, line
    for p in res.screenshots:
        with Image.open(p) as im:
            w = int(p.stem.split("_")[-1].split("x")[0])
            assert im.size[0] == w and im.size[1] >= 700, (p.name, im.size)  # whole pages, at the window's width
    for tab in ("Reconstruct", "Predict", "Explore"):  # what the model saw, from the start time given
        assert res.used[tab].startswith("The model saw: 8 frames (2.00-2.64 s"), res.used
        assert "128x128 resized to 32x32" in res.used[tab]
    assert "token " in res.token_hover and "code " in res.token_hover  # the token ids show on hover
    # Training: "Show" gives the final model; the slider scrubs at both sizes (first snapshot, then the second)
    assert res.scrub["shown"].startswith("step 200 (final) of 200 (the final model)"), res.scrub
    assert res.scrub["1280x800"].startswith("step 10 of 200 (snapshot 1 of 4)"), res.scrub
    assert res.scrub["390x844"].startswith("step 40 of 200 (snapshot 2 of 4)"), res.scrub
    assert len(res.video_box_h) == 22 and max(res.video_box_h.values()) <= tour.MAX_VIDEO_BOX_H
