"""A tiny three-stage cascade (16 -> 32 -> 64 px, a few thousand parameters per U-Net, 2-3 steps) for the
pipeline, checkpoint, augmentation and CLI tests. Its U-Nets get random non-zero weights everywhere (the
output convolutions are zero-initialised, which would make every stage return its input noise), so the
tests see real text, guidance and low-res conditioning at work."""

from __future__ import annotations

import pytest
import torch

from configs import RunConfig, load_config

STAGES = (("base", 16, 0), ("sr1", 32, 16), ("sr2", 64, 32))


def tiny_config() -> RunConfig:
    """shapes-tiny shrunk: 2 U-Net levels of 8 and 16 channels, self-attention only in the base stage."""
    overrides = []
    for name, resolution, lowres in STAGES:
        overrides += [f"{name}.resolution={resolution}", f"{name}.unet.channels=8", f"{name}.unet.channel_mults=1,2",
                      f"{name}.unet.num_res_blocks=1,1", f"{name}.unet.cross_attn=false,true",
                      f"{name}.unet.self_attn=false,{str(name == 'base').lower()}", f"{name}.unet.head_dim=8",
                      f"{name}.unet.cond_dim=16", f"{name}.sampler.num_steps={3 if name == 'base' else 2}"]
        if lowres:
            overrides += [f"{name}.lowres_resolution={lowres}", f"{name}.train.crop_size=0"]
    return load_config("shapes-tiny", overrides)


def randomize(pipe, seed: int = 0, std: float = 0.2) -> None:
    """Every U-Net parameter ~ N(0, std^2), from a fixed generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in pipe.stages.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture(scope="session")
def tiny_pipe():
    """The tiny cascade with random weights, on the CPU, in eval mode. Do not modify it in a test."""
    from imagen import Imagen

    pipe = Imagen.from_config(tiny_config())
    randomize(pipe)
    return pipe.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipe, tmp_path_factory):
    """`tiny_pipe` written by save_pretrained."""
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one intra-op thread, much faster when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sample_cli(tiny_pipe, tiny_model_dir, capsys, monkeypatch):
    """sample_cli(*args, model=True) -> (exit status, stdout, stderr) of imagen-sample, in process, with
    `--model <tiny model> --steps 2` first (unless model=False). Every run reuses the session's T5 instead of
    loading it again (the slow part of a tiny run)."""
    import imagen.pipeline
    from imagen import cli

    monkeypatch.setattr(imagen.pipeline, "load_text_encoder", lambda config, device=None: tiny_pipe.text_encoder)

    def invoke(*args, model=True):
        argv = (["--model", str(tiny_model_dir), "--steps", "2"] if model else []) + [str(a) for a in args]
        status = cli.main(argv)
        out, err = capsys.readouterr()
        return status, out, err
    return invoke
