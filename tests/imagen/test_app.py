"""imagen-app without a browser: the page's controls turn into one checked pipeline call, a painted layer into a
mask, and a missing Gradio into one line saying how to install it."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from PIL import Image

from imagen.app import _mask, main


def test_without_gradio_it_says_how_to_install_it(monkeypatch, capsys, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert main(["--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[app]'" in err


def test_an_address_it_cannot_serve_is_refused_before_the_model_loads(capsys, tmp_path):
    import socket

    from imagen.app import serving_port
    from imagen.cli.common import UsageError

    assert 0 < serving_port("127.0.0.1", 0) <= 65535  # a free one
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for host, port, message in (("127.0.0.1", 70000, "--port 70000: give a port in 1-65535"),
                                    ("127.0.0.1", busy, f"cannot serve at --host 127.0.0.1 --port {busy}"),
                                    ("no.such.host.invalid", 0, "cannot serve at --host no.such.host.invalid")):
            with pytest.raises(UsageError, match=message):
                serving_port(host, port)
        if importlib.util.find_spec("gradio") is not None:  # the command checks it before loading any model
            assert main(["--model", str(tmp_path / "no-model"), "--port", str(busy)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"--port {busy}" in err, err


def test_a_painted_layer_is_the_mask():
    background = Image.new("RGB", (16, 16), (0, 0, 255))
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (4, 4, 8, 8))
    mask = _mask({"background": background, "layers": [layer]})
    assert mask.getbbox() == (4, 4, 8, 8) and mask.getpixel((5, 5)) == 255 and mask.getpixel((0, 0)) == 0
    with pytest.raises(ValueError, match="paint the region"):
        _mask({"background": background, "layers": []})


def test_the_controls_become_one_checked_call(tiny_pipe):
    gradio = pytest.importorskip("gradio")
    from imagen.app import Controls

    with gradio.Blocks():
        controls = Controls(tiny_pipe)
    per_stage = [5.0, 3, "ddim", "dynamic", 0.99, 0.0] + [1.0, 2, "dpm++", "none", 0.995, 0.2] * 2
    kwargs = controls.read(["a red circle", "", 2, 7, False, *per_stage])
    assert kwargs["seed"] == 7 and kwargs["num_images_per_prompt"] == 2 and kwargs["negative_prompt"] is None
    options = kwargs["options"]
    assert (options["base"].sampler, options["base"].num_steps, options["sr2"].aug_level) == ("ddim", 3, 0.2)
    assert options["base"].aug_level is None
    upscale = controls.read(["a red circle", "", 1, 0, False, *per_stage], start_at_stage="sr1")
    assert list(upscale["options"]) == ["sr1", "sr2"]
    with pytest.raises(gradio.Error):
        controls.read(["  ", "", 1, 0, False, *per_stage])
    with pytest.raises(gradio.Error, match="percentile"):
        controls.read(["a red circle", "", 1, 0, False, *([5.0, 3, "ddim", "dynamic", 1.5, 0.0] * 3)])
