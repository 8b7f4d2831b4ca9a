"""Run the benchmarks: ``python benchmarks/run.py [--device cuda] [--quick] [--compile]``.

Same as ``larp-lab bench``. Prints a table and writes benchmarks/results_<device>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from larp_lab.bench import run_benchmarks

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (GPU)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = a.out or Path(__file__).parent / f"results_{a.device.replace(':', '')}.json"
    run_benchmarks(a.device, quick=a.quick, out=out, compile_=a.compile)
