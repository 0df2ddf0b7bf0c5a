"""Which shape an object is: fit a circle, a square and a triangle (and, when taught, a star) to its soft mask
and keep the best.

Each candidate is placed from the mask's moments (area gives the diameter, the centroid the centre; a
triangle's centroid sits 1/6 of its height from its box centre), refined over a few scales and shifts, and
rendered antialiased like `imagen.shapes.render`; the shape with the smallest squared error wins. Squared
error makes zero-mean pixel noise add the same constant to every candidate, so noise does not bias the
choice, and the fit uses every pixel, so rounded corners or a lost apex shift it only a little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imagen.shapes import SHAPES, STAR_INNER_RATIO, star_points

SUPERSAMPLE = 4  # template antialiasing: samples per pixel side
AREA_PER_D2: dict[str, float] = {  # area / diameter^2 (a star's diameter is its circumscribed circle's)
    "circle": math.pi / 4, "square": 1.0, "triangle": 0.5,
    "star": 5 * STAR_INNER_RATIO * math.sin(math.pi / 5) / 4}
TRIANGLE_POINTS = ("up", "down", "left", "right")  # a triangle counts whichever way it points
_SCALES = (0.9, 1.0, 1.1)
_SHIFTS = (-0.5, 0.0, 0.5)  # pixels


@dataclass(frozen=True)
class ShapeFit:
    """Best fit of one shape: box centre (x, y) and diameter in pixels, relative squared error."""

    shape: str
    center: tuple[float, float]
    diameter: float
    error: float


def template(shape: str, center: tuple[float, float], diameter: float, size: tuple[int, int],
             points: str = "up") -> np.ndarray:
    """Antialiased coverage `(H, W)` in [0, 1] for an image of `size` (H, W) of a shape whose bounding box is
    centred at `center` (pixels, x then y) with side `diameter`; a triangle is isosceles, apex towards `points`."""
    ss = SUPERSAMPLE
    height, width = size
    x = (np.arange(width * ss) + 0.5)[None, :] / ss - center[0]
    y = (np.arange(height * ss) + 0.5)[:, None] / ss - center[1]
    half = diameter / 2
    if shape == "circle":
        inside = x**2 + y**2 <= half**2
    elif shape == "square":
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "triangle":
        along, across = {"up": (y, x), "down": (-y, x), "left": (x, y), "right": (-x, y)}[points]
        inside = (along <= half) & (np.abs(across) <= (along + half) / 2)
    elif shape == "star":
        inside = _inside_polygon(x, y, star_points(0.0, 0.0, diameter))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(height, ss, width, ss).mean(axis=(1, 3))


def _inside_polygon(x: np.ndarray, y: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule: whether each point of the grid `x` `(1, W)`, `y` `(H, 1)` lies inside the polygon."""
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        inside ^= crosses & (x < x0 + (y - y0) * (x1 - x0) / (y1 - y0))
    return inside


def _initial_center(shape: str, centroid: tuple[float, float], diameter: float, points: str) -> tuple[float, float]:
    if shape != "triangle":
        return centroid
    dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[points]
    return centroid[0] + dx * diameter / 6, centroid[1] + dy * diameter / 6


def fit_shape(alpha: np.ndarray, shape: str) -> ShapeFit:
    """Best placement of `shape` for the soft mask `alpha` `(H, W)` (object coverage, about [0, 1]): placed
    from the moments, then the best orientation (triangles), scale, and half-pixel shift, in that order."""
    area = float(alpha.sum())
    centroid = (float(alpha.sum(axis=0) @ (np.arange(alpha.shape[1]) + 0.5) / area),
                float(alpha.sum(axis=1) @ (np.arange(alpha.shape[0]) + 0.5) / area))
    base = math.sqrt(area / AREA_PER_D2[shape])
    norm = float((alpha**2).sum())

    def score(center: tuple[float, float], d: float, points: str) -> tuple[float, tuple[float, float], float, str]:
        return float(((template(shape, center, d, alpha.shape, points) - alpha) ** 2).sum()) / norm, center, d, points

    orientations = TRIANGLE_POINTS if shape == "triangle" else ("up",)
    best = min(score(_initial_center(shape, centroid, base, p), base, p) for p in orientations)
    points = best[3]
    best = min(best, *(score(_initial_center(shape, centroid, base * k, points), base * k, points) for k in _SCALES))
    (cx, cy), d = best[1], best[2]
    best = min(best, *(score((cx + sx, cy + sy), d, points) for sx in _SHIFTS for sy in _SHIFTS))
    return ShapeFit(shape, best[1], best[2], best[0])


def best_shape(alpha: np.ndarray, shapes: tuple[str, ...] = SHAPES) -> tuple[ShapeFit, dict[str, float]]:
    """The best-fitting of `shapes` for the soft mask `alpha` `(H, W)` and each one's relative squared error.
    Crop `alpha` to a window around the object first (fitting costs grow with the window)."""
    fits = [fit_shape(alpha, shape) for shape in shapes]
    return min(fits, key=lambda f: f.error), {f.shape: f.error for f in fits}
