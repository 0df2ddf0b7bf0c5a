"""Prompt differences (imagen.editing.prompt_diff, conditioning.shift_text) on the tiny cascade of conftest."""

from __future__ import annotations

import pytest
import torch

from imagen.editing.conditioning import pad_text, shift_text

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a small red circle at the top left on a blue background"
GREEN = "a small green circle at the top left on a blue background"
SHORT = "a large green square"


def test_shift_is_the_prompt_at_zero_and_the_target_at_one_from_the_source(tiny_pipe):
    text, short = tiny_pipe.encode_prompts([PROMPT]), tiny_pipe.encode_prompts([SHORT])
    assert shift_text(text, text, short, 0.0) is text
    embeds, mask = shift_text(text, text, short, 1.0)
    # the prompt's extra tokens cancel exactly, so they are dropped: what is left is the shorter target
    assert torch.equal(mask, short[1])
    torch.testing.assert_close(embeds, short[0], atol=1e-6, rtol=0)
    embeds, mask = shift_text(short, short, text, 0.5)
    padded = pad_text(short, text[0].shape[1])
    torch.testing.assert_close(embeds, padded[0] + 0.5 * (text[0] - padded[0]))
    assert torch.equal(mask, text[1] | padded[1])


def test_scale_zero_is_exactly_the_plain_sample_and_other_scales_change_it(tiny_pipe):
    plain = tiny_pipe(PROMPT, seed=2, output_type="pt", progress=False).images[0]
    alone = tiny_pipe.text_diff(PROMPT, PROMPT, GREEN, 0.0, seed=2, output_type="pt", progress=False).images
    assert torch.equal(alone[0], plain)
    several = tiny_pipe.text_diff(PROMPT, PROMPT, GREEN, [0.0, 1.0, 2.0], seed=2, output_type="pt",
                                  progress=False).images
    assert several.shape == (3, 3, 64, 64)
    assert torch.equal(several[0], plain)
    assert (several[2] - plain).abs().max() > 1e-3  # far above float noise; the random SR stages damp it
    target = tiny_pipe(GREEN, seed=2, output_type="pt", progress=False).images[0]
    torch.testing.assert_close(several[1], target, atol=1e-4, rtol=0)  # prompt = source: scale 1 is the target


def test_text_diff_takes_sampling_options_and_checks_its_input(tiny_pipe):
    out = tiny_pipe.text_diff(PROMPT, "red", "green", [1.0, -1.0], seed=0, stop_at_stage=1, progress=False)
    assert len(out.images) == 2 and out.images[0].size == (16, 16)
    assert out.settings[1]["text_diff"] == {"source": "red", "target": "green", "scale": -1.0}
    with pytest.raises(ValueError, match="finite"):
        tiny_pipe.text_diff(PROMPT, "red", "green", float("nan"), progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        tiny_pipe.text_diff(PROMPT, "", "green", progress=False)
    with pytest.raises(ValueError, match="output_type"):
        tiny_pipe.text_diff(PROMPT, "red", "green", output_type="tensor", progress=False)
