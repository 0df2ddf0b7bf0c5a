"""The paper-sized presets (imagen-base-64, imagen-sr-256, imagen-sr-1024 and imagen-cascade: cosine 64 and 256 px
stages, a linear-schedule 1024 px stage, ε-prediction) train a few steps and sample every stage with every
sampler, time grid and thresholding mode, through the code a full-size run uses, at reduced width."""

from __future__ import annotations

import pytest
import torch

from configs import load_config
from imagen import Imagen

pytestmark = pytest.mark.usefixtures("one_thread")


def reduced_width(stages=("base", "sr1", "sr2")) -> list[str]:
    """Overrides that keep a paper preset's resolutions, schedules and objectives at 8 channels."""
    overrides = ["text.name=embedded", "text.max_length=16"]
    for name in stages:
        overrides += [f"{name}.unet.channels=8", f"{name}.unet.channel_mults=1,1,1,1",
                      f"{name}.unet.num_res_blocks=1,1,1,1", f"{name}.unet.head_dim=8", f"{name}.unet.cond_dim=16"]
    return overrides


@pytest.fixture(scope="module")
def paper_cascade():
    return Imagen.from_config(load_config("imagen-cascade", reduced_width())).eval()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
@pytest.mark.parametrize("grid", ["uniform", "logsnr", "karras"])
def test_every_stage_samples_with_every_sampler_and_grid(paper_cascade, sampler, grid):
    assert paper_cascade.stages["sr2"].config.schedule.kind == "linear"
    out = paper_cascade.generate(["a red circle"], num_inference_steps=2, sampler=sampler, time_grid=grid,
                                 progress=False)
    assert {name: tuple(images.shape[-2:]) for name, images in out.items()} == \
        {"base": (64, 64), "sr1": (256, 256), "sr2": (1024, 1024)}
    assert all(bool(torch.isfinite(images).all()) for images in out.values())


@pytest.mark.parametrize("thresholding", ["none", "static", "dynamic"])
def test_every_stage_samples_with_every_thresholding_mode(paper_cascade, thresholding):
    out = paper_cascade.generate(["a red circle"], num_inference_steps=2, thresholding=thresholding,
                                 guidance_scale=5.0, progress=False)
    assert all(bool(torch.isfinite(images).all()) for images in out.values())


@pytest.mark.parametrize("preset, stages", [("imagen-base-64", ["base"]), ("imagen-sr-256", ["sr1"]),
                                            ("imagen-sr-1024", ["sr2"]), ("imagen-cascade", ["base", "sr1", "sr2"])])
def test_every_preset_trains_a_few_steps_and_its_export_samples(preset, stages, tmp_path):
    from trainers.cli import main

    overrides = reduced_width(stages)
    for name in stages:
        overrides += [f"{name}.train.batch_size=2", f"{name}.train.max_steps=2", f"{name}.train.checkpoint_every=2",
                      f"{name}.train.log_every=1"]
    argv = ["--config", preset, "--output", str(tmp_path / "run"), "--no-progress"]
    assert main([*argv, *(a for o in overrides for a in ("--set", o))]) == 0
    pipe = Imagen.from_pretrained(tmp_path / "run")
    assert list(pipe.stages) == stages
    first = pipe.stages[stages[0]].config
    start = None if not first.is_super_resolution else torch.zeros(1, 3, first.lowres_resolution,
                                                                        first.lowres_resolution)
    text = pipe.encode_prompts(["a red circle"])
    out = pipe.generate_from_embeddings(*text, seeds=[0], options=pipe.sampling_options(num_inference_steps=2),
                                        start=start, progress=False)
    assert all(bool(torch.isfinite(images).all()) for images in out.values())
