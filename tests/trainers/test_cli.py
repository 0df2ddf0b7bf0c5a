import json

import pytest
import torch

from trainers.cli import main


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    code, out, _ = _run(["--config", "shapes-tiny", "--output", str(tmp_path / "r"), "--dry-run",
                         "--set", "base.train.lr=3e-4", "--max-steps", "7", "--stage", "base"], capsys)
    assert code == 0
    config = json.loads(out)
    assert config["base"]["train"]["lr"] == 3e-4 and config["base"]["train"]["max_steps"] == 7
    assert config["sr1"]["train"]["max_steps"] != 7  # only the selected stage
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--config", "shapes-tinyy"], "unknown preset 'shapes-tinyy'"),
    (["--config", "shapes-tiny", "--set", "base.train.lrr=1"], "unknown config key 'base.train.lrr'"),
    (["--config", "imagen-sr-256", "--stage", "base"], "--stage base: the config has no such stage"),
    (["--config", "shapes-tiny", "--data", "/no/such/folder"], "/no/such/folder"),
    (["--config", "shapes-tiny", "--lora", "4"], "give it with --init-from MODEL"),
    (["--init-from", "shapes", "--lora", "0"], "--lora 0: the rank must be >= 1"),
    (["--resume"], "no run in"),
    (["--export"], "(no run-config.json) to export"),
    (["--config", "shapes-tiny", "--minutes", "-5"], "max_minutes must be >= 0 (0: none), got -5.0"),
    ([], "--config is required"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code, _, err = _run([*argv, "--output", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("imagen-train: error: ") and message in err
    assert not (tmp_path / "r").exists()  # refused before the first checkpoint: no run left to block the fix


def test_an_interrupt_while_the_model_loads_reaches_the_caller_as_itself(tmp_path, monkeypatch):
    from trainers.run import InitModel

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(InitModel, "load", staticmethod(interrupted))
    with pytest.raises(KeyboardInterrupt):  # not masked by the handler of an error type not yet imported
        main(["--init-from", "shapes", "--output", str(tmp_path / "r")])


def test_an_output_holding_other_files_is_refused_untouched(tmp_path, capsys):
    from imagen.checkpoint import PRETRAINED_DIR

    (tmp_path / "notes.txt").write_text("mine")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((PRETRAINED_DIR / "shapes" / "config.json").read_bytes())
    for output, message in ((tmp_path / "notes.txt", "is a file"), (model, "holds no imagen-train run")):
        code, _, err = _run(["--config", "shapes-tiny", "--output", str(output), "--no-progress"], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]


def test_trains_exports_and_resumes(tmp_path, capsys, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    code, _, err = _run(["--config", "shapes-tiny", "--output", str(tmp_path), *sets, "--max-steps", "2",
                         "--no-progress", "--resume"], capsys)  # "resume if there is a run": a job's own restart
    assert code == 0, err
    assert f"no run in {tmp_path} to resume: starting it" in err
    assert "model exported to" in err and (tmp_path / "base.safetensors").is_file()
    code, _, err = _run(["--config", "shapes-tiny", "--output", str(tmp_path), "--no-progress"], capsys)
    assert code == 2 and "already holds a run" in err
    saved = (tmp_path / "run-config.json").read_text()
    code, _, err = _run(["--output", str(tmp_path), "--resume", "--set", "base.objective.prediction=eps"], capsys)
    assert code == 2 and err.count("\n") == 1 and "(base.objective.prediction: 'v' -> 'eps')" in err
    assert (tmp_path / "run-config.json").read_text() == saved  # the run's record is left as it was
    code, _, err = _run(["--output", str(tmp_path), "--resume", "--max-steps", "3", "--no-progress",
                         "--set", "base.unet.gradient_checkpointing=true", "--set", "base.train.lr=3e-4"], capsys)
    assert code == 0, err
    assert "base: stopped at step 3 (max_steps)" in err and "to resume: starting it" not in err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--output", "--stage", "--data", "--set", "--init-from", "--max-steps", "--minutes",
                 "--resume", "--dry-run"):
        assert flag in out


def test_export_of_a_checkpoint_without_training(tmp_path, capsys, tiny_overrides):
    from imagen import Imagen

    sets = [x for o in tiny_overrides for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "run"), *sets, "--no-progress"]) == 0
    code, _, err = _run(["--output", str(tmp_path / "run"), "--export", "--export-step", "4",
                         "--export-to", str(tmp_path / "at4")], capsys)
    assert code == 0, err
    at4 = Imagen.from_pretrained(tmp_path / "at4").stages["base"].net.state_dict()
    final = Imagen.from_pretrained(tmp_path / "run").stages["base"].net.state_dict()
    assert any(not (at4[k] == final[k]).all() for k in at4)  # step 4's EMA, not step 6's
    code, _, err = _run(["--output", str(tmp_path / "run"), "--export", "--export-step", "5"], capsys)
    assert code == 2 and "no checkpoint at step 5" in err
    exported = (tmp_path / "at4" / "base.safetensors").read_bytes()
    code, _, err = _run(["--output", str(tmp_path / "run"), "--export", "--export-to", str(tmp_path / "at4")], capsys)
    assert code == 2 and "--export-to" in err and "is not empty" in err
    assert (tmp_path / "at4" / "base.safetensors").read_bytes() == exported


def test_init_from_starts_from_the_model_weights_with_its_config(tmp_path, capsys, tiny_overrides):
    from imagen import Imagen

    sets = [x for o in tiny_overrides for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "first"), *sets, "--max-steps", "3",
                 "--no-progress"]) == 0
    first = Imagen.from_pretrained(tmp_path / "first").stages["base"].net.state_dict()
    # no --config: the model's own config; a vanishing learning rate: the tuned weights stay the model's
    code, _, err = _run(["--init-from", str(tmp_path / "first"), "--output", str(tmp_path / "tuned"),
                         "--set", "base.train.lr=1e-12", "--max-steps", "2", "--no-progress"], capsys)
    assert code == 0, err
    tuned = Imagen.from_pretrained(tmp_path / "tuned").stages["base"].net.state_dict()
    for key in first:
        torch.testing.assert_close(tuned[key], first[key], atol=1e-7, rtol=0)
    fresh = Imagen.from_pretrained(tmp_path / "first").config  # the tuned run kept the model's architecture
    assert json.loads((tmp_path / "tuned" / "run-config.json").read_text())["base"]["unet"]["channels"] == \
        fresh.base.unet.channels


def test_tuning_one_stage_exports_the_whole_cascade(tmp_path, capsys, tiny_cascade_overrides):
    from imagen import Imagen

    sets = [x for o in tiny_cascade_overrides for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "first"), *sets, "--max-steps", "2",
                 "--no-progress"]) == 0
    code, _, err = _run(["--init-from", str(tmp_path / "first"), "--output", str(tmp_path / "base-only"),
                         "--stage", "base", "--max-steps", "2", "--no-progress"], capsys)
    assert code == 0, err
    model, source = Imagen.from_pretrained(tmp_path / "base-only"), Imagen.from_pretrained(tmp_path / "first")
    assert list(model.stages) == list(source.stages) == ["base", "sr1"]
    for key, value in source.stages["sr1"].net.state_dict().items():  # the model's own SR stage, unchanged
        torch.testing.assert_close(model.stages["sr1"].net.state_dict()[key], value, atol=0, rtol=0)
    tuned = model.stages["base"].net.state_dict()
    assert any(not torch.equal(tuned[k], v) for k, v in source.stages["base"].net.state_dict().items())


def test_a_tuned_model_records_its_lineage(tmp_path, capsys, tiny_overrides):
    from imagen import Imagen

    def document(name):
        return json.loads((tmp_path / name / "config.json").read_text())

    sets = [x for o in tiny_overrides for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "first"), *sets, "--max-steps", "1",
                 "--no-progress"]) == 0
    assert "base_model" not in document("first")
    for source, target in (("first", "tuned"), ("tuned", "tuned-again")):
        code, _, err = _run(["--init-from", str(tmp_path / source), "--output", str(tmp_path / target),
                             "--max-steps", "1", "--no-progress"], capsys)
        assert code == 0, err
    lineage = document("tuned-again")["base_model"]
    assert lineage["name"] == str(tmp_path / "tuned") and lineage["stages_tuned"] == ["base"]
    assert lineage["digests"] == document("tuned")["digests"]
    assert lineage["base_model"] == document("tuned")["base_model"]
    assert lineage["base_model"]["digests"] == document("first")["digests"]
    # kept by a later export of the run and by save_pretrained
    code, _, err = _run(["--output", str(tmp_path / "tuned-again"), "--export"], capsys)
    assert code == 0, err
    assert document("tuned-again")["base_model"] == lineage
    Imagen.from_pretrained(tmp_path / "tuned-again").save_pretrained(tmp_path / "copy")
    assert document("copy")["base_model"] == lineage


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "base.unet.channels=16"], "weights do not match the model config"),
    (["--stage", "sr1", "--config", "shapes-tiny"], "has no stage sr1"),
])
def test_init_from_refuses_another_architecture_in_one_line(tmp_path, capsys, tiny_overrides, extra, message):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "first"), *sets, "--max-steps", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    code, _, err = _run(["--init-from", str(tmp_path / "first"), "--output", str(tmp_path / "tuned"), *extra,
                         "--max-steps", "1", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_compile_flag_sets_train_compile_for_the_selected_stages(tmp_path, capsys):
    code, out, _ = _run(["--config", "shapes-tiny", "--output", str(tmp_path / "r"), "--dry-run", "--compile",
                         "--stage", "sr1"], capsys)
    config = json.loads(out)
    assert code == 0 and config["sr1"]["train"]["compile"] is True and config["base"]["train"]["compile"] is False


def test_data_that_one_stage_cannot_use_is_named_with_the_stage(tmp_path, capsys, tiny_cascade_overrides):
    from PIL import Image

    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(6):  # 6 px: enough for the 16 px base (a quarter of its side), too small for the 32 px SR stage
        Image.new("RGB", (6, 6), (200, 30 * i, 40)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("a large red circle at the center on a blue background")
    sets = [x for o in tiny_cascade_overrides for x in ("--set", o)]
    code, _, err = _run(["--config", "shapes-tiny", "--output", str(tmp_path / "run"), *sets, "--data", str(folder),
                         "--max-steps", "1", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("imagen-train: error: stage sr1: no usable image") and "image too small" in err, err
