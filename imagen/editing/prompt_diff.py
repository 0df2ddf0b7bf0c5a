"""Prompt differences (the text-diff idea of DALL·E 2, section 3.3, on token embeddings): condition on
embed(prompt) + scale (embed(target) - embed(source)) at a fixed seed, to change one attribute of an image
and keep the rest. The embeddings are per token, so `source` and `target` work best as whole prompts that
differ only in the attribute, worded like `prompt` ("a red circle ..." -> "a green circle ..."); scale 1
with prompt = source gives the target's condition, scales above 1 exaggerate the change, 0 is the prompt alone.

    out = pipe.text_diff("a large red circle ...", "a large red circle ...", "a large green circle ...",
                            scales=[0, 0.5, 1, 1.5], seed=3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..noise import check_seed
from ..output import ImagenOutput, check_output_type
from .conditioning import one_image_per_condition, sample_texts, shift_text


def text_diff(pipe, prompt: str, source: str, target: str, scales: float | Sequence[float] = 1.0, *, seed: int = 0,
              output_type: str = "pil", return_all_stages: bool = False, **kwargs: Any) -> ImagenOutput:
    """One image per scale, all at `seed`, conditioned on embed(prompt) + scale (embed(target) -
    embed(source)). `kwargs`: those of `Imagen.request` (negative_prompt, max_batch_size, progress and the
    per-stage options). Returns an `ImagenOutput`; a scale of 0 gives exactly the plain sample of `prompt`."""
    check_output_type(output_type)
    for name, text in (("prompt", prompt), ("source", source), ("target", target)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text-diff {name} must be a non-empty string")
    scales = [scales] if isinstance(scales, (int, float)) else list(scales)
    if not scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                             for s in scales):
        raise ValueError(f"text-diff scales must be finite numbers, got {scales!r}")
    seed = check_seed(seed)
    request = pipe.request([prompt] * len(scales), **one_image_per_condition(kwargs, "text-diff"))
    request = replace(request, seeds=[seed] * len(scales))
    base, src, tgt = (pipe.encode_prompts([t]) for t in (prompt, source, target))
    outputs = sample_texts(pipe, request, [shift_text(base, src, tgt, float(s)) for s in scales],
                           alone=[s == 0 for s in scales])
    extras = [{"text_diff": {"source": source, "target": target, "scale": s}} for s in scales]
    return request.output(outputs, output_type, return_all_stages, extras)
