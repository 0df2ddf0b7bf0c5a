"""The images and masks the editing modes start from: read and checked once (one clear error each), then resized
to every stage's resolution.

Images become (1, 3, H, W) tensors in [-1, 1]; masks (1, 1, H, W) tensors of 0 (keep) and 1 (regenerate):
white = regenerate, black = keep (grey levels are split at 128; a mask with alpha is composited over black, so
transparent = keep). A mask must have its image's size; images must be square (the cascade makes square
images), except the content given to `outpaint_canvas`, which pads it to a square.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..images import to_tensor
from ..resize import downsample, upsample

ImageLike = str | Path | Image.Image | torch.Tensor


def open_image(source: str | Path | Image.Image, what: str = "image") -> Image.Image:
    """A PIL image from a path (read fully now) or as given; ValueError naming `what` and the reason."""
    if isinstance(source, Image.Image):
        return source
    if not isinstance(source, (str, Path)):
        raise TypeError(f"{what} must be a path, a PIL image or a tensor, got {type(source).__name__}")
    try:
        with Image.open(source) as image:
            image.load()
            return image
    except UnidentifiedImageError:
        raise ValueError(f"cannot read {what} {str(source)!r}: not an image file PIL can read") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ValueError(f"cannot read {what} {str(source)!r}: {reason}") from None


def load_image(source: ImageLike, what: str = "image", square: bool = True) -> torch.Tensor:
    """(1, 3, H, W) float32 in [-1, 1] from a path, a PIL image (any mode: converted to RGB, alpha dropped) or
    a tensor (3, H, W) / (1, 3, H, W) in [-1, 1]. `square`: refuse non-square images."""
    if isinstance(source, torch.Tensor):
        image = source.detach().float().cpu()
        image = image.unsqueeze(0) if image.ndim == 3 else image
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"{what} tensor must have shape (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}")
        if not bool(torch.isfinite(image).all()) or float(image.abs().max()) > 1.0 + 1e-4:
            raise ValueError(f"{what} tensor must hold finite values in [-1, 1]")
        image = image.clamp(-1.0, 1.0)
    else:
        pil = open_image(source, what)
        image = to_tensor(pil).unsqueeze(0)
    height, width = image.shape[-2:]
    if square and height != width:
        raise ValueError(f"{what} is {width}x{height} but the model makes square images: crop it to a square, or "
                         "pad it to one by outpainting")
    return image


def load_mask(source: ImageLike, what: str = "mask") -> torch.Tensor:
    """(1, 1, H, W) float32 of 0 (keep) and 1 (regenerate) from a path, a PIL image (any mode; white =
    regenerate, split at 128; alpha composited over black) or a tensor (H, W), (1, H, W) or (1, 1, H, W) of
    bools or values in [0, 1] (split at 0.5). ValueError when nothing is to be regenerated."""
    if isinstance(source, torch.Tensor):
        shape = tuple(source.shape)
        if not 2 <= len(shape) <= 4 or any(d != 1 for d in shape[:-2]):
            raise ValueError(f"{what} tensor must have shape (H, W), (1, H, W) or (1, 1, H, W), got {shape}")
        mask = (source.detach().cpu().float() >= 0.5).float().reshape(1, 1, *shape[-2:])
    else:
        pil = open_image(source, what)
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            rgba = pil.convert("RGBA")
            pil = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        array = np.asarray(pil.convert("L"))
        mask = torch.from_numpy((array >= 128).astype(np.float32)).reshape(1, 1, *array.shape)
    if not bool(mask.any()):
        raise ValueError(f"{what} has no white pixels, so there is nothing to regenerate (white = regenerate, "
                         "black = keep)")
    return mask


def check_same_size(image: torch.Tensor, mask: torch.Tensor, what: str = "mask", image_what: str = "image") -> None:
    (height, width), (mask_height, mask_width) = image.shape[-2:], mask.shape[-2:]
    if (height, width) != (mask_height, mask_width):
        raise ValueError(f"{what} is {mask_width}x{mask_height} but {image_what} is {width}x{height}: "
                         "give a mask of the image's size")


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] at size x size: antialiased bicubic down, bicubic up (imagen.resize), or as is."""
    if image.shape[-2:] == (size, size):
        return image
    if image.shape[-2] >= size and image.shape[-1] >= size:
        return downsample(image, size)
    return upsample(image, size)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, H, W) of 0/1 at size x size, still 0/1: a pixel is regenerated when any part of it was (shrinking
    by area), or as its nearest source pixel (growing)."""
    if mask.shape[-2:] == (size, size):
        return mask
    if mask.shape[-2] >= size and mask.shape[-1] >= size:
        return (F.interpolate(mask, size=(size, size), mode="area") > 0).to(mask.dtype)
    return F.interpolate(mask, size=(size, size), mode="nearest-exact")


def outpaint_canvas(source: str | Path | Image.Image, left: int, top: int, right: int, bottom: int,
                    fill: tuple[int, int, int] = (127, 127, 127)) -> tuple[Image.Image, Image.Image]:
    """The image pasted on a larger canvas, `left`/`top`/`right`/`bottom` pixels wider on each side, and the
    mask of the new border (white = to generate). The canvas must come out square (pad a non-square image to a
    square this way). Returns (canvas RGB, mask L)."""
    pads = (left, top, right, bottom)
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pads):
        raise ValueError(f"outpainting margins must be integers >= 0 (left, top, right, bottom), got {pads}")
    if not any(pads):
        raise ValueError("outpainting margins are all 0: nothing to generate")
    image = open_image(source, "image").convert("RGB")
    width, height = image.width + left + right, image.height + top + bottom
    if width != height:
        raise ValueError(f"the outpainting canvas would be {width}x{height} ({image.width}x{image.height} plus "
                         f"margins {left} {top} {right} {bottom}); the model makes square images: choose margins "
                         "that make it square")
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(image, (left, top))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, top, left + image.width, top + image.height))
    return canvas, mask
