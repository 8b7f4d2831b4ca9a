"""The package's layers, enforced with import-linter (contracts in pyproject.toml, [tool.importlinter]).

The flow is one way: config -> checkpoint -> models | data -> evaluation | bundled -> training | analysis ->
pipelines -> viz -> bench -> app | cli. A lower layer never imports a higher one (imports inside functions
count too), and modules named in the same layer with "|" never import each other.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    rc = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert rc == 0, out


def test_every_subpackage_is_in_a_layer():
    """A new top-level module must be placed in the layers, or the contract would not see it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layered = {name.strip() for c in cfg for layer in c["layers"] for name in layer.split("|")}
    graph = grimp.build_graph("larp_lab")
    top = {".".join(m.split(".")[:2]) for m in graph.modules if m.count(".") >= 1}
    unplaced = sorted(top - layered - {"larp_lab.__main__"})
    assert not unplaced, f"modules outside every layer: {unplaced}; add them to [tool.importlinter] in pyproject.toml"


def test_checkpoint_layer_does_not_import_the_models():
    graph = grimp.build_graph("larp_lab")
    for low in ("larp_lab.checkpoint", "larp_lab.official", "larp_lab.config"):
        assert not graph.chain_exists(importer=low, imported="larp_lab.models", as_packages=True), low
