"""imagen-sample's editing and exploring flags (imagen.cli.modes), in process, on the tiny saved cascade."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from imagen import cli

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a small red circle at the top left on a blue background"
OTHER = "a large green square"


@pytest.fixture(scope="module")
def files(tiny_pipe, tmp_path_factory):
    """An input image (64 px, the tiny cascade's output size), a mask, and broken or odd variants."""
    folder = tmp_path_factory.mktemp("inputs")
    image = tiny_pipe(["two triangles"], seed=11, progress=False).images[0]
    image.save(folder / "image.png")
    image.convert("P").save(folder / "palette.png")
    image.crop((0, 8, 64, 56)).save(folder / "wide.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 20, 40, 44))
    mask.save(folder / "mask.png")
    mask.convert("RGB").save(folder / "mask_rgb.png")
    mask.resize((32, 32)).save(folder / "mask_small.png")
    Image.new("L", (64, 64), 0).save(folder / "black.png")
    (folder / "junk.png").write_text("not an image")
    return folder


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_help_explains_every_editing_flag(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--upscale", "--init-image", "--strength", "--mask", "--resample-steps", "--outpaint",
                 "--interpolate-to", "--interpolate-seeds", "--frames", "--gif", "--frame-duration", "--text-diff",
                 "--diff-scale"):
        assert flag in text, flag
    words = " ".join(text.split())
    assert "white = regenerate, black = keep" in words and "exit status" in words


def test_strength_zero_writes_the_input_and_records_the_edit(sample_cli, files, tmp_path):
    status, stdout, err = sample_cli("--prompt", PROMPT, "--init-image", files / "image.png", "--strength", 0,
                                     "--out", tmp_path / "same.png")
    assert status == 0, err
    assert (_pixels(tmp_path / "same.png") == _pixels(files / "image.png")).all()
    settings = json.loads(Image.open(tmp_path / "same.png").text["settings"])
    assert settings["edit"] == {"mode": "img2img", "init_image": str(files / "image.png"),
                                "strength": {"base": 0.0, "sr1": 0.0, "sr2": 0.0}}


def test_upscale_equals_strength_zero_for_the_base_and_notes_a_resize(sample_cli, files, tmp_path):
    status, _, err = sample_cli("--prompt", PROMPT, "--upscale", files / "image.png", "--seed", 2,
                                "--out", tmp_path / "up.png")
    assert status == 0, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "resizing the 64x64 image to 16x16" in notes[0]  # the tiny base makes 16 px images
    status, _, err = sample_cli("--prompt", PROMPT, "--init-image", files / "image.png", "--strength", 0, 1, 1,
                                "--seed", 2, "--out", tmp_path / "init.png")
    assert status == 0, err
    assert (_pixels(tmp_path / "up.png") == _pixels(tmp_path / "init.png")).all()
    settings = json.loads(Image.open(tmp_path / "up.png").text["settings"])
    assert settings["edit"] == {"mode": "upscale", "upscale": str(files / "image.png")}
    assert list(settings["stages"]) == ["sr1", "sr2"]


def test_variations_grid(sample_cli, files, tmp_path):
    out = tmp_path / "variations"
    status, _, err = sample_cli("--prompt", PROMPT, "--init-image", files / "palette.png", "--num-images", 2, "--grid",
                                "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "grid.png"]
    assert json.loads(Image.open(out / "000.png").text["settings"])["edit"]["strength"]["base"] == 0.6
    assert np.abs(_pixels(out / "000.png") - _pixels(out / "001.png")).max() > 0


@pytest.mark.parametrize("mask", ["mask.png", "mask_rgb.png"])
def test_inpainting_keeps_the_unmasked_pixels(sample_cli, files, tmp_path, mask):
    status, _, err = sample_cli("--prompt", PROMPT, "--init-image", files / "image.png", "--mask", files / mask,
                                "--resample-steps", 2, "--out", tmp_path / "inpainted.png")
    assert status == 0, err
    keep = np.asarray(Image.open(files / "mask.png")) < 128
    out, original = _pixels(tmp_path / "inpainted.png"), _pixels(files / "image.png")
    assert (out[keep] == original[keep]).all()
    assert np.abs(out[~keep] - original[~keep]).mean() > 5
    edit = json.loads(Image.open(tmp_path / "inpainted.png").text["settings"])["edit"]
    assert edit["mode"] == "inpaint" and edit["resample_steps"] == 2 and edit["strength"]["sr2"] == 1.0


def test_outpainting_pads_a_non_square_image(sample_cli, files, tmp_path):
    status, _, err = sample_cli("--prompt", PROMPT, "--init-image", files / "wide.png", "--outpaint", 0, 8, 0, 8,
                                "--out", tmp_path / "out.png")
    assert status == 0, err
    out = _pixels(tmp_path / "out.png")
    assert out.shape == (64, 64, 3) and (out[8:56] == _pixels(files / "wide.png")).all()


def test_interpolation_writes_frames_a_strip_and_a_gif_with_the_plain_samples_at_the_ends(sample_cli, tmp_path):
    out = tmp_path / "interp"
    status, stdout, err = sample_cli("--prompt", PROMPT, "--interpolate-to", OTHER, "--interpolate-seeds", 3, 4,
                                     "--frames", 3, "--gif", "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png", "interpolation.gif",
                                                      "interpolation.png"]
    assert "interpolation.gif" in stdout
    assert Image.open(out / "interpolation.png").size == (3 * 64, 64)
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 4 and gif.info["loop"] == 0
    assert Image.open(out / "002.png").text["prompt"] == OTHER
    settings = json.loads(Image.open(out / "001.png").text["settings"])
    assert settings["interpolation"]["u"] == 0.5 and settings["interpolation"]["to"] == {"prompt": OTHER, "seed": 4}
    status, _, err = sample_cli("--prompt", OTHER, "--seed", 4, "--out", tmp_path / "plain.png")
    assert status == 0, err
    assert (_pixels(out / "002.png") == _pixels(tmp_path / "plain.png")).all()
    strip = _pixels(out / "interpolation.png")
    assert (strip[:, 128:] == _pixels(tmp_path / "plain.png")).all()


def test_interpolation_to_one_png_and_text_diff(sample_cli, tmp_path):
    status, _, err = sample_cli("--prompt", PROMPT, "--interpolate-seeds", 0, 1, "--frames", 2, "--gif",
                                "--stop-at-stage", 1, "--out", tmp_path / "strip.png")
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strip.gif", "strip.png"]
    out = tmp_path / "diff"
    status, stdout, err = sample_cli("--prompt", PROMPT, "--text-diff", "red", "green", "--diff-scale", 0, 1.5,
                                     "--stop-at-stage", 1, "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "text_diff.png"]
    assert json.loads(Image.open(out / "001.png").text["settings"])["text_diff"] == {
        "source": "red", "target": "green", "scale": 1.5}
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--out", tmp_path / "plain.png")
    assert (_pixels(out / "000.png") == _pixels(tmp_path / "plain.png")).all()  # scale 0: the plain sample


@pytest.mark.parametrize("args,message", [
    (["--init-image", "junk.png"], "cannot read --init-image '.*junk.png': not an image file"),
    (["--init-image", "missing.png"], "cannot read --init-image '.*missing.png': No such file"),
    (["--init-image", "wide.png"], "--init-image is 64x48 but the model makes square images"),
    (["--init-image", "image.png", "--mask", "mask_small.png"], "--mask is 32x32 but --init-image is 64x64"),
    (["--init-image", "image.png", "--mask", "black.png"], "--mask has no white pixels"),
    (["--init-image", "image.png", "--mask", "junk.png"], "cannot read --mask"),
    (["--mask", "mask.png"], "--mask needs --init-image"),
    (["--init-image", "image.png", "--strength", "1.5"], "--strength must be in"),
    (["--init-image", "image.png", "--resample-steps", "2"], "--resample-steps needs --mask or --outpaint"),
    (["--init-image", "image.png", "--outpaint", "1", "0", "0", "0"], "--outpaint: .*square"),
    (["--init-image", "image.png", "--outpaint", "1", "0", "0", "0", "--mask", "mask.png"], "drop --mask"),
    (["--init-image", "image.png", "--text-diff", "a", "b"], "separate modes"),
    (["--upscale", "image.png", "--strength", "0"], "--upscale runs the super-resolution stages on the image as it is"),
    (["--upscale", "image.png", "--stop-at-stage", "1"],
     "--upscale runs the super-resolution stages: --stop-at-stage 1"),
    (["--upscale", "junk.png"], "cannot read --upscale"),
    (["--interpolate-to", OTHER, "--frames", "1"], "--frames must be >= 2"),
    (["--interpolate-to", OTHER, "--num-images", "2"], "exactly one --prompt"),
    (["--gif"], "--gif needs --interpolate-to or --interpolate-seeds"),
    (["--diff-scale", "2"], "--diff-scale needs --text-diff"),
])
def test_bad_editing_arguments_give_one_clear_line_and_exit_2(sample_cli, files, tmp_path, args, message):
    import re

    args = [str(files / a) if a.endswith(".png") else a for a in args]
    status, stdout, err = sample_cli("--prompt", PROMPT, *args, "--out", tmp_path / "out")
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagen-sample: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_a_gif_already_beside_the_strip_is_kept_without_overwrite(sample_cli, tmp_path):
    gif, strip = tmp_path / "strip.gif", tmp_path / "strip.png"
    gif.write_bytes(b"an earlier GIF")
    args = ("--prompt", PROMPT, "--interpolate-to", OTHER, "--frames", 2, "--gif", "--stop-at-stage", 1,
            "--out", strip)
    status, _, err = sample_cli(*args)
    assert status == 2 and err.count("\n") == 1, err
    assert err.strip() == (f"imagen-sample: error: --out '{strip}': '{gif}' already exists: add --overwrite to "
                           "replace it, or choose another name")
    assert gif.read_bytes() == b"an earlier GIF" and not strip.exists()
    status, _, err = sample_cli(*args, "--overwrite")
    assert status == 0, err
    assert Image.open(gif).format == "GIF" and Image.open(strip).size == (2 * 16, 16)
