"""Caption embeddings for training: read from the on-disk cache (built once for a data set with a known
caption list, reused across runs, invalidated by a different encoder) or encoded on the fly."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator

from imagen.text import TextEncoder, pad_tokens
from imagen.text_cache import TextEmbeddingCache

from .data import FileDataset


class TextFeatures:
    """`features(captions) -> (embeds (B, L, D), mask (B, L))` on the accelerator's device: L is the batch's
    longest caption, or the encoder's `max_length` for every batch with `fixed_length` (a compiled U-Net then keeps
    one graph: a new caption length would recompile it with symbolic shapes, whose backward torch 2.13's inductor
    gets wrong). Padding is masked out, so both give the same loss."""

    def __init__(self, encoder: TextEncoder, dataset, cache_dir: Path | None, accelerator: Accelerator, *,
                 fixed_length: bool = False, progress: bool = True):
        self.encoder, self.device = encoder, accelerator.device
        self.length = encoder.max_length if fixed_length else None
        self.cache = None
        captions = [entry.caption for entry in dataset.entries] if isinstance(dataset, FileDataset) else None
        if cache_dir is not None and captions is not None:
            self.cache = TextEmbeddingCache(cache_dir, encoder)
            if accelerator.is_main_process:
                self.cache.build(captions, progress=progress)
            accelerator.wait_for_everyone()
            if not accelerator.is_main_process:
                self.cache = TextEmbeddingCache(cache_dir, encoder)  # re-read the index the main process wrote

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.cache.encode(captions) if self.cache is not None else self.encoder.encode(captions)
        if self.length is not None:
            embeds, mask = pad_tokens(embeds, mask, self.length)
        return embeds.to(self.device, torch.float32), mask.to(self.device)
