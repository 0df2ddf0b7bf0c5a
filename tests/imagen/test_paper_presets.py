"""The paper-sized cascade preset (imagen-cascade: cosine 64 and 256 px stages, a linear-schedule 1024 px stage)
samples every stage with every sampler and time grid, through the code a full-size run uses, at reduced width."""

from __future__ import annotations

import pytest
import torch

from configs import load_config
from imagen import Imagen

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def paper_cascade():
    overrides = ["text.name=embedded", "text.max_length=16"]
    for name in ("base", "sr1", "sr2"):
        overrides += [f"{name}.unet.channels=8", f"{name}.unet.channel_mults=1,1,1,1",
                      f"{name}.unet.num_res_blocks=1,1,1,1", f"{name}.unet.head_dim=8", f"{name}.unet.cond_dim=16"]
    return Imagen.from_config(load_config("imagen-cascade", overrides)).eval()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
@pytest.mark.parametrize("grid", ["uniform", "logsnr", "karras"])
def test_every_stage_samples_with_every_sampler_and_grid(paper_cascade, sampler, grid):
    assert paper_cascade.stages["sr2"].config.schedule.kind == "linear"
    out = paper_cascade.generate(["a red circle"], num_inference_steps=2, sampler=sampler, time_grid=grid,
                                 progress=False)
    assert {name: tuple(images.shape[-2:]) for name, images in out.items()} == \
        {"base": (64, 64), "sr1": (256, 256), "sr2": (1024, 1024)}
    assert all(bool(torch.isfinite(images).all()) for images in out.values())
