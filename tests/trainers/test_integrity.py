"""Nothing corrupt is used silently and no two trainers share a run: digests of checkpoints and exported models
checked on load, --resume falling back to the newest checkpoint that verifies, weights of the wrong type refused,
and a lock on the run directory."""

from __future__ import annotations

import json
import os

import pytest
import torch

from trainers.cli import main


def _train(tmp_path, overrides, *extra):
    sets = [x for o in [*overrides, "base.train.checkpoint_every=2"] for x in ("--set", o)]
    return main(["--config", "shapes-tiny", "--stage", "base", "--output", str(tmp_path / "run"), "--no-progress",
                 *sets, *extra])


def _flip(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path, tiny_overrides, capsys):
    assert _train(tmp_path, tiny_overrides) == 0
    checkpoints = tmp_path / "run" / "base" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000004", "step-000006"]
    _flip(checkpoints / "step-000006" / "tensors.safetensors")
    capsys.readouterr()
    assert _train(tmp_path, tiny_overrides, "--resume", "--max-steps", "8") == 0
    err = capsys.readouterr().err
    assert "step-000006 cannot be used" in err and "trying the checkpoint before it" in err
    records = [json.loads(line) for line in (tmp_path / "run" / "base" / "metrics.jsonl").read_text().splitlines()
               if line.startswith("{")]
    assert [r["step"] for r in records if "loss" in r][-4:] == [5, 6, 7, 8]  # steps 5-6 trained again from 4
    _flip(checkpoints / "step-000008" / "tensors.safetensors")
    _flip(checkpoints / "step-000006" / "tensors.safetensors")
    assert _train(tmp_path, tiny_overrides, "--resume", "--max-steps", "9") == 2
    assert "no checkpoint of stage base" in capsys.readouterr().err.splitlines()[-1]


def test_a_second_trainer_on_the_same_run_is_refused(tmp_path, tiny_overrides, capsys):
    from trainers.run import run_lock

    with run_lock(tmp_path / "run"):
        assert _train(tmp_path, tiny_overrides) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is in use by another imagen-train (PID {os.getpid()})" in err
    assert _train(tmp_path, tiny_overrides) == 0  # released


def test_exported_models_are_verified_and_typed(tmp_path, tiny_overrides):
    from imagen import Imagen
    from imagen.checkpoint import read_model, write_model

    assert _train(tmp_path, tiny_overrides, "--max-steps", "2") == 0
    model = tmp_path / "run"
    config, document, weights = read_model(model)
    assert set(json.loads((model / "config.json").read_text())["digests"]) == {"base.safetensors"}
    _flip(model / "base.safetensors")
    with pytest.raises(ValueError, match="base.safetensors: its contents do not match the SHA-256"):
        Imagen.from_pretrained(model)
    typed = {k: (v > 0 if v.is_floating_point() and v.dim() > 1 else v) for k, v in weights["base"].items()}
    write_model(tmp_path / "bool", config, document["text_encoder"], {"base": typed})
    with pytest.raises(ValueError, match="is torch.bool in the file but the config needs a float tensor"):
        Imagen.from_pretrained(tmp_path / "bool")


def test_the_shipped_model_records_and_passes_its_digests():
    from imagen.checkpoint import read_model, resolve_model

    directory = resolve_model("shapes")
    assert set(json.loads((directory / "config.json").read_text())["digests"]) == {
        "base.safetensors", "sr1.safetensors", "sr2.safetensors"}
    assert torch.is_tensor(next(iter(read_model(directory)[2]["base"].values())))
