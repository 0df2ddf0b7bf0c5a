"""Sharpness of images, for super-resolution outputs: is an SR stage's output sharper than plain bicubic
upsampling of its low-res input?

The measure is the variance of the Laplacian of the luminance (in [0, 1]) at the image's own resolution:
crisp edges give large second derivatives, blurred ones small. It depends on the scale, so compare images
only at the same resolution (`compare_to_bicubic` upsamples the low-res input to the SR output's size). Like
every such measure it also rises with noise; read it together with the compliance scores.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imagen.eval.image import ImageLike, to_rgb_array

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def luminance(image: ImageLike) -> np.ndarray:
    """Luma `(H, W)` in [0, 1] of a PIL image, an `(H, W, 3)` uint8 array or a `(3, H, W)` tensor in [-1, 1]."""
    return to_rgb_array(image) @ _LUMA / 255.0


def sharpness(image: ImageLike) -> float:
    """Variance of the 4-neighbour Laplacian of the luma in [0, 1], over the interior pixels (>= 0; a flat
    image gives 0). Comparable only between images of the same resolution."""
    luma = luminance(image).astype(np.float64)
    if min(luma.shape) < 3:
        raise ValueError(f"image too small for a Laplacian: {luma.shape[1]}x{luma.shape[0]}")
    laplacian = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1])
    return float(laplacian.var())


def bicubic_upsample(image: ImageLike, size: tuple[int, int]) -> Image.Image:
    """`image` resized to `size` (width, height) with PIL bicubic (the filter `imagen.resize.upsample` matches)."""
    rgb = np.clip(np.rint(to_rgb_array(image)), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)


def compare_to_bicubic(sr_image: ImageLike, low_res: ImageLike) -> dict[str, float]:
    """Sharpness of an SR output and of bicubic upsampling of its low-res input to the same size:
    {"sr": float, "bicubic": float, "ratio": sr / bicubic} (ratio > 1: the SR output is sharper)."""
    sr_rgb = to_rgb_array(sr_image)
    height, width = sr_rgb.shape[:2]
    sr_value = sharpness(sr_rgb)
    bicubic_value = sharpness(bicubic_upsample(low_res, (width, height)))
    ratio = sr_value / bicubic_value if bicubic_value > 0 else float("inf") if sr_value > 0 else 1.0
    return {"sr": sr_value, "bicubic": bicubic_value, "ratio": ratio}
