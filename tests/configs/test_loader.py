import json

import pytest

from configs import RunConfig, StageConfig, UNetConfig, from_json, load_config, preset_names, to_json


@pytest.mark.parametrize("name", ["shapes-tiny", "imagen-base-64", "imagen-sr-256", "imagen-sr-1024", "imagen-cascade"])
def test_presets_load_and_round_trip_through_json(name):
    config = load_config(name)
    assert isinstance(config, RunConfig)
    assert from_json(to_json(config)) == config
    assert json.loads(to_json(config))["name"] == name


def test_preset_names_list_the_shipped_presets():
    assert {"shapes-tiny", "imagen-cascade"} <= set(preset_names())


def test_shapes_tiny_is_a_three_stage_cascade():
    stages = load_config("shapes-tiny").stages()
    assert list(stages) == ["base", "sr1", "sr2"]
    assert [s.resolution for s in stages.values()] == [64, 256, 1024]
    assert not any(stages["sr2"].unet.self_attn)


def test_cascade_preset_inherits_the_single_stage_presets():
    cascade = load_config("imagen-cascade")
    assert cascade.base == load_config("imagen-base-64").base
    assert cascade.sr1 == load_config("imagen-sr-256").sr1
    assert cascade.sr2 == load_config("imagen-sr-1024").sr2
    assert cascade.sr2.schedule.kind == "linear"


def test_overrides_are_parsed_with_the_field_type():
    config = load_config("shapes-tiny", ["base.train.lr=3e-4", "base.unet.channel_mults=1,2,2,4",
                                         "base.unet.self_attn=false,false,true,true", "base.train.batch_size=8",
                                         "base.sampler.name=ddim", "text.name=/models/t5", "sr2=none"])
    assert config.base.train.lr == 3e-4
    assert config.base.unet.channel_mults == (1, 2, 2, 4)
    assert config.base.unet.self_attn == (False, False, True, True)
    assert config.base.train.batch_size == 8 and config.base.sampler.name == "ddim"
    assert config.text.name == "/models/t5"
    assert config.sr2 is None and config.sr1 is not None


def test_file_configs_load_toml_and_json(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('inherit = "shapes-tiny"\nname = "mine"\n[base.train]\nbatch_size = 4\n')
    config = load_config(toml)
    assert config.name == "mine" and config.base.train.batch_size == 4
    assert config.sr1 == load_config("shapes-tiny").sr1
    resolved = tmp_path / "config.json"
    resolved.write_text(to_json(config))
    assert load_config(resolved) == config


@pytest.mark.parametrize(("overrides", "message"), [
    (["base.train.lrr=1"], "unknown config key 'base.train.lrr'.*did you mean 'lr'"),
    (["bse.train.lr=1"], "'bse' is not a field.*did you mean 'base'"),
    (["base.train.lr=fast"], "'base.train.lr' must be of type float"),
    (["base.train.batch_size=2.5"], "'base.train.batch_size' must be of type int"),
    (["base.sampler.name=dpm"], "'base.sampler.name' is 'dpm'.*valid choices: ddpm, ddim, dpm\\+\\+"),
    (["base.sampler.thresholding=soft"], "valid choices: none, static, dynamic"),
    (["base.unet.self_attn=true,false"], "base.unet: self_attn has 2 entries but channel_mults has 4"),
    (["base=3"], "is a section"),
    (["base.train.lr"], "not of the form key.sub=value"),
    (["base.train.lr.x=1"], "is a value, not a section"),
])
def test_bad_overrides_name_the_key_and_the_choices(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("shapes-tiny", overrides)


def test_unknown_preset_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'shapes-tin'.*did you mean 'shapes-tiny'"):
        load_config("shapes-tin")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[base\n")
    with pytest.raises(ValueError, match="cannot be parsed"):
        load_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[base.unet]\nchanels = 3\n")
    with pytest.raises(ValueError, match="unknown config key 'base.unet.chanels'.*did you mean 'channels'"):
        load_config(typo)


def test_cascade_consistency_is_checked():
    with pytest.raises(ValueError, match="sr1.lowres_resolution .* must equal the previous stage's resolution"):
        load_config("shapes-tiny", ["sr1.lowres_resolution=32"])
    with pytest.raises(ValueError, match="defines no stage"):
        load_config("shapes-tiny", ["base=none", "sr1=none", "sr2=none"])
    with pytest.raises(ValueError, match="crop_size needs a stage without self-attention"):
        StageConfig(resolution=256, lowres_resolution=64, unet=UNetConfig(), train=load_config(
            "shapes-tiny").sr1.train)


def test_configs_are_frozen():
    config = load_config("shapes-tiny")
    with pytest.raises(AttributeError):
        config.base.train.lr = 1.0


@pytest.mark.parametrize(("overrides", "change"), [
    (["text.name=/models/t5-small"], "text.name: 'embedded' -> '/models/t5-small'"),
    (["sr1.unet.channels=32"], "sr1.unet.channels: 16 -> 32"),
    (["base.schedule.kind=linear"], "base.schedule.kind: 'cosine' -> 'linear'"),
    (["base.train.lr=1e-5", "base.unet.dropout=0.1", "base.unet.gradient_checkpointing=true", "sr2=none",
      "base.sampler.num_steps=50", "data.position_jitter=0.1", "text.max_length=64"], None),
])
def test_architecture_change_names_the_first_setting_that_changes_the_weights(overrides, change):
    saved = load_config("shapes-tiny")
    assert saved.architecture_change(load_config("shapes-tiny", overrides)) == change
