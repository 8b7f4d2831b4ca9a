"""Write the teaching notebooks ``notebooks/NN_name.ipynb`` from their sources ``notebooks/src/NN_name.py``.

    python notebooks/build.py            # (re)write every notebook (what `make notebooks` runs)
    python notebooks/build.py --check    # exit 1 when a committed notebook differs from its source

The sources are plain Python in jupytext's percent format (``# %%`` starts a code cell, ``# %% [markdown]``
a Markdown cell); edit them, not the ``.ipynb``. jupytext reads them; the notebooks are then written
without outputs, with fixed metadata and cell ids ``NN-ii`` (cell ii of notebook NN), so rebuilding is
byte-stable and a diff shows only the cells that changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def sources() -> list[Path]:
    """The notebook sources, ``notebooks/src/NN_name.py``, in order."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def notebook_path(source: Path) -> Path:
    """``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``."""
    return HERE / f"{source.stem}.ipynb"


def build(source: Path):
    """The output-free notebook (an ``nbformat.NotebookNode``) of one percent-format source."""
    import jupytext
    import nbformat

    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = nbformat.from_dict(METADATA)
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.stem[:2]}-{i:02d}"  # stable ids: a rebuild changes only what was edited
        cell.metadata = nbformat.NotebookNode()
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def render(source: Path) -> str:
    """The exact text of the ``.ipynb`` file for ``source``."""
    import nbformat

    return nbformat.writes(build(source)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a notebook differs from its source")
    args = p.parse_args(argv)
    found = sources()
    if not found:
        print(f"no notebook sources in {SOURCES}", file=sys.stderr)
        return 1
    stale = []
    for src in found:
        path, text = notebook_path(src), render(src)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run `make notebooks`):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
