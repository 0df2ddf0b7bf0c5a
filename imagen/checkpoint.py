"""The saved-model layout: `config.json` (the resolved RunConfig, the text encoder's identity, the stages)
and one `<stage>.safetensors` per stage (inference weights, e.g. the EMA). No pickle anywhere. Every weight file's
SHA-256 is recorded in config.json and checked when it is read.

    model_dir/
      config.json          {"format": "imagen-cascade", "version": 1, "config": {...}, "text_encoder": {...},
                            "stages": ["base", "sr1"], "digests": {"base.safetensors": SHA-256, ...},
                            "base_model": {...}}  (a fine-tuned model only: see `base_model_record`)
      base.safetensors
      sr1.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from configs import RunConfig, from_dict, to_dict

from .io import atomic_write, find_in_hub_cache, sha256, verify

FORMAT, VERSION = "imagen-cascade", 1
CONFIG_FILE = "config.json"
PRETRAINED_DIR = Path(__file__).parent / "assets" / "pretrained"


def pretrained_names() -> list[str]:
    """Models shipped inside the package, loadable by name."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file()) if PRETRAINED_DIR.is_dir() \
        else []


def write_model(directory: str | Path, config: RunConfig, text_identity: dict,
                state_dicts: dict[str, dict[str, torch.Tensor]], dtype: torch.dtype | None = None,
                base_model: dict | None = None) -> Path:
    """Write the layout above. `state_dicts` maps stage name -> U-Net weights; stages without weights are
    dropped from the saved config (a partial cascade); `base_model`: the model it was fine-tuned from
    (`base_model_record`). Weight files first, config.json last, each atomic."""
    directory = Path(directory)
    stages = [name for name in config.stages() if name in state_dicts]
    if not stages:
        raise ValueError("nothing to save: no stage has weights")
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file: save the model into a directory")
    directory.mkdir(parents=True, exist_ok=True)
    replaced = _saved_stages(directory)
    digests = {}
    for name in stages:
        tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in state_dicts[name].items()}
        data = save_safetensors(tensors, metadata={"stage": name})
        atomic_write(directory / weights_file(name), data)
        digests[weights_file(name)] = sha256(data)
    saved = to_dict(config)
    for name in config.stages():
        if name not in stages:
            saved[name] = None
    document = {"format": FORMAT, "version": VERSION, "config": saved, "text_encoder": text_identity,
                "stages": stages, "digests": digests, **({"base_model": base_model} if base_model else {})}
    atomic_write(directory / CONFIG_FILE, json.dumps(document, indent=2))
    for name in set(replaced) - set(stages):  # the model saved here before had them: stale now
        (directory / weights_file(name)).unlink(missing_ok=True)
    return directory


def _saved_stages(directory: Path) -> list[str]:
    """The stages of the model already saved in `directory` (none when there is no readable one)."""
    try:
        return list(read_document(directory).get("stages", []))
    except (OSError, ValueError, AttributeError):
        return []


def resolve_model(name_or_path: str | Path) -> Path:
    """The directory of a saved model: a shipped name (see `pretrained_names()`), a local directory, or a
    hub repo already in the local Hugging Face cache. Raises ValueError with what was tried."""
    name = str(name_or_path)
    if (PRETRAINED_DIR / name / CONFIG_FILE).is_file():
        return PRETRAINED_DIR / name
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ValueError(f"model directory {path} has no {CONFIG_FILE}: give a directory written by "
                             "save_pretrained or an imagen-train run directory")
        return path
    cached = find_in_hub_cache(name, CONFIG_FILE)
    if cached is not None:
        return cached
    shipped = ", ".join(pretrained_names()) or "none"
    raise ValueError(f"no model {name!r}: not a shipped model (shipped: {shipped}), not a directory, and not in "
                     "the local Hugging Face cache; give a directory written by save_pretrained or imagen-train")


def read_model(directory: Path) -> tuple[RunConfig, dict, dict[str, dict[str, torch.Tensor]]]:
    """(config, document, stage name -> weights) of a saved model, the document being its config.json as written
    (`document["text_encoder"]`: the text encoder's identity; `"base_model"` when it was fine-tuned); ValueError
    naming the file that is missing, truncated or inconsistent."""
    config_path = directory / CONFIG_FILE
    try:
        document = read_document(directory)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{config_path}: cannot be read as JSON ({e}); the model directory is damaged") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not an {FORMAT} model config (no \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise ValueError(f"{config_path}: format version {document.get('version')} is not supported "
                         f"(this library reads version {VERSION})")
    try:
        config = from_dict(document["config"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{config_path}: invalid model config: {e}") from None
    digests = document.get("digests") or {}
    weights = {name: load_stage_weights(directory / weights_file(name), name, digests.get(weights_file(name)))
               for name in config.stages()}
    return config, document, weights


def read_document(directory: Path) -> dict:
    """A saved model's config.json as written, unchecked (`read_model` checks it)."""
    return json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))


def base_model_record(document: dict, name: str, stages: list[str]) -> dict:
    """What a model fine-tuned from a saved model (`document`: its config.json) records of it: the name it was given
    by, its weight files' SHA-256, the stages the tuning trained, and its own `base_model` when it was tuned too, so
    a model's whole lineage back to its first training run stays in its config.json."""
    record = {"name": name, "digests": document.get("digests", {}), "stages_tuned": stages}
    return {**record, **({"base_model": document["base_model"]} if "base_model" in document else {})}


def weights_file(stage: str) -> str:
    """The file name of a stage's weights in a saved model."""
    return f"{stage}.safetensors"


def load_stage_weights(path: Path, stage: str | None = None, digest: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of one stage's weight file; ValueError naming the file when it is missing, truncated, not the
    bytes whose SHA-256 `digest` was recorded, or (given `stage`) saved for another stage."""
    if not path.is_file():
        raise ValueError(f"{path}: missing; the model config lists this stage but its weights are not there")
    try:
        data = path.read_bytes()
        weights = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as safetensors ({e}); the file is truncated or damaged") from None
    saved_for = _metadata(data).get("stage")
    if stage is not None and saved_for is not None and saved_for != stage:
        raise ValueError(f"{path}: holds the weights of stage {saved_for!r}, not {stage!r}; the files of the model "
                         "directory were mixed up")
    verify(path, data, digest)
    return weights


def load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load `weights` (read from `path`) into `net` as float32; ValueError naming the file and the first
    differences (missing, unexpected or differently shaped tensors) when they do not fit the config."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} is {tuple(weights[k].shape)} in the file but {tuple(v.shape)} in the config"
              for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    shapes += [f"{k} is {weights[k].dtype} in the file but the config needs a float tensor"
               for k, v in expected.items() if k in weights and v.is_floating_point()
               and weights[k].dtype not in (torch.float32, torch.float16, torch.bfloat16)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape or type (e.g. {shapes[0]})")
    if problems:
        raise ValueError(f"{path}: weights do not match the model config: {'; '.join(problems)}; was the file "
                         "saved with another config?")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})


def _metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's header (the loader has validated the header)."""
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        return header.get("__metadata__") or {}
    except (ValueError, AttributeError):
        return {}
