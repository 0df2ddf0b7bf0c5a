"""Decoding, colour-mode conversion, checks and square fitting of single images (trainers/data/images.py)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from imagen.images import to_tensor
from trainers.data.images import BadSample, decode_caption, fit_square, min_side, open_image, read_caption


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    image = open_image(data)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_rgba_and_la_are_composited_over_white():
    rgba = Image.new("RGBA", (4, 2), (200, 10, 10, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent: white
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half black over white: ~127
    px = _pixels(_encode(rgba))
    assert px[0, 0].tolist() == [255, 255, 255]
    assert np.all(np.abs(px[0, 1] - 127) <= 1)
    assert px[1, 1].tolist() == [200, 10, 10]
    la = Image.new("LA", (2, 2), (50, 0))
    la.putpixel((1, 1), (50, 255))
    px = _pixels(_encode(la))
    assert px[0, 0].tolist() == [255, 255, 255] and px[1, 1].tolist() == [50, 50, 50]


def test_palette_with_and_without_transparency():
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 200, 30, 0, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    px = _pixels(_encode(palette))
    assert px[0].tolist() == [[10, 200, 30], [0, 0, 0]]
    px = _pixels(_encode(palette, transparency=1))  # colour 1 is transparent: white
    assert px[0].tolist() == [[10, 200, 30], [255, 255, 255]]


def test_grayscale_and_bilevel():
    assert _pixels(_encode(Image.new("L", (2, 2), 77)))[0, 0].tolist() == [77, 77, 77]
    assert _pixels(_encode(Image.new("1", (2, 2), 1)))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(fmt):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    px = _pixels(_encode(image, fmt))[0, :, 0]
    assert px.tolist() == [0, 4, 128, 255]  # convert("L") would give [0, 255, 255, 255]
    wide = Image.fromarray(values.astype(np.int32), "I")  # mode I (32-bit) read as 16-bit
    assert _pixels(_encode(wide, "TIFF"))[0, :, 0].tolist() == [0, 4, 128, 255]


def test_float_grayscale():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32), "F")
    assert _pixels(_encode(image, "TIFF"))[0, :, 0].tolist() == [0, 128, 255, 255]


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red
    px = _pixels(_encode(cmyk, "JPEG", quality=100))
    assert np.all(np.abs(px[4, 4] - [255, 0, 0]) <= 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (6, 4), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = open_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (4, 6)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(files, fmt):
    data = files.image_bytes(fmt, size=(64, 64))
    with pytest.raises(BadSample) as info:
        open_image(data[: len(data) // 2])
    assert info.value.reason == "truncated image"


def test_corrupt_and_missing_images(tmp_path, files):
    with pytest.raises(BadSample) as info:
        open_image(b"this is not an image at all" * 10)
    assert info.value.reason == "unreadable image"
    header_only = files.image_bytes("PNG")[:40]
    with pytest.raises(BadSample) as info:
        open_image(header_only)
    assert info.value.reason in ("unreadable image", "truncated image")
    with pytest.raises(BadSample) as info:
        open_image(tmp_path / "nope.png")
    assert info.value.reason == "missing image"


def test_decompression_bombs(files):
    with pytest.raises(BadSample) as info:  # PIL's DecompressionBombError at open
        open_image(files.bomb_png(30000, 30000))
    assert info.value.reason == "decompression bomb"
    with pytest.raises(BadSample) as info:  # PIL's DecompressionBombWarning (1x to 2x its limit) as an error
        open_image(files.bomb_png(10000, 10000), max_pixels=10**10)
    assert info.value.reason == "decompression bomb"
    with pytest.raises(BadSample) as info:  # our own limit, checked before decoding
        open_image(files.image_bytes("PNG", size=(40, 40)), max_pixels=1000)
    assert info.value.reason == "decompression bomb"


def test_too_small():
    assert min_side(64) == 16 and min_side(30) == 8 and min_side(1) == 1
    data = _encode(Image.new("RGB", (100, 15)))
    with pytest.raises(BadSample) as info:
        open_image(data, min_size=16)
    assert info.value.reason == "image too small"
    assert open_image(data, min_size=15).size == (100, 15)


def test_captions(tmp_path):
    assert decode_caption("\ufeff  a red\n circle  ".encode()) == "a red circle"
    for data, reason in [(None, "missing caption"), (b"  \n", "empty caption"), (b"\xff\xfe bad", "non-UTF-8 caption"),
                         ("lone \udc80 surrogate", "non-UTF-8 caption")]:
        with pytest.raises(BadSample) as info:
            decode_caption(data)
        assert info.value.reason == reason
    with pytest.raises(BadSample) as info:
        read_caption(tmp_path / "missing.txt")
    assert info.value.reason == "missing caption"


def test_fit_square_modes():
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :10] = 255  # white left quarter, black elsewhere
    image = Image.fromarray(array)
    center = np.asarray(fit_square(image, 20, "center_crop", random.Random(0)))
    assert center.max() == 0  # the central 20x20 square is all black
    stretch = np.asarray(fit_square(image, 20, "stretch", random.Random(0)))
    assert stretch[:, :4].min() == 255 and stretch[:, 6:].max() == 0
    crops = [fit_square(image, 20, "random_crop", random.Random(s)) for s in range(40)]  # seed 31: offset 0
    assert len({np.asarray(c).tobytes() for c in crops}) > 3
    assert {c.size for c in crops} == {(20, 20)}  # at offset 0 too, where the box is (0, 0, 20, 20)
    same = [np.asarray(fit_square(image, 20, "random_crop", random.Random(7))) for _ in range(2)]
    assert np.array_equal(*same)
    with pytest.raises(ValueError, match="resize mode"):
        fit_square(image, 20, "squash", random.Random(0))


def test_to_tensor_range():
    array = np.array([[[0, 255, 128]]], dtype=np.uint8)
    tensor = to_tensor(Image.fromarray(array))
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    assert torch.allclose(tensor.flatten(), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]), atol=1e-6)
