"""Interpolation between prompts and seeds (imagen.editing.interpolation, conditioning) on the tiny cascade."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from imagen.editing.conditioning import lerp_text, pad_text, trim_text
from imagen.editing.interpolation import SlerpNoise, SlerpSeeds, gif_bytes, slerp, strip, weights
from imagen.noise import randn

pytestmark = pytest.mark.usefixtures("one_thread")

A = "a small red circle at the top left on a blue background"
B = "a large green square"


def test_slerp_is_exact_at_the_ends_and_keeps_the_norm_of_gaussian_noise():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 32, 32, generator=generator), torch.randn(3, 32, 32, generator=generator)
    assert slerp(a, b, 0.0) is a and slerp(a, b, 1.0) is b
    for u in (0.25, 0.5, 0.75):
        mid = slerp(a, b, u)
        assert abs(float(mid.norm() / a.norm()) - 1) < 0.05  # a linear mix would shrink it to ~0.71 at 0.5
    torch.testing.assert_close(slerp(a, a * 1.0, 0.3), a)  # parallel: no division by sin(0)


def test_slerp_noise_mixes_the_draws_of_two_generators():
    source = SlerpNoise(torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), 0.4)
    got = randn((2, 3, 4, 4), [source, torch.Generator().manual_seed(7)])
    a = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(1))
    b = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got[0], slerp(a, b, 0.4))
    assert torch.equal(got[1], torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(7)))
    ends = [SlerpSeeds(3, 9, u).generator(10, "cpu") for u in (0.0, 1.0)]
    assert torch.equal(torch.randn(5, generator=ends[0]), torch.randn(5, generator=torch.Generator().manual_seed(13)))
    assert torch.equal(torch.randn(5, generator=ends[1]), torch.randn(5, generator=torch.Generator().manual_seed(19)))


def test_weights_include_both_ends():
    assert weights(2) == [0.0, 1.0] and weights(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="frames"):
            weights(bad)


def test_text_interpolation_pads_ors_masks_and_is_exact_at_the_ends(tiny_pipe):
    a, b = tiny_pipe.encode_prompts([A]), tiny_pipe.encode_prompts([B])
    assert a[0].shape[1] != b[0].shape[1]
    assert lerp_text(a, b, 0.0) is a and lerp_text(a, b, 1.0) is b
    embeds, mask = lerp_text(a, b, 0.25)
    length = max(a[0].shape[1], b[0].shape[1])
    (ea, ma), (eb, mb) = pad_text(a, length), pad_text(b, length)
    torch.testing.assert_close(embeds, 0.75 * ea + 0.25 * eb)
    assert torch.equal(mask, ma | mb)
    trimmed = trim_text(pad_text(a, length + 3))
    assert torch.equal(trimmed[0], a[0]) and torch.equal(trimmed[1], a[1])


@pytest.mark.parametrize("to_prompt,seeds", [(B, (0, 1)), (None, (2, 5)), (B, (4, 4))])
def test_the_ends_are_exactly_the_plain_samples_of_each_prompt_and_seed(tiny_pipe, to_prompt, seeds):
    frames = tiny_pipe.interpolate(A, to_prompt, seed=seeds[0], to_seed=seeds[1], frames=4, output_type="pt",
                                   progress=False).images
    assert frames.shape == (4, 3, 64, 64)
    first = tiny_pipe(A, seed=seeds[0], output_type="pt", progress=False).images[0]
    last = tiny_pipe(to_prompt or A, seed=seeds[1], output_type="pt", progress=False).images[0]
    assert torch.equal(frames[0], first) and torch.equal(frames[-1], last)
    for middle in frames[1:-1]:
        assert (middle - first).abs().max() > 1e-3 and (middle - last).abs().max() > 1e-3


def test_interpolation_takes_the_sampling_options_and_stochastic_samplers(tiny_pipe):
    kwargs = {"seed": 0, "to_seed": 1, "frames": 3, "progress": False, "stop_at_stage": 1, "sampler": "ddpm",
              "guidance_scale": 3.0, "negative_prompt": "blue"}
    frames = tiny_pipe.interpolate(A, B, output_type="pt", **kwargs).images
    assert frames.shape == (3, 3, 16, 16)
    last = tiny_pipe([B], seed=1, progress=False, stop_at_stage=1, sampler="ddpm", guidance_scale=3.0,
                     negative_prompt="blue", output_type="pt").images[0]
    assert torch.equal(frames[-1], last)
    out = tiny_pipe.interpolate(A, B, **kwargs)
    assert len(out.images) == 3 and out.images[0].size == (16, 16)
    middle = out.settings[1]
    assert middle["interpolation"]["u"] == 0.5 and middle["prompt"] == f"{A} -> {B} (u=0.500)"
    assert out.settings[2]["seed"] == 1 and out.images[2].info["prompt"] == B
    with pytest.raises(ValueError, match="non-empty"):
        tiny_pipe.interpolate(A, " ", progress=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_images_per_prompt": 2}, "num_images_per_prompt is not taken"),
    ({"generator": "g"}, "a generator is not taken"),
    ({"negative_prompt": ["x", "y", "z"]}, "one negative_prompt for every image"),
    ({"seed": 1.7}, "seed must be an integer"),
])
def test_interpolation_and_text_diff_refuse_what_only_a_plain_call_takes(tiny_pipe, kwargs, match):
    kwargs = {k: torch.Generator() if v == "g" else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):  # an IndexError after sampling, or silently ignored, before
        tiny_pipe.interpolate(A, B, frames=3, progress=False, **kwargs)
    with pytest.raises(ValueError, match=match.replace("interpolation", "text-diff")):
        tiny_pipe.text_diff(A, A, B, scales=[0, 1], progress=False, **kwargs)


def test_the_frames_labels_are_not_read_as_prompts(tiny_pipe):
    import warnings

    long = f"{A} and a small yellow triangle at the bottom right"  # fits; its frames' labels would not
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = tiny_pipe.interpolate(long, B, frames=3, stop_at_stage=1, progress=False)
    assert not [w for w in caught if "longer than" in str(w.message)]
    assert out.settings[1]["prompt"] == f"{long} -> {B} (u=0.500)"


def test_strip_and_gif():
    frames = [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(4)]
    row = strip(frames)
    assert row.size == (32, 8) and row.getpixel((9, 0)) == (40, 0, 0)
    gif = Image.open(io.BytesIO(gif_bytes(frames, duration_ms=100)))
    assert gif.n_frames == 6 and gif.info["loop"] == 0 and gif.info["duration"] == 100  # forth and back
    assert Image.open(io.BytesIO(gif_bytes(frames, bounce=False))).n_frames == 4
    with pytest.raises(ValueError):
        strip([])
