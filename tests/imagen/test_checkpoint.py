"""save_pretrained / from_pretrained: the saved layout, round trips, partial cascades, and one clear error
naming the file for every way a model directory can be broken."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from imagen import Imagen, checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a small red circle at the top left on a blue background", "a large green square"]


@pytest.fixture
def load(tiny_pipe):
    """from_pretrained reusing the session's text encoder (loading the T5 again is the slow part)."""
    return lambda path, **kw: Imagen.from_pretrained(path, text_encoder=tiny_pipe.text_encoder, **kw)


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path):
    """A private copy of the saved tiny model, free to break."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def _sample(pipe, **kwargs):
    return pipe.generate(PROMPTS, seed=0, progress=False, **kwargs)


def test_layout_is_one_json_config_and_one_safetensors_per_stage(tiny_model_dir, tiny_pipe):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == ["base.safetensors", "config.json",
                                                                "sr1.safetensors", "sr2.safetensors"]
    document = json.loads((tiny_model_dir / "config.json").read_text())
    assert document["format"] == "imagen-cascade" and document["version"] == 1
    assert document["stages"] == ["base", "sr1", "sr2"]
    assert document["text_encoder"]["sha256"] == tiny_pipe.text_encoder.identity["sha256"]
    assert document["config"]["base"]["resolution"] == 16
    assert not list(tiny_model_dir.glob(".*"))  # no temp files left behind


def test_save_load_gives_identical_images(tiny_pipe, tiny_model_dir, load):
    loaded = load(tiny_model_dir)
    assert loaded.config == tiny_pipe.config
    assert not loaded.training
    for name in tiny_pipe.stages:
        for key, value in tiny_pipe.stages[name].net.state_dict().items():
            assert torch.equal(loaded.stages[name].net.state_dict()[key], value), (name, key)
    expected, got = _sample(tiny_pipe), _sample(loaded)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_from_pretrained_loads_its_own_text_encoder(tiny_pipe, tiny_model_dir):
    loaded = Imagen.from_pretrained(tiny_model_dir)
    assert loaded.text_encoder is not tiny_pipe.text_encoder
    assert loaded.text_encoder.identity["sha256"] == tiny_pipe.text_encoder.identity["sha256"]
    expected, got = _sample(tiny_pipe, stop_at_stage=1), _sample(loaded, stop_at_stage=1)
    assert torch.equal(expected["base"], got["base"])


def test_fp16_save_is_half_the_size_and_samples_within_tolerance(tiny_pipe, tiny_model_dir, tmp_path, load):
    half = tiny_pipe.save_pretrained(tmp_path / "half", dtype=torch.float16)
    full_size = (tiny_model_dir / "base.safetensors").stat().st_size
    assert (half / "base.safetensors").stat().st_size < 0.6 * full_size
    loaded = load(half)
    assert next(loaded.parameters()).dtype == torch.float32
    expected, got = _sample(tiny_pipe, stop_at_stage=2), _sample(loaded, stop_at_stage=2)
    for name in expected:
        error = (expected[name] - got[name]).abs()
        assert float(error.mean()) < 0.02 and float(error.max()) < 0.25, name


@pytest.mark.parametrize("stages", [["base"], ["base", "sr1"]])
def test_partial_cascades_load_and_sample(tiny_pipe, tmp_path, load, stages):
    weights = {name: tiny_pipe.stages[name].net.state_dict() for name in stages}
    directory = tiny_pipe.save_pretrained(tmp_path / "partial", state_dicts=weights)
    assert sorted(p.name for p in directory.glob("*.safetensors")) == sorted(f"{s}.safetensors" for s in stages)
    loaded = load(directory)
    assert list(loaded.stages) == stages
    assert all(getattr(loaded.config, name) is None for name in ("base", "sr1", "sr2") if name not in stages)
    got = _sample(loaded)
    expected = _sample(tiny_pipe, stop_at_stage=len(stages))
    assert list(got) == stages
    for name in stages:
        assert torch.equal(got[name], expected[name])


def test_nothing_to_save_is_an_error(tiny_pipe, tmp_path):
    with pytest.raises(ValueError, match="no stage has weights"):
        tiny_pipe.save_pretrained(tmp_path / "empty", state_dicts={})
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="is a file: save the model into a directory"):
        tiny_pipe.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_saving_over_a_model_leaves_none_of_its_stale_stages(tiny_pipe, tmp_path):
    directory = tiny_pipe.save_pretrained(tmp_path / "m")
    (directory / "notes.txt").write_text("mine")
    tiny_pipe.save_pretrained(directory, state_dicts={"base": tiny_pipe.stages["base"].net.state_dict()})
    assert sorted(p.name for p in directory.iterdir()) == ["base.safetensors", "config.json", "notes.txt"]


def test_missing_weights_file_is_named(model_dir, load):
    (model_dir / "sr1.safetensors").unlink()
    with pytest.raises(ValueError, match=r"sr1\.safetensors: missing"):
        load(model_dir)


def test_truncated_weights_file_is_named(model_dir, load):
    path = model_dir / "sr2.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"sr2\.safetensors: cannot be read as safetensors .*truncated"):
        load(model_dir)


def test_swapped_weights_files_are_named(model_dir, load):
    base, sr1 = model_dir / "base.safetensors", model_dir / "sr1.safetensors"
    data = base.read_bytes()
    base.write_bytes(sr1.read_bytes())
    sr1.write_bytes(data)
    with pytest.raises(ValueError, match=r"base\.safetensors: holds the weights of stage 'sr1', not 'base'"):
        load(model_dir)


def test_weights_that_do_not_fit_the_config_are_named(model_dir, load):
    path = model_dir / "config.json"
    document = json.loads(path.read_text())
    document["config"]["sr2"]["unet"]["channels"] = 16
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"sr2\.safetensors: weights do not match the model config: .*shape"):
        load(model_dir)


def test_missing_tensor_is_reported(tiny_pipe, tmp_path, load):
    weights = {name: dict(stage.net.state_dict()) for name, stage in tiny_pipe.stages.items()}
    dropped = next(iter(weights["sr1"]))
    del weights["sr1"][dropped]
    directory = tiny_pipe.save_pretrained(tmp_path / "model", state_dicts=weights)
    with pytest.raises(ValueError, match=rf"sr1\.safetensors: .*1 tensor\(s\) missing \(e\.g\. {dropped}\)"):
        load(directory)


@pytest.mark.parametrize("damage, match", [
    (lambda d: d.__setitem__("format", "other"), "not an imagen-cascade model config"),
    (lambda d: d.__setitem__("version", 99), "format version 99 is not supported"),
    (lambda d: d["config"]["base"]["unet"].__setitem__("chanels", 8), "invalid model config: .*chanels"),
])
def test_bad_config_json_is_named(model_dir, load, damage, match):
    path = model_dir / "config.json"
    document = json.loads(path.read_text())
    damage(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"config\.json: " + match):
        load(model_dir)


def test_unreadable_config_json_is_named(model_dir, load):
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: cannot be read as JSON"):
        load(model_dir)


def test_text_encoder_mismatch_is_refused(model_dir, load):
    path = model_dir / "config.json"
    document = json.loads(path.read_text())
    document["text_encoder"]["sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"config\.json: the text encoder .* differs from the one this model"):
        load(model_dir)


def test_unknown_model_names_and_directories(tmp_path, load):
    with pytest.raises(ValueError, match="no model 'no/such-model'.*not in the local Hugging Face cache"):
        load("no/such-model")
    with pytest.raises(ValueError, match=r"has no config\.json"):
        load(tmp_path)


def test_shipped_names_resolve_to_the_package_assets(tiny_model_dir, tmp_path, monkeypatch, load):
    shipped = tmp_path / "pretrained"
    shutil.copytree(tiny_model_dir, shipped / "tiny-shapes")
    monkeypatch.setattr(checkpoint, "PRETRAINED_DIR", shipped)
    assert checkpoint.pretrained_names() == ["tiny-shapes"]
    assert checkpoint.resolve_model("tiny-shapes") == shipped / "tiny-shapes"
    assert list(load("tiny-shapes").stages) == ["base", "sr1", "sr2"]
    with pytest.raises(ValueError, match="shipped: tiny-shapes"):
        checkpoint.resolve_model("tiny-shape")


def test_hub_names_resolve_from_the_local_cache_only(tiny_model_dir, tmp_path, monkeypatch, load):
    import huggingface_hub.constants

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-imagen"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert checkpoint.resolve_model("someone/tiny-imagen") == repo / "snapshots" / revision
    assert list(load("someone/tiny-imagen").stages) == ["base", "sr1", "sr2"]


def test_no_pickle_anywhere(tiny_model_dir):
    for path in tiny_model_dir.iterdir():
        assert path.suffix in (".json", ".safetensors"), path
        assert not path.read_bytes().startswith(b"\x80"), path  # pickle protocol header


def test_absurd_sizes_in_a_saved_config_are_refused_before_allocating(tiny_model_dir, tmp_path):
    import json
    import shutil

    from imagen import Imagen

    for key, value, message in (("channels", 10**7, "parameters"), ("resolution", 2**20, "above 4096 px")):
        damaged = tmp_path / key
        shutil.copytree(tiny_model_dir, damaged)
        document = json.loads((damaged / "config.json").read_text())
        if key == "channels":
            document["config"]["base"]["unet"]["channels"] = value
        else:
            document["config"]["sr2"]["resolution"] = value
        (damaged / "config.json").write_text(json.dumps(document))
        with pytest.raises(ValueError, match=message):
            Imagen.from_pretrained(damaged)
