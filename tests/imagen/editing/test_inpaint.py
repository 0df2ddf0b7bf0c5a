"""Inpainting and outpainting (imagen.editing.inpaint, Imagen.inpaint/outpaint) on the tiny cascade of conftest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagen.editing.image_edit import ImageEdit
from imagen.editing.images import resize_image, resize_mask
from imagen.editing.inpaint import jump_back, known_region_denoise, replace_known, resample
from imagen.objective import q_sample
from imagen.samplers import ddim, get_sampler, time_grid
from imagen.samplers.common import levels
from imagen.schedules import Schedule

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a small red circle at the top left on a blue background"


@pytest.fixture(scope="module")
def init(tiny_pipe):
    return tiny_pipe.generate(["two triangles"], seed=11, progress=False)["sr2"][0]


@pytest.fixture(scope="module")
def mask():
    m = torch.zeros(64, 64)
    m[20:44, 8:40] = 1
    return m


def test_replace_known_keeps_the_masked_part_and_noises_the_original_elsewhere():
    schedule = Schedule()
    x_t, original = torch.randn(2, 3, 4, 4), torch.rand(1, 3, 4, 4) * 2 - 1
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    t = torch.tensor([0.3, 0.7])
    out = replace_known(x_t, t, original, mask, schedule, torch.Generator().manual_seed(0))
    eps = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    alpha, sigma = schedule.alpha_sigma(t.double())
    known = q_sample(original.expand(2, -1, -1, -1), alpha.float(), sigma.float(), eps)
    assert torch.equal(out[..., :2, :], x_t[..., :2, :])
    torch.testing.assert_close(out[..., 2:, :], known[..., 2:, :])


def test_jump_back_has_the_forward_marginals():
    s, t = levels(torch.tensor([0.6, 0.3], dtype=torch.float64), Schedule())[::-1]
    generator = torch.Generator().manual_seed(0)
    x0 = 0.5
    n = 200_000
    x_s = s.alpha * x0 + s.sigma * torch.randn(n, generator=generator, dtype=torch.float64)
    x_t = jump_back(x_s, s, t, torch.randn(n, generator=generator, dtype=torch.float64))
    assert abs(float(x_t.mean()) - t.alpha * x0) < 0.01
    assert abs(float(x_t.std()) - t.sigma) < 0.01


def test_the_denoiser_wrapper_equals_replacing_the_sampler_state():
    """Samplers update pixel by pixel given x0, so replacing what the denoiser sees is replacing the state."""
    schedule = Schedule()
    original = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    weight = torch.randn(3, 3)

    def denoise(x, t):  # a toy denoiser that mixes pixels (a blur) and channels
        return torch.tanh(torch.einsum("ij,bjhw->bihw", weight, torch.nn.functional.avg_pool2d(x, 3, 1, 1)))

    grid = time_grid("logsnr", 6, schedule)
    x_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    wrapped = known_region_denoise(denoise, original, mask, schedule, torch.Generator().manual_seed(2))
    got = ddim.sample(wrapped, x_T, grid, schedule=schedule)
    # reference: the state itself replaced before every prediction, with the same noise draws
    generator, x = torch.Generator().manual_seed(2), x_T
    steps = levels(grid, schedule)
    for t, s in zip(steps[:-1], steps[1:], strict=True):
        x = replace_known(x, torch.full((1,), t.t), original, mask, schedule, generator)
        x0 = denoise(x, torch.full((1,), t.t))
        if s.t == 0:
            break
        x = ddim.step(x, x0, t, s)
    torch.testing.assert_close(got * mask, x0 * mask)


def test_resampling_costs_n_minus_one_times_u_plus_one_evaluations():
    schedule = Schedule()
    calls = []

    def denoise(x, t):
        calls.append(float(t[0]))
        return torch.zeros_like(x)

    grid = time_grid("uniform", 4, schedule)
    sampler = get_sampler("ddpm")
    out = resample(sampler, denoise, torch.randn(1, 3, 4, 4), grid, schedule=schedule, resample_steps=3,
                   generator=torch.Generator().manual_seed(0))
    assert len(calls) == 3 * 3 + 1 and out.shape == (1, 3, 4, 4)
    assert calls[:3] == [1.0, 1.0, 1.0] and calls[-1] == 0.25
    with pytest.raises(ValueError, match="resample_steps"):
        resample(sampler, denoise, torch.randn(1, 3, 4, 4), grid, schedule=schedule, resample_steps=0)


@pytest.mark.parametrize("sampler,resample_steps", [("dpm++", 1), ("ddim", 1), ("ddpm", 1), ("ddpm", 2),
                                                    ("dpm++", 3)])
def test_inpainting_keeps_the_unmasked_pixels_and_regenerates_the_masked_ones(tiny_pipe, init, mask, sampler,
                                                                            resample_steps):
    out = tiny_pipe.generate([PROMPT], seed=3, sampler=sampler, progress=False,
                             edit=ImageEdit(init, mask, resample_steps=resample_steps))
    for name, size in (("base", 16), ("sr1", 32), ("sr2", 64)):  # every stage keeps the image at its resolution
        keep = resize_mask(mask[None, None], size)[0] == 0
        original = resize_image(init[None], size)[0]
        assert torch.equal(out[name][0][:, keep[0]], original[:, keep[0]]), name
    changed = (out["sr2"][0] - init).abs()[:, mask == 1]
    assert changed.mean() > 0.05


def test_inpainting_through_pil_keeps_the_unmasked_pixels_exactly(tiny_pipe, init, mask):
    from imagen.images import to_pil

    image = to_pil(init[None])[0]
    mask_image = Image.fromarray((mask.numpy() * 255).astype(np.uint8))
    out = np.asarray(tiny_pipe.inpaint(PROMPT, image, mask_image, seed=0, progress=False).images[0]).astype(int)
    keep = mask.numpy() == 0
    assert (out[keep] == np.asarray(image)[keep]).all()
    assert np.abs(out[~keep] - np.asarray(image)[~keep]).mean() > 5


def test_an_all_white_mask_is_plain_sampling_with_a_deterministic_sampler(tiny_pipe, init):
    plain = tiny_pipe(PROMPT, seed=6, sampler="dpm++", output_type="pt", progress=False).images
    out = tiny_pipe.inpaint(PROMPT, init, torch.ones(64, 64), seed=6, sampler="dpm++", output_type="pt",
                            progress=False).images
    assert torch.equal(out, plain)


def test_inpainting_with_strength_starts_the_masked_part_from_the_noised_original(tiny_pipe, init, mask):
    kwargs = {"output_type": "pt", "progress": False}
    out = tiny_pipe.inpaint(PROMPT, init, mask, strength=0.0, **kwargs).images
    original = (init.clamp(-1, 1) + 1) / 2
    assert torch.equal(out[0], original)
    low = tiny_pipe.inpaint(PROMPT, init, mask, strength=0.2, num_inference_steps=[5, 3, 3], **kwargs).images
    full = tiny_pipe.inpaint(PROMPT, init, mask, strength=1.0, num_inference_steps=[5, 3, 3], **kwargs).images
    assert (low[0] - original).abs().mean() < (full[0] - original).abs().mean()


def test_outpainting_keeps_the_content_and_fills_the_border(tiny_pipe, init):
    from imagen.images import to_pil

    content = to_pil(init[None])[0].crop((0, 8, 64, 56))  # 64 x 48
    out = np.asarray(tiny_pipe.outpaint(PROMPT, content, (0, 8, 0, 8), seed=0, progress=False).images[0]).astype(int)
    assert out.shape == (64, 64, 3)
    assert (out[8:56] == np.asarray(content)).all()
    assert out[:8].std() > 1  # the border was generated, not left a flat fill
    with pytest.raises(ValueError, match="square"):
        tiny_pipe.outpaint(PROMPT, content, (1, 8, 0, 8), progress=False)


def test_bad_inputs_give_one_clear_error(tiny_pipe, init, mask, tmp_path):
    with pytest.raises(ValueError, match="mask is 32x32 but the image is 64x64"):
        tiny_pipe.inpaint(PROMPT, init, torch.ones(32, 32), progress=False)
    with pytest.raises(ValueError, match="no white pixels"):
        tiny_pipe.inpaint(PROMPT, init, torch.zeros(64, 64), progress=False)
    with pytest.raises(ValueError, match="resample_steps"):
        tiny_pipe.inpaint(PROMPT, init, mask, resample_steps=0, progress=False)
    (tmp_path / "mask.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read the mask"):
        tiny_pipe.inpaint(PROMPT, init, tmp_path / "mask.png", progress=False)
    with pytest.raises(ValueError, match="output_type"):
        tiny_pipe.inpaint(PROMPT, init, mask, output_type="tensor", progress=False)


def test_inpainting_without_a_mask_is_refused(tiny_pipe):
    with pytest.raises(ValueError, match="inpaint needs a mask"):  # it ran as plain text-to-image before
        tiny_pipe.inpaint("a red circle", torch.zeros(1, 3, 16, 16), None, progress=False)
