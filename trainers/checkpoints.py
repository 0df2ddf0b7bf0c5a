"""Training checkpoints without pickle: nested state (model, EMA, optimizer, scheduler, step, data position)
is split into tensors (one safetensors file) and everything else (one JSON file).

    checkpoints/step-000200/
      tensors.safetensors
      state.json            written last: a directory without it is incomplete and ignored

A checkpoint is written into a temp directory, fsynced, then renamed into place, so a kill at any moment
leaves the previous checkpoints intact; only the newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from imagen.io import fsync_dir

TENSORS, STATE = "tensors.safetensors", "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """A JSON-able copy of `obj` with tensors moved into `tensors` (referenced by key); tuples and dicts
    with non-string keys are tagged so `unflatten` restores them exactly."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten(v, tensors, f"{prefix}.{k}" if prefix else k) for k, v in obj.items()}
        return {"__items__": [[flatten(k, tensors, f"{prefix}.k{i}"), flatten(v, tensors, f"{prefix}.{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix!r}")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__items__"]}
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(directory: str | Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` as checkpoint `step` under `directory`, atomically; prune to the newest `keep`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:06d}"
    tmp = directory / f".step-{step:06d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    document = flatten(state, tensors)
    save_file(tensors, str(tmp / TENSORS))
    with open(tmp / STATE, "w", encoding="utf-8") as handle:
        json.dump({"step": step, "state": document}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync(tmp / TENSORS)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(directory)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints under `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE).is_file() and (p / TENSORS).is_file()]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path) -> tuple[int, dict]:
    """(step, state) of one checkpoint directory."""
    path = Path(path)
    try:
        document = json.loads((path / STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(path / TENSORS))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ValueError(f"checkpoint {path} cannot be read ({e}); delete it to resume from the one before") from None
    return int(document["step"]), unflatten(document["state"], tensors)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
