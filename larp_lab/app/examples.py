"""The app's example clips, in the order it offers them, and what it says about the models' training data.

The clips of ``examples/`` are named by what they show: ``<data>_*.mp4`` for clips of a training set
larp_lab makes (``digits_3.mp4``: held-out moving digits; ``synthetic_*.mp4``), anything else is real
footage (``bigbuckbunny_128.mp4``). :func:`example_clips` lists the clips of the data the tokenizer
was trained on first (its config.json ``metadata["data"]``, see :func:`larp_lab.bundled.training_data`),
then real footage, then the rest; :func:`training_note` is the sentence shown next to every result.
"""

from __future__ import annotations

from pathlib import Path

from ..bundled import DATA_NAMES

#: the examples shown first when the tokenizer does not say what it was trained on (the bundled models' data)
DEFAULT_FIRST = "digits"


def clip_kind(path: str | Path) -> str | None:
    """The training-data kind a clip's file name announces (``digits_3.mp4`` -> ``"digits"``); None for
    real footage."""
    prefix = Path(path).name.split("_", 1)[0]
    return prefix if prefix in DATA_NAMES else None


def example_clips(folder: str | Path, data: str | None) -> list[str]:
    """The ``*.mp4`` clips of ``folder``: those of ``data`` (or :data:`DEFAULT_FIRST` when None) first,
    then real footage, then the other kinds; by name within each group."""
    first = data if data in DATA_NAMES else DEFAULT_FIRST

    def rank(p: Path) -> tuple[int, str]:
        kind = clip_kind(p)
        return (0 if kind == first else 1 if kind is None else 2), p.name

    return [str(p) for p in sorted(Path(folder).glob("*.mp4"), key=rank)]


def examples_label(data: str | None) -> str:
    """The caption of the examples: which clips come first and where the real footage is from."""
    first = data if data in DATA_NAMES else DEFAULT_FIRST
    whose = "the models' training data" if data in DATA_NAMES else "larp_lab's teaching set"
    return (f"Examples: {DATA_NAMES[first]} first (held-out clips of {whose}), then real footage "
            "(Big Buck Bunny, CC-BY 3.0 Blender Foundation)")


def training_note(trained_on: str | None) -> str:
    """What the models were trained on, in one sentence for the results ("" when not recorded);
    ``trained_on`` as :func:`larp_lab.bundled.describe_training` words it."""
    if not trained_on:
        return ""
    return (f"**The tokenizer was trained on:** {trained_on}, nothing else; clips unlike those, such as real "
            "footage, come back blurred or wrong.")
