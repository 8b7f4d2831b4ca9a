"""App speed: time to ready, and the /reconstruct and /generate round trips through the HTTP API.

    python benchmarks/app_latency.py [--tokenizer ...] [--generator ...] [--n 10] [--concurrent 0]

Starts ``python app.py`` on a free port (bundled models unless given), waits until it answers,
then calls the endpoints with gradio_client: ``/reconstruct`` uploads the example clip (upload,
decode, encode, decode, two H.264 encodes, download) and ``/generate`` samples one clip. With
``--concurrent K`` it also fires K reconstruct calls at once and reports p50/p95 latency and how
many completed or were refused. For comparison it also times, in this process, the same job the
app's handler runs (``larp_lab.pipelines.reconstruct`` + ``save_reconstruction``, same tokenizer),
so the difference is the HTTP, upload and Gradio overhead. Prints a table and writes
benchmarks/app_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "examples" / "bigbuckbunny_128.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str]) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    import urllib.request

    while time.perf_counter() - t0 < 180:
        if proc.poll() is not None:
            raise RuntimeError("the app exited")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the app did not start")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def in_process_reconstruct(tokenizer: str | None, n: int) -> dict:
    """Median time of the app handler's job without the app: read, encode, decode, write the files."""
    import tempfile

    import torch

    from larp_lab.bundled import resolve_tokenizer
    from larp_lab.pipelines import reconstruct, save_reconstruction

    tok = resolve_tokenizer(tokenizer or "default", torch.device("cpu"))
    times, model = [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n + 1):  # the first run is a warm-up
            t = time.perf_counter()
            r = reconstruct(tok, CLIP)
            save_reconstruction(r, d, "bench")
            if i:
                times.append(time.perf_counter() - t)
                model.append(r.timings_ms["encode"] + r.timings_ms["decode"])
    return {"p50": statistics.median(times), "p95": pct(times, 0.95), "n": n, "model_ms": statistics.median(model),
            "used": r.source.describe()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--generator", default=None)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--concurrent", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "app_latency.json"))
    a = p.parse_args()
    extra = []
    if a.tokenizer:
        extra += ["--tokenizer", a.tokenizer]
    if a.generator:
        extra += ["--generator", a.generator]
    proc, url, ready = start(extra)
    from gradio_client import Client, handle_file

    res: dict = {"ready_s": ready}
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(CLIP)), api_name="/reconstruct")  # warm-up
        rec = []
        for _ in range(a.n):
            t = time.perf_counter()
            _, metrics = client.predict(handle_file(str(CLIP)), api_name="/reconstruct")
            rec.append(time.perf_counter() - t)
        res["reconstruct_s"] = {"p50": statistics.median(rec), "p95": pct(rec, 0.95), "n": a.n,
                                "model_ms": metrics["encode_ms"] + metrics["decode_ms"]}
        res["reconstruct_in_process_s"] = in_process_reconstruct(a.tokenizer, a.n)
        gen = []
        try:
            client.predict("0", 1.5, 1.0, 0, 1.0, 0, api_name="/generate")
            for i in range(a.n):
                t = time.perf_counter()
                client.predict("0", 1.5, 1.0, 0, 1.0, i, api_name="/generate")
                gen.append(time.perf_counter() - t)
            res["generate_s"] = {"p50": statistics.median(gen), "p95": pct(gen, 0.95), "n": a.n}
        except Exception as exc:  # no generator loaded
            res["generate_s"] = {"error": str(exc)}
        if a.concurrent:
            def one(_):
                t = time.perf_counter()
                try:
                    Client(url, verbose=False).predict(handle_file(str(CLIP)), api_name="/reconstruct")
                    return True, time.perf_counter() - t, ""
                except Exception as exc:
                    return False, time.perf_counter() - t, str(exc)[:200]

            with ThreadPoolExecutor(a.concurrent) as ex:
                out = list(ex.map(one, range(a.concurrent)))
            ok = [d for good, d, _ in out if good]
            res["concurrent"] = {"calls": a.concurrent, "completed": len(ok), "refused": a.concurrent - len(ok),
                                 "p50_s": statistics.median(ok) if ok else None, "p95_s": pct(ok, 0.95) if ok else None,
                                 "errors": sorted({e for good, _, e in out if not good})}
    finally:
        proc.terminate()
        proc.wait(20)
    print(json.dumps(res, indent=2))
    Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
