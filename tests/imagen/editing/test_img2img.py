"""Image-to-image (imagen.editing.img2img and Imagen.img2img) on the tiny random-weight cascade of conftest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagen.editing.image_edit import ImageEdit
from imagen.editing.img2img import noised_start, start_grid
from imagen.objective import q_sample
from imagen.schedules import Schedule

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a small red circle at the top left on a blue background"


@pytest.fixture(scope="module")
def init(tiny_pipe):
    """A 64 px image (the final resolution of the tiny cascade), (3, 64, 64) in [-1, 1]."""
    return tiny_pipe.generate(["two triangles"], seed=11, progress=False)["sr2"][0]


def test_start_grid_cuts_the_grid_at_the_first_time_at_or_below_strength():
    grid = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert torch.equal(start_grid(grid, 1.0), grid)
    assert start_grid(grid, 0.6).tolist() == [0.5, 0.25, 0.0]
    assert start_grid(grid, 0.5).tolist() == [0.5, 0.25, 0.0]
    assert start_grid(grid, 0.0).tolist() == [0.0]
    # a strength inside the first step still samples: one step from the image noised to that level
    assert start_grid(grid, 0.1).tolist() == [0.1, 0.0]
    assert start_grid(torch.tensor([1.0, 0.0], dtype=torch.float64), 0.7).tolist() == [0.7, 0.0]
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="strength"):
            start_grid(grid, bad)


def test_noised_start_is_the_forward_process():
    schedule = Schedule()
    image, eps = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4)
    alpha, sigma = schedule.alpha_sigma(torch.full((2,), 0.3, dtype=torch.float64))
    expected = q_sample(image, alpha.float(), sigma.float(), eps)
    torch.testing.assert_close(noised_start(image, eps, 0.3, schedule), expected)
    torch.testing.assert_close(noised_start(image[:1], eps, 0.3, schedule)[1],
                               q_sample(image[:1], alpha[:1].float(), sigma[:1].float(), eps[1:])[0])


def test_strength_zero_returns_the_input_exactly(tiny_pipe, init):
    from imagen.images import to_pil

    out = tiny_pipe.img2img(PROMPT, init, strength=0.0, seed=5, output_type="pt", progress=False).images
    assert torch.equal(out[0], unit(init))
    image = to_pil(init[None])[0]
    pil = tiny_pipe.img2img(PROMPT, image, strength=0.0, seed=5, progress=False).images[0]
    assert np.array_equal(np.asarray(pil), np.asarray(image))


def test_strength_one_is_plain_sampling_from_the_same_seed(tiny_pipe, init):
    plain = tiny_pipe.generate([PROMPT], seed=4, progress=False)
    out = tiny_pipe.generate([PROMPT], seed=4, progress=False, edit=ImageEdit(init, strength=1.0))
    for name in plain:
        assert torch.equal(out[name], plain[name]), name


def test_more_strength_moves_further_from_the_input_and_seeds_give_variations(tiny_pipe, init):
    kwargs = {"seed": 2, "output_type": "pt", "progress": False, "num_inference_steps": [5, 3, 3]}
    near = tiny_pipe.img2img(PROMPT, init, strength=0.1, **kwargs).images[0]
    far = tiny_pipe.img2img(PROMPT, init, strength=0.9, **kwargs).images[0]
    assert 0 < (near - unit(init)).abs().mean() < (far - unit(init)).abs().mean()
    variations = tiny_pipe.img2img(PROMPT, init, strength=0.9, num_images_per_prompt=2, **kwargs).images
    torch.testing.assert_close(variations[0], far, atol=1e-4, rtol=0)  # batched: within rounding
    assert (variations[0] - variations[1]).abs().max() > 1e-2


def test_strength_is_per_stage_and_each_stage_edits_the_image_at_its_resolution(tiny_pipe, init):
    from imagen.editing.images import resize_image

    out = tiny_pipe.generate([PROMPT], seed=1, progress=False, edit=ImageEdit(init, strength={
        "base": 0.0, "sr1": 1.0, "sr2": 0.0}))
    assert torch.equal(out["base"][0], resize_image(init[None], 16)[0])
    assert torch.equal(out["sr2"][0], init)
    assert (out["sr1"][0] - resize_image(init[None], 32)[0]).abs().max() > 1e-2
    per_stage = tiny_pipe.img2img(PROMPT, init, strength=[0.0, 1.0, 0.0], seed=1, output_type="pt",
                                  progress=False)
    assert torch.equal(per_stage.images[0], unit(init))
    assert per_stage.settings[0]["edit"] == {"mode": "img2img", "strength": {"base": 0.0, "sr1": 1.0, "sr2": 0.0}}
    with pytest.raises(ValueError, match="strength has 2 values"):
        tiny_pipe.img2img(PROMPT, init, strength=[0.1, 0.2], progress=False)
    with pytest.raises(ValueError, match="strength"):
        tiny_pipe.img2img(PROMPT, init, strength=1.5, progress=False)
    named = tiny_pipe.img2img(PROMPT, init, strength={"sr1": 0.2}, seed=1, stop_at_stage=2, progress=False)
    assert named.settings[0]["edit"]["strength"] == {"base": 0.6, "sr1": 0.2}  # the others keep the default


def test_stop_at_stage_edits_the_image_downsampled_to_the_last_stage_run(tiny_pipe, init):
    from imagen.editing.images import resize_image

    out = tiny_pipe.img2img(PROMPT, init, strength=0.0, stop_at_stage=1, output_type="pt", progress=False).images
    assert torch.equal(out[0], unit(resize_image(init[None], 16)[0]))


def unit(image: torch.Tensor) -> torch.Tensor:
    """An image in [-1, 1] as output_type="pt" returns it, in [0, 1]."""
    return (image.clamp(-1, 1) + 1) / 2
