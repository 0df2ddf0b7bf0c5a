"""Prompt differences (the text-diff idea of DALL·E 2, section 3.3, on token embeddings): condition on
embed(prompt) + scale (embed(target) - embed(source)) at a fixed seed, to change one attribute of an image
and keep the rest. The embeddings are per token, so `source` and `target` work best as whole prompts that
differ only in the attribute, worded like `prompt` ("a red circle ..." -> "a green circle ..."); scale 1
with prompt = source gives the target's condition, scales above 1 exaggerate the change, 0 is the prompt alone.

    images = pipe.text_diff("a large red circle ...", "a large red circle ...", "a large green circle ...",
                            scales=[0, 0.5, 1, 1.5], seed=3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .conditioning import sample_texts, shift_text


def text_diff(pipe, prompt: str, source: str, target: str, scales: float | Sequence[float] = 1.0, *, seed: int = 0,
              negative_prompt: str | None = None, output_type: str = "pil", max_batch_size: int | None = None,
              progress: bool = True, **sampling: Any) -> list[Image.Image] | torch.Tensor:
    """One image per scale, all at `seed`, conditioned on embed(prompt) + scale (embed(target) -
    embed(source)). `sampling`: the per-stage options of `Imagen.generate`. Returns the final stage's images
    (PIL, or a tensor (N, 3, R, R) in [-1, 1]); a scale of 0 gives exactly the plain sample of `prompt`."""
    from ..images import to_pil

    if output_type not in ("pil", "tensor"):
        raise ValueError(f"output_type must be 'pil' or 'tensor', got {output_type!r}")
    for name, text in (("prompt", prompt), ("source", source), ("target", target)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text-diff {name} must be a non-empty string")
    scales = [scales] if isinstance(scales, (int, float)) else list(scales)
    if not scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                             for s in scales):
        raise ValueError(f"text-diff scales must be finite numbers, got {scales!r}")
    options = pipe.sampling_options(**sampling)
    base, src, tgt = (pipe.encode_prompts([t]) for t in (prompt, source, target))
    texts = [shift_text(base, src, tgt, float(s)) for s in scales]
    negative = None if negative_prompt is None else pipe.encode_prompts([negative_prompt])
    outputs = sample_texts(pipe, texts, [int(seed)] * len(scales), alone=[s == 0 for s in scales], options=options,
                           negative=negative, max_batch_size=max_batch_size, progress=progress)
    final = list(outputs.values())[-1]
    return to_pil(final) if output_type == "pil" else final
