"""Measuring helpers for the reliability tests: CLI subprocesses with their own peak RSS, in-process
peak RSS growth, percentiles (Linux: ``/proc/self/status`` and ``/proc/self/clear_refs``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float  #: the process's own peak resident set size (VmHWM at exit); nan if it was killed
    timed_out: bool

    def error_lines(self) -> list[str]:
        """Non-empty stderr lines, except ``warning:`` lines."""
        return [ln for ln in self.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]


def cli_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)


#: ``python -c`` program that runs ``python -m larp_lab ARGS`` and, at exit, writes its peak RSS. The
#: kernel's per-process figures (``ru_maxrss`` from wait4 or getrusage) are no use here: a child forked
#: from a large pytest process inherits the parent's high-water mark across exec. ``VmHWM`` belongs to
#: the memory map the exec created, so it counts the CLI alone.
PEAK_WRAPPER = """
import atexit, os, runpy, sys
def _report():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["LARP_LAB_PEAK_RSS_FILE"], "w") as f:
        f.write(str(kb))
atexit.register(_report)
sys.argv = ["larp-lab", *sys.argv[1:]]
runpy.run_module("larp_lab", run_name="__main__", alter_sys=True)
"""


def run_cli(*args, timeout: float = 120, cwd=None) -> Run:
    """``python -m larp_lab ARGS`` as a subprocess, with its wall time and its own peak RSS."""
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        peak_file = Path(d) / "peak_kb"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PEAK_WRAPPER, *map(str, args)], stdout=out, stderr=err,
                                env=cli_env(LARP_LAB_PEAK_RSS_FILE=str(peak_file)), cwd=cwd or REPO)
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            timed_out = True
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        return Run(proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                   wall, peak, timed_out)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_growth_mb(fn: Callable[[], object]) -> tuple[object, float]:
    """(fn's result or the exception it raised, how far this process's peak RSS rose above its RSS
    before the call, in MB). Resets the kernel's high-water mark first (``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    try:
        result: object = fn()
    except Exception as exc:  # returned, so the caller can check it
        result = exc
    return result, (_status_kb("VmHWM") - before) / 1024


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between order statistics."""
    s = sorted(values)
    if not s:
        raise ValueError("no values")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
