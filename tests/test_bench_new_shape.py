"""bench/new_shape.py's tuning data: 40 renders of the star with captions, named by `--phrase` when given."""

from __future__ import annotations

from PIL import Image

from bench.new_shape import held_out_star_prompts, phrased, write_data


def test_the_tuning_data_names_the_star_by_the_phrase(tmp_path):
    info = write_data(tmp_path, "sks triangle")
    captions = sorted(tmp_path.glob("*.txt"))
    assert info["images"] == len(captions) == len(list(tmp_path.glob("*.png"))) == 40
    texts = [c.read_text().strip() for c in captions]
    assert all(" sks triangle at " in t and "star" not in t for t in texts), texts[:3]
    assert Image.open(tmp_path / "00.png").size == (64, 64)
    prompt = held_out_star_prompts(1)[0]
    assert phrased(prompt, "star") == prompt
    assert phrased(prompt, "sks triangle") == prompt.replace("star", "sks triangle")
