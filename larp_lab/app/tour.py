"""A tour of the running app in a headless Chromium (Playwright): every tab's action is run on a clip,
then every tab is shown and screenshotted at each window size, with the problems a user would see;
at each size, the Tokenizer menu is also switched to a patch-token tokenizer when the app offers one, and
a clip reconstructed with it.

Used by ``tests/test_app.py`` (CI) and ``scripts/app_screens.py`` (the pictures in ``docs/screens/``).
Playwright is a dev dependency, imported when :func:`tour` runs. A problem is one sentence: a page
error or console error, an error message shown by the app, a page wider than the window (sideways
scrolling on a phone), a video box taller than the app allows, or a label floating over a figure.

:func:`app_process` (and :func:`running_app`, its URL only) starts ``app.py`` on a free port for the
tests, the screenshots and ``benchmarks/soak.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DESKTOP = (1280, 800)
PHONE = (390, 844)
TABS = ("Reconstruct", "Generate", "Predict", "Explore", "Surgery", "Training")
#: a video box may be at most this tall (px); the app asks for 300 plus its label and buttons
MAX_VIDEO_BOX_H = 420
BROWSER_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage")

# what each tab's button leaves on the page when it has answered (JavaScript predicates)
_DONE = {
    "Reconstruct": "() => { const v = document.querySelector('#prefix_out video');"
                   " return !!v && v.readyState >= 2; }",
    "Generate": "() => document.querySelectorAll('#gallery video, #gallery img').length > 0"
                " && !!document.querySelector('#gen_surprisal img')",
    "Predict": "() => { const v = document.querySelector('#pred_out video');"
               " return !!v && v.readyState >= 2; }",
    "Explore": "() => !!document.querySelector('#exp_heat img') && !!document.querySelector('#exp_umap .js-plotly-plot')",
    "Training": "() => !!document.querySelector('#snap_grid img') && !!document.querySelector('#snap_curves img')",
    "Surgery": "() => { const v = document.querySelector('#sur_swap_out video');"
               " return !!v && v.readyState >= 2 && !!document.querySelector('#sur_mosaic img'); }",
}
_USED = {"Reconstruct": "#rec_used", "Predict": "#pred_used", "Explore": "#exp_used"}
#: the figures, captioned by the app (no floating label over them)
FIGURES = ("#rec_psnr", "#rec_tokens", "#gen_surprisal", "#pred_psnr", "#exp_heat", "#exp_surprisal", "#exp_umap",
           "#snap_grid", "#snap_curves", "#sur_grid", "#sur_energy", "#sur_mosaic", "#sur_frame")


@dataclass
class TourResult:
    """What :func:`tour` saw."""

    screenshots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    used: dict[str, str] = field(default_factory=dict)  #: tab -> its "The model saw: ..." line
    token_hover: str = ""  #: the tooltip of a cell of the token-id grid (Reconstruct)
    seconds: dict[str, float] = field(default_factory=dict)  #: tab -> seconds its action took
    video_box_h: dict[str, float] = field(default_factory=dict)  #: "<tab> <w>x<h> <elem>" -> box height (px)
    #: Training tab: "shown" -> its step line after "Show"; "<w>x<h>" -> the line after scrubbing at that size
    scrub: dict[str, str] = field(default_factory=dict)
    #: the Tokenizer menu switched to a patch-token tokenizer (when the app offers one), at each size:
    #: "<w>x<h>" -> the Reconstruct tab's line about the model after reconstructing with it
    patch_tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class AppProcess:
    """A running ``app.py`` (see :func:`app_process`)."""

    proc: subprocess.Popen
    url: str  #: ``http://127.0.0.1:<port>/``
    log_path: Path  #: the server's stdout and stderr

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (what ``kill`` and ``docker stop`` send; the app cleans up), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def app_process(app_py: str | Path, args: list[str], *, env: dict[str, str] | None = None,
                start_timeout_s: float = 180.0, log_path: str | Path | None = None,
                host: str = "127.0.0.1") -> Iterator[AppProcess]:
    """Run ``python app.py --host <host> --port <free port> *args`` (offline, no analytics) and yield it
    once its port answers; the app is stopped on exit. The server's output goes to ``log_path`` (a
    temporary file, removed afterwards, when not given): a file rather than a pipe, since a pipe that
    nobody reads fills up (Gradio logs a traceback for each error it shows, ~2 KB) and then blocks the
    server. Raises RuntimeError (with the end of the app's output) when it does not start."""
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    own_log = log_path is None
    if own_log:
        fd, name = tempfile.mkstemp(prefix="larp_lab_app_", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    with open(log_path, "w") as logf:
        proc = subprocess.Popen([sys.executable, str(app_py), "--host", host, "--port", str(port), *args],
                                cwd=Path(app_py).parent, env=env, stdout=logf, stderr=subprocess.STDOUT, text=True)
    app = AppProcess(proc, f"http://{host}:{port}/", log_path)
    try:
        deadline = time.time() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited: {app.log()[-3000:]}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"the app did not start within {start_timeout_s:.0f} s: "
                                       f"{app.log()[-3000:]}") from None
                time.sleep(0.3)
        yield app
    finally:
        app.stop(15)
        if own_log:
            log_path.unlink(missing_ok=True)


@contextmanager
def running_app(app_py: str | Path, args: list[str], *, env: dict[str, str] | None = None,
                start_timeout_s: float = 180.0) -> Iterator[str]:
    """Run ``python app.py --port <free port> *args`` (offline, no analytics) and yield its URL;
    the app is stopped on exit. Raises RuntimeError (with the app's output) when it does not start."""
    with app_process(app_py, args, env=env, start_timeout_s=start_timeout_s) as app:
        yield app.url


def open_tab(page, name: str) -> None:
    """Select a tab, through the "More tabs" menu when the window is too narrow to show it."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).first.click()
    page.get_by_role("tab", name=name, exact=True).wait_for(state="visible", timeout=10_000)


def _run(page, name: str, clip: str, start_s: float, timeout_ms: int) -> None:
    """Run the tab's action (upload ``clip`` from ``start_s`` s where it takes one) and wait for the answer."""
    if name == "Surgery":
        _surgery(page, clip, timeout_ms)
        page.wait_for_function(_DONE[name], timeout=timeout_ms)
        return
    elem = {"Reconstruct": "rec", "Predict": "pred", "Explore": "exp"}.get(name)
    if elem:
        page.locator(f"#{elem}_in input[type=file]").set_input_files(clip)
        page.locator(f"#{elem}_start input").fill(str(start_s))
        page.wait_for_timeout(300)
    page.click({"Reconstruct": "#rec_btn", "Generate": "#gen_btn", "Predict": "#pred_btn",
                "Explore": "#exp_btn", "Training": "#snap_btn"}[name])
    if name == "Reconstruct":
        page.locator("#rec_used").get_by_text("frames (").wait_for(timeout=timeout_ms)
        page.click("#prefix_btn")
    page.wait_for_function(_DONE[name], timeout=timeout_ms)


def _surgery(page, clip: str, timeout_ms: int) -> None:
    """The Surgery tab: tokenize ``clip``, click a cell of the token grid, decode an edit, map every
    token's influence and click a pixel, then swap tokens with the same clip as B."""
    page.locator("#sur_in input[type=file]").set_input_files(clip)
    page.wait_for_timeout(300)
    page.click("#sur_btn")
    page.wait_for_function("() => !!document.querySelector('#sur_grid img')", timeout=timeout_ms)
    grid = page.locator("#sur_grid img").first
    box = grid.bounding_box()
    grid.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.3})  # a cell: its position is picked
    page.wait_for_timeout(500)
    page.locator("#sur_edits textarea, #sur_edits input").first.fill("2:5")
    page.click("#sur_apply")
    page.wait_for_function("() => { const v = document.querySelector('#sur_out video'); return !!v && v.readyState >= 2; }",
                           timeout=timeout_ms)
    page.click("#sur_inf_btn")
    page.wait_for_function("() => !!document.querySelector('#sur_mosaic img') && !!document.querySelector('#sur_frame img')",
                           timeout=timeout_ms)
    frame = page.locator("#sur_frame img").first
    fb = frame.bounding_box()
    frame.click(position={"x": fb["width"] / 2, "y": fb["height"] / 2})  # which tokens control this pixel
    page.wait_for_timeout(500)
    page.locator("#surb_in input[type=file]").set_input_files(clip)
    page.wait_for_timeout(300)
    page.click("#sur_swap")


def _scrub(page, index: int, timeout_ms: int) -> str:
    """Move the Training tab's snapshot slider to ``index`` and wait for that snapshot's step line (returned)."""
    page.locator("#snap_slider input[type=range]").fill(str(index))
    want = f"snapshot {index + 1} of"
    page.wait_for_function(f"() => {{ const t = (document.querySelector('#snap_step') || {{}}).innerText || '';"
                           f" return t.includes({want!r}) && !t.includes('processing')"
                           " && !!document.querySelector('#snap_grid img'); }", timeout=timeout_ms)
    return " ".join(page.locator("#snap_step").inner_text().split())


def _choose_tokenizer(page, part: str, timeout_ms: int) -> str | None:
    """Pick the first entry of the Tokenizer menu (``#tok_dd``) whose name contains ``part``; its name, or
    None when the menu offers none."""
    page.locator("#tok_dd input").first.click()
    options = page.get_by_role("option").filter(has_text=part)
    try:
        options.first.wait_for(state="visible", timeout=10_000)  # a busy machine opens the menu slowly
    except Exception:  # playwright's TimeoutError: no such tokenizer
        page.keyboard.press("Escape")
        return None
    name = " ".join(options.first.inner_text().split())
    options.first.click()
    page.wait_for_function(f"() => (document.querySelector('#tok_dd input') || {{}}).value === {name!r}",
                           timeout=timeout_ms)
    return name


def _patch_tokens(page, clip: str, start_s: float, size: tuple[int, int], out: Path, res: TourResult,
                  image_format: str, full_page: bool, timeout_ms: int) -> None:
    """Switch the Tokenizer menu to a patch-token tokenizer, reconstruct ``clip`` with it on the
    Reconstruct tab, screenshot it as ``reconstruct_patch_<w>x<h>`` and switch back (issue 19)."""
    first = page.locator("#tok_dd input").first.input_value()
    open_tab(page, "Reconstruct")
    if _choose_tokenizer(page, "patch", timeout_ms) is None:
        return
    page.wait_for_function("() => (document.querySelector('#rec_used') || {}).innerText?.includes('Patch tokens')",
                           timeout=timeout_ms)
    upload = page.locator("#rec_in input[type=file]")
    if upload.count():  # (after the tab's own run the clip is still loaded: no file input then)
        upload.set_input_files(clip)
        page.wait_for_timeout(300)
    page.locator("#rec_start input").fill(str(start_s))
    page.click("#rec_btn")
    page.locator("#rec_used").get_by_text("frames (").wait_for(timeout=timeout_ms)
    page.wait_for_function("() => { const v = document.querySelector('#rec_out video'); return !!v && v.readyState >= 2; }",
                           timeout=timeout_ms)
    w, h = size
    res.patch_tokens[f"{w}x{h}"] = " ".join(page.locator("#rec_used").inner_text().split())
    res.problems += _problems(page, f"Reconstruct with patch tokens at {w}x{h}")
    path = out / f"reconstruct_patch_{w}x{h}.{'png' if image_format == 'png' else 'jpg'}"
    page.screenshot(path=str(path), full_page=full_page, type=image_format,
                    quality=None if image_format == "png" else 80)
    res.screenshots.append(path)
    _choose_tokenizer(page, first, timeout_ms)


def _hover_token_grid(page) -> str:
    """Hover the middle of the token-id grid; the tooltip's text ("" when none shows)."""
    grid = page.locator("#rec_tokens .nsewdrag").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator("#rec_tokens .hovertext")
    try:
        tip.first.wait_for(state="attached", timeout=5_000)
    except Exception:  # playwright's TimeoutError: no tooltip
        return ""
    return " ".join(tip.first.text_content().split())


def _problems(page, label: str) -> list[str]:
    out = []
    toasts = page.locator(".toast-body")
    for i in range(toasts.count()):
        out.append(f"{label}: the app shows a message: {' '.join(toasts.nth(i).inner_text().split())}")
    for fig in FIGURES:  # Gradio's floating label would cover the top of the figure (its title)
        if page.locator(f"{fig} [data-testid=block-label]:visible").count():
            out.append(f"{label}: a label floats over the figure {fig}")
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if width > inner + 1:
        out.append(f"{label}: the page is {width} px wide in a {inner} px window (sideways scrolling)")
    return out


def tour(url: str, clip: str | Path, out_dir: str | Path, *, sizes=(DESKTOP, PHONE), chromium: str | None = None,
         start_s: float = 1.0, timeout_s: float = 120.0, full_page: bool = True, image_format: str = "png",
         ) -> TourResult:
    """Run every tab's action once (at the first size), then show and screenshot every tab at every
    size, as ``<out_dir>/<tab>_<w>x<h>.<image_format>``.

    Args:
        url: the running app. clip: a video file for the tabs that take one, read from ``start_s`` s.
        chromium: the browser executable (None: Playwright's own).
        full_page: the whole page (True) or the window only. image_format: "png" or "jpeg" (smaller).
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg'; got {image_format!r}")
    from playwright.sync_api import sync_playwright

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = TourResult()
    timeout_ms = int(timeout_s * 1000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=list(BROWSER_ARGS))
        try:
            w, h = sizes[0]
            page = browser.new_page(viewport={"width": w, "height": h})
            page.on("pageerror", lambda e: res.problems.append(f"page error: {e}"))
            page.on("console", lambda m: res.problems.append(f"console error: {m.text}") if m.type == "error" else None)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("#rec_btn").wait_for(state="visible", timeout=timeout_ms)
            for name in TABS:
                open_tab(page, name)
                t0 = time.perf_counter()
                _run(page, name, str(clip), start_s, timeout_ms)
                res.seconds[name] = round(time.perf_counter() - t0, 2)
                if name in _USED:
                    res.used[name] = " ".join(page.locator(_USED[name]).inner_text().split())
                if name == "Reconstruct":
                    res.token_hover = _hover_token_grid(page)
                if name == "Training":  # the step line once Gradio's "processing" overlay has gone
                    page.wait_for_function("() => ((document.querySelector('#snap_step') || {}).innerText || '')"
                                           ".trim().startsWith('step')", timeout=timeout_ms)  # no timer left
                    res.scrub["shown"] = " ".join(page.locator("#snap_step").inner_text().split())
            for w, h in sizes:
                page.set_viewport_size({"width": w, "height": h})
                for name in TABS:
                    open_tab(page, name)
                    # plots drawn while their tab was hidden are redrawn on a resize, as when a phone turns
                    page.evaluate("() => window.dispatchEvent(new Event('resize'))")
                    page.wait_for_timeout(400)  # let the layout settle
                    label = f"{name} at {w}x{h}"
                    if name == "Training":  # scrub at every size: to the first snapshot, the second, ...
                        res.scrub[f"{w}x{h}"] = _scrub(page, sizes.index((w, h)), timeout_ms)
                    res.problems += _problems(page, label)
                    for elem in ("rec_in", "rec_out", "prefix_out", "pred_in", "pred_out", "exp_in", "exp_out",
                                 "sur_in", "sur_out", "surb_in", "sur_swap_out"):
                        box = page.locator(f"#{elem}")
                        if box.count() and box.is_visible():
                            res.video_box_h[f"{name} {w}x{h} {elem}"] = box.bounding_box()["height"]
                    path = out / f"{name.lower()}_{w}x{h}.{'png' if image_format == 'png' else 'jpg'}"
                    page.screenshot(path=str(path), full_page=full_page, type=image_format,
                                    quality=None if image_format == "png" else 80)
                    res.screenshots.append(path)
                _patch_tokens(page, str(clip), start_s, (w, h), out, res, image_format, full_page, timeout_ms)
        finally:
            browser.close()
    for key, height in res.video_box_h.items():
        if height > MAX_VIDEO_BOX_H:
            res.problems.append(f"{key}: a video box {height:.0f} px tall (at most {MAX_VIDEO_BOX_H})")
    return res
