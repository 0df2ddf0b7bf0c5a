"""Image plumbing for the evaluation: any image to a float RGB array, resizing, denoising, CIELAB, palette.

Everything here works on numpy arrays `(H, W, 3)` of float32 RGB in [0, 255]; the public entry point
`to_rgb_array` accepts a PIL image, a numpy array, or a torch tensor `(3, H, W)` in [-1, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from imagen.shapes import COLORS

PALETTE_NAMES: tuple[str, ...] = tuple(COLORS)

ImageLike = Any  # PIL.Image.Image | np.ndarray (H, W, 3) uint8 | torch.Tensor (3, H, W) in [-1, 1]


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """`image` as float32 `(H, W, 3)` RGB in [0, 255].

    Accepts a PIL image (any mode, converted to RGB), a torch tensor `(3, H, W)` or `(1, 3, H, W)` in [-1, 1],
    or a numpy array `(H, W, 3)` (uint8 in [0, 255], or float in [0, 255])."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if type(image).__module__.startswith("torch"):
        tensor = image.detach().float().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected a tensor of shape (3, H, W) in [-1, 1], got {tuple(tensor.shape)}")
        array = (tensor.clamp(-1, 1).permute(1, 2, 0).numpy() + 1.0) * 127.5
        return array.astype(np.float32)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a numpy array of shape (H, W, 3), got {image.shape}")
        return np.clip(image.astype(np.float32), 0, 255)
    raise TypeError(f"expected a PIL image, a (3, H, W) tensor or an (H, W, 3) array, got {type(image).__name__}")


def resize(rgb: np.ndarray, side: int) -> np.ndarray:
    """`rgb` resized to `side` x `side`: area average when shrinking (so noise averages out), bicubic otherwise."""
    height, width = rgb.shape[:2]
    if height == side and width == side:
        return rgb
    if height % side == 0 and width % side == 0:  # exact area average, cheaper and exact
        fy, fx = height // side, width // side
        return rgb.reshape(side, fy, side, fx, 3).mean(axis=(1, 3))
    method = Image.Resampling.BOX if min(height, width) > side else Image.Resampling.BICUBIC
    channels = [np.asarray(Image.fromarray(rgb[..., c], mode="F").resize((side, side), method)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.float32)


def median3(rgb: np.ndarray) -> np.ndarray:
    """Per-channel 3x3 median filter (edge pixels replicated): removes speckle noise, keeps edges."""
    padded = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = rgb.shape[:2]
    stack = [padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)]
    return np.median(np.stack(stack, axis=0), axis=0).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 255] (..., 3) -> CIELAB (D65) (..., 3): L in [0, 100], a and b roughly in [-128, 127]."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


PALETTE_LAB: np.ndarray = rgb_to_lab(np.array([COLORS[n] for n in PALETTE_NAMES], dtype=np.float32))
LIGHTNESS_WEIGHT = 0.6  # lightness counts less than hue/chroma: robust to brighter or darker renderings


def palette_distances(lab: np.ndarray) -> np.ndarray:
    """(..., 3) Lab -> (..., len(PALETTE_NAMES)) distances to the palette, lightness down-weighted."""
    diff = lab[..., None, :] - PALETTE_LAB
    diff[..., 0] *= LIGHTNESS_WEIGHT
    return np.sqrt((diff**2).sum(axis=-1))


def nearest_color(lab: np.ndarray) -> str:
    """Name of the palette colour nearest to one Lab colour `(3,)`."""
    return PALETTE_NAMES[int(np.argmin(palette_distances(np.asarray(lab, dtype=np.float32))))]


def delta_e(lab: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Plain CIE76 distance between Lab arrays `(..., 3)` and a reference `(3,)` (broadcast)."""
    return np.sqrt(((lab - reference) ** 2).sum(axis=-1))
