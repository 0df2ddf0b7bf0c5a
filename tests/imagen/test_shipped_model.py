"""The pretrained shapes cascade shipped in the package (imagen/assets/pretrained/shapes)."""

from __future__ import annotations

import json

import pytest
import torch

from imagen import Imagen
from imagen.checkpoint import PRETRAINED_DIR, pretrained_names

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = PRETRAINED_DIR / "shapes"


def test_it_is_listed_small_and_fp16_with_its_recipe_and_quality():
    assert "shapes" in pretrained_names()
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "base.safetensors", "sr1.safetensors", "sr2.safetensors", "run-config.json",
            "quality.json"} <= files
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) <= 40 * 2**20
    quality = json.loads((SHIPPED / "quality.json").read_text())
    assert {"background", "object_color", "position", "shape"} <= set(quality["base64"])


def test_loads_by_name_offline_and_draws_what_the_caption_asks():
    pipe = Imagen.from_pretrained("shapes")
    assert list(pipe.stages) == ["base", "sr1", "sr2"]
    assert all(p.dtype == torch.float32 for p in pipe.parameters())  # fp16 on disk, fp32 to sample on CPU
    prompts = ["a large red circle at the center on a blue background",
               "a small yellow square at the top left on a black background"]
    images = pipe(prompts, seed=0, stop_at_stage="base", output_type="tensor", progress=False)
    assert images.shape == (2, 3, 64, 64)
    from imagen.eval import evaluate

    scores = evaluate(images, prompts)["one_object"]  # quality.json holds the compliance on held-out prompts
    assert scores["background"] == scores["object_color"] == scores["position"] == 1.0
