"""`imagen-train --compile` (train.compile) on captions of different lengths. A compiled U-Net is fed the text at
the encoder's full `max_length` in every batch, one graph for the whole run: a new caption length would recompile
it with symbolic shapes, and the backward inductor builds for those fails (torch 2.13). The padding is masked
out, so the losses are those of the eager run."""

from __future__ import annotations

import pytest
import torch

from configs import load_config
from trainers.run import prepare_run_dir, train_run
from trainers.text_features import TextFeatures

from .conftest import LAUNCH_SETTINGS, LAUNCH_STEPS, launch_training, step_losses


def test_a_compiled_run_reads_fixed_length_text_at_fixed_sizes_with_the_eager_losses(
        tmp_path, monkeypatch, tiny_cascade_overrides, graph_recorder):
    lengths = []  # per run: the text's width, the mask's width and the real tokens of each batch
    features, compile_module = TextFeatures.__call__, torch.nn.Module.compile

    def spy(self, captions):
        embeds, mask = features(self, captions)
        lengths[-1].append((embeds.shape[1], mask.shape[1], tuple(mask.sum(1).tolist())))
        return embeds, mask

    monkeypatch.setattr(TextFeatures, "__call__", spy)
    runs, settings = {}, [*tiny_cascade_overrides, "base.train.max_steps=10", "sr1.train.max_steps=2",
                          "sr1.train.crop_size=0"]  # the SR stage at 32 px after the 16 px base
    for name, extra in (("eager", []), ("compiled", ["base.train.compile=true", "sr1.train.compile=true"])):
        config = load_config("shapes-tiny", [*settings, *extra])
        prepare_run_dir(tmp_path / name, config, False)
        lengths.append([])
        with monkeypatch.context() as patch:  # the trainer's own compile call, with a recording backend
            patch.setattr(torch.nn.Module, "compile", lambda net, **kwargs: compile_module(net, **kwargs,
                                                                                          backend=graph_recorder))
            train_run(config, tmp_path / name, ["base", "sr1"], resume=False, progress=False)
        runs[name] = step_losses(tmp_path / name)
    eager, fixed = lengths
    assert len({width for width, _, _ in eager}) > 1  # the captions' token counts differ from batch to batch
    full = config.text.max_length
    assert {(width, mask) for width, mask, _ in fixed} == {(full, full)}  # the encoder's max_length, every batch
    assert [tokens for _, _, tokens in fixed] == [tokens for _, _, tokens in eager]
    assert graph_recorder.symbolic and not any(graph_recorder.symbolic)  # fixed sizes, the SR stage's too
    assert runs["compiled"] == pytest.approx(runs["eager"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("processes, sharding", [(1, "none"), (2, "none"), (2, "fsdp")])  # one, DDP, FSDP
def test_compiled_training_runs_with_inductor(tmp_path, processes, sharding):
    sets = [x for s in LAUNCH_SETTINGS for x in ("--set", s)]
    launch_training(["--config", "shapes-tiny", "--output", str(tmp_path / "eager"), *sets], 1, 0)
    launch_training(["--config", "shapes-tiny", "--output", str(tmp_path / "compiled"), *sets, "--compile",
                     "--set", f"base.train.sharding={sharding}"], processes, 29541)
    eager, compiled = step_losses(tmp_path / "eager"), step_losses(tmp_path / "compiled")
    assert sorted(compiled) == list(range(1, LAUNCH_STEPS + 1))
    for step in eager:  # inductor's fused kernels sum in another order
        assert compiled[step] == pytest.approx(eager[step], rel=1e-3), step
