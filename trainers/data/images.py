"""Decoding one training image or caption, or saying precisely why it cannot be used.

Every image goes through `open_image` (decode, checks, EXIF rotation, conversion to 8-bit RGB), then
`fit_square` (center crop, random crop or stretch to the stage's resolution, PIL bicubic, which is
antialiased when shrinking) and `to_tensor` ((3, R, R) in [-1, 1]). Problems raise `BadSample` with a
short reason from `REASONS`; the data sets skip such items and the loader counts them.

Rejected images:
- unreadable (not an image, corrupt header or data), truncated, missing;
- decompression bombs: more than `MAX_PIXELS` pixels (PIL's own limit, 89.5 MP by default), checked from
  the header before decoding; PIL's DecompressionBombWarning is turned into an error as well;
- too small: a short side below `MIN_SIDE_FRACTION` (1/4) of the stage's resolution (upsampling more than 4x
  teaches the model blur).
A loss mask (`open_mask`, a greyscale image of the image's size, white = the subject) is cut and scaled as
its image is (`square_box`, `resize_box`).
Colour modes: alpha (RGBA, LA, PA, P or L with a transparent colour) is composited over white; 16-bit
grayscale (I;16*, and I, read as 16-bit) is scaled from 0..65535 to 0..255 (PIL's convert would clip);
float (F) is read as 0..1; CMYK goes through its embedded ICC profile when it has one, else PIL's formula;
everything else (L, 1, P, YCbCr, ...) through `Image.convert("RGB")`.
"""

from __future__ import annotations

import io
import math
import os
import random
import warnings

from PIL import Image, ImageOps

from imagen.images import deep_grey_to_rgb, is_deep_grey
from imagen.io import MAX_TEXT_BYTES, check_regular_file, read_bounded

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MIN_SIDE_FRACTION = 1 / 4
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

REASONS = ("missing image", "unreadable image", "truncated image", "decompression bomb", "image too small",
           "unsupported image mode", "missing caption", "unreadable caption", "empty caption", "non-UTF-8 caption",
           "bad manifest row", "unreadable shard", "bad mask")


class BadSample(Exception):
    """An item that cannot be trained on. `reason` is one of `REASONS`; `detail` says more."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def min_side(resolution: int) -> int:
    """Smallest accepted short side of a source image for a stage at `resolution`."""
    return max(1, math.ceil(resolution * MIN_SIDE_FRACTION))


def decode_caption(data: bytes | str | None) -> str:
    """The caption from a .txt file's bytes (UTF-8, BOM stripped, whitespace collapsed to single spaces)."""
    if data is None:
        raise BadSample("missing caption")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadSample("non-UTF-8 caption", str(error)) from None
    try:
        data.encode("utf-8")  # lone surrogates (from surrogateescape or JSON escapes) are not text
    except UnicodeEncodeError as error:
        raise BadSample("non-UTF-8 caption", str(error)) from None
    caption = " ".join(data.lstrip("\ufeff").split())
    if not caption:
        raise BadSample("empty caption")
    return caption


def read_caption(path: str | os.PathLike) -> str:
    """The caption stored in the text file at `path` (see `decode_caption`): its first MAX_TEXT_BYTES only (a
    tokenizer reads at most a few hundred tokens), and only from a regular file."""
    try:
        data = read_bounded(path)
    except FileNotFoundError:
        raise BadSample("missing caption", f"no {os.fspath(path)}") from None
    except OSError as error:
        raise BadSample("unreadable caption", error.strerror or str(error)) from None
    if len(data) == MAX_TEXT_BYTES:
        data = data.decode("utf-8", errors="ignore").encode("utf-8")  # a character cut at the limit
    return decode_caption(data)


def open_image(source: str | os.PathLike | bytes, *, min_size: int = 1, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the image at `source` (a path or the file's bytes) into an 8-bit RGB PIL image, upright
    (EXIF orientation applied). Raises BadSample for every way it can be unusable (see module doc)."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        if not isinstance(source, bytes):
            check_regular_file(source)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadSample("decompression bomb", f"{width}x{height} is more than {max_pixels} pixels")
                if min(width, height) < min_size:
                    raise BadSample("image too small", f"{width}x{height}, short side below {min_size}")
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except BadSample:
        raise
    except FileNotFoundError:
        raise BadSample("missing image", f"no {os.fspath(source)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadSample("decompression bomb", str(error)) from None
    except OSError as error:
        reason = "truncated image" if "truncated" in str(error).lower() else "unreadable image"
        raise BadSample(reason, str(error)) from None
    except Exception as error:  # noqa: BLE001 - corrupt files make PIL raise many kinds of errors
        raise BadSample("unreadable image", f"{type(error).__name__}: {error}") from None


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile falls back to the plain formula
            pass
    return image.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` in any PIL mode as 8-bit RGB; transparency composited over white (see module doc)."""
    mode = image.mode
    if is_deep_grey(image):
        return deep_grey_to_rgb(image)
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise BadSample("unsupported image mode", f"{mode}: {error}") from None


def square_box(width: int, height: int, mode: str, rng: random.Random) -> tuple[int, int, int, int]:
    """The region of a width x height image that `fit_square` scales: center_crop / random_crop the largest
    centred / random square (offset drawn from `rng`), stretch the whole image."""
    if mode == "stretch":
        return 0, 0, width, height
    if mode not in ("center_crop", "random_crop"):
        raise ValueError(f"unknown resize mode {mode!r}: use center_crop, random_crop or stretch")
    side = min(width, height)
    if mode == "center_crop":
        left, top = (width - side) // 2, (height - side) // 2
    else:
        left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    return left, top, left + side, top + side


def fit_square(image: Image.Image, size: int, mode: str, rng: random.Random) -> Image.Image:
    """`image` resized to size x size: its `square_box` scaled (aspect ratio not kept by stretch). PIL bicubic."""
    return resize_box(image, size, square_box(*image.size, mode, rng))


def resize_box(image: Image.Image, size: int, box: tuple[int, int, int, int]) -> Image.Image:
    """The `box` of `image` scaled to size x size, PIL bicubic (the image itself when that changes nothing)."""
    if box == (0, 0, size, size) and image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


def open_mask(path: str | os.PathLike, size: tuple[int, int]) -> Image.Image:
    """The loss mask at `path` as 8-bit greyscale (white = the subject), upright (EXIF orientation applied), of
    its image's `size` (width, height). Raises BadSample("bad mask") when it is unreadable or of another size."""
    try:
        check_regular_file(path)
        with Image.open(path) as mask:
            mask.load()
            mask = ImageOps.exif_transpose(mask).convert("L")
    except Exception as error:  # noqa: BLE001 - corrupt files make PIL raise many kinds of errors
        raise BadSample("bad mask", f"{os.fspath(path)}: {type(error).__name__}: {error}") from None
    if mask.size != size:
        raise BadSample("bad mask", f"{os.fspath(path)} is {mask.size[0]}x{mask.size[1]}, its image "
                                    f"{size[0]}x{size[1]}: give a mask of the image's size")
    return mask
