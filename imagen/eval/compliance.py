"""Caption compliance of shapes images: does the image show the background colour, and each object's colour,
position, shape and size that its caption asks for? Measured on the pixels, with no learned classifier.

Objects found in the image (see `imagen.eval.detect`) are matched to the caption's objects by colour first,
then position, shape and size (the best one-to-one assignment), and each caption object is judged on its
match; a caption object left without a match (missing object) is wrong on every object attribute. For a
two-object caption an attribute is right only if it is right for both objects; `overall` means every
attribute is right; `object_found` (not an attribute) that every caption object has a distinct object to go by.

Shape is the best-fitting circle, square or triangle (the judge is taught more shapes, such as
`imagen.shapes.NEW_SHAPES`' star, by passing `shapes`), or "blob" when none fits (a fuzzy smear is no shape);
size is "small" or "large" by diameter, or "tiny" (< 1/9 of the side) or "huge" (> 1/2), which no caption
asks for; position is the grid cell of the fitted shape's box centre; colours are nearest palette colours in
CIELAB with lightness down-weighted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imagen.eval.detect import Background, DetectedObject, detect
from imagen.eval.image import ImageLike, to_rgb_array
from imagen.shapes import POSITIONS, SHAPES, SIZES, Scene, ShapeObject, parse_caption

ATTRIBUTES: tuple[str, ...] = ("background", "object_color", "position", "shape", "size")
OBJECT_ATTRIBUTES: tuple[str, ...] = ("object_color", "position", "shape", "size")
SIZE_BOUNDS: tuple[float, float, float] = (  # diameter / side: tiny | small | large | huge
    SIZES["small"] / 1.5, math.sqrt(SIZES["small"] * SIZES["large"]), SIZES["large"] * 1.5)
EXTRA_CANDIDATES = 1  # besides one per caption object, this many more of the largest objects found compete
_CELL_NAMES = {cell: name for name, cell in POSITIONS.items()}
_MATCH_WEIGHTS = {"object_color": 8.0, "position": 4.0, "shape": 2.0, "size": 1.0}  # colour, then position


def classify_size(found: DetectedObject) -> str:
    """"small" or "large" by the diameter (boundary at the geometric mean of 1/6 and 1/3 of the side); below
    1/9 of the side "tiny", above 1/2 "huge" (neither is what a caption asks for)."""
    tiny, small, large = SIZE_BOUNDS
    d = found.diameter
    return "tiny" if d < tiny else "small" if d < small else "large" if d < large else "huge"


def position_name(found: DetectedObject) -> str:
    """Grid position name of the object's centre ("top left", ..., "center", ...)."""
    return _CELL_NAMES[found.cell]


@dataclass(frozen=True)
class ObjectVerdict:
    """One caption object, the object matched to it (None when missing) and the judgement per attribute."""

    expected: ShapeObject
    found: DetectedObject | None

    @property
    def predicted(self) -> dict[str, str | None]:
        """What the matched object shows: colour, position, shape and size names (None when missing)."""
        if self.found is None:
            return dict.fromkeys(OBJECT_ATTRIBUTES)
        return {"object_color": self.found.color, "position": position_name(self.found),
                "shape": self.found.shape, "size": classify_size(self.found)}

    @property
    def correct(self) -> dict[str, bool]:
        """Per object attribute, whether the matched object shows what the caption asks for."""
        wanted = {"object_color": self.expected.color, "position": self.expected.position,
                  "shape": self.expected.shape, "size": self.expected.size}
        predicted = self.predicted
        return {name: predicted[name] == wanted[name] for name in OBJECT_ATTRIBUTES}


@dataclass(frozen=True)
class Judgement:
    """The full judgement of one image against its caption."""

    scene: Scene
    background: Background
    objects: tuple[ObjectVerdict, ...]
    found: tuple[DetectedObject, ...]  # the largest objects found (caption objects + EXTRA_CANDIDATES at most)

    def as_dict(self) -> dict[str, bool]:
        """{background, object_color, position, shape, size, overall, object_found} -> right or wrong; an
        object attribute is right when it is right for every caption object."""
        result = {"background": self.background.color == self.scene.background}
        for name in OBJECT_ATTRIBUTES:
            result[name] = all(v.correct[name] for v in self.objects)
        result["overall"] = all(result[name] for name in ATTRIBUTES)
        result["object_found"] = all(v.found is not None for v in self.objects)
        return result


def _match(expected: Sequence[ShapeObject], found: Sequence[DetectedObject]) -> tuple[ObjectVerdict, ...]:
    """Best one-to-one assignment of found objects to caption objects (colour first, then position, shape,
    size; larger objects win ties); caption objects may stay unmatched when fewer objects were found."""
    candidates = list(found[:len(expected) + EXTRA_CANDIDATES])
    slots: list[int | None] = [*range(len(candidates)), *([None] * len(expected))]
    best: tuple[float, tuple[ObjectVerdict, ...]] | None = None
    for choice in set(itertools.permutations(slots, len(expected))):
        verdicts = tuple(ObjectVerdict(e, None if i is None else candidates[i])
                         for e, i in zip(expected, choice, strict=True))
        score = sum(_MATCH_WEIGHTS[name] * ok for v in verdicts for name, ok in v.correct.items())
        score += sum(1e-3 * v.found.area for v in verdicts if v.found is not None)
        if best is None or score > best[0]:
            best = (score, verdicts)
    assert best is not None
    return best[1]


def analyze(image: ImageLike, caption: str | Scene, shapes: tuple[str, ...] = SHAPES) -> Judgement:
    """Detect and judge: the full `Judgement` of `image` (PIL, `(3, H, W)` tensor in [-1, 1] or `(H, W, 3)`
    uint8 array) against a shapes caption (text or a parsed `Scene`); `shapes` are the shapes the judge
    knows (candidates for every object, whatever the caption asks)."""
    scene = parse_caption(caption) if isinstance(caption, str) else caption
    if scene is None:
        raise ValueError(f"not a shapes caption: {caption!r} (expected e.g. 'a small red circle at the top left "
                         "on a blue background')")
    count = len(scene.objects)
    background, found = detect(to_rgb_array(image), expected_objects=count, max_objects=count + EXTRA_CANDIDATES,
                               shapes=shapes)
    return Judgement(scene, background, _match(scene.objects, found), tuple(found))


def judge(image: ImageLike, caption: str | Scene, shapes: tuple[str, ...] = SHAPES) -> dict[str, bool]:
    """Per attribute, whether `image` shows what `caption` asks: keys background, object_color, position,
    shape, size, overall (all of them), and object_found (every caption object has an object in the image to
    be judged on). Raises ValueError for a caption that is not a shapes caption."""
    return analyze(image, caption, shapes).as_dict()


def _accuracies(judgements: Sequence[Judgement]) -> dict[str, float | int | None]:
    rows = [j.as_dict() for j in judgements]
    result: dict[str, float | int | None] = {"count": len(rows)}
    for name in (*ATTRIBUTES, "overall", "object_found"):
        result[name] = sum(r[name] for r in rows) / len(rows) if rows else None
    errors = [v.found.shape_errors[v.expected.shape] for j in judgements for v in j.objects
              if v.found is not None and v.expected.shape in v.found.shape_errors]
    result["outline_error"] = sum(errors) / len(errors) if errors else None
    return result


def summarize(judgements: Iterable[Judgement], skipped: int = 0) -> dict:
    """Aggregate accuracies (fractions in [0, 1], None for an empty group) per attribute and overall:
    {"count", "skipped", "all": {...}, "one_object": {...}, "two_objects": {..., "per_object": {...}}};
    each group holds "count", one entry per attribute, "overall", "object_found" and "outline_error" (how far
    the drawn outlines are from the asked shapes: the mean relative squared error of the asked shape's best
    template fit over the caption objects found, about 0.0003 for true renders; None when none was found);
    "per_object" scores the two-object captions' objects one by one."""
    judgements = list(judgements)
    one = [j for j in judgements if len(j.scene.objects) == 1]
    two = [j for j in judgements if len(j.scene.objects) == 2]
    verdicts = [v for j in two for v in j.objects]
    per_object = {name: (sum(v.correct[name] for v in verdicts) / len(verdicts) if verdicts else None)
                  for name in OBJECT_ATTRIBUTES}
    return {"count": len(judgements), "skipped": skipped, "all": _accuracies(judgements),
            "one_object": _accuracies(one), "two_objects": {**_accuracies(two), "per_object": per_object}}


def evaluate(images: Iterable[ImageLike], captions: Iterable[str], shapes: tuple[str, ...] = SHAPES) -> dict:
    """Caption compliance of a set of images: `images` (PIL images, `(3, H, W)` tensors in [-1, 1], or a
    `(B, 3, H, W)` tensor) paired with `captions`, judged with the candidate `shapes`. Captions that are not
    shapes captions are skipped and counted. Returns `summarize`'s dict."""
    images, captions = list(images), list(captions)
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images but {len(captions)} captions")
    judgements, skipped = [], 0
    for image, caption in zip(images, captions, strict=True):
        scene = parse_caption(caption)
        if scene is None:
            skipped += 1
            continue
        judgements.append(analyze(image, scene, shapes))
    return summarize(judgements, skipped)
