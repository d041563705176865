"""The product's PNG encoder: what it writes decodes, through Pillow's independent decoder, to
exactly the pixels given, for every layout it accepts; anything else is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.png import png_encode


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((512, 512), "L"),
        ((7, 13), "L"),
        ((1, 1), "L"),
        ((5, 9, 1), "L"),
        ((31, 17, 3), "RGB"),
        ((64, 64, 4), "RGBA"),
        ((1, 3, 4), "RGBA"),
    ],
)
def test_encoded_png_decodes_to_the_same_pixels(shape, mode):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    pixels.flat[:2] = (255, 0)  # a left neighbour above the current byte: the filter wraps

    data = png_encode(pixels)

    image = Image.open(io.BytesIO(data))
    image.verify()  # chunk CRCs and structure
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == mode
    assert image.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(image), pixels.reshape(np.asarray(image).shape))


def test_a_windowed_frame_is_no_larger_than_pillows_png():
    y, x = np.mgrid[0:512, 0:512]
    frame = (np.sin(x / 30) + np.cos(y / 40)) * 60 + 128
    frame += np.random.default_rng(0).normal(0, 8, frame.shape)
    pixels = frame.clip(0, 255).astype(np.uint8)
    pillow = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(pillow, format="PNG", compress_level=1)

    assert len(png_encode(pixels)) <= len(pillow.getvalue())


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4), dtype=np.uint16),
        np.zeros((4, 4, 2), dtype=np.uint8),
        np.zeros((0, 4), dtype=np.uint8),
        np.zeros((2, 2, 2, 2), dtype=np.uint8),
    ],
)
def test_what_is_not_an_8_bit_image_is_refused(pixels):
    with pytest.raises(ValueError):
        png_encode(pixels)
