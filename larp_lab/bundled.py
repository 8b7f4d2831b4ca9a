"""Finding models by name: the bundled checkpoints, untrained presets, local directories, Hub ids.

``load_default_tokenizer()`` / ``load_default_generator()`` / ``load_default_frame_predictor()``
load the small models shipped in the repository's ``checkpoints/`` directory, offline. They are not
part of an installed wheel; :func:`checkpoints_dir` looks, in order, at

1. the directory given to :func:`set_checkpoints_dir` (the CLI's and the app's ``--checkpoints DIR``),
2. the ``LARP_LAB_CHECKPOINTS`` environment variable,
3. ``checkpoints/`` next to the package source (a clone of the repository),

and says how to point at the models when none of them is there.

:func:`resolve_tokenizer` and :func:`resolve_generator` turn the ``--tokenizer`` / ``--generator``
arguments of the CLI and the app into models:

* ``"default"`` (or a bundled model's directory name): the bundled checkpoint;
* ``"untrained:<preset>"``: a randomly initialised preset (``TOKENIZER_PRESETS`` /
  ``GENERATOR_PRESETS``) -- useful to try the pipeline, useless for pictures, and labelled so;
* a local checkpoint directory, or a Hub repo id such as ``hywang66/LARP-L-long-tokenizer``.

:func:`training_data` says what kind of clips a model was trained on (``"digits"``, ``"synthetic"``),
read from the ``metadata`` of its ``config.json`` (written by ``scripts/train_bundled.py``), and
:func:`describe_training` puts it in words for the app and the CLI ("moving digits, 32x32, 8 frames").
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .checkpoint import CONFIG_NAME, CheckpointError
from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS

DEFAULT_TOKENIZER = "larp-tiny-tokenizer"
DEFAULT_GENERATOR = "larp-tiny-generator"
DEFAULT_FRAME_PREDICTOR = "larp-tiny-frame-predictor"
#: the folder beside a bundled tokenizer holding its training snapshots: ``<name>-snapshots/step<NNNNNN>``
SNAPSHOTS_SUFFIX = "-snapshots"
UNTRAINED_PREFIX = "untrained:"
ENV_VAR = "LARP_LAB_CHECKPOINTS"
#: ``checkpoints/`` of a repository clone (absent from an installed wheel)
REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"

_explicit_dir: Path | None = None


def set_checkpoints_dir(path: str | os.PathLike | None) -> None:
    """Use ``path`` as the bundled checkpoints directory (``--checkpoints DIR``); None forgets it.

    It takes precedence over ``$LARP_LAB_CHECKPOINTS`` and the repository's ``checkpoints/``.
    """
    global _explicit_dir
    _explicit_dir = None if path is None else Path(path).expanduser()


def find_checkpoints_dir() -> Path | None:
    """The bundled checkpoints directory, or None when none is set or present (never raises).

    An explicit directory or the environment variable, when set, is the answer even if it is missing
    (:func:`checkpoints_dir` then says so); only the repository fallback is looked for.
    """
    if _explicit_dir is not None:
        return _explicit_dir if _explicit_dir.is_dir() else None
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    return REPO_CHECKPOINTS if REPO_CHECKPOINTS.is_dir() else None


def checkpoints_dir() -> Path:
    """The bundled checkpoints directory (see the module docstring for where it is looked for).

    Raises:
        CheckpointError: the directory set explicitly or by ``$LARP_LAB_CHECKPOINTS`` does not exist,
            or neither is set and the package is not inside a repository clone (an installed wheel).
    """
    found = find_checkpoints_dir()
    if found is not None:
        return found
    if _explicit_dir is not None:
        raise CheckpointError(f"--checkpoints {_explicit_dir}: no such directory (it should hold the bundled models)")
    if os.environ.get(ENV_VAR):
        raise CheckpointError(f"{ENV_VAR}={os.environ[ENV_VAR]}: no such directory (it should hold the bundled models)")
    raise CheckpointError(
        "the bundled models are not part of an installed larp_lab wheel; point at a copy of the repository's "
        f"checkpoints/ directory with {ENV_VAR}=DIR or --checkpoints DIR, or load a checkpoint directory or "
        "a Hub repo id (e.g. hywang66/LARP-L-long-tokenizer) instead"
    )


def has_bundled(name: str) -> bool:
    """True when the bundled model ``name`` can be found (never raises)."""
    root = find_checkpoints_dir()
    return root is not None and (root / name / "config.json").is_file()


def bundled_path(name: str) -> Path:
    """The directory of the bundled model ``name``."""
    root = checkpoints_dir()
    path = root / name
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the bundled model {name!r} is not in {root}; use a checkpoint directory, a Hub repo id, "
            f"or 'untrained:<preset>' (presets: {sorted(TOKENIZER_PRESETS)})"
        )
    return path


def snapshots_path(name: str = DEFAULT_TOKENIZER) -> Path:
    """The folder of the training snapshots of the bundled tokenizer ``name``: ``<checkpoints>/<name>-snapshots``,
    one ``step<NNNNNN>`` checkpoint directory per snapshot (written by the bundled recipe, see
    :func:`larp_lab.training.pool_tasks.snapshot_steps`; listed by :func:`larp_lab.analysis.list_snapshots`).

    Raises:
        CheckpointError: the checkpoints directory or the snapshots folder is missing.
    """
    path = checkpoints_dir() / f"{name}{SNAPSHOTS_SUFFIX}"
    if not path.is_dir():
        raise CheckpointError(f"the bundled model {name!r} has no training snapshots ({path} is missing); they "
                              "are written by scripts/train_bundled.py")
    return path


def has_snapshots(name: str = DEFAULT_TOKENIZER) -> bool:
    """True when the training snapshots of the bundled tokenizer ``name`` can be found (never raises)."""
    root = find_checkpoints_dir()
    return root is not None and (root / f"{name}{SNAPSHOTS_SUFFIX}").is_dir()


def load_default_tokenizer(device: torch.device | str = "cpu"):
    """The bundled tokenizer (with its prior), offline."""
    from .models.tokenizer import LARPTokenizer

    return LARPTokenizer.from_pretrained(bundled_path(DEFAULT_TOKENIZER), device=device)


def load_default_generator(device: torch.device | str = "cpu"):
    """The bundled class-conditional generator, offline."""
    from .models.generator import LARPGenerator

    return LARPGenerator.from_pretrained(bundled_path(DEFAULT_GENERATOR), device=device)


def load_default_frame_predictor(device: torch.device | str = "cpu"):
    """The bundled frame-prediction generator, offline."""
    from .models.generator import LARPGenerator

    return LARPGenerator.from_pretrained(bundled_path(DEFAULT_FRAME_PREDICTOR), device=device)


def _resolve(spec: str, model_class, presets: dict, kind: str, load_default, device, seed: int):
    """A ``model_class`` from ``spec`` (shared by :func:`resolve_tokenizer` and :func:`resolve_generator`):
    ``untrained:<one of presets>`` (seeded random weights), ``"default"`` (``load_default``), a bundled
    name, a directory or a Hub id."""
    if spec.startswith(UNTRAINED_PREFIX):
        name = spec[len(UNTRAINED_PREFIX) :]
        if name not in presets:
            raise CheckpointError(f"unknown {kind} preset {name!r}; choose one of {sorted(presets)}")
        warnings.warn(f"using an UNTRAINED {kind} ({name}, random weights): outputs are noise", stacklevel=3)
        cfg = presets[name]()
        torch.manual_seed(seed)
        return model_class(cfg, device=device).eval()
    if spec == "default":
        return load_default(device)
    if not Path(spec).exists() and has_bundled(spec):
        spec = str(bundled_path(spec))
    return model_class.from_pretrained(spec, device=device)


def resolve_tokenizer(spec: str = "default", device: torch.device | str = "cpu", seed: int = 0):
    """A tokenizer from a name, directory, Hub id or ``untrained:<preset>`` (see module docstring)."""
    from .models.tokenizer import LARPTokenizer

    return _resolve(spec, LARPTokenizer, TOKENIZER_PRESETS, "tokenizer", load_default_tokenizer, device, seed)


def resolve_generator(spec: str = "default", device: torch.device | str = "cpu", seed: int = 0):
    """A generator from a name, directory, Hub id or ``untrained:<preset>``."""
    from .models.generator import LARPGenerator

    return _resolve(spec, LARPGenerator, GENERATOR_PRESETS, "generator", load_default_generator, device, seed)


def is_untrained(spec: str) -> bool:
    return spec.startswith(UNTRAINED_PREFIX)


# ------------------------------------------------------------------------------------------------
# what a model was trained on (config.json metadata)
# ------------------------------------------------------------------------------------------------

#: the kinds of training clips named by a model's config.json (``metadata["data"]``), in words
DATA_NAMES: dict[str, str] = {
    "digits": "moving digits",  # larp_lab.data.digits.MovingDigits
    "synthetic": "synthetic shapes",  # larp_lab.data.synthetic.SyntheticVideos
}


def _config_dir(spec: str, default_name: str, root: str | os.PathLike | None) -> Path | None:
    """The directory holding ``spec``'s config.json: "default" -> ``default_name``, a bundled name (in
    ``root`` or the bundled checkpoints directory), or a local directory; None otherwise."""
    if is_untrained(spec):
        return None
    base = Path(root).expanduser() if root is not None else find_checkpoints_dir()
    name = default_name if spec == "default" else spec
    if spec != "default" and Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    if base is not None and (base / name / CONFIG_NAME).is_file():
        return base / name
    return None


def model_metadata(spec: str = "default", default_name: str = DEFAULT_TOKENIZER,
                   root: str | os.PathLike | None = None) -> dict:
    """The ``metadata`` of the config.json of ``spec`` ("default" = ``default_name``, a bundled name, or a
    checkpoint directory; ``root`` replaces the bundled directory); {} when there is none (a Hub id, an
    untrained preset, an unreadable file). Reads the JSON only; never raises."""
    d = _config_dir(spec, default_name, root)
    if d is None:
        return {}
    try:
        meta = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8")).get("metadata")
    except (OSError, ValueError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def training_data(spec: str = "default", default_name: str = DEFAULT_TOKENIZER,
                  root: str | os.PathLike | None = None) -> str | None:
    """The kind of clips ``spec`` was trained on, from its config.json ``metadata["data"]`` (e.g.
    ``"digits"`` for the bundled models of scripts/train_bundled.py --data digits); None when not
    recorded. Never raises."""
    data = model_metadata(spec, default_name, root).get("data")
    return data if isinstance(data, str) and data else None


def describe_training(data: str | None, frames: int, size: int) -> str | None:
    """``"moving digits, 32x32, 8 frames"``: the training clips of a model in words (``frames``, ``size``:
    its clip size, which is its training clips' size); None when ``data`` is None."""
    if data is None:
        return None
    return f"{DATA_NAMES.get(data, data)}, {size}x{size}, {frames} frames"
