"""16-bit PNG pictures are read at full depth (Pillow alone reads 16-bit colour at 8 bits)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from napari_sam import io


def write_png16(path, samples: np.ndarray) -> None:
    """Write ``samples`` (uint16, (Y, X) grey, (Y, X, 2) grey + alpha, (Y, X, 3) RGB or
    (Y, X, 4) RGBA) as a 16-bit PNG, by hand (zlib and struct), each row unfiltered."""
    channels = samples.shape[2] if samples.ndim == 3 else 1
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # grey, grey + alpha, RGB, RGBA
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _samples(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, shape, dtype=np.uint16)


@pytest.mark.parametrize("channels", [3, 4])
def test_a_16_bit_colour_png_keeps_its_16_bits(tmp_path, channels):
    samples = _samples((40, 48, channels))
    assert samples.max() > 255
    path = tmp_path / "colour16.png"
    write_png16(path, samples)

    img = io.read_image(path)
    assert img.axes == "YXC" and img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, samples)
    std = img.to_standard()
    assert std.data.max() > 255


def test_a_16_bit_grey_png_with_alpha_keeps_its_grey_at_16_bits(tmp_path):
    samples = _samples((40, 48, 2), seed=1)
    path = tmp_path / "grey_alpha16.png"
    write_png16(path, samples)

    img = io.read_image(path)
    assert img.axes == "YX" and img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, samples[..., 0])


def test_16_bit_grey_and_8_bit_colour_pngs_read_as_before(tmp_path):
    grey = _samples((30, 20), seed=2)
    write_png16(tmp_path / "grey16.png", grey)
    np.testing.assert_array_equal(io.read_image(tmp_path / "grey16.png").data, grey)

    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb8.png")
    img = io.read_image(tmp_path / "rgb8.png")
    assert img.data.dtype == np.uint8
    np.testing.assert_array_equal(img.data, rgb)
