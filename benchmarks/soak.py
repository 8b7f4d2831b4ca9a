"""An hour of steady use: drive every endpoint of a running app with good and bad inputs at a steady rate
for a chosen time, and watch the server.

    python benchmarks/soak.py [--minutes 60] [--out docs/reliability/] [--callers 2] [--interval 1.0]
                              [--bad-fraction 0.3] [--sample-s 5] [--seed 0] [-- APP ARGS]

Starts ``python app.py`` (bundled models unless APP ARGS say otherwise) on a free port of 127.0.0.1
with a private TMPDIR, and stops it at the end (the run stops by itself after ``--minutes``). What it
drives is read from the running app, so new endpoints are picked up:

* every named API endpoint of ``/gradio_api/info`` (``/reconstruct``, ``/generate``, ``/edit_tokens``,
  ``/swap_tokens``, ``/token_influence``, ``/snapshots``, ...): good inputs and bad ones (unreadable or
  empty files, a FileData path outside the upload folder, wrong types, NaN, huge numbers, out-of-range
  values). An endpoint this script has no inputs for is called with its documented example values
  (files: an example clip) and with wrong types, and listed as "new" in the report;
* the page's buttons (``/gradio_api/queue/join`` with the event's index from ``/config``, as the browser
  does): Reconstruct then "Decode from k tokens" in one session, Generate, Predict, Explore, the Surgery
  tab's tokenize, edit, influence and swap in one session, the Training tab's slider; and bad ones
  (an unreadable clip, an unknown class or model, a button whose earlier step was not done). Page events
  it does not know are listed as "not driven".

``--callers`` threads each start a request every ``--interval`` seconds (at once when late); a request
uploads its clips first, as a browser or gradio_client does. Every ``--sample-s`` seconds it records
the server's RSS, open file descriptors (and regular files), threads, and its TMPDIR's size, files,
directories and oldest file. Writes ``soak.json`` (every sample and request, the per-window latency
percentiles, the verdict) and ``soak.png`` in ``--out``, and prints a table.

The verdict (exit status 0 when every judged line holds):

* every good input answered with a result; every bad input a clear error (a message of a sentence
  without traceback or server path, or a 4xx refusal with a JSON reason): never a result, a 5xx, or a
  hang (no answer in ``--timeout`` seconds); the server log holds no traceback but Gradio's own for
  the errors it shows (``gradio.exceptions.Error``);
* RSS and open files flat after warm-up: the least-squares rise over the run's second half at most
  max(50 MB, 5 %) and 4 descriptors;
* temporary files: no file older than the app's retention (outputs 30 min, Gradio's cache checked
  every 15 min) plus a margin; their size and directory count judged flat (peaks of the last quarter
  within 10 % of the third quarter's, + 1 MB, + 50) only when the run lasts at least twice the
  retention, since until the retention is reached the folder grows by design;
* at the end the app exits with status 0 on SIGTERM and leaves no file in its TMPDIR.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the HTTP client shared with tests/app_ui/test_app_http.py

from app_http import (  # noqa: E402
    Answer,
    GradioHTTP,
    app_crashes,
    filedata,
    open_file_paths,
    process_stats,
    server_exceptions,
    tree_files,
    tree_stats,
    unclear,
)

EXAMPLES = ROOT / "examples"
RSS_RISE_MB, RSS_RISE_FRAC, FD_RISE = 50.0, 0.05, 4
TEMP_MARGIN_S = 300.0  #: a temporary file may outlive the retention by this much (the clean-up is periodic)


def app_retention_s() -> tuple[float, float, float]:
    """(outputs kept, Gradio cache clean-up period, Gradio cache age) in seconds, as app.py sets them."""
    from larp_lab.app.handlers import KEEP_S

    m = re.search(r"DELETE_CACHE = \((\d+),\s*(\d+)\)", (ROOT / "app.py").read_text())
    every, age = (int(m.group(1)), int(m.group(2))) if m else (900, 1800)
    return float(KEEP_S), float(every), float(age)


# ------------------------------------------------------------------------------------------ the cases
@dataclass
class Case:
    endpoint: str  #: "/generate" (API) or "ui:on_predict" (a page event)
    kind: str  #: "good" (a result expected), "bad" (a clear error expected), "new" (either, not judged bad)
    name: str
    run: Callable[[GradioHTTP], list[tuple[str, Answer]]]  #: the calls made, each (endpoint, answer)


@dataclass
class Context:
    """What the cases need from the running app and the machine."""

    http: GradioHTTP
    work: Path  #: the soak's own files (never the app's TMPDIR)
    info: dict
    config: dict
    values: dict = field(default_factory=dict)  #: dropdown / slider values by label
    choices: dict = field(default_factory=dict)  #: dropdown choices by label
    fn: dict = field(default_factory=dict)  #: page event name -> (fn_index, trigger id)

    def clip(self, http: GradioHTTP, name: str = "digits_3.mp4") -> dict:
        return filedata(http.upload(EXAMPLES / name))

    def file(self, http: GradioHTTP, name: str) -> dict:
        return filedata(http.upload(self.work / name))


def _make_files(work: Path) -> None:
    (work / "notavideo.mp4").write_text("this is text, not a video\n")
    (work / "empty.mp4").write_bytes(b"")
    (work / "outside.mp4").write_bytes((EXAMPLES / "digits_5.mp4").read_bytes())  # never uploaded


def api_cases(ctx: Context) -> tuple[list[Case], list[str]]:
    """Good and bad calls of every named endpoint; returns (cases, endpoints new to this script)."""
    cls = ctx.choices.get("Class") or ["0"]
    # an argument given as a function is computed per request, with the caller's client (uploads)
    clip, bbb = (lambda h: ctx.clip(h)), (lambda h: ctx.clip(h, "bigbuckbunny_128.mp4"))
    clip_b = lambda h: ctx.clip(h, "digits_7.mp4")
    text, empty = (lambda h: ctx.file(h, "notavideo.mp4")), (lambda h: ctx.file(h, "empty.mp4"))
    outside = lambda h: filedata(str(ctx.work / "outside.mp4"))  # a path the app never received
    any_class, any_seed = (lambda h: random.choice(cls)), (lambda h: random.randrange(10**6))

    def call(api: str, *args) -> Callable[[GradioHTTP], list[tuple[str, Answer]]]:
        def run(http: GradioHTTP) -> list[tuple[str, Answer]]:
            return [(api, http.call(api, [a(http) if callable(a) else a for a in args]))]
        return run

    nan, huge = float("nan"), 10**40
    known: dict[str, list[tuple[str, str, tuple]]] = {
        "/reconstruct": [("good", "a digit clip", (clip,)), ("good", "real footage", (bbb,)),
                         ("bad", "a text file", (text,)), ("bad", "an empty file", (empty,)),
                         ("bad", "a path outside the upload folder", (outside,)),
                         ("bad", "a number for the video", (123,)), ("bad", "no video", (None,))],
        "/generate": [("good", "a class", (any_class, 1.5, 1.0, 0, 1.0, any_seed)),
                      ("good", "greedy, top-k", (any_class, 0.0, 0.0, 5, 0.9, 1)),
                      ("bad", "an unknown class", ("no such class", 1.5, 1.0, 0, 1.0, 0)),
                      ("bad", "NaN CFG scale", (cls[0], nan, 1.0, 0, 1.0, 0)),
                      ("bad", "NaN temperature", (cls[0], 1.5, nan, 0, 1.0, 0)),
                      ("bad", "a negative temperature", (cls[0], 1.5, -1.0, 0, 1.0, 0)),
                      ("bad", "top-p above 1", (cls[0], 1.5, 1.0, 0, 5.0, 0)),
                      ("bad", "a huge top-k", (cls[0], 1.5, 1.0, huge, 1.0, 0)),
                      ("bad", "a huge CFG scale", (cls[0], 1e308, 1.0, 0, 1.0, 0)),
                      ("bad", "text for the seed", (cls[0], 1.5, 1.0, 0, 1.0, "abc"))],
        "/edit_tokens": [("good", "two edits", (clip, "1:5, 3:2")),
                         ("bad", "nonsense edits", (clip, "nonsense")),
                         ("bad", "a position out of range", (clip, "99999:1")),
                         ("bad", "a huge code", (clip, f"1:{huge}")),
                         ("bad", "a text file", (text, "1:5"))],
        "/swap_tokens": [("good", "all tokens", (clip, clip_b, "all", "tokens", -1)),
                         ("good", "queries at layer 0", (clip, clip_b, "0-3", "queries", 0)),
                         ("bad", "nonsense positions", (clip, clip_b, "zz", "tokens", -1)),
                         ("bad", "an unknown method", (clip, clip_b, "all", "bogus", -1)),
                         ("bad", "a huge layer", (clip, clip_b, "all", "queries", huge))],
        "/token_influence": [("good", "two codes", (clip, 2)),
                             ("bad", "a negative number of codes", (clip, -3)),
                             ("bad", "a huge number of codes", (clip, huge))],
        "/snapshots": [("good", "the last", (-1,)),
                       ("bad", "a step without a snapshot", (41,)),
                       ("bad", "a huge step", (huge,)),
                       ("bad", "text for the step", ("abc",))],
    }
    cases, new = [], []
    for api, spec in ctx.info.get("named_endpoints", {}).items():
        if api in known:
            cases += [Case(api, kind, name, call(api, *args)) for kind, name, args in known[api]]
            continue
        new.append(api)
        params = spec.get("parameters", [])
        example = [clip if _is_file(p) else p.get("example_input") for p in params]
        cases.append(Case(api, "new", "its documented example values", call(api, *example)))
        for i, p in enumerate(params):  # each parameter of the wrong type
            wrong = text if _is_file(p) else ({"not": "a value"} if p.get("type", {}).get("type") == "string"
                                              else "not a number")
            args = [*example[:i], wrong, *example[i + 1:]]
            cases.append(Case(api, "bad", f"a wrong {p.get('parameter_name', i)}", call(api, *args)))
    return cases, new


def _is_file(param: dict) -> bool:
    return (param.get("python_type") or {}).get("type") == "filepath"


#: the page events this script drives (by the handler's name); others are reported as not driven
UI_EVENTS = ("on_reconstruct", "on_prefix", "on_generate", "on_predict", "on_explore", "on_tokenize", "on_apply",
             "on_influence", "on_swap", "on_scrub")


def ui_cases(ctx: Context) -> tuple[list[Case], list[str]]:
    """Good and bad runs of the page's buttons; returns (cases, page events not driven)."""
    v, fn = ctx.values, ctx.fn
    tok, gen, pred = v.get("Tokenizer"), v.get("Generator"), v.get("Frame predictor")
    cls = ctx.choices.get("Class") or ["0"]
    clip, text = (lambda h: ctx.clip(h)), (lambda h: ctx.file(h, "notavideo.mp4"))
    k = v.get("k (tokens kept)", 8)
    layer = v.get("Encoder layer", 0)
    cond = v.get("Conditioning frames", 1)
    snaps = int(v.get("Snapshot (left: the first; right end: the final model)", 0) or 0)

    def steps(*calls: tuple[str, tuple]) -> Callable[[GradioHTTP], list[tuple[str, Answer]]]:
        """Events run one after the other in one session (a user's clicks); stops at the first error."""
        def run(http: GradioHTTP) -> list[tuple[str, Answer]]:
            session, out = uuid.uuid4().hex, []
            for name, args in calls:
                index, trigger = fn[name]
                ans = http.join(index, [a(http) if callable(a) else a for a in args], session_hash=session,
                                trigger_id=trigger)
                out.append((f"ui:{name}", ans))
                if not ans.ok:
                    break
            return out
        return run

    wanted = [
        ("good", "reconstruct, then decode from k tokens", [("on_reconstruct", (tok, gen, clip, 0)),
                                                           ("on_prefix", (tok, gen, None, max(1, k // 2), "prior"))]),
        ("good", "generate two samples", [("on_generate", (tok, gen, lambda h: random.choice(cls), 2, 1.5, 1.0, 0,
                                                           1.0, lambda h: random.randrange(10**6)))]),
        ("good", "predict", [("on_predict", (tok, pred, clip, 0, cond, 0))]),
        ("good", "explore", [("on_explore", (tok, clip, 0, 0, layer, "mean"))]),
        ("good", "tokenize, edit, influence, swap", [("on_tokenize", (tok, clip, 0)), ("on_apply", (tok, None, "1:5")),
                                                    ("on_influence", (tok, None, 2, 0)),
                                                    ("on_swap", (tok, None, clip, 0, "0-3", "tokens", layer))]),
        ("good", "scrub the training snapshots", [("on_scrub", (lambda h: random.randint(0, snaps),))]),
        ("bad", "reconstruct a text file", [("on_reconstruct", (tok, gen, text, 0))]),
        ("bad", "reconstruct with an unknown tokenizer", [("on_reconstruct", ("../../etc/passwd", gen, clip, 0))]),
        ("bad", "reconstruct from a NaN start", [("on_reconstruct", (tok, gen, clip, float("nan")))]),
        ("bad", "decode from k tokens before reconstructing", [("on_prefix", (tok, gen, None, 1, "prior"))]),
        ("bad", "generate an unknown class", [("on_generate", (tok, gen, "no such class", 1, 1.5, 1.0, 0, 1.0, 0))]),
        ("bad", "predict a text file", [("on_predict", (tok, pred, text, 0, cond, 0))]),
        ("bad", "predict with a huge number of frames", [("on_predict", (tok, pred, clip, 0, 10**12, 0))]),
        ("bad", "explore a query out of range", [("on_explore", (tok, clip, 0, 10**6, layer, "mean"))]),
        ("bad", "edit before tokenizing", [("on_apply", (tok, None, "1:5"))]),
    ]
    cases = []
    for kind, name, calls in wanted:
        if all(c[0] in fn for c in calls) and (tok is not None):
            if any(c[0] in ("on_generate",) for c in calls) and gen is None:
                continue
            if any(c[0] == "on_predict" for c in calls) and pred is None:
                continue
            cases.append(Case(f"ui:{calls[0][0]}", kind, name, steps(*calls)))
    not_driven = sorted({d.get("api_name") or str(d.get("id")) for d in ctx.config.get("dependencies", [])
                         if d.get("api_visibility") == "private" and d.get("api_name") not in UI_EVENTS})
    return cases, not_driven


def read_page(ctx: Context) -> None:
    comps = {c["id"]: c for c in ctx.config.get("components", [])}
    for c in comps.values():
        p = c.get("props", {})
        if c.get("type") in ("dropdown", "slider", "radio", "number") and p.get("label"):
            ctx.values.setdefault(p["label"], p.get("value"))
            if p.get("choices"):
                ctx.choices.setdefault(p["label"], [ch[1] if isinstance(ch, list | tuple) else ch
                                                    for ch in p["choices"]])
    for i, d in enumerate(ctx.config.get("dependencies", [])):
        name = d.get("api_name")
        if name and name not in ctx.fn:
            trigger = d.get("targets", [[None]])[0][0] if d.get("targets") else None
            ctx.fn[name] = (d.get("id", i), trigger)


# ------------------------------------------------------------------------------------------ the run
@dataclass
class Request:
    t: float  #: seconds since the start, when it was sent
    endpoint: str
    kind: str
    case: str
    ok: bool
    seconds: float
    status: int
    error: str | None
    problem: str | None  #: why it fails the verdict (None: as expected)


def judge(kind: str, ans: Answer, server_paths: tuple[str, ...]) -> str | None:
    if kind == "good":
        return None if ans.ok else f"a good input failed: {ans.summary()[:300]}"
    if kind == "bad":
        why = unclear(ans, server_paths=server_paths)
        return None if why is None else f"not a clear error: {why}"
    if ans.ok:  # "new": a result, or a clear error
        return None
    why = unclear(ans, server_paths=server_paths)
    return None if why is None else f"not a clear error: {why}"


def slope_rise(ts: list[float], ys: list[float]) -> float:
    """The least-squares line's rise across the span of ``ts``."""
    n = len(ts)
    if n < 3:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var
    return slope * (ts[-1] - ts[0])


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run_soak(args: argparse.Namespace) -> dict:
    from larp_lab.app.tour import app_process

    rng = random.Random(args.seed)
    random.seed(args.seed)  # the good inputs' classes and seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    duration = args.minutes * 60.0
    tmp = Path(tempfile.mkdtemp(prefix="larp_lab_soak_"))
    app_tmp, work = tmp / "app_tmpdir", tmp / "client"
    app_tmp.mkdir()
    work.mkdir()
    _make_files(work)
    log_path = tmp / "app.log"
    result: dict = {"config": {k: v for k, v in vars(args).items()}, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                                  time.gmtime())}
    keep_s, every_s, age_s = app_retention_s()
    try:
        t_launch = time.perf_counter()
        env = {"OMP_NUM_THREADS": "1", **dict(kv.split("=", 1) for kv in args.app_env), "TMPDIR": str(app_tmp)}
        with app_process(ROOT / "app.py", args.app_args, env=env, log_path=log_path) as app:
            http = GradioHTTP(app.url, timeout_s=args.timeout)
            # what the app made before serving: the page's example clips and default values, which Gradio
            # copies into its cache at start-up and keeps on purpose ("keep_in_cache") for the page's
            # lifetime; they are not subject to the retention rule (their count is still sampled)
            startup = frozenset(tree_files(app_tmp))
            ctx = Context(http, work, http.info(), http.config())
            ready_s = time.perf_counter() - t_launch
            read_page(ctx)
            a_cases, new = api_cases(ctx)
            u_cases, not_driven = ui_cases(ctx)
            cases = a_cases + u_cases
            if "/snapshots" in ctx.info.get("named_endpoints", {}) and not http.call("/snapshots", [-1]).ok:
                cases = [c for c in cases if not (c.endpoint == "/snapshots" and c.kind == "good")]
                cases = [c for c in cases if not (c.endpoint == "ui:on_scrub" and c.kind == "good")]
            good = [c for c in cases if c.kind in ("good", "new")]
            bad = [c for c in cases if c.kind == "bad"]
            result["app"] = {"args": args.app_args, "url": app.url, "pid": app.proc.pid, "ready_s": round(ready_s, 2),
                             "retention_s": {"outputs": keep_s, "gradio_cache_every": every_s,
                                             "gradio_cache_age": age_s},
                             "startup_files": sorted(startup)}
            result["endpoints"] = {"api": sorted(ctx.info.get("named_endpoints", {})), "api_new": new,
                                   "ui_driven": sorted({c.endpoint for c in u_cases}), "ui_not_driven": not_driven,
                                   "cases": [{"endpoint": c.endpoint, "kind": c.kind, "name": c.name} for c in cases]}
            server_paths = (str(app_tmp),)  # the app's files (the client's own paths may be echoed)
            requests: list[Request] = []
            samples: list[dict] = []
            lock = threading.Lock()
            stop = threading.Event()
            t0 = time.perf_counter()
            plan = iter(_plan(good, bad, args.bad_fraction, rng))

            def sampler() -> None:
                while not stop.is_set():
                    t = time.perf_counter() - t0
                    try:
                        ps = process_stats(app.proc.pid)
                    except Exception:  # the app has gone: recorded as missing samples
                        break
                    ts = tree_stats(app_tmp, exclude=startup)
                    samples.append({"t": round(t, 2), "rss_mb": round(ps.rss_mb, 1), "fds": ps.fds,
                                    "open_files": ps.open_files, "threads": ps.threads, "temp_bytes": ts.bytes,
                                    "temp_files": ts.files, "temp_dirs": ts.dirs,
                                    "oldest_file_s": round(ts.oldest_file_s, 1), "oldest_file": ts.oldest_file,
                                    "startup_files": len(startup & tree_files(app_tmp))})
                    stop.wait(args.sample_s)

            def caller(i: int) -> None:
                with GradioHTTP(app.url, timeout_s=args.timeout) as h:
                    nxt = time.perf_counter() + i * args.interval / max(args.callers, 1)
                    while True:
                        stop.wait(max(0.0, nxt - time.perf_counter()))
                        if stop.is_set():
                            return
                        with lock:
                            case = next(plan)
                        start = time.perf_counter()
                        try:
                            answers = case.run(h)
                        except Exception as exc:  # the client itself failed: counts as a problem
                            answers = [(case.endpoint, Answer(False, 0, time.perf_counter() - start,
                                                              error=f"client error: {type(exc).__name__}: {exc}"))]
                        for k, (ep, ans) in enumerate(answers):
                            # in a sequence of clicks only the last one may be the bad input
                            kind = case.kind if k == len(answers) - 1 else "good"
                            requests.append(Request(round(start - t0, 2), ep, kind, case.name, ans.ok,
                                                    round(ans.seconds, 3), ans.status,
                                                    None if ans.error is None else ans.error[:300],
                                                    judge(kind, ans, server_paths)))
                        nxt = max(nxt + args.interval, time.perf_counter() - args.interval)

            threads = [threading.Thread(target=sampler, daemon=True)]
            threads += [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(args.callers)]
            for th in threads:
                th.start()
            last_print = 0.0
            while time.perf_counter() - t0 < duration:
                time.sleep(1.0)
                el = time.perf_counter() - t0
                if args.progress and el - last_print >= args.progress:
                    last_print = el
                    s = samples[-1] if samples else {}
                    print(f"[{el / 60:5.1f} min] {len(requests)} requests, "
                          f"{sum(r.problem is not None for r in requests)} problems; RSS {s.get('rss_mb')} MB, "
                          f"fds {s.get('fds')}, temp {s.get('temp_bytes', 0) / 2**20:.1f} MB", flush=True)
                if app.proc.poll() is not None:
                    break
            stop.set()
            for th in threads[1:]:
                th.join(args.timeout + 30)
            threads[0].join(10)
            alive = app.proc.poll() is None
            files_open: dict[str, int] = {}
            for f in open_file_paths(app.proc.pid) if alive else []:
                files_open[f] = files_open.get(f, 0) + 1
            after = http.call("/reconstruct", [ctx.clip(http)]) if alive and "/reconstruct" in ctx.info.get(
                "named_endpoints", {}) else None
            http.close()
            exit_code = app.stop(60)
        left = [str(p.relative_to(app_tmp)) for p in app_tmp.rglob("*") if p.is_file()]
        log_text = log_path.read_text(errors="replace")
        result.update(samples=samples, requests=[asdict(r) for r in requests])
        result["end"] = {"alive_at_end": alive, "served_after_the_run": bool(after and after.ok),
                         "exit_code": exit_code, "files_left_in_tmpdir": left[:20], "n_files_left": len(left),
                         "server_exceptions": server_exceptions(log_text), "app_crashes": app_crashes(log_text),
                         "files_open_at_end": files_open}
        result["windows"] = windows(requests, duration)
        result["per_endpoint"] = per_endpoint(requests)
        result["verdict"] = verdict(result, duration, (keep_s, every_s, age_s))
    finally:
        if args.keep_log:
            shutil.copy(log_path, out / "soak_app.log") if log_path.exists() else None
        shutil.rmtree(tmp, ignore_errors=True)
    (out / "soak.json").write_text(json.dumps(result, default=str, allow_nan=True))
    plot(result, out / "soak.png")
    return result


def _plan(good: list[Case], bad: list[Case], bad_fraction: float, rng: random.Random):
    """Every good case once (the warm-up), every bad case once, then a seeded mix."""
    yield from good
    yield from bad
    while True:
        pool = bad if bad and rng.random() < bad_fraction else good
        yield rng.choice(pool)


def windows(requests: list[Request], duration: float) -> list[dict]:
    """Latency percentiles of the good requests per time window (a minute, or a tenth of a short run)."""
    w = max(10.0, min(60.0, duration / 10))
    out = []
    for i in range(max(1, math.ceil(duration / w))):
        lo, hi = i * w, (i + 1) * w
        rs = [r for r in requests if lo <= r.t < hi]
        g = [r.seconds for r in rs if r.kind == "good" and r.ok]
        out.append({"t0": lo, "t1": hi, "n": len(rs), "good": len(g), "bad": sum(r.kind == "bad" for r in rs),
                    "problems": sum(r.problem is not None for r in rs),
                    "p50_s": round(percentile(g, 50), 3), "p95_s": round(percentile(g, 95), 3),
                    "p99_s": round(percentile(g, 99), 3), "max_s": round(max(g), 3) if g else float("nan")})
    return out


def per_endpoint(requests: list[Request]) -> dict:
    out: dict[str, dict] = {}
    for ep in sorted({r.endpoint for r in requests}):
        rs = [r for r in requests if r.endpoint == ep]
        g = [r.seconds for r in rs if r.kind != "bad" and r.ok]
        b = [r.seconds for r in rs if r.kind == "bad"]
        out[ep] = {"good": sum(r.kind != "bad" for r in rs), "bad": len(b),
                   "good_failed": sum(r.kind != "bad" and r.problem is not None for r in rs),
                   "bad_unclear": sum(r.kind == "bad" and r.problem is not None for r in rs),
                   "p50_s": round(percentile(g, 50), 3), "p95_s": round(percentile(g, 95), 3),
                   "max_s": round(max(g), 3) if g else float("nan"),
                   "bad_p95_s": round(percentile(b, 95), 3)}
    return out


def verdict(result: dict, duration: float, retention: tuple[float, float, float]) -> dict:
    keep_s, every_s, age_s = retention
    req, samples, end = result["requests"], result["samples"], result["end"]
    lines: dict[str, dict] = {}

    def line(name: str, ok: bool | None, detail: str) -> None:
        lines[name] = {"ok": ok, "detail": detail}

    goods = [r for r in req if r["kind"] != "bad"]
    failed = [r for r in goods if r["problem"]]
    line("good inputs answered", not failed and bool(goods),
         f"{len(goods) - len(failed)} of {len(goods)}" + (f"; e.g. {failed[0]['endpoint']} ({failed[0]['case']}): "
                                                         f"{failed[0]['problem']}" if failed else ""))
    bads = [r for r in req if r["kind"] == "bad"]
    unclear_ = [r for r in bads if r["problem"]]
    line("bad inputs: clear errors", not unclear_ and bool(bads),
         f"{len(bads) - len(unclear_)} of {len(bads)}" + (f"; e.g. {unclear_[0]['endpoint']} ({unclear_[0]['case']}): "
                                                         f"{unclear_[0]['problem']}" if unclear_ else ""))
    crashes = end["app_crashes"]
    line("server log: no crash", not crashes,
         f"exceptions escaping the app's code: {crashes or 'none'}; all tracebacks by type (gr.Error: bad input "
         f"answered by the app; others: Gradio refusing malformed input): {end['server_exceptions'] or 'none'}")
    line("still serving, clean exit", end["alive_at_end"] and end["served_after_the_run"] and end["exit_code"] == 0
         and end["n_files_left"] == 0,
         f"alive {end['alive_at_end']}, served after the run {end['served_after_the_run']}, exit code "
         f"{end['exit_code']}, files left in TMPDIR {end['n_files_left']}")
    half = [s for s in samples if s["t"] >= duration / 2]
    if len(half) >= 3:
        ts = [s["t"] for s in half]
        rss = [s["rss_mb"] for s in half]
        rise = slope_rise(ts, rss)
        tol = max(RSS_RISE_MB, RSS_RISE_FRAC * percentile(rss, 50))
        line("RSS flat in the second half", rise <= tol,
             f"{samples[0]['rss_mb']:.0f} MB at the start, {half[0]['rss_mb']:.0f} at half time, "
             f"{half[-1]['rss_mb']:.0f} at the end; fitted rise over the second half {rise:+.1f} MB "
             f"(allowed {tol:.0f})")
        fds = [s["fds"] for s in half]
        rise_fd = slope_rise(ts, fds)
        line("open files flat in the second half", rise_fd <= FD_RISE,
             f"descriptors {samples[0]['fds']} at the start, {half[0]['fds']} at half time, {half[-1]['fds']} at "
             f"the end (regular files {half[-1]['open_files']}); fitted rise {rise_fd:+.1f} (allowed {FD_RISE})")
    else:
        line("RSS flat in the second half", None, "too few samples")
        line("open files flat in the second half", None, "too few samples")
    bound = max(keep_s, every_s + age_s) + TEMP_MARGIN_S
    worst = max(samples, key=lambda s: s["oldest_file_s"], default=None)
    oldest = worst["oldest_file_s"] if worst else 0.0
    n_start = len(result.get("app", {}).get("startup_files", []))
    line("no temporary file outlives the retention", oldest <= bound,
         f"oldest file seen {oldest:.0f} s (allowed {bound:.0f} s)"
         + (f": {worst['oldest_file']}" if worst and worst.get("oldest_file") else "")
         + f"; the {n_start} files made at start-up (the page's examples, kept by Gradio) not counted")
    peak = lambda key, a, b: max((s[key] for s in samples if a <= s["t"] < b), default=0)
    if duration >= 2 * keep_s and samples:
        q3, q4 = (peak("temp_bytes", duration / 2, 3 * duration / 4), peak("temp_bytes", 3 * duration / 4, duration + 1))
        d3, d4 = (peak("temp_dirs", duration / 2, 3 * duration / 4), peak("temp_dirs", 3 * duration / 4, duration + 1))
        line("temporary files flat after the retention", q4 <= 1.1 * q3 + 2**20 and d4 <= 1.1 * d3 + 50,
             f"peak {q3 / 2**20:.1f} MB and {d3} directories in the third quarter, {q4 / 2**20:.1f} MB and {d4} "
             f"directories in the last")
    else:
        last = samples[-1] if samples else {"temp_bytes": 0, "temp_files": 0, "temp_dirs": 0}
        line("temporary files flat after the retention", None,
             f"not judged: outputs are kept {keep_s / 60:.0f} min, so the folder grows for that long by design "
             f"(run >= {2 * keep_s / 60:.0f} min to judge); at the end {last['temp_bytes'] / 2**20:.1f} MB in "
             f"{last['temp_files']} files, {last['temp_dirs']} directories")
    judged = [v["ok"] for v in lines.values() if v["ok"] is not None]
    return {"ok": all(judged), "lines": lines}


# ------------------------------------------------------------------------------------------ reports
def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, req, win = result["samples"], result["requests"], result["windows"]
    minutes = lambda xs: [x / 60 for x in xs]
    fig, ax = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    g = [r for r in req if r["kind"] != "bad" and r["ok"]]
    b = [r for r in req if r["kind"] == "bad"]
    ax[0].scatter(minutes([r["t"] for r in g]), [r["seconds"] for r in g], s=4, alpha=0.35, label="good: each")
    ax[0].scatter(minutes([r["t"] for r in b]), [r["seconds"] for r in b], s=4, alpha=0.35, marker="x",
                  label="bad: each")
    mid = minutes([(w["t0"] + w["t1"]) / 2 for w in win])
    for q in ("p50_s", "p95_s", "p99_s"):
        ax[0].plot(mid, [w[q] for w in win], marker="o", ms=3, label=f"good {q[:-2]}")
    ax[0].set_ylabel("latency (s)")
    ax[0].set_yscale("log")
    ax[0].legend(fontsize=7, ncol=3)
    ax[1].plot(minutes([x["t"] for x in s]), [x["rss_mb"] for x in s])
    ax[1].set_ylabel("server RSS (MB)")
    ax[2].plot(minutes([x["t"] for x in s]), [x["fds"] for x in s], label="file descriptors")
    ax[2].plot(minutes([x["t"] for x in s]), [x["open_files"] for x in s], label="regular files")
    ax[2].set_ylabel("open")
    ax[2].legend(fontsize=7)
    ax[3].plot(minutes([x["t"] for x in s]), [x["temp_bytes"] / 2**20 for x in s], label="size (MB)")
    ax3 = ax[3].twinx()
    ax3.plot(minutes([x["t"] for x in s]), [x["temp_files"] for x in s], color="C1", label="files")
    ax3.plot(minutes([x["t"] for x in s]), [x["temp_dirs"] for x in s], color="C2", label="directories")
    ax[3].set_ylabel("TMPDIR (MB)")
    ax3.set_ylabel("count")
    ax[3].legend(loc="upper left", fontsize=7)
    ax3.legend(loc="lower right", fontsize=7)
    ax[3].set_xlabel("minutes")
    dur = result["config"]["minutes"]
    for a in ax:
        a.axvline(dur / 2, color="grey", ls=":", lw=1)
    v = result["verdict"]
    fig.suptitle(f"larp_lab app soak: {dur:g} min, {len(req)} requests; verdict "
                 f"{'OK' if v['ok'] else 'FAILED'} (dotted: the second half, judged for flatness)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(result: dict) -> str:
    rows = [f"{'endpoint':<22} {'good':>5} {'bad':>5} {'failed':>6} {'unclear':>7} {'p50 s':>7} {'p95 s':>7} "
            f"{'max s':>7} {'bad p95':>7}"]
    for ep, e in result["per_endpoint"].items():
        rows.append(f"{ep:<22} {e['good']:>5} {e['bad']:>5} {e['good_failed']:>6} {e['bad_unclear']:>7} "
                    f"{e['p50_s']:>7.2f} {e['p95_s']:>7.2f} {e['max_s']:>7.2f} {e['bad_p95_s']:>7.2f}")
    rows.append("")
    rows.append(f"{'window (min)':<14} {'requests':>8} {'problems':>8} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for w in result["windows"]:
        rows.append(f"{w['t0'] / 60:5.1f}-{w['t1'] / 60:<7.1f} {w['n']:>8} {w['problems']:>8} {w['p50_s']:>7.2f} "
                    f"{w['p95_s']:>7.2f} {w['p99_s']:>7.2f}")
    s = result["samples"]
    if s:
        rows.append("")
        rows.append(f"{'server':<16} {'start':>9} {'half':>9} {'end':>9} {'max':>9}")
        h = next((x for x in s if x["t"] >= result["config"]["minutes"] * 30), s[-1])
        for key, name, f in (("rss_mb", "RSS (MB)", 1), ("fds", "descriptors", 1), ("open_files", "files open", 1),
                             ("threads", "threads", 1), ("temp_bytes", "TMPDIR (MB)", 2**20),
                             ("temp_files", "TMPDIR files", 1), ("temp_dirs", "TMPDIR dirs", 1)):
            rows.append(f"{name:<16} {s[0][key] / f:>9.1f} {h[key] / f:>9.1f} {s[-1][key] / f:>9.1f} "
                        f"{max(x[key] for x in s) / f:>9.1f}")
    if result["end"]["files_open_at_end"]:
        rows.append("")
        rows.append("regular files the server holds open at the end (times): " + "; ".join(
            f"{Path(f).name} ({n})" for f, n in sorted(result["end"]["files_open_at_end"].items(), key=lambda x: -x[1])))
    e = result["endpoints"]
    rows.append("")
    rows.append(f"API endpoints: {', '.join(e['api'])}" + (f" (new to this script: {', '.join(e['api_new'])})"
                                                          if e["api_new"] else ""))
    rows.append(f"page events driven: {', '.join(e['ui_driven'])}; not driven: {', '.join(e['ui_not_driven']) or '-'}")
    rows.append("")
    for name, v in result["verdict"]["lines"].items():
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[v["ok"]]
        rows.append(f"[{mark}] {name}: {v['detail']}")
    rows.append(f"verdict: {'OK' if result['verdict']['ok'] else 'FAILED'}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="how long to drive the app (default 60)")
    p.add_argument("--out", default=str(ROOT / "docs" / "reliability"), help="where soak.json and soak.png go")
    p.add_argument("--callers", type=int, default=2, help="threads calling the app (default 2)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between one caller's requests (default 1)")
    p.add_argument("--bad-fraction", type=float, default=0.3, help="share of bad inputs after the first round")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples of the server (default 5)")
    p.add_argument("--timeout", type=float, default=120.0, help="a request unanswered after this is a hang")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", type=float, default=60.0, help="print a progress line every N s (0: never)")
    p.add_argument("--keep-log", action="store_true", help="copy the server's log to OUT/soak_app.log")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for the app (repeatable; default OMP_NUM_THREADS=1)")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --), e.g. -- --checkpoints DIR")
    args = p.parse_args(argv)
    result = run_soak(args)
    print(table(result))
    print(f"wrote {Path(args.out) / 'soak.json'} and {Path(args.out) / 'soak.png'}")
    return 0 if result["verdict"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
