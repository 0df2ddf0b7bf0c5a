"""Sharded training (FSDP2 `fully_shard`) on two CPU processes over gloo, through `imagen-train` under
`accelerate launch`, against one unsharded process: the same losses for 10 steps (and for two DDP processes),
sharded checkpoints that are published atomically with a digest per file, an exact resume, and the same
exported model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainers.checkpoints import list_checkpoints, load_checkpoint

from .conftest import LAUNCH_SETTINGS, LAUNCH_STEPS, launch_training, step_losses


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sharding")
    sets = [x for s in LAUNCH_SETTINGS for x in ("--set", s)]
    launch_training(["--config", "shapes-tiny", "--output", str(root / "one"), *sets], 1, 0)
    launch_training(["--config", "shapes-tiny", "--output", str(root / "fsdp"), *sets,
                     "--set", "base.train.sharding=fsdp"], 2, 29531)
    launch_training(["--config", "shapes-tiny", "--output", str(root / "ddp"), *sets], 2, 29535)
    return {"one": root / "one", "fsdp": root / "fsdp", "ddp": root / "ddp", "root": root}


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_two_processes_take_the_steps_of_one(runs, mode):
    one, two = step_losses(runs["one"]), step_losses(runs[mode])
    assert sorted(one) == sorted(two) == list(range(1, LAUNCH_STEPS + 1))
    for step in one:  # float32 sums in another order: equal to ~1e-6 relative
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert len(set(one.values())) == LAUNCH_STEPS  # the losses move: a real run, not a constant
    assert not (runs[mode] / "base" / "checkpoints" / "step-000010" / "sharded").exists() or mode == "fsdp"


def test_sharded_checkpoints_hold_shards_with_digests(runs):
    directory = runs["fsdp"] / "base" / "checkpoints"
    found = list_checkpoints(directory)
    assert [p.name for p in found] == ["step-000005", "step-000010"]
    assert not list(directory.glob(".*.tmp"))  # published by a rename: no staging directory left
    document = json.loads((found[-1] / "state.json").read_text())
    shards = [name for name in document["digests"] if name.startswith("sharded/")]
    assert any(name.endswith(".metadata") for name in shards) and len(shards) >= 3  # metadata + one file a rank
    assert "model" not in document["state"] and "scheduler" in document["state"]
    damaged = runs["root"] / "damaged"
    shutil.copytree(found[-1], damaged)
    shard = damaged / next(n for n in shards if n.endswith(".distcp"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot be used"):
        load_checkpoint(damaged)


def test_sharded_export_equals_the_unsharded_run(runs):
    one, two = load_file(str(runs["one"] / "base.safetensors")), load_file(str(runs["fsdp"] / "base.safetensors"))
    assert set(one) == set(two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # --export reads the sharded checkpoint in one process, with no launch
    launch_training(["--output", str(runs["fsdp"]), "--resume", "--export", "--export-to",
                     str(runs["root"] / "exported")], 1, 0)
    exported = load_file(str(runs["root"] / "exported" / "base.safetensors"))
    for name in two:
        assert torch.equal(exported[name], two[name]), name


def test_sharded_resume_repeats_the_run_exactly(runs):
    resumed = runs["root"] / "resumed"
    shutil.copytree(runs["fsdp"], resumed)
    shutil.rmtree(resumed / "base" / "checkpoints" / "step-000010")
    (resumed / "base.safetensors").unlink()
    launch_training(["--output", str(resumed), "--resume"], 2, 29533)
    first, again = step_losses(runs["fsdp"]), step_losses(resumed)
    for step in range(6, LAUNCH_STEPS + 1):
        assert again[step] == first[step], step
    exported = load_file(str(resumed / "base.safetensors"))
    reference = load_file(str(runs["fsdp"] / "base.safetensors"))
    for name in reference:
        assert torch.equal(exported[name], reference[name]), name


def test_sharded_fine_tuning_starts_from_the_model(runs):
    tuned = runs["root"] / "tuned"
    launch_training(["--init-from", str(runs["one"]), "--output", str(tuned), "--max-steps", "2",
                     "--set", "base.train.sharding=fsdp", "--set", "base.train.lr=1e-12"], 2, 29537)
    start, after = load_file(str(runs["one"] / "base.safetensors")), load_file(str(tuned / "base.safetensors"))
    for name in start:  # a vanishing learning rate: the tuned weights are the model's, gathered from the shards
        torch.testing.assert_close(after[name], start[name], atol=1e-6, rtol=0, msg=name)


def test_sharded_lora_writes_adapters_that_load(runs):
    from imagen import Imagen

    adapters = runs["root"] / "lora"
    launch_training(["--init-from", str(runs["one"]), "--output", str(adapters), "--lora", "4", "--max-steps", "2",
                     "--set", "base.train.sharding=fsdp", "--set", "base.train.sample_every=2"], 2, 29539)
    pipe = Imagen.from_pretrained(runs["one"])
    pipe.load_lora(adapters)
    assert list((adapters / "base" / "samples").glob("*.png"))  # the preview, drawn from gathered adapters


def test_two_processes_end_a_time_budget_together(tmp_path):
    """Each process times its own steps; the run ends at the step the main process's clock says, in both (one that
    stopped alone would leave the other waiting in the next gradient all-reduce), and the cosine ends there too."""
    run = tmp_path / "budget"
    sets = [*LAUNCH_SETTINGS, "base.train.max_steps=100000", "base.train.max_minutes=0.05",
            "base.train.checkpoint_every=100000", "base.train.lr_schedule=cosine", "base.train.warmup_steps=0",
            "base.unet.gradient_checkpointing=false"]
    launch_training(["--config", "shapes-tiny", "--output", str(run), *[x for s in sets for x in ("--set", s)]],
                    2, 29541, timeout=120)
    records = [json.loads(line) for line in (run / "base" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "lr" in r]
    assert records[-1]["stopped"] == "time budget" and 1 < len(steps) < 100000
    assert steps[-1]["elapsed_s"] >= 3.0  # the budget, 0.05 min
    assert steps[-1]["lr"] < 0.01 * steps[0]["lr"]  # decayed with the clock (by steps it would not have moved)


@pytest.mark.parametrize(("name", "machines", "processes"), [("8gpu", 1, 8), ("multinode", 4, 32)])
def test_ready_launch_configs_load_in_accelerate(name, machines, processes):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(Path(__file__).parents[2] / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU  # plain processes: sharding is train.sharding's
    assert (config.num_machines, config.num_processes, config.mixed_precision) == (machines, processes, "no")


def test_adafactor_is_refused_with_sharding_in_one_line():
    from configs import load_config

    with pytest.raises(ValueError, match="sharding=fsdp needs optimizer=adamw"):
        load_config("imagen-base-64", ["base.train.sharding=fsdp"])
    assert load_config("imagen-base-64", ["base.train.sharding=fsdp", "base.train.optimizer=adamw"])
