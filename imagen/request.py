"""One call to the cascade, resolved: the prompt and seed of every image, and every stage's sampling options
(`Imagen.request` builds it once from the caller's arguments). It also says what made each image: the settings
stored with the image (PIL `.info`, PNG text chunks), enough to reproduce it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .options import StageOptions
from .output import ImagenOutput, convert


@dataclass(frozen=True)
class Request:
    """`prompts`, `negative_prompts` (or None) and `seeds` have one entry per image; a seed is an int or a noise
    source with `.generator(offset, device)` (interpolation). `options`: the stages run, in order. `model`: the
    model-level settings (`Imagen.describe`)."""

    prompts: list[str]
    negative_prompts: list[str] | None
    seeds: list
    options: StageOptions
    max_batch_size: int | None = None
    progress: bool = True
    model: dict = field(default_factory=dict)

    def settings(self, index: int, stage: str | None = None, extra: dict | None = None) -> dict:
        """What made image `index` of `stage` (default the last stage run): the model, prompt, seed and the
        options of every stage up to it; `extra` is merged in last (an edit, a sweep, an interpolation)."""
        names = list(self.options)
        stage = names[-1] if stage is None else stage
        resolutions = self.model.get("resolutions", {})
        seed = self.seeds[index]
        record = {"model": self.model.get("model"), "prompt": self.prompts[index],
                  "negative_prompt": None if self.negative_prompts is None else self.negative_prompts[index],
                  "seed": seed if isinstance(seed, int) else None, "index": index, "stage": stage,
                  "resolution": resolutions.get(stage), "device": self.model.get("device"),
                  "dtype": self.model.get("dtype"), "text_encoder": self.model.get("text_encoder"),
                  **({"lora": self.model["lora"]} if self.model.get("lora") else {}),
                  "stages": {name: {"resolution": resolutions.get(name), **self.options[name].as_dict()}
                             for name in names[: names.index(stage) + 1]}}
        return {**record, **(extra or {})}

    def output(self, images: dict[str, torch.Tensor], output_type: str = "pil", return_all_stages: bool = False,
               extras: Sequence[dict] | dict | None = None) -> ImagenOutput:
        """The `ImagenOutput` of this request's sampled `images` ({stage: (N, 3, R, R) in [-1, 1]}); `extras`:
        settings added to every image (a dict) or to each (one dict per image)."""
        count = len(self.prompts)
        per_image = list(extras) if isinstance(extras, (list, tuple)) else [extras or {}] * count

        def stage_output(name: str):
            return convert(images[name], output_type, [self.settings(i, name, per_image[i]) for i in range(count)])

        final = list(images)[-1]
        stages = {name: stage_output(name) for name in (images if return_all_stages else [final])}
        return ImagenOutput(images=stages[final], seeds=list(self.seeds),
                            settings=[self.settings(i, final, per_image[i]) for i in range(count)],
                            stage_images=stages if return_all_stages else None)
