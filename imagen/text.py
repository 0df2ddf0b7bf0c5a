"""Frozen T5 text encoding (Imagen section 2.1): captions -> per-token embeddings + mask.

Every stage of the cascade reads the same `(embeds (B, L, D), mask (B, L))` pair through the small
`TextEncoder` protocol. `T5TextEncoder` loads any T5 encoder by hub name or local directory with the
ordinary `from_pretrained` path; the name `embedded` is the small T5 shipped in `imagen/assets/t5-embedded/`
(built by `scripts/build_text_encoder.py`: random features and a vocabulary trained on shapes captions).

Loading never waits on the network: a local directory is tried first, then the Hugging Face cache with
`local_files_only`; a name found in neither fails at once with one line saying what to do. Nothing is
imported from `transformers` or read from disk until a loader is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from configs.schema import TextEncoderConfig

EMBEDDED = "embedded"
EMBEDDED_DIR = Path(__file__).parent / "assets" / "t5-embedded"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # configs.PRECISIONS
_HASHED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json", "spiece.model")
_FINGERPRINT_BYTES = 1 << 20  # weights are fingerprinted by size + first and last MiB, not read whole


@runtime_checkable
class TextEncoder(Protocol):
    """What the cascade needs from a text encoder."""

    embed_dim: int  # D
    max_length: int  # longest token sequence L (captions are truncated or rejected beyond it)

    @property
    def identity(self) -> dict[str, Any]:
        """JSON-able description; `identity["sha256"]` changes whenever the outputs may change."""
        ...

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(embeds (B, L, D), mask (B, L) bool)`, L = longest caption in the batch (<= max_length);
        padded positions have mask False and embeddings exactly 0."""
        ...


class T5TextEncoder:
    """A frozen `T5EncoderModel` + its tokenizer. Build it with `T5TextEncoder.from_pretrained(name)`
    or `load_text_encoder(config)`; the constructor takes already-loaded objects and does no I/O."""

    def __init__(self, model: Any, tokenizer: Any, *, identity: dict[str, Any], max_length: int = 32,
                 truncation: bool = True):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (a token and </s>), got {max_length}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.embed_dim = int(model.config.d_model)
        self._identity = {**identity, "max_length": max_length, "dtype": str(self.dtype).removeprefix("torch."),
                          "embed_dim": self.embed_dim}

    @classmethod
    def from_pretrained(cls, name: str = EMBEDDED, *, max_length: int = 32, truncation: bool = True,
                        dtype: str | torch.dtype = "float32",
                        device: str | torch.device | None = None) -> T5TextEncoder:
        """Load the T5 called `name`: `embedded`, a local directory (as written by `save_pretrained`) or a
        hub name already in the Hugging Face cache (nothing is downloaded: fetch it once with `hf download`).
        `dtype` is the compute and output dtype; `device` defaults to the CPU. Raises ValueError with the
        fix when the name cannot be loaded."""
        torch_dtype = parse_dtype(dtype)
        directory = resolve_text_encoder(name)  # fails before the slow transformers import
        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"text encoder {name!r}: {directory / 'config.json'} is not valid JSON "
                             f"({error})") from None
        if config.get("model_type") not in ("t5", None):
            raise ValueError(f"text encoder {name!r} is a {config.get('model_type')!r} model, not a T5 "
                             "(model_type 't5' in config.json)")
        from transformers import AutoTokenizer, T5EncoderModel  # heavy: only when a model is wanted

        try:
            with _quiet_loading(name == EMBEDDED):
                model = T5EncoderModel.from_pretrained(directory, dtype=torch_dtype, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"text encoder {name!r}: {directory} is incomplete or unreadable ({first_line}); "
                             "it needs config.json, model weights and tokenizer files as written by "
                             "save_pretrained") from error
        if device is not None:
            model = model.to(device)
        identity = {"name": name, "path": str(directory), "sha256": fingerprint(directory)}
        return cls(model, tokenizer, identity=identity, max_length=max_length, truncation=truncation)

    @property
    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(input_ids (B, L) long, attention_mask (B, L) bool)` on the model's device, padded to the
        longest caption (L <= max_length); T5's </s> ends every caption."""
        texts = _check_texts(texts)
        batch = self.tokenizer(texts, padding="longest", truncation=self.truncation, max_length=self.max_length,
                               return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        if ids.shape[1] > self.max_length:
            longest = int(mask.sum(1).argmax())
            raise ValueError(f"caption {texts[longest]!r} is {int(mask[longest].sum())} tokens, over max_length "
                             f"{self.max_length}: shorten it, raise max_length, or allow truncation")
        return ids.to(self.device), mask.to(self.device)

    def dropped_tail(self, text: str) -> str:
        """What truncation at `max_length` tokens cuts off `text` ('' when it fits): the encoder never reads it."""
        ids = self.tokenizer(text)["input_ids"]  # </s> included, as `tokenize` counts
        if not self.truncation or len(ids) <= self.max_length:
            return ""
        return self.tokenizer.decode(ids[self.max_length - 1:-1], skip_special_tokens=True)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` missing from the vocabulary: spelled with several pieces, or the unknown token.
        With the embedded encoder (a vocabulary of the shapes captions' words) such a word carries no meaning."""
        unknown = []
        for word in text.split():
            pieces = self.tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1 or pieces[0] == self.tokenizer.unk_token_id:
                unknown.append(word)
        return unknown

    @torch.no_grad()  # not inference_mode: the outputs feed U-Nets that are trained
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(embeds (B, L, D) in the model dtype, mask (B, L) bool)`: T5's last hidden state, after its final
        RMS layer norm (the embedded T5's tokens have root-mean-square 1); padded positions are exactly 0, and an
        empty (or all-whitespace) text has no real token at all (the null condition)."""
        if not _check_texts(texts):
            return (torch.zeros(0, 0, self.embed_dim, dtype=self.dtype, device=self.device),
                    torch.zeros(0, 0, dtype=torch.bool, device=self.device))
        ids, mask = self.tokenize(texts)
        embeds = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        # an empty prompt has no token: the U-Nets read it as the learned null condition (imagen-pytorch and
        # diffusers' negative_prompt="" idiom), not as a one-token "</s>" condition training never saw
        empty = torch.tensor([not text.strip() for text in texts], device=mask.device)
        mask = mask & ~empty[:, None]
        return embeds.masked_fill(~mask[..., None], 0.0), mask

    def __repr__(self) -> str:
        return (f"T5TextEncoder(name={self._identity['name']!r}, embed_dim={self.embed_dim}, "
                f"max_length={self.max_length}, dtype={self.dtype}, device={self.device})")


def pad_tokens(embeds: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(embeds (B, L, D), mask (B, L))` padded to L = `length` with masked-out zeros: what attention reads is
    unchanged, and a compiled U-Net sees one text shape for every caption."""
    pad, missing = torch.nn.functional.pad, length - mask.shape[1]
    return pad(embeds, (0, 0, 0, missing)), pad(mask, (0, missing), value=False)


def load_text_encoder(config: TextEncoderConfig, device: str | torch.device | None = None) -> T5TextEncoder:
    """The encoder a `TextEncoderConfig` names (`embedded`, a hub name or a local path), frozen."""
    return T5TextEncoder.from_pretrained(config.name, max_length=config.max_length, dtype=config.dtype,
                                         device=device)


def resolve_text_encoder(name: str) -> Path:
    """The local directory holding the T5 called `name` (`embedded`, a directory, or a hub name found in the
    Hugging Face cache), without touching the network. Raises ValueError, at once, if there is none."""
    if name == EMBEDDED:
        return EMBEDDED_DIR
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"text encoder {name!r}: directory {path.resolve()} has no config.json; "
                             "give a directory written by save_pretrained (config, weights, tokenizer)")
        return path
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(f"text encoder {name!r}: no such directory ({path.resolve()}) and not a valid hub "
                         "name; use 'embedded', a local T5 directory, or a hub name like "
                         "google/t5-v1_1-xxl") from None
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent
    raise ValueError(f"text encoder {name!r}: no local directory {path.resolve()} and not in the Hugging Face "
                     f"cache {constants.HF_HUB_CACHE}; pass a local T5 directory (save_pretrained), or download "
                     f"it once with `hf download {name}` (formerly huggingface-cli) on a machine with network and "
                     "set HF_HOME to that cache, or use text.name=embedded")


def same_encoder(recorded: dict[str, Any], identity: dict[str, Any]) -> bool:
    """False when a recorded text-encoder identity and `identity` both carry a sha256 and they differ (a model,
    an adapter or a run trained on another encoder); True otherwise, a missing digest included."""
    expected, got = recorded.get("sha256"), identity.get("sha256")
    return not (expected and got and expected != got)


def fingerprint(directory: str | Path) -> str:
    """sha256 over a model directory: config and tokenizer files in full, weight files by name, size and
    their first and last MiB (enough to tell re-initialised or fine-tuned weights apart, cheap for T5-XXL)."""
    digest = hashlib.sha256()
    for file in sorted(Path(directory).iterdir(), key=lambda p: p.name):
        if file.name in _HASHED_FILES:
            digest.update(f"{file.name}\0".encode())
            digest.update(file.read_bytes())
        elif file.suffix == ".safetensors" or (file.suffix == ".bin" and file.name.startswith("pytorch_model")):
            size = file.stat().st_size
            digest.update(f"{file.name}\0{size}\0".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_BYTES))
                handle.seek(max(0, size - _FINGERPRINT_BYTES))
                digest.update(handle.read(_FINGERPRINT_BYTES))
        elif file.name.endswith(".index.json"):
            digest.update(f"{file.name}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_loading(quiet: bool):
    """No weight-loading progress bar for the tiny embedded model (kept for large ones)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    if quiet and enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and enabled:
            hf_logging.enable_progress_bar()


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """"float32" | "bfloat16" | "float16" (or a torch.dtype) -> torch.dtype; ValueError otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings (wrap a single caption in a list)")
    return list(texts)
