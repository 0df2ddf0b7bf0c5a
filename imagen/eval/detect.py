"""Finding the background and the objects of a shapes image, and measuring each object.

The image is first brought to a fixed working size (`WORK_SIDE` pixels, area-averaged), and median-filtered
when it is noisy, so images from 64 to 1024 px are judged alike and speckle noise is gone. Then:

1. Background: the median colour of the image (the background covers at least 7/9 of a shapes image),
   refined as the median of the pixels near it; named by the nearest palette colour.
2. Foreground: pixels farther than `FOREGROUND_DELTA_E` (CIELAB) from the background; 8-connected
   components of it, dropping specks smaller than `MIN_AREA_FRACTION` of the image.
3. A component holding two distinct colours (two objects that touch; blends of the background and an
   object, as blur leaves, do not count) is split by colour; for two-object prompts, a component wider than
   any object can be (two touching objects of one colour) is cut along the 3x3 grid.
4. Each object is measured with a soft mask alpha in [0, 1] (the pixel's share of object colour against
   background, exact for antialiased edges): its colour is the palette name of its purest pixels (a shade
   of the background is no object), its shape, centre and diameter come from the best-fitting circle,
   square or triangle, or of the shapes the caller names (`imagen.eval.shapefit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imagen.eval.image import PALETTE_NAMES, delta_e, median3, nearest_color, palette_distances, resize, rgb_to_lab
from imagen.eval.shapefit import best_shape
from imagen.shapes import SHAPES

WORK_SIDE = 64  # working resolution: the base stage's, fine enough for a small object (1/6 of the side)
FOREGROUND_DELTA_E = 12.0  # the closest palette pair (blue, purple) is 30 apart
INTERIOR_DELTA_E = 10.0  # a pixel is interior when all its 4-neighbours are within this of it
MIN_AREA_FRACTION = 0.004  # specks below 0.4% of the image are noise (a small triangle is ~1.4%)
NOISE_FILTER_LEVEL = 2.0  # median-filter the working image above this noise std (0-255 units)
CORE_STRENGTH = 0.5  # strong pixels: at least this fraction of the region's top contrast
GROW_PIXELS = 1  # soft-mask margin around a segmented object
SHAPE_MAX_ERROR = 0.18  # relative squared error of the best fit above which there is no clear shape (blob)
BLEND_TOLERANCE = 0.12  # a colour this close (relative) to the line between two others is their blend
SPLIT_EXTENT = 0.5  # a component wider or taller than this fraction of the side is not one object


@dataclass(frozen=True)
class Background:
    """The estimated background: `lab` and `rgb` colour `(3,)` and its palette name."""

    lab: np.ndarray
    rgb: np.ndarray
    color: str


@dataclass(frozen=True)
class DetectedObject:
    """One object found in the image. Lengths are fractions of the image side, the centre in [0, 1]^2."""

    color: str  # nearest palette colour of its purest pixels
    area: float  # soft area, fraction of the image area
    shape: str  # best-fitting of the candidate shapes; "blob" when none fits within SHAPE_MAX_ERROR
    center: tuple[float, float]  # (x, y) of the best fit's bounding box
    diameter: float  # side of the best fit's bounding box
    shape_errors: dict[str, float]  # relative squared error of each shape's best fit

    @property
    def cell(self) -> tuple[int, int]:
        """(column, row) of the centre on the 3x3 grid."""
        return tuple(min(2, max(0, int(3 * v))) for v in self.center)  # type: ignore[return-value]


def noise_level(rgb: np.ndarray) -> float:
    """Robust estimate of pixel noise (std, in [0, 255] units): the median absolute deviation of the image
    from its 3x3 median, which is zero on flat areas and edges of a clean image."""
    residual = np.abs(rgb - median3(rgb))
    return float(1.4826 * np.median(residual))


def prepare(rgb: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Float RGB `(H, W, 3)` in [0, 255] -> the working image `(side, side, 3)`, median-filtered when noisy
    (a clean image keeps its thin corners, such as a small triangle's apex)."""
    work = resize(rgb, min(side, max(rgb.shape[:2])))
    return median3(work) if noise_level(work) > NOISE_FILTER_LEVEL else work


def estimate_background(rgb: np.ndarray, lab: np.ndarray) -> Background:
    """The dominant colour: median of the image, refined over the pixels within 20 Delta-E of it."""
    first = np.median(lab.reshape(-1, 3), axis=0)
    near = delta_e(lab, first) < 20.0
    if near.sum() < 0.25 * near.size:  # no dominant colour; keep the plain median
        near = np.ones_like(near)
    bg_rgb = np.median(rgb[near], axis=0)
    bg_lab = np.median(lab[near], axis=0)
    return Background(lab=bg_lab, rgb=bg_rgb, color=nearest_color(bg_lab))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask `(H, W)` -> (labels `(H, W)` in 0..n, 0 = outside; n)."""
    height, width = mask.shape
    big = height * width + 1
    labels = np.where(mask, np.arange(1, height * width + 1).reshape(height, width), big)
    while True:  # propagate the minimum label over neighbours until stable (fast for blob-like shapes)
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = [padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        updated = np.where(mask, np.minimum.reduce(neighbours), big)
        if np.array_equal(updated, labels):
            break
        labels = updated
    unique = np.unique(labels[mask])
    remap = np.zeros(big + 1, dtype=np.int64)
    remap[unique] = np.arange(1, len(unique) + 1)
    return np.where(mask, remap[np.minimum(labels, big)], 0), len(unique)


def _interior(lab: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbours all have nearly their colour (not an antialiased or blurred edge)."""
    padded = np.pad(lab, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = lab.shape[:2]
    worst = np.zeros((height, width), dtype=np.float32)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        shifted = padded[dy:dy + height, dx:dx + width]
        worst = np.maximum(worst, np.sqrt(((shifted - lab) ** 2).sum(axis=-1)))
    return worst < INTERIOR_DELTA_E


def _segment_distance(color: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Distance of `color` from the segment start-end (RGB): small for a blend of the two colours."""
    direction = end - start
    t = float(np.clip((color - start) @ direction / max(float(direction @ direction), 1e-6), 0.0, 1.0))
    return float(np.linalg.norm(color - (start + t * direction)))


def _object_colors(rgb: np.ndarray, lab: np.ndarray, background: Background, min_count: float) -> list[np.ndarray]:
    """The distinct object colours (RGB) among pixels `rgb`/`lab` `(N, 3)`: palette groups of at least
    `min_count` pixels, purest first, dropping a group that is a blend of the background or a kept colour
    with a kept colour (the rings a blur or a soft edge leaves around an object)."""
    names = np.argmin(palette_distances(lab), axis=-1)
    groups = [np.median(rgb[names == i], axis=0) for i in range(len(PALETTE_NAMES))
              if (names == i).sum() >= min_count]
    groups.sort(key=lambda c: -float(np.linalg.norm(c - background.rgb)))
    kept: list[np.ndarray] = []
    for color in groups:
        ends = [background.rgb, *kept]
        if not any(_segment_distance(color, ends[i], ends[j]) < BLEND_TOLERANCE * np.linalg.norm(ends[i] - ends[j])
                   for i in range(len(ends)) for j in range(max(1, i + 1), len(ends))):
            kept.append(color)
    return kept


def _split_by_color(region: np.ndarray, rgb: np.ndarray, lab: np.ndarray, interior: np.ndarray,
                    background: Background, min_area: int) -> list[np.ndarray]:
    """A component as one mask per distinct object colour it holds (two objects that touch), judged on its
    interior pixels; every pixel goes to the nearest of those colours."""
    core = region & interior
    if core.sum() < min_area / 2:
        return [region]
    colors = _object_colors(rgb[core], lab[core], background, min_area / 2)
    if len(colors) < 2:
        return [region]
    nearest = np.argmin(((rgb[region][:, None, :] - np.stack(colors)) ** 2).sum(axis=-1), axis=1)
    parts = []
    for k in range(len(colors)):
        part = np.zeros_like(region)
        part[region] = nearest == k
        labels, count = label_components(part)  # a colour's pixels may fall apart: keep its real pieces
        parts.extend(labels == i for i in range(1, count + 1) if (labels == i).sum() >= min_area)
    return parts or [region]


def _split_by_grid(region: np.ndarray, min_area: int) -> list[np.ndarray]:
    """A component spanning more than an object can, cut along the 3x3 grid into its pieces."""
    side = region.shape[0]
    cells = np.minimum(2, (3 * np.arange(side)) // side)
    cell_index = cells[:, None] * 3 + cells[None, :]
    pieces = [region & (cell_index == c) for c in range(9)]
    pieces = [p for p in pieces if p.sum() >= min_area]
    return pieces or [region]


def _extent(region: np.ndarray) -> float:
    """Largest of the bounding box's width and height, in pixels."""
    ys, xs = np.nonzero(region)
    return float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation of `mask` by a square of half-width `pixels`."""
    side_y, side_x = mask.shape
    padded = np.pad(mask, pixels)
    grown = np.zeros_like(mask)
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            grown |= padded[dy:dy + side_y, dx:dx + side_x]
    return grown


def measure(region: np.ndarray, others: np.ndarray, rgb: np.ndarray, lab: np.ndarray,
            background: Background, shapes: tuple[str, ...] = SHAPES) -> DetectedObject | None:
    """Measure the object whose pixels are `region` (boolean `(S, S)`) in the working image `rgb`/`lab`;
    `others` marks every object's pixels (so a neighbour's pixels never count as this object's). None when
    the region is only a shade of the background colour (objects never share the background's colour)."""
    side = region.shape[0]
    strength = delta_e(lab[region], background.lab)
    # The object's colour: among its strong pixels (edges, blur and background blotches are weaker), the
    # palette colour most of them are nearest to, votes weighted by contrast squared (a speck of another colour
    # is outvoted, and so are the weaker blends that blur leaves), then the median of that colour's pixels.
    strong = strength >= CORE_STRENGTH * np.percentile(strength, 98)
    names = np.argmin(palette_distances(lab[region][strong]), axis=-1)
    core = np.zeros_like(strong)
    core[strong] = names == np.argmax(np.bincount(names, weights=strength[strong] ** 2))
    obj_rgb = np.median(rgb[region][core], axis=0)
    obj_lab = np.median(lab[region][core], axis=0)
    color = nearest_color(obj_lab)
    contrast = obj_rgb - background.rgb
    norm2 = float((contrast**2).sum())
    if color == background.color or norm2 < 1e-6:  # a shade of the background (vignette, gradient), no object
        return None
    # Soft mask: each pixel's share of object colour against background (exact for antialiased edges), over
    # the region grown by GROW_PIXELS (faint edges), other objects' pixels excluded. The region is first cut
    # to its pixels at least half object colour, so a blotch of off-background colour it touches drops out.
    allowed = ~(others & ~region)
    alpha = np.clip(((rgb - background.rgb) @ contrast) / norm2, 0.0, 1.0)
    labels, count = label_components(region & (alpha >= 0.5))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    grown = _grow(labels == 1 + int(np.argmax(sizes)), GROW_PIXELS) & allowed
    alpha = alpha * grown
    area = float(alpha.sum())
    if area <= 0:
        return None
    ys, xs = np.nonzero(grown)
    margin = 2 + int(0.1 * max(xs.max() - xs.min(), ys.max() - ys.min()))
    top, left = max(0, ys.min() - margin), max(0, xs.min() - margin)
    window = alpha[top:ys.max() + margin + 1, left:xs.max() + margin + 1]
    fit, errors = best_shape(window, shapes)
    return DetectedObject(
        color=color, area=area / side**2, shape=fit.shape if fit.error <= SHAPE_MAX_ERROR else "blob",
        center=((fit.center[0] + left) / side, (fit.center[1] + top) / side), diameter=fit.diameter / side,
        shape_errors=errors)


def detect(rgb: np.ndarray, expected_objects: int = 1, max_objects: int | None = None,
           shapes: tuple[str, ...] = SHAPES) -> tuple[Background, list[DetectedObject]]:
    """Background and objects (largest first) of a float RGB image `(H, W, 3)` in [0, 255].

    `expected_objects` (1 or 2) only decides whether an oversized component may be split along the grid;
    `max_objects` keeps only the largest segments (measuring is the costly part); `shapes` are the candidate
    shapes (the training stream's three unless the judge is taught more, see `imagen.shapes.NEW_SHAPES`)."""
    work = prepare(rgb)
    lab = rgb_to_lab(work)
    background = estimate_background(work, lab)
    side = work.shape[0]
    min_area = max(2, int(round(MIN_AREA_FRACTION * side * side)))
    foreground = delta_e(lab, background.lab) > FOREGROUND_DELTA_E
    labels, count = label_components(foreground)
    interior = _interior(lab)
    regions: list[np.ndarray] = []
    for index in range(1, count + 1):
        component = labels == index
        if component.sum() < min_area:
            continue
        for part in _split_by_color(component, work, lab, interior, background, min_area):
            if expected_objects >= 2 and _extent(part) > SPLIT_EXTENT * side:
                regions.extend(_split_by_grid(part, min_area))
            elif part.sum() >= min_area:
                regions.append(part)
    occupied = np.zeros_like(foreground)
    for region in regions:
        occupied |= region
    regions.sort(key=lambda r: -int(r.sum()))
    found: list[DetectedObject] = []
    for region in regions:
        if max_objects is not None and len(found) >= max_objects:
            break
        obj = measure(region, occupied, work, lab, background, shapes)
        if obj is not None:
            found.append(obj)
    return background, sorted(found, key=lambda o: -o.area)
