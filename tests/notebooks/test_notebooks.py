"""Execute every notebook in notebooks/ top to bottom (offline, on the bundled models): slow, about 1.5
minutes each. The quick checks of the notebooks (committed .ipynb = its source in notebooks/src/, no
outputs, no copied helpers) are in tests/test_notebook_sources.py."""

from __future__ import annotations

import pytest
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/ yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
