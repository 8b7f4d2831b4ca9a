"""Execute every notebook in notebooks/ top to bottom (offline, on the bundled models): slow, about 1.5
minutes each. The quick checks of the notebooks (committed .ipynb = its source in notebooks/src/, no
outputs, no copied helpers) are in tests/test_notebook_sources.py.

The notebooks run on larp_lab.notebook_watchdog's client: it sends on the shell channel in a way that
cannot strand a cell's execute_reply (the cause of the stalls seen with nbclient and widget cells), and
a notebook that makes no progress for a minute (no kernel message, no kernel CPU) fails with
NotebookStalled naming the notebook and the cell, instead of waiting out the 20-minute cell timeout."""

from __future__ import annotations

import pytest
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/ yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    from larp_lab.notebook_watchdog import run_notebook

    run_notebook(path, tmp_path, timeout=1200, name=str(path.relative_to(REPO)))
