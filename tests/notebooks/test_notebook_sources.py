"""Notebook sources (notebooks/src/*.py) against the committed notebooks, and the shared notebook helpers
(larp_lab.viz.notebook). Quick: nothing here executes a notebook (tests/test_notebooks.py does)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys

import nbformat
import pytest
import torch
from conftest import REPO

import larp_lab.viz.notebook as nbh
from larp_lab.config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from larp_lab.data import CLASS_NAMES, SyntheticVideos
from larp_lab.models.generator import LARPGenerator

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = REPO / "notebooks"
SOURCES = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]_*.py"))


def _build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(nb) -> list[tuple[str, str, str]]:
    return [(c.cell_type, c.get("id", ""), c.source) for c in nb.cells]


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    numbers = [int(p.stem[:2]) for p in SOURCES]  # numbered 00, 01, ... without gaps
    assert len(SOURCES) >= 8 and numbers == list(range(len(SOURCES))), [p.name for p in SOURCES]
    assert {p.stem for p in SOURCES} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_committed_notebook_matches_its_source(src):
    """Cell types, ids and sources of notebooks/NN.ipynb are what notebooks/build.py makes of the source
    (run `make notebooks` after editing a source). Metadata is not compared."""
    built = _build_module().build(src)
    committed = nbformat.read(NOTEBOOKS / f"{src.stem}.ipynb", as_version=4)
    assert _cells(committed) == _cells(built), f"{src.stem}.ipynb is out of date: run `make notebooks`"


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_committed_notebook_has_no_outputs(src):
    nb = nbformat.read(NOTEBOOKS / f"{src.stem}.ipynb", as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[-1].cell_type == "markdown"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{src.stem}: a cell has outputs"


def test_build_is_byte_stable(tmp_path):
    """Rendering twice gives the same text; a copied source renders to a notebook with the same cells."""
    build = _build_module()
    src = SOURCES[0]
    assert build.render(src) == build.render(src)
    copy = tmp_path / src.name
    copy.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    assert _cells(build.build(copy)) == _cells(build.build(src))


def test_check_mode_reports_a_stale_notebook(tmp_path, monkeypatch, capsys):
    build = _build_module()
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "07_example.py"
    src.write_text('# %% [markdown]\n# # Title\n\n# %%\nx = 1\n\n# %% [markdown]\n# The end.\n', encoding="utf-8")
    monkeypatch.setattr(build, "HERE", tmp_path)
    monkeypatch.setattr(build, "SOURCES", tmp_path / "src")
    assert build.main(["--check"]) == 1  # no notebook yet
    assert build.main([]) == 0
    text = (tmp_path / "07_example.ipynb").read_text(encoding="utf-8")
    assert build.main(["--check"]) == 0
    nb = nbformat.reads(text, as_version=4)
    assert [(c.cell_type, c.id, c.source) for c in nb.cells] == [
        ("markdown", "07-00", "# Title"), ("code", "07-01", "x = 1"), ("markdown", "07-02", "The end.")]
    src.write_text(src.read_text(encoding="utf-8").replace("x = 1", "x = 2"), encoding="utf-8")
    assert build.main(["--check"]) == 1
    assert "07_example.ipynb" in capsys.readouterr().err


def _defined_names(src) -> set[str]:
    tree = ast.parse(src.read_text(encoding="utf-8"), filename=str(src))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_no_notebook_redefines_a_shared_helper(src):
    copies = _defined_names(src) & set(nbh.__all__)
    assert not copies, f"{src.name} defines {sorted(copies)}: import them from larp_lab.viz.notebook"


# ------------------------------------------------------------------------------------------------
# larp_lab.viz.notebook
# ------------------------------------------------------------------------------------------------


def test_helpers_import_without_ipython():
    code = "import sys, larp_lab.viz.notebook, larp_lab.viz; sys.exit('IPython' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def _clips(n, t=4, h=8, w=10):
    return torch.rand(n, 3, t, h, w) * 2 - 1


def test_show_video_and_show_frames_write_and_embed(tmp_path):
    video = nbh.show_video(_clips(1)[0], "clip", width=200, out_dir=tmp_path)
    assert (tmp_path / "clip.mp4").stat().st_size > 0
    assert 'width="200"' in video._repr_html_() and "base64" in video._repr_html_()
    image = nbh.show_frames(_clips(3), "sheet", frames=2, out_dir=tmp_path)
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "sheet.png").is_file()
    assert nbh.show_frames(list(_clips(2)), "sheet_list", out_dir=tmp_path).data[:4] == b"\x89PNG"


def test_show_video_default_folder_is_one_per_process():
    assert nbh.output_dir() == nbh.output_dir() and nbh.output_dir().is_dir()
    nbh.show_video(_clips(1)[0], "default_folder")
    assert (nbh.output_dir() / "default_folder.mp4").is_file()


@pytest.mark.parametrize("name", ["", "a/b", "..", "../x"])
def test_show_rejects_names_with_folders(name, tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        nbh.show_video(_clips(1)[0], name, out_dir=tmp_path)


def test_interleave_and_comparison_grid():
    a, b = _clips(3), _clips(3)
    rows = nbh.interleave(a, b)
    assert len(rows) == 6 and all(torch.equal(x, y) for x, y in zip(rows, [a[0], b[0], a[1], b[1], a[2], b[2]]))
    grid = nbh.comparison_grid(a, b, nrow=2)  # 2 clips per line: 2 lines of (w + gap + w)
    assert grid.shape == (3, 4, 2 * 8 + 2, 2 * (2 * 10 + 2) + 2)
    assert torch.equal(grid[:, :, :8, :10], a[0]) and torch.equal(grid[:, :, :8, 12:22], b[0])
    with pytest.raises(ValueError, match="same length"):
        nbh.interleave(a, b[:2])
    with pytest.raises(ValueError, match="same length"):
        nbh.comparison_grid()


def test_clip_batch():
    data = SyntheticVideos(12, frames=4, size=16, seed=0)
    videos, labels = nbh.clip_batch(data, (0, 6))
    assert videos.shape == (2, 3, 4, 16, 16) and labels.dtype == torch.long
    assert labels.tolist() == [data[0]["label"], data[6]["label"]]
    assert torch.equal(videos[1], data[6]["video"])
    with pytest.raises(ValueError, match="no indices"):
        nbh.clip_batch(data, [])


def test_bundled_clips_follow_the_data_the_tokenizer_was_trained_on(tmp_path):
    from larp_lab.data import DIGIT_NAMES
    from larp_lab.models.tokenizer import LARPTokenizer

    tok = LARPTokenizer(TOKENIZER_PRESETS["micro"]())  # 32x32x8 clips; nothing recorded: synthetic
    assert nbh.data_kind(tok) == "synthetic"
    videos, labels, names = nbh.bundled_clips(tok, 3, seed=1)
    assert names == CLASS_NAMES and labels.tolist() == [0, 1, 2] and videos.shape == (3, 3, 8, 32, 32)
    assert torch.equal(videos[2], SyntheticVideos(3, frames=8, size=32, seed=1)[2]["video"])
    tok.save_pretrained(tmp_path / "tok", metadata={"data": "digits"})
    digits = LARPTokenizer.from_pretrained(tmp_path / "tok")
    assert nbh.data_kind(digits) == "digits"
    videos, labels, names = nbh.bundled_clips(digits, 13, seed=1)  # labels cycle through the digits
    assert names == DIGIT_NAMES and labels.tolist() == [*range(10), 0, 1, 2] and videos.shape == (13, 3, 8, 32, 32)
    assert videos.min() >= -1 and videos.max() <= 1 and (videos > -1).any()
    assert torch.equal(nbh.bundled_clips(digits, 13, seed=1)[0], videos)  # deterministic
    assert torch.equal(nbh.bundled_clips(tok, 13, seed=1, kind="digits")[0], videos)  # kind given: any model
    assert nbh.bundled_clips(digits, 2, kind="synthetic")[2] == CLASS_NAMES
    with pytest.raises(ValueError, match="at least 1"):
        nbh.bundled_clips(digits, 0)
    with pytest.raises(ValueError, match="kind must be"):
        nbh.bundled_clips(digits, 2, kind="photos")


def test_generator_condition_uses_labels_only_for_the_same_classes():
    labels = torch.tensor([0, 3, 5])
    cfg = GENERATOR_PRESETS["micro"]()
    same = LARPGenerator(cfg.replace(num_classes=len(CLASS_NAMES), class_names=tuple(CLASS_NAMES)))
    cond, used = nbh.generator_condition(same, labels, CLASS_NAMES)
    assert used and torch.equal(cond, labels)
    other = LARPGenerator(cfg)  # no class names: the null class
    cond, used = nbh.generator_condition(other, labels, CLASS_NAMES)
    assert not used and cond.tolist() == [cfg.num_classes] * 3


def test_repo_root(tmp_path):
    assert nbh.repo_root(REPO / "notebooks") == REPO
    assert nbh.repo_root(REPO) == REPO
    assert nbh.repo_root(tmp_path) == REPO  # not in the repository: the folder above the package
    assert nbh.default_device() in ("cpu", "cuda")
