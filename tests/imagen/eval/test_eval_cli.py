"""imagen-eval, run in-process: directories (PNG prompt chunk, .txt), manifests, JSON output, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import PngImagePlugin

from imagen.eval.cli import main
from imagen.shapes import Scene, held_out_scenes, render


def _save(path: Path, scene: Scene, resolution: int = 64, prompt: str | None = None) -> None:
    info = PngImagePlugin.PngInfo()
    if prompt is not None:
        info.add_text("prompt", prompt)
        info.add_text("settings", json.dumps({"seed": 0}))
    render(scene, resolution).save(path, pnginfo=info)


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """Three PNGs with a prompt chunk (one of them wrong: object and background colours swapped), one with a
    .txt caption, one with no caption, one with a caption that is not a shapes caption."""
    directory = tmp_path / "samples"
    directory.mkdir()
    one, two = held_out_scenes(3, 1), held_out_scenes(1, 2)
    _save(directory / "a.png", one[0], prompt=one[0].caption)
    _save(directory / "b.png", two[0], prompt=two[0].caption)
    obj = one[1].objects[0]
    swapped = Scene((type(obj)(obj.size, one[1].background, obj.shape, obj.position),), obj.color)
    _save(directory / "c.png", swapped, prompt=one[1].caption)
    _save(directory / "d.png", one[2])
    (directory / "d.txt").write_text(one[2].caption + "\n")
    _save(directory / "e.png", one[2])
    _save(directory / "f.png", one[2], prompt="a watercolour of a lighthouse")
    return directory


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("imagen-eval: error: ") and "Traceback" not in err
    return err


def test_directory_table_and_json(samples, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main([str(samples), "--json", str(out), "--per-image"]) == 0
    printed = capsys.readouterr().out
    assert "4 images judged" in printed and "2 skipped: 1 no caption, 1 not shapes caption" in printed
    assert "caption compliance at 64 px" in printed and "c.png: wrong background, object_color" in printed
    result = json.loads(out.read_text())
    assert result["count"] == 4 and result["skipped"] == 2
    assert result["skipped_by_reason"] == {"no_caption": 1, "not_shapes_caption": 1}
    (samples / "g.png").write_bytes((samples / "a.png").read_bytes()[:60])  # cut short: its caption too
    assert main([str(samples), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["skipped_by_reason"] == {"no_caption": 1, "not_shapes_caption": 1,
                                                                "unreadable": 1}
    assert result["one_object"]["count"] == 3 and result["one_object"]["background"] == pytest.approx(2 / 3)
    assert result["two_objects"]["overall"] == 1.0
    assert result["by_resolution"]["64"]["count"] == 4
    assert [r["image"] for r in result["images"]] == ["a.png", "b.png", "c.png", "d.png"]
    assert result["sharpness"]["by_resolution"]["64"]["count"] == 4


def test_manifest_and_low_res(tmp_path, capsys):
    scenes = held_out_scenes(2, 1)
    (tmp_path / "hi").mkdir()
    (tmp_path / "lo").mkdir()
    for i, scene in enumerate(scenes):
        _save(tmp_path / "hi" / f"{i}.png", scene, resolution=256)
        _save(tmp_path / "lo" / f"{i}.png", scene, resolution=64)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps({"image": f"hi/{i}.png", "caption": s.caption})
                                  for i, s in enumerate(scenes)) + "\n\n")
    out = tmp_path / "eval.json"
    assert main([str(manifest), "--low-res", str(tmp_path / "lo"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sharper in 100% of 2 images" in printed and "colour drift" in printed and "grain on flat" in printed
    result = json.loads(out.read_text())
    assert result["all"]["overall"] == 1.0
    compared = result["sharpness"]["vs_bicubic"]
    assert compared["count"] == 2 and compared["ratio_median"] > 2
    assert compared["color_drift_mean"] < 2 and compared["flat_grain_mean"] < 1


@pytest.mark.parametrize("case", ["missing", "empty", "not_shapes", "bad_flag", "bad_low_res", "bad_json_dir",
                                  "json_is_dir", "json_in_proc", "bad_manifest", "manifest_fields", "not_a_manifest"])
def test_user_errors_exit_2_with_one_line(case, samples, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    _save(only_bad / "x.png", held_out_scenes(1, 1)[0], prompt="a cat")
    bad_manifest = tmp_path / "bad.jsonl"
    bad_manifest.write_text('{"image": "a.png", "caption": "x"}\n{not json\n')
    fields = tmp_path / "fields.jsonl"
    fields.write_text('{"caption": "x"}\n')
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n")
    argv = {"missing": [str(tmp_path / "nope")], "empty": [str(empty)], "not_shapes": [str(only_bad)],
            "bad_flag": [str(samples), "--frobnicate"], "bad_low_res": [str(samples), "--low-res", str(tmp_path / "x")],
            "bad_json_dir": [str(samples), "--json", str(tmp_path / "no" / "such.json")],
            "json_is_dir": [str(samples), "--json", str(empty)],
            "json_in_proc": [str(samples), "--json", "/proc/x.json"],
            "bad_manifest": [str(bad_manifest)], "manifest_fields": [str(fields)], "not_a_manifest": [str(other)]}[case]
    assert main(argv) == 2
    message = _error_line(capsys)
    expected = {"missing": "no such file", "empty": "no images", "not_shapes": "no image with a shapes caption",
                "bad_flag": "unrecognized arguments", "bad_low_res": "--low-res", "bad_json_dir": "--json",
                "json_is_dir": "is a directory", "json_in_proc": "--json /proc/x.json: cannot write the report",
                "bad_manifest": "bad.jsonl:2: not valid JSON", "manifest_fields": '"image"',
                "not_a_manifest": "expected a directory"}[case]
    assert expected in message


def test_help_explains_every_flag(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--json", "--low-res", "--recursive", "--per-image", "--version", "source"):
        assert flag in text


def test_python_dash_m(samples):
    done = subprocess.run([sys.executable, "-m", "imagen.eval", str(samples)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "4 images judged" in done.stdout
