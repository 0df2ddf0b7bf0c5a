"""The *shapes* world: procedural captions and images, rendered offline at any resolution.

One or two objects (size, colour, shape, position on a 3x3 grid) on a plain background:
    "a small red circle at the top left on a blue background"
    "a large green square at the center and a small white triangle at the bottom right on a black background"
Scenes are deterministic per (seed, index). A fixed held-out set of captions (about 1 in 100, chosen by a
hash of the caption) is never drawn for training and is what evaluation prompts come from.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "pink": (240, 120, 180), "cyan": (40, 200, 210),
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128), "brown": (130, 80, 40),
}
SHAPES = ("circle", "square", "triangle")  # what the training stream draws
NEW_SHAPES = ("star",)  # rendered and judged, never drawn by the training stream: a shape to teach a trained model
ALL_SHAPES = SHAPES + NEW_SHAPES
STAR_INNER_RATIO = 0.381966  # inner / outer radius of a regular five-pointed star {5/2}
SIZES: dict[str, float] = {"small": 1 / 6, "large": 1 / 3}  # object diameter as a fraction of the side
POSITIONS: dict[str, tuple[int, int]] = {  # name -> (column, row) on the 3x3 grid
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
HELD_OUT_PER_MILLE = 10  # about 1% of captions are held out


@dataclass(frozen=True)
class ShapeObject:
    size: str
    color: str
    shape: str
    position: str
    offset: tuple[float, float] = (0.0, 0.0)  # (x, y) of the centre from its cell's centre, in sides; not captioned

    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str

    @property
    def caption(self) -> str:
        return " and ".join(o.phrase() for o in self.objects) + f" on a {self.background} background"


def is_held_out(caption: str) -> bool:
    """Whether a caption belongs to the fixed evaluation set (never used in training)."""
    digest = hashlib.sha256(caption.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < HELD_OUT_PER_MILLE


def random_scene(rng: random.Random, two_object_prob: float = 1 / 3, jitter: float = 0.0) -> Scene:
    """A scene with one object, or two (probability `two_object_prob`) in different cells; object colours
    differ from the background's. With `jitter`, each object's centre moves by up to that fraction of the side
    along each axis, staying inside the image (`jittered`)."""
    background = rng.choice(list(COLORS))
    object_colors = [c for c in COLORS if c != background]
    count = 2 if rng.random() < two_object_prob else 1
    positions = rng.sample(list(POSITIONS), count)
    objects = tuple(ShapeObject(rng.choice(list(SIZES)), rng.choice(object_colors), rng.choice(SHAPES), p)
                    for p in positions)
    if jitter > 0:
        objects = tuple(jittered(o, rng, jitter) for o in objects)
    return Scene(objects, background)


def jittered(obj: ShapeObject, rng: random.Random, jitter: float) -> ShapeObject:
    """`obj` with its centre moved by a uniform offset of up to `jitter` sides along each axis, clipped so the
    object stays inside the image: the same caption drawn at many sub-cell places, so that a model learns to draw
    a shape wherever the layout puts it rather than one template per cell."""
    half = SIZES[obj.size] / 2

    def shift(cell: int) -> float:
        centre = (2 * cell + 1) / 6
        return min(max(rng.uniform(-jitter, jitter), half - centre), 1 - half - centre)

    column, row = POSITIONS[obj.position]
    return replace(obj, offset=(shift(column), shift(row)))


def training_scene(seed: int, index: int, two_object_prob: float = 1 / 3, jitter: float = 0.0) -> Scene:
    """Scene `index` of the training stream `seed`: deterministic, never a held-out caption."""
    rng = random.Random(f"shapes:{seed}:{index}")
    while True:
        scene = random_scene(rng, two_object_prob, jitter)
        if not is_held_out(scene.caption):
            return scene


def held_out_scenes(count: int, objects: int = 1, seed: int = 0) -> list[Scene]:
    """The first `count` held-out scenes with `objects` objects, in a fixed order (evaluation prompts)."""
    rng = random.Random(f"held-out:{seed}:{objects}")
    found: list[Scene] = []
    seen: set[str] = set()
    while len(found) < count:
        scene = random_scene(rng, 1.0 if objects == 2 else 0.0)
        if is_held_out(scene.caption) and scene.caption not in seen:
            seen.add(scene.caption)
            found.append(scene)
    return found


_OBJECT = (rf"a (?P<size{{i}}>small|large) (?P<color{{i}}>\w+) (?P<shape{{i}}>{'|'.join(ALL_SHAPES)}) "
           r"at the (?P<position{i}>top left|top right|bottom left|bottom right|top|bottom|left|right|center)")
_CAPTION = re.compile(rf"^{_OBJECT.format(i=0)}(?: and {_OBJECT.format(i=1)})? on a (?P<background>\w+) background$")


def parse_caption(caption: str) -> Scene | None:
    """The scene a shapes caption describes, or None if the text is not a shapes caption."""
    match = _CAPTION.match(caption.strip().lower())
    if match is None:
        return None
    groups = match.groupdict()
    objects = tuple(ShapeObject(groups[f"size{i}"], groups[f"color{i}"], groups[f"shape{i}"], groups[f"position{i}"])
                    for i in (0, 1) if groups[f"size{i}"] is not None)
    colors = [o.color for o in objects] + [groups["background"]]
    if any(c not in COLORS for c in colors):
        return None
    return Scene(objects, groups["background"])


def object_box(obj: ShapeObject, side: float) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the object's bounding box in an image of `side` pixels."""
    column, row = POSITIONS[obj.position]
    cx, cy = (2 * column + 1) * side / 6 + obj.offset[0] * side, (2 * row + 1) * side / 6 + obj.offset[1] * side
    half = SIZES[obj.size] * side / 2
    return cx - half, cy - half, cx + half, cy + half


def star_points(cx: float, cy: float, diameter: float) -> list[tuple[float, float]]:
    """The ten vertices of a five-pointed star pointing up, inscribed in the circle of `diameter` centred at
    (cx, cy), in drawing order (outer, inner, outer, ...)."""
    points = []
    for k in range(10):
        radius = diameter / 2 * (1.0 if k % 2 == 0 else STAR_INNER_RATIO)
        angle = math.pi * k / 5
        points.append((cx + radius * math.sin(angle), cy - radius * math.cos(angle)))
    return points


def render(scene: Scene, resolution: int, supersample: int = 4,
           window: tuple[int, int, int] | None = None) -> Image.Image:
    """RGB image of the scene at `resolution`, antialiased by drawing at up to `supersample` x the size and
    box-filtering down. `window` = (left, top, size) renders only that square of the full image (a crop,
    at the cost of its own pixels only)."""
    left, top, size = window if window is not None else (0, 0, resolution)
    factor = max(1, min(supersample, 4096 // size))
    image = Image.new("RGB", (size * factor, size * factor), COLORS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0, x1, y1 = (factor * v for v in object_box(obj, resolution))
        x0, x1, y0, y1 = x0 - factor * left, x1 - factor * left, y0 - factor * top, y1 - factor * top
        color = COLORS[obj.color]
        if obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=color)
        elif obj.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif obj.shape == "star":
            draw.polygon(star_points((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0), fill=color)
        else:  # isosceles triangle pointing up, filling the box
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)
    if factor > 1:
        image = image.resize((size, size), Image.Resampling.BOX)
    return image
