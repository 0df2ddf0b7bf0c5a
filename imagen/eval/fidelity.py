"""Fidelity of a super-resolution output to the true high-resolution image it should reproduce.

Given an SR output, the true image at the same size and the low-res image of the scene (the cascade's input),
all as RGB arrays in [0, 255]:

- PSNR over the whole image, over the *edge band* (where the true image is not flat: what sharpening must get
  right) and over the flat regions;
- on the flat regions, the error split by scale: its mean over each low-res pixel's footprint is the *colour
  error* (drift, a shift of the colour), what is left around that mean is the *grain* (its RMS);
- *low-res consistency* (`lowres_consistency`): the output shrunk back to the size of the image a stage was
  given (area average) against that image.

A region is flat when the true image is constant (within FLAT_RANGE levels) over a low-res pixel's footprint
and its eight neighbours, so bicubic upsampling of the input is exact there up to its own rounding.
"""

from __future__ import annotations

import numpy as np

from imagen.eval.image import ImageLike, resize, to_rgb_array

FLAT_RANGE = 2.0  # 0-255 levels: a footprint whose true values span less than this is flat
PEAK = 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two arrays in [0, 255]; inf when equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(PEAK**2 / mse)


def flat_blocks(truth: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) bool, one per low-res pixel (`factor` x `factor` footprint of `truth (H, W, 3)`): True where the
    true image spans less than FLAT_RANGE over that footprint and its eight neighbours."""
    height, width = truth.shape[:2]
    h, w = height // factor, width // factor
    blocks = truth.reshape(h, factor, w, factor, 3)
    low, high = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))  # (h, w, 3)
    pad_low = np.pad(low, ((1, 1), (1, 1), (0, 0)), mode="edge")
    pad_high = np.pad(high, ((1, 1), (1, 1), (0, 0)), mode="edge")
    low3 = np.stack([pad_low[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]).min(0)
    high3 = np.stack([pad_high[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]).max(0)
    return (high3 - low3).max(axis=-1) < FLAT_RANGE


def lowres_consistency(output: ImageLike, given: ImageLike) -> float:
    """PSNR (dB) of the output area-averaged down to the size of `given` (the image the stage upsampled)
    against it."""
    out, low = to_rgb_array(output), to_rgb_array(given)
    return psnr(resize(out, low.shape[0]), low)


def compare_to_truth(output: ImageLike, truth: ImageLike, low_res: ImageLike) -> dict[str, float | None]:
    """An SR output against the true image of its size, with regions set by the footprints of the low-res image
    of the scene (square images, the output's side an integer multiple of the low-res side). Returns {"psnr",
    "psnr_edges", "psnr_flat", "color_error", "grain", "lowres_psnr"} in dB or 0-255 levels (None where a region
    is empty; lowres_psnr: `lowres_consistency` against `low_res`)."""
    out, true, low = (to_rgb_array(x).astype(np.float64) for x in (output, truth, low_res))
    if out.shape != true.shape:
        raise ValueError(f"output {out.shape[:2]} and true image {true.shape[:2]} differ in size")
    side, low_side = out.shape[0], low.shape[0]
    if out.shape[1] != side or low.shape[1] != low_side or side % low_side:
        raise ValueError("compare_to_truth needs square images, the output's side a multiple of the input's")
    factor = side // low_side
    flat = flat_blocks(true, factor)
    flat_pixels = np.kron(flat, np.ones((factor, factor), dtype=bool))
    error = out - true
    block_error = error.reshape(low_side, factor, low_side, factor, 3).mean(axis=(1, 3))  # (h, w, 3)
    around_mean = error - np.kron(block_error, np.ones((factor, factor, 1)))
    result: dict[str, float | None] = {
        "psnr": psnr(out, true),
        "psnr_edges": psnr(out[~flat_pixels], true[~flat_pixels]) if (~flat_pixels).any() else None,
        "psnr_flat": psnr(out[flat_pixels], true[flat_pixels]) if flat_pixels.any() else None,
        "color_error": float(np.linalg.norm(block_error[flat], axis=-1).mean()) if flat.any() else None,
        "grain": float(np.sqrt(np.mean(around_mean[flat_pixels] ** 2))) if flat.any() else None,
        "lowres_psnr": lowres_consistency(out.astype(np.float32), low),
    }
    return result
