"""Unusual image files: what can be converted is, the rest is refused with an NcaError that says why."""

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from ncaedit.errors import NcaError
from ncaedit.image import load_image
from ncaedit.png16 import _unfilter, write_png16

from helpers import smooth_photo

RGB8 = (smooth_photo(24, 32) * 255).round().astype(np.uint8)


def _close(photo, expected_rgb, tol):
    assert photo.rgb.shape == expected_rgb.shape
    assert np.abs(photo.rgb - expected_rgb).mean() < tol


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_becomes_rgb(tmp_path, suffix):
    path = tmp_path / f"cmyk{suffix}"
    Image.fromarray(RGB8).convert("CMYK").save(path)
    _close(load_image(path), RGB8 / 255.0, 0.05)


def test_palette_with_transparency_keeps_alpha(tmp_path):
    indices = (np.arange(24 * 32).reshape(24, 32) % 4).astype(np.uint8)
    img = Image.fromarray(indices, "L").convert("P")
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    img.save(tmp_path / "p.png", transparency=0)  # index 0 (red) is transparent
    photo = load_image(tmp_path / "p.png")
    assert photo.rgb.shape == (24, 32, 3) and photo.alpha is not None
    assert np.array_equal(photo.alpha == 0, indices == 0)
    assert np.allclose(photo.rgb[indices == 2], [0, 0, 1])


def test_grey_alpha_keeps_alpha(tmp_path):
    grey = RGB8[..., 0]
    alpha = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    Image.fromarray(np.stack([grey, alpha], axis=2), "LA").save(tmp_path / "la.png")
    photo = load_image(tmp_path / "la.png")
    assert np.allclose(photo.rgb[..., 1], grey / 255.0, atol=1e-6) and np.allclose(photo.alpha, alpha / 255.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_one_bit(tmp_path, suffix):
    bits = np.zeros((24, 32), bool)
    bits[:, 16:] = True
    Image.fromarray(bits).save(tmp_path / f"b{suffix}")
    photo = load_image(tmp_path / f"b{suffix}")
    assert photo.rgb[:, :16].max() == 0.0 and photo.rgb[:, 16:].min() == 1.0


def test_white_is_zero_tiff_is_not_inverted(tmp_path):
    grey = np.full((24, 32), 250, np.uint8)  # nearly black: 0 is white in this photometric
    tifffile.imwrite(tmp_path / "w.tif", grey, photometric="miniswhite")
    assert load_image(tmp_path / "w.tif").rgb.max() < 0.05


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_wide_unsigned_tiff(tmp_path, dtype):
    top = np.iinfo(dtype).max
    arr = (smooth_photo(24, 32) * top).astype(dtype)
    tifffile.imwrite(tmp_path / "u.tif", arr, photometric="rgb")
    photo = load_image(tmp_path / "u.tif")
    assert photo.bit_depth == 16
    _close(photo, arr / top, 1e-4)


def test_sixteen_bit_grey_png_written_by_pillow(tmp_path):
    grey = (np.linspace(0, 1, 24 * 32).reshape(24, 32) * 65535).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    photo = load_image(tmp_path / "g16.png")
    assert photo.bit_depth == 16 and np.abs(photo.rgb[..., 0] - grey / 65535).max() < 1e-4


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_tiff_is_clipped_and_cleaned(tmp_path, dtype):
    arr = smooth_photo(24, 32).astype(dtype)
    arr[0, 0] = np.nan
    arr[0, 1] = 7.0  # out of range
    arr[0, 2] = -3.0
    tifffile.imwrite(tmp_path / "f.tif", arr, photometric="rgb")
    photo = load_image(tmp_path / "f.tif")
    assert np.isfinite(photo.rgb).all() and photo.rgb.min() >= 0 and photo.rgb.max() <= 1
    assert photo.rgb[0, 1].min() == 1.0 and photo.rgb[0, 2].max() == 0.0
    _close(photo, np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 1), 1e-3)


def test_separate_planes_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.moveaxis(RGB8, -1, 0), photometric="rgb", planarconfig="separate")
    _close(load_image(tmp_path / "s.tif"), RGB8 / 255.0, 1e-6)


def test_jpeg_compressed_tiff_falls_back_to_pillow(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "j.tif", compression="jpeg")
    _close(load_image(tmp_path / "j.tif"), RGB8 / 255.0, 0.05)


def test_webp_with_alpha(tmp_path):
    rgba = np.dstack([RGB8, np.full((24, 32), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.webp", lossless=True)
    photo = load_image(tmp_path / "a.webp")
    assert photo.alpha is not None and np.allclose(photo.alpha, 128 / 255, atol=1e-6)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda p: tifffile.imwrite(p, np.zeros((24, 32, 3), np.int32), photometric="rgb"), "int32 samples are not supported"),
        (lambda p: tifffile.imwrite(p, np.zeros((24, 32, 5), np.uint8), photometric="minisblack", planarconfig="contig"), "5 channels"),
    ],
)
def test_unconvertible_tiffs_are_refused_clearly(tmp_path, make, pattern):
    make(tmp_path / "x.tif")
    with pytest.raises(NcaError, match=pattern):
        load_image(tmp_path / "x.tif")


def _png(width, height, depth, colour, raw_rows: bytes) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("depth", [8, 16])
def test_decompression_bombs_are_refused_from_the_header(tmp_path, depth):
    # 100,000 x 100,000 claimed; a few kilobytes on disk; nothing is decoded.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(100_000, 100_000, depth, 2, b"\x00" * 1000))
    with pytest.raises(NcaError, match="pixel limit"):
        load_image(bomb)


def test_second_ihdr_cannot_smuggle_a_bigger_size(tmp_path):
    small = write_png16(np.zeros((16, 16, 3), np.uint16))
    big_ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 2, 0, 0, 0)
    extra = struct.pack(">I", 13) + b"IHDR" + big_ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + big_ihdr))
    (tmp_path / "two.png").write_bytes(small[:33] + extra + small[33:])
    assert load_image(tmp_path / "two.png").rgb.shape == (16, 16, 3)


def _reference_unfilter(filters, rows, bpp):
    """The PNG specification, byte by byte."""
    out = np.zeros_like(rows)
    for y in range(rows.shape[0]):
        for i in range(rows.shape[1]):
            a = out[y, i - bpp] if i >= bpp else 0
            b = out[y - 1, i] if y else 0
            c = out[y - 1, i - bpp] if y and i >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            out[y, i] = (rows[y, i] + [0, a, b, (a + b) // 2, paeth][filters[y]]) % 256
    return out


def test_unfilter_matches_the_specification():
    rng = np.random.default_rng(0)
    for height, width, bpp in [(1, 1, 2), (5, 7, 6), (9, 3, 8), (4, 11, 4)]:
        for top in (3, 5):  # rows of none/sub/up only take the fast path; average/Paeth the diagonal one
            filters = rng.integers(0, top, height)
            rows = rng.integers(0, 256, (height, width * bpp)).astype(np.int32)
            assert np.array_equal(_unfilter(filters, rows, bpp), _reference_unfilter(filters, rows, bpp))


def test_unfilter_matches_pillows_encoder():
    """Pillow writes 8-bit PNGs with adaptive filters (sub, up, Paeth): the same unfiltering must give its pixels back."""
    noisy = (RGB8 + np.random.default_rng(1).integers(0, 30, RGB8.shape)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "PNG")
    data, pos, idat = buf.getvalue(), 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(24, 32 * 3 + 1)
    assert raw[:, 0].max() >= 3  # the interesting filters are really used
    assert np.array_equal(_unfilter(raw[:, 0], raw[:, 1:].astype(np.int32), 3).reshape(RGB8.shape), noisy)
