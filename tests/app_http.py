"""Talking plain HTTP to a running ``app.py``, as a browser or a script would (no gradio_client), and
watching the server process: shared by ``tests/app_ui/test_app_http.py`` and ``benchmarks/soak.py``.

* :class:`GradioHTTP`: upload a file, call a named endpoint (``POST /gradio_api/call/<name>`` and its
  event stream) or any event of the page by its index (``POST /gradio_api/queue/join`` and
  ``/gradio_api/queue/data``, what the page's buttons do), each answer an :class:`Answer`;
* :func:`unclear`: why an answer to a bad input is not a clear error (None when it is);
* :func:`server_exceptions`: the exception types of the tracebacks in the server's log;
* :func:`process_stats`, :func:`tree_stats`: a process's RSS and open files, a folder's size.

The app itself is started by :func:`larp_lab.app.tour.app_process`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: what a clear error message may not contain: a Python traceback or a frame of one
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "')
MAX_MESSAGE = 1000  #: characters (the app says a sentence; Gradio refusing the wrong number of inputs lists them: ~600)


@dataclass
class Answer:
    """One request's outcome. ``ok``: a result (``data``); otherwise ``error`` holds the message shown
    to the user (a gr.Error), or the HTTP body when the request was refused before the queue."""

    ok: bool
    status: int  #: HTTP status of the request that submitted the call (200 when it was queued)
    seconds: float
    data: Any = None
    error: str | None = None
    hang: bool = False  #: no answer within the timeout

    def summary(self) -> str:
        if self.ok:
            return "ok"
        return f"HTTP {self.status}: {self.error!r}" + (" (no answer: timed out)" if self.hang else "")


def filedata(path: str) -> dict:
    """A Gradio FileData value naming a file on the server (as the page sends an uploaded file)."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


class GradioHTTP:
    """A minimal client of a Gradio 6 app's HTTP API (httpx)."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        import httpx

        self.url = url if url.endswith("/") else url + "/"
        self.timeout_s = timeout_s
        self.http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GradioHTTP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- discovery
    def info(self) -> dict:
        """``/gradio_api/info``: the named API endpoints, their parameters and returns."""
        return self.http.get(self.url + "gradio_api/info").raise_for_status().json()

    def config(self) -> dict:
        """``/config``: the page's components and events (``dependencies``)."""
        return self.http.get(self.url + "config").raise_for_status().json()

    # ---------------------------------------------------------------------------------- files
    def upload(self, path: str | Path, name: str | None = None) -> str:
        """Upload a file; returns its path on the server (inside Gradio's upload folder)."""
        with open(path, "rb") as f:
            r = self.http.post(self.url + "gradio_api/upload", files={"files": (name or Path(path).name, f)})
        r.raise_for_status()
        return r.json()[0]

    def get_file(self, path_or_url: str):
        """GET a file the app serves (``/gradio_api/file=<path>`` or a full URL); the httpx response."""
        url = path_or_url if "://" in path_or_url else f"{self.url}gradio_api/file={path_or_url}"
        return self.http.get(url)

    # ---------------------------------------------------------------------------------- calls
    def call(self, api_name: str, data: list | None = None, *, body: bytes | None = None,
             timeout_s: float | None = None) -> Answer:
        """Call the named endpoint ``/api_name`` with ``data`` (or a raw request ``body``, e.g. bad JSON)."""
        t0 = time.perf_counter()
        name = api_name.strip("/")
        r = self.http.post(f"{self.url}gradio_api/call/{name}", content=body if body is not None else _json({"data": data}),
                           headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return Answer(False, r.status_code, time.perf_counter() - t0, error=r.text)
        event_id = r.json()["event_id"]
        return self._stream(f"{self.url}gradio_api/call/{name}/{event_id}", None, t0, timeout_s, r.status_code)

    def join(self, fn_index: int, data: list, *, session_hash: str | None = None, trigger_id: int | None = None,
             timeout_s: float | None = None) -> Answer:
        """Run the page's event ``fn_index`` (a button's action) in session ``session_hash`` (a new one when
        None), as the page does: join the queue, then read the session's event stream until it completes."""
        t0 = time.perf_counter()
        session_hash = session_hash or uuid.uuid4().hex
        r = self.http.post(self.url + "gradio_api/queue/join",
                           content=_json({"data": data, "fn_index": fn_index, "session_hash": session_hash,
                                          "event_data": None, "trigger_id": trigger_id}),
                           headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return Answer(False, r.status_code, time.perf_counter() - t0, error=r.text)
        event_id = r.json()["event_id"]
        return self._stream(f"{self.url}gradio_api/queue/data?session_hash={session_hash}", event_id, t0,
                            timeout_s, r.status_code)

    def _stream(self, url: str, event_id: str | None, t0: float, timeout_s: float | None, status: int) -> Answer:
        """Read a server-sent event stream until the call completes (``event_id``: a queue/data stream)."""
        import httpx

        deadline = t0 + (timeout_s or self.timeout_s)
        event = None
        try:
            with self.http.stream("GET", url) as s:
                for line in s.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                        continue
                    if not line.startswith("data:"):
                        if time.perf_counter() > deadline:
                            break
                        continue
                    payload = json.loads(line[5:])
                    if event_id is None:  # /call/<name>/<event_id>: "event: complete|error|heartbeat|generating"
                        if event == "complete":
                            return Answer(True, status, time.perf_counter() - t0, data=payload)
                        if event == "error":
                            return Answer(False, status, time.perf_counter() - t0, error=_message(payload))
                    elif payload.get("event_id") == event_id and payload.get("msg") == "process_completed":
                        out = payload.get("output") or {}
                        if payload.get("success"):
                            return Answer(True, status, time.perf_counter() - t0, data=out.get("data"))
                        return Answer(False, status, time.perf_counter() - t0, error=_message(out))
                    elif payload.get("msg") == "unexpected_error":
                        return Answer(False, status, time.perf_counter() - t0, error=_message(payload))
                    if time.perf_counter() > deadline:
                        break
        except httpx.TimeoutException:
            pass
        return Answer(False, status, time.perf_counter() - t0, error="no answer", hang=True)


def _json(payload: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity as the bare words a hostile client may send (httpx's own
    encoder refuses them)."""
    return json.dumps(payload, allow_nan=True).encode()


def _message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("error", "message"):
            if payload.get(key) is not None:
                return str(payload[key])
        return None
    return None if payload is None else str(payload)


def unclear(answer: Answer, *, server_paths: tuple[str, ...] = ()) -> str | None:
    """Why ``answer`` (to a bad input) is not a clear error, or None when it is one: a message shown to the
    user (a sentence, no traceback, none of ``server_paths``), or a request refused with a 4xx status and
    a JSON reason (what FastAPI answers to malformed JSON or a body of the wrong shape). Not clear: a
    result, a 5xx, no answer, an empty message, a traceback, a server path."""
    if answer.ok:
        return "answered with a result"
    if answer.hang:
        return "no answer before the timeout"
    msg = answer.error or ""
    if answer.status != 200:
        if not 400 <= answer.status < 500:
            return f"HTTP {answer.status}"
        try:
            json.loads(msg)
        except ValueError:
            return f"HTTP {answer.status} without a JSON reason: {msg[:200]!r}"
        if "Traceback" in msg:
            return "a traceback in the HTTP reason"
        return None
    if not msg.strip():
        return "an error without a message"
    if any(m in msg for m in TRACEBACK_MARKS):
        return f"a traceback in the message: {msg[:200]!r}"
    if len(msg) > MAX_MESSAGE:
        return f"a message of {len(msg)} characters"
    for p in server_paths:
        if p and p in msg:
            return f"a server path in the message: {msg!r}"
    return None


def tracebacks(log_text: str, app_code: tuple[str, ...] = ("/app.py\"", "/larp_lab/")) -> list[tuple[str, bool]]:
    """The tracebacks in a server log: (the exception type ending each, whether one of its frames is in the
    app's own code, ``app_code``). A chained exception ("During handling of the above exception") counts
    as its own traceback."""
    found: list[tuple[str, bool]] = []
    in_tb, in_app = False, False
    for line in log_text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb, in_app = True, False
        elif in_tb and line.lstrip().startswith('File "'):
            in_app = in_app or any(m in line for m in app_code)
        elif in_tb and line and not line[0].isspace():
            found.append((line.split(":")[0], in_app))
            in_tb = False
    return found


def server_exceptions(log_text: str) -> dict[str, int]:
    """The exception types ending the tracebacks in a server log, with their counts."""
    found: dict[str, int] = {}
    for name, _ in tracebacks(log_text):
        found[name] = found.get(name, 0) + 1
    return found


def app_crashes(log_text: str) -> dict[str, int]:
    """The exceptions, by type and count, that escaped the app's own code (a traceback through ``app.py`` or
    ``larp_lab`` ending in anything but the ``gr.Error`` the app raises for bad input). Gradio's own
    refusals of malformed input, before any handler runs, are not counted: they are answered to the
    caller with Gradio's message (and logged with a traceback)."""
    found: dict[str, int] = {}
    for name, in_app in tracebacks(log_text):
        if in_app and name != "gradio.exceptions.Error":
            found[name] = found.get(name, 0) + 1
    return found


def open_file_paths(pid: int) -> list[str]:
    """The regular files ``pid`` holds open (from /proc)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/"):
            out.append(target)
    return sorted(out)


# ---------------------------------------------------------------------------------- the server process
@dataclass
class ProcessStats:
    rss_mb: float  #: resident memory of the process and its children
    fds: int  #: open file descriptors (files, sockets, pipes)
    open_files: int  #: of which regular files
    threads: int
    children: int = 0
    detail: dict = field(default_factory=dict)


def process_stats(pid: int) -> ProcessStats:
    """RSS, open file descriptors and threads of ``pid`` and its children (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
        rss = fds = files = threads = 0
        for q in procs:
            try:
                rss += q.memory_info().rss
                fds += q.num_fds()
                files += len(q.open_files())
                threads += q.num_threads()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return ProcessStats(rss / 2**20, fds, files, threads, len(procs) - 1)
    pids = [pid, *_children(pid)]
    rss = fds = files = threads = 0
    for q in pids:
        try:
            status = Path(f"/proc/{q}/status").read_text()
            rss += int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))) * 1024
            threads += int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Threads:")))
            for fd in os.listdir(f"/proc/{q}/fd"):
                fds += 1
                try:
                    if os.readlink(f"/proc/{q}/fd/{fd}").startswith("/"):
                        files += 1
                except OSError:
                    continue
        except (OSError, StopIteration):
            continue
    return ProcessStats(rss / 2**20, fds, files, threads, len(pids) - 1)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for k in kids:
                out += [int(k), *_children(int(k))]
    except OSError:
        pass
    return out


@dataclass
class TreeStats:
    bytes: int
    files: int
    dirs: int
    oldest_file_s: float  #: age of the oldest file not excluded (by mtime), 0 when there is none
    oldest_file: str = ""  #: that file's path relative to the root ("" when there is none)


def tree_files(root: str | Path) -> set[str]:
    """Every file under ``root``, as paths relative to it."""
    return {os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names}


def tree_stats(root: str | Path, exclude: frozenset[str] | set[str] = frozenset()) -> TreeStats:
    """Total size, files, directories and the oldest file's age and path under ``root`` (files vanishing
    meanwhile are skipped). Files in ``exclude`` (paths relative to ``root``) count in the totals but not
    for the oldest file: e.g. the example clips Gradio copies at start-up and keeps on purpose."""
    size = files = dirs = 0
    oldest = now = time.time()
    oldest_path = ""
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            size += st.st_size
            files += 1
            rel = os.path.relpath(path, root)
            if rel not in exclude and st.st_mtime < oldest:
                oldest, oldest_path = st.st_mtime, rel
    return TreeStats(size, files, dirs, now - oldest if oldest_path else 0.0, oldest_path)
