"""Training checkpoints without pickle: nested state (optimizer states, RNG states, counters) is split
into a JSON skeleton and a safetensors file of its tensors, written atomically.

A training checkpoint is a directory ``<run>/checkpoints/last`` holding ``state.json`` and
``state.safetensors``. It is written into a fresh temporary directory next to it and swapped in by
renames, so a crash (or ``kill -9``) at any moment leaves either the previous checkpoint or the new
one on disk, never a torn mixture; a failed write (disk full) leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
_TENSOR_TAG = "__tensor__"
_TUPLE_TAG = "__tuple__"


def flatten_state(obj: Any) -> tuple[Any, dict[str, Tensor]]:
    """Split ``obj`` into a JSON-able skeleton and a dict of tensors (referenced by key)."""
    tensors: dict[str, Tensor] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = x.detach().to("cpu").contiguous().clone()
            return {_TENSOR_TAG: key}
        if isinstance(x, dict):
            if not all(isinstance(k, (str, int)) for k in x):
                raise TypeError("state dict keys must be str or int")
            # JSON keys are strings: remember int keys (optimizer state uses them)
            return {"__dict__": [[k, walk(v)] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {_TUPLE_TAG: [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot serialise a {type(x).__name__} in a training checkpoint")

    return walk(obj), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if _TENSOR_TAG in x:
                return tensors[x[_TENSOR_TAG]]
            if _TUPLE_TAG in x:
                return tuple(walk(v) for v in x[_TUPLE_TAG])
            if "__dict__" in x:
                return {k: walk(v) for k, v in x["__dict__"]}
            raise ValueError("corrupt checkpoint skeleton")
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


def save_state(directory: str | Path, state: dict[str, Any]) -> Path:
    """Atomically replace ``directory`` with a checkpoint of ``state``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    skeleton, tensors = flatten_state(state)
    old = directory.with_name(f".{directory.name}.old")
    for stale in directory.parent.glob(f".{directory.name}.*"):  # temporary dirs of saves that were killed
        if stale != old and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(skeleton))
        for name in (STATE_TENSORS, STATE_JSON):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if directory.exists():  # complete (it only ever appears by the rename below): it becomes .old
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
        # else: a crash between the two renames left only .old, the one complete checkpoint: kept until
        # the new one is in place
        os.replace(tmp, directory)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:  # disk full, quota, permissions...: say what failed and that nothing was lost
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(exc.errno, f"could not write the training checkpoint {directory} ({exc.strerror or exc}); "
                                 "the previous checkpoint is kept") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def find_state(directory: str | Path) -> Path | None:
    """The checkpoint to resume from: ``directory`` if complete, else a complete ``.old`` sibling
    left by a crash between the two renames of :func:`save_state`."""
    directory = Path(directory)
    for cand in (directory, directory.with_name(f".{directory.name}.old")):
        if (cand / STATE_JSON).is_file() and (cand / STATE_TENSORS).is_file():
            return cand
    return None


def load_state(directory: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_state` (JSON + safetensors; nothing is unpickled)."""
    from safetensors.torch import load_file

    from ..checkpoint import CheckpointError, read_safetensors_header

    found = find_state(directory)
    if found is None:
        raise CheckpointError(f"{directory}: no training checkpoint to resume from")
    read_safetensors_header(found / STATE_TENSORS)  # refuses truncated or foreign files
    try:
        skeleton = json.loads((found / STATE_JSON).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{found}: corrupt {STATE_JSON} ({exc})") from None
    return unflatten_state(skeleton, load_file(str(found / STATE_TENSORS)))


def rng_state() -> dict[str, Any]:
    """Torch RNG states (CPU and every CUDA device) for exact resume."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
