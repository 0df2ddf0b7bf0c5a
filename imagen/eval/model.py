"""Caption compliance of a model: sample held-out shapes prompts with a cascade and judge the images."""

from __future__ import annotations

from typing import Any

from imagen.eval.compliance import evaluate
from imagen.shapes import held_out_scenes


def held_out_prompts(count: int, objects: int = 1) -> list[str]:
    """The first `count` held-out shapes captions with `objects` objects (never seen in training)."""
    return [scene.caption for scene in held_out_scenes(count, objects)]


def model_compliance(pipe: Any, prompts: list[str], *, seed: int = 0, max_batch_size: int = 16,
                     progress: bool = False, **sampling: Any) -> dict[str, dict]:
    """{stage name: `evaluate` summary} for images the cascade `pipe` (an `imagen.Imagen`) draws for `prompts`;
    `sampling` takes the keyword arguments of `Imagen.generate` (guidance_scale, num_inference_steps,
    stop_at_stage...)."""
    outputs = pipe.generate(prompts, seed=seed, max_batch_size=max_batch_size, progress=progress, **sampling)
    return {stage: evaluate(images.cpu(), prompts) for stage, images in outputs.items()}
