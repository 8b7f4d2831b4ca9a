"""Every command in the READMEs works as written after `make demo` / `make test`.

* Python blocks of README.md run, in order, in one namespace (offline, on the bundled models).
* Shell blocks: each command must be spelled so that it works in a fresh shell after the set-up
  commands (`make ...`, `.venv/bin/...`, or after `source .venv/bin/activate` in the same block),
  and its arguments must parse: `larp-lab` lines through the CLI's parser, `app.py` lines through
  the app's, `make` lines name a real target, scripts exist. (Blocks not marked bash/sh are synopses.)
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "checkpoints/README.md", "notebooks/README.md", "experiments/README.md", "benchmarks/RESULTS.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(doc: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall((ROOT / doc).read_text()) if kind == lang]


def commands(body: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    out, cur = [], ""
    for line in body.splitlines():
        line = line.rstrip()
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        cmd = re.sub(r"(^|\s)#.*$", "", cur).strip()
        cur = ""
        if cmd:
            out.append(cmd)
    return out


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def check_command(cmd: str, activated: bool) -> str | None:
    """None when ``cmd`` is runnable as written, else the reason."""
    words = shlex.split(cmd)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
        words = words[1:]
    prog, args = words[0], words[1:]
    if prog == "source":
        return None if args == [".venv/bin/activate"] else f"unexpected source: {cmd}"
    if prog == "make":
        unknown = [a for a in args if "=" not in a and a not in make_targets()]
        return f"no make target {unknown}" if unknown else None
    if not activated and not prog.startswith(".venv/bin/") and prog not in ("nvidia-smi",):
        return f"`{prog}` is not installed outside .venv: write .venv/bin/{prog} (or a make target)"
    name = prog.rsplit("/", 1)[-1]
    if name == "larp-lab":
        return parse_cli(args)
    if name == "torchrun":
        if "-m" not in args or args[args.index("-m") + 1] != "larp_lab":
            return f"torchrun without -m larp_lab: {cmd}"
        return parse_cli(args[args.index("-m") + 2:])
    if name.startswith("python"):
        if args[:2] == ["-m", "larp_lab"]:
            return parse_cli(args[2:])
        script = ROOT / args[0]
        if not script.exists():
            return f"no such script {args[0]}"
        if args[0] == "app.py":
            import app

            return parse(app.build_parser(), args[1:])
        return None
    return None


def parse(parser, args: list[str]) -> str | None:
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        return f"arguments do not parse ({exc.code}): {args}"
    return None


def parse_cli(args: list[str]) -> str | None:
    from larp_lab import cli

    return parse(cli.build_parser(), args)


@pytest.mark.parametrize("doc", DOCS)
def test_shell_commands_work_as_written(doc, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    problems = []
    for body in blocks(doc, "bash") + blocks(doc, "sh"):
        activated = False
        for cmd in commands(body):
            activated |= cmd.startswith("source .venv/bin/activate")
            why = check_command(cmd, activated)
            if why:
                problems.append(f"{doc}: {cmd!r}: {why}")
    capsys.readouterr()
    assert not problems, "\n".join(problems)


def test_readme_python_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ns: dict = {"__name__": "readme"}
    code = blocks("README.md", "python")
    assert len(code) >= 3
    for i, body in enumerate(code):
        exec(compile(body, f"README.md python block {i}", "exec"), ns)  # noqa: S102
    assert ns["rec"].shape == ns["video"].shape


def test_the_checker_refuses_what_does_not_work():
    assert check_command("larp-lab info x", activated=False)  # not on PATH after make
    assert check_command(".venv/bin/larp-lab no-such-command", activated=False)
    assert check_command(".venv/bin/larp-lab reconstruct in.mp4 --no-such-flag", activated=False)
    assert check_command("make no-such-target", activated=False)
    assert check_command(".venv/bin/python scripts/no_such.py", activated=False)
    assert check_command(".venv/bin/larp-lab info checkpoints/larp-tiny-tokenizer", activated=False) is None
    assert check_command("larp-lab info checkpoints/larp-tiny-tokenizer", activated=True) is None
    assert os.path.exists(ROOT / "Makefile")
