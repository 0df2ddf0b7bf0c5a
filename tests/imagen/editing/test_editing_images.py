"""Reading, checking and resizing the images and masks of the editing modes (imagen.editing.images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagen.editing.images import check_same_size, load_image, load_mask, outpaint_canvas, resize_image, resize_mask


def _rgb(size=(8, 8), seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(array)


def test_image_becomes_a_tensor_in_minus_one_one_with_exact_levels(tmp_path):
    image = _rgb()
    image.save(tmp_path / "a.png")
    for source in (image, tmp_path / "a.png", str(tmp_path / "a.png")):
        tensor = load_image(source)
        assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == torch.float32
        back = ((tensor[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        assert np.array_equal(back, np.asarray(image))
    assert float(load_image(Image.new("L", (4, 4), 0)).max()) == -1.0
    assert float(load_image(Image.new("L", (4, 4), 255)).min()) == 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16", "1"])
def test_any_image_mode_is_converted_to_rgb(mode):
    image = _rgb().convert(mode)
    assert load_image(image).shape == (1, 3, 8, 8)


def test_grey_images_deeper_than_8_bits_keep_their_levels(tmp_path):
    levels = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")  # a 16-bit PNG: white before, clipped at 255 of 65535
    expected = load_image(Image.fromarray(np.rint(levels / 257).astype(np.uint8)))[0]  # the same levels in 8 bits
    for image in (Image.open(tmp_path / "deep.png"), Image.fromarray((levels / 65535.0).astype(np.float32)),
                  Image.fromarray(levels.astype(np.int32))):
        got = load_image(image)[0]
        assert got.shape == (3, 8, 8), image.mode
        torch.testing.assert_close(got, expected, atol=1 / 127.5, rtol=0)  # within one 8-bit level


def test_image_tensors_are_checked():
    assert load_image(torch.zeros(3, 4, 4)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        load_image(torch.full((3, 4, 4), 2.0))
    with pytest.raises(ValueError, match="shape"):
        load_image(torch.zeros(2, 3, 4, 4))


def test_bad_images_give_one_clear_error(tmp_path):
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read the image .*junk.png.*not an image file"):
        load_image(tmp_path / "junk.png", "the image")
    with pytest.raises(ValueError, match="cannot read .*missing.png.*No such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path)
    with pytest.raises(ValueError, match="is 8x6 but the model makes square images"):
        load_image(_rgb((8, 6)))
    assert load_image(_rgb((8, 6)), square=False).shape == (1, 3, 6, 8)
    with pytest.raises(TypeError):
        load_image(3)


def test_mask_white_regenerates_grey_splits_at_128_and_alpha_is_composited_over_black():
    array = np.zeros((4, 4), np.uint8)
    array[0, 0], array[0, 1], array[0, 2] = 255, 128, 127
    mask = load_mask(Image.fromarray(array))
    assert mask.shape == (1, 1, 4, 4)
    assert mask[0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0] and float(mask.sum()) == 2
    assert torch.equal(load_mask(Image.fromarray(array).convert("RGB")), mask)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only one pixel opaque
    rgba[1, 1, 3] = 255
    assert load_mask(Image.fromarray(rgba, "RGBA"))[0, 0].nonzero().tolist() == [[1, 1]]
    assert torch.equal(load_mask(torch.tensor([[True, False], [False, False]])),
                       torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))


def test_a_mask_with_nothing_to_regenerate_or_of_another_size_is_refused():
    with pytest.raises(ValueError, match="no white pixels.*white = regenerate"):
        load_mask(Image.new("L", (4, 4), 0), "--mask")
    with pytest.raises(ValueError, match="no white pixels"):
        load_mask(Image.new("L", (4, 4), 127))
    with pytest.raises(ValueError, match="shape"):
        load_mask(torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="mask is 4x2 but the image is 4x4"):
        check_same_size(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 2, 4), "mask", "the image")


def test_resizing_keeps_masks_binary_and_regenerates_any_partly_masked_pixel():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 5, 9] = 1
    small = resize_mask(mask, 16)
    assert small.shape == (1, 1, 16, 16) and small.sum() == 1 and small[0, 0, 1, 2] == 1
    big = resize_mask(small, 32)
    assert set(big.unique().tolist()) == {0.0, 1.0} and big.sum() == 4
    assert resize_mask(mask, 64) is mask
    image = load_image(_rgb((16, 16)))
    assert resize_image(image, 16) is image
    assert resize_image(image, 8).shape == (1, 3, 8, 8) and resize_image(image, 32).shape == (1, 3, 32, 32)
    assert float(resize_image(image, 32).abs().max()) <= 1.0


def test_outpaint_canvas_pads_to_a_square_and_masks_the_new_border():
    image = _rgb((8, 6))
    canvas, mask = outpaint_canvas(image, 0, 1, 0, 1)
    assert canvas.size == mask.size == (8, 8)
    assert np.array_equal(np.asarray(canvas)[1:7], np.asarray(image))
    m = np.asarray(mask)
    assert (m[1:7] == 0).all() and (m[0] == 255).all() and (m[7] == 255).all()
    with pytest.raises(ValueError, match="canvas would be 10x8.*square"):
        outpaint_canvas(image, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        outpaint_canvas(image, -1, 0, 0, 0)
    with pytest.raises(ValueError, match="nothing to generate"):
        outpaint_canvas(_rgb(), 0, 0, 0, 0)
