"""LoRA: adapters trained on a model (imagen-train --init-from M --lora RANK), written as their own small file,
loaded back onto M at a scale (0 = M itself), merged or not, from the library and from imagen-sample."""

from __future__ import annotations

import json

import pytest
import torch

from trainers.cli import main

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(a tiny base-only model with random non-zero weights, adapters trained on it for 4 steps)."""
    from imagen import Imagen
    from tests.trainers.conftest import TINY_BASE

    root = tmp_path_factory.mktemp("lora")
    sets = [x for o in [*TINY_BASE, "sr1=none", "sr2=none", "base.train.max_steps=1"] for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--output", str(root / "trained"), "--no-progress", *sets]) == 0
    pipe = Imagen.from_pretrained(root / "trained")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an output convolution at zero would hide what the adapters do
        for parameter in pipe.stages.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    pipe.save_pretrained(root / "model")
    lora = ["--set", "base.train.lr=1e-2", "--set", "base.train.warmup_steps=0",
            "--set", "base.train.sample_every=2"]  # a preview grid mid-run, drawn with the adapters
    assert main(["--init-from", str(root / "model"), "--lora", "4", "--output", str(root / "adapters"),
                 "--max-steps", "4", "--no-progress", *lora]) == 0
    assert list((root / "adapters" / "base" / "samples").glob("*.png"))
    return root / "model", root / "adapters"


def test_adapters_are_their_own_small_file_referring_to_the_model(trained):
    model, adapters = trained
    document = json.loads((adapters / "lora.json").read_text())
    assert document["base_model"] == str(model) and document["rank"] == 4 and document["stages"] == ["base"]
    assert not (adapters / "config.json").exists()
    size = (adapters / "lora.safetensors").stat().st_size
    assert size < (model / "base.safetensors").stat().st_size / 2


def test_scale_zero_is_the_model_and_merging_changes_nothing(trained):
    from imagen import Imagen

    model, adapters = trained
    kwargs = {"seed": 3, "progress": False}
    plain = Imagen.from_pretrained(model).generate(["a red circle"], **kwargs)["base"]
    off = Imagen.from_pretrained(model)
    off.load_lora(adapters, scale=0.0)
    torch.testing.assert_close(off.generate(["a red circle"], **kwargs)["base"], plain, atol=1e-5, rtol=0)
    on = Imagen.from_pretrained(model)
    on.load_lora(adapters)
    adapted = on.generate(["a red circle"], **kwargs)["base"]
    assert (adapted - plain).abs().max() > 1e-3
    merged = Imagen.from_pretrained(model)
    merged.load_lora(adapters, merge=True)
    torch.testing.assert_close(merged.generate(["a red circle"], **kwargs)["base"], adapted, atol=1e-4, rtol=0)
    two = Imagen.from_pretrained(model)
    two.load_lora(adapters, scale=0.5, name="one")
    two.load_lora(adapters, scale=0.5, name="two")  # two halves: the whole adapter
    torch.testing.assert_close(two.generate(["a red circle"], **kwargs)["base"], adapted, atol=1e-4, rtol=0)
    two_merged = Imagen.from_pretrained(model)
    for name in ("one", "two"):  # merged one after the other, both stay in the weights
        two_merged.load_lora(adapters, scale=0.5, name=name, merge=True)
    torch.testing.assert_close(two_merged.generate(["a red circle"], **kwargs)["base"], adapted, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="already loaded"):
        two.load_lora(adapters, name="one")


@pytest.mark.parametrize("target, adapted_layer", [
    ("text", r".*\.cross_attn\.kv$"),  # only what cross-attention reads from the text
    # the two finest levels' residual blocks and resampling, the output convolution
    ("local", r"out_conv|(downs|ups)\.0\.resample\.conv|(downs|ups)\.[01]\.res_blocks\.\d+\.(conv1|conv2|cond)"),
])
def test_a_target_adapts_only_its_layers(trained, tmp_path, target, adapted_layer):
    import re

    from safetensors.torch import load_file

    from imagen import Imagen

    model, _ = trained
    out = tmp_path / f"{target}-adapters"
    assert main(["--init-from", str(model), "--lora", "4", "--lora-target", target, "--output", str(out),
                 "--max-steps", "2", "--no-progress", "--set", "base.train.lr=1e-2"]) == 0
    assert json.loads((out / "lora.json").read_text())["target"] == target
    layers = {key.split(".lora_")[0].removeprefix("base.") for key in load_file(str(out / "lora.safetensors"))}
    assert layers and all(re.fullmatch(adapted_layer, layer) for layer in layers), sorted(layers)
    kwargs = {"seed": 3, "progress": False}
    plain = Imagen.from_pretrained(model).generate(["a red circle"], **kwargs)["base"]
    adapted = Imagen.from_pretrained(model)
    adapted.load_lora(out)
    assert (adapted.generate(["a red circle"], **kwargs)["base"] - plain).abs().max() > 1e-4


def test_imagen_sample_takes_adapters_and_records_them(trained, tmp_path, capsys):
    from PIL import Image

    from imagen.cli import main as sample

    model, adapters = trained
    out = tmp_path / "x.png"
    assert sample(["--model", str(model), "--prompt", "a red circle", "--lora", f"{adapters}:0.5", "--out",
                   str(out), "--quiet"]) == 0
    settings = json.loads(Image.open(out).text["settings"])
    assert settings["lora"] == [{"adapter": str(adapters), "name": "adapters", "scale": 0.5, "merged": False}]
    assert sample(["--model", str(model), "--prompt", "a red circle", "--lora", str(tmp_path), "--out",
                   str(tmp_path / "y.png")]) == 2
    assert "holds no lora.json" in capsys.readouterr().err


def test_adapters_of_another_model_or_damaged_are_refused_in_one_line(trained, tmp_path):
    import shutil

    from imagen import Imagen

    _, adapters = trained
    with pytest.raises(ValueError, match=r"do not fit stage base \(size mismatch for .*\); load them onto"):
        Imagen.from_pretrained("shapes").load_lora(adapters)  # trained on the tiny model, not the shipped one
    damaged = tmp_path / "damaged"
    shutil.copytree(adapters, damaged)
    document = json.loads((damaged / "lora.json").read_text())
    del document["stages"]
    (damaged / "lora.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="no 'stages'"):
        Imagen.from_pretrained(trained[0]).load_lora(damaged)


def test_a_bad_scale_leaves_the_model_as_it_was(trained):
    from imagen import Imagen

    model, adapters = trained
    pipe = Imagen.from_pretrained(model)
    for scale in ("0.5", float("nan"), True):
        with pytest.raises(ValueError, match="scale must be a finite number"):
            pipe.load_lora(adapters, scale=scale)
    assert pipe.loras == [] and not any("lora_" in k for k in pipe.stages["base"].net.state_dict())


def test_merged_adapters_save_as_a_model_of_their_own(trained, tmp_path):
    from imagen import Imagen

    model, adapters = trained
    kwargs = {"seed": 3, "progress": False}
    unmerged = Imagen.from_pretrained(model)
    unmerged.load_lora(adapters)
    with pytest.raises(ValueError, match="loaded unmerged: load them with merge=True"):
        unmerged.save_pretrained(tmp_path / "unmerged")
    merged = Imagen.from_pretrained(model)
    merged.load_lora(adapters, merge=True)
    merged.save_pretrained(tmp_path / "adapted")  # could not be loaded back before
    back = Imagen.from_pretrained(tmp_path / "adapted").generate(["a red circle"], **kwargs)["base"]
    torch.testing.assert_close(back, merged.generate(["a red circle"], **kwargs)["base"], atol=0, rtol=0)


def test_lora_needs_a_model_to_adapt(tmp_path, capsys):
    assert main(["--config", "shapes-tiny", "--lora", "4", "--output", str(tmp_path / "r"), "--stage", "base"]) == 2
    assert "give it with --init-from MODEL" in capsys.readouterr().err
    for flag in (["--lora-conv"], ["--lora-target", "text"]):
        assert main(["--config", "shapes-tiny", *flag, "--output", str(tmp_path / "r"), "--dry-run"]) == 2
        assert "give --lora RANK too" in capsys.readouterr().err


def _small_folder(folder, count: int):
    """`count` noisy 32 px PNGs captioned with a new word, the user's own small data set."""
    from tests.trainers.data.conftest import FORMATS, image_bytes, write

    for i in range(count):
        write(folder / f"{i}.png", image_bytes(FORMATS[".png"], size=(32, 32), seed=i))
        write(folder / f"{i}.txt", "a small zxq at the center on a blue background")
    return folder


def test_fine_tuning_on_a_small_folder_turns_prior_preservation_on(trained, tmp_path, capsys):
    from tests.trainers.data.conftest import FORMATS, image_bytes, write

    model, _ = trained
    folder = _small_folder(tmp_path / "mine", 5)
    out = tmp_path / "tuned"
    assert main(["--init-from", str(model), "--data", str(folder), "--output", str(out), "--max-steps", "1",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "prior preservation on, 25% of them from the model's own data (shapes)" in err
    data = json.loads((out / "run-config.json").read_text())["data"]
    assert (data["prior_source"], data["prior_share"]) == ("shapes", 0.25)
    off = tmp_path / "off"
    assert main(["--init-from", str(model), "--data", str(folder), "--output", str(off), "--max-steps", "1",
                 "--no-progress", "--set", "data.prior_share=0"]) == 0
    assert json.loads((off / "run-config.json").read_text())["data"]["prior_share"] == 0.0
    assert (off / "text-cache").is_dir() and "text cache" not in capsys.readouterr().err  # --no-progress: no bar
    capsys.readouterr()
    assert main(["--init-from", str(model), "--data", str(folder), "--output", str(tmp_path / "half"), "--dry-run",
                 "--set", "data.prior_share=0.5"]) == 0  # another weight, the same source
    data = json.loads(capsys.readouterr().out)["data"]
    assert (data["prior_source"], data["prior_share"]) == ("shapes", 0.5)
    other = tmp_path / "other"  # another prior source named alone: the default share, drawn from it
    write(other / "0.png", image_bytes(FORMATS[".png"], size=(32, 32), seed=9))
    write(other / "0.txt", "a large red circle at the center on a blue background")
    assert main(["--init-from", str(model), "--data", str(folder), "--output", str(tmp_path / "other-run"),
                 "--dry-run", "--set", f"data.prior_source={other}"]) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert (data["prior_source"], data["prior_share"]) == (str(other), 0.25)


def test_loss_masks_beside_the_images_reach_the_loss(trained, tmp_path, capsys):
    from safetensors.torch import load_file

    from tests.trainers.data.conftest import FORMATS, image_bytes, write

    model, _ = trained
    folder = _small_folder(tmp_path / "mine", 4)
    runs = {}
    for name in ("plain", "masked"):
        if name == "masked":
            for i in range(4):
                write(folder / f"{i}-masklabel.png", image_bytes(FORMATS[".png"], size=(32, 32), seed=10 + i, mode="L"))
        assert main(["--init-from", str(model), "--data", str(folder), "--output", str(tmp_path / name), "--lora",
                     "4", "--max-steps", "2", "--no-progress", "--set", "base.train.warmup_steps=0"]) == 0
        runs[name] = load_file(tmp_path / name / "lora.safetensors")
    assert "4 examples (4 with loss masks): prior preservation on" in capsys.readouterr().err
    assert any(not torch.equal(runs["plain"][k], runs["masked"][k]) for k in runs["plain"])
