import json
import math

import pytest
import torch

from configs import load_config
from imagen import Imagen
from trainers.checkpoints import list_checkpoints
from trainers.run import prepare_run_dir, train_run
from trainers.trainer import TrainingError


def _losses(stage_dir):
    return [r["loss"] for r in map(json.loads, (stage_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r and not r.get("skipped")]


def _train(run_dir, overrides, resume=False, **kwargs):
    config = load_config("shapes-tiny", overrides)
    prepare_run_dir(run_dir, config, resume)
    return train_run(config, run_dir, list(config.stages()), resume=resume, progress=False, **kwargs)


def test_resume_repeats_an_uninterrupted_run_bit_for_bit(tmp_path, tiny_overrides):
    _train(tmp_path / "whole", tiny_overrides)
    _train(tmp_path / "split", tiny_overrides, max_steps=3)  # stops after step 3 (checkpoint at 3)
    _train(tmp_path / "split", tiny_overrides, resume=True)
    whole, split = _losses(tmp_path / "whole" / "base"), _losses(tmp_path / "split" / "base")
    assert len(whole) == 6 and split == whole
    a = Imagen.from_pretrained(tmp_path / "whole").stages["base"].net.state_dict()
    b = Imagen.from_pretrained(tmp_path / "split").stages["base"].net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_layout_and_export(tmp_path, tiny_cascade_overrides):
    results = _train(tmp_path, tiny_cascade_overrides)
    assert {n: r.step for n, r in results.items()} == {"base": 6, "sr1": 3}
    assert (tmp_path / "run-config.json").is_file() and (tmp_path / "config.json").is_file()
    assert load_config(tmp_path / "run-config.json") == load_config("shapes-tiny", tiny_cascade_overrides)
    assert [p.name for p in list_checkpoints(tmp_path / "base" / "checkpoints")] == ["step-000004", "step-000006"]
    events = list((tmp_path / "base" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    pipe = Imagen.from_pretrained(tmp_path)
    images = pipe.generate(["a small red circle at the top left on a blue background"], progress=False)
    assert images["sr1"].shape == (1, 3, 32, 32) and images["sr1"].abs().max() <= 1.0


def test_a_run_directory_is_never_overwritten(tmp_path, tiny_overrides):
    _train(tmp_path, [*tiny_overrides, "base.train.max_steps=1"])
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        _train(tmp_path, tiny_overrides)


def test_non_finite_losses_stop_training_with_a_clear_message(tmp_path, tiny_overrides, monkeypatch):
    from imagen.stage import Stage

    monkeypatch.setattr(Stage, "training_loss", lambda self, images, *a, **k: torch.full(
        (images.shape[0],), math.nan, requires_grad=True))
    with pytest.raises(TrainingError, match="not finite for 3 steps in a row.*lower base.train.lr"):
        _train(tmp_path, [*tiny_overrides, "base.train.nan_patience=3"])


def test_time_budget_stops_the_stage(tmp_path, tiny_overrides):
    results = _train(tmp_path, [*tiny_overrides, "base.train.max_minutes=0.0001", "base.train.max_steps=1000"])
    assert results["base"].reason == "time budget" and 1 <= results["base"].step < 1000


def test_gradient_accumulation_matches_the_full_batch(tmp_path, tiny_overrides):
    _train(tmp_path / "full", [*tiny_overrides, "base.train.max_steps=2"])
    _train(tmp_path / "accum", [*tiny_overrides, "base.train.max_steps=2", "base.train.grad_accum=2"])
    full, accum = _losses(tmp_path / "full" / "base"), _losses(tmp_path / "accum" / "base")
    assert full == pytest.approx(accum, rel=1e-5)
