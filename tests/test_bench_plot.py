"""bench/plot.py: the compliance sweeps of bench/quality.py as PNG line charts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_SPEC = importlib.util.spec_from_file_location("bench_plot", Path(__file__).resolve().parents[1] / "bench" / "plot.py")
plot = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(plot)  # bench/ holds scripts, not an installed package


def _row(**extra):
    return {"background": 0.9, "object_color": 0.5, "position": 0.1, "shape": 0.3, "size": 0.7, **extra}


def test_one_panel_per_sweep_with_every_attribute_drawn_in_its_colour():
    sweeps = {"steps": [_row(sampler="dpm++", steps=10), _row(sampler="ddpm", steps=250)],
              "guidance": [_row(guidance=g, thresholding=m) for m in ("static", "dynamic") for g in (1.0, 5.0)],
              "progress": [_row(step=400, train_minutes=6.2), _row(step=800, train_minutes=12.7)]}
    image = plot.plot_sweeps(sweeps)
    assert image.size == (plot.WIDTH, 4 * plot.HEIGHT)
    pixels = np.asarray(image).reshape(-1, 3)
    for colour in plot.ATTRIBUTE_COLOURS.values():
        assert (pixels == colour).all(axis=1).any(), colour


def test_no_sweep_no_plot():
    assert plot.plot_sweeps({}) is None and plot.plot_sweeps({"steps": []}) is None
