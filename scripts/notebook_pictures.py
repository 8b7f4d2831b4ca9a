"""Execute the notebooks and save one picture from each for the README (docs/notebooks/NN.png).

    python scripts/notebook_pictures.py [--pick 00:2 01:0 ...] [--only 00 04] [--out docs/notebooks]

The picture is the first PNG output of the notebook (or the N-th with --pick NN:N). Outputs are not
written back into the notebooks (they stay stripped). The notebooks run as committed: after editing a
source in notebooks/src/, run `make notebooks` first (this script stops when a notebook is out of date).
They run on larp_lab.notebook_watchdog's client, as in the notebook tests: a notebook that makes no
progress for a minute stops with an error naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    from larp_lab.notebook_watchdog import run_notebook

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pick", nargs="*", default=[])
    p.add_argument("--only", nargs="*", default=None, help="notebook number prefixes to run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "notebooks", help="folder for the NN.png files")
    a = p.parse_args()
    picks = {k: int(v) for k, v in (x.split(":") for x in a.pick)}
    stale = subprocess.run([sys.executable, str(ROOT / "notebooks" / "build.py"), "--check"])
    if stale.returncode:
        print("the notebooks differ from notebooks/src/: run `make notebooks` first", file=sys.stderr)
        return 1
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        num = path.name[:2]
        if a.only is not None and num not in a.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            nb = run_notebook(path, Path(d), timeout=900, name=str(path.relative_to(ROOT)))
        pngs = [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if "data" in o and "image/png" in o["data"]]
        if not pngs:
            print(f"{path.name}: no PNG output", file=sys.stderr)
            continue
        i = min(picks.get(num, 0), len(pngs) - 1)
        (out / f"{num}.png").write_bytes(base64.b64decode(pngs[i]))
        print(f"{path.name}: {len(pngs)} pictures, saved #{i} -> {out / f'{num}.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
