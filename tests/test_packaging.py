"""Packaging: environment.yml and pyproject.toml agree; the README's two commands are the quick start."""

from __future__ import annotations

import re

import tomllib
import yaml
from conftest import REPO


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(s): s for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = {_name(s): s for s in pip_section}
    assert set(have) == set(wanted), (sorted(set(have) ^ set(wanted)))
    for name, spec in wanted.items():
        assert have[name].replace(" ", "") == spec.replace(" ", ""), name


def test_required_dependencies_are_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {_name(s) for s in project["dependencies"]}
    assert {"torch", "gradio", "jupyterlab", "matplotlib", "plotly", "ipywidgets", "av", "umap-learn",
            "safetensors", "huggingface-hub", "tqdm", "tensorboard", "pyyaml"} <= names
    dev = {_name(s) for s in project["optional-dependencies"]["dev"]}
    assert {"pytest", "playwright", "ruff"} <= dev and ({"nbclient", "nbmake"} & dev)
    assert project["scripts"]["larp-lab"] == "larp_lab.cli:main"
    assert "torchvision" not in names and "timm" not in names


def test_readme_quick_start_is_two_make_commands():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [ln.split("#")[0].strip() for ln in block.splitlines()[1:] if ln.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert "torch==2.13.0" in makefile and makefile.index("torch==2.13.0") < makefile.index('-e ".[dev]"')
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_credits_present():
    text = (REPO / "CREDITS.md").read_text() + (REPO / "README.md").read_text()
    assert "2410.21264" in text and "hywang66/LARP" in text and "CC-BY 3.0" in text
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
