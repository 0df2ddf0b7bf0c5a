"""imagen-sample, in process, on the tiny saved cascade of conftest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from imagen import cli
from imagen.cli.common import MIN_GRID_CELL
from imagen.eval.sources import png_prompt

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a small red circle at the top left on a blue background"


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_help_explains_every_flag(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--prompt", "--prompts-file", "--guidance-scale", "--steps", "--sampler",
                 "--thresholding", "--dynamic-percentile", "--aug-level", "--seed", "--num-images",
                 "--stop-at-stage", "--out", "--grid", "--negative-prompt", "--device", "--time-grid",
                 "--max-batch-size", "--sweep", "--all-stages", "--dtype", "--upscale", "--overwrite", "--quiet",
                 "--version"):
        assert flag in text, flag
    assert "exit status" in text.lower()


def test_bfloat16_samples_close_to_float32_and_is_recorded(sample_cli, tmp_path):
    import numpy as np

    status, _, err = sample_cli("--prompt", PROMPT, "--out", tmp_path / "f32.png")
    assert status == 0, err
    status, _, err = sample_cli("--prompt", PROMPT, "--dtype", "bfloat16", "--out", tmp_path / "bf16.png")
    assert status == 0, err
    a, b = (np.asarray(Image.open(tmp_path / f), dtype=np.float64) for f in ("f32.png", "bf16.png"))
    assert np.abs(a - b).mean() < 6  # 8-bit levels: bfloat16 keeps 8 bits of mantissa
    assert json.loads(Image.open(tmp_path / "bf16.png").text["settings"])["dtype"] == "bfloat16"


def test_writes_one_png_per_image_with_prompt_and_settings(sample_cli, tmp_path, tiny_model_dir):
    out = tmp_path / "samples"
    status, stdout, err = sample_cli("--prompt", PROMPT, "--prompt", "a large green square", "--num-images", 2,
                                     "--seed", 10, "--guidance-scale", 4, 3, 1, "--aug-level", 0.2, "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png", "003.png"]
    assert str(out) in stdout.strip().splitlines()[-1]
    image = Image.open(out / "002.png")
    assert image.size == (64, 64) and image.mode == "RGB"
    assert image.text["prompt"] == "a large green square"
    assert png_prompt(out / "002.png") == "a large green square"  # what imagen-eval reads
    settings = json.loads(image.text["settings"])
    assert settings["seed"] == 12 and settings["index"] == 2 and settings["stage"] == "sr2"
    assert settings["model"] == str(tiny_model_dir) and settings["resolution"] == 64
    assert list(settings["stages"]) == ["base", "sr1", "sr2"]
    assert [s["guidance_scale"] for s in settings["stages"].values()] == [4.0, 3.0, 1.0]
    assert [s["aug_level"] for s in settings["stages"].values()] == [None, 0.2, 0.2]
    assert {s["num_steps"] for s in settings["stages"].values()} == {2}
    assert settings["stages"]["base"]["sampler"] == "dpm++"


def test_an_image_is_reproduced_alone_from_its_seed(sample_cli, tmp_path):
    status, _, err = sample_cli("--prompt", "a large green square", "--prompt", PROMPT, "--num-images", 2,
                                "--out", tmp_path / "all", "--max-batch-size", 3, "--stop-at-stage", 2)
    assert status == 0, err
    status, _, err = sample_cli("--prompt", PROMPT, "--seed", 3, "--out", tmp_path / "one.png", "--stop-at-stage", 2)
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all", "one.png"]
    # batch-independent up to float rounding: at most one 8-bit level apart
    assert np.abs(_pixels(tmp_path / "all" / "003.png") - _pixels(tmp_path / "one.png")).max() <= 1


def test_prompts_file_negative_prompt_and_stop_at_stage(sample_cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# shapes\n\na red circle\n   \n  a blue square  \n# done\n", encoding="utf-8")
    out = tmp_path / "out"
    status, _, err = sample_cli("--prompts-file", prompts, "--prompt", "first", "--negative-prompt", "green",
                                "--stop-at-stage", "base", "--out", out)
    assert status == 0, err
    images = sorted(out.iterdir())
    assert [Image.open(p).text["prompt"] for p in images] == ["first", "a red circle", "a blue square"]
    assert Image.open(images[0]).size == (16, 16)
    settings = json.loads(Image.open(images[1]).text["settings"])
    assert settings["negative_prompt"] == "green" and list(settings["stages"]) == ["base"]


def test_all_stages_writes_every_stage_under_its_name(sample_cli, tmp_path):
    out = tmp_path / "out"
    status, _, err = sample_cli("--prompt", PROMPT, "--all-stages", "--out", out)
    assert status == 0, err
    assert Image.open(out / "base" / "000.png").size == (16, 16)
    assert Image.open(out / "sr1" / "000.png").size == (32, 32)
    assert Image.open(out / "000.png").size == (64, 64)
    assert json.loads(Image.open(out / "sr1" / "000.png").text["settings"])["stage"] == "sr1"


def test_grid_is_labelled_and_can_be_the_only_output(sample_cli, tmp_path):
    out = tmp_path / "out"
    status, _, err = sample_cli("--prompt", PROMPT, "--prompt", "a large green square", "--num-images", 2, "--grid",
                                "--stop-at-stage", 1, "--out", out)
    assert status == 0, err
    grid = Image.open(out / "grid.png")
    cell = MIN_GRID_CELL  # 16 px images are shown at 128 px
    assert 2 * cell < grid.width < 3 * cell and grid.height > 2 * cell  # 2 x 2, captions under each image
    white = (np.asarray(grid.convert("L")) == 255).mean()
    assert white < 0.5  # images, not an empty canvas
    status, stdout, err = sample_cli("--prompt", PROMPT, "--num-images", 3, "--grid", "--stop-at-stage", 1,
                                     "--out", tmp_path / "grid.png")
    assert status == 0, err
    assert (tmp_path / "grid.png").is_file() and "grid.png" in stdout


def test_sweep_renders_a_labelled_rows_by_columns_grid(sample_cli, tmp_path):
    out = tmp_path / "sweep"
    status, stdout, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 2, "--out", out, "--sweep",
                                     "aug-level=0,0.5", "guidance-scale@sr1=1,3,8")
    assert status == 0, err
    grid = Image.open(out / "sweep.png")
    cell = MIN_GRID_CELL  # 32 px images shown at 128 px: 2 rows x 3 columns plus titles
    assert 3 * cell < grid.width < 4 * cell + 100 and 2 * cell < grid.height < 3 * cell
    cells = sorted(out.glob("sweep_*.png"))
    assert len(cells) == 6
    settings = json.loads(Image.open(cells[4]).text["settings"])  # row 1, column 1
    assert settings["sweep"] == {"aug-level": 0.5, "guidance-scale@sr1": 3.0}
    assert settings["stages"]["sr1"]["aug_level"] == 0.5 and settings["stages"]["sr1"]["guidance_scale"] == 3.0
    assert settings["stages"]["base"]["guidance_scale"] == 5.0  # the base stage keeps its own scale
    # a cell is the image a plain run with those options makes
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 2, "--aug-level", 0.5, "--guidance-scale", 5, 3,
                                "--out", tmp_path / "plain.png")
    assert status == 0, err
    assert np.array_equal(_pixels(cells[4]), _pixels(tmp_path / "plain.png"))
    assert not np.array_equal(_pixels(cells[3]), _pixels(cells[5]))  # guidance 1 vs 8


def test_one_axis_sweep_is_one_row(sample_cli, tmp_path):
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--out", tmp_path / "s.png", "--sweep",
                                "guidance-scale=1,5")
    assert status == 0, err
    grid = Image.open(tmp_path / "s.png")
    assert grid.width > 2 * MIN_GRID_CELL and grid.height < 2 * MIN_GRID_CELL


@pytest.mark.parametrize("args, match", [
    (["--prompt", "x", "--sampler", "euler"], "invalid choice: 'euler'"),
    (["--prompt", "x", "--steps", 2, 2], "--steps has 2 values but this call runs 3 stage.*: give one value or one per "
                                         "stage run$"),
    (["--prompt", "x", "--steps", 2, 2, 2, "--stop-at-stage", 2], "has 3 values but this call runs 2 stage"),
    (["--prompt", "x", "--seed", "lucky"], "--seed must be an integer or 'random'"),
    (["--prompt", "x", "--guidance-scale", 1, 2, 3, 4], "--guidance-scale has 4 values"),
    (["--prompt", "x", "--aug-level", 2.0], r"augmentation level must be in \[0, 1\]"),
    (["--prompts-file", "/nonexistent/prompts.txt"], "cannot read --prompts-file"),
    (["--prompt", "   "], "prompt 1 is empty"),
    (["--prompt", "a", "--prompt", "b", "--out", "x.png"], "is one .png but this run makes 2 images"),
    (["--prompt", "x", "--num-images", 0], "--num-images must be >= 1"),
    (["--prompt", "x", "--out", "x.jpg"], "images are written as PNG"),
    (["--prompt", "x", "--stop-at-stage", 5], "--stop-at-stage must be between 1 and 3"),
    (["--prompt", "x", "--sweep", "colour=1,2"], "--sweep 'colour=1,2': expected AXIS=V1,V2"),
    (["--prompt", "x", "--sweep", "aug-level=low,high"], "values must be comma-separated floats"),
    (["--prompt", "x", "--sweep", "steps=1", "seed=2", "aug-level=0"], "one or two axes"),
    (["--prompt", "x", "--sweep", "aug-level@base=0,1"], "base is not a super-resolution stage"),
    (["--prompt", "x", "--prompt", "y", "--sweep", "aug-level=0,1"], "one prompt and seed"),
    (["--prompt", "x", "--device", "tpu"], "unknown device 'tpu'"),
    (["--prompt", "x", "--compile", "sr3"], "no stage 'sr3' to compile; this model's stages: base, sr1, sr2"),
    ([], "no prompt"),
])
def test_user_errors_exit_2_with_one_line(sample_cli, args, match, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    status, stdout, err = sample_cli(*args)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("imagen-sample: error: "), err
    assert re.search(match, err), err
    assert "Traceback" not in err and not list(tmp_path.glob("*.png"))


def test_bad_model_exits_2_with_one_line(sample_cli, tmp_path):
    status, _, err = sample_cli("--model", tmp_path / "missing", "--prompt", "x", model=False)
    assert status == 2 and err.count("\n") == 1
    assert "no model" in err and "missing" in err
    status, _, err = sample_cli("--prompt", "x", model=False)
    assert status == 2 and err.count("\n") == 1 and "--model" in err


def test_unavailable_gpu_is_a_user_error(sample_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    status, _, err = sample_cli("--prompt", "x", "--device", "cuda")
    assert status == 2 and "no CUDA GPU" in err and err.count("\n") == 1


def test_compile_says_which_stages_pay_the_compile_before_sampling(sample_cli, tmp_path, monkeypatch):
    from imagen import Imagen

    def compile_names(self, stages=None, **kwargs):  # the wiring only: the compile itself is the pipeline's test
        self.compiled = list(stages or self.stages)
        return self

    monkeypatch.setattr(Imagen, "compile", compile_names)
    status, _, err = sample_cli("--prompt", "x", "--compile", "base", "--out", tmp_path / "a", "--stop-at-stage", 1)
    assert status == 0 and "imagen-sample: compiling base: each stage's first step pays it" in err
    status, _, err = sample_cli("--prompt", "x", "--compile", "base", "--out", tmp_path / "b", "--quiet")
    assert status == 0 and "compiling" not in err
    status, _, err = sample_cli("--prompt", "x", "--compile", "--out", tmp_path / "c", "--stop-at-stage", "base")
    assert status == 0 and "imagen-sample: compiling base: each" in err
    status, _, err = sample_cli("--prompt", "x", "--compile", "sr2", "--out", tmp_path / "d", "--stop-at-stage", 1)
    assert status == 0 and "compiling" not in err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("imagen-sample ")


def test_reruns_never_overwrite_silently(sample_cli, tmp_path):
    out = tmp_path / "out"
    for seed in (0, 1):
        status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--grid", "--seed", seed, "--out", out)
        assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "grid-2.png", "grid.png"]
    assert json.loads(Image.open(out / "001.png").text["settings"])["seed"] == 1
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--seed", 5, "--overwrite", "--out", out)
    assert status == 0, err
    assert json.loads(Image.open(out / "000.png").text["settings"])["seed"] == 5
    single = tmp_path / "one.png"
    assert sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--out", single)[0] == 0
    before = single.read_bytes()
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--seed", 3, "--out", single)
    assert status == 2 and "already exists: add --overwrite" in err and single.read_bytes() == before
    assert sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--seed", 3, "--overwrite", "--out", single)[0] == 0
    assert single.read_bytes() != before


def test_output_problems_are_found_before_the_model_loads(sample_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # the model does not exist either: the output path is checked first
    args = ("--model", tmp_path / "missing-model", "--prompt", PROMPT)
    status, _, err = sample_cli(*args, "--out", blocker, model=False)
    assert status == 2 and err.count("\n") == 1 and f"--out '{blocker}' is a file: give a directory" in err
    status, _, err = sample_cli(*args, "--out", blocker / "sub", model=False)
    assert status == 2 and "cannot create the output directory" in err and ".tmp" not in err
    status, _, err = sample_cli(*args, "--out", tmp_path, model=False)
    assert status == 2 and "no model" in err  # a good output path: then the model is the problem


def test_quiet_random_seed_and_unknown_words(sample_cli, tmp_path):
    status, stdout, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--quiet", "--out", tmp_path / "q")
    assert status == 0 and stdout == "" and err == ""
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--seed", "random", "--out", tmp_path / "r")
    assert status == 0, err
    seed = int(err.split("seed ")[1].split()[0])
    assert json.loads(Image.open(tmp_path / "r" / "000.png").text["settings"])["seed"] == seed
    status, _, err = sample_cli("--prompt", "an astronaut riding a horse", "--stop-at-stage", 1,
                                "--out", tmp_path / "a")
    notes = [line for line in err.splitlines() if "note:" in line]
    assert status == 0 and len(notes) == 1 and "unknown to the embedded text encoder" in notes[0]
    long = (f"{PROMPT} and a small green square at the top right and a small yellow triangle at the bottom right and "
            "a large white circle")  # 36 tokens with </s>
    status, _, err = sample_cli("--prompt", long, "--stop-at-stage", 1, "--out", tmp_path / "l")
    notes = [line for line in err.splitlines() if "note:" in line]
    assert status == 0 and len(notes) == 1 and "is longer than the 32 tokens the text encoder reads" in notes[0]
    assert notes[0].endswith("'a large white circle' is ignored"), notes[0]


def test_inputs_are_bounded_before_any_work(sample_cli, tmp_path):
    import os

    from imagen.cli.arguments import MAX_PROMPT_CHARS

    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:
        handle.truncate(17 * 2**20)  # 17 MB of zeros, sparse
    status, _, err = sample_cli("--prompts-file", big, "--out", tmp_path / "o")
    assert status == 2 and "is over 16 MB" in err and err.count("\n") == 1
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    status, _, err = sample_cli("--prompts-file", fifo, "--out", tmp_path / "o")
    assert status == 2 and "is a FIFO, not a regular file" in err
    status, _, err = sample_cli("--prompt", PROMPT, "--num-images", 10**9, "--out", tmp_path / "o")
    assert status == 2 and "images need about" in err and "--no-memory-check" in err and not (tmp_path / "o").exists()
    long_prompt = " ".join([PROMPT] * 100)
    status, _, err = sample_cli("--prompt", long_prompt, "--stop-at-stage", 1, "--out", tmp_path / "long.png")
    assert status == 0 and f"cut to {MAX_PROMPT_CHARS}" in err
    assert len(Image.open(tmp_path / "long.png").text["prompt"]) == MAX_PROMPT_CHARS


@pytest.mark.parametrize("args, match", [
    (["--steps", -5], r"^--steps: number of sampling steps must be an integer from 1 to 10,000, got -5$"),
    (["--steps", 2, 0], r"^--steps: number of sampling steps must be an integer from 1 to 10,000, got 0$"),
    (["--guidance-scale", "nan"], r"^--guidance-scale: guidance scale must be a finite number .*, got nan$"),
    (["--dynamic-percentile", 0], r"^--dynamic-percentile: dynamic thresholding percentile must be in \(0, 1\]"),
    (["--dynamic-percentile", 200], r"^--dynamic-percentile: .* must be in \(0, 1\], got 200.0$"),
    (["--aug-level", 1.5], r"^--aug-level: augmentation level must be in \[0, 1\], got 1.5$"),
    (["--sweep", "steps=2,0"], r"^--sweep steps: number of sampling steps must be an integer from 1 to 10,000, got 0$"),
    (["--sweep", "guidance-scale=1,2", "dynamic-percentile=0.9,300"],
     r"^--sweep dynamic-percentile: dynamic thresholding percentile must be in \(0, 1\], got 300.0$"),
    (["--seed", "99999999999999999999999"], r"^--seed 99999999999999999999999 is out of range: give an integer "
                                            r"from -2\*\*63 to 2\*\*63 - 1$"),
    (["--seed", str(2**63)], r"^--seed 9223372036854775808 is out of range"),
    (["--seed", str(-2**63 - 1)], r"^--seed -9223372036854775809 is out of range"),
    (["--interpolate-seeds", 0, 2**64], r"^--interpolate-seeds 18446744073709551616 is out of range"),
    (["--out", "/proc/imagen-sample-test.png"], r"^--out '/proc/imagen-sample-test.png' cannot be written \(.* in "
                                                r"'/proc'\): choose another --out$"),
    (["--out", "/proc/imagen-sample-test/sub"], r"^--out '/proc/imagen-sample-test/sub' cannot be written"),
    (["--out", "/sys/imagen-sample-test.png"], r"^--out '/sys/imagen-sample-test.png' cannot be written"),
])
def test_bad_values_are_refused_before_the_model_loads(sample_cli, tmp_path, monkeypatch, args, match):
    import re
    import sys

    if "/proc/" in str(args) and not sys.platform.startswith("linux"):
        pytest.skip("/proc and /sys are Linux's")
    monkeypatch.chdir(tmp_path)
    # the model does not exist: the bad value must be found first
    status, _, err = sample_cli("--model", tmp_path / "missing-model", "--prompt", PROMPT, *args, model=False)
    assert status == 2 and err.count("\n") == 1 and err.startswith("imagen-sample: error: "), err
    assert re.search(match, err.removeprefix("imagen-sample: error: ").strip()), err
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seed_runs_every_stage(sample_cli, tmp_path):
    status, _, err = sample_cli("--prompt", PROMPT, "--seed", 2**63 - 1, "--num-images", 2, "--out", tmp_path / "o")
    assert status == 0, err  # seed + image index + stage offset still fits torch's generators
    assert json.loads(Image.open(tmp_path / "o" / "001.png").text["settings"])["seed"] == 2**63


def test_an_unfinishable_sweep_writes_nothing(sample_cli, tmp_path):
    out = tmp_path / "sweep"
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--sweep", "steps=2,0", "--out", out)
    assert status == 2 and "--sweep steps: number of sampling steps must be" in err and not out.exists()


def test_the_output_check_leaves_no_directory_behind(sample_cli, tmp_path):
    # the trial write makes new/deep, writes in it, then removes both; here the model is then missing
    status, _, err = sample_cli("--model", tmp_path / "missing-model", "--prompt", PROMPT, "--out",
                                tmp_path / "new" / "deep", model=False)
    assert status == 2 and "no model" in err and list(tmp_path.iterdir()) == []


def test_numbers_continue_after_the_stage_folders_too(sample_cli, tmp_path):
    out = tmp_path / "out"
    (out / "base").mkdir(parents=True)
    (out / "base" / "000.png").write_bytes(b"an earlier run's base image")
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 2, "--all-stages", "--out", out)
    assert status == 0, err
    assert (out / "base" / "000.png").read_bytes() == b"an earlier run's base image"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["001.png", "base/000.png", "base/001.png"]


@pytest.fixture(scope="module")
def adapters(tiny_pipe, tmp_path_factory):
    """Adapters for the tiny cascade's base stage, in a/lora, b/lora and my.lora (random non-zero weights)."""
    import copy

    import torch

    from imagen.lora import adapter_weights, add_lora, save_lora

    pytest.importorskip("peft")
    net = copy.deepcopy(tiny_pipe.stages["base"].net)
    add_lora(net, rank=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    root = tmp_path_factory.mktemp("adapters")
    for folder in ("a/lora", "b/lora", "my.lora"):
        save_lora(root / folder, {"base": adapter_weights(net.state_dict())}, base_model="tiny", rank=2, alpha=2,
                  conv=False, text_encoder=tiny_pipe.text_encoder.identity)
    return root


def test_adapters_sharing_a_folder_name_get_their_own_names(sample_cli, adapters, tmp_path):
    out = tmp_path / "one.png"
    status, _, err = sample_cli("--prompt", PROMPT, "--stop-at-stage", 1, "--lora", adapters / "a" / "lora",
                                "--lora", f"{adapters / 'b' / 'lora'}:-0.5", "--lora", adapters / "my.lora",
                                "--out", out)
    assert status == 0, err
    loras = json.loads(Image.open(out).text["settings"])["lora"]
    assert [(lora["name"], lora["scale"]) for lora in loras] == [("lora", 1.0), ("lora-2", -0.5), ("my_lora", 1.0)]


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "abc", "0.5x", ""])
def test_a_bad_lora_scale_is_named(sample_cli, adapters, tmp_path, scale):
    item = f"{adapters / 'a' / 'lora'}:{scale}"
    status, _, err = sample_cli("--model", tmp_path / "missing-model", "--prompt", PROMPT, "--lora", item,
                                "--out", tmp_path / "o.png", model=False)
    assert status == 2 and err.count("\n") == 1, err
    assert err.strip() == (f"imagen-sample: error: --lora {item}: {scale!r} is not a scale; give DIR or DIR:SCALE, "
                           "e.g. DIR:0.75")
    assert list(tmp_path.iterdir()) == []
