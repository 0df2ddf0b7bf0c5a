"""Training checkpoints without pickle: nested state (model, EMA, optimizer, scheduler, step, data position)
is split into tensors (one safetensors file) and everything else (one JSON file).

    checkpoints/step-000200/
      tensors.safetensors
      sharded/              a sharded run's weights, optimiser and EMA (trainers.sharding), if any
      state.json            written last: a directory without it is incomplete and ignored; holds the
                            SHA-256 of every other file, checked on load

A checkpoint is written into a temp directory, fsynced, then renamed into place, so a kill at any moment
leaves the previous checkpoints intact; only the newest `keep` are kept. Temp directories a killed run left
behind are removed by the next save.
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
from safetensors.torch import load, save

from imagen.io import fsync_dir, sha256, verify

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
    staging = stage_checkpoint(directory, step, f"{os.getpid()}")
    return publish_checkpoint(staging, step, state, keep)


def stage_checkpoint(directory: str | Path, step: int, tag: str) -> Path:
    """A fresh temp directory for checkpoint `step` under `directory` (stale temp directories removed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".step-*.tmp"):  # a killed run's, or this one's from a failed write
        shutil.rmtree(stale, ignore_errors=True)
    staging = directory / f".step-{step:06d}.{tag}.tmp"
    staging.mkdir()
    return staging


def publish_checkpoint(staging: Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` into `staging` (which may already hold other files, e.g. a sharded checkpoint's shards),
    with state.json last recording the digest of every file, then rename it into place and prune to the newest
    `keep`. The temp directory is removed if anything fails."""
    directory = staging.parent
    final = directory / f"step-{step:06d}"
    try:
        tensors: dict[str, torch.Tensor] = {}
        document = flatten(state, tensors)
        data = save(tensors)
        _write(staging / TENSORS, data)
        digests = {TENSORS: sha256(data)}
        for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.name != TENSORS):
            digests[path.relative_to(staging).as_posix()] = sha256(path.read_bytes())
        _write(staging / STATE, json.dumps({"step": step, "state": document, "digests": digests}).encode())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
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


def load_checkpoint(path: str | Path, *, verify_all: bool = True) -> tuple[int, dict]:
    """(step, state) of one checkpoint directory; ValueError naming it when it is unreadable, does not match
    its recorded digests (every file it holds; only its own tensors without `verify_all`), or refers to a
    tensor it does not hold."""
    path = Path(path)
    try:
        document = json.loads((path / STATE).read_text(encoding="utf-8"))
        digests = document.get("digests") or {}
        data = (path / TENSORS).read_bytes()
        verify(path / TENSORS, data, digests.get(TENSORS))
        for name, digest in digests.items() if verify_all else ():
            if name != TENSORS:
                verify(path / name, (path / name).read_bytes(), digest)
        return int(document["step"]), unflatten(document["state"], load(data))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        reason = f"tensor {e} is missing" if isinstance(e, KeyError) else " ".join(str(e).split())
        raise ValueError(f"checkpoint {path} cannot be used: {reason}") from None


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
