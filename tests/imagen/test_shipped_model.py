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


def test_loads_by_name_offline_and_draws_a_distinct_object():
    pipe = Imagen.from_pretrained("shapes")
    assert list(pipe.stages) == ["base", "sr1", "sr2"]
    assert all(p.dtype == torch.float32 for p in pipe.parameters())  # fp16 on disk, fp32 to sample on CPU
    image = pipe("a large red circle at the center on a blue background", seed=0, stop_at_stage="base",
                 num_steps=10, output_type="tensor", progress=False)[0]
    assert image.shape == (3, 64, 64)
    from imagen.eval import evaluate

    scores = evaluate(image[None], ["a large red circle at the center on a blue background"])["one_object"]
    assert scores["object_found"] == 1.0  # quality.json holds the measured compliance
