"""Sampling speed against this machine's limit: ``python benchmarks/sampling.py [options]``.

Same as ``larp-lab bench --sampling [options]`` (see ``larp_lab/bench_sampling.py``): tokens/s over
batch x length x CFG, the ratio to the FLOP floor (at the 2048^3 matmul rate and with the GEMMs timed
at their real shapes), the ratio to the official LARP code when a copy of it is found (fetched to a
temporary folder, never committed), and a per-step profile (counts before/after the fast decoder,
and where the fast step's time goes) as tables and JSON (default benchmarks/sampling_cpu.json).
Run it on a quiet machine; ``--help`` lists the options.
"""

from __future__ import annotations

import sys

from larp_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--sampling", *sys.argv[1:]]))
