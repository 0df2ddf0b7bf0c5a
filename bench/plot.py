"""Line charts of compliance sweeps (bench/quality.py --plot), drawn with PIL so the bench needs no plotting
library: one panel per sweep, x = the swept setting, y = accuracy in %, one line per attribute."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

ATTRIBUTE_COLOURS = {"background": (31, 119, 180), "object_color": (255, 127, 14), "position": (44, 160, 44),
                     "shape": (214, 39, 40), "size": (148, 103, 189)}
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 560, 240, 44, 110, 26, 34


def chart(title: str, labels: Sequence[str], rows: Sequence[dict]) -> Image.Image:
    """One panel: `rows[i]` holds the accuracies (fractions) measured at x label `labels[i]`."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    draw.text((LEFT, 6), title, fill="black", font=font)
    for percent in range(0, 101, 25):
        y = y1 - (y1 - y0) * percent / 100
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((6, y - 6), f"{percent}%", fill="black", font=font)
    draw.rectangle([x0, y0, x1, y1], outline="black")
    step = (x1 - x0) / max(1, len(labels) - 1) if len(labels) > 1 else 0
    xs = [x0 + step * i if len(labels) > 1 else (x0 + x1) / 2 for i in range(len(labels))]
    for x, label in zip(xs, labels, strict=True):
        draw.text((x - 3 * len(label), y1 + 6), label, fill="black", font=font)
    for k, (name, colour) in enumerate(ATTRIBUTE_COLOURS.items()):
        points = [(x, y1 - (y1 - y0) * row[name]) for x, row in zip(xs, rows, strict=True) if name in row]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
        draw.text((x1 + 10, y0 + 14 * k), name.replace("_", " "), fill=colour, font=font)
    return image


def sweep_panels(sweeps: dict) -> list[Image.Image]:
    """The panels of quality.py's sweeps: steps, guidance (static and dynamic), percentile, sr,
    progress."""
    panels = []
    if sweeps.get("steps"):
        rows = sweeps["steps"]
        panels.append(chart("base compliance vs sampler steps", [f"{r['sampler']}{r['steps']}" for r in rows], rows))
    for mode in ("static", "dynamic"):
        rows = [r for r in sweeps.get("guidance", []) if r["thresholding"] == mode and "percentile" not in r]
        if rows:
            panels.append(chart(f"base compliance vs guidance scale, {mode} thresholding",
                                [f"{r['guidance']:g}" for r in rows], rows))
    rows = [r for r in sweeps.get("guidance", []) if "percentile" in r]
    if rows:
        panels.append(chart(f"base compliance vs dynamic-thresholding percentile, guidance {rows[0]['guidance']:g}",
                            [f"{r['percentile']:g}" for r in rows], rows))
    if sweeps.get("sr"):
        rows = sweeps["sr"]
        panels.append(chart("first SR stage: aug level / guidance", [f"{r['aug_level']:g}/{r['guidance']:g}"
                                                                      for r in rows], rows))
    if sweeps.get("progress"):
        rows = sweeps["progress"]
        panels.append(chart("base compliance vs training minutes", [f"{r['train_minutes']:g}" for r in rows], rows))
    return panels


def plot_sweeps(sweeps: dict) -> Image.Image | None:
    """All panels stacked into one image (None when there is no sweep)."""
    panels = sweep_panels(sweeps)
    if not panels:
        return None
    canvas = Image.new("RGB", (WIDTH, HEIGHT * len(panels)), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel, (0, HEIGHT * i))
    return canvas
