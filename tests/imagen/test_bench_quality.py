"""bench/quality.py's default section: the base judged pooled over several seeds."""

from __future__ import annotations

import pytest

from bench.quality import default_section
from imagen.eval import evaluate
from imagen.eval.model import held_out_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_base_is_judged_pooled_over_its_seeds(tiny_pipe):
    pooled = default_section(tiny_pipe, 2, 1, seeds=2)
    prompts = held_out_prompts(2) + held_out_prompts(2, objects=2)
    per_seed = [evaluate(tiny_pipe.generate(prompts, seed=seed, stop_at_stage="base", max_batch_size=16,
                                            progress=False)["base"], prompts) for seed in (0, 1)]
    assert pooled["seeds"] == 2 and pooled["prompts"] == {"one_object": 2, "two_objects": 2}
    assert per_seed[0]["one_object"] != per_seed[1]["one_object"]  # the seeds draw differently judged images
    for group, scores in (("one_object", pooled["base16"]), ("two_objects", pooled["base16"]["two_objects"])):
        for attribute in ("background", "object_color", "position", "size"):
            expected = sum(s[group][attribute] for s in per_seed) / 2
            assert scores[attribute] == pytest.approx(expected), (group, attribute)
    assert "sr32" in pooled and "sr64" in pooled  # the SR stages still run, on seed 0
