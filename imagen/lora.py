"""LoRA adapters for the U-Nets (Hu et al. 2021), built on peft: low-rank updates W + (alpha / r) B A of the
attention projections of every U-Net block (self-attention qkv and out, cross-attention q, kv and out) and,
optionally, of the residual blocks' 3x3 convolutions; or, by target, of cross-attention's text keys and values
only, or of the finest levels' drawing layers only (`TARGETS`). Trained with `imagen-train --init-from MODEL
--lora RANK`, saved as their own small file beside a reference to the model they adapt, and loaded onto that
model at sampling, several at once with a scale each, unmerged or merged into the weights.

    ADAPTER_DIR/
      lora.json            {"format": "imagen-lora", "base_model": ..., "rank", "alpha", "conv", "stages",
                            "text_encoder": {...}, "digests": {"lora.safetensors": SHA-256}}
      lora.safetensors     "<stage>.<module>.lora_A.weight", "<stage>.<module>.lora_B.weight", ...
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .io import atomic_write, sha256, verify
from .text import same_encoder

FORMAT = "imagen-lora"
CONFIG_FILE, WEIGHTS_FILE = "lora.json", "lora.safetensors"
REQUIRED_KEYS = ("rank", "alpha", "conv", "stages")  # what loading reads from lora.json
TARGETS = {  # what an adapter adapts -> the modules it wraps
    "attention": r".*attn\.(self_attn\.(qkv|out)|cross_attn\.(q|kv|out))$",
    # only the keys and values the text gives cross-attention (Custom Diffusion, Kumari et al. 2023): what the
    # words mean to the U-Net changes, not how it draws
    "text": r".*cross_attn\.kv$",
    # the two highest-resolution levels' residual blocks (convolutions and their conditioning), their resampling
    # and the output convolution only: how a shape is drawn changes, not where it goes (convolutions are
    # translation-equivariant, the layout is decided at the untouched coarser levels; the input convolution,
    # which reads the coordinate channels, is left alone)
    "local": r"(.*\.)?(out_conv|(downs|ups)\.0\.resample\.conv|(downs|ups)\.[01]\.res_blocks\.\d+\.(conv[12]|cond))$",
}
CONVOLUTIONS = r".*res_blocks\.\d+\.conv[12]$"


def lora_config(rank: int, alpha: float | None = None, conv: bool = False, target: str = "attention"):
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if target not in TARGETS:
        raise ValueError(f"unknown LoRA target {target!r}: choose among {', '.join(TARGETS)}")
    targets = f"({TARGETS[target]})|({CONVOLUTIONS})" if conv else TARGETS[target]
    return LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets, lora_dropout=0.0)


def add_lora(net: torch.nn.Module, rank: int, alpha: float | None = None, conv: bool = False,
             name: str = "default", target: str = "attention") -> None:
    """Inject adapter `name` into `net` in place; only adapter weights stay trainable (B starts at zero, so the
    net computes what it did)."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config(rank, alpha, conv, target), net, adapter_name=name)
    for parameter_name, parameter in net.named_parameters():
        parameter.requires_grad_("lora_" in parameter_name)


def has_lora(net: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in net.named_parameters())


def adapter_weights(state: dict[str, torch.Tensor], name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter `name`'s weights from a LoRA net's state dict, keyed without the adapter name (peft's form)."""
    marker = f".{name}."
    return {key.replace(marker, "."): value for key, value in state.items() if "lora_" in key and marker in key}


def load_base_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load a plain U-Net's weights (a model's, for fine-tuning) into a net with adapters: each adapted layer's
    weights go to its base layer; the adapters keep their initial values."""
    from .checkpoint import load_weights

    expected = net.state_dict()
    mapped = {}
    for key, value in weights.items():
        head, _, leaf = key.rpartition(".")
        mapped[key if key in expected else f"{head}.base_layer.{leaf}"] = value
    mapped |= {key: value for key, value in expected.items() if "lora_" in key}
    load_weights(net, mapped, path)


def save_lora(directory: str | Path, weights: dict[str, dict[str, torch.Tensor]], *, base_model: str, rank: int,
              alpha: float, conv: bool, text_encoder: dict, target: str = "attention") -> Path:
    """Write the adapters of each stage (`weights`: stage -> peft-form adapter weights) and their config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"{stage}.{key}": value.detach().cpu().contiguous().float() for stage, state in weights.items()
               for key, value in state.items()}
    data = save_safetensors(tensors, metadata={"format": FORMAT})
    atomic_write(directory / WEIGHTS_FILE, data)
    document = {"format": FORMAT, "base_model": base_model, "rank": rank, "alpha": alpha, "conv": conv,
                "target": target, "stages": list(weights), "text_encoder": text_encoder,
                "digests": {WEIGHTS_FILE: sha256(data)}}
    atomic_write(directory / CONFIG_FILE, json.dumps(document, indent=2))
    return directory


def without_adapters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state of a U-Net whose adapters are merged (into peft's `base_layer` weights) as a plain U-Net's: the
    adapters' own tensors dropped."""
    if not any("lora_" in key for key in state):
        return state
    return {key.replace(".base_layer.", "."): value for key, value in state.items() if "lora_" not in key}


def read_lora(directory: str | Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """(config, stage -> adapter weights) of an adapter directory; ValueError naming the problem."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
        data = (directory / WEIGHTS_FILE).read_bytes()
    except (OSError, ValueError) as e:
        raise ValueError(f"{directory}: not a LoRA adapter directory ({CONFIG_FILE} and {WEIGHTS_FILE} as "
                         f"imagen-train --lora writes them): {e}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not an {FORMAT} config")
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise ValueError(f"{config_path}: no {missing[0]!r} (damaged? rewrite it with imagen-train --lora)")
    verify(directory / WEIGHTS_FILE, data, (document.get("digests") or {}).get(WEIGHTS_FILE))
    tensors = load_safetensors(data)
    weights: dict[str, dict[str, torch.Tensor]] = {stage: {} for stage in document["stages"]}
    for key, value in tensors.items():
        stage, _, rest = key.partition(".")
        weights.setdefault(stage, {})[rest] = value
    return document, weights


def load_lora(pipe, directory: str | Path, scale: float = 1.0, merge: bool = False, name: str | None = None) -> str:
    """Add the adapters in `directory` to `pipe` (the model they were trained on) at `scale`; several can be
    loaded, each with its own scale, and all are active. `merge` adds them into the weights (no cost at sampling,
    no way back). Returns the adapter's name."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"the adapters' scale must be a finite number, got {scale!r}")
    document, weights = read_lora(directory)
    name = name or Path(directory).resolve().name
    if not same_encoder(document.get("text_encoder", {}), pipe.text_encoder.identity):
        raise ValueError(f"{directory}: these adapters were trained on a model with another text encoder "
                         f"({document.get('text_encoder', {}).get('name')!r}); load them onto "
                         f"{document.get('base_model')!r}")
    for stage, state in weights.items():
        if stage not in pipe.stages:
            raise ValueError(f"{directory}: adapters for stage {stage}, which this model does not have")
        net = pipe.stages[stage].net
        if any(f".{name}." in key for key in net.state_dict()):
            raise ValueError(f"an adapter named {name!r} is already loaded: give another name")
        if any(getattr(layer, "merged", False) for layer in net.modules()) != merge and has_lora(net):
            raise ValueError("merge every adapter or none: peft runs a layer with merged adapters without its "
                             "unmerged ones")

        config = lora_config(document["rank"], document["alpha"], document["conv"], document.get("target", "attention"))
        with warnings.catch_warnings():  # several adapters on one U-Net are meant: peft warns of each extra one,
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            warnings.filterwarnings("ignore", message="Adapter cannot be set when the model is merged")  # re-merged
            inject_adapter_in_model(config, net, adapter_name=name)
        try:
            result = set_peft_model_state_dict(net, state, adapter_name=name)
        except RuntimeError as e:  # torch's size mismatch: adapters of another architecture
            first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
            raise ValueError(f"{directory}: adapter weights do not fit stage {stage} ({first.rstrip('.')}); "
                             f"load them onto {document.get('base_model')!r}") from None
        missing = [k for k in result.missing_keys if "lora_" in k and f".{name}." in k]
        if missing:
            raise ValueError(f"{directory}: adapter weights do not fit stage {stage} (e.g. {missing[0]} is missing); "
                             f"were they trained on {document.get('base_model')!r}?")
        for layer in net.modules():
            if isinstance(layer, LoraLayer) and name in layer.scaling:
                layer.scaling[name] = document["alpha"] / document["rank"] * scale
                if merge:  # every adapter: adding one to a layer unmerged those merged before
                    layer.merge(adapter_names=[n for n in layer.lora_A if n not in layer.merged_adapters])
                else:
                    layer.set_adapter(list(layer.lora_A.keys()))  # every adapter loaded, each at its own scale
        net.requires_grad_(False)
    return name
