"""Sharpness of images, for super-resolution outputs: is an SR stage's output sharper than plain bicubic
upsampling of its low-res input, and does it stay true to that input?

The sharpness measure is the variance of the Laplacian of the luminance (in [0, 1]) at the image's own
resolution: crisp edges give large second derivatives, blurred ones small. It depends on the scale, so compare
images only at the same resolution (`compare_to_bicubic` upsamples the low-res input to the SR output's size).
It also rises with noise, so `compare_to_bicubic` reports beside it the grain on regions that are flat in the
input (an SR stage should keep them flat) and the colour drift (how far the output, shrunk back to the input's
size, is from the input).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imagen.eval.image import ImageLike, resize, to_rgb_array

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
FLAT_RANGE = 4.0  # a low-res pixel is flat when its 3x3 neighbourhood spans less than this (0-255 levels)


def luminance(image: ImageLike) -> np.ndarray:
    """Luma `(H, W)` in [0, 1] of a PIL image, an `(H, W, 3)` uint8 array or a `(3, H, W)` tensor in [-1, 1]."""
    return to_rgb_array(image) @ _LUMA / 255.0


def _laplacian(luma: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of `luma (H, W)` over the interior pixels: `(H - 2, W - 2)` float64."""
    if min(luma.shape) < 3:
        raise ValueError(f"image too small for a Laplacian: {luma.shape[1]}x{luma.shape[0]}")
    luma = luma.astype(np.float64)
    return luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1]


def sharpness(image: ImageLike) -> float:
    """Variance of the 4-neighbour Laplacian of the luma in [0, 1], over the interior pixels (>= 0; a flat
    image gives 0). Comparable only between images of the same resolution."""
    return float(_laplacian(luminance(image)).var())


def bicubic_upsample(image: ImageLike, size: tuple[int, int]) -> Image.Image:
    """`image` resized to `size` (width, height) with PIL bicubic (the filter `imagen.resize.upsample` matches)."""
    rgb = np.clip(np.rint(to_rgb_array(image)), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)


def upscale_factor(sr_image: ImageLike, low_res: ImageLike) -> int | None:
    """The integer factor from a square low-res input to its square SR output, or None when the two are not
    square images of sizes in an integer ratio (then colour drift and grain are not defined)."""
    (high, high_w), (low, low_w) = to_rgb_array(sr_image).shape[:2], to_rgb_array(low_res).shape[:2]
    if high != high_w or low != low_w or high % low:
        return None
    return high // low


def _check_factor(sr_image: ImageLike, low_res: ImageLike, what: str) -> int:
    factor = upscale_factor(sr_image, low_res)
    if factor is None:
        raise ValueError(f"{what} needs a square SR output whose side is a multiple of its square input's side")
    return factor


def color_drift(sr_image: ImageLike, low_res: ImageLike) -> float:
    """Mean RGB distance (0-255 levels) between the SR output area-averaged down to the low-res input's size
    and that input: 0 for an output that keeps every colour of its input, ~25 for a visible shift."""
    _check_factor(sr_image, low_res, "color_drift")
    low = to_rgb_array(low_res)
    shrunk = resize(to_rgb_array(sr_image), low.shape[0])
    return float(np.linalg.norm(shrunk - low, axis=-1).mean())


def flat_grain(sr_image: ImageLike, low_res: ImageLike) -> float | None:
    """RMS of the SR output's luma Laplacian (0-255 levels) over the regions that are flat in the low-res input
    (see FLAT_RANGE): noise an SR stage adds where there is nothing to sharpen (0 for a clean output). None
    when the input has no flat region."""
    factor = _check_factor(sr_image, low_res, "flat_grain")
    low_luma = luminance(low_res) * 255.0
    side = low_luma.shape[0]
    padded = np.pad(low_luma, 1, mode="edge")
    window = np.stack([padded[dy:dy + side, dx:dx + side] for dy in range(3) for dx in range(3)])
    flat = np.kron(window.max(0) - window.min(0) < FLAT_RANGE, np.ones((factor, factor), dtype=bool))[1:-1, 1:-1]
    if not flat.any():
        return None
    laplacian = _laplacian(luminance(sr_image) * 255.0)
    return float(np.sqrt(np.mean(laplacian[flat] ** 2)))


def compare_to_bicubic(sr_image: ImageLike, low_res: ImageLike) -> dict[str, float | None]:
    """An SR output against bicubic upsampling of its low-res input to the same size: {"sr": sharpness,
    "bicubic": sharpness, "ratio": sr / bicubic (> 1: the SR output is sharper), "flat_grain": `flat_grain`,
    "color_drift": `color_drift`} (both None unless `upscale_factor` is defined). Read the ratio with the grain:
    noise on flat regions raises it too."""
    sr_rgb, low_rgb = to_rgb_array(sr_image), to_rgb_array(low_res)
    height, width = sr_rgb.shape[:2]
    sr_value = sharpness(sr_rgb)
    bicubic_value = sharpness(bicubic_upsample(low_rgb, (width, height)))
    ratio = sr_value / bicubic_value if bicubic_value > 0 else float("inf") if sr_value > 0 else 1.0
    fits = upscale_factor(sr_rgb, low_rgb) is not None
    return {"sr": sr_value, "bicubic": bicubic_value, "ratio": ratio,
            "flat_grain": flat_grain(sr_rgb, low_rgb) if fits else None,
            "color_drift": color_drift(sr_rgb, low_rgb) if fits else None}
