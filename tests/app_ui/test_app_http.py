"""The app's HTTP layer, talked to as plain HTTP (httpx, no gradio_client) on one real ``app.py`` process
for the module (``--max-concurrency 1 --max-queue 2``, a private TMPDIR): malformed requests (bad
JSON, wrong types, NaN, huge numbers), FileData paths outside the upload folder, URLs to this machine,
and more concurrent callers than the queue admits. Every one gets a clear error (a sentence without a
traceback or server path, or a 4xx with a JSON reason), never a 500 or a hang, and the app keeps
serving; a secret file outside the upload folder is never read, copied or served; nothing escapes the
app's code as an exception (the server log)."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest
from app_http import Answer, GradioHTTP, app_crashes, filedata, unclear
from conftest import REPO, save_micro_bundle
from snapshot_helpers import add_snapshots_to_bundle

from larp_lab.app.tour import app_process

pytestmark = pytest.mark.slow  # one app process for the module (~10 s to start)

CLIP = REPO / "examples" / "digits_3.mp4"
MAX_CONCURRENCY, MAX_QUEUE = 1, 2
SECRET = "larp-lab-secret-7f3a9c"  #: the secret text file's content: must never come back


class App:
    def __init__(self, proc, tmpdir: Path, secret_dir: Path) -> None:
        self.proc, self.tmpdir, self.secret_dir = proc, tmpdir, secret_dir
        self.url = proc.url
        self.http = GradioHTTP(proc.url, timeout_s=120)
        self.port = int(proc.url.rstrip("/").rsplit(":", 1)[1])

    def upload(self, path: Path = CLIP) -> str:
        return self.http.upload(path)

    def clear(self, ans: Answer, paths_given: bool = False) -> str:
        """The message of a clear error (fails the test when ``ans`` is not one). With ``paths_given`` the
        request named server paths itself, which the message may quote."""
        why = unclear(ans, server_paths=() if paths_given else (str(self.tmpdir),))
        assert why is None, (why, ans)
        assert SECRET not in (ans.error or ""), ans
        return ans.error or ""

    def serves(self) -> None:
        ans = self.http.call("/reconstruct", [filedata(self.upload())])
        assert ans.ok, ans
        assert ans.data[1]["num_tokens"] == 16


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    bundle = save_micro_bundle(tmp_path_factory.mktemp("http_app") / "ckpts", data="digits")
    add_snapshots_to_bundle(bundle, steps=(10, 40), final_steps=100)
    tmpdir = tmp_path_factory.mktemp("http_app_tmpdir")
    secret_dir = tmp_path_factory.mktemp("secret")  # outside the app's TMPDIR, so outside its upload folder
    (secret_dir / "secret.txt").write_text(SECRET)
    # a readable video (reading it would succeed) unlike any file the app has: an example clip with a
    # "free" box of its own at the end, which MP4 readers skip
    mark = SECRET.encode().ljust(24, b"-")
    (secret_dir / "secret.mp4").write_bytes((REPO / "examples" / "digits_9.mp4").read_bytes()
                                            + (8 + len(mark)).to_bytes(4, "big") + b"free" + mark)
    log = tmp_path_factory.mktemp("http_app_log") / "app.log"
    with app_process(REPO / "app.py", ["--checkpoints", str(bundle), "--max-concurrency", str(MAX_CONCURRENCY),
                                       "--max-queue", str(MAX_QUEUE)],
                     env={"TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}, log_path=log) as proc:
        running = App(proc, tmpdir, secret_dir)
        yield running
        running.http.close()
        crashes = app_crashes(proc.log())
    assert not crashes, f"exceptions escaped the app's code: {crashes}"


# ------------------------------------------------------------------------------------------ malformed requests
BAD_BODIES = [
    b"{not json",
    b"",
    b"[1, 2",
    b"null",
    b'{"data": 5}',
    b'{"data": {"a": 1}}',
    b'{"data": "3"}',
    b'{"nodata": []}',
    b"[" * 100_000 + b"]" * 100_000,  # nested past Python's recursion limit
    b'{"data": [' + b"9" * 5000 + b"]}",  # an integer above Python's 4300-digit limit
    b'{"data": ["3", NaN, Infinity, -Infinity, 1e999, 7]}',
    "{\"data\": [\"\udcff\"]}".encode("utf-8", "surrogatepass"),  # not UTF-8
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("api", ["/generate", "/reconstruct", "/snapshots"])
def test_malformed_json_is_refused_clearly(app, api, body):
    app.clear(app.http.call(api, body=body))


@pytest.mark.parametrize("body", BAD_BODIES[:4] + [b'{"data": [], "fn_index": "x", "session_hash": "s"}',
                                                   b'{"data": [], "fn_index": 99999, "session_hash": "s"}',
                                                   b'{"data": [], "fn_index": 1e400, "session_hash": "s"}',
                                                   b'{"data": [1], "fn_index": 0}'],
                         ids=lambda b: repr(b[:24]))
def test_malformed_queue_join_is_refused_clearly(app, body):
    r = app.http.http.post(app.url + "gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"})
    app.clear(Answer(False, r.status_code, 0.0, error=r.text))


NAN, INF, HUGE = float("nan"), float("inf"), 10**40
BAD_CALLS = [  # (endpoint, arguments, the message expected; None: a result or a clear error)
    ("/generate", ["99", 1.5, 1.0, 0, 1.0, 7], "unknown class|outside"),
    ("/generate", [3, 1.5, 1.0, 0, 1.0, 7], None),  # a number for the class: the class "3"
    ("/generate", ["3", NAN, 1.0, 0, 1.0, 7], "CFG scale must lie"),
    ("/generate", ["3", INF, 1.0, 0, 1.0, 7], "CFG scale must lie"),
    ("/generate", ["3", 1.5, NAN, 0, 1.0, 7], "temperature must lie"),
    ("/generate", ["3", 1.5, -INF, 0, 1.0, 7], "temperature must lie"),
    ("/generate", ["3", 1.5, 1.0, 0, NAN, 7], "top-p must lie"),
    ("/generate", ["3", 1.5, 1.0, HUGE, 1.0, 7], "top-k must lie"),
    ("/generate", ["3", 1.5, 1.0, 0, 1.0, HUGE], "."),
    ("/generate", ["3", 1.5, 1.0, 0, 1.0, NAN], "."),
    ("/generate", ["3", "abc", 1.0, 0, 1.0, 7], "CFG scale must lie|number|float"),
    ("/generate", ["3", [1], 1.0, 0, 1.0, 7], "CFG scale must lie"),
    ("/generate", ["3", 1.5, 1.0, 0, 1.0, [7]], "."),
    ("/swap_tokens", ["CLIP", "CLIP", "all", "queries", [0]], "."),
    ("/token_influence", ["CLIP", {"n": 2}], "."),
    ("/generate", ["3", 1.5, 1.0, 0, 1.0], "."),  # too few arguments
    ("/generate", ["3", 1.5, 1.0, 0, 1.0, 7, 8, 9], None),  # too many: Gradio drops the extra ones
    ("/snapshots", [41], "no snapshot at step 41"),
    ("/snapshots", [HUGE], "no snapshot at step"),
    ("/snapshots", [NAN], "."),
    ("/snapshots", ["abc"], "number|float"),
    ("/reconstruct", [123], "."),
    ("/reconstruct", [None], "Upload a video"),
    ("/reconstruct", ["just a string"], "."),
    ("/reconstruct", [{"path": 5, "meta": {"_type": "gradio.FileData"}}], "."),
    ("/reconstruct", [{"meta": {"_type": "gradio.FileData"}}], "."),
    ("/edit_tokens", ["CLIP", "3:" + "9" * 5000], "."),
    ("/edit_tokens", ["CLIP", "nonsense"], "position:code"),
    ("/edit_tokens", ["CLIP", "1:nan"], "."),
    ("/edit_tokens", ["CLIP", "-1:3"], "."),
    ("/swap_tokens", ["CLIP", "CLIP", "all", "queries", HUGE], "layer must lie"),
    ("/swap_tokens", ["CLIP", "CLIP", "0-99999999999999999999", "tokens", -1], "."),
    ("/swap_tokens", ["CLIP", "CLIP", "all", "tokens", NAN], "."),
    ("/swap_tokens", ["CLIP", "CLIP", "all", "bogus", -1], "method must be"),
    ("/token_influence", ["CLIP", HUGE], "replacement codes must lie"),
    ("/token_influence", ["CLIP", -3], "replacement codes must lie"),
    ("/token_influence", ["CLIP", NAN], "."),
]


@pytest.mark.parametrize("api,args,match", BAD_CALLS, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BAD_CALLS)])
def test_wrong_types_nan_and_huge_numbers_get_a_clear_error(app, api, args, match):
    args = [filedata(app.upload()) if a == "CLIP" else a for a in args]
    ans = app.http.call(api, args)
    if match is None and ans.ok:
        return
    msg = app.clear(ans)
    assert re.search(match or ".", msg), msg


def test_the_app_still_serves_after_the_malformed_requests(app):
    app.serves()


# ------------------------------------------------------------------------------------------ files and URLs
def _secret_paths(app: App) -> list[str]:
    """Ways to name the secret files as a path on the server: plain, through the upload folder with
    ``..``, as a file:// URL, relative to the app's working directory."""
    up = Path(app.upload())  # <GRADIO_TEMP_DIR>/<hash>/digits_3.mp4
    out = []
    for name in ("secret.mp4", "secret.txt"):
        p = app.secret_dir / name
        out += [str(p), f"{up.parent}/../../../../../../../..{p}", f"{up.parent}/{os.path.relpath(p, up.parent)}",
                f"file://{p}",
                str(Path("..") / ".." / ".." / ".." / ".." / ".." / ".." / ".." / p.relative_to("/"))]
    return out


def test_filedata_paths_outside_the_upload_folder_are_refused(app):
    for path in [*_secret_paths(app), "/etc/passwd", "/proc/self/environ", str(REPO / "app.py"), "app.py",
                 str(REPO / "examples" / ".." / "pyproject.toml")]:
        for value in (filedata(path), {"path": path, "url": path, "meta": {"_type": "gradio.FileData"}},
                      {"video": filedata(path)}):
            ans = app.http.call("/reconstruct", [value])
            app.clear(ans, paths_given=True)  # an error: the secret video would have been reconstructed
    _nothing_of_the_secret_in_the_app(app)


def test_files_outside_the_upload_folder_are_never_served(app):
    paths = [*_secret_paths(app), "/etc/passwd", "/proc/self/environ", str(REPO / "app.py"), "app.py",
             "pyproject.toml", str(REPO / "checkpoints" / "README.md"), str(REPO / "examples" / ".." / "app.py")]
    for path in paths:
        for url in (f"{app.url}gradio_api/file={path}", f"{app.url}file={path}", f"{app.url}gradio_api/file/{path}"):
            r = app.http.http.get(url)
            assert r.status_code in (400, 403, 404), (url, r.status_code)
            assert SECRET.encode() not in r.content and b"root:" not in r.content, url
    # the folder served on purpose (allowed_paths) is served, the upload folder too
    assert app.http.get_file(str(REPO / "examples" / "digits_3.mp4")).status_code == 200
    assert app.http.get_file(app.upload()).status_code == 200
    _nothing_of_the_secret_in_the_app(app)


@pytest.fixture
def local_server():
    """A web server on this machine that serves the secret video and text and records every request."""
    seen: list[str] = []
    body = (REPO / "examples" / "digits_5.mp4").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            data = SECRET.encode() if self.path.endswith(".txt") else body
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv.server_address[1], seen
    srv.shutdown()
    srv.server_close()


def test_urls_to_this_machine_are_neither_fetched_nor_served(app, local_server):
    port, seen = local_server
    urls = []
    for host in ("127.0.0.1", "localhost", "[::1]", "0.0.0.0", "127.1", "2130706433"):
        urls += [f"http://{host}:{port}/clip.mp4", f"http://{host}:{port}/secret.txt"]
    urls += [f"{app.url}gradio_api/file={app.secret_dir / 'secret.mp4'}",  # the app itself, asked for the secret
             f"http://user@127.0.0.1:{port}/clip.mp4", f"https://127.0.0.1:{port}/clip.mp4"]
    for url in urls:
        for value in ({"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}, filedata(url),
                      {"url": url, "meta": {"_type": "gradio.FileData"}}):
            app.clear(app.http.call("/reconstruct", [value]), paths_given=True)
        for route in (f"{app.url}gradio_api/file={url}", f"{app.url}gradio_api/proxy={url}"):
            r = app.http.http.get(route)
            assert r.status_code in (400, 403, 404), (route, r.status_code, r.text[:200])
            assert SECRET.encode() not in r.content
    assert seen == [], f"the app fetched from this machine: {seen}"
    _nothing_of_the_secret_in_the_app(app)


def _nothing_of_the_secret_in_the_app(app: App) -> None:
    """No copy of a secret file anywhere in the app's TMPDIR (uploads, Gradio's cache, outputs)."""
    video = (app.secret_dir / "secret.mp4").read_bytes()
    for p in app.tmpdir.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            assert SECRET.encode() not in data, p
            assert p.name != "secret.mp4" and data != video, p
    app.serves()


# ------------------------------------------------------------------------------------------ the queue
def test_more_callers_than_the_queue_admits_are_told_the_queue_is_full(app):
    """12 callers at once, against 1 running + 2 waiting: each gets its result or "Queue is full"
    (HTTP 503 with a JSON reason), some get each, nothing hangs, and the app serves afterwards."""
    path = app.upload()
    n = 12
    barrier = threading.Barrier(n)
    results: list[Answer | None] = [None] * n

    def caller(i: int) -> None:
        with GradioHTTP(app.url, timeout_s=180) as h:
            barrier.wait()
            results[i] = h.call("/reconstruct", [filedata(path)])

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r is not None for r in results), results
    ok = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    for r in refused:
        assert r.status == 503 and "Queue is full" in json.loads(r.error)["detail"], r
    assert 1 <= len(ok) and len(refused) >= 1, [r.summary() for r in results]
    assert all(r.data[1]["num_tokens"] == 16 for r in ok)
    app.serves()
